"""The resumable mask store.

Layout under the pipeline's output folder::

    sessions/<session>/manifest.json      SessionManifest (key, objects, status, stats)
    sessions/<session>/frames/00000.npz   one file per frame: all objects, bit-packed

A frame file is an uncompressed-header ``.npz`` (pickle-free) holding
``masks``: ``np.packbits(bool [N, H, W], axis=-1)`` deflated, with the object
order of the manifest.  Robot masks compress to a few kB per frame at 720p
(``bench/`` measures it).  Every file is written atomically.

Trust rule: a session is reused only if its manifest is ``complete``, its
``key`` (hash of video content, prompts, backend and options) equals the key
of the current run, and every frame file is present and readable.  A run
first rewrites the manifest as incomplete, then removes old frames, writes the
new ones, and marks the manifest complete last - so a kill at any moment
leaves a session that the next run redoes.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from masktrack.errors import StoreError
from masktrack.io.atomic import atomic_path, atomic_write_json, clean_temp_files

MANIFEST_VERSION = 1


class StoredObject(BaseModel):
    name: str
    id: int
    color: tuple[int, int, int]


class SessionManifest(BaseModel):
    """What a session's masks were computed from, and whether they are complete."""

    version: int = MANIFEST_VERSION
    session: str
    key: str
    backend: str
    options: dict[str, Any] = Field(default_factory=dict)
    video: str
    video_hash: str
    prompts_hash: str
    num_frames: int
    height: int
    width: int
    objects: list[StoredObject]
    complete: bool = False
    stats: dict[str, Any] = Field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objects]


def encode_frame(masks: np.ndarray) -> bytes:
    """bool [N, H, W] -> bytes of a pickle-free npz with bit-packed, deflated masks."""
    packed = np.packbits(np.ascontiguousarray(masks, dtype=bool), axis=-1)
    buf = io.BytesIO()
    np.savez_compressed(buf, masks=packed)
    return buf.getvalue()


def decode_frame(data: bytes | Path, width: int) -> np.ndarray:
    """Inverse of :func:`encode_frame`; raises StoreError on a truncated/corrupt file."""
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with np.load(src, allow_pickle=False) as z:
            packed = z["masks"]
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as e:
        where = data if isinstance(data, Path) else None
        raise StoreError(
            f"corrupt or truncated mask file ({e.__class__.__name__}); rerun with --force", path=where
        ) from None
    return np.unpackbits(packed, axis=-1, count=width).astype(bool)


class SessionStore:
    """Masks of one session: per-frame files plus a manifest."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.path = Path(root) / name
        self.frames_dir = self.path / "frames"
        self.manifest_path = self.path / "manifest.json"

    # -- manifest ---------------------------------------------------------
    def manifest(self) -> SessionManifest | None:
        """The stored manifest, or None if absent or unreadable (an unreadable one is never trusted)."""
        try:
            return SessionManifest.model_validate_json(self.manifest_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def require_manifest(self) -> SessionManifest:
        m = self.manifest()
        if m is None:
            raise StoreError(
                f"no masks for session {self.name!r} (run `masktrack segment` first)", path=self.manifest_path
            )
        if not m.complete:
            raise StoreError(
                f"masks of session {self.name!r} are incomplete (interrupted run); rerun `masktrack segment`",
                path=self.manifest_path,
            )
        return m

    def frame_path(self, frame: int) -> Path:
        return self.frames_dir / f"{frame:05d}.npz"

    def is_complete(self, key: str) -> bool:
        """True if the stored masks are complete, computed for ``key``, and all frame files are readable."""
        m = self.manifest()
        if m is None or not m.complete or m.key != key:
            return False
        return self.verify(m) == []

    def verify(self, manifest: SessionManifest | None = None) -> list[int]:
        """Frames whose files are missing or unreadable (a zip directory check, no decoding)."""
        m = manifest or self.manifest()
        if m is None:
            return []
        bad = []
        for f in range(m.num_frames):
            p = self.frame_path(f)
            try:
                with zipfile.ZipFile(p) as z:
                    if "masks.npy" not in z.namelist():
                        bad.append(f)
            except (FileNotFoundError, zipfile.BadZipFile, OSError):
                bad.append(f)
        return bad

    # -- writing ----------------------------------------------------------
    def begin(self, manifest: SessionManifest) -> None:
        """Start (re)computing: mark incomplete first, then drop old frames."""
        manifest = manifest.model_copy(update={"complete": False})
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.manifest_path, manifest.model_dump(mode="json"))
        if self.frames_dir.exists():
            shutil.rmtree(self.frames_dir)
        self.frames_dir.mkdir(parents=True)

    def write_frame(self, frame: int, masks: dict[str, np.ndarray], names: Sequence[str]) -> int:
        """Write one frame's masks (all ``names``; missing ones stored empty). Returns bytes written."""
        first = next(iter(masks.values()))
        h, w = first.shape
        stack = np.zeros((len(names), h, w), bool)
        for i, n in enumerate(names):
            if n in masks:
                stack[i] = masks[n]
        data = encode_frame(stack)
        with atomic_path(self.frame_path(frame), fsync=False) as tmp:
            tmp.write_bytes(data)
        return len(data)

    def write_stack(self, frame: int, stack: np.ndarray) -> int:
        """Write one frame as bool [N, H, W] in manifest object order. Returns bytes written."""
        data = encode_frame(stack)
        with atomic_path(self.frame_path(frame), fsync=False) as tmp:
            tmp.write_bytes(data)
        return len(data)

    def finish(self, manifest: SessionManifest, stats: dict[str, Any]) -> None:
        """Mark complete (the last write of a session)."""
        clean_temp_files(self.frames_dir)
        m = manifest.model_copy(update={"complete": True, "stats": stats})
        atomic_write_json(self.manifest_path, m.model_dump(mode="json"))

    # -- reading ----------------------------------------------------------
    def read_frame(self, frame: int, manifest: SessionManifest | None = None) -> dict[str, np.ndarray]:
        """Masks of one frame: {object: bool [H, W]}."""
        m = manifest or self.require_manifest()
        p = self.frame_path(frame)
        if not p.exists():
            raise StoreError(f"frame {frame} of session {self.name!r} is missing", path=p)
        arr = decode_frame(p, m.width)
        return dict(zip(m.names, arr))

    def read_stack(self, frame: int, manifest: SessionManifest | None = None) -> np.ndarray:
        """bool [N, H, W] of one frame in manifest object order."""
        m = manifest or self.require_manifest()
        return decode_frame(self.frame_path(frame), m.width)

    def iter_frames(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        m = self.require_manifest()
        for f in range(m.num_frames):
            yield f, self.read_frame(f, m)

    def read_object(self, name: str) -> np.ndarray:
        """bool [T, H, W] of one object over the whole video."""
        m = self.require_manifest()
        if name not in m.names:
            raise StoreError(f"session {self.name!r} has no object {name!r} (objects: {', '.join(m.names)})")
        i = m.names.index(name)
        out = np.zeros((m.num_frames, m.height, m.width), bool)
        for f in range(m.num_frames):
            out[f] = self.read_stack(f, m)[i]
        return out


class MaskStore:
    """All sessions' masks under ``<output>/sessions``."""

    def __init__(self, output: str | Path) -> None:
        self.output = Path(output)
        self.root = self.output / "sessions"

    def session(self, name: str) -> SessionStore:
        return SessionStore(self.root, name)

    def sessions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").exists())

    def find_object(self, name: str) -> tuple[str, str]:
        """Resolve ``object`` or ``session.object`` to (session, object); errors on ambiguity."""
        if "." in name:
            s, o = name.split(".", 1)
            return s, o
        hits = []
        for s in self.sessions():
            m = self.session(s).manifest()
            if m is not None and name in m.names:
                hits.append(s)
        if not hits:
            raise StoreError(f"no session has an object named {name!r}")
        if len(hits) > 1:
            raise StoreError(
                f"object {name!r} is in several sessions ({', '.join(hits)}); write session.object"
            )
        return hits[0], name

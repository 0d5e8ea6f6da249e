"""The resumable mask store.

Layout under the pipeline's output folder::

    sessions/<session>/manifest.json      SessionManifest (key, objects, status, stats)
    sessions/<session>/frames/00000.npz   one file per frame: all objects, bit-packed

A frame file is an uncompressed-header ``.npz`` (pickle-free) holding
``masks``: ``np.packbits(bool [N, H, W], axis=-1)`` deflated, with the object
order of the manifest.  Robot masks compress to a few kB per frame at 720p
(``bench/`` measures it).  Every file is written atomically.

Trust rule (:mod:`masktrack.io.manifest`): a session is reused only if its
manifest is ``complete``, its ``key`` (hash of video content, prompts, backend
and options) equals the key of the current run, and every frame file has the
size and BLAKE2b hash recorded in the manifest's ``outputs`` (a truncated or
bit-flipped frame is caught; the runner then recomputes the session and reports
it ``repaired``).  A manifest of the previous layout (version 1, no hashes) is
read by decoding every frame (the zip CRC catches damage) and upgraded in place.  A run
first rewrites the manifest as incomplete, then removes old frames, writes the
new ones, and marks the manifest complete last - so a kill at any moment
leaves a session that the next run redoes.
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from masktrack.errors import StoreError
from masktrack.io.atomic import atomic_path, atomic_write_json, clean_temp_files
from masktrack.io.manifest import (
    MANIFEST_FORMAT,
    TOOL_VERSION,
    OutputEntry,
    begin,
    entry_for,
    entry_for_bytes,
    finish,
    is_complete,
    verify_entry,
)

MANIFEST_VERSION = 2  # 2: outputs with size + hash (1: none; read and upgraded, see SessionStore.verify)


class StoredObject(BaseModel):
    name: str
    id: int
    color: tuple[int, int, int]


class SessionManifest(BaseModel):
    """What a session's masks were computed from, and whether they are complete."""

    format: str = MANIFEST_FORMAT
    stage: str = "segment"
    tool_version: str = TOOL_VERSION
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
    outputs: dict[str, OutputEntry] = Field(default_factory=dict)  # "frames/00000.npz" -> size + hash
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


# Reading frames still bit-packed (composition works on packed rows: no full unpack per frame)
_NPY_HEADER = re.compile(
    rb"^\{'descr': '\|u1', 'fortran_order': False, 'shape': \((\d+), (\d+), (\d+)\), \}\s*$"
)


def _inflate_store_frame(data: bytes) -> np.ndarray | None:
    """Fast path for the store's own frame files: one deflated ``masks.npy`` of uint8.

    Reads the zip local header and the .npy header directly (no zipfile
    directory scan, no ``ast`` parse of the header), inflates, and checks the
    CRC.  Returns None for anything unexpected; the caller then uses np.load.
    """
    if len(data) < 30 or data[:4] != b"PK\x03\x04":
        return None
    flags, method = struct.unpack_from("<HH", data, 6)
    crc = struct.unpack_from("<I", data, 14)[0]
    n_name, n_extra = struct.unpack_from("<HH", data, 26)
    if (
        method != 8 or flags & 0x9 or data[30 : 30 + n_name] != b"masks.npy"
    ):  # deflate, not encrypted, no data descriptor
        return None
    d = zlib.decompressobj(-15)
    raw = d.decompress(data[30 + n_name + n_extra :])
    if not d.eof or zlib.crc32(raw) != crc or raw[:6] != b"\x93NUMPY":
        return None
    if raw[6] == 1:
        hlen, start = struct.unpack_from("<H", raw, 8)[0], 10
    elif raw[6] in (2, 3):
        hlen, start = struct.unpack_from("<I", raw, 8)[0], 12
    else:
        return None
    m = _NPY_HEADER.match(raw[start : start + hlen])
    if m is None:
        return None
    shape = tuple(int(g) for g in m.groups())
    body = memoryview(raw)[start + hlen :]
    if len(body) != shape[0] * shape[1] * shape[2]:
        return None
    return np.frombuffer(body, np.uint8).reshape(shape)


def read_packed(store: SessionStore, frame: int, manifest: SessionManifest) -> np.ndarray:
    """uint8 [N, H, ceil(W/8)]: one stored frame, still bit-packed."""
    p = store.frame_path(frame)
    try:
        packed = _inflate_store_frame(p.read_bytes())
        if packed is None:
            with np.load(p, allow_pickle=False) as z:
                packed = z["masks"]
    except FileNotFoundError:
        raise StoreError(
            f"frame {frame} of session {store.name!r} is missing; rerun `masktrack segment`", path=p
        ) from None
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError, zlib.error) as e:
        raise StoreError(
            f"corrupt or truncated mask file ({e.__class__.__name__}); rerun `masktrack segment --force`",
            path=p,
        ) from None
    want = (len(manifest.objects), manifest.height, (manifest.width + 7) // 8)
    if packed.shape != want or packed.dtype != np.uint8:
        raise StoreError(f"mask file has shape {packed.shape}, manifest says {want}", path=p)
    return packed


class SessionStore:
    """Masks of one session: per-frame files plus a manifest."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.path = Path(root) / name
        self.frames_dir = self.path / "frames"
        self.manifest_path = self.path / "manifest.json"
        self._entries: dict[str, OutputEntry] = {}  # frames written by this run

    @staticmethod
    def frame_name(frame: int) -> str:
        """A frame file's name in the manifest's ``outputs`` (relative to the session folder)."""
        return f"frames/{frame:05d}.npz"

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
        if not is_complete(m):
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
        if m is None or not is_complete(m) or m.key != key:
            return False
        return self.verify(m) == []

    def verify(self, manifest: SessionManifest | None = None) -> list[int]:
        """Frames whose files are missing or damaged (size and hash against the manifest).

        A complete manifest of the previous layout (no ``outputs``) is read by decoding every
        frame - the zip CRC catches truncation and bit flips - and, if all decode, upgraded in
        place with the frames' sizes and hashes, so the next check is the cheap one.
        """
        m = manifest or self.manifest()
        if m is None:
            return []
        if not m.outputs and m.num_frames:
            return self._verify_legacy(m)
        bad = []
        for f in range(m.num_frames):
            entry = m.outputs.get(self.frame_name(f))
            if entry is None or not verify_entry(self.frame_path(f), entry):
                bad.append(f)
        return bad

    def _verify_legacy(self, m: SessionManifest) -> list[int]:
        bad = []
        for f in range(m.num_frames):
            try:
                decode_frame(self.frame_path(f), m.width)
            except (StoreError, OSError):
                bad.append(f)
        if not bad and is_complete(m):
            outputs = {self.frame_name(f): entry_for(self.frame_path(f)) for f in range(m.num_frames)}
            up = m.model_copy(update={"outputs": outputs, "version": MANIFEST_VERSION})
            atomic_write_json(self.manifest_path, up.model_dump(mode="json"))
        return bad

    # -- writing ----------------------------------------------------------
    def begin(self, manifest: SessionManifest) -> None:
        """Start (re)computing: mark incomplete first, then drop old frames."""
        self.path.mkdir(parents=True, exist_ok=True)
        begin(self.manifest_path, manifest)
        if self.frames_dir.exists():
            shutil.rmtree(self.frames_dir)
        self.frames_dir.mkdir(parents=True)
        self._entries = {}

    def write_frame(self, frame: int, masks: dict[str, np.ndarray], names: Sequence[str]) -> int:
        """Write one frame's masks (all ``names``; missing ones stored empty). Returns bytes written."""
        first = next(iter(masks.values()))
        h, w = first.shape
        stack = np.zeros((len(names), h, w), bool)
        for i, n in enumerate(names):
            if n in masks:
                stack[i] = masks[n]
        return self._write(frame, encode_frame(stack))

    def _write(self, frame: int, data: bytes) -> int:
        with atomic_path(self.frame_path(frame), fsync=False) as tmp:
            tmp.write_bytes(data)
        self._entries[self.frame_name(frame)] = entry_for_bytes(data)
        return len(data)

    def write_stack(self, frame: int, stack: np.ndarray) -> int:
        """Write one frame as bool [N, H, W] in manifest object order. Returns bytes written."""
        return self._write(frame, encode_frame(stack))

    def finish(self, manifest: SessionManifest, stats: dict[str, Any]) -> None:
        """Mark complete (the last write of a session)."""
        clean_temp_files(self.frames_dir)
        outputs = {}
        for f in range(manifest.num_frames):
            name = self.frame_name(f)
            entry = self._entries.get(name)
            outputs[name] = entry if entry is not None else entry_for(self.frame_path(f))
        finish(self.manifest_path, manifest, outputs, stats=stats)

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

"""Read mask sequences for evaluation: ``%05d.png`` folders or masktrack's mask store.

A PNG folder holds one mask per frame named by its frame number (``00000.png``);
0/255 greyscale, RGB or palette PNGs all work, and any non-zero pixel is the
object (``label`` picks one palette index instead).  A masktrack prediction is
either a pipeline output folder (it has ``sessions/``) or one
``sessions/<name>`` folder (it has ``manifest.json``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from masktrack.errors import StoreError

_NUMERIC = re.compile(r"^\d+$")


def png_frames(folder: Path) -> list[Path]:
    """Numbered PNGs of a folder in frame order (empty list if none)."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.suffix.lower() == ".png" and _NUMERIC.match(p.stem)]
    return sorted(files, key=lambda p: int(p.stem))


def read_mask_png(path: Path, label: int | None = None) -> np.ndarray:
    """bool [H, W]: non-zero pixels (or pixels equal to ``label``) of a greyscale/RGB/palette PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as e:
        raise StoreError(f"unreadable mask PNG ({e.__class__.__name__})", path=path) from None
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1) if label is None else arr[..., 0]
    return arr != 0 if label is None else arr == label


def read_png_folder(folder: Path, label: int | None = None) -> np.ndarray:
    """bool [T, H, W] from a folder of numbered PNG masks; frame numbers must be 0..T-1."""
    files = png_frames(folder)
    if not files:
        raise StoreError("no numbered .png masks in folder", path=folder)
    numbers = [int(p.stem) for p in files]
    if numbers != list(range(len(files))):
        missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
        raise StoreError(
            f"mask frames must be numbered 0..{len(files) - 1}; missing {missing[:5]}", path=folder
        )
    masks = [read_mask_png(p, label) for p in files]
    shape = masks[0].shape
    for p, m in zip(files, masks):
        if m.shape != shape:
            raise StoreError(
                f"mask size {m.shape[1]}x{m.shape[0]} differs from {shape[1]}x{shape[0]}", path=p
            )
    return np.stack(masks)


def is_store(path: Path) -> bool:
    """True for a pipeline output folder or a ``sessions/<name>`` folder."""
    return (path / "sessions").is_dir() or (path / "manifest.json").is_file()


def read_store(path: Path, obj: str | None = None) -> tuple[np.ndarray, str]:
    """bool [T, H, W] of one object from a mask store, and its ``session.object`` name.

    ``obj`` may be ``object`` or ``session.object``; it may be left out when the
    store holds exactly one object.
    """
    from masktrack.masks.store import MaskStore, SessionStore

    if (path / "manifest.json").is_file():
        sessions = {path.name: SessionStore(path.parent, path.name)}
    else:
        store = MaskStore(path)
        sessions = {s: store.session(s) for s in store.sessions()}
        if not sessions:
            raise StoreError("no sessions with masks in this output folder", path=path / "sessions")
    if obj is not None and "." in obj:
        s, o = obj.split(".", 1)
        if s not in sessions:
            raise StoreError(f"no session {s!r} (sessions: {', '.join(sessions)})", path=path, field="object")
        sessions, obj = {s: sessions[s]}, o
    candidates = []
    for s, st in sessions.items():
        m = st.require_manifest()
        candidates += [(s, n) for n in m.names if obj is None or n == obj]
    if not candidates:
        raise StoreError(f"no object named {obj!r} in the mask store", path=path, field="object")
    if len(candidates) > 1:
        names = ", ".join(f"{s}.{n}" for s, n in candidates)
        raise StoreError(f"several objects ({names}); pick one with --object", path=path, field="object")
    s, n = candidates[0]
    return sessions[s].read_object(n), f"{s}.{n}"


def read_masks(path: str | Path, *, obj: str | None = None, label: int | None = None) -> np.ndarray:
    """bool [T, H, W] from a PNG folder or a mask store (see module doc)."""
    path = Path(path)
    if not path.exists():
        raise StoreError("no such folder", path=path)
    if is_store(path):
        return read_store(path, obj)[0]
    return read_png_folder(path, label)

"""Atomic writes and content hashes: the basis of "nothing is lost".

Every stage output goes through :func:`atomic_path`: data is written to a
hidden temp file in the same folder, flushed, fsynced and renamed over the
target.  A SIGKILL at any moment leaves either the old file, the new file, or
an ignorable ``.*.tmp-*`` file that :func:`clean_temp_files` removes - never a
truncated file under the real name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def is_temp_file(path: Path) -> bool:
    """True for leftovers of an interrupted atomic write."""
    return path.name.startswith(".") and TMP_MARK in path.name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temp path; on success rename it to ``path``, on error delete it.

    Use for writers that want a filename (cv2.imwrite, np.save, av).  The temp
    name keeps the target's suffix so format-sniffing writers work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp = tmp.with_name(tmp.name + path.suffix)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, fsync: bool = True) -> None:
    atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n", fsync=fsync
    )


def clean_temp_files(folder: str | os.PathLike[str]) -> int:
    """Remove leftovers of interrupted atomic writes in ``folder`` (not recursive)."""
    folder = Path(folder)
    n = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if is_temp_file(p):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    n += 1
    return n


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of content hashes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def hash_json(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (hex)."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def hash_file(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_files(paths: list[Path], root: Path | None = None) -> str:
    """sha256 over several files' names (relative to ``root``) and bytes."""
    h = hashlib.sha256()
    for p in paths:
        name = str(p.relative_to(root)) if root is not None else p.name
        h.update(name.encode("utf-8") + b"\0")
        h.update(bytes.fromhex(hash_file(p)))
    return h.hexdigest()

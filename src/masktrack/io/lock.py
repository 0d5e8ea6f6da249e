"""One writer per output folder: an advisory ``fcntl`` lock on ``<folder>/.masktrack.lock``.

Two runs writing into the same output folder interleave their frames and
manifests: a session can end up marked complete while holding the other
run's masks.  Every stage that writes into an output folder (segment,
compose, track, batch units, the annotation app's saves) therefore holds this
lock while it writes.  A second writer fails at once with one line naming the
folder and the holder's PID (exit 2) instead of waiting or interleaving.

The lock is ``flock`` on an open file: the kernel drops it when the holder's
process dies, however it dies, so a stale lock file left by a killed run never
blocks (the file stays; only the lock on it matters).  The lock is re-entrant
within one process (batch workers run segment then compose on the same
folder), counted per folder.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from masktrack.errors import MasktrackError

LOCK_NAME = ".masktrack.lock"


class FolderLockedError(MasktrackError):
    """Another live process holds the output folder's writer lock."""


_held: dict[str, tuple[int, int]] = {}  # resolved folder -> (fd, depth)
_guard = threading.Lock()
# seconds a writer waits for a held lock before failing; 0 for commands (fail at once).  Batch units
# wait: a unit retried after its Ray node died may start before the lost worker has fully exited.
wait_seconds = 0.0


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 256).decode("utf-8", "replace").split()
        return text[0] if text else "unknown"
    except OSError:
        return "unknown"


def acquire(folder: str | os.PathLike[str], what: str = "masktrack") -> None:
    """Take the writer lock of ``folder`` (created if missing) or raise :class:`FolderLockedError`."""
    if sys.platform == "win32":  # pragma: no cover - no fcntl; one writer is then the user's job
        return
    import fcntl

    path = Path(folder).resolve()
    key = str(path)
    with _guard:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            return
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.1)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            raise FolderLockedError(
                f"output folder is being written by another masktrack run (pid {pid}); "
                "wait for it to finish or choose another output folder",
                path=path,
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        except OSError:  # the lock holds even if the note cannot be written
            pass
        _held[key] = (fd, 1)


def release(folder: str | os.PathLike[str]) -> None:
    """Drop one level of this process's hold on ``folder``'s lock."""
    key = str(Path(folder).resolve())
    with _guard:
        if key not in _held:
            return
        fd, depth = _held[key]
        if depth > 1:
            _held[key] = (fd, depth - 1)
            return
        del _held[key]
        os.close(fd)  # closing the descriptor drops the flock


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike[str], what: str = "masktrack") -> Iterator[Path]:
    """Hold ``folder``'s writer lock for the block (see the module docstring)."""
    acquire(folder, what)
    try:
        yield Path(folder)
    finally:
        release(folder)


def held_by_me(folder: str | os.PathLike[str]) -> bool:
    return str(Path(folder).resolve()) in _held

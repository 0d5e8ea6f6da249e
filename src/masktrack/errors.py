"""User-facing errors: one line naming the file and the field, exit code 2.

Raise :class:`MasktrackError` (or a subclass) for anything the user can fix
(bad config, bad prompt file, unreadable video).  The CLI prints ``str(err)``
as one line per problem and exits with ``err.exit_code``.  Bugs stay ordinary
exceptions with tracebacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One validation finding with its location (``objects[gripper].keyframes[2].points[0]``)."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class MasktrackError(Exception):
    """An error in the user's input. ``path`` and ``field`` locate it."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        field: str | None = None,
        problems: list[Problem] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.field = field
        self.problems = list(problems or [])

    def lines(self) -> list[str]:
        """One line per problem, each prefixed with the file (and field)."""
        prefix = ""
        if self.path is not None:
            prefix += f"{self.path}: "
        if self.field:
            prefix += f"{self.field}: "
        if not self.problems:
            return [prefix + self.message]
        return [prefix + str(p) for p in self.problems]

    def __str__(self) -> str:
        return "\n".join(self.lines())


class ConfigError(MasktrackError):
    """A pipeline config that does not parse or validate."""


class PromptError(MasktrackError):
    """A prompt file that does not parse or validate against its video."""


class VideoError(MasktrackError):
    """A video source that cannot be opened or decoded."""


class SceneError(MasktrackError):
    """A multi-view scene file that does not validate."""


class BackendError(MasktrackError):
    """A backend that cannot be loaded or cannot do what the config asks (e.g. text on a points-only backend)."""


class StoreError(MasktrackError):
    """A mask store entry that is missing, stale or corrupt."""


class EnvironmentProblem(MasktrackError):
    """The machine, not the input: a read-only or full disk, a file where a folder must be, no memory.

    Exit code 3, so scripts can tell "fix your input" (2) from "fix the machine" (3).
    """

    exit_code = 3


_ERRNO_HINTS = {
    "ENOSPC": "no space left on the device; free some space and run again (finished work is kept)",
    "EDQUOT": "disk quota exceeded; free some space and run again (finished work is kept)",
    "EROFS": "the file system is read-only; choose a writable output folder",
    "EACCES": "permission denied; make it writable/readable or choose another path",
    "EPERM": "operation not permitted; make it writable or choose another path",
    "EEXIST": "a file is in the way where a folder must be; remove it or choose another path",
    "ENOTDIR": "a file is in the way where a folder must be; remove it or choose another path",
    "EISDIR": "this is a folder, a file is expected here",
    "ENOENT": "no such file or folder",
    "ENAMETOOLONG": "the path is too long",
    "EMFILE": "too many open files; raise the limit (ulimit -n)",
}


_INPUT_ERRNOS = {"ENOENT", "EISDIR", "ENAMETOOLONG"}  # a path the user gave is wrong: exit 2, not 3


def environment_error(e: OSError) -> MasktrackError:
    """An OSError as one line naming the path and what to do (exit 3; 2 for a wrong path the user gave)."""
    import errno as _errno

    name = _errno.errorcode.get(e.errno or 0, "")
    hint = _ERRNO_HINTS.get(name, e.strerror or str(e))
    path = e.filename if e.filename is not None else None
    cls = MasktrackError if name in _INPUT_ERRNOS else EnvironmentProblem
    return cls(hint, path=path)


def location(loc: Iterable[str | int], prefix: str = "") -> str:
    """A validation location in the one format of every problem: ``sessions[0].objects[1].name``.

    List indices in brackets, field names dotted; ``prefix`` (``options``, ``pipeline``) goes first.
    """
    out = prefix
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out.lstrip(".")


def pydantic_problems(
    e: Any, prefix: str = "", message: Callable[[dict[str, Any]], str] | None = None
) -> list[Problem]:
    """One :class:`Problem` per error of a pydantic ``ValidationError`` (duck-typed: no pydantic import).

    The one place that turns pydantic errors into problems, so every file format and option model
    names its fields the same way; ``message`` rewrites an error's text (default: pydantic's).
    """
    return [
        Problem(location(err["loc"], prefix), message(err) if message else err["msg"]) for err in e.errors()
    ]

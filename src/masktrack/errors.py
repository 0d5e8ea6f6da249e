"""User-facing errors: one line naming the file and the field, exit code 2.

Raise :class:`MasktrackError` (or a subclass) for anything the user can fix
(bad config, bad prompt file, unreadable video).  The CLI prints ``str(err)``
as one line per problem and exits with ``err.exit_code``.  Bugs stay ordinary
exceptions with tracebacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path


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

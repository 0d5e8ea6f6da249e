"""Progress reporting without a terminal: core functions call back, only ``cli/`` draws.

A stage that loops over frames or outputs takes ``progress: Progress | None`` and calls it with a
:class:`ProgressEvent` as work advances.  The CLI turns events into ``rich`` progress bars
(``masktrack.cli.progress``); batch workers and library users pass nothing, or their own callable
(a logger, a GUI).  Keeping ``rich`` out of the core is what lets a library user run a stage
without a terminal and a test check the events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` steps (frames, usually) of ``task``; ``note`` is e.g. ``"reused"``."""

    task: str
    done: int
    total: int | None = None
    note: str = ""


Progress = Callable[[ProgressEvent], None]


def as_progress(progress: Any) -> Progress | None:
    """The callback in ``progress``, or None for ``None``/``False``/``True`` (old boolean flags)."""
    return progress if callable(progress) else None

"""Rich progress bars for the core's :class:`~masktrack.io.progress.ProgressEvent` callbacks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from masktrack.io.progress import Progress, ProgressEvent


@contextmanager
def rich_progress(console: Any = None, *, unit: str = "frames") -> Iterator[Progress]:
    """A callback drawing one bar per task on ``console`` (default: stderr) while the block runs."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bars

    console = console or Console(stderr=True)
    with Bars(
        TextColumn("[bold]{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bars:
        tasks: dict[str, Any] = {}

        def on_event(ev: ProgressEvent) -> None:
            if ev.task not in tasks:
                tasks[ev.task] = bars.add_task(ev.task, total=ev.total)
            desc = f"{ev.task} ({ev.note})" if ev.note else ev.task
            bars.update(tasks[ev.task], completed=ev.done, total=ev.total, description=desc)

        yield on_event

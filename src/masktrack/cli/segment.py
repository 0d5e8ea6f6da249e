"""``masktrack segment`` and ``masktrack backends``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from masktrack.segment.runner import SessionReport


def summary_table(reports: list[SessionReport]) -> Any:
    """A rich Table: session, objects, frames, seconds, status, empty frames (and dropped detections)."""
    from rich.table import Table

    table = Table(title="masktrack segment")
    for col, just in (
        ("session", "left"),
        ("objects", "left"),
        ("frames", "right"),
        ("seconds", "right"),
        ("status", "left"),
        ("empty frames", "left"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    show_dropped = any(r.dropped_detections for r in reports)
    if show_dropped:
        table.add_column("dropped detections", justify="right")
    for r in reports:
        empty = ", ".join(f"{n}: {c}" for n, c in r.empty_frames.items())
        row = [r.session, ", ".join(r.objects), str(r.frames), f"{r.seconds:.1f}", r.status, empty]
        if show_dropped:
            row.append(str(r.dropped_detections))
        table.add_row(*row)
    return table


@click.command("segment")
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--only", "only", multiple=True, metavar="SESSION", help="Run only this session (repeatable).")
@click.option("--force", is_flag=True, help="Recompute sessions even when their stored masks match.")
@click.option("--no-progress", is_flag=True, help="No progress bars (summary table only).")
def segment(config: Path, only: tuple[str, ...], force: bool, no_progress: bool) -> None:
    """Run CONFIG's segmentation sessions into the mask store.

    Each session runs in isolation (its own backend session, closed before the
    next opens), propagating forward from its earliest and backward from its
    latest prompted frame.  Sessions whose stored masks match the video,
    prompts, backend and options are reused; a session killed mid-run is
    redone.  Masks land in OUTPUT/sessions/<session>/.

    \b
    Examples:
      masktrack segment examples/arm_gripper.yaml
      masktrack segment job.yaml --only gripper --force
    """
    import contextlib

    from rich.console import Console

    from masktrack.cli.progress import rich_progress
    from masktrack.config import load_config
    from masktrack.segment.pipeline import run_segment

    cfg = load_config(config)
    bars: Any = contextlib.nullcontext(None) if no_progress else rich_progress(Console(stderr=True))
    with bars as on_event:
        reports = run_segment(cfg, only=list(only) or None, force=force, progress=on_event)
    Console().print(summary_table(reports))
    for r in reports:
        for name, n in r.empty_frames.items():
            if n:
                click.echo(
                    f"note: session {r.session!r}: object {name!r} is empty on {n} of {r.frames} frames",
                    err=True,
                )
        if r.dropped_detections:
            click.echo(
                f"note: session {r.session!r}: {r.dropped_detections} text detection(s) beyond the session's objects were dropped",
                err=True,
            )


@click.command("backends")
def backends() -> None:
    """List segmentation backends: installed or what is missing, text prompts, source.

    Backends are imported only when a session uses them (this list imports none); extra backends
    come from the 'masktrack.backends' entry-point group or from modules named in
    MASKTRACK_PLUGINS=mod1,mod2.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from masktrack.segment import registry

    names = registry.available_backends()
    text = set(registry.text_backends())
    eps = registry._entry_point_targets()
    table = Table(title="masktrack backends")
    table.add_column("backend")
    table.add_column("installed")
    table.add_column("text prompts")
    table.add_column("source")
    for n in names:
        missing, how = registry.missing_requirements(n)
        installed = "yes" if not missing else f"no: missing {', '.join(missing)}; {how}"
        if n in registry._REGISTERED:
            src = "registered (plugin)"
        elif n in registry._BUILTIN:
            src = "built-in" + (" (default)" if n == registry.DEFAULT_BACKEND else "")
        else:
            src = f"entry point {eps.get(n, '')}"
        table.add_row(n, escape(installed), "yes" if n in text else "no", src)
    Console().print(table)

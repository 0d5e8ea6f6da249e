"""``masktrack compose`` and ``masktrack preview``."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click


def _parse_expr_option(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, expr = v.partition("=")
        name = name.strip()
        if not sep or not name or not expr.strip():
            raise click.BadParameter(f"expected NAME=EXPR, got {v!r}", param_hint="--expr")
        out[name] = expr.strip()
    return out


@click.command("compose")
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--only", multiple=True, metavar="NAME", help="Compute only this output (repeatable).")
@click.option(
    "--expr", "exprs", multiple=True, metavar="NAME=EXPR",
    help="Add or replace an output (repeatable); without --only, only these outputs are computed.",
)  # fmt: skip
@click.option("--force", is_flag=True, help="Recompute every frame even when the stored frames match.")
@click.option("--packed", is_flag=True, help="Also write bit-packed .npz frames (composed/<name>.packed/).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Threads for evaluation and PNG encoding [default: usable cores, at most 4].",
)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def compose(
    config: Path,
    only: tuple[str, ...],
    exprs: tuple[str, ...],
    force: bool,
    packed: bool,
    workers: int | None,
    no_progress: bool,
) -> None:
    """Compose session masks into named outputs and export PNG folders for inpainting.

    Each output of CONFIG's `compose:` section (or of --expr) becomes
    OUTPUT/composed/<name>/00000.png, 00001.png, ... (8-bit, 0 or 255), the
    folder layout ProPainter's --mask expects.  Re-runs skip frames already
    written for the same expression and input masks; an interrupted run
    resumes.  Statistics land in OUTPUT/composed/summary.json.

    \b
    Expressions:
      session.object   one object      object   (if only one session has it)
      session.*        all objects     session  (union of its objects)
      a | b  union      a & b  intersection      a - b  difference
      dilate(x, r)  erode(x, r)  (square (2r+1)x(2r+1); add `, disk` for a disk)
      fill_holes(x)  remove_small(x, min_area)  (8-connected components)
      x?  or  optional(x)   x may be empty over the whole video
    A reference empty in every frame is an error (wrong object ids?) unless
    marked optional.  Precedence as in Python: '-' before '&' before '|'.

    \b
    Examples:
      masktrack compose job.yaml
      masktrack compose job.yaml --only arm_only --force
      masktrack compose job.yaml --expr 'arm_only=dilate(arm, 15) - dilate(gripper, 15)'
      masktrack compose job.yaml --expr 'robot=arm | gripper_left? | gripper_right?' --packed
    """
    import contextlib

    from rich.console import Console
    from rich.table import Table

    from masktrack.cli.progress import rich_progress
    from masktrack.config import ComposeOutput, load_config
    from masktrack.masks.export import run_compose

    cfg = load_config(config)
    extra = _parse_expr_option(exprs)
    for name, e in extra.items():
        cfg.compose[name] = ComposeOutput(
            expr=e, packed=cfg.compose[name].packed if name in cfg.compose else False
        )
    names = list(only) or list(extra) or None
    bars: Any = contextlib.nullcontext(None) if no_progress else rich_progress(Console(stderr=True))
    with bars as on_event:
        report = run_compose(
            cfg,
            names=names,
            force=force,
            progress=on_event,
            packed=True if packed else None,
            workers=workers,
            origins={n: f"--expr {n}" for n in extra},
        )
    table = Table(title=f"composed outputs ({report.summary_path})")
    for col in ("output", "frames", "written", "skipped", "empty frames", "mean pixels"):
        table.add_column(col)
    for o in report.outputs:
        table.add_row(
            o.name,
            str(o.num_frames),
            str(o.written),
            str(o.skipped),
            str(len(o.empty_frames)),
            f"{o.mean_pixels:.0f}",
        )
    Console().print(table)
    for o in report.outputs:
        click.echo(f"{o.name}: {o.folder}")
        if len(o.empty_frames) == o.num_frames:
            click.echo(f"warning: output {o.name!r} is empty in every frame", err=True)


@click.command("preview")
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--session", "sessions", multiple=True, metavar="S", help="Preview this session (repeatable).")
@click.option(
    "--output", "outputs", multiple=True, metavar="NAME", help="Preview this composed output (repeatable)."
)
@click.option(
    "--every",
    type=click.IntRange(1),
    default=None,
    help="Take every N-th frame for the contact sheet [default: spread the tiles over the video].",
)
@click.option(
    "--max-tiles",
    type=click.IntRange(1),
    default=12,
    show_default=True,
    help="At most this many tiles on the sheet.",
)
@click.option("--columns", type=click.IntRange(1), default=3, show_default=True, help="Tiles per row.")
@click.option(
    "--tile-width",
    type=click.IntRange(64),
    default=360,
    show_default=True,
    help="Width of each half (original, overlay) of a tile, pixels.",
)
@click.option(
    "--video/--no-video",
    default=True,
    show_default=True,
    help="Also write an overlay MP4 of the whole video.",
)
@click.option(
    "--video-width",
    type=click.IntRange(64),
    default=960,
    show_default=True,
    help="Downscale the MP4 to at most this width.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder for the files [default: OUTPUT/previews].",
)
@click.option("--no-progress", is_flag=True, help="No progress bars (one result line per preview only).")
def preview(
    config: Path,
    sessions: tuple[str, ...],
    outputs: tuple[str, ...],
    every: int | None,
    max_tiles: int,
    columns: int,
    tile_width: int,
    video: bool,
    video_width: int,
    out_dir: Path | None,
    no_progress: bool,
) -> None:
    """Contact sheet PNG and overlay MP4 of a session's masks or a composed output.

    The sheet shows each picked frame as original | coloured overlay, with the
    frame number and a legend of object names; open it before spending GPU
    hours on inpainting.  Without --session/--output, previews every session
    with masks and every complete composed output.

    \b
    Examples:
      masktrack preview job.yaml
      masktrack preview job.yaml --session gripper --every 10 --no-video
      masktrack preview job.yaml --output arm_only --max-tiles 24
    """
    from masktrack.config import load_config
    from masktrack.masks.export import composed_outputs
    from masktrack.masks.store import MaskStore
    from masktrack.viz.preview import preview_composed, preview_session

    cfg = load_config(config)
    if not sessions and not outputs:
        stored = set(MaskStore(cfg.output).sessions())
        sessions = tuple(s.name for s in cfg.sessions if s.name in stored)
        outputs = tuple(composed_outputs(cfg.output))
        if not sessions and not outputs:
            from masktrack.errors import StoreError

            raise StoreError(
                "nothing to preview: no session masks or composed outputs (run `masktrack segment` first)",
                path=cfg.output,
            )
    kw: dict[str, Any] = dict(
        every=every,
        max_tiles=max_tiles,
        columns=columns,
        tile_width=tile_width,
        video_width=video_width,
        video=video,
        out_dir=out_dir,
    )
    for s in sessions:
        cfg.session(s)  # a clear error for an unknown name
        with _bar(f"session {s}", not no_progress) as cb:
            p = preview_session(cfg, s, **kw, progress=cb)
        click.echo(
            f"session {s}: {p.sheet} ({len(p.tiles)} tiles)" + (f", {p.video} ({p.codec})" if p.video else "")
        )
    for o in outputs:
        with _bar(f"composed {o}", not no_progress) as cb:
            p = preview_composed(cfg, o, **kw, progress=cb)
        click.echo(
            f"composed {o}: {p.sheet} ({len(p.tiles)} tiles)"
            + (f", {p.video} ({p.codec})" if p.video else "")
        )


@contextmanager
def _bar(what: str, enabled: bool):
    """A rich progress bar on stderr for one preview; yields its ``progress(done, total)`` callback."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bars:
        task = bars.add_task(escape(what), total=None)
        yield lambda done, total: bars.update(task, completed=done, total=total)

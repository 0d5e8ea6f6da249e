"""``masktrack demo``: the whole job on a synthetic robot scene, no weights, no GPU, no data needed."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path), default=Path("masktrack-demo"))
@click.option("--small", is_flag=True, help="A smaller, quicker scene (3 cameras, 256x192, 40 frames).")
@click.option("--force", is_flag=True, help="Redo every stage even if its outputs are current.")
@click.option(
    "--frames", type=click.IntRange(2, 2000), default=None, help="Number of frames (default 48; --small: 40)."
)
@click.option("--size", type=str, default=None, metavar="WxH", help="Image size (default 320x240).")
@click.option(
    "--cameras", type=click.IntRange(1, 4), default=None, help="Number of cameras, 1..4 (default 4)."
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Scene seed (textures, object placement, camera jitter).",
)
@click.option(
    "--backend",
    default="classic",
    show_default=True,
    help="Segmentation backend of both sessions (see `masktrack backends`).",
)
@click.option("--json", "json_out", is_flag=True, help="Print report.json to stdout instead of tables.")
def demo(
    out: Path,
    small: bool,
    force: bool,
    frames: int | None,
    size: str | None,
    cameras: int | None,
    seed: int,
    backend: str,
    json_out: bool,
) -> None:
    """Render a synthetic multi-view RGB-D robot scene into OUT and run the whole job on it.

    \b
    Stages: generate -> prompts (clicks derived from ground truth) -> segment
    (sessions `arm` and `gripper`, classic backend, per camera) -> compose
    (arm_only) -> previews -> scene instances -> flow tracking -> Rerun
    recordings -> evaluation vs ground truth (J&F, 3D track error).
    Every stage resumes: a second run reuses everything and says so.

    \b
    Outputs in OUT: report.json, <cam>.yaml + prompts/, out/<cam>/ (masks,
    composed PNGs, previews/), tracks/ (per-instance tracks, rerun/combined.rrd).
    View with: masktrack view OUT/tracks
    Exit code 1 when a quality check fails.
    """
    import json

    from rich.console import Console

    from masktrack.demo import DEMO_SMALL, report_tables, run_demo
    from masktrack.errors import ConfigError
    from masktrack.synth import SynthConfig

    base = DEMO_SMALL if small else SynthConfig()
    kw = {"seed": seed}
    if frames is not None:
        kw["frames"] = frames
    if cameras is not None:
        kw["cameras"] = cameras
    if size is not None:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"expected WxH like 320x240, got {size!r}", field="--size") from None
        if w < 64 or h < 48:
            raise ConfigError(f"at least 64x48, got {size!r}", field="--size")
        kw["width"], kw["height"] = w, h
    import dataclasses

    cfg = dataclasses.replace(base, **kw)
    console = Console(stderr=True)
    report = run_demo(out, config=cfg, backend=backend, force=force, progress=True, console=console)
    if json_out:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        out_console = Console()
        for t in report_tables(report):
            out_console.print(t)
        out_console.print(
            f"report: {out / 'report.json'}   recordings: {out / 'tracks' / 'rerun' / 'combined.rrd'}   (masktrack view {out / 'tracks'})"
        )
        if report.reused_all:
            out_console.print("[green]everything reused[/]: all stages were up to date (use --force to redo)")
    if not report.passed:
        raise click.exceptions.Exit(1)

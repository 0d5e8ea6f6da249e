"""``masktrack demo``: the whole job on a synthetic robot scene, no weights, no GPU, no data needed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from masktrack.demo import DemoReport


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
    default=None,
    help="Segmentation backend of both sessions (see `masktrack backends`; default: bilateral, or with"
    " --prompts kinematics the weight-free kinematic prior); checked before anything is made.",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Model checkpoint of --backend (e.g. sam2.1_hiera_tiny.pt for sam2); same as -o checkpoint=PATH.",
)
@click.option(
    "--option",
    "-o",
    "backend_opts",
    multiple=True,
    metavar="KEY=VALUE",
    help="Backend option (JSON value), e.g. -o config=configs/sam2.1/sam2.1_hiera_t.yaml.",
)
@click.option(
    "--prompts",
    "prompt_source",
    type=click.Choice(["clicks", "kinematics"]),
    default="clicks",
    show_default=True,
    help="clicks: derived from ground truth, as a person would click; kinematics: zero clicks, prompts "
    "rendered from the robot's URDF + joint states.",
)
@click.option(
    "--sensor",
    type=click.Choice(["none", "realsense-d435", "azure-kinect"]),
    default="none",
    show_default=True,
    help="Depth/colour sensor model of the rendered cameras (noise, holes, flying pixels; GT stays exact).",
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
    backend: str | None,
    checkpoint: Path | None,
    backend_opts: tuple[str, ...],
    prompt_source: str,
    sensor: str,
    json_out: bool,
) -> None:
    """Render a synthetic multi-view RGB-D robot scene into OUT and run the whole job on it.

    \b
    Stages: generate -> prompts (clicks derived from ground truth) -> segment
    (sessions `arm` and `gripper`, bilateral backend, per camera) -> compose
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

    from masktrack.demo import DEMO_SMALL, Stage, run_demo
    from masktrack.errors import ConfigError
    from masktrack.plugins import parse_option_values
    from masktrack.synth import SynthConfig

    base = DEMO_SMALL if small else SynthConfig()
    kw: dict = {"seed": seed, "sensor": sensor}
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
    options = parse_option_values(backend_opts)
    if checkpoint is not None:
        options["checkpoint"] = str(checkpoint.resolve())
    console = Console(stderr=True)

    def say(s: Stage) -> None:
        colour = "green" if s.status == "reused" else "cyan"
        console.print(
            f"[bold]{s.stage:<9}[/bold] {s.target:<22} [{colour}]{s.status}[/] {s.seconds:6.1f} s  {s.detail}"
        )

    report = run_demo(
        out,
        config=cfg,
        backend=backend,
        backend_options=options,
        force=force,
        progress=say,
        prompts=prompt_source,
    )
    if json_out:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        out_console = Console()
        for t in report_tables(report):
            out_console.print(t)
        out_console.print(
            f"report: {out / 'report.json'}   recordings: {out / 'tracks' / 'rerun' / 'combined.rrd'}   (masktrack view {out / 'tracks'})"
        )
        out_console.print(f"prompt source: {report.prompt_source}, {report.clicks} clicks")
        if report.reused_all:
            out_console.print("[green]everything reused[/]: all stages were up to date (use --force to redo)")
    if not report.passed:
        raise click.exceptions.Exit(1)


def report_tables(report: DemoReport) -> list[Any]:
    """Rich tables: stages (with computed/reused), mask J&F, track errors, checks."""
    from rich.table import Table

    stages = Table(title="masktrack demo: stages")
    for col in ("stage", "target", "status", "seconds", "detail"):
        stages.add_column(col, justify="right" if col == "seconds" else "left")
    for s in report.stages:
        stages.add_row(
            s.stage,
            s.target,
            f"[green]{s.status}[/]" if s.status == "reused" else f"[cyan]{s.status}[/]",
            f"{s.seconds:.1f}",
            s.detail,
        )

    masks = Table(title="masks vs ground truth (DAVIS J&F, all frames)")
    cams = list(dict.fromkeys(m.camera for m in report.masks))
    masks.add_column("mask")
    for c in cams:
        masks.add_column(c, justify="right")
    masks.add_column("mean J&F", justify="right")
    for name in dict.fromkeys(m.mask for m in report.masks):
        row = {m.camera: m for m in report.masks if m.mask == name}
        masks.add_row(
            name, *[f"{row[c].jf:.3f}" if c in row else "-" for c in cams], f"[bold]{report.jf(name):.3f}[/]"
        )

    tr = Table(title="3D tracks vs ground truth (flow tracker)")
    for col in ("instance", "queries", "median", "p90", "median (visible)", "on instance"):
        tr.add_column(col, justify="left" if col == "instance" else "right")
    for t in report.tracks:
        tr.add_row(
            t.instance,
            str(t.queries),
            f"{100 * t.median_m:.2f} cm",
            f"{100 * t.p90_m:.2f} cm",
            f"{100 * t.median_visible_m:.2f} cm",
            f"{100 * t.on_instance:.0f}%",
        )

    checks = Table(
        title=f"checks ({report.seconds:.1f} s total; prompt source {report.prompt_source}, "
        f"{report.clicks} clicks)"
    )
    checks.add_column("check")
    checks.add_column("result")
    for k, v in report.checks().items():
        checks.add_row(k, "[green]pass[/]" if v else "[red]FAIL[/]")
    return [stages, masks, tr, checks]

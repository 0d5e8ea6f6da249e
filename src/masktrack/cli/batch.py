"""``masktrack batch``: one pipeline config over a whole dataset."""

from __future__ import annotations

from pathlib import Path

import click

STATUS_STYLE = {
    "computed": "green",
    "repaired": "green",
    "reused": "cyan",
    "skipped": "yellow",
    "failed": "red",
}


@click.command("batch")
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--scenes",
    "scenes",
    default=None,
    help="Scene folders: a glob, a comma-separated list, or @FILE (one per line). Default: discover with the job's `scenes` pattern.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("batch_out"),
    show_default=True,
    help="Batch output folder (the {out} placeholder; state and report go here).",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: process pool on this machine; ray: one Ray task per unit.",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="local engine: number of CPU worker processes (default: one per GPU, else 1).",
)
@click.option(
    "--gpus",
    default=None,
    help="local engine: GPU indices to use, one worker each, e.g. 0,1,2,3 (default: all visible).",
)
@click.option(
    "--ray-address",
    default=None,
    help="ray engine: cluster address (e.g. ray://head:10001 or auto); default starts a local Ray.",
)
@click.option("--num-gpus", type=float, default=None, help="ray engine: GPUs per unit (default 0).")
@click.option("--retry-failed", is_flag=True, help="Run again the units whose last run failed.")
@click.option("--dry-run", is_flag=True, help="List the units and what would run, then stop.")
def batch(
    job_file: Path,
    scenes: str | None,
    out: Path,
    engine: str,
    workers: int | None,
    gpus: str | None,
    ray_address: str | None,
    num_gpus: float | None,
    retry_failed: bool,
    dry_run: bool,
) -> None:
    """Run JOB_FILE's pipeline on every scene and camera, resumably.

    \b
    Each unit (one camera video of one scene) runs the job's stages
    (segment, compose) with their own resume logic; with a `track` stage,
    each scene then gets one unit that turns its cameras' masks into scene
    instances and tracks them in 3D.  Finished units are not dispatched again.  A unit with missing or invalid prompts is reported as
    skipped and the batch goes on.  Per-unit logs: OUT/batch/logs/; summary:
    OUT/batch_report.json.

    \b
    Example job file (AirExo-2 layout <task>/train/<scene>/cam_<serial>/color):
      root: /data/airexo2
      scenes: "{task}/train/{scene}"
      cameras: "cam_*"
      video: "{scene_dir}/{camera}/color"
      prompts: "{scene_dir}/{camera}/prompts.json"
      output: "{out}/{task}/{scene}/{camera}"
      pipeline: {sessions: [...], compose: {...}}
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from masktrack.batch.job import expand_scene_units, expand_units, load_job, parse_scene_list
    from masktrack.batch.run import plan, run_batch

    console = Console(stderr=True)
    job = load_job(job_file)
    scene_arg = parse_scene_list(scenes)
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None

    if dry_run:
        units = expand_units(job, out.resolve(), scene_arg)
        tasks, carried = plan(job, out.resolve(), units, retry_failed=retry_failed)
        table = Table(title=f"{len(units)} units: {len(tasks)} to run, {len(carried)} carried over")
        for col in ("unit", "video", "prompts", "output", "action"):
            table.add_column(col, overflow="fold")  # paths are never cut
        todo = {t.unit.id for t in tasks}
        for u in units:
            table.add_row(
                u.id,
                str(u.video),
                str(u.prompts or "-"),
                str(u.output),
                "run" if u.id in todo else "skip (done)",
            )
        for su in expand_scene_units(job, out.resolve(), units):
            table.add_row(su.id, str(su.scene_path), "-", str(su.output), "track, after its cameras")
        out_console = Console()
        if (
            not out_console.is_terminal
        ):  # a pipe or a file: full paths on one line each, whatever COLUMNS says
            out_console = Console(width=max(out_console.width, Console(width=100_000).measure(table).maximum))
        out_console.print(table)
        return

    with Progress(
        TextColumn("[bold]batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    ) as progress:
        bar = progress.add_task("", total=None)

        def on_result(r, n, total):
            style = STATUS_STYLE.get(r.status, "white")
            progress.update(bar, completed=n, total=total, description=f"[{style}]{r.status}[/] {r.id}")
            if r.status != "reused":
                progress.console.print(f"[{style}]{r.status:>7}[/] {r.id}  {r.seconds:6.1f}s  {r.reason}")
            if r.retries:
                progress.console.print(
                    f"[yellow]retried[/] {r.id}: lost on {', '.join(r.retries)}; finished on {r.worker}"
                )

        report = run_batch(
            job,
            out,
            scenes=scene_arg,
            engine=engine,  # type: ignore[arg-type]
            workers=workers,
            gpus=gpu_list,
            ray_address=ray_address,
            num_gpus=num_gpus,
            retry_failed=retry_failed,
            on_result=on_result,
        )

    table = Table(title=f"batch: {len(report.units)} units in {report.seconds:.1f}s ({report.engine})")
    for col in ("unit", "status", "seconds", "stages", "reason"):
        table.add_column(col)
    for r in report.units:
        style = STATUS_STYLE.get(r.status, "white")
        table.add_row(
            r.id,
            f"[{style}]{r.status}[/]",
            f"{r.seconds:.1f}",
            ", ".join(f"{k}:{v}" for k, v in r.stages.items()),
            r.reason,
        )
    Console().print(table)
    counts = report.to_json()["counts"]
    console.print(
        " ".join(f"{k}={v}" for k, v in counts.items()) + f"  report: {Path(out) / 'batch_report.json'}"
    )
    if counts["failed"]:
        raise SystemExit(1)

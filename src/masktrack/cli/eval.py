"""``masktrack eval``: score masks against ground truth with the DAVIS measures."""

from __future__ import annotations

from pathlib import Path

import click

from masktrack.errors import StoreError


@click.group(name="eval")
def eval_group() -> None:
    """Evaluate masks against ground truth."""


@eval_group.command(name="masks")
@click.argument("pred_dir", type=click.Path(path_type=Path))
@click.argument("gt_dir", type=click.Path(path_type=Path))
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    help="Also write the scores (per frame too) as JSON.",
)
@click.option("--object", "obj", help="Object to score from a mask store (`name` or `session.name`).")
@click.option(
    "--label", type=int, help="Score only this palette index in the PNGs (default: any non-zero pixel)."
)
@click.option(
    "--skip-first-last",
    is_flag=True,
    help="DAVIS semi-supervised protocol: leave out the prompt frame and the last frame.",
)
@click.option("--per-frame", is_flag=True, help="Also print J and F of every frame.")
def masks(
    pred_dir: Path,
    gt_dir: Path,
    json_path: Path | None,
    obj: str | None,
    label: int | None,
    skip_first_last: bool,
    per_frame: bool,
) -> None:
    """Region similarity J and boundary accuracy F (DAVIS) of PRED_DIR against GT_DIR.

    \b
    GT_DIR is a folder of numbered PNG masks (00000.png ...; 0/255 or palette,
    non-zero = object), or a folder of such folders (one per sequence; PRED_DIR
    then has one sub-folder per sequence too).  PRED_DIR is a PNG folder, a
    masktrack output folder, or a sessions/<name> folder of the mask store.

    \b
    Examples:
      masktrack eval masks out/ DAVIS/Annotations/480p/blackswan --object swan
      masktrack eval masks results/ DAVIS/Annotations/480p --skip-first-last --json scores.json
    """
    from masktrack.eval.davis import evaluate_sequence
    from masktrack.eval.masks_io import png_frames, read_masks
    from masktrack.io.atomic import atomic_write_json

    if not gt_dir.is_dir():
        raise StoreError("ground-truth folder not found", path=gt_dir)
    if png_frames(gt_dir):
        pairs = [(gt_dir.name, pred_dir, gt_dir)]
    else:
        seqs = sorted(p for p in gt_dir.iterdir() if p.is_dir() and png_frames(p))
        if not seqs:
            raise StoreError("no numbered .png masks here or in its sub-folders", path=gt_dir)
        pairs = [(s.name, pred_dir / s.name, s) for s in seqs]

    results = []
    for name, pred_path, gt_path in pairs:
        gt = read_masks(gt_path, label=label)
        pred = read_masks(pred_path, obj=obj, label=label)
        if pred.shape != gt.shape:
            raise StoreError(
                f"prediction has {pred.shape[0]} frames of {pred.shape[2]}x{pred.shape[1]}, "
                f"ground truth {gt.shape[0]} of {gt.shape[2]}x{gt.shape[1]} ({gt_path})",
                path=pred_path,
            )
        results.append(evaluate_sequence(pred, gt, skip_first_last=skip_first_last, name=name))

    _print(results, per_frame)
    if json_path is not None:
        means = {k: _mean([getattr(r, k) for r in results]) for k in _KEYS}
        atomic_write_json(
            json_path,
            {
                "pred": str(pred_dir),
                "gt": str(gt_dir),
                "skip_first_last": skip_first_last,
                "mean": means,
                "sequences": [r.to_dict() for r in results],
            },
        )
        click.echo(f"wrote {json_path}")


_KEYS = ("jf_mean", "j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay")


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def _print(results: list, per_frame: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if per_frame:
        for r in results:
            t = Table(title=f"{r.name}: per frame")
            for c in ("frame", "J", "F"):
                t.add_column(c, justify="right")
            for i, j, f in zip(r.frames, r.j, r.f):
                t.add_row(str(i), f"{j:.3f}", f"{f:.3f}")
            console.print(t)
    t = Table(title="DAVIS J&F (J, F: means; rec: fraction of frames > 0.5; dec: decay)")
    t.add_column("sequence", no_wrap=True)
    for c in ("frames", "J&F", "J", "J rec", "J dec", "F", "F rec", "F dec"):
        t.add_column(c, justify="right")
    for r in results:
        t.add_row(r.name, str(len(r.frames)), *(f"{getattr(r, k):.3f}" for k in _KEYS))
    if len(results) > 1:
        t.add_row(
            "mean",
            str(sum(len(r.frames) for r in results)),
            *(f"{_mean([getattr(r, k) for r in results]):.3f}" for k in _KEYS),
            style="bold",
        )
    console.print(t)

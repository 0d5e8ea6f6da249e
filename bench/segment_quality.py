"""Mask quality and speed of the default ``classic`` backend on DAVIS sequences (J&F, frames/s).

For every sequence under ``--data`` (DAVIS layout: ``JPEGImages/480p/<seq>``
and ``Annotations/480p/<seq>``) the backend runs in two modes:

- ``mask``: the first frame's ground-truth mask is the prompt;
- ``points``: 5 positive clicks sampled uniformly inside the first frame's
  ground truth and 5 negative ones outside it (``--seed``, default 0).

It is driven through the Session API and propagated forward from frame 0.
Scores follow the DAVIS semi-supervised protocol (first and last frame not
scored).  fps counts everything the session does per frame (decoding,
keyframe segmentation, flow, re-segmentation), on ONE thread
(``cv2.setNumThreads(1)``) unless ``--threads`` says otherwise.

    python bench/segment_quality.py --json bench-segment.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def sample_clicks(gt: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n positive clicks inside ``gt`` and n negative outside, uniformly, as (x, y) pixel centres."""
    rng = np.random.default_rng(seed)
    ys, xs = np.nonzero(gt)
    i = rng.choice(len(ys), size=min(n, len(ys)), replace=False)
    pos = np.stack([xs[i], ys[i]], 1)
    ys, xs = np.nonzero(~gt)
    i = rng.choice(len(ys), size=min(n, len(ys)), replace=False)
    neg = np.stack([xs[i], ys[i]], 1)
    pts = np.concatenate([pos, neg]).astype(np.float32)
    labels = np.array([1] * len(pos) + [0] * len(neg), np.int32)
    return pts, labels


def run_sequence(
    frames_dir: Path, gt: np.ndarray, mode: str, *, seed: int, options: dict
) -> tuple[np.ndarray, float]:
    """Predicted masks bool [T, H, W] and frames per second."""
    from masktrack.io.video import FrameFolder
    from masktrack.segment.base import FramePrompt, SessionObject
    from masktrack.segment.registry import load_backend

    video = FrameFolder(frames_dir)
    if mode == "mask":
        prompt = FramePrompt(frame=0, object="target", mask=gt[0])
    else:
        pts, labels = sample_clicks(gt[0], 5, seed)
        prompt = FramePrompt(frame=0, object="target", points=pts, labels=labels)
    pred = np.zeros((video.num_frames, video.height, video.width), bool)
    backend = load_backend("classic", **options)
    t0 = time.perf_counter()
    with backend.open_session(video, [SessionObject("target", 1, (255, 0, 0))]) as session:
        session.add_prompt(prompt)
        for f, masks in session.propagate(0):
            pred[f] = masks["target"]
    dt = time.perf_counter() - t0
    backend.close()
    return pred, video.num_frames / dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data" / "davis2016",
        help="DAVIS root (default: ../shared/data/davis2016 beside the repo)",
    )
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument("--modes", default="mask,points", help="comma-separated: mask, points")
    ap.add_argument("--sequences", help="comma-separated subset (default: all)")
    ap.add_argument("--max-frames", type=int, default=0, help="only the first N frames (quick runs)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sampled clicks")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1: the one-core target)")
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backend option, e.g. --option max_side=640 (JSON value)",
    )
    args = ap.parse_args(argv)

    import cv2
    from rich.console import Console
    from rich.table import Table

    from masktrack.eval.davis import evaluate_sequence
    from masktrack.eval.masks_io import read_png_folder

    cv2.setNumThreads(args.threads)
    options = {}
    for kv in args.option:
        k, _, v = kv.partition("=")
        try:
            options[k] = json.loads(v)
        except json.JSONDecodeError:
            options[k] = v
    img_root, ann_root = args.data / "JPEGImages" / "480p", args.data / "Annotations" / "480p"
    if not img_root.is_dir() or not ann_root.is_dir():
        print(
            f"{args.data}: not a DAVIS folder (needs JPEGImages/480p and Annotations/480p)", file=sys.stderr
        )
        return 2
    seqs = sorted(p.name for p in ann_root.iterdir() if p.is_dir())
    if args.sequences:
        seqs = [s for s in seqs if s in args.sequences.split(",")]
    modes = [m for m in args.modes.split(",") if m]

    results: dict = {
        "command": " ".join(["python", "bench/segment_quality.py", *(argv or sys.argv[1:])]),
        "threads": args.threads,
        "options": options,
        "seed": args.seed,
        "protocol": "DAVIS semi-supervised (first and last frame not scored)",
    }
    console = Console()
    for mode in modes:
        per_seq = {}
        total_frames, total_time = 0, 0.0
        for seq in seqs:
            gt = read_png_folder(ann_root / seq)
            frames_dir = img_root / seq
            if args.max_frames:
                gt = gt[: args.max_frames]
                frames_dir = _first_frames(frames_dir, args.max_frames)
            pred, fps = run_sequence(frames_dir, gt, mode, seed=args.seed, options=options)
            sc = evaluate_sequence(pred, gt, skip_first_last=True, name=seq)
            per_seq[seq] = {
                "jf_mean": sc.jf_mean,
                "j_mean": sc.j_mean,
                "f_mean": sc.f_mean,
                "j_recall": sc.j_recall,
                "f_recall": sc.f_recall,
                "j_decay": sc.j_decay,
                "f_decay": sc.f_decay,
                "frames": int(gt.shape[0]),
                "fps": fps,
                "size": [int(gt.shape[2]), int(gt.shape[1])],
            }
            total_frames += gt.shape[0]
            total_time += gt.shape[0] / fps
        mean = {k: float(np.mean([v[k] for v in per_seq.values()])) for k in ("jf_mean", "j_mean", "f_mean")}
        results[mode] = {**mean, "fps": total_frames / total_time, "per_sequence": per_seq}

        t = Table(title=f"classic backend, {mode} prompt (DAVIS J&F, {args.threads} thread)")
        for c in ("sequence", "frames", "J&F", "J", "F", "J recall", "F recall", "fps"):
            t.add_column(c, justify="left" if c == "sequence" else "right", no_wrap=True)
        for s, v in per_seq.items():
            t.add_row(
                s,
                str(v["frames"]),
                f"{v['jf_mean']:.3f}",
                f"{v['j_mean']:.3f}",
                f"{v['f_mean']:.3f}",
                f"{v['j_recall']:.3f}",
                f"{v['f_recall']:.3f}",
                f"{v['fps']:.1f}",
            )
        t.add_row(
            "mean",
            str(total_frames),
            f"{mean['jf_mean']:.3f}",
            f"{mean['j_mean']:.3f}",
            f"{mean['f_mean']:.3f}",
            "",
            "",
            f"{results[mode]['fps']:.1f}",
            style="bold",
        )
        console.print(t)
    if args.json:
        from masktrack.io.atomic import atomic_write_json

        atomic_write_json(args.json, results)
        console.print(f"wrote {args.json}")
    return 0


def _first_frames(folder: Path, n: int) -> Path:
    """A temp folder of symlinks to the first ``n`` frames (FrameFolder reads all numbered images)."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="segq-"))
    files = sorted((p for p in folder.iterdir() if p.stem.isdigit()), key=lambda p: int(p.stem))[:n]
    for p in files:
        (tmp / p.name).symlink_to(p)
    return tmp


if __name__ == "__main__":
    sys.exit(main())

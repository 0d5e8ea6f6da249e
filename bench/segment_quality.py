"""Mask quality and speed of a weight-free backend (default ``bilateral``) on DAVIS and RLBench.

For every sequence under ``--data`` (DAVIS layout: ``JPEGImages/480p/<seq>``
and ``Annotations/480p/<seq>``) the backend runs, through the Session API,
propagating forward from frame 0, in two modes:

- ``mask``: the first frame's ground-truth mask is the prompt;
- ``points``: 5 positive clicks sampled uniformly inside the first frame's
  ground truth and 5 negative ones outside it, drawn ``--draws`` times
  (seeds ``--seed`` .. ``--seed + draws - 1``, default 0, 1, 2) and the
  scores averaged: which random clicks a sequence gets moves its J&F by up to
  +-0.2 and the eight-sequence mean by +-0.035, more than most changes one
  would compare (``jf_per_draw`` keeps each draw's mean).
  The ``points`` section also reports the interactive protocol on frame 0:
  **NoC@85 / NoC@90**, the number of clicks until J >= 0.85 / 0.90 (first
  click at the interior point farthest from the boundary, each next one at
  the interior point of the largest error region, positive on a miss and
  negative on a false positive, at most 20; 20 when never reached), and the
  J&F after propagating from the clicks that reached 0.85 (``jf_noc85``).

The JSON also holds, per sequence and mode, ``per_frame``: J of every
frame and its false positives and misses as fractions of the ground-truth
area (where a sequence is lost, and whether by drift or by dropped parts).

Scores follow the DAVIS semi-supervised protocol (first and last frame not
scored).  ``--rlbench NPZ`` adds the robot arm of an RLBench episode,
segmented from 5 interactive-protocol clicks on frame 0 in every camera whose
frame 0 shows it, scored against ``gt_masks_arm``.

Speed counts everything the session does per frame (decoding, keyframe
segmentation, flow, labelling) on ONE thread (``cv2.setNumThreads(1)``); it is
reported as wall-clock fps and as fps of the process's CPU time (what one
core achieves; the dev box is shared, so wall time depends on the load,
which is reported too).

``--grid "key=v1,v2 key2=v3,v4"`` evaluates every combination of options;
the report then chooses the combination with the best mean J&F (mask and
points averaged) over all sequences (in-sample) and, for every sequence,
the best over the *other* sequences (leave-one-out), and prints both.

    python bench/segment_quality.py --json bench-segment.json
    python bench/segment_quality.py --grid "w_colour=0.25,0.5 smooth=0.5,1" --jobs 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGETS = {
    "mask_jf": 0.70,
    "points_jf": 0.60,
    "loo_gap": 0.03,
    "noc85": 8.0,
    "rlbench_arm_jf": 0.80,
    "fps": 5.0,
}
MAX_CLICKS = 20


# -- clicks ------------------------------------------------------------------


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


def interior_point(region: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel of ``region`` farthest from its boundary (the image border counts as boundary)."""
    import cv2

    pad = np.pad(region.astype(np.uint8), 1)
    d = cv2.distanceTransform(pad, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(x), int(y)


def next_click(pred: np.ndarray, gt: np.ndarray) -> tuple[tuple[int, int], int] | None:
    """The interactive protocol's next click: interior of the largest error region, 1 on a miss, 0 on a false positive."""
    import cv2

    best: tuple[int, np.ndarray, int] | None = None
    for err, label in ((gt & ~pred, 1), (pred & ~gt, 0)):
        n, lab, stats, _ = cv2.connectedComponentsWithStats(err.astype(np.uint8), connectivity=8)
        if n <= 1:
            continue
        i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        a = int(stats[i, cv2.CC_STAT_AREA])
        if best is None or a > best[0]:
            best = (a, lab == i, label)
    if best is None:
        return None
    return interior_point(best[1]), best[2]


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    u = np.count_nonzero(a | b)
    return 1.0 if u == 0 else float(np.count_nonzero(a & b) / u)


def interactive_clicks(
    video, gt0: np.ndarray, backend_name: str, options: dict, thresholds=(0.85, 0.9), max_clicks=MAX_CLICKS
) -> tuple[dict[float, int], dict[float, tuple[np.ndarray, np.ndarray]], list[float]]:
    """Clicks on frame 0 by the interactive protocol until J reaches every threshold (or ``max_clicks``).

    Returns the number of clicks per threshold (``max_clicks`` when never
    reached), the clicks at that point, and J after every click.
    """
    from masktrack.segment.base import FramePrompt, SessionObject
    from masktrack.segment.registry import load_backend

    pts: list[tuple[int, int]] = [interior_point(gt0)]
    labels = [1]
    noc: dict[float, int] = {}
    sets: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    js: list[float] = []
    backend = load_backend(backend_name, **options)
    while True:
        with backend.open_session(video, [SessionObject("target", 1, (255, 0, 0))]) as s:
            s.add_prompt(
                FramePrompt(
                    frame=0, object="target", points=np.array(pts, np.float32), labels=np.array(labels)
                )
            )
            pred = next(iter(s.propagate(0)))[1]["target"]
        j = _jaccard(pred, gt0)
        js.append(j)
        for th in thresholds:
            if th not in noc and (j >= th or len(pts) >= max_clicks):
                noc[th] = len(pts) if j >= th else max_clicks
                sets[th] = (np.array(pts, np.float32), np.array(labels, np.int32))
        if len(noc) == len(thresholds):
            break
        c = next_click(pred, gt0)
        if c is None:
            break
        pts.append(c[0])
        labels.append(c[1])
    for th in thresholds:  # nothing left to correct (a perfect mask)
        if th not in noc:
            noc[th] = len(pts)
            sets[th] = (np.array(pts, np.float32), np.array(labels, np.int32))
    backend.close()
    return noc, sets, js


# -- running -----------------------------------------------------------------


class ArrayVideo:
    """An in-memory RGB video (RLBench cameras), enough of ``VideoSource`` for the backends."""

    def __init__(self, frames: np.ndarray, name: str) -> None:
        from masktrack.io.video import VideoSource

        self._frames = frames
        self.path = Path(name)
        self.num_frames, self.height, self.width = frames.shape[:3]
        VideoSource.register(type(self))

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, i: int) -> np.ndarray:
        return self._frames[i]

    read = __getitem__

    def content_hash(self) -> str:
        return self.path.name


def propagate(video, prompt, backend_name: str, options: dict) -> tuple[np.ndarray, float, float]:
    """Predicted masks bool [T, H, W], wall-clock fps and CPU-time fps of this process."""
    from masktrack.segment.base import SessionObject
    from masktrack.segment.registry import load_backend

    pred = np.zeros((video.num_frames, video.height, video.width), bool)
    backend = load_backend(backend_name, **options)
    t0, c0 = time.perf_counter(), time.process_time()
    with backend.open_session(video, [SessionObject("target", 1, (255, 0, 0))]) as session:
        session.add_prompt(prompt)
        for f, masks in session.propagate(0):
            pred[f] = masks["target"]
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    backend.close()
    return pred, video.num_frames / dt, video.num_frames / max(dc, 1e-9)


def scores(pred: np.ndarray, gt: np.ndarray, name: str) -> dict:
    from masktrack.eval.davis import evaluate_sequence

    sc = evaluate_sequence(pred, gt, skip_first_last=True, name=name)
    return {
        "jf_mean": sc.jf_mean,
        "j_mean": sc.j_mean,
        "f_mean": sc.f_mean,
        "j_recall": sc.j_recall,
        "f_recall": sc.f_recall,
        "j_decay": sc.j_decay,
        "f_decay": sc.f_decay,
    }


def per_frame(pred: np.ndarray, gt: np.ndarray) -> dict[str, list[float]]:
    """J of every frame and its false positives / misses as fractions of the ground-truth area (where it
    is lost, and how: drift onto the background or parts dropped)."""
    area = np.maximum(1, gt.reshape(len(gt), -1).sum(axis=1))
    fp = (pred & ~gt).reshape(len(gt), -1).sum(axis=1) / area
    fn = (gt & ~pred).reshape(len(gt), -1).sum(axis=1) / area
    return {
        "j": [round(_jaccard(p, g), 4) for p, g in zip(pred, gt)],
        "fp": [round(float(x), 4) for x in fp],
        "fn": [round(float(x), 4) for x in fn],
    }


def run_davis(task: tuple) -> tuple:
    """One (config, sequence, mode) of the DAVIS part; runs in a worker process."""
    ci, options, backend_name, data, seq, mode, seed, draws, max_frames, threads = task
    import cv2

    from masktrack.eval.masks_io import read_png_folder
    from masktrack.io.video import FrameFolder
    from masktrack.segment.base import FramePrompt

    cv2.setNumThreads(threads)
    img_root, ann_root = data / "JPEGImages" / "480p", data / "Annotations" / "480p"
    gt = read_png_folder(ann_root / seq)
    frames_dir = img_root / seq
    if max_frames:
        gt = gt[:max_frames]
        frames_dir = _first_frames(frames_dir, max_frames)
    video = FrameFolder(frames_dir)
    extra: dict = {}
    if mode == "mask":
        prompts = [FramePrompt(frame=0, object="target", mask=gt[0])]
    else:
        prompts = []
        for s in range(seed, seed + max(1, draws)):
            pts, labels = sample_clicks(gt[0], 5, s)
            prompts.append(FramePrompt(frame=0, object="target", points=pts, labels=labels))
    runs = [propagate(video, p, backend_name, options) for p in prompts]
    per_draw = [scores(pred, gt, seq) for pred, _, _ in runs]
    res = {k: float(np.mean([d[k] for d in per_draw])) for k in per_draw[0]}
    res["frames"] = n = int(gt.shape[0])
    res["fps"] = n * len(runs) / sum(n / r[1] for r in runs)  # over every draw's run
    res["cpu_fps"] = n * len(runs) / sum(n / r[2] for r in runs)
    res["size"] = [int(gt.shape[2]), int(gt.shape[1])]
    res["per_frame"] = per_frame(runs[0][0], gt)  # the first draw's
    if mode == "points":
        res["jf_per_draw"] = [d["jf_mean"] for d in per_draw]
        noc, sets, js = interactive_clicks(video, gt[0], backend_name, options)
        p85 = FramePrompt(frame=0, object="target", points=sets[0.85][0], labels=sets[0.85][1])
        pred85, _, _ = propagate(video, p85, backend_name, options)
        extra = {
            "noc85": noc[0.85],
            "noc90": noc[0.9],
            "j_per_click": [round(j, 4) for j in js],
            "jf_noc85": scores(pred85, gt, seq)["jf_mean"],
        }
    return ci, seq, mode, {**res, **extra}


def run_rlbench(task: tuple) -> tuple:
    """The arm in every camera of an RLBench episode that sees it on frame 0, from 5 protocol clicks."""
    ci, options, backend_name, npz, threads = task
    import cv2

    from masktrack.segment.base import FramePrompt

    cv2.setNumThreads(threads)
    d = np.load(npz)
    rgbs, arm = d["rgbs"], d["gt_masks_arm"]
    cams = [str(c) for c in d["camera_ids"]]
    per_cam = {}
    for c, cam in enumerate(cams):
        gt = arm[c].astype(bool)
        if gt[0].sum() < 20:
            continue  # the camera does not see the arm on frame 0
        video = ArrayVideo(np.ascontiguousarray(rgbs[c].transpose(0, 2, 3, 1)), f"rlbench-{cam}")
        _, sets, js = interactive_clicks(video, gt[0], backend_name, options, thresholds=(2.0,), max_clicks=5)
        pts, labels = sets[2.0]  # a threshold never reached: the 5 protocol clicks
        prompt = FramePrompt(frame=0, object="target", points=pts, labels=labels)
        pred, fps, cpu_fps = propagate(video, prompt, backend_name, options)
        per_cam[cam] = {**scores(pred, gt, cam), "frame0_j": js[-1], "frames": int(gt.shape[0])}
    return ci, "rlbench", "arm", per_cam


# -- reporting ----------------------------------------------------------------


def parse_grid(spec: str | None, base: dict) -> list[dict]:
    if not spec:
        return [dict(base)]
    keys, values = [], []
    for part in spec.split():
        k, _, vs = part.partition("=")
        keys.append(k)
        values.append([_json_value(v) for v in vs.split(",")])
    return [{**base, **dict(zip(keys, combo))} for combo in itertools.product(*values)]


def _json_value(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def leave_one_out(per: dict, seqs: list[str], modes: list[str]) -> dict:
    """In-sample and leave-one-out mean J&F per mode.

    ``per[ci][mode][seq]`` are results; a configuration is chosen by its mean
    J&F over modes and sequences (all of them in-sample; all but the scored
    one for leave-one-out).
    """

    def score(ci: int, seqs_: list[str]) -> float:
        return float(np.mean([per[ci][m][s]["jf_mean"] for m in modes for s in seqs_]))

    configs = sorted(per)
    best = max(configs, key=lambda ci: (score(ci, seqs), -ci))
    loo_choice = {s: max(configs, key=lambda ci: (score(ci, [x for x in seqs if x != s]), -ci)) for s in seqs}
    out: dict = {"in_sample_config": best, "loo_config": loo_choice}
    for m in modes:
        ins = float(np.mean([per[best][m][s]["jf_mean"] for s in seqs]))
        loo = float(np.mean([per[loo_choice[s]][m][s]["jf_mean"] for s in seqs]))
        out[m] = {"in_sample": ins, "loo": loo, "gap": ins - loo}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data" / "davis2016",
        help="DAVIS root (default: ../shared/data/davis2016 beside the repo)",
    )
    ap.add_argument(
        "--rlbench",
        type=Path,
        default=REPO.parent / "shared" / "data" / "rlbench" / "reach_target_episode0.npz",
        help="RLBench episode NPZ for the arm benchmark ('' to skip; skipped when absent)",
    )
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument("--backend", default="bilateral", help="segmentation backend (default: bilateral)")
    ap.add_argument("--modes", default="mask,points", help="comma-separated: mask, points")
    ap.add_argument("--sequences", help="comma-separated subset (default: all)")
    ap.add_argument("--max-frames", type=int, default=0, help="only the first N frames (quick runs)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first draw of sampled clicks")
    ap.add_argument(
        "--draws", type=int, default=3, help="draws of 5+5 random clicks per sequence, scores averaged"
    )
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1: the one-core target)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (each single-threaded)")
    ap.add_argument("--grid", help='options to search, e.g. "w_colour=0.25,0.5 smooth=0.5,1"')
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backend option, e.g. --option max_side=640 (JSON value)",
    )
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    base = {}
    for kv in args.option:
        k, _, v = kv.partition("=")
        base[k] = _json_value(v)
    configs = parse_grid(args.grid, base)
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
    rl = args.rlbench if args.rlbench and str(args.rlbench) and args.rlbench.is_file() else None

    tasks = [
        (ci, o, args.backend, args.data, s, m, args.seed, args.draws, args.max_frames, args.threads)
        for ci, o in enumerate(configs)
        for m in modes
        for s in seqs
    ]
    rl_tasks = [(ci, o, args.backend, rl, args.threads) for ci, o in enumerate(configs)] if rl else []
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    if args.jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(args.jobs) as pool:
            rl_async = [pool.apply_async(run_rlbench, (t,)) for t in rl_tasks]
            outs = pool.map(run_davis, tasks, chunksize=1)
            rl_outs = [r.get() for r in rl_async]
    else:
        outs = [run_davis(t) for t in tasks]
        rl_outs = [run_rlbench(t) for t in rl_tasks]
    load_after = os.getloadavg()
    per: dict = {ci: {m: {} for m in modes} for ci in range(len(configs))}
    for ci, seq, mode, res in outs:
        per[ci][mode][seq] = res
    rl_per = {ci: cams for ci, _, _, cams in rl_outs}

    results: dict = {
        "command": " ".join(
            ["python", "bench/segment_quality.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "backend": args.backend,
        "threads": args.threads,
        "jobs": args.jobs,
        "seed": args.seed,
        "draws": args.draws,
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after},
        "seconds": round(time.perf_counter() - t0, 1),
        "protocol": "DAVIS semi-supervised (first and last frame not scored)",
        "targets": TARGETS,
        "configs": configs,
    }
    sel = leave_one_out(per, seqs, modes) if len(seqs) > 1 else {"in_sample_config": 0}
    best = sel["in_sample_config"]
    results["options"] = configs[best]
    results["selection"] = sel
    results["per_config"] = [
        {
            "options": o,
            **{
                m: {
                    "jf_mean": float(np.mean([v["jf_mean"] for v in per[ci][m].values()])),
                    "per_sequence": {s: v["jf_mean"] for s, v in per[ci][m].items()},
                }
                for m in modes
            },
        }
        for ci, o in enumerate(configs)
    ]
    console = Console(width=150)
    for mode in modes:
        ps = per[best][mode]
        frames = sum(v["frames"] for v in ps.values())
        mean = {k: float(np.mean([v[k] for v in ps.values()])) for k in ("jf_mean", "j_mean", "f_mean")}
        sec = {
            **mean,
            "fps": frames / sum(v["frames"] / v["fps"] for v in ps.values()),
            "cpu_fps": frames / sum(v["frames"] / v["cpu_fps"] for v in ps.values()),
            "per_sequence": ps,
        }
        if mode == "points":
            for k in ("noc85", "noc90", "jf_noc85"):
                sec[k] = float(np.mean([v[k] for v in ps.values()]))
            sec["jf_per_draw"] = [float(x) for x in np.mean([v["jf_per_draw"] for v in ps.values()], axis=0)]
        if mode in sel:
            sec["loo_jf_mean"] = sel[mode]["loo"]
        results[mode] = sec
        t = Table(
            title=f"{args.backend} backend, {mode} prompt (DAVIS J&F, {args.threads} thread), {configs[best]}"
        )
        cols = ["sequence", "frames", "J&F", "J", "F", "J recall", "F recall", "fps", "cpu fps"]
        if mode == "points":
            cols += ["NoC@85", "NoC@90", "J&F@NoC85", "J&F per draw"]
        for c in cols:
            t.add_column(c, justify="left" if c == "sequence" else "right", no_wrap=True)

        def row(name: str, v: dict, style: str = "", mode: str = mode, t: Table = t) -> None:
            cells = [
                name,
                str(v["frames"]),
                *(f"{v[k]:.3f}" for k in ("jf_mean", "j_mean", "f_mean")),
                *(f"{v[k]:.3f}" if k in v else "" for k in ("j_recall", "f_recall")),
                f"{v['fps']:.1f}",
                f"{v['cpu_fps']:.1f}",
            ]
            if mode == "points":
                draws = v.get("jf_per_draw", [])
                cells += [f"{v['noc85']:g}", f"{v['noc90']:g}", f"{v['jf_noc85']:.3f}"]
                cells.append(" ".join(f"{x:.3f}" for x in draws))
            t.add_row(*cells, style=style)

        for s, v in ps.items():
            row(s, v)
        row("mean", {**sec, "frames": frames}, style="bold")
        console.print(t)
    if rl_per:
        cams = rl_per[best]
        results["rlbench_arm"] = {
            "jf_mean": float(np.mean([v["jf_mean"] for v in cams.values()])),
            "per_camera": cams,
            "per_config": {
                ci: float(np.mean([v["jf_mean"] for v in c.values()])) for ci, c in rl_per.items()
            },
            "prompt": "5 interactive-protocol clicks on frame 0, every camera that sees the arm",
        }
        t = Table(title="RLBench arm from 5 clicks on frame 0 (J&F)")
        for c in ("camera", "J&F", "J", "F", "frame-0 J"):
            t.add_column(c, justify="right")
        for cam, v in cams.items():
            t.add_row(
                cam, f"{v['jf_mean']:.3f}", f"{v['j_mean']:.3f}", f"{v['f_mean']:.3f}", f"{v['frame0_j']:.3f}"
            )
        t.add_row("mean", f"{results['rlbench_arm']['jf_mean']:.3f}", "", "", "", style="bold")
        console.print(t)

    checks = {}
    if "mask" in results:
        checks[f"DAVIS mask-prompt J&F >= {TARGETS['mask_jf']}"] = (
            results["mask"]["jf_mean"],
            results["mask"]["jf_mean"] >= TARGETS["mask_jf"],
        )
    if "points" in results:
        checks[f"DAVIS points-prompt J&F >= {TARGETS['points_jf']}"] = (
            results["points"]["jf_mean"],
            results["points"]["jf_mean"] >= TARGETS["points_jf"],
        )
        checks[f"NoC@85 <= {TARGETS['noc85']:g}"] = (
            results["points"]["noc85"],
            results["points"]["noc85"] <= TARGETS["noc85"],
        )
    for m in modes:
        if m in sel:
            g = sel[m]["gap"]
            checks[f"{m}: leave-one-out within {TARGETS['loo_gap']} of in-sample"] = (
                sel[m]["loo"],
                g <= TARGETS["loo_gap"],
            )
    if "rlbench_arm" in results:
        v = results["rlbench_arm"]["jf_mean"]
        checks[f"RLBench arm J&F >= {TARGETS['rlbench_arm_jf']}"] = (v, v >= TARGETS["rlbench_arm_jf"])
    if modes:
        fps = min(results[m]["cpu_fps"] for m in modes)
        checks[f"fps (CPU time, 1 thread, 854x480) >= {TARGETS['fps']:g}"] = (fps, fps >= TARGETS["fps"])
    results["checks"] = {k: {"value": v, "met": bool(ok)} for k, (v, ok) in checks.items()}
    t = Table(
        title=f"targets (load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} cpus)"
    )
    for c in ("target", "value", "result"):
        t.add_column(c)
    for k, (v, ok) in checks.items():
        t.add_row(k, f"{v:.3f}", "[green]met[/]" if ok else "[red]missed[/]")
    console.print(t)
    if args.json:
        from masktrack.io.atomic import atomic_write_json

        atomic_write_json(args.json, json.loads(json.dumps(results, default=_jsonable)))
        console.print(f"wrote {args.json}")
    return 0


def _jsonable(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))


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

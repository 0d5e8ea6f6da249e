"""How many clicks does a weight-free backend need?  J&F by prompt on real and rendered frames.

Each target is prompted on frame 0 only and propagated forward over its first ``--frames`` frames
(DAVIS protocol: first and last frame not scored).  Prompts, all derived from the frame-0 ground
truth the way a person would click (deterministic, no seed):

- ``1``, ``2``, ``3``, ``5`` positive clicks: the deepest interior point first, then points spread
  over the object's interior (farthest-point sampling over pixels at least 3 px inside);
- ``3+3``: three positives and three negatives in a ring 5-12 px outside the object;
- ``box``: the object's box (extent + 3 px); ``box+1``: the box and the first positive click.

Targets: every DAVIS 2016 sequence under ``--davis``; every camera of the RLBench episode
(``--rlbench``, arm and gripper); optionally a ``masktrack demo`` folder (``--demo``, arm and gripper
of each camera, GT from its scene's ``gt_*`` instances).  Missing data is skipped.

    python bench/clicks.py --json bench-clicks.json                       # bilateral, the default
    python bench/clicks.py --backend classic --json bench-clicks-classic.json
    python bench/clicks.py --option keyframe_motion=false                   # a backend option
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PROMPTS = ("1", "2", "3", "5", "3+3", "box", "box+1")


class ArrayVideo:
    """Frames from an array, as a masktrack VideoSource."""

    def __new__(cls, frames: np.ndarray, name: str):
        from masktrack.io.video import VideoSource

        class _V(VideoSource):
            def __init__(self) -> None:
                self.path = Path(name)
                self.frames = frames
                self.num_frames, self.height, self.width = frames.shape[:3]

            def read(self, index: int) -> np.ndarray:
                return np.ascontiguousarray(self.frames[index])

            def content_hash(self) -> str:
                return name

        return _V()


def positives(gt: np.ndarray, k: int) -> list[tuple[float, float]]:
    import cv2

    dist = cv2.distanceTransform(gt.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    pts = [(float(x), float(y))]
    ys, xs = np.nonzero(dist >= min(3.0, float(dist.max())))
    cand = np.stack([xs, ys], 1).astype(np.float64)
    d = np.linalg.norm(cand - [x, y], axis=1)
    while len(pts) < k and len(cand):
        i = int(np.argmax(d))
        if d[i] == 0:
            break
        pts.append((float(cand[i, 0]), float(cand[i, 1])))
        d = np.minimum(d, np.linalg.norm(cand - cand[i], axis=1))
    return pts


def negatives(gt: np.ndarray, k: int) -> list[tuple[float, float]]:
    import cv2

    u8 = gt.astype(np.uint8)
    ring = cv2.dilate(u8, np.ones((25, 25), np.uint8)).astype(bool) & ~cv2.dilate(
        u8, np.ones((11, 11), np.uint8)
    ).astype(bool)
    ys, xs = np.nonzero(ring)
    if not len(xs):
        return []
    cand = np.stack([xs, ys], 1).astype(np.float64)
    pts = [cand[0]]
    d = np.linalg.norm(cand - cand[0], axis=1)
    while len(pts) < k:
        i = int(np.argmax(d))
        pts.append(cand[i])
        d = np.minimum(d, np.linalg.norm(cand - cand[i], axis=1))
    return [(float(p[0]), float(p[1])) for p in pts]


def box(gt: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(gt)
    h, w = gt.shape
    return [
        max(0.0, xs.min() - 3.0),
        max(0.0, ys.min() - 3.0),
        min(w - 1.0, xs.max() + 3.0),
        min(h - 1.0, ys.max() + 3.0),
    ]


def prompt_for(kind: str, gt: np.ndarray):
    from masktrack.segment.base import FramePrompt

    pts: list[tuple[float, float]] = []
    labels: list[int] = []
    boxes: list[list[float]] = []
    if kind in ("1", "2", "3", "5"):
        pts = positives(gt, int(kind))
        labels = [1] * len(pts)
    elif kind == "3+3":
        p, n = positives(gt, 3), negatives(gt, 3)
        pts, labels = p + n, [1] * len(p) + [0] * len(n)
    elif kind in ("box", "box+1"):
        boxes = [box(gt)]
        if kind == "box+1":
            pts, labels = positives(gt, 1), [1]
    return FramePrompt(
        frame=0,
        object="target",
        points=np.asarray(pts, np.float32).reshape(-1, 2),
        labels=np.asarray(labels, np.int32),
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
    ), len(pts)


def run(
    video, gt: np.ndarray, kind: str, backend_name: str = "bilateral", options: dict | None = None
) -> tuple[float, float, int]:
    """(J&F over the clip, J on frame 0, clicks)"""
    from masktrack.eval.davis import evaluate_sequence, jaccard
    from masktrack.segment.base import SessionObject
    from masktrack.segment.registry import load_backend

    prompt, n = prompt_for(kind, gt[0])
    pred = np.zeros(gt.shape, bool)
    backend = load_backend(backend_name, **(options or {}))
    with backend.open_session(video, [SessionObject("target", 1, (255, 0, 0))]) as s:
        s.add_prompt(prompt)
        for f, masks in s.propagate(0):
            pred[f] = masks["target"]
    backend.close()
    sc = evaluate_sequence(pred, gt, skip_first_last=True, name="x")
    return float(sc.jf_mean), float(jaccard(pred[0], gt[0])), n


def targets(args):
    """(group, name, video, gt [T,H,W]) for every available target."""
    from masktrack.eval.masks_io import read_png_folder
    from masktrack.io.video import FrameFolder

    n = args.frames
    davis = Path(args.davis) if args.davis else None
    if davis is not None:
        for seq in sorted(p.name for p in (davis / "Annotations" / "480p").iterdir()):
            gt = read_png_folder(davis / "Annotations" / "480p" / seq)[:n]
            frames = FrameFolder(davis / "JPEGImages" / "480p" / seq)
            rgb = np.stack([frames.read(i) for i in range(len(gt))])
            yield "DAVIS", seq, ArrayVideo(rgb, seq), gt
    if args.rlbench:
        z = np.load(args.rlbench)
        rgbs = z["rgbs"].transpose(0, 1, 3, 4, 2)
        for c, cid in enumerate(z["camera_ids"]):
            for obj in ("arm", "gripper"):
                gt = z[f"gt_masks_{obj}"][c, :n]
                if gt[0].sum() < 20:
                    continue  # not visible on frame 0 in this camera
                yield "RLBench", f"{cid}/{obj}", ArrayVideo(rgbs[c, :n], f"{cid}{obj}"), gt
    if args.demo is not None and (args.demo / "scene").is_dir():
        from masktrack.io.instances import load_instance
        from masktrack.io.scene import load_scene

        sc = load_scene(args.demo / "scene")
        for c, cid in enumerate(sc.camera_ids):
            for obj in ("arm", "gripper"):
                gt = load_instance(args.demo / "scene", f"gt_{obj}").masks(c)[:n]
                if gt[0].sum() < 20:
                    continue
                yield "demo", f"{cid}/{obj}", ArrayVideo(np.asarray(sc.rgbs[c, :n]), f"{cid}{obj}"), gt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--davis", default=str(DATA / "davis2016"), help='a folder in the DAVIS layout ("" = skip DAVIS)'
    )
    ap.add_argument(
        "--rlbench",
        default=str(DATA / "rlbench" / "reach_target_episode0.npz"),
        help='an RLBench episode .npz ("" = skip RLBench)',
    )
    ap.add_argument("--demo", type=Path, default=None, help="a `masktrack demo` output folder")
    ap.add_argument("--frames", type=int, default=30, help="first N frames of each target")
    ap.add_argument("--prompts", default=",".join(PROMPTS))
    ap.add_argument(
        "--backend", default="bilateral", help="a weight-free backend: bilateral (default) or classic"
    )
    ap.add_argument("--option", action="append", default=[], metavar="KEY=JSON", help="backend option")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    for flag, path, want in (("--davis", args.davis, Path.is_dir), ("--rlbench", args.rlbench, Path.is_file)):
        if path and not want(Path(path)):
            if path != ap.get_default(flag.lstrip("-")):
                ap.error(f"{flag} {path}: not found")
            setattr(args, flag.lstrip("-"), "")  # the shared data is not here: skip that group
    from masktrack.plugins import parse_option_values

    options = parse_option_values(args.option)
    import cv2

    cv2.setNumThreads(1)
    kinds = [k for k in args.prompts.split(",") if k]
    rows = []
    t0 = time.perf_counter()
    for group, name, video, gt in targets(args):
        row = {"group": group, "target": name}
        for k in kinds:
            jf, j0, n = run(video, gt, k, args.backend, options)
            row[k] = {"jf": round(jf, 3), "j_frame0": round(j0, 3), "clicks": n}
        rows.append(row)
        print(group, name, " ".join(f"{k}:{row[k]['jf']:.2f}" for k in kinds), file=sys.stderr, flush=True)
    groups = sorted({r["group"] for r in rows})
    summary = {
        g: {k: round(float(np.mean([r[k]["jf"] for r in rows if r["group"] == g])), 3) for k in kinds}
        for g in groups
    }
    out = {
        "command": " ".join(["python", "bench/clicks.py", *(argv if argv is not None else sys.argv[1:])]),
        "backend": args.backend,
        "options": options,
        "frames": args.frames,
        "seconds": round(time.perf_counter() - t0, 1),
        "mean_jf": summary,
        "rows": rows,
    }
    print("| group | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for g in groups:
        print(f"| {g} | " + " | ".join(f"{summary[g][k]:.3f}" for k in kinds) + " |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

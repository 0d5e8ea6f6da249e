"""Make a small, complete job for the default ``classic`` backend: frames, clicks, config, ground truth.

Two sources of frames (pick one):

    python examples/first_job.py out/first --demo out/demo
        camera 0 of a `masktrack demo` output (run `masktrack demo out/demo --small` first); the object
        is the robot arm, its ground truth the demo's rendered mask;
    python examples/first_job.py out/first --davis ../shared/data/davis2016/JPEGImages/480p/blackswan
        a real DAVIS sequence (frames folder; its Annotations/480p/<seq> folder is the ground truth).

It writes ``OUT/prompts.json`` (clicks on frame 0 derived from the first ground-truth mask the way a
person clicks: positives spread over the object's interior, negatives in a ring just outside, and
with ``--box`` the object's box), ``OUT/job.yaml`` (one session on the classic backend and an
``object_wide`` composition) and ``OUT/gt/`` (ground-truth PNGs), then prints the commands to run.
How many clicks the classic backend needs is measured by ``bench/clicks.py`` (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np


def clicks(mask: np.ndarray, positives: int, negatives: int) -> tuple[list[list[float]], list[int]]:
    """Positives: the deepest interior point, then farthest-point spread inside; negatives: a ring outside."""
    import cv2

    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    pos = [(float(x), float(y))]
    ys, xs = np.nonzero(dist >= min(3.0, float(dist.max())))
    cand = np.stack([xs, ys], 1).astype(np.float64)
    d = np.linalg.norm(cand - [x, y], axis=1)
    while len(pos) < positives and len(cand) and d.max() > 0:
        i = int(np.argmax(d))
        pos.append((float(cand[i, 0]), float(cand[i, 1])))
        d = np.minimum(d, np.linalg.norm(cand - cand[i], axis=1))
    u8 = mask.astype(np.uint8)
    ring = cv2.dilate(u8, np.ones((25, 25), np.uint8)).astype(bool) & ~cv2.dilate(
        u8, np.ones((11, 11), np.uint8)
    ).astype(bool)
    neg: list[tuple[float, float]] = []
    ys, xs = np.nonzero(ring)
    if negatives and len(xs):
        cand = np.stack([xs, ys], 1).astype(np.float64)
        neg = [(float(cand[0, 0]), float(cand[0, 1]))]
        d = np.linalg.norm(cand - cand[0], axis=1)
        while len(neg) < negatives:
            i = int(np.argmax(d))
            neg.append((float(cand[i, 0]), float(cand[i, 1])))
            d = np.minimum(d, np.linalg.norm(cand - cand[i], axis=1))
    return [list(p) for p in pos + neg], [1] * len(pos) + [0] * len(neg)


def box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return [
        max(0.0, xs.min() - 3.0),
        max(0.0, ys.min() - 3.0),
        min(w - 1.0, xs.max() + 3.0),
        min(h - 1.0, ys.max() + 3.0),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder for the job")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--demo", type=Path, help="a `masktrack demo` output folder (camera 0, the arm)")
    src.add_argument("--davis", type=Path, help="a DAVIS JPEGImages/480p/<sequence> folder")
    ap.add_argument("--positives", type=int, default=5, help="positive clicks (default 5)")
    ap.add_argument("--negatives", type=int, default=0, help="negative clicks (default 0)")
    ap.add_argument("--box", action="store_true", help="also drag a box around the object")
    args = ap.parse_args(argv)

    import cv2

    out: Path = args.out
    (out / "gt").mkdir(parents=True, exist_ok=True)
    if args.demo is not None:
        from masktrack.io.instances import load_instance
        from masktrack.io.scene import load_scene

        scene = load_scene(args.demo / "scene")
        cam = scene.camera_ids[0]
        frames = (args.demo / "frames" / cam).resolve()
        gt = load_instance(args.demo / "scene", "gt_arm").masks(0)
        name = "arm"
    else:
        from masktrack.eval.masks_io import read_png_folder

        frames = args.davis.resolve()
        ann = frames.parents[2] / "Annotations" / "480p" / frames.name
        gt = read_png_folder(ann)
        name = frames.name.replace("-", "_")
    if not gt[0].any():
        print(f"the first ground-truth mask of {frames} is empty: nothing to click on", file=sys.stderr)
        return 2
    for f, m in enumerate(gt):
        cv2.imwrite(str(out / "gt" / f"{f:05d}.png"), m.astype(np.uint8) * 255)
    pts, labels = clicks(gt[0], args.positives, args.negatives)
    keyframe: dict = {"frame": 0, "points": pts, "labels": labels}
    if args.box:
        keyframe["boxes"] = [box(gt[0])]
    prompts = {
        "format": "masktrack.prompts",
        "version": 1,
        "video": os.path.relpath(frames, out.resolve()),
        "objects": [{"name": name, "id": 1, "keyframes": [keyframe]}],
    }
    (out / "prompts.json").write_text(json.dumps(prompts, indent=1) + "\n", encoding="utf-8")
    job = (
        "# made by examples/first_job.py: one session on the default backend, one composition\n"
        f"video: {os.path.relpath(frames, out.resolve())}\n"
        "output: out\n"
        "prompts: prompts.json\n"
        "sessions:\n"
        f"  - name: {name}\n"
        "    backend: classic\n"
        f"    objects: [{name}]\n"
        "compose:\n"
        f'  {name}_wide: "dilate({name}, 5)"\n'
    )
    (out / "job.yaml").write_text(job, encoding="utf-8")
    n_pos, n_neg = labels.count(1), labels.count(0)
    print(
        f"wrote {out}/job.yaml, {out}/prompts.json ({n_pos} positive, {n_neg} negative clicks"
        f"{', a box' if args.box else ''} on frame 0 of {len(gt)}) and {out}/gt/ ({len(gt)} PNGs). Next:"
    )
    for cmd in (
        f"masktrack prompts validate {out}/prompts.json --video {frames}",
        f"masktrack segment {out}/job.yaml",
        f"masktrack compose {out}/job.yaml",
        f"masktrack preview {out}/job.yaml --no-video",
        f"masktrack eval masks {out}/out {out}/gt --object {name}",
    ):
        print("  " + cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())

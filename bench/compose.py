"""Benchmark: `masktrack compose` vs the notebook loop it replaces, same input, same run.

Input: a mask store with ``--frames`` frames of 1280x720 and three objects in
two sessions (``arm`` ~15% of the frame, ``gripper_left``/``gripper_right`` ~1%
each), moving over time.  Both sides read that store from disk and write a
folder of 0/255 PNGs for

    arm_only = dilate(arm, 15) - dilate(gripper_left | gripper_right, 15)

The reference is a faithful re-implementation of the notebook: per frame,
union the objects, full-frame ``cv2.dilate`` with a (2r+1)^2 kernel per
group, ``np.where``, PIL PNG save.  The two folders are then decoded and
compared pixel by pixel.

    python bench/compose.py --json bench_compose.json            # 1000 frames
    python bench/compose.py --frames 100                         # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from masktrack.config import parse_config
from masktrack.masks.export import run_compose
from masktrack.masks.store import MaskStore, SessionManifest, StoredObject

H, W = 720, 1280


def robot_masks(t: int) -> dict[str, np.ndarray]:
    """An arm entering from the bottom edge with a two-finger gripper at its tip."""
    phase = 2 * np.pi * t / 240
    tip = np.array([640 + 260 * np.sin(phase), 260 + 60 * np.cos(1.3 * phase)])
    base = np.array([560.0, 720.0])
    elbow = np.array([360 + 80 * np.sin(0.7 * phase), 470.0])
    arm = np.zeros((H, W), np.uint8)
    cv2.line(arm, tuple(base.astype(int)), tuple(elbow.astype(int)), 1, 205)
    cv2.line(arm, tuple(elbow.astype(int)), tuple(tip.astype(int)), 1, 165)
    cv2.circle(arm, tuple(elbow.astype(int)), 100, 1, -1)
    d = tip - elbow
    d /= np.linalg.norm(d)
    n = np.array([-d[1], d[0]])
    opening = 45 + 15 * np.sin(3 * phase)
    fingers = {}
    for name, side in (("gripper_left", 1), ("gripper_right", -1)):
        c = tip + d * 70 + n * side * opening
        corners = np.array([c + d * a + n * b for a, b in ((-65, -37), (65, -37), (65, 37), (-65, 37))])
        g = np.zeros((H, W), np.uint8)
        cv2.fillPoly(g, [np.round(corners).astype(np.int32)], 1)
        fingers[name] = g > 0
    return {"arm": arm > 0, **fingers}


def build_store(output: Path, frames: int) -> None:
    store = MaskStore(output)
    groups = {"arm": ["arm"], "gripper": ["gripper_left", "gripper_right"]}
    sessions = {}
    for s, objs in groups.items():
        m = SessionManifest(
            session=s, key=f"bench-{s}-{frames}", backend="bench", video="synthetic", video_hash="-", prompts_hash="-",
            num_frames=frames, height=H, width=W,
            objects=[StoredObject(name=o, id=i + 1, color=(255, 0, 0)) for i, o in enumerate(objs)],
        )  # fmt: skip
        st = store.session(s)
        st.begin(m)
        sessions[s] = (st, m, objs)
    cover = np.zeros(3)
    for t in range(frames):
        masks = robot_masks(t)
        cover += [masks["arm"].mean(), masks["gripper_left"].mean(), masks["gripper_right"].mean()]
        for st, _, objs in sessions.values():
            st.write_frame(t, {o: masks[o] for o in objs}, objs)
    for st, m, _ in sessions.values():
        st.finish(m, {})
    cover /= frames
    print(
        f"input: {frames} frames {W}x{H}; mean coverage arm {cover[0]:.1%}, grippers {cover[1]:.1%} / {cover[2]:.1%}"
    )


def notebook_loop(output: Path, dest: Path, radius: int) -> None:
    """The notebook: per frame union, full-frame dilate per group, np.where, PIL save."""
    store = MaskStore(output)
    arm_s, grip_s = store.session("arm"), store.session("gripper")
    arm_m, grip_m = arm_s.require_manifest(), grip_s.require_manifest()
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    dest.mkdir(parents=True, exist_ok=True)
    for f in range(arm_m.num_frames):
        arm_masks = arm_s.read_frame(f, arm_m)
        grip_masks = grip_s.read_frame(f, grip_m)
        arm = np.zeros((H, W), bool)
        for m in arm_masks.values():
            arm |= m
        grip = np.zeros((H, W), bool)
        for m in grip_masks.values():
            grip |= m
        arm_d = cv2.dilate(arm.astype(np.uint8), kernel, iterations=1)
        grip_d = cv2.dilate(grip.astype(np.uint8), kernel, iterations=1)
        out = np.where((arm_d > 0) & ~(grip_d > 0), 255, 0).astype(np.uint8)
        Image.fromarray(out).save(dest / f"{f:05d}.png")


def compare(a: Path, b: Path, frames: int) -> bool:
    for f in range(frames):
        x = cv2.imread(str(a / f"{f:05d}.png"), cv2.IMREAD_UNCHANGED)
        y = np.asarray(Image.open(b / f"{f:05d}.png"))
        if x is None or x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y):
            print(f"frame {f} differs", file=sys.stderr)
            return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--radius", type=int, default=15)
    ap.add_argument(
        "--workers", type=int, default=None, help="masktrack threads (default: usable cores, at most 4)"
    )
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument(
        "--keep", type=Path, default=None, help="work in this folder and keep it (default: a temp folder)"
    )
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_compose_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        output = work / "out"
        if output.exists():
            shutil.rmtree(output)
        build_store(output, args.frames)
        r = args.radius
        cfg = parse_config(
            {
                "video": "synthetic",
                "output": str(output),
                "sessions": [
                    {"name": "arm", "objects": ["arm"]},
                    {"name": "gripper", "objects": ["gripper_left", "gripper_right"]},
                ],
                "compose": {"arm_only": f"dilate(arm, {r}) - dilate(gripper_left | gripper_right, {r})"},
            }
        )
        t0 = time.perf_counter()
        report = run_compose(cfg, progress=False, workers=args.workers)
        t_mt = time.perf_counter() - t0
        assert report["arm_only"].written == args.frames

        ref = work / "notebook"
        t0 = time.perf_counter()
        notebook_loop(output, ref, r)
        t_nb = time.perf_counter() - t0

        identical = compare(report["arm_only"].folder, ref, args.frames)
        mt_bytes = sum(p.stat().st_size for p in report["arm_only"].folder.glob("*.png"))
        nb_bytes = sum(p.stat().st_size for p in ref.glob("*.png"))
        res = {
            "frames": args.frames,
            "size": [W, H],
            "radius": r,
            "cores": len(os.sched_getaffinity(0)),
            "masktrack_s": round(t_mt, 3),
            "notebook_s": round(t_nb, 3),
            "masktrack_ms_per_frame": round(1000 * t_mt / args.frames, 2),
            "notebook_ms_per_frame": round(1000 * t_nb / args.frames, 2),
            "speedup": round(t_nb / t_mt, 2),
            "identical": identical,
            "masktrack_png_kb_per_frame": round(mt_bytes / args.frames / 1024, 1),
            "notebook_png_kb_per_frame": round(nb_bytes / args.frames / 1024, 1),
        }
        print(json.dumps(res, indent=2))
        if args.json:
            args.json.write_text(json.dumps(res, indent=2) + "\n")
        return 0 if identical else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

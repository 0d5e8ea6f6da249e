"""Mask store size and speed per frame: 1280x720, 3 objects (arm ~15%, two grippers ~1% each).

    python bench/store_size.py --frames 100 --json out/store_size.json

Masks are smooth blobs that move a little every frame (like a robot arm and its
grippers), so the deflated bit-packed encoding sees realistic edges.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from masktrack.masks.store import MaskStore, SessionManifest, StoredObject


def frame_masks(t: int, h: int = 720, w: int = 1280) -> dict[str, np.ndarray]:
    arm = np.zeros((h, w), np.uint8)
    # arm: a thick polyline from the top-left base to the wrist, plus a cable
    wrist = (int(620 + 80 * np.sin(t / 15)), int(430 + 30 * np.cos(t / 11)))
    cv2.line(arm, (120, 40), (420, 260), 255, 170)
    cv2.line(arm, (420, 260), wrist, 255, 135)
    cv2.ellipse(arm, (260, 150), (150, 110), 20, 0, 360, 255, -1)
    cv2.polylines(arm, [np.array([[140, 60], [90, 300], [200, 600], [420, 700]], np.int32)], False, 255, 10)
    left = np.zeros((h, w), np.uint8)
    right = np.zeros((h, w), np.uint8)
    cv2.ellipse(left, (wrist[0] - 45, wrist[1] + 80), (42, 68), 10, 0, 360, 255, -1)
    cv2.ellipse(right, (wrist[0] + 45, wrist[1] + 80), (42, 68), -10, 0, 360, 255, -1)
    return {"arm": arm > 0, "gripper_left": left > 0, "gripper_right": right > 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    h, w, n = 720, 1280, args.frames
    names = ["arm", "gripper_left", "gripper_right"]
    masks = [frame_masks(t) for t in range(n)]
    cover = {k: float(np.mean([m[k].mean() for m in masks])) for k in names}

    tmp = Path(tempfile.mkdtemp(prefix="masktrack-bench-"))
    try:
        store = MaskStore(tmp).session("bench")
        manifest = SessionManifest(
            session="bench",
            key="k",
            backend="none",
            video="-",
            video_hash="-",
            prompts_hash="-",
            num_frames=n,
            height=h,
            width=w,
            objects=[StoredObject(name=k, id=i + 1, color=(0, 0, 0)) for i, k in enumerate(names)],
        )
        store.begin(manifest)
        t0 = time.perf_counter()
        sizes = [store.write_frame(t, masks[t], names) for t in range(n)]
        write_s = time.perf_counter() - t0
        store.finish(manifest, {})
        t0 = time.perf_counter()
        for t in range(n):
            got = store.read_frame(t)
            assert all(np.array_equal(got[k], masks[t][k]) for k in names)
        read_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    raw_bits = len(names) * h * w / 8
    res = {
        "frames": n,
        "size": [w, h],
        "objects": len(names),
        "coverage": {k: round(v, 4) for k, v in cover.items()},
        "bytes_per_frame": round(float(np.mean(sizes)), 1),
        "bytes_per_frame_raw_bitpacked": raw_bits,
        "bytes_per_frame_raw_bool": len(names) * h * w,
        "write_ms_per_frame": round(1000 * write_s / n, 2),
        "read_ms_per_frame": round(1000 * read_s / n, 2),
    }
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()

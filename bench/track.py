"""Benchmark: 3D point tracking of the RLBench gripper against exact ground truth.

Input: ``../shared/data/rlbench/reach_target_episode0.npz`` (5 RGB-D cameras,
70 frames, 128x128; see its README).  Queries are sampled on the
``gt_masks_gripper`` instance at frame 0 (``QueryOptions(window="frame")``)
and tracked with a tracker (default ``flow``).  The gripper is rigid and stays
open, so a point p_0 on it at frame 0 is at p_t = G_t G_0^-1 p_0 with
G = ``gripper_matrix`` (world-from-gripper).  Reported: median and 90th
percentile of the 3D error over all points and frames (frame 0 included, it
is exact), and throughput in point-frames per second of the tracking call
(the scene import and query sampling are not timed; the best of ``--repeat``
runs is kept, since the dev machine is shared; the JSON records the load
average before the runs next to the numbers).

    python bench/track.py --json bench_track.json
    python bench/track.py --voxel 0.005 --max-queries 1024     # the CLI's default query density
    python bench/track.py --exclude-camera wrist               # robustness: no close-up view
    python bench/track.py --exclude-camera wrist --frame 10    # another query set (frames 10..69 scored)
    python bench/track.py --option method=dis
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from masktrack.io.scene import load_scene
from masktrack.io.scene_import import import_npz
from masktrack.plugins import parse_option_values
from masktrack.track.base import track_batched
from masktrack.track.instances import load_instance
from masktrack.track.queries import QueryOptions, sample_queries
from masktrack.track.registry import get_tracker

DEFAULT_NPZ = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rlbench" / "reach_target_episode0.npz"
)


def gt_tracks(npz: Path, queries: np.ndarray, frame: int = 0) -> np.ndarray:
    """Exact positions [T, N, 3] of gripper points queried at ``frame``."""
    with np.load(npz, allow_pickle=False) as z:
        G = z["gripper_matrix"].astype(np.float64)
    p0 = np.concatenate([queries[:, 1:4].astype(np.float64), np.ones((len(queries), 1))], axis=1)
    return np.einsum("tij,jk,nk->tni", G, np.linalg.inv(G[frame]), p0)[..., :3]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", type=Path, default=DEFAULT_NPZ)
    ap.add_argument("--tracker", default="flow")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=JSON", help="tracker option")
    ap.add_argument(
        "--voxel",
        type=float,
        default=0.0,
        help="query de-dup voxel (m); 0 = every eroded mask pixel with depth",
    )
    ap.add_argument("--max-queries", type=int, default=0)
    ap.add_argument("--frame", type=int, default=0, help="query frame (errors over the frames from it on)")
    ap.add_argument(
        "--exclude-camera", action="append", default=[], help="drop a camera (robustness check), e.g. wrist"
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.npz.exists():
        print(f"missing {args.npz}", file=sys.stderr)
        return 2
    opts = parse_option_values(args.option)
    with tempfile.TemporaryDirectory() as tmp:
        scene_dir = Path(tmp) / "scene"
        scene = import_npz(args.npz, scene_dir, mask_key="gt_masks_gripper=gripper")
        inst = load_instance(scene_dir, "gripper")
        cams = tuple(c for c in scene.camera_ids if c not in args.exclude_camera)
        q = sample_queries(
            scene,
            inst,
            QueryOptions(
                window="frame", frame=args.frame, voxel=args.voxel, max_queries=args.max_queries, cameras=cams
            ),
        )
        if args.exclude_camera:
            scene, inst = _drop_cameras(scene, inst, cams, Path(tmp))
        tracker = get_tracker(args.tracker, **opts)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        best = float("inf")
        tracks = None
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            tracks = track_batched(tracker, scene, q.points, instance=inst)
            best = min(best, time.perf_counter() - t0)
        assert tracks is not None
        gt = gt_tracks(args.npz, q.points, args.frame)
        err = np.linalg.norm(tracks.tracks.astype(np.float64) - gt, axis=2)[args.frame :]
        err = np.where(np.isfinite(err), err, np.inf)  # a lost point counts as a miss, never dropped
        pf = int(scene.num_frames) * len(q)  # the tracker's work: every frame of every query
        res = {
            "tracker": args.tracker,
            "options": opts,
            "num_queries": int(len(q)),
            "query_cameras": {
                c: int(n) for c, n in zip(scene.camera_ids, np.bincount(q.camera, minlength=len(cams)))
            },
            "num_frames": int(scene.num_frames),
            "query_frame": args.frame,
            "excluded_cameras": args.exclude_camera,
            "median_error_m": float(np.median(err)),
            "p90_error_m": float(np.percentile(err, 90)),
            "final_frame_median_error_m": float(np.median(err[-1])),
            "visible_fraction": float(tracks.visibility.mean()),
            "seconds": round(best, 3),
            "point_frames_per_s": float(pf / best),
            "cpu_count": os.cpu_count(),
            "load_average_1min": load,
            "repeats": max(1, args.repeat),
        }
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


def _drop_cameras(scene, inst, cams, tmp: Path):  # type: ignore[no-untyped-def]
    """A copy of the scene (and the gripper instance) without the excluded cameras."""
    from masktrack.io.scene import save_scene
    from masktrack.track.instances import save_instance

    idx = [scene.camera_ids.index(c) for c in cams]
    path = save_scene(scene.with_cameras(cams), tmp / "sub")
    save_instance(path, "gripper", inst.masks()[idx], id=1, color=(255, 0, 0))
    return load_scene(path), load_instance(path, "gripper")


if __name__ == "__main__":
    sys.exit(main())

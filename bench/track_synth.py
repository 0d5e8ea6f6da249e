"""Benchmark: 3D tracking on the synthetic robot scene under a real-sensor model, arm and gripper separately.

The scene (``masktrack.synth``, default 320x240, 48 frames, 4 cameras) is
rendered with a sensor preset (depth noise ~ z^2, holes, flying pixels, RGB
blur/noise) and a calibration error (each camera's reported pose off by
``--calib-mm`` millimetres and ``--calib-deg`` degrees in random directions);
the ground truth stays exact.  Queries are sampled on the GT instance masks
(``gt_arm``: the whole robot; ``gt_gripper``), lifted with the *noisy* depth
and the *wrong* calibration, as a real rig would; each is scored against the
exact motion of the surface point nearest to it (:mod:`masktrack.synth.truth`),
so a query that noise put a few mm off the surface is judged by where it
should go.  Reported per instance: median / p90 over all frames after the
query frame, final-frame median, visible fraction, point-frames/s (the best of
``--repeat`` runs, as in ``bench/track.py``: the first run in a process also
pays OpenCV's start-up) and the load average.

    python bench/track_synth.py                                    # realsense-d435, 3 mm / 0.3 deg
    python bench/track_synth.py --sensor none --calib-mm 0 --calib-deg 0
    python bench/track_synth.py --sensor azure-kinect --json out.json
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
from masktrack.plugins import parse_option_values
from masktrack.synth import SynthConfig, generate
from masktrack.synth.truth import SceneTruth, track_errors
from masktrack.track.base import track_batched
from masktrack.track.instances import load_instance
from masktrack.track.queries import QueryOptions, sample_queries
from masktrack.track.registry import get_tracker


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sensor", default="realsense-d435")
    ap.add_argument("--calib-mm", type=float, default=3.0)
    ap.add_argument("--calib-deg", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--tracker", default="flow")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=JSON", help="tracker option")
    ap.add_argument("--max-queries", type=int, default=1000)
    ap.add_argument("--instances", default="gt_arm,gt_gripper")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "masktrack-bench-synth")
    ap.add_argument("--repeat", type=int, default=3, help="timing: the best of this many tracking runs")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    opts = parse_option_values(args.option)
    cfg = SynthConfig(
        frames=args.frames,
        seed=args.seed,
        sensor=args.sensor,
        calib_mm=args.calib_mm,
        calib_deg=args.calib_deg,
    )
    syn = generate(cfg, args.cache / cfg.key()[:16])
    scene = load_scene(syn.scene_path)
    truth = SceneTruth.load(syn.root)
    tracker = get_tracker(args.tracker, **opts)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    res: dict = {
        "tracker": args.tracker,
        "options": opts,
        "config": cfg.to_dict(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": load,
        "repeats": max(1, args.repeat),
        "instances": {},
    }
    for name in args.instances.split(","):
        inst = load_instance(syn.scene_path, name)
        q = sample_queries(scene, inst, QueryOptions(window="frame", frame=0, max_queries=args.max_queries))
        dt = float("inf")
        for _ in range(max(1, args.repeat)):  # the first run in a process also pays OpenCV's start-up
            t0 = time.perf_counter()
            tr = track_batched(tracker, scene, q.points, instance=inst)
            dt = min(dt, time.perf_counter() - t0)
        e = track_errors(truth, tr.tracks, tr.queries)
        err = e["error"][1:]  # frames after the query frame (0)
        err = np.where(np.isfinite(err), err, np.inf)  # a lost point is a miss
        res["instances"][name] = {
            "num_queries": int(len(q)),
            "median_error_m": float(np.median(err)),
            "p90_error_m": float(np.percentile(err, 90)),
            "final_frame_median_error_m": float(np.median(err[-1])),
            "query_attach_median_m": float(np.median(e["attach_dist"])),
            "visible_fraction": float(tr.visibility.mean()),
            "seconds": round(dt, 3),
            "point_frames_per_s": float(tr.tracks.shape[0] * len(q) / dt),
        }
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

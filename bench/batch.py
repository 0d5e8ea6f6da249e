"""Batch throughput: units per minute with 1 vs 2 local workers on synthetic scenes.

    python bench/batch.py [--scenes 4] [--cameras 2] [--frames 48] [--json PATH]

Camera units (one camera of one synthetic scene, masktrack.synth) run the
`arm` session with the default `classic` backend plus one composition; then
one tracking unit per scene builds the scene's instances from its cameras'
masks and tracks them with `flow` (at most 64 queries per instance).  The
dataset is generated once; each worker count runs into a fresh output folder
so nothing is reused.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "batch"))

from conftest import write_job, write_prompt_file


def build_dataset(root: Path, scenes: int, cameras: int, frames: int, size: tuple[int, int]) -> None:
    from masktrack.synth import SynthConfig, generate
    from masktrack.track.instances import load_instance

    for i in range(scenes):
        cfg = SynthConfig(width=size[0], height=size[1], frames=frames, cameras=cameras, seed=i, points=20)
        gen = generate(cfg, root / "_gen" / f"s{i}")
        inst = load_instance(gen.scene_path, "gt_arm")
        for c, cam in enumerate(gen.camera_ids):
            cam_dir = root / "task" / "train" / f"scene_{i}" / cam
            shutil.copytree(gen.frames_dir(cam), cam_dir / "color")
            write_prompt_file(cam_dir / "prompts.json", inst.masks(c, 0))
        shutil.copytree(gen.scene_path, root / "task" / "train" / f"scene_{i}" / "scene")
    shutil.rmtree(root / "_gen")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from masktrack.batch.job import load_job
    from masktrack.batch.run import run_batch

    tmp = Path(tempfile.mkdtemp(prefix="mt-bench-batch-"))
    try:
        data = tmp / "data"
        build_dataset(data, args.scenes, args.cameras, args.frames, (args.width, args.height))
        job = load_job(write_job(tmp / "job.yaml", data))
        results = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            report = run_batch(job, tmp / f"out{workers}", engine="local", workers=workers)
            dt = time.perf_counter() - t0
            n = report.count("done")
            assert report.count("failed") == 0 and report.count("skipped") == 0, report.to_json()
            assert n == args.scenes * (args.cameras + 1)
            results[workers] = {
                "units": n,
                "seconds": round(dt, 2),
                "units_per_minute": round(60 * n / dt, 2),
            }
            print(f"{workers} worker(s): {n} units in {dt:.1f}s -> {60 * n / dt:.1f} units/min")
        out = {
            "scenes": args.scenes,
            "cameras": args.cameras,
            "frames": args.frames,
            "size": [args.width, args.height],
            "cpu_count": os.cpu_count(),
            "workers_1": results[1],
            "workers_2": results[2],
            "scaling": round(results[2]["units_per_minute"] / results[1]["units_per_minute"], 2),
        }
        print(json.dumps(out, indent=2))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The synthetic scene and the whole demo: how long they take and how good the result is.

    python bench/demo.py [--small] [--skip-demo] [--out DIR] [--json PATH]

Measures (wall clock, this machine):
  * ``generate``: rendering the default synthetic scene (4 cameras, 320x240,
    48 frames; --small: 3 cameras, 256x192, 40 frames) with its ground truth;
  * ``demo``: ``run_demo`` from scratch on the same config (every stage
    computed), then again (every stage reused), with the report's J&F and
    track errors.
Targets: generate < 60 s and demo < 5 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--skip-demo", action="store_true", help="only time the generator")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp folder, removed)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from masktrack.demo import DEMO_SMALL, run_demo
    from masktrack.synth import SynthConfig, generate

    cfg = DEMO_SMALL if args.small else SynthConfig()
    work = args.out or Path(tempfile.mkdtemp(prefix="mt-bench-demo-"))
    res: dict = {"config": cfg.to_dict(), "cpus": os.cpu_count()}
    try:
        t0 = time.perf_counter()
        generate(cfg, work / "synth", force=True)
        res["generate_s"] = round(time.perf_counter() - t0, 2)
        print(f"generate: {res['generate_s']:.1f} s")
        if not args.skip_demo:
            t0 = time.perf_counter()
            rep = run_demo(work / "demo", config=cfg, force=True, progress=False)
            res["demo_s"] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            again = run_demo(work / "demo", config=cfg, progress=False)
            res["demo_rerun_s"] = round(time.perf_counter() - t0, 2)
            res["rerun_all_reused"] = again.reused_all
            res["stage_seconds"] = {}
            for s in rep.stages:
                res["stage_seconds"][s.stage] = round(res["stage_seconds"].get(s.stage, 0.0) + s.seconds, 2)
            rj = rep.to_json()
            res["jf_mean"] = rj["jf_mean"]
            res["tracks"] = rj["tracks"]
            res["checks"] = rj["checks"]
            res["arm_on_objects"] = rj["arm_on_objects"]
            print(
                json.dumps(
                    {
                        k: res[k]
                        for k in (
                            "demo_s",
                            "demo_rerun_s",
                            "rerun_all_reused",
                            "stage_seconds",
                            "jf_mean",
                            "checks",
                            "arm_on_objects",
                        )
                    },
                    indent=1,
                )
            )
            for t in res["tracks"]:
                print(
                    f"track {t['instance']}: median {100 * t['median_m']:.2f} cm, p90 {100 * t['p90_m']:.2f} cm"
                )
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()

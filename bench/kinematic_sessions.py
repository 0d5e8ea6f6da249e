"""Zero-click kinematic sessions through the real pipeline on the RLBench episode: J&F per camera and mode.

What a user runs: ``masktrack scene import --robot-model panda`` (joint states,
base pose fitted to the gripper track, robot height and camera corrections
refined against depth), then pipeline configs whose sessions take their
objects from the robot (``kinematics``), in each mode:

- ``render``: the occlusion-aware render as the masks;
- ``prior``: the ``kinematic`` backend (render refined to image edges, depth overrules colour);
- ``prompt``: the default ``classic`` backend prompted from the render (mask, box, points) on auto keyframes.

Scored against the episode's GT masks with DAVIS J&F (all frames).  Cameras
whose rendered robot disagrees with their depth are refused by the pipeline
and reported as such.  The GT never feeds any step.

    python bench/kinematic_sessions.py --json bench-kinematic.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NPZ = REPO.parent / "shared" / "data" / "rlbench" / "reach_target_episode0.npz"
MODES = ("render", "prior", "prompt")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--npz", type=Path, default=DEFAULT_NPZ)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args(argv)
    if not args.npz.is_file():
        print(f"{args.npz}: no such file", file=sys.stderr)
        return 2
    import cv2
    import yaml

    from masktrack.cli.main import main as cli
    from masktrack.eval.davis import evaluate_sequence
    from masktrack.masks.store import MaskStore

    work = args.work or Path(tempfile.mkdtemp(prefix="masktrack-kin-"))
    t0 = time.perf_counter()
    rc = cli(["scene", "import", str(args.npz), str(work / "scene"), "--robot-model", "panda",
              "--robot-mount", "wrist=panda_hand"])  # fmt: skip
    if rc:
        return rc
    import_s = time.perf_counter() - t0
    z = np.load(args.npz)
    cams = [str(c) for c in z["camera_ids"]]
    gt = {"arm": z["gt_masks_arm"], "gripper": z["gt_masks_gripper"]}
    out: dict = {"command": " ".join(["python", "bench/kinematic_sessions.py", *(argv or sys.argv[1:])]),
                 "import_s": round(import_s, 2), "cameras": {}, "modes": {}}  # fmt: skip
    for c, cam in enumerate(cams):
        frames = work / "frames" / cam
        frames.mkdir(parents=True, exist_ok=True)
        for t in range(z["rgbs"].shape[1]):
            cv2.imwrite(
                str(frames / f"{t:05d}.png"),
                cv2.cvtColor(z["rgbs"][c, t].transpose(1, 2, 0), cv2.COLOR_RGB2BGR),
            )
        sessions = []
        for mode in MODES:
            for part in ("arm", "gripper"):
                sessions.append(
                    {"name": f"{mode}_{part}", "kinematics": {"objects": {part: part}, "mode": mode}}
                )
        cfg = {"video": str(frames), "output": str(work / "out" / cam),
               "robot": {"scene": str(work / "scene"), "camera": cam}, "sessions": sessions}  # fmt: skip
        (work / f"{cam}.yaml").write_text(yaml.safe_dump(cfg))
        t0 = time.perf_counter()
        rc = cli(["segment", str(work / f"{cam}.yaml"), "--no-progress"])
        out["cameras"][cam] = {
            "status": "ok" if rc == 0 else "refused",
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if rc:
            continue
        store = MaskStore(work / "out" / cam)
        for mode in MODES:
            for part in ("arm", "gripper"):
                if not gt[part][c].any():
                    continue
                pred = store.session(f"{mode}_{part}").read_object(part)
                s = evaluate_sequence(pred, gt[part][c])
                out["modes"].setdefault(mode, {}).setdefault(part, {"per_camera": {}})["per_camera"][cam] = (
                    round(s.jf_mean, 4)
                )
    for parts in out["modes"].values():
        for d in parts.values():
            d["jf_mean"] = round(float(np.mean(list(d["per_camera"].values()))), 4)
    print(f"{'mode':<8} {'part':<8} {'mean J&F':>8}  per camera")
    for mode, parts in out["modes"].items():
        for part, d in parts.items():
            per = "  ".join(f"{k} {v:.3f}" for k, v in d["per_camera"].items())
            print(f"{mode:<8} {part:<8} {d['jf_mean']:>8.3f}  {per}")
    for cam, d in out["cameras"].items():
        if d["status"] != "ok":
            print(f"{cam}: refused by the calibration check (rendered robot vs measured depth)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Behaviour check for refactors: the same inputs give bit-identical masks, tracks and PNGs.

Runs a source tree (default: this one) on

- the demo (``masktrack demo --small``): mask-store frames, composed PNGs, tracks, report numbers;
- DAVIS 2016 under ``../shared/data/davis2016`` (the ``classic`` backend through the Session API,
  mask and points prompts, first ``--max-frames`` frames of every sequence);
- the RLBench episode under ``../shared/data/rlbench`` (``masktrack scene import`` of the gripper
  masks, then ``masktrack track`` with the default ``flow`` tracker);

and hashes every decoded array (not file bytes: zip headers carry timestamps).  With ``--compare``
it checks the hashes against another run's JSON, after asserting both are non-trivial (non-empty
masks, non-constant tracks).  A reference from an older commit:

    git worktree add /tmp/ref 202ffb6
    python bench/identity.py --tree /tmp/ref --json /tmp/identity-ref.json
    python bench/identity.py --json /tmp/identity-new.json --compare /tmp/identity-ref.json

Timings are not compared (they are noise here); ``bench/`` scripts measure speed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def _digest(arr: np.ndarray) -> str:
    a = np.ascontiguousarray(arr)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _stats(arr: np.ndarray) -> dict[str, Any]:
    """What makes an array non-trivial: its size, nonzero count and whether it is constant."""
    a = np.asarray(arr)
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    return {
        "size": int(a.size),
        "nonzero": int(np.count_nonzero(a)),
        "constant": bool(finite.size == 0 or np.all(finite == finite.flat[0])),
    }


def _entry(arr: np.ndarray) -> dict[str, Any]:
    return {"hash": _digest(arr), **_stats(arr)}


def hash_tree_outputs(root: Path) -> dict[str, Any]:
    """Decoded-array hashes of every npz/npy/png under ``root`` (paths relative to it)."""
    import cv2

    out: dict[str, Any] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        rel = str(p.relative_to(root))
        if p.suffix == ".png" and "previews" not in p.parts:
            img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            out[rel] = _entry(img) if img is not None else {"hash": "unreadable"}
        elif p.suffix == ".npy" and p.name not in ("rgbs.npy", "depths.npy"):
            out[rel] = _entry(np.load(p, allow_pickle=False))
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                for k in sorted(z.files):
                    a = z[k]
                    if a.dtype.kind in "biuf":  # numbers only: provenance strings hold paths and times
                        out[f"{rel}:{k}"] = _entry(a)
    return out


# --------------------------------------------------------------------------
# The three workloads (run inside the tree under test: PYTHONPATH=<tree>/src)
# --------------------------------------------------------------------------
def work_demo(out: Path) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, "-m", "masktrack", "demo", "--small", str(out), "--json"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    res = {"files": hash_tree_outputs(out)}
    report = json.loads((out / "report.json").read_text())
    res["report_numbers"] = _numbers(report)
    return res


def _numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a report except timings (keys naming seconds/fps/time)."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if any(t in str(k).lower() for t in ("second", "fps", "time", "elapsed")):
                continue
            out.update(_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_numbers(v, f"{prefix}[{i}]"))
    elif isinstance(obj, bool):
        out[prefix] = float(obj)
    elif isinstance(obj, int | float):
        out[prefix] = float(obj)
    return out


def work_davis(max_frames: int) -> dict[str, Any]:
    import cv2

    from masktrack.eval.masks_io import read_png_folder

    cv2.setNumThreads(1)
    root = SHARED / "davis2016"
    img_root, ann_root = root / "JPEGImages" / "480p", root / "Annotations" / "480p"
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="identity-davis-") as tmp:
        for seq in sorted(p.name for p in ann_root.iterdir() if p.is_dir()):
            gt = read_png_folder(ann_root / seq)[:max_frames]
            frames = Path(tmp) / seq
            frames.mkdir()
            files = sorted(
                (p for p in (img_root / seq).iterdir() if p.stem.isdigit()), key=lambda p: int(p.stem)
            )
            for p in files[:max_frames]:
                (frames / p.name).symlink_to(p)
            for mode in ("mask", "points"):
                out[f"{seq}/{mode}"] = _entry(_davis_sequence(frames, gt, mode))
    return out


def _davis_sequence(frames_dir: Path, gt: np.ndarray, mode: str) -> np.ndarray:
    """The protocol of bench/segment_quality.py (seed 0), returning the predicted masks."""
    from masktrack.io.video import FrameFolder
    from masktrack.segment.base import FramePrompt, SessionObject
    from masktrack.segment.registry import load_backend

    video = FrameFolder(frames_dir)
    if mode == "mask":
        prompt = FramePrompt(frame=0, object="target", mask=gt[0])
    else:
        rng = np.random.default_rng(0)
        ys, xs = np.nonzero(gt[0])
        i = rng.choice(len(ys), size=min(5, len(ys)), replace=False)
        pos = np.stack([xs[i], ys[i]], 1)
        ys, xs = np.nonzero(~gt[0])
        i = rng.choice(len(ys), size=min(5, len(ys)), replace=False)
        neg = np.stack([xs[i], ys[i]], 1)
        pts = np.concatenate([pos, neg]).astype(np.float32)
        labels = np.array([1] * len(pos) + [0] * len(neg), np.int32)
        prompt = FramePrompt(frame=0, object="target", points=pts, labels=labels)
    pred = np.zeros((video.num_frames, video.height, video.width), bool)
    backend = load_backend("classic")
    with backend.open_session(video, [SessionObject("target", 1, (255, 0, 0))]) as session:
        session.add_prompt(prompt)
        for f, masks in session.propagate(0):
            pred[f] = masks["target"]
    backend.close()
    return pred


def work_rlbench(out: Path) -> dict[str, Any]:
    npz = SHARED / "rlbench" / "reach_target_episode0.npz"
    scene, tracks = out / "scene", out / "tracks"
    mt = [sys.executable, "-m", "masktrack"]
    quiet = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(
        [
            *mt,
            "scene",
            "import",
            str(npz),
            str(scene),
            "--mask-key",
            "gt_masks_gripper=gripper,gt_masks_target=target",
        ],
        **quiet,
    )
    subprocess.run(
        [*mt, "track", str(scene), "--out", str(tracks), "--window", "frame", "--frame", "0"], **quiet
    )
    res = hash_tree_outputs(tracks)
    res.update({f"scene/{k}": v for k, v in hash_tree_outputs(scene / "instances").items()})
    return res


def run_inside(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="identity-") as tmp:
        t = Path(tmp)
        if "demo" in args.parts:
            result["demo"] = work_demo(t / "demo")
        if "davis" in args.parts:
            result["davis"] = work_davis(args.max_frames) if (SHARED / "davis2016").is_dir() else "absent"
        if "rlbench" in args.parts:
            rl = (SHARED / "rlbench" / "reach_target_episode0.npz").exists()
            result["rlbench"] = work_rlbench(t / "rlbench") if rl else "absent"
    return result


# --------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------
def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, dict) and "hash" not in obj:
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    else:
        out[prefix] = obj
    return out


def compare(new: dict[str, Any], ref: dict[str, Any]) -> tuple[list[str], dict[str, int]]:
    """Differences (one line each) and counts; raises if either side is trivial."""
    a, b = _flatten(new), _flatten(ref)
    arrays = [v for v in a.values() if isinstance(v, dict) and "hash" in v]
    if not arrays or not any(v.get("nonzero", 0) > 0 and not v.get("constant", True) for v in arrays):
        raise SystemExit("identity: the new run produced only empty or constant arrays; nothing to compare")
    diffs = []
    for k in sorted(set(a) | set(b)):
        if k not in a:
            diffs.append(f"missing in new run: {k}")
        elif k not in b:
            diffs.append(f"new output not in reference: {k}")
        else:
            va, vb = a[k], b[k]
            ha = va.get("hash") if isinstance(va, dict) else va
            hb = vb.get("hash") if isinstance(vb, dict) else vb
            if ha != hb:
                diffs.append(f"differs: {k}: {ha} != {hb}")
    nontrivial = sum(1 for v in arrays if v.get("nonzero", 0) > 0)
    return diffs, {"compared": len(set(a) & set(b)), "arrays": len(arrays), "non_empty_arrays": nontrivial}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--tree", type=Path, default=REPO, help="source tree to run (its src/ goes first on the path)"
    )
    ap.add_argument("--json", type=Path, help="write the hashes here")
    ap.add_argument("--compare", type=Path, help="reference JSON from another run")
    ap.add_argument("--parts", default="demo,davis,rlbench", help="comma-separated: demo, davis, rlbench")
    ap.add_argument("--max-frames", type=int, default=30, help="DAVIS: first N frames of each sequence")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.parts = [p for p in args.parts.split(",") if p]

    if args.inside:
        json.dump(run_inside(args), sys.stdout)
        return 0
    env = {**os.environ, "PYTHONPATH": str(args.tree.resolve() / "src")}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inside", "--parts", ",".join(args.parts)]
    cmd += ["--max-frames", str(args.max_frames)]
    proc = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True)
    result = {
        "tree": str(args.tree.resolve()),
        "max_frames": args.max_frames,
        "outputs": json.loads(proc.stdout),
    }
    try:
        result["commit"] = subprocess.run(
            ["git", "-C", str(args.tree), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.compare:
        ref = json.loads(args.compare.read_text())
        diffs, counts = compare(result["outputs"], ref["outputs"])
        print(f"identity vs {ref.get('commit', args.compare)}: {counts}")
        for d in diffs:
            print("  " + d)
        print("IDENTICAL" if not diffs else f"{len(diffs)} DIFFERENCES")
        return 0 if not diffs else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

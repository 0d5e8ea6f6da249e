"""Benchmark: masktrack's Rerun logging vs the old one-entity-per-track style.

Same data, same run: N tracked points x T frames (split over a few instances), each
frame a position, a visibility-dimmed colour and a trail segment (t-1 -> t) per track.

* masktrack: one Points3D entity + one LineStrips3D entity per instance, ``send_columns``
  (``masktrack.viz.rerun.log_instance_tracks``), one .rrd per instance.
* old style: one entity per track (``world/tracks/<name>/<i>`` + ``.../trail``), ``rr.log``
  per frame per track, one .rrd per instance.  Frames before a track's query are skipped
  (the old scripts had no NaN points), which only favours the old style.

It also writes the whole recording set of a synthetic C x T x H x W RGB-D scene with
instance masks (``write_recordings``) and reports the scene file size per camera-frame.

    python bench/rerun_log.py --json bench_rerun.json                 # full size (5000 x 100, 3 x 480x640)
    python bench/rerun_log.py --points 500 --frames 20 --height 120 --width 160   # quick
    python bench/rerun_log.py --old-subset 1000 ...   # old style on 1000 tracks, time and size scaled x N/1000 (stated in the output)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synth_scene(folder: Path, cameras: int, frames: int, height: int, width: int, seed: int = 0):
    """A textured table with two moving boxes seen by ``cameras`` static cameras; depth with ~1 mm noise."""
    import cv2

    from masktrack.io.scene import Scene, save_scene
    from masktrack.track.instances import save_instance

    rng = np.random.default_rng(seed)
    rgbs = np.empty((cameras, frames, height, width, 3), np.uint8)
    depths = np.empty((cameras, frames, height, width), np.float32)
    masks = {
        "arm": np.zeros((cameras, frames, height, width), bool),
        "cube": np.zeros((cameras, frames, height, width), bool),
    }
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for c in range(cameras):
        tex = cv2.resize(
            rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8),
            (width, height),
            interpolation=cv2.INTER_CUBIC,
        )
        bg = np.clip(0.6 * tex + 0.4 * (80 + 100 * yy[..., None] / height), 0, 255).astype(np.uint8)
        bg_depth = (1.2 + 0.4 * yy / height + 0.05 * c).astype(np.float32)
        for t in range(frames):
            img, dep = bg.copy(), bg_depth.copy()
            for k, (name, col) in enumerate([("arm", (200, 60, 40)), ("cube", (40, 80, 220))]):
                cx = int(width * (0.25 + 0.5 * k) + 0.2 * width * np.sin(0.07 * t + c + k))
                cy = int(height * 0.5 + 0.15 * height * np.cos(0.05 * t + k))
                bw, bh = width // (6 + 2 * k), height // (5 + 2 * k)
                sl = np.s_[max(cy - bh, 0) : cy + bh, max(cx - bw, 0) : cx + bw]
                img[sl] = np.clip(0.5 * img[sl] + np.array(col) * 0.5, 0, 255).astype(np.uint8)
                dep[sl] = 0.9 - 0.1 * k
                masks[name][c, t][sl] = True
            rgbs[c, t] = img
            noise = rng.normal(0, 0.001, dep.shape).astype(np.float32)
            depths[c, t] = np.where(rng.random(dep.shape) < 0.02, 0.0, dep + noise)
    k_mat = np.array([[0.8 * width, 0, width / 2], [0, 0.8 * width, height / 2], [0, 0, 1]], np.float32)
    extrs = np.zeros((cameras, frames, 3, 4), np.float32)
    for c in range(cameras):
        a = 2 * np.pi * c / max(cameras, 1)
        r = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]], np.float32)
        extrs[c, :, :, :3] = r
        extrs[c, :, :, 3] = [0.1 * c, 0.0, 1.0]
    scene = Scene(
        rgbs=rgbs,
        depths=depths,
        intrs=np.broadcast_to(k_mat, (cameras, frames, 3, 3)).copy(),
        extrs=extrs,
        camera_ids=[f"cam{c}" for c in range(cameras)],
        fps=30.0,
    )
    save_scene(scene, folder)
    from masktrack.io.scene import load_scene

    scene = load_scene(folder)
    instances = {
        name: save_instance(folder, name, m, id=i + 1, color=col)
        for i, (name, m, col) in enumerate(
            [("arm", masks["arm"], (220, 60, 40)), ("cube", masks["cube"], (40, 80, 220))]
        )
    }
    return scene, instances


def synth_tracks(points: int, frames: int, names: list[str], seed: int = 1):
    """Smooth random 3D tracks; queries at random frames (NaN before), ~20% occluded frames."""
    from masktrack.track.base import Tracks

    rng = np.random.default_rng(seed)
    split = np.array_split(np.arange(points), len(names))
    out = {}
    for name, idx in zip(names, split):
        n = len(idx)
        start = rng.normal(0, 0.2, (n, 3)).astype(np.float32)
        vel = rng.normal(0, 0.003, (frames, n, 3)).astype(np.float32)
        x = start[None] + np.cumsum(vel, axis=0)
        qt = rng.integers(0, max(frames // 4, 1), n)
        before = np.arange(frames)[:, None] < qt[None]
        x[before] = np.nan
        vis = (rng.random((frames, n)) > 0.2) & ~before
        queries = np.concatenate([qt[:, None], x[qt, np.arange(n)]], axis=1).astype(np.float32)
        out[name] = Tracks(tracks=x.astype(np.float32), visibility=vis, queries=queries, instance=name)
    return out


def log_masktrack(tracks: dict, folder: Path, rid: str) -> tuple[float, int]:
    import rerun as rr

    from masktrack.viz.rerun import APPLICATION_ID, PALETTE, log_instance_tracks

    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    total = 0
    for k, (name, tr) in enumerate(tracks.items()):
        rec = rr.RecordingStream(APPLICATION_ID, recording_id=rid)
        rec.save(folder / f"{name}.rrd")
        log_instance_tracks(rec, name, tr, PALETTE[k])
        rec.flush()
        rec.disconnect()
    dt = time.perf_counter() - t0
    for name in tracks:
        total += (folder / f"{name}.rrd").stat().st_size
    return dt, total


def log_old_style(tracks: dict, folder: Path, rid: str, subset: int | None) -> tuple[float, int, int]:
    """One entity per track, ``rr.log`` per frame per track (point + trail segment)."""
    import rerun as rr

    from masktrack.viz.rerun import PALETTE

    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    logged = 0
    for k, (name, tr) in enumerate(tracks.items()):
        rec = rr.RecordingStream("masktrack_old", recording_id=rid)
        rec.save(folder / f"{name}.rrd")
        x, vis = tr.tracks, tr.visibility
        n = (
            x.shape[1]
            if subset is None
            else min(
                x.shape[1], int(np.ceil(subset * x.shape[1] / sum(t.num_points for t in tracks.values())))
            )
        )
        logged += n
        rgb = PALETTE[k]
        for t in range(x.shape[0]):
            rec.set_time("frame", sequence=t)
            for i in range(n):
                p = x[t, i]
                if not np.isfinite(p).all():
                    continue
                rec.log(
                    f"world/tracks/{name}/{i}",
                    rr.Points3D(
                        [p], colors=[(*rgb, 255 if vis[t, i] else 60)], radii=rr.Radius.ui_points(4.0)
                    ),
                )
                if t > 0 and np.isfinite(x[t - 1, i]).all():
                    rec.log(
                        f"world/tracks/{name}/{i}/trail",
                        rr.LineStrips3D(
                            [[x[t - 1, i], p]], colors=[(*rgb, 160)], radii=rr.Radius.ui_points(1.5)
                        ),
                    )
        rec.flush()
        rec.disconnect()
    dt = time.perf_counter() - t0
    total = sum((folder / f"{name}.rrd").stat().st_size for name in tracks)
    return dt, total, logged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=5000)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument(
        "--old-subset",
        type=int,
        default=None,
        help="run the old style on this many tracks only and extrapolate linearly (reported)",
    )
    ap.add_argument("--skip-scene", action="store_true", help="only the tracks comparison")
    ap.add_argument("--keep", type=Path, default=None, help="keep the written files in this folder")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)

    import rerun as rr

    from masktrack.viz.rerun import write_recordings

    work = Path(tempfile.mkdtemp(prefix="masktrack-bench-rerun-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {
        "points": args.points,
        "frames": args.frames,
        "cameras": args.cameras,
        "height": args.height,
        "width": args.width,
        "rerun": rr.__version__,
    }
    try:
        names = ["arm", "cube"]
        tracks = synth_tracks(args.points, args.frames, names)
        rid = "bench"
        dt_new, size_new = log_masktrack(tracks, work / "new", rid)
        dt_old, size_old, logged = log_old_style(tracks, work / "old", rid, args.old_subset)
        scale = args.points / logged
        res.update(
            masktrack_s=dt_new,
            masktrack_bytes=size_new,
            old_s=dt_old * scale,
            old_bytes=int(size_old * scale),
            old_tracks_run=logged,
            old_extrapolated=bool(scale != 1.0),
            speedup=dt_old * scale / dt_new,
            size_ratio=size_old * scale / size_new,
        )
        print(
            f"tracks: masktrack {dt_new:.2f} s {size_new / 1e6:.1f} MB | old style {dt_old * scale:.2f} s {size_old * scale / 1e6:.1f} MB"
            + (f" (measured on {logged} tracks, x{scale:.2f} extrapolated)" if scale != 1.0 else "")
            + f" | speedup {res['speedup']:.1f}x, size ratio {res['size_ratio']:.1f}x",
            flush=True,
        )
        if not args.skip_scene:
            t0 = time.perf_counter()
            scene, instances = synth_scene(work / "scene", args.cameras, args.frames, args.height, args.width)
            res["synth_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            paths = write_recordings(scene, tracks, work / "out", instances=instances)
            res["write_recordings_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            write_recordings(scene, tracks, work / "out", instances=instances)
            res["rerun_skip_s"] = time.perf_counter() - t0
            res["scene_bytes"] = paths.scene.stat().st_size
            res["combined_bytes"] = paths.combined.stat().st_size
            res["scene_bytes_per_camera_frame"] = res["scene_bytes"] / (args.cameras * args.frames)
            print(
                f"scene: {res['scene_bytes'] / 1e6:.1f} MB = {res['scene_bytes_per_camera_frame'] / 1e3:.0f} kB per camera-frame; "
                f"write_recordings {res['write_recordings_s']:.1f} s (re-run skip {res['rerun_skip_s']:.2f} s); combined {res['combined_bytes'] / 1e6:.1f} MB",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

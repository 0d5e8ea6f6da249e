"""``masktrack track``: every instance of a scene tracked independently, resumably.

Output layout (the scene itself is referenced by path, never copied)::

    <out>/<instance>/instance.json   provenance + manifest (key, complete flag, stats)
    <out>/<instance>/queries.npy     float32 [N, 4] (t, x, y, z)
    <out>/<instance>/tracks.npz      Tracks.save: tracks [T,N,3], visibility [T,N], queries, provenance
    <out>/tracking.json              the run's report

An instance is skipped when its ``instance.json`` is complete, its key equals
the current key (scene fingerprint, instance masks hash, tracker fingerprint,
query options, batch size) and its files load.  A run first rewrites
``instance.json`` as incomplete, then writes queries and tracks atomically,
and marks it complete last: a kill at any moment leaves nothing trusted.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.errors import BackendError, SceneError
from masktrack.io.atomic import atomic_path, atomic_write_json, clean_temp_files, hash_file, hash_json
from masktrack.io.scene import Scene, load_scene
from masktrack.track.base import Tracks, track_batched
from masktrack.track.instances import Instance, list_instances, load_instance
from masktrack.track.queries import QueryOptions, sample_queries
from masktrack.track.registry import get_tracker

KEY_VERSION = 1


@dataclass
class InstanceResult:
    name: str
    status: str  # "tracked" | "skipped" (up to date) | "empty" (no queries)
    num_queries: int = 0
    seconds: float = 0.0
    folder: str = ""
    visible_fraction: float = 0.0


@dataclass
class TrackingReport:
    out_dir: str
    tracker: str
    instances: list[InstanceResult] = field(default_factory=list)
    rerun: str | None = None

    @property
    def tracked(self) -> list[str]:
        return [r.name for r in self.instances if r.status == "tracked"]

    @property
    def skipped(self) -> list[str]:
        return [r.name for r in self.instances if r.status == "skipped"]


def scene_fingerprint(scene_path: Path) -> str:
    """Content fingerprint of a scene folder without reading every pixel.

    Small arrays (cameras, timestamps) and scene.json are hashed whole; the
    large rgbs/depths files by size plus 64 evenly spaced 64 kB blocks, which
    changes whenever the recording is re-imported or edited in practice and
    costs milliseconds on a multi-GB scene.
    """
    parts: dict[str, str] = {}
    for name in ("scene.json", "intrs.npy", "extrs.npy", "timestamps.npy"):
        p = scene_path / name
        if p.exists():
            parts[name] = hash_file(p)
    for name in ("rgbs.npy", "depths.npy"):
        p = scene_path / name
        parts[name] = _sampled_hash(p)
    return hash_json(parts)


def _sampled_hash(path: Path, blocks: int = 64, block: int = 1 << 16) -> str:
    import hashlib

    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= blocks * block:
            h.update(f.read())
        else:
            for i in range(blocks):
                f.seek((size - block) * i // (blocks - 1))
                h.update(f.read(block))
    return h.hexdigest()


def select_instances(scene_path: Path, instances: str | list[str]) -> list[str]:
    have = list_instances(scene_path)
    if instances == "all" or instances == ["all"]:
        if not have:
            raise SceneError(
                "scene has no instances; add some with `masktrack scene import --mask-key` or `masktrack instances add`",
                path=scene_path,
            )
        return have
    names = [
        s.strip() for s in (instances.split(",") if isinstance(instances, str) else instances) if s.strip()
    ]
    missing = [n for n in names if n not in have]
    if missing:
        raise SceneError(
            f"no instance(s) {', '.join(missing)} (instances: {', '.join(have) or 'none'})",
            path=scene_path,
            field="instances",
        )
    return names


def _is_done(folder: Path, key: str) -> bool:
    try:
        meta = json.loads((folder / "instance.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    if not meta.get("complete") or meta.get("key") != key:
        return False
    try:
        tr = Tracks.load(folder / "tracks.npz")
        q = np.load(folder / "queries.npy", allow_pickle=False)
    except (SceneError, OSError, ValueError):
        return False
    return tr.queries.shape == q.shape


def track_instance(
    scene: Scene,
    inst: Instance,
    folder: Path,
    tracker: Any,
    query_options: QueryOptions,
    key: str,
    provenance: dict[str, Any],
    max_points_per_batch: int | None,
) -> InstanceResult:
    """Sample, track and write one instance (instance.json marked complete last)."""
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    clean_temp_files(folder)
    meta = {**provenance, "instance": inst.name, "key": key, "complete": False}
    atomic_write_json(folder / "instance.json", meta)
    queries = sample_queries(scene, inst, query_options)
    with atomic_path(folder / "queries.npy") as tmp:
        np.save(tmp, queries.points, allow_pickle=False)
    if len(queries):
        tracks = track_batched(tracker, scene, queries.points, max_points=max_points_per_batch, instance=inst)
    else:
        from masktrack.track.base import empty_tracks

        tracks = empty_tracks(scene.num_frames, queries.points)
    tracks.instance = inst.name
    tracks.provenance = {**provenance, "tracker_run": tracks.provenance, "instance": inst.name}
    tracks.save(folder / "tracks.npz")
    secs = time.perf_counter() - t0
    vis = float(tracks.visibility.mean()) if tracks.visibility.size else 0.0
    stats = {
        "queries": queries.stats,
        "seconds": round(secs, 3),
        "visible_fraction": round(vis, 4),
        "query_cameras": np.bincount(queries.camera, minlength=scene.num_cameras).tolist(),
    }
    atomic_write_json(folder / "instance.json", {**meta, "complete": True, "stats": stats})
    return InstanceResult(
        inst.name,
        "tracked" if len(queries) else "empty",
        len(queries),
        round(secs, 3),
        str(folder),
        round(vis, 4),
    )


def run_tracking(
    scene_path: str | Path,
    out_dir: str | Path,
    *,
    tracker: str = "flow",
    tracker_options: dict[str, Any] | None = None,
    instances: str | list[str] = "all",
    query_options: QueryOptions = QueryOptions(),
    rerun: bool = False,
    force: bool = False,
    progress: bool = True,
    max_points_per_batch: int | None = None,
) -> TrackingReport:
    """Track every selected instance of the scene independently into ``out_dir`` (resumable)."""
    scene_path = Path(scene_path)
    out_dir = Path(out_dir)
    scene = load_scene(scene_path)
    names = select_instances(scene_path, instances)
    trk = get_tracker(tracker, **(tracker_options or {}))
    fp_scene = scene_fingerprint(scene_path)
    report = TrackingReport(str(out_dir), tracker)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    loaded: dict[str, Instance] = {}
    for i, name in enumerate(names, 1):
        inst = load_instance(scene_path, name)
        loaded[name] = inst
        if tuple(inst.shape) != (scene.num_cameras, scene.num_frames, *scene.size):
            raise SceneError(
                f"instance shape {tuple(inst.shape)} does not match the scene",
                path=inst.folder,
                field="shape",
            )
        provenance = {
            "scene": str(scene_path.resolve()),
            "scene_fingerprint": fp_scene,
            "instance_masks_sha256": hash_file(inst.folder / "masks.npy"),
            "tracker": trk.fingerprint(),
            "query_options": query_options.to_json(),
            "max_points_per_batch": max_points_per_batch,
            "key_version": KEY_VERSION,
        }
        key = hash_json(provenance)
        folder = out_dir / name
        if not force and _is_done(folder, key):
            meta = json.loads((folder / "instance.json").read_text(encoding="utf-8"))
            st = meta.get("stats", {})
            report.instances.append(
                InstanceResult(
                    name,
                    "skipped",
                    int(st.get("queries", {}).get("kept", 0)),
                    0.0,
                    str(folder),
                    float(st.get("visible_fraction", 0.0)),
                )
            )
            say(f"[{i}/{len(names)}] {name}: up to date, skipped")
            continue
        say(f"[{i}/{len(names)}] {name}: sampling queries and tracking with {tracker} ...")
        res = track_instance(scene, inst, folder, trk, query_options, key, provenance, max_points_per_batch)
        report.instances.append(res)
        say(
            f"[{i}/{len(names)}] {name}: {res.num_queries} queries, {res.seconds:.1f} s, {100 * res.visible_fraction:.0f}% visible"
        )
    atomic_write_json(
        out_dir / "tracking.json",
        {
            "scene": str(scene_path.resolve()),
            "tracker": tracker,
            "instances": [asdict(r) for r in report.instances],
        },
    )
    if rerun:
        report.rerun = write_rerun(scene, out_dir, names, loaded)
        say(f"rerun recording(s): {report.rerun}")
    return report


def write_rerun(scene: Scene, out_dir: Path, names: list[str], instances: dict[str, Instance]) -> str:
    """Hand the tracks to the Rerun writer (imported lazily)."""
    try:
        from masktrack.viz.rerun import write_recordings
    except ImportError as e:
        raise BackendError(f"Rerun recordings are not available ({e})", field="rerun") from None
    tracks = {n: Tracks.load(out_dir / n / "tracks.npz") for n in names}
    res = write_recordings(scene, tracks, out_dir, instances=instances)
    return str(getattr(res, "combined", res))

"""``masktrack track``: every instance of a scene tracked independently, resumably.

Output layout (the scene itself is referenced by path, never copied)::

    <out>/<instance>/instance.json   provenance + manifest (key, complete flag, stats)
    <out>/<instance>/queries.npy     float32 [N, 4] (t, x, y, z)
    <out>/<instance>/tracks.npz      Tracks.save: tracks [T,N,3], visibility [T,N], queries, provenance
    <out>/tracking.json              the run's report

An instance is reused when its ``instance.json`` is complete, its key equals
the current key (scene fingerprint, instance masks hash, tracker fingerprint,
query options, batch size) and ``queries.npy`` and ``tracks.npz`` have the size
and BLAKE2b hash recorded in its ``outputs`` (:mod:`masktrack.io.manifest`).
A damaged or edited file (a truncated ``tracks.npz``, a changed ``queries.npy``)
makes that instance tracked again and reported ``repaired``; it never crashes
the run.  An ``instance.json`` of the previous layout (no ``outputs``) is read
by loading both files, and upgraded in place.  A run first rewrites
``instance.json`` as incomplete, then writes queries and tracks atomically,
and marks it complete last: a kill at any moment leaves nothing trusted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.errors import SceneError
from masktrack.io.atomic import atomic_path, atomic_write_json, clean_temp_files, hash_file, hash_json
from masktrack.io.instances import Instance, list_instances, load_instance
from masktrack.io.lock import output_lock
from masktrack.io.manifest import (
    MANIFEST_FORMAT,
    TOOL_VERSION,
    Manifest,
    Status,
    begin,
    damaged_outputs,
    entry_for,
    finish,
    is_complete,
    legacy_layout,
    read_manifest,
)
from masktrack.io.scene import Scene, load_scene
from masktrack.track.base import Tracks, track_batched
from masktrack.track.queries import QueryOptions, sample_queries
from masktrack.track.registry import get_tracker

KEY_VERSION = 1


@dataclass
class InstanceResult:
    name: str
    status: Status  # computed | reused | repaired (its stored files failed verification)
    num_queries: int = 0
    seconds: float = 0.0
    folder: str = ""
    visible_fraction: float = 0.0


@dataclass
class TrackingReport:
    out_dir: str
    tracker: str
    instances: list[InstanceResult] = field(default_factory=list)

    @property
    def tracked(self) -> list[str]:
        """Instances tracked by this run (computed or repaired) that have queries."""
        return [
            r.name
            for r in self.instances
            if r.status in (Status.COMPUTED, Status.REPAIRED) and r.num_queries > 0
        ]

    @property
    def reused(self) -> list[str]:
        return [r.name for r in self.instances if r.status == Status.REUSED]

    skipped = reused  # the name before the shared Status vocabulary


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


OUTPUTS = ("queries.npy", "tracks.npz")


def _check_stored(folder: Path, key: str) -> tuple[bool, bool]:
    """(current, damaged): current = complete, same key, files verify; damaged = same key, files don't."""
    path = folder / "instance.json"
    m = read_manifest(path, "track")
    if m is None:
        if not legacy_layout(path):
            return False, False
        # previous layout (no hashes): load both files; if they load, record their hashes in place
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not is_complete(meta) or meta.get("key") != key:
            return False, False
        if not _loads(folder):
            return False, True
        atomic_write_json(path, {**meta, **_manifest_fields(folder)})
        return True, False
    if not is_complete(m) or m.key != key:
        return False, False
    ok = set(OUTPUTS) <= set(m.outputs) and not damaged_outputs(folder, m, OUTPUTS)
    return ok, not ok


def _loads(folder: Path) -> bool:
    try:
        tr = Tracks.load(folder / "tracks.npz")
        q = np.load(folder / "queries.npy", allow_pickle=False)
    except Exception:  # a damaged npz raises BadZipFile, EOFError, KeyError, ...: never trusted
        return False
    return tr.queries.shape == q.shape


def _manifest_fields(folder: Path) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "stage": "track",
        "tool_version": TOOL_VERSION,
        "outputs": {n: entry_for(folder / n).model_dump() for n in OUTPUTS},
    }


def track_instance(
    scene: Scene,
    inst: Instance,
    folder: Path,
    tracker: Any,
    query_options: QueryOptions,
    key: str,
    provenance: dict[str, Any],
    max_points_per_batch: int | None,
    repair: bool = False,
) -> InstanceResult:
    """Sample, track and write one instance (instance.json marked complete last)."""
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    clean_temp_files(folder)
    manifest = begin(
        folder / "instance.json",
        Manifest.model_validate({"stage": "track", "key": key, "instance": inst.name, **provenance}),
    )
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
    finish(folder / "instance.json", manifest, {n: entry_for(folder / n) for n in OUTPUTS}, stats=stats)
    return InstanceResult(
        inst.name,
        Status.REPAIRED if repair else Status.COMPUTED,
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
    force: bool = False,
    progress: Callable[[str], None] | bool | None = None,
    max_points_per_batch: int | None = None,
) -> TrackingReport:
    """Track every selected instance of the scene independently into ``out_dir`` (resumable).

    Everything the run reads (scene, every selected instance, the tracker) is loaded and
    checked once, before the output folder is created; the folder's writer lock
    (:mod:`masktrack.io.lock`) is held while writing.  ``progress`` receives one line per
    instance as it starts and ends (the CLI prints them).  Rerun recordings are the caller's
    choice (:func:`masktrack.viz.recordings.record_tracking`): tracking never imports a viewer.
    """
    scene_path, out_dir = Path(scene_path), Path(out_dir)
    scene = load_scene(scene_path)
    insts = [load_instance(scene_path, name) for name in select_instances(scene_path, instances)]
    for inst in insts:
        if tuple(inst.shape) != (scene.num_cameras, scene.num_frames, *scene.size):
            raise SceneError(
                f"instance shape {tuple(inst.shape)} does not match the scene",
                path=inst.folder,
                field="shape",
            )
    trk = get_tracker(tracker, **(tracker_options or {}))
    say: Callable[[str], None] = progress if callable(progress) else (lambda msg: None)
    with output_lock(out_dir, "track"):
        clean_temp_files(out_dir)  # a killed run's tracking.json temp file (we hold the lock)
        return _track_instances(
            scene_path, scene, insts, trk, tracker, out_dir, query_options, force, say, max_points_per_batch
        )


def _track_instances(
    scene_path: Path,
    scene: Any,
    insts: list[Any],
    trk: Any,
    tracker: str,
    out_dir: Path,
    query_options: QueryOptions,
    force: bool,
    say: Callable[[str], None],
    max_points_per_batch: int | None,
) -> TrackingReport:
    """The locked part of :func:`run_tracking`: each instance reused if its key and files verify,
    else (re)tracked; then the run's summary ``tracking.json``."""
    fp_scene = scene_fingerprint(scene_path)
    report = TrackingReport(str(out_dir), tracker)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [inst.name for inst in insts]
    for i, inst in enumerate(insts, 1):
        name = inst.name
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
        current, damaged = (False, False) if force else _check_stored(folder, key)
        if current:
            meta = json.loads((folder / "instance.json").read_text(encoding="utf-8"))
            st = meta.get("stats", {})
            report.instances.append(
                InstanceResult(
                    name,
                    Status.REUSED,
                    int(st.get("queries", {}).get("kept", 0)),
                    0.0,
                    str(folder),
                    float(st.get("visible_fraction", 0.0)),
                )
            )
            say(f"[{i}/{len(names)}] {name}: up to date, reused")
            continue
        if damaged:
            say(f"[{i}/{len(names)}] {name}: stored queries/tracks fail verification, tracking again")
        say(f"[{i}/{len(names)}] {name}: sampling queries and tracking with {tracker} ...")
        res = track_instance(
            scene, inst, folder, trk, query_options, key, provenance, max_points_per_batch, repair=damaged
        )
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
    return report

"""Write a scene's instances back as mvtracker NPZ files, one per instance (the upstream per-mask workflow).

Users of the original tools run mvtracker's ``demo.py`` on one NPZ per instance.  Each file holds,
pickle-free (``np.load`` without ``allow_pickle`` reads it)::

    rgbs                  uint8   [C, T, 3, H, W]
    depths                float32 [C, T, 1, H, W]   metres, 0 = invalid
    intrs                 float32 [C, T, 3, 3]
    extrs                 float32 [C, T, 3, 4]      world-to-camera [R|t]
    query_points          float32 [N, 4]            (t, x, y, z) of this instance
    camera_ids            <U      [C]               plain strings, not an object array
    masks                 bool    [C, T, H, W]      this instance's masks
    per_camera_timestamps         [C, T]            when the scene has timestamps (as stored)
    sam2_contact_frames   int64   [C]               when the scene has contact frames (-1 = none)

The query points are the instance's own (``--window given``, e.g. imported with the scene) when it
has them, else sampled with the default :class:`~masktrack.track.queries.QueryOptions` (deterministic).
``masktrack scene import FILE SCENE --mask-key masks=NAME`` reads a file back.

Each NPZ is written atomically; ``manifest.json`` (files, their sha256, the scene and options) is
written last, so a folder without it (or with other keys) is not a finished export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from masktrack.errors import SceneError
from masktrack.io.atomic import atomic_path, atomic_write_json, hash_file
from masktrack.io.scene import load_scene

EXPORT_FORMAT = "masktrack.mvtracker_export"


@dataclass(frozen=True)
class ExportedInstance:
    name: str
    path: Path
    query_points: int
    query_source: str  # "given" | "sampled"


def export_mvtracker(
    scene_path: str | Path, out_dir: str | Path, *, instances: list[str] | None = None
) -> list[ExportedInstance]:
    """Write ``<out_dir>/<instance>.npz`` for each instance (all by default) of the scene."""
    from masktrack.io.instances import GIVEN_QUERIES, list_instances, load_instance
    from masktrack.track.queries import QueryOptions, sample_queries

    scene_path, out_dir = Path(scene_path), Path(out_dir)
    scene = load_scene(scene_path)
    names = list_instances(scene_path)
    wanted = names if not instances else list(instances)
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise SceneError(
            f"no instance(s) {', '.join(unknown)} (instances: {', '.join(names) or 'none'})",
            path=scene_path,
            field="--instances",
        )
    if not wanted:
        raise SceneError("the scene has no instances to export", path=scene_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    c, t = scene.num_cameras, scene.num_frames
    common: dict[str, np.ndarray] = {
        "rgbs": np.ascontiguousarray(np.asarray(scene.rgbs).transpose(0, 1, 4, 2, 3)),
        "depths": np.asarray(scene.depths, np.float32)[:, :, None],
        "intrs": np.asarray(scene.intrs, np.float32),
        "extrs": np.asarray(scene.extrs, np.float32),
        "camera_ids": np.array([str(i) for i in scene.camera_ids], dtype=str),
    }
    if scene.timestamps is not None:
        common["per_camera_timestamps"] = np.asarray(scene.timestamps)
    contact = scene.meta.get("contact_frames")
    if contact:
        common["sam2_contact_frames"] = np.array(
            [int(contact.get(cid, -1)) for cid in scene.camera_ids], np.int64
        )
    made = []
    files = {}
    for name in wanted:
        inst = load_instance(scene_path, name)
        if (inst.folder / GIVEN_QUERIES).exists():
            q, source = sample_queries(scene, inst, QueryOptions(window="given")).points, "given"
        else:
            q, source = sample_queries(scene, inst, QueryOptions()).points, "sampled"
        masks = inst.masks()
        if masks.shape != (c, t, *scene.size):
            raise SceneError(f"instance shape {masks.shape} does not match the scene", path=inst.folder)
        path = out_dir / f"{name}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            arrays = {**common, "query_points": np.asarray(q, np.float32), "masks": masks}
            np.savez(f, **arrays)  # type: ignore[arg-type]  # (numpy's stub: a key could be allow_pickle)
        files[name] = {
            "file": path.name,
            "sha256": hash_file(path),
            "query_points": int(len(q)),
            "queries": source,
        }
        made.append(ExportedInstance(name, path, int(len(q)), source))
    atomic_write_json(
        out_dir / "manifest.json",
        {"format": EXPORT_FORMAT, "version": 1, "scene": str(scene_path.resolve()), "instances": files},
    )
    return made

"""Scene instances from masktrack's own segmentation and composition outputs.

``masktrack instances add`` and the batch/demo track stage turn a mask-store object
(``session.object``) or a composed output (``composed:name``) of every camera's output folder into
one instance of a scene.  It lives here, above the scene format (``io``) and next to the stores it
reads, so that ``io`` never imports a stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from masktrack.errors import SceneError
from masktrack.io.instances import Instance, list_instances, load_instance, save_instance
from masktrack.io.scene import Scene, load_scene
from masktrack.io.scene_import import PALETTE, _check_name, _resize_masks
from masktrack.masks.export import load_composed
from masktrack.masks.store import MaskStore


def _composed_masks(output: Path, name: str) -> np.ndarray:
    """bool [T, H, W] of composition ``name`` in a pipeline output folder."""
    return np.asarray(load_composed(output, name), bool)


def read_output_masks(output: str | Path, ref: str) -> np.ndarray:
    """``"session.object"`` / ``"object"`` from the mask store, or ``"composed:name"`` -> bool [T, H, W]."""
    output = Path(output)
    if ref.startswith("composed:"):
        return _composed_masks(output, ref.split(":", 1)[1])
    store = MaskStore(output)
    session, obj = store.find_object(ref)
    return store.session(session).read_object(obj)


def instances_from_outputs(
    scene: Scene | str | Path,
    outputs: Mapping[str, str | Path],
    refs: Mapping[str, str],
) -> list[Instance]:
    """Add instances to ``scene`` from masktrack pipeline outputs, one output folder per camera.

    ``outputs`` maps camera id -> output folder (cameras left out get empty
    masks); ``refs`` maps instance name -> ``"session.object"`` or
    ``"composed:name"``.  Frames must match the scene; sizes may differ by a
    nearest-neighbour scaling.  An instance that exists already keeps its id and colour (a re-run
    of a batch unit rewrites its masks, not its identity, so recordings keyed on it stay current).
    """
    if not isinstance(scene, Scene):
        scene = load_scene(scene)
    if scene.path is None:
        raise SceneError("scene has no folder; save it first")
    c, t = scene.num_cameras, scene.num_frames
    h, w = scene.size
    unknown = [cid for cid in outputs if cid not in scene.camera_ids]
    if unknown:
        raise SceneError(
            f"unknown camera id(s) {unknown} (cameras: {', '.join(scene.camera_ids)})",
            path=scene.path,
            field="camera_ids",
        )
    existing = list_instances(scene.path)
    made = []
    for i, (name, ref) in enumerate(refs.items()):
        _check_name(name, scene.path, name)
        masks = np.zeros((c, t, h, w), bool)
        for cid, out in outputs.items():
            m = read_output_masks(out, ref)
            if m.shape[0] != t:
                raise SceneError(
                    f"{m.shape[0]} mask frames for {t} scene frames (camera {cid})", path=Path(out), field=ref
                )
            masks[scene.camera_ids.index(cid)] = _resize_masks(m, (h, w), Path(out), ref)
        idx = len(existing) + i
        iid, color = idx + 1, PALETTE[idx % len(PALETTE)]
        if name in existing:
            try:
                old = load_instance(scene.path, name)
                iid, color = old.id, old.color
            except SceneError:
                pass  # an unreadable old instance is replaced like a new one
        made.append(
            save_instance(
                scene.path,
                name,
                masks,
                id=iid,
                color=color,
                source={
                    "kind": "masktrack-output",
                    "ref": ref,
                    "outputs": {k: str(Path(v).resolve()) for k, v in outputs.items()},
                },
            )
        )
    return made

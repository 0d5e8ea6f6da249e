"""Checks of a scene's instances before tracking: shapes, empty masks, depth inside masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from masktrack.errors import Problem
from masktrack.io.instances import list_instances, load_instance
from masktrack.io.scene import load_scene


def verify_instances(
    scene_path: str | Path, *, min_depth_valid: float = 0.5
) -> tuple[list[str], list[Problem]]:
    """Report lines and problems for every instance of the scene.

    A problem is: a mask shape that differs from the scene, an instance with no
    mask pixel at all, unreadable masks, or a camera where less than
    ``min_depth_valid`` of the mask pixels have valid depth (queries there
    would be few and biased to the object's border).
    """
    scene_path = Path(scene_path)
    sc = load_scene(scene_path)
    lines: list[str] = []
    problems: list[Problem] = []
    want = (sc.num_cameras, sc.num_frames, *sc.size)
    for name in list_instances(scene_path):
        inst = load_instance(scene_path, name)
        if tuple(inst.shape) != want:
            problems.append(
                Problem(f"instances[{name}].shape", f"{tuple(inst.shape)} does not match the scene {want}")
            )
            continue
        packed = inst.packed()
        if packed.shape != (*want[:3], (want[3] + 7) // 8):
            problems.append(
                Problem(f"instances[{name}].masks", f"packed shape {packed.shape} does not match {want}")
            )
            continue
        total = 0
        for c, cid in enumerate(sc.camera_ids):
            m = np.unpackbits(np.asarray(packed[c]), axis=-1, count=want[3]).astype(bool)
            d = np.asarray(sc.depths[c]) > 0
            px = int(m.sum())
            total += px
            frames = int(m.reshape(want[1], -1).any(axis=1).sum())
            valid = float((m & d).sum() / px) if px else 1.0
            lines.append(
                f"{name} {cid}: {frames}/{want[1]} frames with mask, {px} px, depth valid {100 * valid:.0f}%"
            )
            if px and valid < min_depth_valid:
                problems.append(
                    Problem(
                        f"instances[{name}].cameras[{cid}]",
                        f"only {100 * valid:.0f}% of mask pixels have valid depth",
                    )
                )
        if total == 0:
            problems.append(Problem(f"instances[{name}]", "masks are empty in every camera and frame"))
    if not list_instances(scene_path):
        lines.append("no instances")
    return lines, problems

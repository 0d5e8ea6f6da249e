"""Batch units with kinematic prompts: a dataset with robot state needs zero prompt files.

A job's ``robot`` section names, per unit, the scene holding the robot state
and the scene camera the unit's video shows (templates, like ``video``)::

    robot: {scene: "{scene_dir}/scene", camera: "{camera}"}

For a unit whose scene has robot state, sessions with a ``kinematics``
section take their robot objects from it and the prompt file becomes
optional.  For a unit without robot state, those sessions fall back to the
prompt file (their ``kinematics`` section is dropped, their objects stay);
without a prompt file either, the unit is reported as skipped with the
reason.  The robot data's file stamps are part of the unit key, so editing
the robot state re-runs the unit.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from masktrack.errors import PromptError
from masktrack.io.scene_robot import has_scene_robot


def uses_kinematics(pipeline: dict[str, Any]) -> bool:
    return any(isinstance(s, dict) and s.get("kinematics") for s in pipeline.get("sessions", []))


def apply_robot(d: dict[str, Any], robot_scene: Path | None, robot_camera: str) -> dict[str, Any]:
    """A unit's pipeline dict with its robot source set, or its kinematic sessions turned back to prompt files."""
    if not uses_kinematics(d):
        return d
    d = copy.deepcopy(d)
    if robot_scene is not None and has_scene_robot(robot_scene):
        d["robot"] = {"scene": str(robot_scene), "camera": robot_camera}
        if d.get("prompts") and not Path(d["prompts"]).is_file():
            d.pop("prompts")  # the robot state replaces it
        return d
    d.pop("robot", None)
    for s in d.get("sessions", []):
        k = s.pop("kinematics", None) if isinstance(s, dict) else None
        if k and not s.get("objects"):
            s["objects"] = list((k.get("objects") or {}).keys())
    return d


def robot_stamp(robot_scene: Path | None) -> list[Any] | None:
    """File names, sizes and mtimes of the scene's robot data and cameras (None without robot state)."""
    if robot_scene is None or not has_scene_robot(robot_scene):
        return None
    from masktrack.segment.kinematic import _robot_stamp

    return _robot_stamp(Path(robot_scene))


def check_prompt_source(
    pipeline: dict[str, Any], robot_scene: Path | None, prompts: Path | None
) -> Path | None:
    """The prompt file a unit needs (None when robot state replaces it); raises PromptError to skip the unit."""
    kin = uses_kinematics(pipeline)
    has_robot = robot_scene is not None and has_scene_robot(robot_scene)
    if kin and has_robot:
        return prompts if prompts is not None and prompts.is_file() else None
    if prompts is None:
        if kin:
            raise PromptError(
                f"no robot state ({robot_scene or 'the job has no robot section'}) and no prompt file",
                path=robot_scene,
            )
        return None
    if not prompts.is_file():
        why = "prompt file missing" + (" and the scene has no robot state" if kin else "")
        raise PromptError(why, path=prompts)
    return prompts

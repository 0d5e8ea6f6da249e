"""The synthetic robot as a URDF plus joint states: what a real dataset would record.

The generator poses its primitives directly (:mod:`masktrack.synth.scene`);
this module describes the same solids as a kinematic tree so the robot
pipeline (:mod:`masktrack.robot`) can render them from joint states alone,
and the demo can run with zero clicks.  The tree::

    base --yaw(z)--> turret --shoulder_pitch--> upper_arm --elbow_pitch--> forearm
         --wrist_pitch--> wrist --fixed--> palm --finger_left_joint (prismatic +y)--> finger_left
                                                 --finger_right_joint (prismatic -y)--> finger_right

Pitch joints turn about ``-y`` of their frame (x along the link, y along the
pitch axis), so a positive value raises the link.  ``wrist_pitch`` keeps the
wrist vertical, as the generator's wrist always points down; the fingers
slide by the generator's half opening.  Link names are the generator's
(``masktrack.synth.generate.LINK_NAMES``), so per-link ground truth lines up.
"""

from __future__ import annotations

import numpy as np

from masktrack.synth.scene import ArmGeometry, Trajectory

JOINT_NAMES = [
    "yaw",
    "shoulder_pitch",
    "elbow_pitch",
    "wrist_pitch",
    "finger_left_joint",
    "finger_right_joint",
]
LINK_GROUPS = {
    "arm": ["base", "turret", "upper_arm", "forearm", "wrist", "palm", "finger_left", "finger_right"],
    "arm_only": ["base", "turret", "upper_arm", "forearm", "wrist"],
    "gripper": ["palm", "finger_left", "finger_right"],
    "gripper_left": ["finger_left"],
    "gripper_right": ["finger_right"],
}
"""``arm`` is the whole robot, as the demo's ``arm`` session (and ``gt_arm``) means it."""

_CYL_ALONG_Y = "1.5707963267948966 0 0"  # rpy turning a URDF cylinder's z axis onto -y


def _f(*v: float) -> str:
    return " ".join(f"{x:.9g}" for x in v)


def _visual(geometry: str, xyz: tuple[float, ...] = (0, 0, 0), rpy: str = "0 0 0") -> str:
    return f'    <visual><origin xyz="{_f(*xyz)}" rpy="{rpy}"/><geometry>{geometry}</geometry></visual>\n'


def _box(x: float, y: float, z: float) -> str:
    return f'<box size="{_f(x, y, z)}"/>'


def _cyl(radius: float, length: float) -> str:
    return f'<cylinder radius="{radius:.9g}" length="{length:.9g}"/>'


def robot_urdf(geo: ArmGeometry | None = None, name: str = "masktrack_synth_arm") -> str:
    """URDF text of the synthetic arm (boxes and cylinders only, no mesh files)."""
    g = geo or ArmGeometry()
    turret_h = g.shoulder_height - g.base_height
    links = {
        "base": _visual(_cyl(g.base_radius, g.base_height), (0, 0, g.base_height / 2)),
        "turret": _visual(_cyl(g.turret_radius, turret_h), (0, 0, g.base_height + turret_h / 2)),
        "upper_arm": _visual(_cyl(0.052, 0.14), rpy=_CYL_ALONG_Y)
        + _visual(_box(g.upper_len, g.upper_width, g.upper_width * 0.9), (g.upper_len / 2, 0, 0)),
        "forearm": _visual(_cyl(0.046, 0.12), rpy=_CYL_ALONG_Y)
        + _visual(_box(g.fore_len, g.fore_width, g.fore_width * 0.9), (g.fore_len / 2, 0, 0)),
        "wrist": _visual(_cyl(0.036, 0.09), rpy=_CYL_ALONG_Y)
        + _visual(_box(g.wrist_len, g.wrist_width, g.wrist_width), (g.wrist_len / 2, 0, 0)),
        "palm": _visual(_box(g.palm_depth, g.palm_span, g.palm_h), (0, 0, -g.palm_h / 2)),
        "finger_left": _visual(
            _box(g.finger_depth, g.finger_thick, g.finger_len), (0, 0, -(g.palm_h + g.finger_len / 2))
        ),
        "finger_right": _visual(
            _box(g.finger_depth, g.finger_thick, g.finger_len), (0, 0, -(g.palm_h + g.finger_len / 2))
        ),
    }
    reach = 4.0
    joints = [
        ("yaw", "revolute", "base", "turret", (0, 0, 0), "0 0 0", "0 0 1"),
        ("shoulder_pitch", "revolute", "turret", "upper_arm", (0, 0, g.shoulder_height), "0 0 0", "0 -1 0"),
        ("elbow_pitch", "revolute", "upper_arm", "forearm", (g.upper_len, 0, 0), "0 0 0", "0 -1 0"),
        ("wrist_pitch", "revolute", "forearm", "wrist", (g.fore_len, 0, 0), "0 0 0", "0 -1 0"),
        ("palm_mount", "fixed", "wrist", "palm", (g.wrist_len, 0, 0), f"0 {-np.pi / 2:.12g} 0", None),
        ("finger_left_joint", "prismatic", "palm", "finger_left", (0, 0, 0), "0 0 0", "0 1 0"),
        ("finger_right_joint", "prismatic", "palm", "finger_right", (0, 0, 0), "0 0 0", "0 -1 0"),
    ]
    out = [f'<?xml version="1.0"?>\n<robot name="{name}">\n']
    for ln, vis in links.items():
        out.append(f'  <link name="{ln}">\n{vis}  </link>\n')
    for jn, kind, parent, child, xyz, rpy, axis in joints:
        out.append(f'  <joint name="{jn}" type="{kind}">\n')
        out.append(f'    <parent link="{parent}"/><child link="{child}"/>\n')
        out.append(f'    <origin xyz="{_f(*xyz)}" rpy="{rpy}"/>\n')
        if axis is not None:
            lim = "0.1" if kind == "prismatic" else f"{reach:g}"
            low = "0" if kind == "prismatic" else f"-{reach:g}"
            out.append(
                f'    <axis xyz="{axis}"/><limit lower="{low}" upper="{lim}" effort="10" velocity="1"/>\n'
            )
        out.append("  </joint>\n")
    out.append("</robot>\n")
    return "".join(out)


def joint_states(traj: Trajectory | np.ndarray) -> np.ndarray:
    """Joint positions [T, 6] in :data:`JOINT_NAMES` order from the generator's joints [T, 4]
    (yaw, shoulder pitch, elbow pitch relative to the upper arm, half opening)."""
    j = np.asarray(traj.joints if isinstance(traj, Trajectory) else traj, np.float64)
    yaw, phi1, elbow, grip = j[:, 0], j[:, 1], j[:, 2], j[:, 3]
    wrist = -np.pi / 2 - (phi1 + elbow)  # the wrist points straight down
    return np.stack([yaw, phi1, elbow, wrist, grip, grip], 1)

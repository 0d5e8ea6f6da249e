"""MJCF (MuJoCo XML) robots through the optional ``mujoco`` package: bodies become links, joints joints.

Basic on purpose: one hinge or slide joint per body (free/ball joints are
taken as fixed: a recording describes them through the base pose), geoms of
type mesh, box, sphere, cylinder and capsule (as a cylinder with spherical
caps).  MuJoCo compiles the file (includes, defaults, mesh loading), so the
mesh vertices come out already in the geom frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from masktrack.robot.model import (
    Joint,
    RobotModel,
    RobotModelError,
    Visual,
    box_mesh,
    cylinder_mesh,
    decimate,
    sphere_mesh,
)


def _quat_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = (float(a) for a in q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _pose(pos, quat) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = _quat_matrix(quat)
    T[:3, 3] = pos
    return T


def load_mjcf(path: str | Path, *, mesh_resolution: float = 0.003) -> RobotModel:
    path = Path(path)
    try:
        import mujoco
    except ImportError:
        raise RobotModelError(
            "MJCF models need the 'mujoco' package (pip install mujoco)", path=path
        ) from None
    try:
        m = mujoco.MjModel.from_xml_path(str(path))
    except Exception as e:  # mujoco raises ValueError with its compiler message
        raise RobotModelError(f"MuJoCo cannot compile the model: {e}", path=path) from None

    def name(kind, i: int, prefix: str) -> str:
        n = mujoco.mj_id2name(m, kind, i)
        return n if n else f"{prefix}{i}"

    body_names = [name(mujoco.mjtObj.mjOBJ_BODY, b, "body") for b in range(m.nbody)]
    parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {b: [] for b in range(m.nbody)}
    for g in range(m.ngeom):
        b = int(m.geom_bodyid[g])
        if b == 0 or int(m.geom_group[g]) >= 3:  # world geoms (floor) and collision-only groups
            continue
        t = int(m.geom_type[g])
        size = m.geom_size[g]
        if t == mujoco.mjtGeom.mjGEOM_MESH:
            mid = int(m.geom_dataid[g])
            va, vn = int(m.mesh_vertadr[mid]), int(m.mesh_vertnum[mid])
            fa, fn = int(m.mesh_faceadr[mid]), int(m.mesh_facenum[mid])
            v = np.asarray(m.mesh_vert[va : va + vn], float)
            f = np.asarray(m.mesh_face[fa : fa + fn], np.int64)
            v, f = decimate(v, f, mesh_resolution)
        elif t == mujoco.mjtGeom.mjGEOM_BOX:
            v, f = box_mesh(2 * size[:3])
        elif t == mujoco.mjtGeom.mjGEOM_SPHERE:
            v, f = sphere_mesh(float(size[0]))
        elif t == mujoco.mjtGeom.mjGEOM_CYLINDER:
            v, f = cylinder_mesh(float(size[0]), 2 * float(size[1]))
        elif t == mujoco.mjtGeom.mjGEOM_CAPSULE:
            cv, cf = cylinder_mesh(float(size[0]), 2 * float(size[1]))
            s1, sf = sphere_mesh(float(size[0]))
            v = np.concatenate([cv, s1 + [0, 0, size[1]], s1 - [0, 0, size[1]]])
            f = np.concatenate([cf, sf + len(cv), sf + len(cv) + len(s1)])
        else:
            continue
        T = _pose(m.geom_pos[g], m.geom_quat[g])
        parts[b].append((v @ T[:3, :3].T + T[:3, 3], f))
    links: dict[str, Visual | None] = {}
    for b in range(m.nbody):
        if parts[b]:
            vs, fs, n = [], [], 0
            for v, f in parts[b]:
                vs.append(v)
                fs.append(f + n)
                n += len(v)
            links[body_names[b]] = Visual(np.concatenate(vs), np.concatenate(fs))
        else:
            links[body_names[b]] = None
    joints: list[Joint] = []
    problems = []
    for b in range(1, m.nbody):
        parent = body_names[int(m.body_parentid[b])]
        origin = _pose(m.body_pos[b], m.body_quat[b])
        jn = int(m.body_jntnum[b])
        ja = int(m.body_jntadr[b])
        kinds = [int(m.jnt_type[ja + k]) for k in range(jn)]
        moving = [
            ja + k
            for k, t in enumerate(kinds)
            if t in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)
        ]
        if len(moving) > 1:
            problems.append(f"body {body_names[b]} has {len(moving)} hinge/slide joints (one is supported)")
            continue
        if not moving:
            joints.append(
                Joint(f"{body_names[b]}_fixed", "fixed", parent, body_names[b], origin, np.zeros(3))
            )
            continue
        j = moving[0]
        axis = np.asarray(m.jnt_axis[j], float)
        jt = "revolute" if int(m.jnt_type[j]) == mujoco.mjtJoint.mjJNT_HINGE else "prismatic"
        anchor = np.asarray(m.jnt_pos[j], float)
        if jt == "revolute" and np.linalg.norm(anchor) > 1e-9:
            problems.append(
                f"joint {name(mujoco.mjtObj.mjOBJ_JOINT, j, 'joint')}: off-origin hinge anchors are not supported"
            )
            continue
        lo, hi = (float(x) for x in m.jnt_range[j]) if m.jnt_limited[j] else (None, None)
        joints.append(
            Joint(
                name(mujoco.mjtObj.mjOBJ_JOINT, j, "joint"), jt, parent, body_names[b], origin, axis, lo, hi
            )
        )
    if problems:
        from masktrack.errors import Problem

        raise RobotModelError("unsupported MJCF", path=path, problems=[Problem("", p) for p in problems])
    return RobotModel(name=path.stem, root=body_names[0], links=links, joints=joints, source=str(path))

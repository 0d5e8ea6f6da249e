"""Geometry and kinematics of the synthetic robot scene (no rendering here).

World frame: metres, z up, the table top is the plane z = 0 and the robot base
stands at the origin.  Every solid is an analytic primitive (an oriented box or
a capped cylinder) with a rigid pose per frame, so every ground truth is exact:
a surface point given in a primitive's local frame moves as ``pose[t] @ p``.

The arm is a yaw-pitch-pitch chain whose wrist always points down; its tip
follows a minimum-jerk path through a few waypoints (approach, descend, close
the gripper, push).  The object is pushed radially: while in contact its back
face stays glued to the fingers' front faces, before that it rests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BOX = 0
CYLINDER = 1


@dataclass(frozen=True)
class Material:
    """An object-space procedural texture: base colour, sum-of-waves noise and a checker."""

    base: tuple[float, float, float]  # RGB in 0..1
    tint: tuple[float, float, float]  # colour of the second noise channel
    waves: np.ndarray  # float [K, 5]: direction (3, unit) * 1, angular frequency (rad/m), phase
    contrast: float = 0.35
    checker: float = 0.0  # checker size in metres (0 = none)
    checker_contrast: float = 0.0


@dataclass
class Primitive:
    """A rigid solid: ``kind`` BOX (half sizes x, y, z) or CYLINDER (radius, radius, half length along z)."""

    name: str
    kind: int
    half: tuple[float, float, float]
    instance: str  # "arm", "gripper", "object", "table", "floor"
    link: str
    material: Material
    poses: np.ndarray  # float64 [T, 4, 4] world-from-local

    def area_weights(self) -> np.ndarray:
        hx, hy, hz = self.half
        if self.kind == BOX:
            # faces: +-x, +-y, +-z
            return np.array([hy * hz, hy * hz, hx * hz, hx * hz, hx * hy, hx * hy]) * 4.0
        r = hx
        return np.array([2 * np.pi * r * 2 * hz, np.pi * r * r, np.pi * r * r])


@dataclass(frozen=True)
class ArmGeometry:
    """Dimensions of the robot (metres)."""

    base_radius: float = 0.085
    base_height: float = 0.08
    turret_radius: float = 0.06
    shoulder_height: float = 0.19
    upper_len: float = 0.36
    upper_width: float = 0.065
    fore_len: float = 0.32
    fore_width: float = 0.055
    wrist_len: float = 0.06
    wrist_width: float = 0.045
    palm_h: float = 0.03
    palm_depth: float = 0.05  # along the radial direction
    palm_span: float = 0.14  # along the finger opening direction
    finger_len: float = 0.08
    finger_depth: float = 0.026  # along the radial direction
    finger_thick: float = 0.02  # along the opening direction
    object_half: tuple[float, float, float] = (0.04, 0.04, 0.035)

    @property
    def tip_to_wrist(self) -> float:
        """Vertical distance from the finger tips to the wrist joint."""
        return self.wrist_len + self.palm_h + self.finger_len


@dataclass
class Trajectory:
    """The robot's joint path and the object's motion, per frame."""

    yaw: np.ndarray  # [T]
    tip: np.ndarray  # [T, 3] world position of the finger tips' centre
    grip: np.ndarray  # [T] half opening: distance of each finger's centre from the gripper axis
    shoulder: np.ndarray  # [T, 3]
    elbow: np.ndarray  # [T, 3]
    wrist: np.ndarray  # [T, 3]
    object_center: np.ndarray  # [T, 3]
    joints: np.ndarray = field(
        default_factory=lambda: np.zeros(0)
    )  # [T, 4] yaw, shoulder pitch, elbow pitch, grip


def min_jerk(s: np.ndarray) -> np.ndarray:
    """0 -> 1 with zero velocity and acceleration at both ends: a human-like reach."""
    s = np.clip(s, 0.0, 1.0)
    return s**3 * (10 - 15 * s + 6 * s * s)


def _waypoint_path(times: np.ndarray, keys: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """Piecewise minimum-jerk interpolation of ``keys`` (time in 0..1, value) at ``times``."""
    out = np.empty((len(times), len(keys[0][1])))
    for i, t in enumerate(times):
        for (t0, v0), (t1, v1) in zip(keys[:-1], keys[1:], strict=True):
            if t <= t1 or (t1 == keys[-1][0]):
                s = (t - t0) / max(t1 - t0, 1e-9)
                out[i] = v0 + (v1 - v0) * min_jerk(np.array(s))
                break
    return out


def plan_trajectory(num_frames: int, geo: ArmGeometry, rng: np.random.Generator) -> Trajectory:
    """Approach above the object, descend behind it, close the gripper, push it outwards."""
    obj_yaw = 0.28 + rng.uniform(-0.08, 0.08)
    obj_r0 = 0.42 + rng.uniform(-0.02, 0.02)
    oh = geo.object_half
    contact = geo.finger_depth / 2 + oh[0] + 0.002  # tip centre -> object centre while pushing
    r_pre = obj_r0 - contact - 0.004
    push = 0.13
    tip_z = 0.018
    # (time, [yaw, r, z, grip])
    keys = [
        (0.0, np.array([-0.45, 0.30, 0.30, 0.02])),
        (0.38, np.array([obj_yaw, r_pre - 0.02, 0.15, 0.048])),
        (0.56, np.array([obj_yaw, r_pre, tip_z, 0.048])),
        (0.66, np.array([obj_yaw, r_pre, tip_z, 0.010 + geo.finger_thick / 2])),
        (1.0, np.array([obj_yaw, r_pre + push, tip_z, 0.010 + geo.finger_thick / 2])),
    ]
    times = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    path = _waypoint_path(times, keys)
    yaw, r, z, grip = path.T
    er = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], -1)
    tip = er * r[:, None] + np.array([0, 0, 1.0]) * z[:, None]
    wrist = tip + np.array([0, 0, geo.tip_to_wrist])
    shoulder = np.tile(np.array([0, 0, geo.shoulder_height]), (num_frames, 1))
    # planar 2-link IK in the (radial, up) plane, elbow up
    pr = r
    pz = wrist[:, 2] - geo.shoulder_height
    d = np.hypot(pr, pz)
    l1, l2 = geo.upper_len, geo.fore_len
    if (d > l1 + l2 - 1e-6).any() or (d < abs(l1 - l2) + 1e-6).any():
        raise ValueError("synthetic path leaves the arm's reach")
    a = (l1 * l1 - l2 * l2 + d * d) / (2 * d)
    hgt = np.sqrt(np.maximum(l1 * l1 - a * a, 0))
    ux, uz = pr / d, pz / d
    er_, ez_ = ux * a - uz * hgt, uz * a + ux * hgt  # rotate left of S->W: elbow up
    elbow = er * er_[:, None] + np.array([0, 0, 1.0]) * (ez_ + geo.shoulder_height)[:, None]
    # the object: at rest until the fingers reach it, then carried along radially
    r_obj = np.maximum(obj_r0, r + contact)
    contact_on = z < tip_z + 0.01
    r_obj = np.where(contact_on, r_obj, obj_r0)
    r_obj = np.maximum.accumulate(r_obj)  # pushed objects do not come back
    oer = np.array([np.cos(obj_yaw), np.sin(obj_yaw), 0.0])
    obj_c = r_obj[:, None] * oer + np.array([0, 0, oh[2]])
    phi1 = np.arctan2(ez_, er_)
    phi2 = np.arctan2(pz - ez_, pr - er_)
    joints = np.stack([yaw, phi1, phi2 - phi1, grip], -1)
    return Trajectory(
        yaw=yaw,
        tip=tip,
        grip=grip,
        shoulder=shoulder,
        elbow=elbow,
        wrist=wrist,
        object_center=obj_c,
        joints=joints,
    )


def _pose(rot: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """[T,3,3] rotations (columns = local axes in world) and [T,3] positions -> [T,4,4]."""
    t = rot.shape[0]
    m = np.zeros((t, 4, 4))
    m[:, :3, :3] = rot
    m[:, :3, 3] = pos
    m[:, 3, 3] = 1.0
    return m


def _frame(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rotation [T,3,3] whose columns are x, y, x cross y (x, y orthonormal)."""
    return np.stack([x, y, np.cross(x, y)], -1)


def _random_material(
    rng: np.random.Generator,
    base: tuple[float, float, float],
    *,
    tint: tuple[float, float, float] | None = None,
    wavelengths: tuple[float, float] = (0.015, 0.06),
    k: int = 10,
    contrast: float = 0.35,
    checker: float = 0.0,
    checker_contrast: float = 0.0,
) -> Material:
    dirs = rng.normal(size=(k, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    lam = np.exp(rng.uniform(np.log(wavelengths[0]), np.log(wavelengths[1]), k))
    waves = np.concatenate([dirs, (2 * np.pi / lam)[:, None], rng.uniform(0, 2 * np.pi, (k, 1))], 1)
    if tint is None:
        t = rng.uniform(-0.15, 0.15, 3)
        tint = (float(t[0]), float(t[1]), float(t[2]))
    return Material(
        base=base,
        tint=tint,
        waves=waves,
        contrast=contrast,
        checker=checker,
        checker_contrast=checker_contrast,
    )


def build_primitives(traj: Trajectory, geo: ArmGeometry, rng: np.random.Generator) -> list[Primitive]:
    """All solids of the scene with their per-frame poses."""
    t = len(traj.yaw)
    eye = np.tile(np.eye(3), (t, 1, 1))
    up = np.tile(np.array([0, 0, 1.0]), (t, 1))
    er = np.stack([np.cos(traj.yaw), np.sin(traj.yaw), np.zeros(t)], -1)
    et = np.stack([-np.sin(traj.yaw), np.cos(traj.yaw), np.zeros(t)], -1)

    wood = _random_material(
        rng,
        (0.55, 0.38, 0.22),
        tint=(0.08, 0.04, -0.02),
        wavelengths=(0.02, 0.12),
        contrast=0.3,
        checker=0.05,
        checker_contrast=0.06,
    )
    floor = _random_material(
        rng, (0.24, 0.21, 0.19), wavelengths=(0.05, 0.4), contrast=0.3, checker=0.25, checker_contrast=0.12
    )
    wall = _random_material(rng, (0.34, 0.42, 0.36), wavelengths=(0.1, 0.6), contrast=0.2)
    arm_white = _random_material(
        rng,
        (0.86, 0.86, 0.88),
        tint=(-0.05, 0.0, 0.06),
        wavelengths=(0.02, 0.07),
        contrast=0.28,
        checker=0.035,
        checker_contrast=0.08,
    )
    joint_mat = _random_material(rng, (0.72, 0.74, 0.80), wavelengths=(0.018, 0.05), contrast=0.28)
    base_mat = _random_material(
        rng, (0.78, 0.78, 0.80), wavelengths=(0.02, 0.06), contrast=0.25, checker=0.035, checker_contrast=0.06
    )
    dark = _random_material(
        rng,
        (0.16, 0.16, 0.19),
        tint=(0.08, 0.08, 0.12),
        wavelengths=(0.018, 0.05),
        contrast=0.55,
        checker=0.022,
        checker_contrast=0.25,
    )
    obj_mat = _random_material(
        rng,
        (0.20, 0.68, 0.38),
        tint=(0.12, 0.08, -0.08),
        wavelengths=(0.018, 0.05),
        contrast=0.3,
        checker=0.025,
        checker_contrast=0.12,
    )

    def seg(
        a: np.ndarray,
        b: np.ndarray,
        width: float,
        depth: float,
        name: str,
        mat: Material,
        inst: str = "arm",
        extra: float = 0.0,
    ) -> Primitive:
        """A box from point a to b (per frame), its local y along the pitch axis et."""
        v = b - a
        length = np.linalg.norm(v, axis=1)
        x = v / length[:, None]
        rot = _frame(x, et)
        return Primitive(
            name,
            BOX,
            (float(length[0] / 2 + extra), width / 2, depth / 2),
            inst,
            name,
            mat,
            _pose(rot, (a + b) / 2),
        )

    prims: list[Primitive] = []
    # environment
    prims.append(
        Primitive(
            "table",
            BOX,
            (0.65, 0.62, 0.02),
            "table",
            "table",
            wood,
            _pose(eye, np.tile([0.30, 0.0, -0.02], (t, 1))),
        )
    )
    prims.append(
        Primitive(
            "floor",
            BOX,
            (4.0, 4.0, 0.02),
            "floor",
            "floor",
            floor,
            _pose(eye, np.tile([0.3, 0.0, -0.77], (t, 1))),
        )
    )
    # the room's walls, so no pixel lacks depth
    for k, (c, h) in enumerate(
        [
            ((2.9, 0, 0.5), (0.02, 3.0, 1.3)),
            ((-2.3, 0, 0.5), (0.02, 3.0, 1.3)),
            ((0.3, 2.6, 0.5), (3.0, 0.02, 1.3)),
            ((0.3, -2.6, 0.5), (3.0, 0.02, 1.3)),
        ]
    ):
        prims.append(Primitive(f"wall{k}", BOX, h, "room", "room", wall, _pose(eye, np.tile(c, (t, 1)))))
    # static base, turning turret
    prims.append(
        Primitive(
            "base",
            CYLINDER,
            (geo.base_radius, geo.base_radius, geo.base_height / 2),
            "arm",
            "base",
            base_mat,
            _pose(eye, np.tile([0, 0, geo.base_height / 2], (t, 1))),
        )
    )
    turret_h = geo.shoulder_height - geo.base_height
    prims.append(
        Primitive(
            "turret",
            CYLINDER,
            (geo.turret_radius, geo.turret_radius, turret_h / 2),
            "arm",
            "turret",
            arm_white,
            _pose(_frame(er, et), np.tile([0, 0, geo.base_height + turret_h / 2], (t, 1))),
        )
    )
    # joints: cylinders along the pitch axis
    jrot = _frame(er, up)  # local z = er x up = -et (axis along the pitch axis)
    prims.append(
        Primitive(
            "shoulder",
            CYLINDER,
            (0.052, 0.052, 0.07),
            "arm",
            "upper_arm",
            joint_mat,
            _pose(jrot, traj.shoulder),
        )
    )
    prims.append(
        Primitive(
            "elbow", CYLINDER, (0.046, 0.046, 0.06), "arm", "forearm", joint_mat, _pose(jrot, traj.elbow)
        )
    )
    prims.append(
        Primitive(
            "wrist_joint", CYLINDER, (0.036, 0.036, 0.045), "arm", "wrist", joint_mat, _pose(jrot, traj.wrist)
        )
    )
    # links
    prims.append(
        seg(traj.shoulder, traj.elbow, geo.upper_width, geo.upper_width * 0.9, "upper_arm", arm_white)
    )
    prims.append(seg(traj.elbow, traj.wrist, geo.fore_width, geo.fore_width * 0.9, "forearm", arm_white))
    palm_top = traj.wrist - up * geo.wrist_len
    prims.append(seg(traj.wrist, palm_top, geo.wrist_width, geo.wrist_width, "wrist", arm_white, extra=0.0))
    # gripper: palm + two fingers, local x = er, y = et, z = up
    grot = _frame(er, et)
    palm_c = palm_top - up * (geo.palm_h / 2)
    prims.append(
        Primitive(
            "palm",
            BOX,
            (geo.palm_depth / 2, geo.palm_span / 2, geo.palm_h / 2),
            "gripper",
            "palm",
            dark,
            _pose(grot, palm_c),
        )
    )
    fz = palm_top - up * (geo.palm_h + geo.finger_len / 2)
    for side, sgn in (("finger_left", 1.0), ("finger_right", -1.0)):
        fc = fz + et * (sgn * traj.grip)[:, None]
        prims.append(
            Primitive(
                side,
                BOX,
                (geo.finger_depth / 2, geo.finger_thick / 2, geo.finger_len / 2),
                "gripper",
                side,
                dark,
                _pose(grot, fc),
            )
        )
    # the pushed object, aligned with its push direction
    oyaw = float(np.arctan2(traj.object_center[-1, 1], traj.object_center[-1, 0]))
    orot = np.tile(
        np.array([[np.cos(oyaw), -np.sin(oyaw), 0], [np.sin(oyaw), np.cos(oyaw), 0], [0, 0, 1.0]]), (t, 1, 1)
    )
    prims.append(
        Primitive(
            "object", BOX, geo.object_half, "object", "object", obj_mat, _pose(orot, traj.object_center)
        )
    )
    return prims


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: OpenCV intrinsics ``K`` and world-to-camera ``R``, ``t`` (x_cam = R X + t)."""

    id: str
    K: np.ndarray  # [3, 3]
    R: np.ndarray  # [3, 3]
    t: np.ndarray  # [3]

    @property
    def center(self) -> np.ndarray:
        return -self.R.T @ self.t

    @property
    def extrinsic(self) -> np.ndarray:
        return np.concatenate([self.R, self.t[:, None]], 1)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [..., 3] -> (pixel coords [..., 2] with integer = pixel centre, planar depth [...])."""
        pc = points @ self.R.T + self.t
        z = pc[..., 2]
        uv = (pc @ self.K.T)[..., :2] / np.where(np.abs(z) < 1e-12, 1e-12, z)[..., None]
        return uv, z


def look_at(eye: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV camera (x right, y down, z forward) at ``eye`` looking at ``target``, world z up."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, [0, 0, 1.0])
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    r = np.stack([x, y, z])
    return r, -r @ eye


# Camera rigs around the table (positions in metres), front / left / right / overhead-back.
CAMERA_RIG = [
    ("front", (1.30, 0.10, 0.95)),
    ("left", (0.40, 1.05, 0.80)),
    ("right", (0.30, -1.00, 0.85)),
    ("top", (-0.30, 0.20, 1.25)),
]


def make_cameras(num: int, width: int, height: int, rng: np.random.Generator) -> list[Camera]:
    """``num`` (1..4) static cameras with realistic intrinsics (about 60 degrees horizontal FOV)."""
    if not 1 <= num <= len(CAMERA_RIG):
        raise ValueError(f"cameras must be 1..{len(CAMERA_RIG)}")
    target = np.array([0.28, 0.06, 0.20])
    cams = []
    for i in range(num):
        name, pos = CAMERA_RIG[i]
        eye = np.array(pos) + rng.uniform(-0.03, 0.03, 3)
        r, t = look_at(eye, target + rng.uniform(-0.02, 0.02, 3))
        f = 0.92 * width * (1 + rng.uniform(-0.03, 0.03))
        k = np.array(
            [
                [f, 0, (width - 1) / 2 + rng.uniform(-2, 2)],
                [0, f * (1 + rng.uniform(-0.004, 0.004)), (height - 1) / 2 + rng.uniform(-2, 2)],
                [0, 0, 1.0],
            ]
        )
        cams.append(Camera(id=f"cam{i}_{name}", K=k, R=r, t=t))
    return cams

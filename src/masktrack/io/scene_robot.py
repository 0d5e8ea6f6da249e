"""Optional robot state of a scene: what the robot model says about every frame.

Robot datasets record the robot (joint positions every frame, where its base
stands, which cameras ride on which link), and that is enough to render the
arm and gripper in every calibrated camera with zero clicks.  A scene folder
keeps it beside the images::

    robot/robot.json            {"format": "masktrack.robot", "version": 1,
                                 "model": "panda" | "robot.urdf" | "/abs/robot.xml",
                                 "joint_names": [...],             # one per column of joint_positions
                                 "base_pose": 4x4 | null,           # world-from-base (or base_pose.npy)
                                 "joint_offsets": {joint: rad},     # constant encoder offsets (optional)
                                 "mounted_cameras": {camera_id: {"link": ..., "camera_from_link": 4x4}},
                                 "link_groups": {group: [links]},   # extra/overriding groups (optional)
                                 "camera_corrections": {camera_id: 4x4},  # depth-refined extrinsics (optional)
                                 "source": {...}}
    robot/joint_positions.npy   float [T, J]   gripper joints included, T = the scene's frames
    robot/base_pose.npy         float [4, 4] or [T, 4, 4]   optional (instead of "base_pose")

A model path is relative to the ``robot/`` folder (so a scene can carry its
own URDF and meshes) unless absolute.  Mounted cameras (wrist cameras) get
their world-to-camera pose from forward kinematics instead of ``extrs``.

Validation reports every problem at once, each naming the file and field;
cheap checks run on every :func:`load_scene`, checks that need the robot
model (joint and link names exist) run when the model is loaded
(:func:`masktrack.robot.scene_state.load_robot_model`: the robot core sits
above this layer).

``camera_corrections`` are rigid corrections left-multiplied to a camera's
world-to-camera pose, found by ICP of the rendered robot against that
camera's depth (:func:`masktrack.robot.calibrate.refine_camera`); the scene's
own ``extrs`` stay as recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.errors import Problem, SceneError
from masktrack.io.atomic import atomic_path, atomic_write_json, hash_file, hash_json

ROBOT_FORMAT = "masktrack.robot"
ROBOT_VERSION = 1
ROBOT_DIR = "robot"
BUILTIN_MODELS = ("panda",)


@dataclass
class SceneRobot:
    """The robot data of one scene, as stored (the model is referenced, not loaded)."""

    model: str  # "panda", or a URDF / MJCF path (relative to ``folder`` unless absolute)
    joint_names: list[str]
    positions: np.ndarray  # float64 [T, J]
    base_pose: np.ndarray  # float64 [4, 4] or [T, 4, 4] world-from-base
    joint_offsets: dict[str, float] = field(default_factory=dict)
    mounted_cameras: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)  # id -> (link, 4x4)
    link_groups: dict[str, list[str]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    camera_corrections: dict[str, np.ndarray] = field(default_factory=dict)  # id -> 4x4, left-multiplied
    base_in_file: bool = False  # base pose stored in base_pose.npy (for error locations)

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    def model_ref(self) -> str:
        """The model as ``RobotModel.load`` takes it: a built-in name or an absolute path."""
        if self.model in BUILTIN_MODELS:
            return self.model
        p = Path(self.model).expanduser()
        if not p.is_absolute() and self.folder is not None:
            p = self.folder / p
        return str(p)

    def model_path(self) -> Path | None:
        return None if self.model in BUILTIN_MODELS else Path(self.model_ref())

    def base_at(self, frame: int) -> np.ndarray:
        return self.base_pose if self.base_pose.ndim == 2 else self.base_pose[frame]

    def problems(
        self, *, num_frames: int | None = None, camera_ids: list[str] | None = None
    ) -> list[Problem]:
        """Everything wrong with the data without loading the model (locations: ``robot/<file>:<field>``)."""
        out: list[Problem] = []
        j_file = f"{ROBOT_DIR}/joint_positions.npy"
        meta = f"{ROBOT_DIR}/robot.json"
        if not isinstance(self.model, str) or not self.model:
            out.append(Problem(f"{meta}:model", "must name a model: 'panda' or a .urdf / .xml file"))
        elif self.model not in BUILTIN_MODELS:
            p = self.model_path()
            assert p is not None
            if p.suffix.lower() not in (".urdf", ".xml"):
                out.append(
                    Problem(f"{meta}:model", f"{self.model!r}: expected 'panda' or a .urdf / .xml file")
                )
            elif not p.is_file():
                out.append(Problem(f"{meta}:model", f"model file not found: {p}"))
        names = self.joint_names
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            out.append(Problem(f"{meta}:joint_names", "must be a non-empty list of joint names"))
            names = []
        else:
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                out.append(Problem(f"{meta}:joint_names", f"duplicate joint name(s): {', '.join(dup)}"))
        q = self.positions
        if q.ndim != 2:
            out.append(Problem(f"{j_file}:joint_positions", f"shape {q.shape}, expected [T, J]"))
        else:
            if num_frames is not None and q.shape[0] != num_frames:
                out.append(
                    Problem(
                        f"{j_file}:joint_positions",
                        f"{q.shape[0]} frames, the scene has {num_frames}",
                    )
                )
            if names and q.shape[1] != len(names):
                out.append(
                    Problem(
                        f"{j_file}:joint_positions",
                        f"{q.shape[1]} joint columns for {len(names)} joint_names",
                    )
                )
            if not np.isfinite(q).all():
                out.append(Problem(f"{j_file}:joint_positions", "has NaN or inf values"))
        where = f"{ROBOT_DIR}/{'base_pose.npy' if self.base_in_file else 'robot.json'}:base_pose"
        out += _pose_problems(self.base_pose, where, num_frames=num_frames, per_frame_ok=True)
        for j, v in self.joint_offsets.items():
            if names and j not in names:
                out.append(
                    Problem(f"{meta}:joint_offsets.{j}", f"not one of joint_names ({', '.join(names)})")
                )
            if not isinstance(v, (int, float)) or not np.isfinite(v):
                out.append(Problem(f"{meta}:joint_offsets.{j}", f"must be a finite number, got {v!r}"))
        for cid, (link, pose) in self.mounted_cameras.items():
            loc = f"{meta}:mounted_cameras.{cid}"
            if camera_ids is not None and cid not in camera_ids:
                out.append(Problem(loc, f"unknown camera {cid!r} (cameras: {', '.join(camera_ids)})"))
            if not isinstance(link, str) or not link:
                out.append(Problem(f"{loc}.link", "must name the link the camera is mounted on"))
            out += _pose_problems(pose, f"{loc}.camera_from_link", num_frames=None, per_frame_ok=False)
        for cid, corr in self.camera_corrections.items():
            loc = f"{meta}:camera_corrections.{cid}"
            if camera_ids is not None and cid not in camera_ids:
                out.append(Problem(loc, f"unknown camera {cid!r} (cameras: {', '.join(camera_ids)})"))
            out += _pose_problems(corr, loc, num_frames=None, per_frame_ok=False)
        for g, links in self.link_groups.items():
            if not isinstance(links, list) or not links or not all(isinstance(x, str) for x in links):
                out.append(Problem(f"{meta}:link_groups.{g}", "must be a non-empty list of link names"))
        return out

    def model_problems(self, model: Any) -> list[Problem]:
        """Names that the loaded model does not have (joints, mount links, group links)."""
        meta = f"{ROBOT_DIR}/robot.json"
        out = []
        known_j = [j.name for j in getattr(model, "joints", [])] or list(getattr(model, "joint_names", []))
        known_l = list(getattr(model, "link_names", []))
        bad = [n for n in self.joint_names if n not in known_j]
        if bad:
            out.append(
                Problem(
                    f"{meta}:joint_names",
                    f"not joints of model {self.model!r}: {', '.join(bad)} (its joints: {', '.join(known_j)})",
                )
            )
        for cid, (link, _) in self.mounted_cameras.items():
            if link not in known_l:
                out.append(
                    Problem(f"{meta}:mounted_cameras.{cid}.link", f"{link!r} is not a link of {self.model!r}")
                )
        for g, links in self.link_groups.items():
            bad = [x for x in links if x not in known_l]
            if bad:
                out.append(
                    Problem(f"{meta}:link_groups.{g}", f"not links of {self.model!r}: {', '.join(bad)}")
                )
        return out

    def content_key(self) -> str:
        """What renders depend on: the stored data and the model file (by content)."""
        model_hash = None
        p = self.model_path()
        if p is not None and p.is_file():
            model_hash = hash_file(p)
        return hash_json(
            {
                "model": self.model,
                "model_hash": model_hash,
                "joint_names": self.joint_names,
                "positions": _array_hash(self.positions),
                "base_pose": _array_hash(self.base_pose),
                "joint_offsets": self.joint_offsets,
                "mounted": {k: [v[0], _array_hash(v[1])] for k, v in self.mounted_cameras.items()},
                "link_groups": self.link_groups,
                "corrections": {k: _array_hash(v) for k, v in self.camera_corrections.items()},
            }
        )


def _array_hash(a: np.ndarray) -> str:
    import hashlib

    a = np.ascontiguousarray(np.asarray(a, np.float64))
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def as_pose4(a: Any) -> np.ndarray:
    """[..., 3, 4] or [..., 4, 4] -> float64 [..., 4, 4] (a 3x4 gets the row 0 0 0 1)."""
    a = np.asarray(a, np.float64)
    if a.shape[-2:] == (3, 4):
        bottom = np.broadcast_to(np.array([0, 0, 0, 1.0]), (*a.shape[:-2], 1, 4))
        a = np.concatenate([a, bottom], -2)
    return a


def _pose_problems(a: Any, where: str, *, num_frames: int | None, per_frame_ok: bool) -> list[Problem]:
    try:
        p = as_pose4(a)
    except (TypeError, ValueError):
        return [Problem(where, "must be a 4x4 matrix of numbers")]
    ok_shape = p.shape == (4, 4) or (per_frame_ok and p.ndim == 3 and p.shape[1:] == (4, 4))
    if not ok_shape:
        want = "[4, 4] or [T, 4, 4]" if per_frame_ok else "[4, 4]"
        return [Problem(where, f"shape {p.shape}, expected {want}")]
    out = []
    if p.ndim == 3 and num_frames is not None and p.shape[0] != num_frames:
        out.append(Problem(where, f"{p.shape[0]} poses, the scene has {num_frames} frames"))
    if not np.isfinite(p).all():
        return [*out, Problem(where, "has NaN or inf values")]
    r = p[..., :3, :3]
    err = float(np.abs(np.einsum("...ij,...kj->...ik", r, r) - np.eye(3)).max())
    if err > 1e-3:
        out.append(Problem(where, f"rotation part is not orthonormal (max |R R^T - I| = {err:.2g})"))
    elif (np.linalg.det(r) < 0).any():
        out.append(Problem(where, "rotation part is a reflection (det < 0)"))
    if np.abs(p[..., 3, :] - np.array([0, 0, 0, 1.0])).max() > 1e-6:
        out.append(Problem(where, "last row must be 0 0 0 1"))
    return out


# --------------------------------------------------------------------------- files


def save_scene_robot(robot: SceneRobot, scene_path: str | Path) -> Path:
    """Write ``robot`` into ``scene_path/robot/`` (arrays first, robot.json last, each atomically)."""
    folder = Path(scene_path) / ROBOT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "robot.json").unlink(missing_ok=True)
    with atomic_path(folder / "joint_positions.npy") as tmp:
        np.save(tmp, np.ascontiguousarray(np.asarray(robot.positions, np.float64)), allow_pickle=False)
    base = np.asarray(robot.base_pose, np.float64)
    base_json: Any = None
    if base.ndim == 2:
        base_json = as_pose4(base).tolist()
        (folder / "base_pose.npy").unlink(missing_ok=True)
    else:
        with atomic_path(folder / "base_pose.npy") as tmp:
            np.save(tmp, np.ascontiguousarray(as_pose4(base)), allow_pickle=False)
    meta = {
        "format": ROBOT_FORMAT,
        "version": ROBOT_VERSION,
        "model": robot.model,
        "joint_names": list(robot.joint_names),
        "base_pose": base_json,
        "joint_offsets": {k: float(v) for k, v in robot.joint_offsets.items()},
        "mounted_cameras": {
            cid: {"link": link, "camera_from_link": as_pose4(pose).tolist()}
            for cid, (link, pose) in robot.mounted_cameras.items()
        },
        "link_groups": {g: list(v) for g, v in robot.link_groups.items()},
        "camera_corrections": {k: as_pose4(v).tolist() for k, v in robot.camera_corrections.items()},
        "source": dict(robot.source),
    }
    atomic_write_json(folder / "robot.json", meta)
    robot.folder = folder
    return folder


def has_scene_robot(scene_path: str | Path) -> bool:
    return (Path(scene_path) / ROBOT_DIR / "robot.json").is_file()


def load_scene_robot(
    scene_path: str | Path,
    *,
    num_frames: int | None = None,
    camera_ids: list[str] | None = None,
    validate: bool = True,
) -> SceneRobot | None:
    """The scene's robot data (None without ``robot/robot.json``); every problem raised at once."""
    scene_path = Path(scene_path)
    folder = scene_path / ROBOT_DIR
    meta_path = folder / "robot.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SceneError(f"invalid JSON ({e})", path=meta_path) from None
    if not isinstance(meta, dict):
        raise SceneError("must be a JSON object", path=meta_path)
    probs: list[Problem] = []
    rel = f"{ROBOT_DIR}/robot.json"
    if meta.get("format") != ROBOT_FORMAT:
        probs.append(Problem(f"{rel}:format", f"{meta.get('format')!r}, expected {ROBOT_FORMAT!r}"))
    if meta.get("version") != ROBOT_VERSION:
        probs.append(Problem(f"{rel}:version", f"{meta.get('version')!r}, expected {ROBOT_VERSION}"))

    def npy(name: str, required: bool) -> np.ndarray | None:
        p = folder / f"{name}.npy"
        if not p.is_file():
            if required:
                probs.append(Problem(f"{ROBOT_DIR}/{name}.npy", "missing array file"))
            return None
        try:
            a = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            probs.append(Problem(f"{ROBOT_DIR}/{name}.npy", f"unreadable array ({e})"))
            return None
        if not np.issubdtype(a.dtype, np.number):
            probs.append(Problem(f"{ROBOT_DIR}/{name}.npy", f"dtype {a.dtype}, expected numbers"))
            return None
        return a.astype(np.float64)

    q = npy("joint_positions", True)
    base_file = npy("base_pose", False)
    base_json = meta.get("base_pose")
    base: Any
    if base_file is not None and base_json is not None:
        probs.append(Problem(f"{rel}:base_pose", "given both here and in base_pose.npy; keep one"))
        base = base_file
    elif base_file is not None:
        base = base_file
    elif base_json is not None:
        base = base_json
    else:
        probs.append(
            Problem(
                f"{rel}:base_pose",
                "missing: the robot base's world pose (4x4 here, or robot/base_pose.npy [4,4] or [T,4,4])",
            )
        )
        base = np.eye(4)
    mounted: dict[str, tuple[str, Any]] = {}
    mc = meta.get("mounted_cameras") or {}
    if not isinstance(mc, dict):
        probs.append(Problem(f"{rel}:mounted_cameras", "must map camera id -> {link, camera_from_link}"))
        mc = {}
    for cid, m in mc.items():
        if not isinstance(m, dict) or "link" not in m or "camera_from_link" not in m:
            probs.append(Problem(f"{rel}:mounted_cameras.{cid}", "needs 'link' and 'camera_from_link' (4x4)"))
            continue
        mounted[str(cid)] = (m["link"], m["camera_from_link"])
    offsets = meta.get("joint_offsets") or {}
    if not isinstance(offsets, dict):
        probs.append(Problem(f"{rel}:joint_offsets", "must map joint name -> offset in radians (or metres)"))
        offsets = {}
    corrections = meta.get("camera_corrections") or {}
    if not isinstance(corrections, dict):
        probs.append(Problem(f"{rel}:camera_corrections", "must map camera id -> 4x4 correction"))
        corrections = {}
    groups = meta.get("link_groups") or {}
    if not isinstance(groups, dict):
        probs.append(Problem(f"{rel}:link_groups", "must map group name -> list of link names"))
        groups = {}
    robot = SceneRobot(
        model=meta.get("model"),  # type: ignore[arg-type]
        joint_names=meta.get("joint_names"),  # type: ignore[arg-type]
        positions=q if q is not None else np.zeros((0, 0)),
        base_pose=np.asarray(base, np.float64) if _numeric(base) else np.full((4, 4), np.nan),
        joint_offsets=dict(offsets),
        mounted_cameras={
            k: (v[0], as_pose4(v[1]) if _numeric(v[1]) else np.full((4, 4), np.nan))
            for k, v in mounted.items()
        },
        link_groups=dict(groups),
        camera_corrections={
            str(k): as_pose4(v) if _numeric(v) else np.full((4, 4), np.nan) for k, v in corrections.items()
        },
        source=dict(meta.get("source") or {}),
        folder=folder,
        base_in_file=base_file is not None,
    )
    if validate:
        found = robot.problems(num_frames=num_frames, camera_ids=camera_ids)
        if q is None:  # its missing file is already reported; skip the shape noise
            found = [p for p in found if not p.location.startswith(f"{ROBOT_DIR}/joint_positions.npy")]
        probs += found
    if probs:
        raise SceneError(f"{len(probs)} problem(s) in the robot data", path=scene_path, problems=probs)
    return robot


def _numeric(a: Any) -> bool:
    try:
        arr = np.asarray(a, np.float64)
    except (TypeError, ValueError):
        return False
    return arr.ndim >= 2


# --------------------------------------------------------------------------- import from NPZ layouts

PANDA_JOINT_NAMES = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]
"""RLBench's ``joint_positions`` [T, 7] + ``gripper_joint_positions`` [T, 2], in order."""


@dataclass
class RobotImport:
    """How to read a robot's state from an NPZ (``masktrack scene import --robot-model ...``).

    ``joints``: NPZ keys concatenated along the joint axis (RLBench:
    ``joint_positions`` then ``gripper_joint_positions``); ``joint_names``
    one per column (default for the Panda: :data:`PANDA_JOINT_NAMES`, else the
    model's actuated joints when the count matches).  The base pose comes
    from ``base`` (a [4,4] or [T,4,4] key) or, without it, is fitted to the
    end-effector pose track ``ee`` (RLBench: ``gripper_matrix``) together
    with constant joint offsets.  ``mounts`` maps a camera id to the link it
    rides on; its camera-from-link pose is fitted from the NPZ's extrinsics.
    ``base_clicks`` (a JSON click file, see :mod:`masktrack.robot.clicks`)
    fits the base pose to clicked robot points instead of ``ee``.
    With ``refine``, depth decides what poses cannot: the robot's height
    (every static camera votes) and each camera's small extrinsics error
    (ICP of the rendered robot onto its depth); each camera's rendered vs
    measured depth agreement is recorded in ``source["calibration"]``.
    """

    model: str
    joints: list[str] = field(default_factory=lambda: ["joint_positions", "gripper_joint_positions"])
    joint_names: list[str] | None = None
    base: str | None = None
    ee: str | None = "gripper_matrix"
    ee_link: str | None = None
    mounts: dict[str, str] = field(default_factory=dict)
    refine: bool = True  # robot height from all static cameras' depth, then per-camera ICP corrections
    base_clicks: str | None = (
        None  # a click file (masktrack.robot.clicks): base pose fitted to clicked robot points
    )

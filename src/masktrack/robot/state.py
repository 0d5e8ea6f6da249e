"""What a recording says about its robot: model, joint track, base pose, wrist cameras.

:class:`RobotState` is the currency between the scene format (which stores it),
calibration (which corrects it) and the renderer (which draws it).  It holds
only data; the model itself is loaded from ``model`` by
:meth:`masktrack.robot.RobotModel.load`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from masktrack.errors import Problem


@dataclass
class RobotState:
    """A robot's recorded state over T frames.

    - ``model``: a model reference for :meth:`RobotModel.load` (``"panda"`` or a file path).
    - ``joint_names`` / ``positions`` [T, J]: the recorded joint track (gripper joints included).
    - ``base_pose``: world-from-base [4, 4] (fixed) or [T, 4, 4] (mobile base).
    - ``joint_offsets``: constant encoder offsets (radians / metres) *added* to the
      recorded positions before kinematics (calibration fits them).
    - ``mounted_cameras``: ``camera_id -> (link_name, cam_from_link [4, 4])`` for
      cameras that ride on a link (wrist cameras): their extrinsics follow the
      link at every frame.
    - ``link_groups``: optional group overrides (``arm``, ``gripper``, ...) for
      models without built-in groups.
    """

    model: str
    joint_names: list[str]
    positions: np.ndarray
    base_pose: np.ndarray = field(default_factory=lambda: np.eye(4))
    joint_offsets: dict[str, float] = field(default_factory=dict)
    mounted_cameras: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    link_groups: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, np.float64)
        if self.positions.ndim == 1:
            self.positions = self.positions[None]
        self.base_pose = np.asarray(self.base_pose, np.float64)
        self.joint_names = list(self.joint_names)

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    def base_at(self, frames: np.ndarray | None = None) -> np.ndarray:
        """World-from-base [T', 4, 4] for ``frames`` (all by default)."""
        idx = np.arange(self.num_frames) if frames is None else np.asarray(frames)
        if self.base_pose.ndim == 2:
            return np.broadcast_to(self.base_pose, (len(idx), 4, 4)).copy()
        return self.base_pose[idx]

    def positions_with_offsets(self, frames: np.ndarray | None = None) -> np.ndarray:
        """Recorded positions plus ``joint_offsets`` [T', J]."""
        idx = np.arange(self.num_frames) if frames is None else np.asarray(frames)
        q = self.positions[idx].copy()
        for i, n in enumerate(self.joint_names):
            q[:, i] += float(self.joint_offsets.get(n, 0.0))
        return q

    def with_offsets(self, offsets: dict[str, float]) -> RobotState:
        return replace(self, joint_offsets=dict(offsets))

    def problems(self, where: str = "robot") -> list[Problem]:
        """Every shape/value problem at once (empty when valid), located like ``robot.positions``."""
        out: list[Problem] = []
        if not self.model:
            out.append(Problem(f"{where}.model", "must name a model ('panda' or a .urdf / MJCF path)"))
        if self.positions.ndim != 2 or self.positions.shape[1] != len(self.joint_names):
            out.append(
                Problem(
                    f"{where}.positions",
                    f"shape {self.positions.shape} does not match {len(self.joint_names)} joint names (want [T, J])",
                )
            )
        elif not np.all(np.isfinite(self.positions)):
            out.append(Problem(f"{where}.positions", "contains NaN or infinite values"))
        if len(set(self.joint_names)) != len(self.joint_names):
            out.append(Problem(f"{where}.joint_names", "names repeat"))
        bp = self.base_pose
        if not (
            bp.shape == (4, 4) or (bp.ndim == 3 and bp.shape[1:] == (4, 4) and bp.shape[0] == self.num_frames)
        ):
            out.append(
                Problem(
                    f"{where}.base_pose",
                    f"shape {bp.shape}, want [4, 4] or [T, 4, 4] with T = {self.num_frames}",
                )
            )
        elif not np.all(np.isfinite(bp)):
            out.append(Problem(f"{where}.base_pose", "contains NaN or infinite values"))
        else:
            R = bp[..., :3, :3]
            if np.abs(R @ np.swapaxes(R, -1, -2) - np.eye(3)).max() > 1e-3:
                out.append(Problem(f"{where}.base_pose", "rotation part is not orthonormal"))
        for k in self.joint_offsets:
            if k not in self.joint_names:
                out.append(Problem(f"{where}.joint_offsets.{k}", "not one of joint_names"))
        for cam, (link, M) in self.mounted_cameras.items():
            if np.asarray(M).shape != (4, 4):
                out.append(Problem(f"{where}.mounted_cameras.{cam}", "cam_from_link must be [4, 4]"))
            if not link:
                out.append(Problem(f"{where}.mounted_cameras.{cam}", "needs a link name"))
        return out

"""Base pose (and joint offsets) from a few clicked correspondences, for recordings without an end-effector track.

A person clicks a known robot point -- a link origin, a point given in link
coordinates, or the model's tool centre point (``"tcp"``) -- in a few frames
of one or more calibrated cameras.  Forward kinematics puts each clicked
point in the robot's base frame; the world-from-base pose (6-DoF, plus
optional constant joint offsets) is then the one whose projections land on
the clicks: robust (soft-L1) least squares on the reprojection error in
pixels.  Rotations are not convex, so the solve starts from several
orientations (upright yaws, axis-aligned frames, a DLT when there are 6+
clicks) with the translation solved linearly for each, and keeps the best.

Refusing is part of the job: with fewer equations than unknowns, or clicks
that leave a direction unconstrained (all on one line, one camera seeing one
point), a pose would be produced that only looks fitted.  After the solve
the parameter covariance at 1 px click noise says how well each part is
determined; too loose and :class:`ClickFitError` names what is missing.

Click file (JSON)::

    {"clicks": [
      {"camera": "front", "frame": 12, "uv": [311.0, 208.5], "link": "panda_hand", "point": "tcp"},
      {"camera": "left_shoulder", "frame": 40, "uv": [97, 150], "link": "panda_link4"},
      ...],
     "fit_joint_offsets": ["panda_joint4"]}

``uv`` is the pixel in the scene's convention (integer ``(u, v)`` is a
pixel centre); ``point`` is ``[x, y, z]`` metres in the link's frame
(default: the link origin) or ``"tcp"`` (the model's nominal tool point,
on its end-effector link).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.errors import Problem, SceneError
from masktrack.robot.calibrate import (
    CalibrationError,
    _candidate_rotations,
    matrix_to_rotvec,
    project_so3,
    rotvec_to_matrix,
    se3,
)
from masktrack.robot.model import RobotModel

MAX_STD_MM = 10.0  # a base position less certain than this (at 1 px click noise) is refused
MAX_STD_DEG = 1.0
MAX_STD_OFFSET_DEG = 1.0


class ClickFitError(CalibrationError):
    """The clicks do not determine the base pose (too few, or degenerate)."""


@dataclass(frozen=True)
class RobotClick:
    """One clicked correspondence: robot point ``point`` (metres, in ``link``'s frame) seen at pixel ``uv``."""

    camera: str
    frame: int
    uv: tuple[float, float]
    link: str
    point: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class ClickFile:
    clicks: list[RobotClick]
    fit_joint_offsets: list[str] = field(default_factory=list)


@dataclass
class ClickFit:
    """What :func:`fit_base_from_clicks` found; reprojection errors in pixels."""

    base_pose: np.ndarray  # world-from-base [4,4]
    joint_offsets: dict[str, float]
    residual_px: float  # RMS over clicks
    per_click_px: np.ndarray  # [N]
    std_mm: float  # largest base-translation standard deviation at 1 px click noise
    std_deg: float  # largest base-rotation standard deviation at 1 px click noise

    def to_dict(self) -> dict[str, Any]:
        return {
            "clicks": len(self.per_click_px),
            "residual_px": round(self.residual_px, 3),
            "max_px": round(float(np.max(self.per_click_px)), 3),
            "std_mm": round(self.std_mm, 3),
            "std_deg": round(self.std_deg, 4),
        }


def read_clicks(
    path: str | Path,
    model: RobotModel | None = None,
    *,
    camera_ids: list[str] | None = None,
    num_frames: int | None = None,
) -> ClickFile:
    """Parse and check a click file; every problem at once (one :class:`SceneError`), naming the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SceneError("no such file", path=path, field="--robot-base-clicks") from None
    except (OSError, ValueError) as e:
        raise SceneError(f"not a JSON file: {e}", path=path) from None
    probs: list[Problem] = []
    if not isinstance(data, dict) or not isinstance(data.get("clicks"), list):
        raise SceneError(
            'expected {"clicks": [{camera, frame, uv, link, point}, ...]}', path=path, field="clicks"
        )
    tcp_link = getattr(model, "ee_link", None) if model is not None else None
    tool = getattr(model, "tool_from_ee", None) if model is not None else None
    links = set(model.link_names) if model is not None else None
    out: list[RobotClick] = []
    for i, c in enumerate(data["clicks"]):
        f = f"clicks[{i}]"
        if not isinstance(c, dict):
            probs.append(Problem(f, "expected an object {camera, frame, uv, link, point}"))
            continue
        cam, frame, uv, link, pt = c.get("camera"), c.get("frame"), c.get("uv"), c.get("link"), c.get("point")
        n0 = len(probs)
        if not isinstance(cam, str):
            probs.append(Problem(f"{f}.camera", "missing camera id"))
        elif camera_ids is not None and cam not in camera_ids:
            probs.append(Problem(f"{f}.camera", f"unknown camera {cam!r} (cameras: {', '.join(camera_ids)})"))
        if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
            probs.append(Problem(f"{f}.frame", f"expected a frame index >= 0, got {frame!r}"))
        elif num_frames is not None and frame >= num_frames:
            probs.append(Problem(f"{f}.frame", f"frame {frame} out of range (T={num_frames})"))
        if not (
            isinstance(uv, list)
            and len(uv) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in uv)
            and np.isfinite(uv).all()
        ):
            probs.append(Problem(f"{f}.uv", f"expected [u, v] pixel coordinates, got {uv!r}"))
        if not isinstance(link, str):
            probs.append(Problem(f"{f}.link", "missing link name"))
        elif links is not None and link not in links:
            probs.append(Problem(f"{f}.link", f"{link!r} is not a link of the robot model"))
        point: tuple[float, float, float] = (0.0, 0.0, 0.0)
        if pt == "tcp":
            if tool is None or tcp_link is None:
                probs.append(Problem(f"{f}.point", "'tcp': the robot model names no tool point"))
            elif link != tcp_link:
                probs.append(Problem(f"{f}.point", f"'tcp' lies on link {tcp_link!r}, not {link!r}"))
            else:
                point = tuple(float(x) for x in np.asarray(tool)[:3, 3])  # type: ignore[assignment]
        elif pt is not None:
            if not (
                isinstance(pt, list)
                and len(pt) == 3
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in pt)
                and np.isfinite(pt).all()
            ):
                probs.append(
                    Problem(f"{f}.point", f"expected [x, y, z] metres in the link frame or 'tcp', got {pt!r}")
                )
            else:
                point = (float(pt[0]), float(pt[1]), float(pt[2]))
        if len(probs) == n0:
            out.append(RobotClick(cam, int(frame), (float(uv[0]), float(uv[1])), link, point))  # type: ignore[arg-type, index]
    offs = data.get("fit_joint_offsets", [])
    if not isinstance(offs, list) or not all(isinstance(x, str) for x in offs):
        probs.append(Problem("fit_joint_offsets", "expected a list of joint names"))
        offs = []
    elif model is not None:
        joints = {j.name for j in model.joints}
        bad = [x for x in offs if x not in joints]
        if bad:
            probs.append(Problem("fit_joint_offsets", f"not joints of the robot model: {', '.join(bad)}"))
    if probs:
        raise SceneError(f"{len(probs)} problem(s) in the click file", path=path, problems=probs)
    return ClickFile(out, list(offs))


def _at(a: np.ndarray, frame: int) -> np.ndarray:
    """A camera's matrix at a frame: [3,3]/[4,4] as is, [T,3,3]/[T,4,4] indexed."""
    a = np.asarray(a, np.float64)
    return a if a.ndim == 2 else a[frame]


def _rays(clicks: list[RobotClick], Ks: np.ndarray) -> np.ndarray:
    uv1 = np.array([[c.uv[0], c.uv[1], 1.0] for c in clicks])
    d = np.einsum("nij,nj->ni", np.linalg.inv(Ks), uv1)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _skew(d: np.ndarray) -> np.ndarray:
    z = np.zeros(len(d))
    return np.stack(
        [
            np.stack([z, -d[:, 2], d[:, 1]], 1),
            np.stack([d[:, 2], z, -d[:, 0]], 1),
            np.stack([-d[:, 1], d[:, 0], z], 1),
        ],
        1,
    )


def fit_base_from_clicks(
    model: RobotModel,
    joint_names: list[str],
    positions: np.ndarray,
    clicks: list[RobotClick],
    intrs: dict[str, np.ndarray],
    extrs: dict[str, np.ndarray],
    *,
    fit_joint_offsets: list[str] | None = None,
    joint_offsets: dict[str, float] | None = None,
) -> ClickFit:
    """World-from-base pose (+ the named joints' constant offsets) that reprojects the clicked points onto the clicks.

    ``intrs``: camera id -> K [3,3] or [T,3,3]; ``extrs``: camera id ->
    world-to-camera [4,4] or [T,4,4] (a wrist camera's per-frame extrinsics).  Raises
    :class:`ClickFitError` (one line) when the clicks cannot determine the
    unknowns: fewer than 2 equations per unknown + 2 spare, or a solution whose
    1-px-noise uncertainty exceeds ``MAX_STD_MM`` / ``MAX_STD_DEG`` /
    ``MAX_STD_OFFSET_DEG``.
    """
    from scipy.optimize import least_squares

    offs = list(fit_joint_offsets or [])
    n_unknown = 6 + len(offs)
    n = len(clicks)
    need = (
        n_unknown + 2 + 1
    ) // 2  # two equations per click, two to spare (a residual that can show an error)
    if n < need:
        raise ClickFitError(
            f"{n} click(s) cannot determine the base pose{' and ' + str(len(offs)) + ' joint offset(s)' if offs else ''}:"
            f" need at least {need}, of at least 3 robot points not on one line"
        )
    q = np.asarray(positions, np.float64)
    jn = list(joint_names)
    base_off = dict(joint_offsets or {})
    frames = np.array([c.frame for c in clicks])
    uframes, inv = np.unique(frames, return_inverse=True)
    links = sorted({c.link for c in clicks})
    P = np.array([[*c.point, 1.0] for c in clicks])  # [N,4] in link frames
    Ks = np.stack([_at(intrs[c.camera], c.frame) for c in clicks])
    E = np.stack([_at(extrs[c.camera], c.frame) for c in clicks])
    uv = np.array([c.uv for c in clicks])
    oi = [jn.index(o) if o in jn else -1 for o in offs]
    if any(i < 0 for i in oi):
        raise ClickFitError(
            f"joint offsets for joints without positions: {', '.join(o for o, i in zip(offs, oi) if i < 0)}"
        )

    def base_points(off: np.ndarray) -> np.ndarray:
        qq = q[uframes].copy()
        for i, n_ in enumerate(jn):
            qq[:, i] += base_off.get(n_, 0.0)
        for k, i in enumerate(oi):
            qq[:, i] += off[k]
        T = model.fk(qq, jn, links=links)
        return np.stack([T[c.link][inv[k]] @ P[k] for k, c in enumerate(clicks)])[:, :3]  # [N,3] base frame

    X0 = base_points(np.zeros(len(offs)))
    if np.linalg.matrix_rank(X0 - X0.mean(0), tol=0.01) < 2:
        raise ClickFitError(
            "the clicked robot points lie on one line (or are one point): click points farther apart, "
            "on other links or in other frames"
        )

    def project(B: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        W = X @ B[:3, :3].T + B[:3, 3]
        C = np.einsum("nij,nj->ni", E[:, :3, :3], W) + E[:, :3, 3]
        z = C[:, 2]
        pix = np.einsum("nij,nj->ni", Ks, C)
        return pix[:, :2] / np.where(np.abs(pix[:, 2:]) > 1e-9, pix[:, 2:], 1e-9), z

    def resid(x: np.ndarray) -> np.ndarray:
        B = se3(x[:3], x[3:6])
        X = base_points(x[6:]) if offs else X0
        pix, z = project(B, X)
        r = pix - uv
        r[z <= 1e-3] = 1e4  # behind the camera: as wrong as a click can be
        return r.ravel()

    # starting points: for a rotation, cross(d, R_c (R X + t) + t_c) = 0 is linear in t
    d = _rays(clicks, Ks)
    S = _skew(d)  # [N,3,3]
    SRc = S @ E[:, :3, :3]

    def t_for(R: np.ndarray) -> np.ndarray:
        A = SRc.reshape(-1, 3)
        b = -(np.einsum("nij,nj->ni", SRc, X0 @ R.T) + np.einsum("nij,nj->ni", S, E[:, :3, 3])).ravel()
        return np.linalg.lstsq(A, b, rcond=None)[0]

    starts = [rotvec_to_matrix(np.array([0, 0, a])) for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
    starts += _candidate_rotations()
    if n >= 6:  # DLT: linear in (R entries, t); 12 unknowns, 2 independent equations per click
        A = np.concatenate([np.einsum("nij,nk->nijk", SRc, X0).reshape(n, 3, 9), SRc], 2).reshape(-1, 12)
        b = -np.einsum("nij,nj->ni", S, E[:, :3, 3]).ravel()
        sol = np.linalg.lstsq(A, b, rcond=None)[0]
        M = sol[:9].reshape(3, 3)
        if np.isfinite(M).all() and np.linalg.norm(M) > 1e-9:
            starts.insert(
                0, project_so3(M / np.cbrt(np.linalg.det(M)) if abs(np.linalg.det(M)) > 1e-12 else M)
            )
    best = None
    for R in starts:
        x0 = np.concatenate([matrix_to_rotvec(R), t_for(R), np.zeros(len(offs))])
        r0 = resid(x0)
        if not np.isfinite(r0).all():
            continue
        s = least_squares(resid, x0, loss="soft_l1", f_scale=2.0, x_scale="jac", max_nfev=100)
        if best is None or s.cost < best.cost - 1e-9:
            best = s
        if np.sqrt(np.mean(resid(best.x) ** 2)) < 3.0:  # the clicks agree to a few pixels: this is the basin
            break
    if best is None:
        raise ClickFitError("no base pose puts the clicked points in front of their cameras")
    # the uncertainty from the plain (non-robust) Jacobian at 1 px noise
    x = best.x
    fun = resid(x)
    J = np.stack([(resid(x + h) - fun) / 1e-6 for h in np.eye(len(x)) * 1e-6], 1)
    JtJ = J.T @ J
    try:
        cov = np.linalg.inv(JtJ)
        ok = np.isfinite(cov).all() and np.linalg.cond(JtJ) < 1e14
    except np.linalg.LinAlgError:
        ok = False
    if not ok:
        raise ClickFitError("the clicks leave the base pose undetermined: click more points, in more cameras")
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    std_deg = float(np.degrees(sd[:3].max()))
    std_mm = float(sd[3:6].max() * 1000)
    if std_mm > MAX_STD_MM or std_deg > MAX_STD_DEG:
        raise ClickFitError(
            f"the clicks leave the base pose undetermined (±{std_mm:.0f} mm / ±{std_deg:.1f}° at 1 px click "
            "noise): click points farther apart, in more frames or cameras"
        )
    bad_off = [o for k, o in enumerate(offs) if np.degrees(sd[6 + k]) > MAX_STD_OFFSET_DEG]
    if bad_off:
        raise ClickFitError(
            f"the clicks do not identify the joint offset(s) of {', '.join(bad_off)} (±"
            f"{max(np.degrees(sd[6 + offs.index(o)]) for o in bad_off):.1f}° at 1 px): click links beyond "
            "those joints in frames where they move, or drop them from fit_joint_offsets"
        )
    per = np.linalg.norm(fun.reshape(-1, 2), axis=1)
    offsets = dict(base_off)
    for k, o in enumerate(offs):
        offsets[o] = offsets.get(o, 0.0) + float(x[6 + k])
    return ClickFit(
        base_pose=se3(x[:3], x[3:6]),
        joint_offsets=offsets,
        residual_px=float(np.sqrt(np.mean(per**2))),
        per_click_px=per,
        std_mm=std_mm,
        std_deg=std_deg,
    )

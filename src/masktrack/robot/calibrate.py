"""Calibration from the recording itself: base pose, joint offsets, tool offset, camera extrinsics.

Three steps, none of which looks at masks:

1. :func:`fit_base_from_ee` -- the recorded end-effector pose track (world-from-tool,
   e.g. RLBench's ``gripper_matrix``) against forward kinematics fits the base
   pose, constant per-joint encoder offsets and the ee-link-from-tool offset by
   robust least squares.  Base height and the tool offset along the tool axis
   are not separable when the tool keeps its direction (a top-down reach); a
   weak prior keeps the tool offset at its nominal value and step 2 fixes the
   height.
2. :func:`refine_robot_from_depth` -- a world translation of the whole robot
   that makes the rendered robot surface agree with every static camera's
   measured depth (projective point-to-plane ICP, pooled over cameras).
3. :func:`refine_camera` -- a per-camera rigid correction ``D`` (left-multiplied
   to the extrinsics, so it also works for wrist cameras whose extrinsics ride
   on a link) by the same ICP on frames where the robot moves.  Residuals are
   reported in mm.

:func:`check_calibration` compares rendered and measured depth and raises
:class:`CalibrationError` when they disagree, instead of producing wrong masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from masktrack.errors import MasktrackError
from masktrack.robot.model import RobotModel
from masktrack.robot.render import render
from masktrack.robot.state import RobotState


class CalibrationError(MasktrackError):
    """Rendered robot and measured depth disagree: the robot model, joint data or cameras are off."""


# --------------------------------------------------------------------------- small SE(3) helpers


def rotvec_to_matrix(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, float)
    th = np.linalg.norm(w)
    if th < 1e-12:
        return np.eye(3)
    k = w / th
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * Kx + (1 - np.cos(th)) * Kx @ Kx


def matrix_to_rotvec(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_rotvec()


def se3(w, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rotvec_to_matrix(w)
    T[:3, 3] = t
    return T


def project_so3(R: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(R)
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt))
    return U @ D @ Vt


def _candidate_rotations() -> list[np.ndarray]:
    """The 24 axis-aligned rotations, each also turned by 45 degrees about z (tool frames are set like that)."""
    out = []
    axes = np.eye(3)
    for i in range(3):
        for si in (1, -1):
            for j in range(3):
                if j == i:
                    continue
                for sj in (1, -1):
                    x, y = si * axes[i], sj * axes[j]
                    R = np.stack([x, y, np.cross(x, y)], 1)
                    out.append(R)
                    out.append(R @ rotvec_to_matrix(np.array([0, 0, np.pi / 4])))
    return out


# --------------------------------------------------------------------------- step 1: end-effector track


@dataclass
class EEFit:
    """What :func:`fit_base_from_ee` found; residuals are RMS over frames."""

    base_pose: np.ndarray  # world-from-base [4,4]
    joint_offsets: dict[str, float]
    tool_from_link: np.ndarray  # ee-link-from-tool [4,4]
    residual_mm: float
    residual_deg: float

    def apply(self, state: RobotState) -> RobotState:
        return replace(state, base_pose=self.base_pose.copy(), joint_offsets=dict(self.joint_offsets))


def fit_base_from_ee(
    model: RobotModel,
    joint_names: list[str],
    positions: np.ndarray,
    ee_poses: np.ndarray,
    ee_link: str,
    *,
    tool_from_link: np.ndarray | None = None,
    fit_offsets: bool = True,
    fit_tool: bool = True,
    offset_joints: list[str] | None = None,
) -> EEFit:
    """Fit base pose (+ joint offsets, + tool offset) so that FK reproduces a world-from-tool pose track.

    ``ee_poses`` [T,4,4] world-from-tool; ``tool_from_link`` the nominal
    ee-link-from-tool (identity if None).  The tool rotation is first chosen among
    axis-aligned candidates (the one that makes the implied base pose most
    constant), then everything is refined by robust (soft-L1) least squares with
    weak priors: offsets toward 0, tool translation toward nominal (the
    component along a constant tool axis is unobservable from poses alone).
    """
    from scipy.optimize import least_squares

    q = np.asarray(positions, float)
    G = np.asarray(ee_poses, float)
    ok = np.all(np.isfinite(G.reshape(len(G), -1)), 1) & np.all(np.isfinite(q), 1)
    q, G = q[ok], G[ok]
    if len(q) < 3:
        raise CalibrationError("fewer than 3 frames with a finite end-effector pose and joint positions")
    Y0 = np.eye(4) if tool_from_link is None else np.asarray(tool_from_link, float)
    chain = model._ancestors_joints([ee_link])
    jn = list(joint_names)
    if offset_joints is None:
        jm = {j.name: j for j in model.joints}
        offset_joints = [n for n in jn if n in chain and jm[n].type in ("revolute", "continuous")]
    oi = [jn.index(n) for n in offset_joints] if fit_offsets else []

    def fk(off: np.ndarray) -> np.ndarray:
        qq = q.copy()
        for k, i in enumerate(oi):
            qq[:, i] += off[k]
        return model.fk(qq, jn, links=[ee_link])[ee_link]

    A = fk(np.zeros(len(oi)))
    # tool rotation: candidate making R_B = R_G R_Y^T R_A^T most constant
    best = None
    cands = [Y0[:3, :3]] if not fit_tool else [Y0[:3, :3]] + [Y0[:3, :3] @ C for C in _candidate_rotations()]
    for RY in cands:
        RB = G[:, :3, :3] @ RY.T @ np.swapaxes(A[:, :3, :3], 1, 2)
        M = project_so3(RB.mean(0))
        spread = float(np.mean(np.linalg.norm(RB - M[None], axis=(1, 2))))
        if best is None or spread < best[0] - 1e-9:
            best = (spread, RY, M)
    assert best is not None
    _, RY, RB = best
    yt0 = Y0[:3, 3]
    # translation init: p_G = R_B (R_A y + p_A) + b with y = nominal
    b0 = np.mean(G[:, :3, 3] - (RB @ (A[:, :3, :3] @ yt0 + A[:, :3, 3]).T).T, 0)
    x0 = np.concatenate([matrix_to_rotvec(RB), b0, np.zeros(len(oi)), np.zeros(3), yt0])
    w_rot = 0.1  # 1 rad of orientation error weighs like 10 cm

    def unpack(x):
        B = se3(x[:3], x[3:6])
        off = x[6 : 6 + len(oi)]
        Y = np.eye(4)
        Y[:3, :3] = RY @ rotvec_to_matrix(x[6 + len(oi) : 9 + len(oi)])
        Y[:3, 3] = x[9 + len(oi) : 12 + len(oi)]
        return B, off, Y

    def resid(x):
        B, off, Y = unpack(x)
        P = B[None] @ fk(off) @ Y[None]
        rp = (P[:, :3, 3] - G[:, :3, 3]).ravel()
        Rr = np.swapaxes(P[:, :3, :3], 1, 2) @ G[:, :3, :3]
        rr = (
            np.stack([Rr[:, 2, 1] - Rr[:, 1, 2], Rr[:, 0, 2] - Rr[:, 2, 0], Rr[:, 1, 0] - Rr[:, 0, 1]], 1) / 2
        )
        pri = [off * 0.003, (x[9 + len(oi) :] - yt0) * 0.05]
        if not fit_tool:
            pri.append(x[6 + len(oi) :] * 10.0)
        return np.concatenate([rp, (rr * w_rot).ravel(), *pri])

    sol = least_squares(resid, x0, loss="soft_l1", f_scale=0.005, x_scale="jac", max_nfev=200)
    B, off, Y = unpack(sol.x)
    P = B[None] @ fk(off) @ Y[None]
    pos = np.linalg.norm(P[:, :3, 3] - G[:, :3, 3], axis=1)
    Rr = np.swapaxes(P[:, :3, :3], 1, 2) @ G[:, :3, :3]
    ang = np.degrees(np.arccos(np.clip((np.trace(Rr, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    offsets = {n: float(off[k]) for k, n in enumerate(offset_joints)} if oi else {}
    return EEFit(
        base_pose=B,
        joint_offsets=offsets,
        tool_from_link=Y,
        residual_mm=float(np.sqrt(np.mean(pos**2)) * 1000),
        residual_deg=float(np.sqrt(np.mean(ang**2))),
    )


# --------------------------------------------------------------------------- depth agreement (ICP)


@dataclass
class CameraView:
    """One camera of a recording for calibration: intrinsics, extrinsics (or mounted), measured depth [T,H,W]."""

    camera_id: str
    K: np.ndarray
    world_to_cam: np.ndarray | None  # [3,4]/[4,4] or [T,3,4]/[T,4,4]; None = mounted (state.mounted_cameras)
    depth: np.ndarray
    static: bool = True


@dataclass
class CameraRefinement:
    """A camera's rigid correction (left-multiplied to world-to-camera) and the depth residuals around it."""

    camera_id: str
    correction: np.ndarray
    residual_mm_before: float
    residual_mm_after: float
    inlier_fraction: float
    points: int
    frames: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "camera_id": self.camera_id,
            "residual_mm_before": round(self.residual_mm_before, 2),
            "residual_mm_after": round(self.residual_mm_after, 2),
            "inlier_fraction": round(self.inlier_fraction, 3),
            "points": self.points,
            "translation_mm": [round(float(x) * 1000, 2) for x in self.correction[:3, 3]],
            "rotation_deg": round(
                float(np.degrees(np.linalg.norm(matrix_to_rotvec(self.correction[:3, :3])))), 3
            ),
        }


def _depth(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d, np.float32)
    return d[:, 0] if d.ndim == 4 else d


def _normals(P: np.ndarray) -> np.ndarray:
    """Per-pixel normals of a lifted depth map [H,W,3] by central differences (NaN where undefined)."""
    dx = np.zeros_like(P)
    dy = np.zeros_like(P)
    dx[:, 1:-1] = P[:, 2:] - P[:, :-2]
    dy[1:-1] = P[2:] - P[:-2]
    n = np.cross(dx, dy)
    nn = np.linalg.norm(n, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = n / nn
    n[(nn[..., 0] < 1e-12)] = np.nan
    return n


def _lift(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    z = depth.astype(np.float64)
    x = (u - K[0, 2] - K[0, 1] * (v - K[1, 2]) / K[1, 1]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], -1)


def moving_frames(state: RobotState, count: int = 6) -> np.ndarray:
    """Up to ``count`` frames spread over the episode, preferring ones where the joints moved (distinct poses)."""
    q = state.positions
    T = len(q)
    if T <= count:
        return np.arange(T)
    step = np.r_[0.0, np.linalg.norm(np.diff(q, axis=0), axis=1)]
    s = np.cumsum(step)
    if s[-1] <= 1e-9:
        return np.linspace(0, T - 1, count).round().astype(int)
    targets = np.linspace(0, s[-1], count)
    return np.unique(np.searchsorted(s, targets).clip(0, T - 1))


def _solve_point_to_plane(
    src, dst, nrm, *, translation_only=False, scale=0.005, max_step=(np.radians(1.0), 0.005)
):
    """One robust Gauss-Newton step: small rigid motion D with D·src ≈ dst along nrm (Huber weights)."""
    r = np.einsum("ij,ij->i", dst - src, nrm)
    a = np.abs(r)
    w = np.where(a <= scale, 1.0, scale / np.maximum(a, 1e-12))
    J = nrm if translation_only else np.concatenate([np.cross(src, nrm), nrm], 1)
    JW = J * w[:, None]
    H = J.T @ JW
    # Levenberg damping: directions the surfaces do not constrain (a finger's flat faces seen
    # head-on) stay put instead of sliding far on noise
    H += (1e-3 * np.trace(H) / H.shape[0] + 1e-12) * np.eye(H.shape[0])
    x = np.linalg.solve(H, JW.T @ r)
    if translation_only:
        t = x
        n = np.linalg.norm(t)
        return se3(np.zeros(3), t * min(1.0, max_step[1] / max(n, 1e-12)))
    w_, t = x[:3], x[3:]
    a = np.linalg.norm(w_)
    n = np.linalg.norm(t)
    return se3(w_ * min(1.0, max_step[0] / max(a, 1e-12)), t * min(1.0, max_step[1] / max(n, 1e-12)))


def _scaled(view: CameraView, frames: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K [T',3,3], measured depth [T',h,w], pixel index arrays) at most ``max_side`` pixels wide/high.

    ICP needs a few thousand points, not every pixel of a 640x480 image, so it
    runs on a nearest-sampled grid (pixel-centre convention kept: a coarse
    pixel centre samples the fine pixel under it).
    """
    md = _depth(view.depth)[frames]
    H, W = md.shape[1:]
    f = max(1, int(np.ceil(max(H, W) / max_side)))
    K = np.asarray(view.K, float)
    Ks = K[frames] if K.ndim == 3 else np.broadcast_to(K, (len(frames), 3, 3)).copy()
    if f == 1:
        return Ks, md, np.array([f])
    rows = np.arange(f // 2, H, f)
    cols = np.arange(f // 2, W, f)
    md = md[:, rows][:, :, cols]
    S = np.array([[1 / f, 0, (f // 2) * -1 / f], [0, 1 / f, (f // 2) * -1 / f], [0, 0, 1]])
    return S[None] @ Ks, md, np.array([f])


def _view_at_scale(view: CameraView, Ks: np.ndarray, md: np.ndarray, frames: np.ndarray) -> CameraView:
    E = view.world_to_cam
    if E is not None and np.asarray(E).ndim == 3:
        E = np.asarray(E)[frames]
    return CameraView(view.camera_id, Ks, E, md, view.static)


def _measured(md: np.ndarray, Ks: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Lifted measured points and their normals per frame (computed once per refinement)."""
    out = []
    for i in range(len(md)):
        Pm = _lift(md[i], Ks[i])
        out.append((Pm, _normals(Pm)))
    return out


def _pairs(rd: np.ndarray, md: np.ndarray, Ks: np.ndarray, gate: float, meas=None):
    """Per frame: rendered robot points and the measured point + normal at the same pixel (camera frame)."""
    meas = meas if meas is not None else _measured(md, Ks)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
    for i in range(len(rd)):
        m = rd[i] > 0
        if not m.any():
            out.append(None)
            continue
        Pm, N = meas[i]
        ok = m & (md[i] > 0) & np.isfinite(N[..., 0]) & (np.abs(md[i] - rd[i]) < gate)
        vv, uu = np.nonzero(ok)
        K = Ks[i]
        z = rd[i][vv, uu].astype(np.float64)
        y = (vv - K[1, 2]) / K[1, 1]
        x = (uu - K[0, 2] - K[0, 1] * y) / K[0, 0]
        Ps = np.stack([x * z, y * z, z], 1)
        out.append((Ps, Pm[vv, uu], N[vv, uu]))
    return out


def _render_local(model, state, view: CameraView, n: int, correction=None, world_shift=None) -> np.ndarray:
    """Render depth for the ``n`` frames of a view already cut to them (state cut the same way)."""
    st = state
    if world_shift is not None:
        B = state.base_pose
        st = replace(state, base_pose=world_shift @ B if B.ndim == 2 else world_shift[None] @ B)
    H, W = view.depth.shape[1:]
    r = render(
        model,
        st,
        view.K,
        view.world_to_cam,
        H,
        W,
        groups={"robot": model.links_of(None)},
        frames=np.arange(n),
        camera_id=view.camera_id,
        cam_correction=correction,
    )
    return r.depth


def _cut_state(state: RobotState, frames: np.ndarray) -> RobotState:
    B = state.base_pose if state.base_pose.ndim == 2 else state.base_pose[frames]
    return replace(state, positions=state.positions[frames], base_pose=B)


def depth_residuals(
    rend_depth: np.ndarray, meas_depth: np.ndarray, inlier: float = 0.02
) -> tuple[float, float, int]:
    """(median |rendered - measured| in mm, inlier fraction within ``inlier`` m, robot pixels) over robot pixels.

    Pixels where the measured surface is in front of the render by more than
    ``inlier`` count as occluders, not errors (something may sit in front of
    the robot); the rest decide.
    """
    m = (rend_depth > 0) & (meas_depth > 0)
    if not m.any():
        return float("nan"), float("nan"), 0
    d = (meas_depth - rend_depth)[m]
    d = d[d > -inlier]
    if len(d) == 0:
        return float("nan"), 0.0, int(m.sum())
    return float(np.median(np.abs(d)) * 1000), float(np.mean(np.abs(d) < inlier)), int(m.sum())


def _gate(k: int, n: int, max_dist: tuple[float, float]) -> float:
    a = k / max(1, n - 1)
    return float(max_dist[0] * (1 - a) + max_dist[1] * a)


def refine_camera(
    model: RobotModel,
    state: RobotState,
    view: CameraView,
    *,
    frames: np.ndarray | None = None,
    iterations: int = 10,
    max_dist: tuple[float, float] = (0.05, 0.01),
    max_side: int = 160,
    min_points: int = 50,
    initial: np.ndarray | None = None,
    icp_resolution: float = 0.006,
) -> CameraRefinement:
    """Rigid correction ``D`` of one camera (world-to-camera becomes ``D @ E``) by ICP against its depth.

    Projective point-to-plane ICP: the robot is rendered with the current
    correction on ``frames`` (default: :func:`moving_frames`), each rendered
    surface point is paired with the measured point at the same pixel (pairs
    further apart than a gate shrinking from ``max_dist[0]`` to ``max_dist[1]``
    are ignored: background, occluders), and a Huber-weighted Gauss-Newton step
    solves the small rigid motion.  Runs on a grid at most ``max_side`` pixels.
    ``initial`` is a starting correction (the returned one includes it).
    The iterations render a copy of the model clustered on ``icp_resolution``
    (:meth:`RobotModel.coarse`); the residuals before/after use the full model.
    """
    coarse = model.coarse(icp_resolution) if icp_resolution > 0 else model
    fr = moving_frames(state) if frames is None else np.asarray(frames)
    Ks, md, _ = _scaled(view, fr, max_side)
    sv = _view_at_scale(view, Ks, md, fr)
    st = _cut_state(state, fr)
    D = np.eye(4) if initial is None else np.asarray(initial, float).copy()
    rd = _render_local(model, st, sv, len(fr), D)
    before = depth_residuals(rd, md)
    meas = _measured(md, Ks)
    D0, rd0 = D.copy(), rd
    rc = rd if coarse is model else _render_local(coarse, st, sv, len(fr), D)
    for k in range(iterations):
        pairs = [p for p in _pairs(rc, md, Ks, _gate(k, iterations, max_dist), meas) if p is not None]
        if not pairs or sum(len(p[0]) for p in pairs) < min_points:
            break
        src, dst, nrm = (np.concatenate([p[j] for p in pairs]) for j in range(3))
        dD = _solve_point_to_plane(src, dst, nrm)
        D = dD @ D
        rc = _render_local(coarse, st, sv, len(fr), D)
        if np.linalg.norm(dD[:3, 3]) < 2e-5 and np.linalg.norm(dD[:3, :3] - np.eye(3)) < 2e-5:
            break
    rd = rc if coarse is model else _render_local(model, st, sv, len(fr), D)
    after = depth_residuals(rd, md)
    if not (after[0] <= before[0] * 1.05 and after[1] >= before[1] - 0.05):
        # never hand back a correction that agrees worse with the depth than where it started
        D, rd, after = D0, rd0, before
    npts = sum(len(p[0]) for p in _pairs(rd, md, Ks, max_dist[1], meas) if p is not None)
    return CameraRefinement(
        camera_id=view.camera_id,
        correction=D,
        residual_mm_before=before[0],
        residual_mm_after=after[0],
        inlier_fraction=after[1],
        points=int(npts),
        frames=[int(f) for f in fr],
    )


def refine_robot_from_depth(
    model: RobotModel,
    state: RobotState,
    views: list[CameraView],
    *,
    frames: np.ndarray | None = None,
    iterations: int = 6,
    max_dist: tuple[float, float] = (0.05, 0.01),
    max_side: int = 160,
    icp_resolution: float = 0.006,
) -> tuple[RobotState, np.ndarray]:
    """A world translation of the whole robot that best agrees with every static camera's depth.

    This is what separates base height from the tool offset (poses alone
    cannot).  Only static cameras vote (a wrist camera's extrinsics ride on the
    robot).  Returns the corrected state and the 4x4 shift.
    """
    fr = moving_frames(state) if frames is None else np.asarray(frames)
    st = _cut_state(state, fr)
    coarse = model.coarse(icp_resolution) if icp_resolution > 0 else model
    prepared = []
    for v in views:
        if not v.static or v.world_to_cam is None:
            continue
        Ks, md, _ = _scaled(v, fr, max_side)
        sv = _view_at_scale(v, Ks, md, fr)
        E = np.asarray(sv.world_to_cam, float)
        E = E if E.ndim == 3 else np.broadcast_to(E, (len(fr),) + E.shape)
        prepared.append((sv, Ks, md, E, _measured(md, Ks)))
    S = np.eye(4)
    if not prepared:
        return state, S
    for k in range(iterations):
        src_w, dst_w, nrm_w = [], [], []
        for sv, Ks, md, E, meas in prepared:
            rd = _render_local(coarse, st, sv, len(fr), world_shift=S)
            for i, p in enumerate(_pairs(rd, md, Ks, _gate(k, iterations, max_dist), meas)):
                if p is None or len(p[0]) == 0:
                    continue
                R, t = E[i][:3, :3], E[i][:3, 3]
                src_w.append((p[0] - t) @ R)
                dst_w.append((p[1] - t) @ R)
                nrm_w.append(p[2] @ R)
        if not src_w or sum(len(s) for s in src_w) < 50:
            break
        dS = _solve_point_to_plane(
            np.concatenate(src_w), np.concatenate(dst_w), np.concatenate(nrm_w), translation_only=True
        )
        S = dS @ S
        if np.linalg.norm(dS[:3, 3]) < 1e-5:
            break
    B = state.base_pose
    return replace(state, base_pose=S @ B if B.ndim == 2 else S[None] @ B), S


@dataclass
class CalibrationReport:
    """Depth agreement of a rendered robot in one camera (median |Δz| mm, inlier fraction)."""

    camera_id: str
    residual_mm: float
    inlier_fraction: float
    pixels: int
    ok: bool

    def to_dict(self) -> dict:
        return {
            "camera_id": self.camera_id,
            "residual_mm": round(self.residual_mm, 2),
            "inlier_fraction": round(self.inlier_fraction, 3),
            "pixels": self.pixels,
            "ok": self.ok,
        }


def check_calibration(
    rend_depth: np.ndarray,
    meas_depth: np.ndarray,
    camera_id: str,
    *,
    max_residual_mm: float = 15.0,
    min_inlier_fraction: float = 0.6,
    min_pixels: int = 30,
    raise_error: bool = True,
) -> CalibrationReport:
    """Compare rendered and measured depth on robot pixels; raise :class:`CalibrationError` when they disagree.

    A camera that sees too little of the robot (< ``min_pixels``) passes: there
    is nothing to be wrong about.  Thresholds are loose on purpose: a good
    calibration is within a few mm (the shared RLBench episode: < 5 mm), a wrong
    one (wrong robot, wrong joint order, swapped camera) is off by centimetres.
    """
    md = _depth(meas_depth)
    res, inl, n = depth_residuals(np.asarray(rend_depth), md)
    ok = n < min_pixels or (np.isfinite(res) and res <= max_residual_mm and inl >= min_inlier_fraction)
    rep = CalibrationReport(camera_id, res, inl, n, bool(ok))
    if not ok and raise_error:
        raise CalibrationError(
            f"rendered robot and measured depth disagree in camera {camera_id}: median |dz| {res:.1f} mm "
            f"(limit {max_residual_mm:g}), {inl * 100:.0f}% of {n} robot pixels within 2 cm "
            f"(need {min_inlier_fraction * 100:.0f}%); check the robot model, joint names/order, base pose "
            "and this camera's extrinsics",
            field=f"cameras.{camera_id}",
        )
    return rep


@dataclass
class Calibration:
    """Everything :func:`calibrate` found: the corrected state, per-camera corrections and residuals."""

    state: RobotState
    ee_fit: EEFit | None
    world_shift: np.ndarray
    cameras: dict[str, CameraRefinement]

    def correction(self, camera_id: str) -> np.ndarray | None:
        c = self.cameras.get(camera_id)
        return None if c is None else c.correction

    def to_dict(self) -> dict:
        return {
            "ee_fit": None
            if self.ee_fit is None
            else {
                "residual_mm": round(self.ee_fit.residual_mm, 2),
                "residual_deg": round(self.ee_fit.residual_deg, 3),
                "joint_offsets": {k: round(v, 4) for k, v in self.ee_fit.joint_offsets.items()},
            },
            "world_shift_mm": [round(float(x) * 1000, 2) for x in self.world_shift[:3, 3]],
            "cameras": {k: v.to_dict() for k, v in self.cameras.items()},
        }


def calibrate(
    model: RobotModel,
    state: RobotState,
    views: list[CameraView],
    *,
    ee_poses: np.ndarray | None = None,
    ee_link: str | None = None,
    tool_from_link: np.ndarray | None = None,
    refine_cameras: bool = True,
    check: bool = True,
) -> Calibration:
    """The whole chain on one recording: ee-track fit (if given), robot height from depth, per-camera ICP, check.

    Uses only the recording (joint track, end-effector poses, depth); no masks.
    With ``check`` a camera whose depth still disagrees after refinement raises
    :class:`CalibrationError` naming it.
    """
    fit = None
    if ee_poses is not None:
        link = ee_link or model.ee_link
        if link is None:
            raise CalibrationError("an end-effector pose track needs ee_link (the model names none)")
        fit = fit_base_from_ee(
            model,
            state.joint_names,
            state.positions,
            ee_poses,
            link,
            tool_from_link=tool_from_link if tool_from_link is not None else model.tool_from_ee,
        )
        state = fit.apply(state)
    state, S = refine_robot_from_depth(model, state, views)
    cams: dict[str, CameraRefinement] = {}
    if refine_cameras:
        for v in views:
            cams[v.camera_id] = refine_camera(model, state, v)
    if check:
        for v in views:
            rc = cams.get(v.camera_id)
            fr = rc.frames if rc else list(moving_frames(state))
            Ks, md, _ = _scaled(v, np.asarray(fr), 160)
            sv = _view_at_scale(v, Ks, md, np.asarray(fr))
            rd = _render_local(
                model, _cut_state(state, np.asarray(fr)), sv, len(fr), None if rc is None else rc.correction
            )
            check_calibration(rd, md, v.camera_id)
    return Calibration(state, fit, S, cams)

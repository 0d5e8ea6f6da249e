"""Kinematic rendering: per-link labels and depth of a robot in a pinhole camera, on the CPU.

A vectorised z-buffer rasteriser in numpy: every triangle's pixel-centre
bounding box is enumerated in one flat array (no Python loop over triangles),
barycentric coordinates come from per-triangle edge coefficients, ``1/z`` is
interpolated (perspective-correct planar depth) and the nearest surface per
pixel wins through ``np.maximum.at``.  Back faces are culled (the meshes are
closed and outward-facing), triangles with a vertex closer than ``near`` are
dropped (no clipping: a link that close to a camera is a wrist camera looking
past it).

Conventions are the scene format's (:mod:`masktrack.track.geometry`): integer
pixel ``(u, v)`` is the pixel centre, ``x_cam = R X + t``, ``pixel = K x_cam / z``,
depth is planar ``z`` in metres and 0 where the robot is absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from masktrack.robot.model import RobotModel, RobotModelError
from masktrack.robot.state import RobotState

NEAR = 0.01  # metres


@dataclass
class RobotRender:
    """Rendered robot over T' frames of one camera.

    ``link_labels`` int16 [T', H, W]: 0 = background, ``i + 1`` = ``links[i]``;
    ``depth`` float32 [T', H, W] planar z (0 = no robot); ``frames`` the scene
    frame index of each rendered frame; ``groups`` name sets of links.
    """

    link_labels: np.ndarray
    depth: np.ndarray
    links: list[str]
    groups: dict[str, list[str]]
    frames: np.ndarray
    occluded: np.ndarray | None = None  # bool [T', H, W]: robot pixels hidden by something in front
    _lut_cache: dict = field(default_factory=dict, repr=False)

    def _lut(self, group: str) -> np.ndarray:
        if group not in self._lut_cache:
            if group not in self.groups:
                raise KeyError(f"no link group {group!r} (have {', '.join(self.groups)})")
            names = set(self.groups[group])
            self._lut_cache[group] = np.array([False] + [ln in names for ln in self.links])
        return self._lut_cache[group]

    def masks(self, group: str, *, include_occluded: bool = False) -> np.ndarray:
        """bool [T', H, W]: pixels of the group's links (visible robot surface; occluders removed)."""
        m = self._lut(group)[self.link_labels]
        if self.occluded is not None and not include_occluded:
            m &= ~self.occluded
        return m

    @property
    def labels(self) -> np.ndarray:
        """int16 [T', H, W]: 1 + index of the first group (in ``groups`` order) owning the pixel's link; 0 = none.

        Groups may overlap (``gripper`` contains ``gripper_left``); use :meth:`masks` for each.
        """
        lut = np.zeros(len(self.links) + 1, np.int16)
        for gi, g in reversed(list(enumerate(self.groups))):
            lut[self._lut(g)] = gi + 1
        out = lut[self.link_labels]
        if self.occluded is not None:
            out[self.occluded] = 0
        return out

    @property
    def robot_mask(self) -> np.ndarray:
        m = self.link_labels > 0
        if self.occluded is not None:
            m &= ~self.occluded
        return m


# --------------------------------------------------------------------------- geometry packing


@dataclass
class _Pack:
    links: list[str]
    vertices: np.ndarray  # [N,3]
    faces: np.ndarray  # [F,3]
    face_link: np.ndarray  # [F] index into links
    vslices: list[tuple[int, int]]


_PACKS: dict[tuple, _Pack] = {}


def _pack(model: RobotModel, links: list[str]) -> _Pack:
    key = (id(model), tuple(links))
    p = _PACKS.get(key)
    if p is not None:
        return p
    vs, fs, fl, sl, n = [], [], [], [], 0
    for i, ln in enumerate(links):
        vis = model.links.get(ln)
        if vis is None or len(vis.faces) == 0:
            sl.append((n, n))
            continue
        vs.append(vis.vertices)
        fs.append(vis.faces + n)
        fl.append(np.full(len(vis.faces), i, np.int32))
        sl.append((n, n + len(vis.vertices)))
        n += len(vis.vertices)
    if not vs:
        raise RobotModelError(f"none of the links {', '.join(links)} has visual geometry")
    p = _Pack(links, np.concatenate(vs), np.concatenate(fs), np.concatenate(fl), sl)
    _PACKS[key] = p
    return p


# --------------------------------------------------------------------------- rasteriser


def rasterize(
    verts_cam: np.ndarray,
    faces: np.ndarray,
    K: np.ndarray,
    height: int,
    width: int,
    *,
    cull: bool = True,
    near: float = NEAR,
    chunk: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame vertices [N,3] + faces [F,3] -> (face index int32 [H,W] (-1 = none), depth float32 [H,W])."""
    fx, fy, cx, cy, s = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    z = verts_cam[:, 2]
    zs = np.where(z > near, z, np.nan)
    u = (fx * verts_cam[:, 0] + s * verts_cam[:, 1]) / zs + cx
    v = fy * verts_cam[:, 1] / zs + cy
    f0, f1, f2 = faces[:, 0], faces[:, 1], faces[:, 2]
    u0, u1, u2 = u[f0], u[f1], u[f2]
    v0, v1, v2 = v[f0], v[f1], v[f2]
    area = (u1 - u0) * (v2 - v0) - (v1 - v0) * (u2 - u0)  # NaN when a vertex is behind `near`
    keep = (area < -1e-12) if cull else (np.abs(area) > 1e-12)
    idx = np.nonzero(keep)[0]
    u0, u1, u2, v0, v1, v2, area = u0[idx], u1[idx], u2[idx], v0[idx], v1[idx], v2[idx], area[idx]
    umin = np.ceil(np.minimum(np.minimum(u0, u1), u2))
    umax = np.floor(np.maximum(np.maximum(u0, u1), u2))
    vmin = np.ceil(np.minimum(np.minimum(v0, v1), v2))
    vmax = np.floor(np.maximum(np.maximum(v0, v1), v2))
    keep = (
        (umax >= 0)
        & (vmax >= 0)
        & (umin <= width - 1)
        & (vmin <= height - 1)
        & (umax >= umin)
        & (vmax >= vmin)
    )
    sel = np.nonzero(keep)[0]
    idx = idx[sel]
    zbuf = np.zeros(height * width, np.float64)  # holds max 1/z; 0 = empty
    fid = np.full(height * width, -1, np.int32)
    if len(idx) == 0:
        return fid.reshape(height, width), zbuf.reshape(height, width).astype(np.float32)
    u0, u1, u2, v0, v1, v2, area = u0[sel], u1[sel], u2[sel], v0[sel], v1[sel], v2[sel], area[sel]
    umin, umax, vmin, vmax = umin[sel], umax[sel], vmin[sel], vmax[sel]
    fz = z[faces[idx]]
    iz = 1.0 / fz
    umin = np.clip(umin, 0, width - 1).astype(np.int64)
    umax = np.clip(umax, 0, width - 1).astype(np.int64)
    vmin = np.clip(vmin, 0, height - 1).astype(np.int64)
    vmax = np.clip(vmax, 0, height - 1).astype(np.int64)
    # barycentric l0 = a0 u + b0 v + c0, l1 likewise, l2 = 1 - l0 - l1 (edge functions / area)
    inv = 1.0 / area
    a0, b0 = -(v2 - v1) * inv, (u2 - u1) * inv
    c0 = -(a0 * u1 + b0 * v1)
    a1, b1 = -(v0 - v2) * inv, (u0 - u2) * inv
    c1 = -(a1 * u2 + b1 * v2)
    d0, d1 = iz[:, 0] - iz[:, 2], iz[:, 1] - iz[:, 2]
    za, zb, zc = a0 * d0 + a1 * d1, b0 * d0 + b1 * d1, c0 * d0 + c1 * d1 + iz[:, 2]
    # scanline spans: one (triangle, row) pair per pixel row of the bounding box; on each row the
    # three constraints l_i >= 0 are half-lines in u, so the covered pixel centres are one interval
    nh = vmax - vmin + 1
    rt = np.repeat(np.arange(len(idx)), nh)
    rv = (np.arange(int(nh.sum())) - np.repeat(np.cumsum(nh) - nh, nh) + vmin[rt]).astype(np.float64)
    lo = umin[rt].astype(np.float64)
    hi = umax[rt].astype(np.float64)
    eps = 1e-9
    for al, be, ga in ((a0, b0, c0), (a1, b1, c1), (-(a0 + a1), -(b0 + b1), 1 - c0 - c1)):
        A = al[rt]
        Bv = be[rt] * rv + ga[rt] + eps  # constraint: A u + Bv >= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            x = -Bv / A
        pos, neg = A > 1e-15, A < -1e-15
        lo = np.where(pos, np.maximum(lo, np.ceil(x)), lo)
        hi = np.where(neg, np.minimum(hi, np.floor(x)), hi)
        flat = ~pos & ~neg & (Bv < 0)
        hi = np.where(flat, lo - 1, hi)
    ln = np.maximum(hi - lo + 1, 0).astype(np.int64)  # empty spans simply repeat nothing
    tot = int(ln.sum())
    if tot == 0:
        return fid.reshape(height, width), np.zeros((height, width), np.float32)
    span = np.repeat(np.arange(len(ln)), ln)
    pu = np.arange(tot) - np.repeat(np.cumsum(ln) - ln - np.where(ln > 0, lo, 0).astype(np.int64), ln)
    rowbase = (rv * width).astype(np.int64)
    pix = rowbase[span] + pu
    zrow = zb[rt] * rv + zc[rt]
    izc = za[rt][span] * pu + zrow[span]
    tri = idx[rt][span]
    np.maximum.at(zbuf, pix, izc)
    win = izc >= zbuf[pix]
    fid[pix[win]] = tri[win]
    depth = np.zeros(height * width, np.float32)
    hit = zbuf > 0
    depth[hit] = (1.0 / zbuf[hit]).astype(np.float32)
    return fid.reshape(height, width), depth.reshape(height, width)


# --------------------------------------------------------------------------- public API


def _as_frames(frames, T: int) -> np.ndarray:
    if frames is None:
        return np.arange(T)
    if isinstance(frames, slice):
        return np.arange(T)[frames]
    return np.asarray(list(frames) if not isinstance(frames, np.ndarray) else frames, np.int64)


def _as_4x4(E: np.ndarray) -> np.ndarray:
    E = np.asarray(E, np.float64)
    if E.shape[-2:] == (4, 4):
        return E
    out = np.zeros(E.shape[:-2] + (4, 4))
    out[..., :3, :] = E
    out[..., 3, 3] = 1
    return out


def camera_from_world(
    model: RobotModel,
    state: RobotState,
    camera_id: str,
    frames: np.ndarray,
) -> np.ndarray:
    """World-to-camera [T', 4, 4] of a camera mounted on a link (``state.mounted_cameras``)."""
    link, cam_from_link = state.mounted_cameras[camera_id]
    q = state.positions_with_offsets(frames)
    base_from_link = model.fk(q, state.joint_names, links=[link])[link]
    world_from_link = state.base_at(frames) @ base_from_link
    return np.asarray(cam_from_link, float)[None] @ np.linalg.inv(world_from_link)


def link_poses_in_camera(
    model: RobotModel,
    state: RobotState,
    links: list[str],
    world_to_cam: np.ndarray,
    frames: np.ndarray,
) -> np.ndarray:
    """cam-from-link [T', L, 4, 4] for the rendered frames."""
    q = state.positions_with_offsets(frames)
    poses = model.fk(q, state.joint_names, links=links)
    B = state.base_at(frames)
    E = _as_4x4(world_to_cam)
    if E.ndim == 2:
        E = np.broadcast_to(E, (len(frames), 4, 4))
    out = np.empty((len(frames), len(links), 4, 4))
    for li, ln in enumerate(links):
        out[:, li] = E @ B @ poses[ln]
    return out


def render(
    model: RobotModel,
    state: RobotState,
    K: np.ndarray,
    world_to_cam: np.ndarray | None,
    height: int,
    width: int,
    groups: dict[str, list[str]] | None = None,
    frames: slice | list[int] | np.ndarray | None = None,
    *,
    camera_id: str | None = None,
    cam_correction: np.ndarray | None = None,
    cull: bool = True,
) -> RobotRender:
    """Render link labels and depth of ``state``'s robot in one camera.

    ``K`` [3,3] (or [T,3,3]); ``world_to_cam`` [3,4]/[4,4], or per frame
    [T,3,4]/[T,4,4] (indexed by scene frame), or None for a camera in
    ``state.mounted_cameras`` named by ``camera_id``.  ``groups`` default to the
    model's ``link_groups`` (then ``state.link_groups``); only their links are
    drawn.  ``cam_correction`` [4,4] left-multiplies the extrinsics (what
    :func:`masktrack.robot.calibrate.refine_camera` returns).
    """
    T = state.num_frames
    fr = _as_frames(frames, T)
    if groups is None:
        groups = dict(model.link_groups)
        groups.update(state.link_groups)
    if not groups:
        groups = {"robot": model.links_of(None)}
    links = model.links_of(groups)
    pack = _pack(model, links)
    if world_to_cam is None:
        if camera_id is None or camera_id not in state.mounted_cameras:
            raise RobotModelError(
                f"camera {camera_id!r} has no extrinsics and is not mounted on a link",
                field="mounted_cameras",
            )
        E = camera_from_world(model, state, camera_id, fr)
    else:
        E = _as_4x4(world_to_cam)
        if E.ndim == 3:
            E = E[fr]
    if cam_correction is not None:
        E = np.asarray(cam_correction, float) @ E
    Kf = np.asarray(K, np.float64)
    Ks = Kf[fr] if Kf.ndim == 3 else np.broadcast_to(Kf, (len(fr), 3, 3))
    P = link_poses_in_camera(model, state, links, E, fr)
    labels = np.zeros((len(fr), height, width), np.int16)
    depth = np.zeros((len(fr), height, width), np.float32)
    vc = np.empty_like(pack.vertices)
    for i in range(len(fr)):
        for li, (a, b) in enumerate(pack.vslices):
            if b > a:
                R, t = P[i, li, :3, :3], P[i, li, :3, 3]
                vc[a:b] = pack.vertices[a:b] @ R.T + t
        fid, d = rasterize(vc, pack.faces, Ks[i], height, width, cull=cull)
        hit = fid >= 0
        labels[i][hit] = pack.face_link[fid[hit]] + 1
        depth[i] = d
    return RobotRender(labels, depth, links, {g: list(v) for g, v in groups.items()}, fr)


def occlude(rendered: RobotRender, measured_depth: np.ndarray, margin: float = 0.03) -> RobotRender:
    """Mark robot pixels whose measured depth is clearly (``margin`` metres) in front of the rendered surface.

    Something between the camera and the robot (an object in the gripper, a
    hand) hides the robot there, so those pixels leave every mask.  Invalid
    measured depth (0 or NaN) never occludes.  ``measured_depth`` is [T', H, W]
    for the rendered frames, or [T, H, W] for all scene frames (indexed by
    ``rendered.frames``).  Returns a new render sharing the arrays.
    """
    md = np.asarray(measured_depth, np.float32)
    if md.ndim == 4:
        md = md[:, 0]
    if md.shape[0] != len(rendered.frames):
        md = md[rendered.frames]
    if md.shape != rendered.depth.shape:
        raise RobotModelError(f"measured depth has shape {md.shape}, render has {rendered.depth.shape}")
    valid = np.isfinite(md) & (md > 0)
    occ = (rendered.depth > 0) & valid & (md < rendered.depth - margin)
    return RobotRender(
        rendered.link_labels, rendered.depth, rendered.links, rendered.groups, rendered.frames, occ
    )

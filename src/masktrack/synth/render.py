"""Vectorised ray casting of analytic primitives: RGB, planar depth and primitive ids.

Each pixel's ray (through the pixel centre: integer (u, v)) is intersected
with every primitive whose projected bounding sphere covers it; the nearest
hit wins (a z-buffer over exact surfaces).  Colour comes from the primitive's
object-space texture at the local hit point, so texture moves with the
surface, times a mild two-light Lambert shading.  The same intersection code
decides ground-truth point visibility, so images and tracks agree exactly.
"""

from __future__ import annotations

import numpy as np

from masktrack.synth.scene import BOX, Camera, Material, Primitive

EPS = 1e-6
LIGHTS = np.array([[0.35, 0.25, 0.9], [-0.6, -0.5, 0.6]])
LIGHTS = LIGHTS / np.linalg.norm(LIGHTS, axis=1, keepdims=True)
LIGHT_W = np.array([0.38, 0.17])
AMBIENT = 0.55


def intersect(prim: Primitive, frame: int, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit (``inf`` if none) for rays ``origin + s * dirs`` [N, 3]."""
    pose = prim.poses[frame]
    rot, pos = pose[:3, :3], pose[:3, 3]
    o = (origin - pos) @ rot  # local origin(s)
    d = dirs @ rot
    hx, hy, hz = prim.half
    if prim.kind == BOX:
        h = np.array([hx, hy, hz])
        inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
        t1 = (-h - o) * inv
        t2 = (h - o) * inv
        lo = np.minimum(t1, t2)
        hi = np.maximum(t1, t2)
        tmin = np.maximum(np.maximum(lo[..., 0], lo[..., 1]), lo[..., 2])
        tmax = np.minimum(np.minimum(hi[..., 0], hi[..., 1]), hi[..., 2])
        hit = (tmax >= tmin) & (tmin > EPS)
        return np.where(hit, tmin, np.inf)
    r = hx
    ox, oy, oz = o[..., 0], o[..., 1], o[..., 2]
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    a = dx * dx + dy * dy
    b = 2 * (ox * dx + oy * dy)
    c = ox * ox + oy * oy - r * r
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        ts = (-b - np.sqrt(disc)) / (2 * a)
    zs = oz + ts * dz
    side = np.where((disc >= 0) & (a > 1e-12) & (ts > EPS) & (np.abs(zs) <= hz), ts, np.inf)
    dzs = np.where(np.abs(dz) < 1e-12, 1e-12, dz)
    tc = np.minimum((hz - oz) / dzs, (-hz - oz) / dzs)
    tc = np.where(tc > EPS, tc, np.inf)
    xc, yc = ox + tc * dx, oy + tc * dy
    cap = np.where(xc * xc + yc * yc <= r * r, tc, np.inf)
    return np.minimum(side, cap)


def local_normals(prim: Primitive, p: np.ndarray) -> np.ndarray:
    """Outward unit normals [N, 3] (local frame) at local surface points ``p``."""
    hx, hy, hz = prim.half
    n = np.zeros_like(p)
    if prim.kind == BOX:
        q = np.abs(p) / np.array([hx, hy, hz])
        ax = q.argmax(axis=1)
        n[np.arange(len(p)), ax] = np.sign(p[np.arange(len(p)), ax])
        return n
    on_cap = np.abs(p[:, 2]) >= hz - 1e-5
    n[:, 2] = np.where(on_cap, np.sign(p[:, 2]), 0.0)
    rad = np.hypot(p[:, 0], p[:, 1])
    rad = np.where(rad < 1e-12, 1.0, rad)
    n[:, 0] = np.where(on_cap, 0.0, p[:, 0] / rad)
    n[:, 1] = np.where(on_cap, 0.0, p[:, 1] / rad)
    return n


def texture(mat: Material, p: np.ndarray) -> np.ndarray:
    """Albedo RGB [N, 3] in 0..1 at local points ``p`` [N, 3] (metres)."""
    w = mat.waves
    phase = p @ w[:, :3].T * w[:, 3] + w[:, 4]
    s = np.sin(phase)
    k = len(w)
    half = k // 2
    n1 = s[:, :half].sum(1) / np.sqrt(half / 2)
    n2 = s[:, half:].sum(1) / np.sqrt((k - half) / 2)
    n1 = np.tanh(0.8 * n1)
    n2 = np.tanh(0.8 * n2)
    col = (
        np.asarray(mat.base)[None] * (1 + mat.contrast * n1[:, None])
        + np.asarray(mat.tint)[None] * n2[:, None]
    )
    if mat.checker > 0:
        chk = np.floor(p / mat.checker).sum(1) % 2
        col = col * (1 + mat.checker_contrast * (2 * chk[:, None] - 1))
    return np.clip(col, 0, 1)


def pixel_rays(cam: Camera, height: int, width: int) -> np.ndarray:
    """World directions [H, W, 3] through pixel centres, scaled so the parameter is planar depth."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    pix = np.stack([u, v, np.ones_like(u)], -1)
    d_cam = pix @ np.linalg.inv(cam.K).T  # z = 1
    return d_cam @ cam.R  # R^T d


def _sphere_bbox(
    prim: Primitive, frame: int, cam: Camera, height: int, width: int
) -> tuple[int, int, int, int] | None:
    """Pixel box (v0, v1, u0, u1) covering the primitive's bounding sphere; None if it is behind or outside."""
    rad = (
        float(np.linalg.norm(prim.half)) if prim.kind == BOX else float(np.hypot(prim.half[0], prim.half[2]))
    )
    c = cam.R @ prim.poses[frame][:3, 3] + cam.t
    if c[2] + rad <= 0:
        return None
    if c[2] - rad <= 1e-3:
        return 0, height, 0, width
    zs = (c[2] - rad, c[2] + rad)
    xs = [(c[0] + sx * rad) / z for sx in (-1, 1) for z in zs]
    ys = [(c[1] + sy * rad) / z for sy in (-1, 1) for z in zs]
    k = cam.K
    u0 = int(np.floor(k[0, 0] * min(xs) + k[0, 2])) - 1
    u1 = int(np.ceil(k[0, 0] * max(xs) + k[0, 2])) + 2
    v0 = int(np.floor(k[1, 1] * min(ys) + k[1, 2])) - 1
    v1 = int(np.ceil(k[1, 1] * max(ys) + k[1, 2])) + 2
    u0, u1, v0, v1 = max(u0, 0), min(u1, width), max(v0, 0), min(v1, height)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def is_static(prim: Primitive) -> bool:
    return bool(np.allclose(prim.poses, prim.poses[:1]))


class ViewRenderer:
    """Renders one camera over time; static primitives (table, floor, base) are rendered once."""

    def __init__(self, prims: list[Primitive], cam: Camera, height: int, width: int) -> None:
        self.prims, self.cam, self.h, self.w = prims, cam, height, width
        self.rays = pixel_rays(cam, height, width)
        self.static = [i for i, p in enumerate(prims) if is_static(p)]
        self.dynamic = [i for i in range(len(prims)) if i not in self.static]
        self._bg = self._layer(self.static, 0, None)

    def _layer(
        self, which: list[int], frame: int, base: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w, origin = self.h, self.w, self.cam.center
        if base is None:
            depth = np.full((h, w), np.inf)
            ids = np.full((h, w), -1, np.int16)
            rgb = np.zeros((h, w, 3))
        else:
            depth, ids, rgb = (a.copy() for a in base)
        changed = np.zeros((h, w), bool)
        for i in which:
            box = _sphere_bbox(self.prims[i], frame, self.cam, h, w)
            if box is None:
                continue
            v0, v1, u0, u1 = box
            sub = self.rays[v0:v1, u0:u1]
            t = intersect(self.prims[i], frame, origin, sub.reshape(-1, 3)).reshape(sub.shape[:2])
            cur = depth[v0:v1, u0:u1]
            closer = t < cur
            cur[closer] = t[closer]
            ids[v0:v1, u0:u1][closer] = i
            changed[v0:v1, u0:u1] |= closer
        for i in which:
            sel = changed & (ids == i)
            if not sel.any():
                continue
            prim = self.prims[i]
            pose = prim.poses[frame]
            pw = origin + self.rays[sel] * depth[sel][:, None]
            pl = (pw - pose[:3, 3]) @ pose[:3, :3]
            alb = texture(prim.material, pl)
            nw = local_normals(prim, pl) @ pose[:3, :3].T
            shade = AMBIENT + (np.clip(nw @ LIGHTS.T, 0, None) * LIGHT_W).sum(1)
            rgb[sel] = alb * shade[:, None]
        return depth, ids, rgb

    def render(self, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rgb float [H, W, 3] in 0..1, planar depth [H, W] with 0 = nothing hit, primitive index int16 [H, W], -1 = none)."""
        depth, ids, rgb = self._layer(self.dynamic, frame, self._bg)
        sky = ids < 0
        rgb[sky] = (0.75, 0.8, 0.85)
        depth[sky] = 0.0
        return np.clip(rgb, 0, 1), depth, ids


def render_view(
    prims: list[Primitive], frame: int, cam: Camera, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one camera at one frame (see :meth:`ViewRenderer.render`)."""
    return ViewRenderer(prims, cam, height, width).render(frame)


def first_hit(prims: list[Primitive], frame: int, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Nearest hit parameter [N] over all primitives for rays ``origin + s * dirs``."""
    best = np.full(len(dirs), np.inf)
    for prim in prims:
        best = np.minimum(best, intersect(prim, frame, origin, dirs))
    return best

"""Pinhole geometry: lift pixels with depth to world points and project them back.

Conventions (the same as the scene format):

* ``K`` is the OpenCV intrinsic matrix; **integer pixel (u, v) is the centre of
  the pixel** in column ``u``, row ``v`` (array index ``[v, u]``).  So the
  pixel grid ``u = 0..W-1`` lifts with no half-pixel offset, and bilinear
  sampling at a float ``(u, v)`` interpolates between the four nearest pixel
  centres.
* ``E = [R | t]`` is world-to-camera: ``x_cam = R X + t``; the camera centre is
  ``-R^T t`` and lifting uses the inverse ``X = R^T (x_cam - t)``.
* Depth is planar ``z`` (not ray length) in metres; 0 means invalid.
"""

from __future__ import annotations

import numpy as np


def lift(uv: np.ndarray, z: np.ndarray, K: np.ndarray, E: np.ndarray) -> np.ndarray:
    """Pixels ``uv`` [N, 2] with planar depth ``z`` [N] -> world points [N, 3] (float64)."""
    uv = np.asarray(uv, np.float64)
    z = np.asarray(z, np.float64)
    K = np.asarray(K, np.float64)
    E = np.asarray(E, np.float64)
    x = (uv[:, 0] - K[0, 2] - K[0, 1] * (uv[:, 1] - K[1, 2]) / K[1, 1]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    cam = np.stack([x, y, z], axis=1)
    R, t = E[:, :3], E[:, 3]
    return (cam - t) @ R  # R^T (cam - t), row-wise


def to_camera(X: np.ndarray, E: np.ndarray) -> np.ndarray:
    """World points [N, 3] -> camera coordinates [N, 3]."""
    E = np.asarray(E, np.float64)
    return np.asarray(X, np.float64) @ E[:, :3].T + E[:, 3]


def project(X: np.ndarray, K: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points [N, 3] -> (pixels ``uv`` [N, 2], planar depth ``z`` [N]); z <= 0 gives NaN pixels."""
    cam = to_camera(X, E)
    K = np.asarray(K, np.float64)
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = np.where(z > 1e-9, z, np.nan)
        p = cam @ K.T
        uv = p[:, :2] / zs[:, None]
    return uv, z


def in_image(uv: np.ndarray, size: tuple[int, int], margin: float = 0.0) -> np.ndarray:
    """Pixels whose centre lies inside the image (with ``margin`` pixels to spare). ``size`` is (H, W)."""
    h, w = size
    u, v = uv[:, 0], uv[:, 1]
    with np.errstate(invalid="ignore"):
        return (u >= -0.5 + margin) & (u <= w - 0.5 - margin) & (v >= -0.5 + margin) & (v <= h - 0.5 - margin)


def camera_center(E: np.ndarray) -> np.ndarray:
    E = np.asarray(E, np.float64)
    return -E[:, :3].T @ E[:, 3]


def sample_depth(depth: np.ndarray, uv: np.ndarray, *, max_rel_jump: float = 0.05) -> np.ndarray:
    """Depth at float pixels [N, 2], bilinear between the four nearest centres.

    Returns 0 (invalid) where any of the four is invalid or where they differ
    by more than ``max_rel_jump`` of their median: interpolating across a depth
    discontinuity would put the point in empty space between two surfaces.  In
    that case the nearest valid pixel's depth is used if it agrees with the
    closest neighbour.
    """
    h, w = depth.shape
    uv = np.asarray(uv, np.float64)
    u = np.clip(uv[:, 0], 0, w - 1)
    v = np.clip(uv[:, 1], 0, h - 1)
    u0 = np.clip(np.floor(u).astype(np.int64), 0, w - 2 if w > 1 else 0)
    v0 = np.clip(np.floor(v).astype(np.int64), 0, h - 2 if h > 1 else 0)
    u1 = np.minimum(u0 + 1, w - 1)
    v1 = np.minimum(v0 + 1, h - 1)
    fu = u - u0
    fv = v - v0
    d = np.stack([depth[v0, u0], depth[v0, u1], depth[v1, u0], depth[v1, u1]], axis=1).astype(np.float64)
    wts = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], axis=1)
    valid = (d > 0).all(axis=1)
    med = np.median(d, axis=1)
    smooth = (d.max(axis=1) - d.min(axis=1)) <= max_rel_jump * np.maximum(med, 1e-6)
    out = np.where(valid & smooth, (d * wts).sum(axis=1), 0.0)
    # discontinuity: fall back to the nearest pixel centre (keeps the point on one surface)
    bad = ~(valid & smooth)
    if bad.any():
        nu = np.clip(np.rint(u[bad]).astype(np.int64), 0, w - 1)
        nv = np.clip(np.rint(v[bad]).astype(np.int64), 0, h - 1)
        out[bad] = depth[nv, nu]
    return out


def bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample ``image`` [H, W] or [H, W, C] at float pixel centres ``uv`` [N, 2] (clamped at the border)."""
    h, w = image.shape[:2]
    u = np.clip(np.asarray(uv[:, 0], np.float64), 0, w - 1)
    v = np.clip(np.asarray(uv[:, 1], np.float64), 0, h - 1)
    u0 = np.minimum(np.floor(u).astype(np.int64), max(w - 2, 0))
    v0 = np.minimum(np.floor(v).astype(np.int64), max(h - 2, 0))
    u1 = np.minimum(u0 + 1, w - 1)
    v1 = np.minimum(v0 + 1, h - 1)
    fu = u - u0
    fv = v - v0
    if image.ndim == 3:
        fu = fu[:, None]
        fv = fv[:, None]
    img = image.astype(np.float64) if image.dtype != np.float64 else image
    return (img[v0, u0] * (1 - fu) * (1 - fv) + img[v0, u1] * fu * (1 - fv) + img[v1, u0] * (1 - fu) * fv + img[v1, u1] * fu * fv)

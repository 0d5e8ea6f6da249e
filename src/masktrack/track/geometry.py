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
    """Pixels ``uv`` [N, 2] with planar depth ``z`` [N] -> world points [N, 3] (float64).

    ``K`` [3, 3] and ``E`` [3, 4] are one camera's, or [N, 3, 3] / [N, 3, 4]
    give every pixel its own camera (one call for points of many cameras).
    """
    uv = np.asarray(uv, np.float64)
    z = np.asarray(z, np.float64)
    K = np.asarray(K, np.float64)
    E = np.asarray(E, np.float64)
    fx, s, cx, fy, cy = K[..., 0, 0], K[..., 0, 1], K[..., 0, 2], K[..., 1, 1], K[..., 1, 2]
    y = (uv[:, 1] - cy) / fy
    x = (uv[:, 0] - cx - s * y) / fx * z
    cam = np.stack([x, y * z, z], axis=1)
    R, t = E[..., :3], E[..., 3]
    if E.ndim == 2:
        return (cam - t) @ R  # R^T (cam - t), row-wise
    return np.matmul((cam - t)[:, None, :], R)[:, 0]


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


def project_cameras(X: np.ndarray, K: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points [N, 3] into C cameras at once: K [C, 3, 3], E [C, 3, 4] -> (uv [C, N, 2], z [C, N])."""
    X = np.asarray(X, np.float64)
    E = np.asarray(E, np.float64)
    K = np.asarray(K, np.float64)
    cam = np.matmul(X, E[:, :, :3].transpose(0, 2, 1)) + E[:, None, :, 3]  # [C, N, 3]
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = np.where(z > 1e-9, z, np.nan)
        p = np.matmul(cam, K[:, :2].transpose(0, 2, 1))
        uv = p / zs[..., None]
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


def _corners(shape: tuple[int, ...], uv: np.ndarray) -> tuple[np.ndarray, ...]:
    """Clamped bilinear corners of float pixels: (u0, u1, v0, v1, fu, fv, u, v)."""
    h, w = shape
    uv = np.asarray(uv, np.float64)
    u = np.clip(uv[:, 0], 0, w - 1)
    v = np.clip(uv[:, 1], 0, h - 1)
    u0 = np.clip(
        u.astype(np.int64), 0, max(w - 2, 0)
    )  # u >= 0: truncation is floor (clip: NaN stays in range)
    v0 = np.clip(v.astype(np.int64), 0, max(h - 2, 0))
    u1 = np.minimum(u0 + 1, w - 1)
    v1 = np.minimum(v0 + 1, h - 1)
    return u0, u1, v0, v1, u - u0, v - v0, u, v


def sample_depth(
    depth: np.ndarray, uv: np.ndarray, *, max_rel_jump: float = 0.05, cam: np.ndarray | None = None
) -> np.ndarray:
    """Depth at float pixels [N, 2], bilinear between the four nearest centres.

    Returns 0 (invalid) where any of the four is invalid or where they differ
    by more than ``max_rel_jump`` of their median: interpolating across a depth
    discontinuity would put the point in empty space between two surfaces.  In
    that case the nearest valid pixel's depth is used if it agrees with the
    closest neighbour.  With ``cam`` [N] (camera index per pixel), ``depth`` is
    a stack [C, H, W]: one call samples every camera.
    """
    if cam is None:
        depth = depth[None]
        cam = np.zeros(len(uv), np.int64)
    u0, u1, v0, v1, fu, fv, u, v = _corners(depth.shape[1:], uv)
    d = np.stack(
        [depth[cam, v0, u0], depth[cam, v0, u1], depth[cam, v1, u0], depth[cam, v1, u1]], axis=1
    ).astype(np.float64)
    wts = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], axis=1)
    dmax, dmin = d.max(axis=1), d.min(axis=1)
    valid = dmin > 0
    med = (d.sum(axis=1) - dmax - dmin) / 2  # the median of four
    smooth = (dmax - dmin) <= max_rel_jump * np.maximum(med, 1e-6)
    out = np.where(valid & smooth, (d * wts).sum(axis=1), 0.0)
    # discontinuity: fall back to the nearest pixel centre (keeps the point on one surface)
    bad = ~(valid & smooth)
    if bad.any():
        h, w = depth.shape[1:]
        nu = np.clip(np.rint(u[bad]).astype(np.int64), 0, w - 1)
        nv = np.clip(np.rint(v[bad]).astype(np.int64), 0, h - 1)
        out[bad] = depth[cam[bad], nv, nu]
    return out


def bilinear(image: np.ndarray, uv: np.ndarray, *, cam: np.ndarray | None = None) -> np.ndarray:
    """Sample ``image`` [H, W] or [H, W, C] at float pixel centres ``uv`` [N, 2] (clamped at the border).

    With ``cam`` [N], ``image`` is a stack [C, H, W] sampled at image ``cam[i]``.
    """
    if cam is not None:
        u0, u1, v0, v1, fu, fv, _, _ = _corners(image.shape[1:3], uv)
        img = image
        a, b, c, d = img[cam, v0, u0], img[cam, v0, u1], img[cam, v1, u0], img[cam, v1, u1]
    else:
        u0, u1, v0, v1, fu, fv, _, _ = _corners(image.shape[:2], uv)
        if image.ndim == 3:
            fu = fu[:, None]
            fv = fv[:, None]
        a, b, c, d = image[v0, u0], image[v0, u1], image[v1, u0], image[v1, u1]
    a, b, c, d = (np.asarray(x, np.float64) for x in (a, b, c, d))
    return a * (1 - fu) * (1 - fv) + b * fu * (1 - fv) + c * (1 - fu) * fv + d * fu * fv

"""Test helpers: a tiny analytic renderer of a textured cube moving rigidly above a textured floor."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from masktrack.io.scene import Scene, save_scene
from masktrack.track.instances import save_instance


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera [R|t] of an OpenCV camera (x right, y down, z forward) at ``eye`` looking at ``target``."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return np.concatenate([R, (-R @ eye)[:, None]], axis=1)


def rot(axis, angle: float) -> np.ndarray:
    a = np.asarray(axis, float)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _texture(seed: int, n: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 256, (n, n, 3)).astype(np.float32)
    t = cv2.GaussianBlur(t, (0, 0), 3.0, borderType=cv2.BORDER_REFLECT)
    return ((t - t.mean()) * 4 + 128).clip(0, 255)


def _sample(tex: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = tex.shape[0]
    return cv2.remap(
        tex,
        (a * n).astype(np.float32) % n,
        (b * n).astype(np.float32) % n,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_WRAP,
    )


def render_cube_scene(
    *, frames: int = 12, size: int = 112, cameras: int = 3, half: float = 0.15, seed: int = 0
):
    """Render RGB-D of a textured cube (pose M_t) over a floor; returns (Scene, masks [C,T,H,W], poses [T,4,4])."""
    H = W = size
    f = 1.1 * size
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]])
    centre = np.array([0.0, 0.0, 0.35])
    extrs = []
    for c in range(cameras):
        ang = 2 * np.pi * c / cameras + 0.3
        eye = centre + np.array([1.1 * np.cos(ang), 1.1 * np.sin(ang), 0.7])
        extrs.append(look_at(eye, centre))
    tex_cube, tex_floor = _texture(seed), _texture(seed + 1)
    poses = []
    for t in range(frames):
        M = np.eye(4)
        M[:3, :3] = rot([0.3, 0.2, 1.0], 0.035 * t)
        M[:3, 3] = centre + np.array([0.012 * t, -0.008 * t, 0.004 * t])
        poses.append(M)
    poses = np.array(poses)
    rgbs = np.zeros((cameras, frames, H, W, 3), np.uint8)
    depths = np.zeros((cameras, frames, H, W), np.float32)
    masks = np.zeros((cameras, frames, H, W), bool)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays_cam = np.stack([(u - K[0, 2]) / f, (v - K[1, 2]) / f, np.ones_like(u)], axis=-1).reshape(-1, 3)
    for c, E in enumerate(extrs):
        R, tvec = E[:, :3], E[:, 3]
        o = -R.T @ tvec
        d = rays_cam @ R  # world directions with planar depth = ray parameter (camera z = 1 per unit)
        for t in range(frames):
            M = poses[t]
            Ro, to = M[:3, :3], M[:3, 3]
            ol = Ro.T @ (o - to)
            dl = d @ Ro
            with np.errstate(divide="ignore", invalid="ignore"):
                t1 = (-half - ol) / dl
                t2 = (half - ol) / dl
            tmin = np.nanmax(np.minimum(t1, t2), axis=1)
            tmax = np.nanmin(np.maximum(t1, t2), axis=1)
            hit = (tmax >= tmin) & (tmin > 0)
            tf = np.where(d[:, 2] < 0, -o[2] / d[:, 2], np.inf)  # floor z = 0
            use_cube = hit & (tmin < tf)
            s = np.where(use_cube, tmin, tf)
            p_loc = ol + dl * tmin[:, None]
            p_w = o + d * tf[:, None]
            axis = np.argmax(np.abs(p_loc) / half, axis=1)
            a = np.where(axis == 0, p_loc[:, 1], p_loc[:, 0])
            b = np.where(axis == 2, p_loc[:, 1], p_loc[:, 2])
            face = axis * 2 + (np.take_along_axis(p_loc, axis[:, None], 1)[:, 0] > 0)
            col_cube = _sample(
                tex_cube,
                ((a / (2 * half) + 0.5) * 0.25 + face * 0.37).reshape(H, W),
                ((b / (2 * half) + 0.5) * 0.25 + face * 0.21).reshape(H, W),
            )
            col_floor = _sample(tex_floor, (p_w[:, 0] * 0.5).reshape(H, W), (p_w[:, 1] * 0.5).reshape(H, W))
            uc = use_cube.reshape(H, W)
            img = np.where(uc[..., None], col_cube, col_floor)
            rgbs[c, t] = np.clip(img, 0, 255).astype(np.uint8)
            depths[c, t] = np.where(np.isfinite(s), s, 0).reshape(H, W)
            masks[c, t] = uc
    intrs = np.broadcast_to(K, (cameras, frames, 3, 3)).astype(np.float32).copy()
    ex = np.broadcast_to(np.array(extrs)[:, None], (cameras, frames, 3, 4)).astype(np.float32).copy()
    scene = Scene(rgbs, depths, intrs, ex, [f"cam{c}" for c in range(cameras)], fps=10.0)
    return scene, masks, poses


@pytest.fixture(scope="session")
def cube_scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A saved 3-camera cube scene with instance ``cube``; returns (scene path, poses [T,4,4])."""
    scene, masks, poses = render_cube_scene()
    path = save_scene(scene, tmp_path_factory.mktemp("cube") / "scene")
    save_instance(path, "cube", masks, id=1, color=(255, 0, 0))
    return path, poses

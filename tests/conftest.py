"""Shared fixtures. ``shared_data`` is ../shared/data beside the repo (skips when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKTRACK_SHARED", REPO.parent / "shared")) / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip cleanly on a user's machine."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED


@pytest.fixture(scope="session")
def rlbench_npz(shared_data: Path) -> Path:
    p = shared_data / "rlbench" / "reach_target_episode0.npz"
    if not p.exists():
        pytest.skip("rlbench episode not present")
    return p


@pytest.fixture(scope="session")
def davis_root(shared_data: Path) -> Path:
    p = shared_data / "davis2016"
    if not p.is_dir():
        pytest.skip("davis2016 not present")
    return p


def make_moving_square_video(folder: Path, *, frames: int = 12, size: tuple[int, int] = (96, 128), seed: int = 0) -> tuple[Path, np.ndarray]:
    """A textured square moving over a textured background; returns (folder, gt bool [T,H,W])."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    bg = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    tex = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    tex = cv2.resize(tex, (32, 32))
    tex[..., 0] = np.clip(tex[..., 0].astype(int) + 100, 0, 255)
    folder.mkdir(parents=True, exist_ok=True)
    gt = np.zeros((frames, h, w), bool)
    for t in range(frames):
        img = bg.copy()
        x0 = 10 + 4 * t
        y0 = 20 + 2 * t
        img[y0 : y0 + 32, x0 : x0 + 32] = tex
        gt[t, y0 : y0 + 32, x0 : x0 + 32] = True
        cv2.imwrite(str(folder / f"{t:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return folder, gt


@pytest.fixture()
def square_video(tmp_path: Path) -> tuple[Path, np.ndarray]:
    return make_moving_square_video(tmp_path / "frames")

"""Shared fixtures. ``shared_data`` is ../shared/data beside the repo (skips when absent); the deterministic
"oracle" test backend (tests/segment/masktrack_oracle.py) and its colour-square video."""

from __future__ import annotations

import importlib.util
import os
import sys
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


def make_moving_square_video(
    folder: Path, *, frames: int = 12, size: tuple[int, int] = (96, 128), seed: int = 0
) -> tuple[Path, np.ndarray]:
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


def load_oracle_module(name: str = "masktrack_oracle", folder: str = "segment"):
    """Import tests/segment/masktrack_oracle.py under its own name (pytest uses --import-mode=importlib)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).resolve().parent / folder / f"{name}.py"
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture()
def oracle_mod():
    return load_oracle_module()


@pytest.fixture(scope="session")
def mask_checks():
    """tests/mask_checks.py: mask comparisons that fail on all-empty masks (use them for every mask comparison)."""
    return load_oracle_module("mask_checks", ".")


@pytest.fixture()
def oracle(oracle_mod):
    """Register the oracle backend as "oracle" for one test; unregister after."""
    from masktrack.segment.registry import register_backend, unregister_backend

    oracle_mod.OracleBackend.instances.clear()
    register_backend("oracle", oracle_mod.OracleBackend)
    yield oracle_mod.OracleBackend
    unregister_backend("oracle")
    oracle_mod.OracleBackend.instances.clear()


@pytest.fixture()
def colour_video(tmp_path, oracle_mod) -> Path:
    return oracle_mod.make_colour_video(tmp_path / "frames")

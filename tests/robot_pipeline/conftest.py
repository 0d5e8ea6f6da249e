"""A small synthetic robot scene with its robot exported as URDF + joint states (shared by these tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from masktrack.synth import SynthConfig, SynthScene, generate

SMALL = SynthConfig.small(width=128, height=96, frames=8, cameras=2, points=20)


@pytest.fixture(scope="session")
def synth_robot(tmp_path_factory) -> SynthScene:
    return generate(SMALL, tmp_path_factory.mktemp("synth_robot"))


def iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path

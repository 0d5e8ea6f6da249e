"""A generated synthetic scene is reused only if every file it wrote still verifies (size + hash)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from masktrack.io.manifest import Status
from masktrack.synth import SynthConfig, generate

CFG = SynthConfig(width=96, height=72, frames=4, cameras=2)


def test_damaged_frame_regenerates_the_scene(tmp_path: Path) -> None:
    first = generate(CFG, tmp_path)
    assert first.status == Status.COMPUTED
    frame = tmp_path / "frames" / first.camera_ids[0] / "00002.png"
    before = cv2.imread(str(frame))
    assert before is not None and before.std() > 0  # a real, non-constant image
    assert generate(CFG, tmp_path).status == Status.REUSED
    frame.write_bytes(frame.read_bytes()[:100])  # truncated
    again = generate(CFG, tmp_path)
    assert again.status == Status.REPAIRED and not again.reused
    np.testing.assert_array_equal(cv2.imread(str(frame)), before)
    assert generate(CFG, tmp_path).status == Status.REUSED

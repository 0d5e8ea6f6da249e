"""The classic backend's output must not depend on what ran before it in the process.

GrabCut initialises its colour models with k-means on OpenCV's global
random-number generator; without a fixed seed per call, a session's masks
would depend on how many GrabCut calls earlier sessions made.
"""

from __future__ import annotations

import cv2
import numpy as np

from masktrack.io.video import open_video
from masktrack.segment.base import FramePrompt, SessionObject
from masktrack.segment.classic import ClassicBackend


def _run(video_dir) -> np.ndarray:
    video = open_video(video_dir)
    backend = ClassicBackend()
    obj = SessionObject("square", 1, (255, 0, 0))
    with backend.open_session(video, [obj]) as s:
        s.add_prompt(
            FramePrompt(
                0,
                "square",
                points=np.array([[26, 36], [40, 50], [12, 80]], np.float32),
                labels=np.array([1, 1, 0]),
            )
        )
        return np.stack([m["square"] for _, m in s.propagate(0)])


def test_classic_output_independent_of_rng_history(square_video, mask_checks):
    folder, _ = square_video
    cv2.setRNGSeed(1)
    a = _run(folder)
    cv2.setRNGSeed(12345)
    for _ in range(7):
        cv2.randu(np.zeros((5, 5), np.float32), 0, 1)  # an unrelated consumer of the same RNG
    b = _run(folder)
    mask_checks.assert_same_masks(a, b)

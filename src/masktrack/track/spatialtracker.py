"""``spatialtracker``: SpatialTrackerV2 (henry123-boy/SpaTrackerV2) per camera, with the scene's depth and cameras.

SpatialTrackerV2 is not a pip package: clone it and pass ``code=<clone>`` (it
is put on ``sys.path`` and ``models.SpaTrackV2.models.predictor.Predictor`` is
imported from it).  Weights come from ``Predictor.from_pretrained(weights)``
(a Hugging Face id such as ``Yuxihenry/SpatialTrackerV2-Offline`` or a local
folder).  Each camera's video is passed with its metric depth, intrinsics and
camera-to-world poses (``fixed_cam=True``: the scene's calibration is
trusted), queries as ``(t, x, y)`` pixels.  Of its outputs only the 2D tracks
and visibility are used and lifted with the scene's own depth and cameras
(:mod:`masktrack.track.monocular`), so masktrack's world frame is kept
whatever frame the model normalises to internally.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from masktrack.errors import BackendError
from masktrack.io.scene import Scene
from masktrack.plugins import options_from_signature
from masktrack.track.base import Tracker, Tracks
from masktrack.track.monocular import track_monocular


def camera_to_world(E: np.ndarray) -> np.ndarray:
    """[T, 3, 4] world-to-camera -> [T, 4, 4] camera-to-world."""
    E = np.asarray(E, np.float64)
    out = np.tile(np.eye(4), (len(E), 1, 1))
    R, t = E[:, :, :3], E[:, :, 3]
    out[:, :3, :3] = R.transpose(0, 2, 1)
    out[:, :3, 3] = -np.einsum("tji,tj->ti", R, t)
    return out


class SpatialTrackerV2Tracker(Tracker):
    name: ClassVar[str] = "spatialtracker"
    max_points_per_batch: ClassVar[int | None] = 1024

    def __init__(
        self,
        *,
        code: str | None = None,
        weights: str = "Yuxihenry/SpatialTrackerV2-Offline",
        device: str | None = "auto",
        iters: int = 4,
        track_num: int = 756,
        model: Callable[..., Any] | None = None,
    ) -> None:
        self.code, self.weights, self.device, self.iters, self.track_num = (
            code,
            weights,
            device,
            iters,
            track_num,
        )
        self._model = model

    def fingerprint(self) -> dict[str, Any]:
        return {
            "tracker": self.name,
            "weights": self.weights,
            "iters": self.iters,
            "track_num": self.track_num,
        }

    def model(self) -> Any:
        if self._model is None:
            try:
                import torch
            except ImportError:
                raise BackendError(
                    "the spatialtracker tracker needs torch (pip install 'masktrack[trackers]')",
                    field="tracker",
                ) from None
            if self.code and self.code not in sys.path:
                sys.path.insert(0, self.code)
            try:
                from models.SpaTrackV2.models.predictor import Predictor
            except ImportError as e:
                raise BackendError(
                    f"SpatialTrackerV2 code not found ({e}); clone henry123-boy/SpaTrackerV2 and pass -o code=PATH",
                    field="tracker",
                ) from None
            m = Predictor.from_pretrained(self.weights)
            m.spatrack.track_num = self.track_num
            dev = (
                self.device
                if self.device not in (None, "auto")
                else ("cuda" if torch.cuda.is_available() else "cpu")
            )
            self._model = m.to(dev).eval()
        return self._model

    def _runner(self, scene: Scene) -> Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        def run(c: int, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            import torch

            model = self.model()
            video = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float()
            depth = np.asarray(scene.depths[c], np.float32)
            with torch.no_grad():
                out = model.forward(
                    video,
                    depth=depth,
                    intrs=np.asarray(scene.intrs[c], np.float32),
                    extrs=camera_to_world(scene.extrs[c]).astype(np.float32),
                    queries=np.asarray(queries, np.float32),
                    fps=1,
                    full_point=False,
                    iters_track=self.iters,
                    query_no_BA=True,
                    fixed_cam=True,
                    stage=1,
                    unc_metric=depth > 0,
                    support_frame=len(frames) - 1,
                    replace_ratio=0.2,
                )
            track2d, vis = out[5], out[6]
            track2d = np.asarray(track2d.float().cpu() if hasattr(track2d, "cpu") else track2d)[..., :2]
            vis = np.asarray(vis.float().cpu() if hasattr(vis, "cpu") else vis)
            if vis.ndim == 3:
                vis = vis[..., 0]
            return track2d, vis > 0.5

        return run

    def track(self, scene: Scene, queries: np.ndarray, *, instance: Any = None) -> Tracks:
        out = track_monocular(scene, queries, self._runner(scene), provenance=self.fingerprint())
        t = np.clip(np.rint(out.queries[:, 0]).astype(int), 0, scene.num_frames - 1)
        before = np.arange(scene.num_frames)[:, None] < t[None]
        out.tracks[before] = np.nan
        out.visibility[before] = False
        return out


# The typed options (masktrack.plugins): the constructor's keyword arguments, strict types and bounds.
SpatialTrackerV2Tracker.Options = options_from_signature(
    SpatialTrackerV2Tracker.__init__, "SpatialTrackerV2Options", iters=Field(ge=1), track_num=Field(ge=1)
)

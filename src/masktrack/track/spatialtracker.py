"""``spatialtracker``: SpatialTrackerV2 (henry123-boy/SpaTrackerV2) per camera, with the scene's depth and cameras.

SpatialTrackerV2 is not a pip package: clone it and pass ``code=<clone>`` (it
is put on ``sys.path`` and ``models.SpaTrackV2.models.predictor.Predictor`` is
imported from it).  Weights come from ``Predictor.from_pretrained(weights)``
(a Hugging Face id such as ``Yuxihenry/SpatialTrackerV2-Offline`` or a local
folder); ``pretrained=false`` instead builds the model with random weights
from the clone's own offline configuration (``config/magic_infer_offline.yaml``,
its ``model`` section), for tests and benchmarks of the plumbing.  Each camera's video is passed with its metric depth, intrinsics and
camera-to-world poses (``fixed_cam=True``: the scene's calibration is
trusted), queries as ``(t, x, y)`` pixels.  Of its outputs only the 2D tracks
and visibility are used and lifted with the scene's own depth and cameras
(:mod:`masktrack.track.monocular`), so masktrack's world frame is kept
whatever frame the model normalises to internally.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
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
        pretrained: bool = True,
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
        self.pretrained = pretrained
        self._model = model

    def fingerprint(self) -> dict[str, Any]:
        return {
            "tracker": self.name,
            "weights": self.weights if self.pretrained else "random",
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
            _torchvision_compat()
            try:
                from models.SpaTrackV2.models.predictor import Predictor
            except ImportError as e:
                name = getattr(e, "name", None) or ""
                if isinstance(e, ModuleNotFoundError) and (name == "models" or name.startswith("models.")):
                    raise BackendError(
                        f"SpatialTrackerV2 code not found ({e}); clone henry123-boy/SpaTrackerV2 and pass "
                        "-o code=PATH",
                        field="tracker",
                    ) from None
                raise BackendError(
                    f"SpatialTrackerV2 code at {self.code or 'sys.path'} failed to import: {e}", field="code"
                ) from None
            m = Predictor.from_pretrained(self.weights) if self.pretrained else self._random_model(Predictor)
            m.spatrack.track_num = self.track_num
            dev = (
                self.device
                if self.device not in (None, "auto")
                else ("cuda" if torch.cuda.is_available() else "cpu")
            )
            m.to(dev)  # SpatialTrackerV2's Predictor.to moves its parts and returns None
            m.eval()
            self._model = m
        return self._model

    def _random_model(self, predictor: Any) -> Any:
        """The offline model with random weights, configured by the clone's own inference config."""
        import yaml

        cfg_path = Path(self.code or ".") / "config" / "magic_infer_offline.yaml"
        try:
            cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))["model"]
        except (OSError, KeyError, TypeError, yaml.YAMLError) as e:
            raise BackendError(
                f"{cfg_path}: cannot read the model configuration for pretrained=false ({e})", field="code"
            ) from None
        return predictor(args=cfg)

    def _runner(self, scene: Scene) -> Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        def run(c: int, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            import torch

            model = self.model()
            n = len(queries)
            if n == 1:  # its query filter squeezes a single query's score to a scalar and fails
                queries = np.concatenate([queries, queries])
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
                    # full_point=False replaces each query whose depth confidence is low (no depth,
                    # a depth edge) by a random other query: the outputs would no longer be in
                    # query order.  True keeps every query where it was asked.
                    full_point=True,
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
            return track2d[:, :n], vis[:, :n] > 0.5

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


def _torchvision_compat() -> None:
    """Let SpatialTrackerV2 import on a torchvision without ``torchvision.io.write_video``.

    Its ``TrackRefiner`` imports the video writer at module level, for debug
    videos that inference never writes; newer torchvision releases dropped
    the writer (the GPU machine's torchvision has none), and the import then
    fails before any model code runs.  The missing name gets a stand-in that
    says so if it is ever called; a torchvision that has it is left alone.
    """
    try:
        import torchvision.io as tio
    except Exception:  # absent or broken: SpatialTrackerV2's own import then says what is wrong
        return
    if hasattr(tio, "write_video"):
        return

    def write_video(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            "torchvision.io.write_video is not in this torchvision (SpatialTrackerV2 debug video)"
        )

    tio.write_video = write_video

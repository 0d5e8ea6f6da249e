"""``cotracker``: CoTracker3 (facebookresearch/co-tracker) per camera, lifted to 3D with depth.

The model is loaded with ``torch.hub.load(repo, entry)`` - ``repo`` is
``facebookresearch/co-tracker`` (GitHub, needs network once) or a local clone
with ``source="local"``; ``checkpoint`` loads your own weights into the
predictor's model; ``pretrained=False`` builds it with random weights (for
testing the plumbing).  Its predictor is called as
``model(video [1, T, 3, H, W] float 0..255, queries=[1, n, 3] (t, x, y))`` and
returns ``(tracks [1, T, n, 2], visibility [1, T, n])``.  Each query is
tracked in the camera that sees it best (see :mod:`masktrack.track.monocular`).
torch is imported only when the tracker runs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from masktrack.io.scene import Scene
from masktrack.track.base import Tracks
from masktrack.track.hub import HubTracker, resolve_device
from masktrack.track.monocular import track_monocular


class CoTracker3Tracker(HubTracker):
    name: ClassVar[str] = "cotracker"
    label: ClassVar[str] = "CoTracker3"
    default_repo: ClassVar[str] = "facebookresearch/co-tracker"
    default_entry: ClassVar[str] = "cotracker3_offline"
    max_points_per_batch: ClassVar[int | None] = 2048

    def prepare(self, model: Any) -> Any:
        return model.to(resolve_device(self.device)).eval()

    def run_2d(self, camera: int, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One camera's video [T, H, W, 3] uint8 and queries [n, 3] (t, u, v) -> (tracks [T, n, 2], visible [T, n])."""
        import torch

        model = self.model()
        dev = next(
            iter(getattr(model, "parameters", lambda: iter([torch.empty(0)]))()), torch.empty(0)
        ).device
        video = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2)[None].float().to(dev)
        qs = torch.from_numpy(np.asarray(queries, np.float32))[None].to(dev)
        with torch.no_grad():
            tracks, vis = model(video, queries=qs)
        tracks = tracks[0].float().cpu().numpy()
        vis = vis[0].cpu().numpy()
        if vis.dtype != bool:
            vis = vis > 0.5
        return tracks, vis

    def track(self, scene: Scene, queries: np.ndarray, *, instance: Any = None) -> Tracks:
        out = track_monocular(scene, queries, self.run_2d, provenance=self.fingerprint())
        t = np.clip(np.rint(out.queries[:, 0]).astype(int), 0, scene.num_frames - 1)
        before = (
            np.arange(scene.num_frames)[:, None] < t[None]
        )  # the offline model also tracks backwards: drop it
        out.tracks[before] = np.nan
        out.visibility[before] = False
        return out

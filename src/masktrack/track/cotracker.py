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

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from masktrack.errors import BackendError
from masktrack.io.scene import Scene
from masktrack.track.base import Tracker, Tracks
from masktrack.track.monocular import track_monocular


def _device(device: str | None) -> str:
    import torch

    if device and device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_state(path: str) -> dict:
    """A checkpoint's model state dict (``state_dict``/``model`` wrappers and a ``model.`` prefix removed)."""
    import torch

    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    elif isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    return {(k[6:] if k.startswith("model.") else k): v for k, v in sd.items()}


class CoTracker3Tracker(Tracker):
    name: ClassVar[str] = "cotracker"
    max_points_per_batch: ClassVar[int | None] = 2048

    def __init__(self, *, repo: str = "facebookresearch/co-tracker", source: str = "github", entry: str = "cotracker3_offline",
                 checkpoint: str | None = None, pretrained: bool = True, device: str | None = "auto",
                 model: Callable[..., Any] | None = None) -> None:
        self.repo, self.source, self.entry = repo, source, entry
        self.checkpoint, self.pretrained, self.device = checkpoint, pretrained, device
        self._model = model

    def fingerprint(self) -> dict[str, Any]:
        return {"tracker": self.name, "repo": self.repo, "entry": self.entry, "checkpoint": self.checkpoint,
                "pretrained": self.pretrained and self.checkpoint is None}

    def model(self) -> Callable[..., Any]:
        if self._model is None:
            try:
                import torch
            except ImportError:
                raise BackendError("the cotracker tracker needs torch (pip install 'masktrack[trackers]')", field="tracker") from None
            try:
                m = torch.hub.load(self.repo, self.entry, source=self.source, pretrained=self.pretrained and self.checkpoint is None, trust_repo=True)
            except Exception as e:  # hub errors are many kinds (network, missing entry, bad repo)
                raise BackendError(f"cannot load CoTracker3 from {self.repo!r} ({e.__class__.__name__}: {e})", field="tracker") from None
            if self.checkpoint:
                getattr(m, "model", m).load_state_dict(load_state(self.checkpoint))
            self._model = m.to(_device(self.device)).eval()
        return self._model

    def run_2d(self, camera: int, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One camera's video [T, H, W, 3] uint8 and queries [n, 3] (t, u, v) -> (tracks [T, n, 2], visible [T, n])."""
        import torch

        model = self.model()
        dev = next(iter(getattr(model, "parameters", lambda: iter([torch.empty(0)]))()), torch.empty(0)).device
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
        before = np.arange(scene.num_frames)[:, None] < t[None]  # the offline model also tracks backwards: drop it
        out.tracks[before] = np.nan
        out.visibility[before] = False
        return out

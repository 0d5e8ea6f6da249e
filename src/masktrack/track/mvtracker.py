"""``mvtracker``: MVTracker (ethz-vlg/mvtracker), multi-view 3D point tracking from posed RGB-D.

Loaded with ``torch.hub.load(repo, entry, pretrained=..., device=...)``:
``repo`` is ``ethz-vlg/mvtracker`` (GitHub) or a local clone with
``source="local"``; ``checkpoint`` loads your weights into the predictor's
``model``.  The predictor takes the whole scene at once::

    model(rgbs=[1, V, T, 3, H, W] float 0..1, depths=[1, V, T, 1, H, W] metres,
          intrs=[1, V, T, 3, 3], extrs=[1, V, T, 3, 4] world-to-camera,
          query_points_3d=[1, N, 4] (t, x, y, z))
    -> {"traj_e": [T, N, 3] (or [1, T, N, 3]) world, "vis_e": [T, N] (or [1, T, N])}

which is exactly masktrack's scene and query convention, so no lifting is
needed.  Frames before a query's ``t`` are set to NaN.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from masktrack.errors import BackendError
from masktrack.io.scene import Scene
from masktrack.track.base import Tracks
from masktrack.track.hub import HubTracker, resolve_device


class MVTrackerTracker(HubTracker):
    name: ClassVar[str] = "mvtracker"
    label: ClassVar[str] = "MVTracker"
    default_repo: ClassVar[str] = "ethz-vlg/mvtracker"
    default_entry: ClassVar[str] = "mvtracker"
    strict_checkpoint: ClassVar[bool] = False
    max_points_per_batch: ClassVar[int | None] = 1024

    def hub_kwargs(self) -> dict[str, Any]:
        return {"device": self._dev()}

    def _dev(self) -> str:
        return resolve_device(self.device)

    def track(self, scene: Scene, queries: np.ndarray, *, instance: Any = None) -> Tracks:
        import torch

        model = self.model()
        dev = (
            self._dev()
            if self._model is None or not hasattr(model, "parameters")
            else next(model.parameters()).device
        )
        q = np.asarray(queries, np.float32).reshape(-1, 4)
        rgbs = torch.from_numpy(np.array(scene.rgbs)).permute(0, 1, 4, 2, 3)[None].float().div(255.0).to(dev)
        depths = torch.from_numpy(np.asarray(scene.depths, np.float32))[None, :, :, None].to(dev)
        intrs = torch.from_numpy(np.asarray(scene.intrs, np.float32))[None].to(dev)
        extrs = torch.from_numpy(np.asarray(scene.extrs, np.float32))[None].to(dev)
        with torch.no_grad():
            res = model(
                rgbs=rgbs,
                depths=depths,
                intrs=intrs,
                extrs=extrs,
                query_points_3d=torch.from_numpy(q)[None].to(dev),
            )
        traj = res["traj_e"].float().cpu().numpy()
        vis = res["vis_e"].float().cpu().numpy()
        if traj.ndim == 4:
            traj, vis = traj[0], vis[0]
        T = scene.num_frames
        if traj.shape != (T, len(q), 3) or vis.shape != (T, len(q)):
            raise BackendError(
                f"MVTracker returned traj_e {traj.shape}, vis_e {vis.shape}; expected ({T}, {len(q)}, 3) and ({T}, {len(q)})",
                field="tracker",
            )
        t = np.clip(np.rint(q[:, 0]).astype(int), 0, T - 1)
        before = np.arange(T)[:, None] < t[None]
        traj[before] = np.nan
        visible = (vis > 0.5) & ~before
        return Tracks(traj.astype(np.float32), visible, q, provenance=self.fingerprint())

"""The tracker interface and the Tracks currency.

Queries are ``float32 [N, 4]`` rows ``(t, x, y, z)``: the frame the point was
sampled from and its world position in metres.  A tracker returns
:class:`Tracks`: ``tracks float32 [T, N, 3]`` world positions and
``visibility bool [T, N]``; frames before a query's ``t`` are NaN and not
visible.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from masktrack.errors import SceneError
from masktrack.io.atomic import atomic_path
from masktrack.io.scene import Scene
from masktrack.plugins import PluginOptions


@dataclass
class Tracks:
    """3D tracks of one instance's query points."""

    tracks: np.ndarray  # float32 [T, N, 3] world metres
    visibility: np.ndarray  # bool [T, N]
    queries: np.ndarray  # float32 [N, 4] (t, x, y, z)
    instance: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.tracks.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.tracks.shape[1])

    def save(self, path: str | Path) -> None:
        """Pickle-free npz (provenance as a JSON string), written atomically."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    tracks=self.tracks.astype(np.float32),
                    visibility=self.visibility.astype(bool),
                    queries=self.queries.astype(np.float32),
                    instance=np.array(self.instance),
                    provenance=np.array(json.dumps(self.provenance, sort_keys=True, default=str)),
                )

    @classmethod
    def load(cls, path: str | Path) -> Tracks:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(
                    tracks=z["tracks"],
                    visibility=z["visibility"],
                    queries=z["queries"],
                    instance=str(z["instance"]),
                    provenance=json.loads(str(z["provenance"])),
                )
        except (OSError, ValueError, KeyError) as e:
            raise SceneError(f"unreadable tracks file ({e})", path=path) from None

    @staticmethod
    def concat(parts: list[Tracks]) -> Tracks:
        """Merge tracks of query batches (same frames) into one."""
        return Tracks(
            tracks=np.concatenate([p.tracks for p in parts], axis=1),
            visibility=np.concatenate([p.visibility for p in parts], axis=1),
            queries=np.concatenate([p.queries for p in parts], axis=0),
            instance=parts[0].instance if parts else "",
            provenance=parts[0].provenance if parts else {},
        )


class Tracker(ABC):
    """Tracks world-space query points through a multi-view scene."""

    name: ClassVar[str]
    #: the typed tracker options (``-o key=value``, batch ``track.options``), validated by the registry
    Options: ClassVar[type[PluginOptions] | None] = None
    #: queries per call when the caller does not say (``None`` = all at once)
    max_points_per_batch: ClassVar[int | None] = None

    @abstractmethod
    def track(self, scene: Scene, queries: np.ndarray, *, instance: Any = None) -> Tracks:
        """Track ``queries`` [N, 4] (t, x, y, z) through ``scene``.

        ``instance`` (a :class:`masktrack.track.instances.Instance`) is optional
        side information: trackers may use its masks, none may require them.
        """

    def fingerprint(self) -> dict[str, Any]:
        return {"tracker": self.name}


def track_batched(
    tracker: Tracker,
    scene: Scene,
    queries: np.ndarray,
    *,
    max_points: int | None = None,
    instance: Any = None,
) -> Tracks:
    """Track ``queries`` in batches of at most ``max_points`` and merge the results (query order kept)."""
    q = np.asarray(queries, np.float32).reshape(-1, 4)
    size = max_points or tracker.max_points_per_batch or len(q)
    if len(q) <= size:
        return tracker.track(scene, q, instance=instance)
    parts = [tracker.track(scene, q[i : i + size], instance=instance) for i in range(0, len(q), size)]
    out = Tracks.concat(parts)
    out.provenance = {**out.provenance, "batches": len(parts), "max_points_per_batch": int(size)}
    return out


def empty_tracks(num_frames: int, queries: np.ndarray) -> Tracks:
    """NaN tracks, nothing visible: the starting point of every tracker's output."""
    n = len(queries)
    return Tracks(
        np.full((num_frames, n, 3), np.nan, np.float32),
        np.zeros((num_frames, n), bool),
        np.asarray(queries, np.float32).reshape(-1, 4),
    )

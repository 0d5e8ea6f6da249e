"""Trackers by name, imported lazily (a model library is imported only when its tracker is used).

The same :class:`masktrack.plugins.Registry` as backends: built-ins below, third-party trackers
through the ``masktrack.trackers`` entry-point group, :func:`register_tracker`, or a module named in
``MASKTRACK_PLUGINS``.  A tracker's ``Options`` model is validated by :func:`get_tracker`.
"""

from __future__ import annotations

from typing import Any

from masktrack.plugins import Registry
from masktrack.track.base import Tracker

# name -> (module, class, one-line description)
TRACKERS: dict[str, tuple[str, str, str]] = {
    "flow": (
        "masktrack.track.flow",
        "FlowTracker",
        "weight-free CPU default: multi-view Lucas-Kanade + depth, fused, locally rigid",
    ),
    "mvtracker": (
        "masktrack.track.mvtracker",
        "MVTrackerTracker",
        "MVTracker (multi-view, torch.hub; needs torch and a checkpoint)",
    ),
    "spatialtracker": (
        "masktrack.track.spatialtracker",
        "SpatialTrackerV2Tracker",
        "SpatialTrackerV2 per camera, lifted with depth (needs its code + weights)",
    ),
    "cotracker": (
        "masktrack.track.cotracker",
        "CoTracker3Tracker",
        "CoTracker3 per camera, lifted with depth (torch.hub; needs torch)",
    ),
}

REGISTRY: Registry[Tracker] = Registry(
    "tracker",
    "masktrack.trackers",
    {name: f"{module}:{cls}" for name, (module, cls, _) in TRACKERS.items()},
    field="tracker",
)


def register_tracker(name: str, tracker: type[Tracker] | str, description: str = "") -> None:
    """Register a tracker class (or ``"module:Class"``) under ``name``."""
    REGISTRY.register(name, tracker)
    if description:
        _DESCRIPTIONS[name] = description


_DESCRIPTIONS: dict[str, str] = {}


def available_trackers() -> dict[str, str]:
    names = REGISTRY.names()
    return {n: TRACKERS[n][2] if n in TRACKERS else _DESCRIPTIONS.get(n, "plug-in") for n in names}


def get_tracker(name: str, **options: Any) -> Tracker:
    """Instantiate tracker ``name`` with its options (BackendError if unknown, not importable, bad options)."""
    return REGISTRY.create(name, options)

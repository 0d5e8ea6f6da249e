"""Trackers by name, imported lazily (a model library is imported only when its tracker is used)."""

from __future__ import annotations

import importlib
from typing import Any

from masktrack.errors import BackendError
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


def available_trackers() -> dict[str, str]:
    return {k: v[2] for k, v in TRACKERS.items()}


def get_tracker(name: str, **options: Any) -> Tracker:
    """Instantiate tracker ``name`` with its options (BackendError if unknown or not importable)."""
    if name not in TRACKERS:
        raise BackendError(f"unknown tracker {name!r} (trackers: {', '.join(TRACKERS)})", field="tracker")
    module, cls, _ = TRACKERS[name]
    try:
        klass = getattr(importlib.import_module(module), cls)
    except ImportError as e:
        raise BackendError(f"tracker {name!r} cannot be imported ({e})", field="tracker") from None
    try:
        return klass(**options)
    except TypeError as e:
        raise BackendError(f"bad options for tracker {name!r}: {e}", field="tracker_options") from None

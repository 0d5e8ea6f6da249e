"""masktrack: object masks and per-object 3D point tracks from robot-manipulation recordings.

Data flows one way: video -> sessions -> masks -> composition -> queries -> tracks -> recordings.
Nothing here imports a model library; backends are loaded lazily by name.

The public API, imported on first use (PEP 562) so that ``import masktrack`` stays light::

    cfg = masktrack.load_config("job.yaml")            # PipelineConfig (sessions, compose outputs)
    masktrack.run_segment(cfg)                         # -> [SessionReport], the mask store
    masktrack.run_compose(cfg)                         # -> ComposeReport, PNG folders
    scene = masktrack.load_scene("scene/")             # multi-view RGB-D scene + instances
    masktrack.run_tracking("scene/", "tracks/")        # -> TrackingReport, per-instance 3D tracks

Prompt files: :class:`PromptFile` / :class:`ObjectPrompts` / :class:`Keyframe`, read with
:func:`load_prompts`.  Every stage raises :class:`MasktrackError` subclasses naming file and field.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from masktrack.errors import MasktrackError

__version__ = "0.1.0"

# public name -> module that defines it (imported on first attribute access)
_LAZY: dict[str, str] = {
    "run_segment": "masktrack.segment.pipeline",
    "run_compose": "masktrack.masks.export",
    "load_composed": "masktrack.masks.export",
    "load_scene": "masktrack.io.scene",
    "Scene": "masktrack.io.scene",
    "run_tracking": "masktrack.track.pipeline",
    "QueryOptions": "masktrack.track.queries",
    "Tracks": "masktrack.track.base",
    "load_config": "masktrack.config",
    "PipelineConfig": "masktrack.config",
    "SessionConfig": "masktrack.config",
    "ComposeOutput": "masktrack.config",
    "load_prompts": "masktrack.prompts.model",
    "PromptFile": "masktrack.prompts.model",
    "ObjectPrompts": "masktrack.prompts.model",
    "Keyframe": "masktrack.prompts.model",
    "Status": "masktrack.io.manifest",
}

__all__ = [
    "ComposeOutput",
    "Keyframe",
    "MasktrackError",
    "ObjectPrompts",
    "PipelineConfig",
    "PromptFile",
    "QueryOptions",
    "Scene",
    "SessionConfig",
    "Status",
    "Tracks",
    "__version__",
    "load_composed",
    "load_config",
    "load_prompts",
    "load_scene",
    "run_compose",
    "run_segment",
    "run_tracking",
]
assert set(__all__) == {"MasktrackError", "__version__", *_LAZY}

if TYPE_CHECKING:  # for type checkers and IDEs; at runtime __getattr__ imports on demand
    from masktrack.config import ComposeOutput, PipelineConfig, SessionConfig, load_config
    from masktrack.io.manifest import Status
    from masktrack.io.scene import Scene, load_scene
    from masktrack.masks.export import load_composed, run_compose
    from masktrack.prompts.model import Keyframe, ObjectPrompts, PromptFile, load_prompts
    from masktrack.segment.pipeline import run_segment
    from masktrack.track.base import Tracks
    from masktrack.track.pipeline import run_tracking
    from masktrack.track.queries import QueryOptions


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'masktrack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

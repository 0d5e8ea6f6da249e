"""Rerun recordings of a tracking output folder: the step callers (CLI, batch, demo) choose to run.

Tracking (``masktrack.track``) writes tracks and never imports a viewer; whoever wants
recordings calls :func:`record_tracking` afterwards.  ``rerun-sdk`` is imported only here, lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from masktrack.errors import BackendError
from masktrack.io.instances import load_instance
from masktrack.io.scene import load_scene


def record_tracking(
    scene_path: str | Path,
    out_dir: str | Path,
    names: Sequence[str],
    *,
    force: bool = False,
    shown: Sequence[str] | None = None,
) -> Path:
    """Write ``out_dir/rerun/`` for the tracked instances ``names``; returns the merged recording."""
    return Path(recording_report(scene_path, out_dir, names, force=force, shown=shown).combined)


def recording_report(
    scene_path: str | Path,
    out_dir: str | Path,
    names: Sequence[str],
    *,
    force: bool = False,
    shown: Sequence[str] | None = None,
) -> Any:
    """:func:`record_tracking` returning the writer's report (paths and whether it was reused).

    ``shown`` are the instances whose masks the recording shows (default ``names``); an untracked
    one (the demo's composed ``arm_only``) is shown as masks only.
    """
    try:
        from masktrack.viz.rerun import write_recordings
    except ImportError as e:
        raise BackendError(f"Rerun recordings are not available ({e})", field="rerun") from None
    from masktrack.track.base import Tracks

    scene_path, out_dir = Path(scene_path), Path(out_dir)
    scene = load_scene(scene_path)
    tracks = {n: Tracks.load(out_dir / n / "tracks.npz") for n in names}
    instances = {n: load_instance(scene_path, n) for n in (names if shown is None else shown)}
    return write_recordings(scene, tracks, out_dir, instances=instances, force=force)

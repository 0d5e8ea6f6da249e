"""Checks of a batch job that hold for every unit, made once when the job is loaded.

A mistake that affects every unit (a backend whose package is not installed, a checkpoint that does
not exist) would otherwise surface unit by unit at run time, after hours of queueing.  These checks
never import a model library or load weights.  (Unknown backend names, the schema and the
compositions are checked by :func:`masktrack.batch.job.check_pipeline`, which calls this.)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from masktrack.errors import Problem

#: option names that hold a file path the backend will open
PATH_OPTIONS = ("checkpoint", "ckpt", "weights")


def preflight_sessions(
    sessions: list[Any], *, base: Path | None = None, known: Iterable[str] | None = None
) -> list[Problem]:
    """Every job-wide problem of the pipeline's sessions, each located as ``pipeline.sessions[i:name]...``.

    Relative paths are tried against the working folder and ``base`` (the job file's folder).
    Backends not in ``known`` are skipped (reported elsewhere as unknown).
    """
    from masktrack.segment.registry import available_backends, missing_requirements

    known_set = set(known) if known is not None else set(available_backends())
    probs: list[Problem] = []
    for i, s in enumerate(sessions):
        if not isinstance(s, dict):
            continue
        loc = f"pipeline.sessions[{i}:{s.get('name', '?')}]"
        name = s.get("backend", "bilateral")  # SessionConfig's default
        if name not in known_set:
            continue
        missing, how = missing_requirements(name)
        if missing:
            probs.append(
                Problem(f"{loc}.backend", f"{name!r} needs {', '.join(missing)} (not installed): {how}")
            )
        for key, value in (s.get("options") or {}).items():
            if key in PATH_OPTIONS and isinstance(value, str):
                p = Path(value).expanduser()
                tries = [p] if p.is_absolute() else [Path.cwd() / p, *([base / p] if base else [])]
                if not any(c.exists() for c in tries):
                    probs.append(Problem(f"{loc}.options.{key}", f"{value}: file not found"))
    return probs

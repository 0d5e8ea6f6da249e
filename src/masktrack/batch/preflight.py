"""Checks of a batch job that hold for every unit, made once before any unit is dispatched.

A mistake that affects every unit (an unknown backend, a backend whose package is not installed, a
checkpoint that does not exist) would otherwise surface unit by unit at run time, after hours of
queueing.  These checks never import a model library or load weights.
"""

from __future__ import annotations

from pathlib import Path

from masktrack.errors import Problem

#: option names that hold a file path the backend will open
PATH_OPTIONS = ("checkpoint", "ckpt", "weights")


def preflight(job, *, base: Path | None = None) -> list[Problem]:
    """Every job-wide problem of ``job.pipeline``'s sessions, each located as ``pipeline.sessions[i:name]...``."""
    from masktrack.errors import BackendError
    from masktrack.segment.registry import backend_class, missing_requirements

    base = base or (Path(job.source).parent if job.source else Path.cwd())
    probs: list[Problem] = []
    sessions = job.pipeline.get("sessions") or []
    for i, s in enumerate(sessions):
        if not isinstance(s, dict):
            continue
        loc = f"pipeline.sessions[{i}:{s.get('name', '?')}]"
        name = s.get("backend", "classic")
        try:
            backend_class(name)
        except BackendError as e:
            if "cannot be imported" not in e.message:
                probs.append(Problem(f"{loc}.backend", e.message))
                continue
        missing, how = missing_requirements(name)
        if missing:
            probs.append(
                Problem(f"{loc}.backend", f"{name!r} needs {', '.join(missing)} (not installed): {how}")
            )
        for key, value in (s.get("options") or {}).items():
            if key in PATH_OPTIONS and isinstance(value, str):
                p = Path(value).expanduser()
                if not any(c.exists() for c in ([p] if p.is_absolute() else [Path.cwd() / p, base / p])):
                    probs.append(Problem(f"{loc}.options.{key}", f"{value}: file not found"))
    return probs

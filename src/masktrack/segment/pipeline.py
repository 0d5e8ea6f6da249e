"""Run a pipeline config's sessions: validate everything, then segment session by session.

All user errors (config, prompts, video, unknown backend or bad options) are
raised before the first byte is written.  Backends are instantiated once per
(name, options) and shared by the sessions that use them - so a backend may
cache per-frame features across sessions - while each session gets a fresh
``Session`` that is closed before the next one opens.  Backends are closed at
the end, also on errors.
"""

from __future__ import annotations

from masktrack.config import PipelineConfig, SessionConfig
from masktrack.errors import ConfigError, Problem
from masktrack.io import lock
from masktrack.io.atomic import canonical_json
from masktrack.io.progress import Progress, ProgressEvent, as_progress
from masktrack.io.video import open_video
from masktrack.segment.base import Backend
from masktrack.segment.runner import (
    ProgressFn,
    ResolvedSession,
    SessionReport,
    check_backend,
    load_session_prompts,
    resolve_session,
    run_resolved,
)


def select_sessions(cfg: PipelineConfig, only: list[str] | None) -> list[SessionConfig]:
    """The sessions to run, in config order (``only`` names must exist)."""
    if not only:
        return list(cfg.sessions)
    names = [s.name for s in cfg.sessions]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ConfigError(
            f"no session named {', '.join(map(repr, unknown))} (sessions: {', '.join(names)})",
            path=cfg.source,
            field="--only",
        )
    return [s for s in cfg.sessions if s.name in only]


def _load_backends(cfg: PipelineConfig, resolved: list[ResolvedSession]) -> dict[str, Backend]:
    from masktrack.errors import BackendError
    from masktrack.segment.registry import load_backend

    cache: dict[str, Backend] = {}
    try:
        for rs in resolved:
            s = rs.config
            k = canonical_json([s.backend, s.options])
            if k not in cache:
                try:
                    cache[k] = load_backend(s.backend, **s.options)
                except BackendError as e:
                    where = f"sessions[{rs.index}:{s.name}]"
                    if e.problems:  # typed options: one line per bad option, located in the config
                        raise BackendError(
                            e.message,
                            path=cfg.source,
                            problems=[Problem(f"{where}.{p.location}", p.message) for p in e.problems],
                        ) from None
                    raise BackendError(
                        e.message,
                        path=cfg.source,
                        field=f"{where}.{e.field or 'backend'}",
                    ) from None
    except BaseException:
        for b in cache.values():
            b.close()
        raise
    return cache


def run_segment(
    cfg: PipelineConfig,
    *,
    only: list[str] | None = None,
    force: bool = False,
    progress: Progress | bool | None = None,
) -> list[SessionReport]:
    """Run (or reuse) the config's sessions; returns one report per selected session, in config order.

    ``only`` restricts to the named sessions; ``force`` recomputes even
    sessions whose stored masks match.  ``progress`` is called with each
    session's frame count as it advances (``masktrack.cli.progress`` draws it).
    """
    sessions = select_sessions(cfg, only)
    on_event = as_progress(progress)
    with open_video(cfg.video) as video:
        # validate everything before writing anything
        prompt_cache: dict[object, object] = {}
        resolved = []
        for s in sessions:
            p = cfg.prompts_for(s)
            if p not in prompt_cache:
                prompt_cache[p] = load_session_prompts(cfg, s, video)
            rs = resolve_session(cfg, s, video, index=cfg.sessions.index(s), prompt_file=prompt_cache[p])  # type: ignore[arg-type]
            check_backend(cfg, rs)
            resolved.append(rs)
        backends = _load_backends(cfg, resolved)
        reports: list[SessionReport] = []
        try:
            lock.acquire(cfg.output, "segment")  # one writer per output folder (after all checks)
            for rs in resolved:
                backend = backends[canonical_json([rs.config.backend, rs.config.options])]
                cb: ProgressFn | None = None
                if on_event is not None:
                    on_event(ProgressEvent(rs.name, 0, None))

                    def cb(done: int, total: int, _name: str = rs.name, _fn: Progress = on_event) -> None:
                        _fn(ProgressEvent(_name, done, total))

                report = run_resolved(cfg, rs, backend=backend, video=video, force=force, progress=cb)
                if on_event is not None and report.status == "reused":
                    on_event(ProgressEvent(rs.name, report.frames, report.frames, "reused"))
                reports.append(report)
        finally:
            lock.release(cfg.output)
            for b in backends.values():
                b.close()
    return reports

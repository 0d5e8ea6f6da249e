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


def raise_all(errors: list) -> None:
    """One error for all: a single one as it is (its own type, file and field), several as one
    :class:`ConfigError` with one line per problem, each naming its own file and field."""
    if len(errors) == 1:
        raise errors[0]
    problems: list[Problem] = []
    for e in errors:
        where = f"{e.path}: " if e.path is not None else ""
        if e.problems:
            head = f"{where}{e.field}: " if e.field else where
            problems.extend(Problem(f"{head}{p.location}".rstrip(": "), p.message) for p in e.problems)
        else:
            problems.append(Problem(f"{where}{e.field or ''}".rstrip(": "), e.message))
    if problems:
        raise ConfigError(f"{len(problems)} problem(s)", problems=problems)


def validate_sessions(
    cfg: PipelineConfig, sessions: list[SessionConfig], video, *, errors: list | None = None
) -> list[ResolvedSession]:
    """Resolve every session before anything is written, reporting every session's problems at once
    (a config with three mistakes needs one run, not three).  With ``errors``, problems are appended
    there instead of raised."""
    from masktrack.errors import MasktrackError
    from masktrack.segment.registry import backend_class

    collect = errors is not None
    errors = errors if errors is not None else []

    def note(e: MasktrackError) -> None:
        errors.append(e)

    prompt_cache: dict[object, object] = {}
    failed_prompts: set[object] = set()
    resolved = []
    for s in sessions:
        index = cfg.sessions.index(s)
        p = cfg.prompts_for(s)
        if p not in prompt_cache and p not in failed_prompts:
            try:
                prompt_cache[p] = load_session_prompts(cfg, s, video)
            except MasktrackError as e:
                failed_prompts.add(p)
                note(e)
        if p in failed_prompts:  # the session cannot be resolved; its backend can still be checked
            try:
                backend_class(s.backend)
            except MasktrackError as e:
                note(type(e)(e.message, path=cfg.source, field=f"sessions[{index}:{s.name}].backend"))
            continue
        try:
            rs = resolve_session(cfg, s, video, index=index, prompt_file=prompt_cache[p])  # type: ignore[arg-type]
            check_backend(cfg, rs)
        except MasktrackError as e:
            note(e)
            continue
        resolved.append(rs)
    if errors and not collect:
        raise_all(errors)
    return resolved


def _load_backends(
    cfg: PipelineConfig, resolved: list[ResolvedSession], *, errors: list | None = None
) -> dict[str, Backend]:
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
                        err = BackendError(
                            e.message,
                            path=cfg.source,
                            problems=[Problem(f"{where}.{p.location}", p.message) for p in e.problems],
                        )
                    else:
                        err = BackendError(
                            e.message, path=cfg.source, field=f"{where}.{e.field or 'backend'}"
                        )
                    if errors is None:
                        raise err from None
                    errors.append(err)
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
        if any(s.kinematics for s in sessions):  # robot objects: prompts rendered from joint states
            from masktrack.segment.kinematic import expand_kinematics

            cfg = expand_kinematics(cfg, video, only=[s.name for s in sessions])
            sessions = select_sessions(cfg, only)
        errors: list = []
        resolved = validate_sessions(cfg, sessions, video, errors=errors)
        backends = _load_backends(cfg, resolved, errors=errors)
        if errors:
            for b in backends.values():
                b.close()
            raise_all(errors)
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

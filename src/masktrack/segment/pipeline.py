"""Run a pipeline config's sessions: validate everything, then segment session by session.

All user errors (config, prompts, video, unknown backend or bad options) are
raised before the first byte is written.  Backends are instantiated once per
(name, options) and shared by the sessions that use them - so a backend may
cache per-frame features across sessions - while each session gets a fresh
``Session`` that is closed before the next one opens.  Backends are closed at
the end, also on errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from masktrack.config import PipelineConfig, SessionConfig
from masktrack.errors import ConfigError
from masktrack.io.atomic import canonical_json
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
                    raise BackendError(
                        e.message,
                        path=cfg.source,
                        field=f"sessions[{rs.index}:{s.name}].{e.field or 'backend'}",
                    ) from None
    except BaseException:
        for b in cache.values():
            b.close()
        raise
    return cache


@contextmanager
def _progress_bars(enabled: bool, console) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = console or Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bars:
        yield bars


def run_segment(
    cfg: PipelineConfig,
    *,
    only: list[str] | None = None,
    force: bool = False,
    progress: bool = True,
    console=None,
) -> list[SessionReport]:
    """Run (or reuse) the config's sessions; returns one report per selected session, in config order.

    ``only`` restricts to the named sessions; ``force`` recomputes even
    sessions whose stored masks match.  ``progress`` draws one rich progress
    bar per session on ``console`` (default: stderr).
    """
    sessions = select_sessions(cfg, only)
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
            with _progress_bars(progress, console) as bars:
                for rs in resolved:
                    backend = backends[canonical_json([rs.config.backend, rs.config.options])]
                    cb: ProgressFn | None = None
                    task = None
                    if bars is not None:
                        task = bars.add_task(rs.name, total=None)

                        def cb(done: int, total: int, _task=task) -> None:
                            bars.update(_task, completed=done, total=total)

                    report = run_resolved(cfg, rs, backend=backend, video=video, force=force, progress=cb)
                    if bars is not None and report.status == "reused":
                        bars.update(
                            task,
                            description=f"{rs.name} (reused)",
                            total=report.frames,
                            completed=report.frames,
                        )
                    reports.append(report)
        finally:
            for b in backends.values():
                b.close()
    return reports


def summary_table(reports: list[SessionReport]):
    """A rich Table: session, objects, frames, seconds, status, empty frames (and dropped detections)."""
    from rich.table import Table

    table = Table(title="masktrack segment")
    for col, just in (
        ("session", "left"),
        ("objects", "left"),
        ("frames", "right"),
        ("seconds", "right"),
        ("status", "left"),
        ("empty frames", "left"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    show_dropped = any(r.dropped_detections for r in reports)
    if show_dropped:
        table.add_column("dropped detections", justify="right")
    for r in reports:
        empty = ", ".join(f"{n}: {c}" for n, c in r.empty_frames.items())
        row = [r.session, ", ".join(r.objects), str(r.frames), f"{r.seconds:.1f}", r.status, empty]
        if show_dropped:
            row.append(str(r.dropped_detections))
        table.add_row(*row)
    return table

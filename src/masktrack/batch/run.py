"""The batch driver: expand, skip what is done, dispatch, record, report.

State lives in ``<out>/batch/``::

    units/<unit id>.json   the last result of each unit (written atomically as it finishes)
    logs/<unit id>.log     everything the unit printed
    batch_report.json      the summary of this run (also at <out>/batch_report.json)

Camera units run first; then, with a ``track`` stage, one tracking unit per
scene whose camera units all finished (a scene with a skipped or failed
camera is reported as skipped).  A unit whose last result is ``done`` for
the same key (job template, prompt file hash, video stamp, stages; for a
scene unit, the tracking settings and its cameras' keys) is not dispatched
again; a ``failed`` one is retried only with ``retry_failed``; a ``skipped``
one (bad or missing prompts) is retried as soon as its prompt file changes,
since that changes its key.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from masktrack.batch.engines import Task, detect_gpus, ray_cluster, run_local, run_ray
from masktrack.batch.job import JobConfig, SceneUnit, Unit, expand_scene_units, expand_units
from masktrack.batch.unit import UnitResult, attempts_in_log, scene_unit_key, unit_key
from masktrack.io.atomic import atomic_write_json
from masktrack.io.lock import output_lock
from masktrack.io.manifest import Status

Engine = Literal["local", "ray"]


@dataclass
class BatchReport:
    """The outcome of one batch run."""

    units: list[UnitResult] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = "local"
    workers: int = 1

    def count(self, status: str) -> int:
        return sum(1 for u in self.units if u.status == status)

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "counts": {
                str(s): self.count(s) for s in (Status.COMPUTED, Status.REUSED, Status.SKIPPED, Status.FAILED)
            },
            "retried": {u.id: u.retries for u in self.units if u.retries},
            "units": [u.to_json() for u in self.units],
        }


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def _safe(uid: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "__", uid)


def _load_previous(path: Path) -> UnitResult | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("status") == "done":  # the batch state's word before the shared Status
            data["status"] = Status.COMPUTED
        return UnitResult(**{**data, "status": Status(data["status"])})
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None


def _carry(out: Path, uid: str, key: str, retry_failed: bool) -> UnitResult | None:
    """The earlier result of a unit with the same key, if it stands (done, skipped, or failed without --retry-failed)."""
    prev = _load_previous(out / "batch" / "units" / f"{_safe(uid)}.json")
    if prev is None or prev.key != key:
        return None
    if prev.status == Status.FAILED and retry_failed:
        return None
    status = Status.REUSED if prev.status in (Status.COMPUTED, Status.REPAIRED) else prev.status
    return UnitResult(
        id=uid,
        status=status,
        reason=prev.reason or ("" if status == Status.REUSED else "previous run"),
        stages=prev.stages,
        key=key,
        log=prev.log,
    )


def _task(job: JobConfig, out: Path, unit: Unit | SceneUnit, key: str) -> Task:
    log = out / "batch" / "logs" / f"{_safe(unit.id)}.log"
    base = str(job.source.parent if job.source else Path.cwd())
    track = job.track.model_dump(mode="json") if job.track is not None else None
    return Task(
        unit=unit,
        pipeline=job.pipeline,
        stages=list(job.stages),
        log_path=str(log),
        base=base,
        key=key,
        track=track,
    )


def plan(
    job: JobConfig, out: Path, units: list[Unit], *, retry_failed: bool
) -> tuple[list[Task], list[UnitResult]]:
    """Split camera units into tasks to run and results carried over from earlier runs."""
    tasks, carried = [], []
    for u in units:
        key = unit_key(u, job.pipeline, list(job.stages))
        prev = _carry(out, u.id, key, retry_failed)
        if prev is not None:
            carried.append(prev)
        else:
            tasks.append(_task(job, out, u, key))
    return tasks, carried


def plan_scenes(
    job: JobConfig,
    out: Path,
    scene_units: list[SceneUnit],
    camera_results: dict[str, UnitResult],
    *,
    retry_failed: bool,
) -> tuple[list[Task], list[UnitResult]]:
    """Scene units whose camera units are all done; the others are skipped with the reason (not recorded)."""
    tasks, carried = [], []
    track = job.track.model_dump(mode="json") if job.track is not None else {}
    for su in scene_units:
        cams = [camera_results[c] for c in su.camera_units]
        not_done = [c.id for c in cams if c.status not in (Status.COMPUTED, Status.REUSED, Status.REPAIRED)]
        if not_done:
            carried.append(
                UnitResult(
                    id=su.id, status=Status.SKIPPED, reason=f"camera unit(s) not done: {', '.join(not_done)}"
                )
            )
            continue
        key = scene_unit_key(su, track, [c.key for c in cams])
        prev = _carry(out, su.id, key, retry_failed)
        if prev is not None:
            carried.append(prev)
        else:
            tasks.append(_task(job, out, su, key))
    return tasks, carried


def run_batch(
    job: JobConfig,
    out: str | Path,
    *,
    scenes: str | list[str] | None = None,
    engine: Engine = "local",
    workers: int | None = None,
    gpus: list[str] | None = None,
    ray_address: str | None = None,
    ray_init: dict[str, Any] | None = None,
    num_gpus: float | None = None,
    retry_failed: bool = False,
    on_result: Callable[[UnitResult, int, int], None] | None = None,
) -> BatchReport:
    """Run a job over every unit (camera units, then per-scene tracking units); resumable, never stopped by one bad unit."""
    out = Path(out).resolve()
    t0 = time.perf_counter()
    units = expand_units(job, out, scenes)
    scene_units = expand_scene_units(job, out, units)
    total = len(units) + len(scene_units)
    report = BatchReport(engine=engine)
    gpu_list = gpus if gpus is not None else (detect_gpus() if workers is None and engine == "local" else [])
    report.workers = (len(gpu_list) or (workers or 1)) if engine == "local" else 0

    def add(r: UnitResult, record: bool) -> None:
        if record:
            atomic_write_json(out / "batch" / "units" / f"{_safe(r.id)}.json", r.to_json())
        report.units.append(r)
        if on_result:
            on_result(r, len(report.units), total)

    def dispatch(tasks: list[Task]) -> Iterator[UnitResult]:
        keys = {t.unit.id: t.key for t in tasks}
        # each attempt of a unit starts a header in its log: what was appended during this run names the retries
        offsets = {t.unit.id: _size(t.log_path) for t in tasks}
        if engine == "local":
            results = run_local(tasks, workers=workers, gpus=gpu_list or None)
        else:
            results = run_ray(tasks, num_gpus=num_gpus if num_gpus is not None else 0.0)
        for r in results:
            r.key = keys.get(r.id, "")
            if r.log:
                r.retries = attempts_in_log(r.log, offsets.get(r.id, 0), r.id)[:-1]
            yield r

    cluster = ray_cluster(ray_address, ray_init) if engine == "ray" else contextlib.nullcontext()
    with output_lock(out / "batch", "batch"), cluster:  # one driver per batch state folder
        tasks, carried = plan(job, out, units, retry_failed=retry_failed)
        for r in carried:
            add(r, record=False)
        for r in dispatch(tasks):
            add(r, record=True)
        if scene_units:
            by_id = {r.id: r for r in report.units}
            tasks, carried = plan_scenes(job, out, scene_units, by_id, retry_failed=retry_failed)
            for r in carried:
                add(r, record=False)
            for r in dispatch(tasks):
                add(r, record=True)

    order = {u.id: i for i, u in enumerate([*units, *scene_units])}  # type: ignore[attr-defined]
    report.units.sort(key=lambda r: order.get(r.id, 0))
    report.seconds = time.perf_counter() - t0
    data = report.to_json()
    atomic_write_json(out / "batch" / "batch_report.json", data)
    atomic_write_json(out / "batch_report.json", data)
    return report

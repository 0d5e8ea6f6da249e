"""The batch driver: expand, skip what is done, dispatch, record, report.

State lives in ``<out>/batch/``::

    units/<unit id>.json   the last result of each unit (written atomically as it finishes)
    logs/<unit id>.log     everything the unit printed
    batch_report.json      the summary of this run (also at <out>/batch_report.json)

A unit whose last result is ``done`` for the same key (job template, prompt
file hash, video stamp, stages) is not dispatched again; a ``failed`` one is
retried only with ``retry_failed``; a ``skipped`` one (bad or missing
prompts) is retried as soon as its prompt file changes, since that changes
its key.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from masktrack.batch.engines import Task, detect_gpus, run_local, run_ray
from masktrack.batch.job import JobConfig, Unit, expand_units
from masktrack.batch.unit import UnitResult, unit_key
from masktrack.io.atomic import atomic_write_json

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
            "counts": {s: self.count(s) for s in ("done", "reused", "skipped", "failed")},
            "units": [u.to_json() for u in self.units],
        }


def _safe(uid: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "__", uid)


def _load_previous(path: Path) -> UnitResult | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return UnitResult(**data)
    except (FileNotFoundError, ValueError, TypeError):
        return None


def plan(job: JobConfig, out: Path, units: list[Unit], *, retry_failed: bool) -> tuple[list[Task], list[UnitResult]]:
    """Split units into tasks to run and results carried over from earlier runs."""
    state = out / "batch"
    tasks, carried = [], []
    for u in units:
        key = unit_key(u, job.pipeline, list(job.stages))
        prev = _load_previous(state / "units" / f"{_safe(u.id)}.json")
        if prev is not None and prev.key == key and (prev.status in ("done", "skipped") or (prev.status == "failed" and not retry_failed)):
            status = "reused" if prev.status == "done" else prev.status
            carried.append(UnitResult(id=u.id, status=status, reason=prev.reason or ("previous run" if status != "reused" else ""), seconds=0.0, stages=prev.stages, key=key, log=prev.log))
            continue
        log = state / "logs" / f"{_safe(u.id)}.log"
        base = str(job.source.parent if job.source else Path.cwd())
        tasks.append(Task(unit=u, pipeline=job.pipeline, stages=list(job.stages), log_path=str(log), base=base, key=key))
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
    """Run a job over every unit; resumable, never stopped by one bad unit."""
    out = Path(out).resolve()
    t0 = time.perf_counter()
    units = expand_units(job, out, scenes)
    tasks, carried = plan(job, out, units, retry_failed=retry_failed)
    keys = {t.unit.id: t.key for t in tasks}
    report = BatchReport(engine=engine)
    total = len(units)
    for r in carried:
        report.units.append(r)
        if on_result:
            on_result(r, len(report.units), total)

    results: Iterator[UnitResult]
    if engine == "local":
        gpu_list = gpus if gpus is not None else (detect_gpus() if workers is None else [])
        report.workers = len(gpu_list) or (workers or 1)
        results = run_local(tasks, workers=workers, gpus=gpu_list or None)
    else:
        report.workers = 0
        results = run_ray(tasks, address=ray_address, num_gpus=num_gpus if num_gpus is not None else 0.0, init_kwargs=ray_init)

    state = out / "batch"
    for r in results:
        r.key = keys.get(r.id, "")
        atomic_write_json(state / "units" / f"{_safe(r.id)}.json", r.to_json())
        report.units.append(r)
        if on_result:
            on_result(r, len(report.units), total)

    order = {u.id: i for i, u in enumerate(units)}
    report.units.sort(key=lambda r: order.get(r.id, 0))
    report.seconds = time.perf_counter() - t0
    data = report.to_json()
    atomic_write_json(state / "batch_report.json", data)
    atomic_write_json(out / "batch_report.json", data)
    return report

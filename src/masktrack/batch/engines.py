"""Execution engines: a local process pool and a Ray cluster.

Both take the units still to run and yield :class:`UnitResult` as units
finish, so the driver records each result the moment it exists (a SIGKILL
of the driver loses at most the units in flight).

* ``local``: one worker process per GPU, pinned with ``CUDA_VISIBLE_DEVICES``,
  or N CPU workers.  Workers die with the driver (``PR_SET_PDEATHSIG``), so a
  killed batch leaves no orphan writing into the output folder.
* ``ray``: ``ray.init(address=...)``; one Ray task per unit requesting
  ``num_gpus``; Ray retries a task whose worker died (``max_retries``).
  Outputs go to the shared output path the job names.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from masktrack.batch.job import SceneUnit, Unit
from masktrack.batch.unit import UnitResult, run_unit
from masktrack.errors import ConfigError
from masktrack.io.manifest import Status


@dataclass(frozen=True)
class Task:
    """What a worker needs to run one unit (plain, picklable data)."""

    unit: Unit | SceneUnit
    pipeline: dict[str, Any]
    stages: list[str]
    log_path: str
    base: str
    key: str = ""
    track: dict[str, Any] | None = None

    def run(self) -> UnitResult:
        return run_unit(self.unit, self.pipeline, self.stages, self.log_path, self.base, self.track)


def _die_with_parent(parent: int) -> None:
    """Make this worker die with the driver, however the driver dies.

    ``PR_SET_PDEATHSIG`` (Linux) has the kernel SIGKILL us when the driver
    exits; it only covers a parent alive when it is set, so the parent's pid
    is checked right after (a driver killed while this worker started up).
    A watcher thread polling the parent covers platforms without prctl.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the watcher below does it
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="masktrack-parent-watch", daemon=True).start()


def _init_worker(gpu_queue: Any, parent: int | None = None) -> None:
    _die_with_parent(parent if parent is not None else os.getppid())
    # the driver handles SIGINT (Ctrl+C reaches the whole process group) by terminating us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())


def _run_task(task: Task) -> UnitResult:
    return task.run()


def detect_gpus() -> list[str]:
    """GPU indices visible to this process (CUDA_VISIBLE_DEVICES, else nvidia-smi), without importing torch."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip() and g.strip() != "-1"]
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def run_local(
    tasks: Sequence[Task], *, workers: int | None = None, gpus: Sequence[str] | None = None
) -> Iterator[UnitResult]:
    """Run tasks on a local process pool; yields results as they finish."""
    if not tasks:
        return
    gpu_list = list(gpus) if gpus is not None else []
    n = len(gpu_list) if gpu_list else (workers or 1)
    n = max(1, min(n, len(tasks)))
    ctx = mp.get_context("spawn")
    queue = None
    if gpu_list:
        queue = ctx.Queue()
        for g in gpu_list[:n]:
            queue.put(g)
    pool = ProcessPoolExecutor(
        max_workers=n, mp_context=ctx, initializer=_init_worker, initargs=(queue, os.getpid())
    )
    finished = False
    try:
        with _terminate_on_signals(pool):
            pending = {pool.submit(_run_task, t): t for t in tasks}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = pending.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as e:
                        result = UnitResult(
                            id=task.unit.id,
                            status=Status.FAILED,
                            reason=f"worker crashed: {type(e).__name__}: {e}",
                            log=task.log_path,
                        )
                    yield result
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:  # interrupted (signal, error, generator closed): no worker may go on writing
            _kill_workers(pool)
            pool.shutdown(wait=False, cancel_futures=True)


_live_pools: list[ProcessPoolExecutor] = []


@contextlib.contextmanager
def _terminate_on_signals(pool: ProcessPoolExecutor) -> Iterator[None]:
    """While ``pool`` runs, SIGTERM/SIGINT to the driver kill its workers first, then stop the driver.

    The handler kills the workers itself (not an unwinding ``finally``), so
    they are gone even if the signal lands while the driver is recording a
    result.  SIGINT then raises KeyboardInterrupt (exit 130), SIGTERM exits 143.
    """
    _live_pools.append(pool)
    if threading.current_thread() is not threading.main_thread():
        try:
            yield
        finally:
            _live_pools.remove(pool)
        return

    def handler(signum: int, _frame: Any) -> None:
        for p in list(_live_pools):
            _kill_workers(p)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        _live_pools.remove(pool)
        for s, h in old.items():
            signal.signal(s, h)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(5)


@contextlib.contextmanager
def ray_cluster(address: str | None = None, init_kwargs: dict[str, Any] | None = None) -> Iterator[None]:
    """Connect to (or start) Ray for the duration of a batch; shut down only what we started."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray engine needs Ray: pip install 'masktrack[ray]'", field="--engine"
        ) from None
    started_here = False
    if not ray.is_initialized():
        kwargs = dict(init_kwargs or {})
        if address:
            kwargs["address"] = address
        kwargs.setdefault("log_to_driver", False)
        kwargs.setdefault("include_dashboard", False)
        ray.init(**kwargs)
        started_here = True
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


def run_ray(
    tasks: Sequence[Task], *, num_gpus: float = 0.0, num_cpus: float = 1.0, max_retries: int = 3
) -> Iterator[UnitResult]:
    """Run tasks as Ray tasks (inside :func:`ray_cluster`); yields results as they finish."""
    if not tasks:
        return
    import ray

    remote = ray.remote(num_gpus=num_gpus, num_cpus=num_cpus, max_retries=max_retries)(_run_task)
    refs = {remote.remote(t): t for t in tasks}
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        for ref in done:
            task = refs.pop(ref)
            try:
                yield ray.get(ref)
            except Exception as e:
                yield UnitResult(
                    id=task.unit.id,
                    status=Status.FAILED,
                    reason=f"ray task failed: {type(e).__name__}: {e}",
                    log=task.log_path,
                )

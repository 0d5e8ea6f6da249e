"""Batch workers never outlive the driver: SIGKILL at random moments, SIGTERM, and one GPU per worker."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from masktrack.batch.engines import run_local


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            pids.append(int(d.name))
    return pids


def _wait_gone(pgid: int, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = _group_members(pgid)
        if not alive:
            return []
        time.sleep(0.05)
    return _group_members(pgid)


def _files_after(folder: Path, t: float) -> list[str]:
    if not folder.exists():
        return []
    return [str(p) for p in folder.rglob("*") if p.is_file() and p.stat().st_mtime > t]


def _slow_job(job_file: Path, delay: float) -> Path:
    job = yaml.safe_load(job_file.read_text())
    job["pipeline"]["sessions"][0].update(backend="slow_classic", options={"delay": delay})
    job_file.write_text(yaml.safe_dump(job))
    return job_file


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.slow
def test_sigkill_of_the_driver_at_20_random_moments_leaves_no_worker_and_no_late_write(
    tmp_path, job_file, slow_env
):
    job = _slow_job(job_file, 0.05)
    rng = random.Random(18)
    # moments spread over the driver's start-up, the workers' start-up and their units
    moments = sorted(rng.uniform(0.0, 3.0) for _ in range(20))
    killed_with_workers = 0
    for trial, moment in enumerate(moments):
        out = tmp_path / f"out{trial}"
        cmd = [sys.executable, "-m", "masktrack", "batch", str(job), "--out", str(out), "--workers", "2"]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            time.sleep(moment)
            members = _group_members(proc.pid)
            killed_with_workers += len(members) > 2  # driver + resource tracker + worker(s)
            os.kill(proc.pid, signal.SIGKILL)  # the driver only: its workers must follow by themselves
            t_kill = time.time()
            proc.wait(10)
            alive = _wait_gone(proc.pid, 2.0)
            assert not alive, f"trial {trial} (kill at {moment:.2f}s): processes {alive} outlived the driver"
            late = _files_after(out, t_kill + 0.5)
            assert not late, f"trial {trial} (kill at {moment:.2f}s): written after the kill: {late[:5]}"
        finally:
            for pid in _group_members(proc.pid):
                os.kill(pid, signal.SIGKILL)
    assert killed_with_workers >= 5, "too few kills landed while workers were running"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_terminate_the_workers(tmp_path, job_file, slow_env, sig, code):
    job = _slow_job(job_file, 0.2)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "masktrack", "batch", str(job), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(_group_members(proc.pid)) < 4 and time.monotonic() < deadline:  # driver, tracker, 2 workers
            time.sleep(0.05)
        assert len(_group_members(proc.pid)) >= 4, "the workers never started"
        time.sleep(0.5)
        os.kill(proc.pid, sig)
        rc = proc.wait(10)
        t_end = time.time()
        assert rc == code, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert "Traceback" not in (proc.stderr.read().decode() if proc.stderr else "")
        assert not _wait_gone(proc.pid, 2.0)
        assert not _files_after(out, t_end + 0.5)
    finally:
        for pid in _group_members(proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_gpu_workers_get_distinct_cuda_visible_devices(monkeypatch):
    """--gpus 0,1 on a CPU box: each worker is pinned to one GPU index, and both are used."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from masktrack_reliability_tasks import WhereTask

    tasks = [
        WhereTask(unit=SimpleNamespace(id=f"u{i}"), pipeline={}, stages=[], log_path="", base="")
        for i in range(6)
    ]
    results = list(run_local(tasks, gpus=["0", "1"]))
    assert sorted(r.id for r in results) == [f"u{i}" for i in range(6)]
    assert all(r.status == "computed" for r in results), [r.reason for r in results]
    by_pid: dict[str, set[str]] = {}
    for r in results:
        pid, gpu = r.worker.split(":")
        by_pid.setdefault(pid, set()).add(gpu)
    assert len(by_pid) == 2, by_pid  # two workers, one per GPU
    assert all(len(g) == 1 for g in by_pid.values()), by_pid  # a worker keeps its GPU
    assert sorted(g for gs in by_pid.values() for g in gs) == ["0", "1"]

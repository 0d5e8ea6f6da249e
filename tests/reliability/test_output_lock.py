"""One writer per output folder: a second writer fails at once (exit 2, folder and PID named); stale locks never block."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from masktrack.config import load_config
from masktrack.io import lock
from masktrack.io.lock import FolderLockedError, output_lock
from masktrack.masks.store import MaskStore
from masktrack.segment.pipeline import run_segment

from .conftest import run_cli

HOLD = "import sys, time; from masktrack.io.lock import acquire; acquire(sys.argv[1], 'test'); print('held', flush=True); time.sleep(60)"


def _holder(folder: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_second_writer_fails_naming_folder_and_pid_and_stale_lock_never_blocks(tmp_path):
    folder = tmp_path / "out"
    p = _holder(folder)
    try:
        with pytest.raises(FolderLockedError) as e:
            lock.acquire(folder)
        (line,) = e.value.lines()
        assert str(folder) in line and f"pid {p.pid}" in line and e.value.exit_code == 2
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    # the holder was killed: its lock file remains, but the lock died with it
    assert (folder / lock.LOCK_NAME).exists()
    with output_lock(folder):
        with output_lock(folder):  # re-entrant within one process
            assert lock.held_by_me(folder)
        assert lock.held_by_me(folder)
    assert not lock.held_by_me(folder)


def _config(tmp_path: Path, name: str, video: Path, prompts: Path, out: Path, backend: str = "slow_classic"):
    cfg = {
        "video": str(video),
        "output": str(out),
        "prompts": str(prompts),
        "sessions": [{"name": "arm", "backend": backend, "objects": ["arm"]}],
    }
    if backend == "slow_classic":
        cfg["sessions"][0]["options"] = {"delay": 0.3}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _files(folder: Path) -> dict[Path, int]:
    """Files (but the lock file) with their mtimes."""
    if not folder.exists():
        return {}
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != lock.LOCK_NAME}


def _masks(out: Path) -> list[bytes]:
    store = MaskStore(out).session("arm")
    m = store.require_manifest()
    assert m.complete
    return [np.packbits(store.read_stack(f, m)).tobytes() for f in range(m.num_frames)]


@pytest.mark.slow
def test_two_segment_runs_on_one_output_20_trials_never_a_wrong_frame(tmp_path, synth_dataset, slow_env):
    cam0, cam1 = sorted((synth_dataset / "pick_cube/train/scene_0").glob("cam*"))
    video = cam0 / "color"
    prompts = {"a": cam0 / "prompts.json", "b": cam1 / "prompts.json"}  # two different prompt files
    refs, prompts_hash = {}, {}
    for k, pr in prompts.items():
        ref_cfg = _config(tmp_path, f"ref_{k}", video, pr, tmp_path / f"ref_{k}", backend="classic")
        run_segment(load_config(ref_cfg), progress=False)
        refs[k] = _masks(tmp_path / f"ref_{k}")
        prompts_hash[k] = MaskStore(tmp_path / f"ref_{k}").session("arm").require_manifest().prompts_hash
        assert any(np.frombuffer(f, np.uint8).any() for f in refs[k])  # non-trivial masks
    assert refs["a"] != refs["b"]
    out = tmp_path / "shared_out"
    cfgs = {k: _config(tmp_path, k, video, pr, out) for k, pr in prompts.items()}
    rng = random.Random(2)
    outcomes = {"second refused": 0, "both ran": 0}
    for trial in range(20):
        first, second = ("a", "b") if trial % 2 == 0 else ("b", "a")
        cmd = [sys.executable, "-m", "masktrack", "segment", "--no-progress"]
        p1 = subprocess.Popen(
            [*cmd, str(cfgs[first])], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        # the second run starts at a random moment after the first one holds the folder's lock (its pid in
        # the lock file), so that the runs overlap however loaded the machine is
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p1.poll() is None:
            with contextlib.suppress(OSError):
                if (out / lock.LOCK_NAME).read_text().startswith(f"{p1.pid} "):
                    break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.0))
        p2 = subprocess.Popen(
            [*cmd, str(cfgs[second])], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        (_, err1), (_, err2) = p1.communicate(timeout=120), p2.communicate(timeout=120)
        codes = (p1.returncode, p2.returncode)
        assert "Traceback" not in err1 + err2, err1 + err2
        assert p1.returncode == 0, err1  # the first run took the lock
        assert p2.returncode in (0, 2), err2
        if p2.returncode == 2:
            lines = err2.strip().splitlines()
            assert len(lines) == 1 and str(out) in lines[0] and f"pid {p1.pid}" in lines[0], err2
            outcomes["second refused"] += 1
            ran = {first}
        else:
            outcomes["both ran"] += 1  # one after the other: either may have taken the lock last
            ran = {first, second}
        # the session the store calls complete is one that ran, and every frame is that run's
        stored = MaskStore(out).session("arm").require_manifest()
        which = [k for k in ran if stored.prompts_hash == prompts_hash[k]]
        assert which, f"trial {trial}: codes {codes}: the stored session is from a run that did not finish"
        assert _masks(out) == refs[which[0]], (
            f"trial {trial}: codes {codes}: a wrong frame in {which[0]!r}'s session"
        )
    assert outcomes["second refused"] >= 3, outcomes  # the runs did overlap


def test_segment_on_a_locked_folder_exits_2_and_writes_nothing(tmp_path, synth_dataset):
    cam0 = sorted((synth_dataset / "pick_cube/train/scene_0").glob("cam*"))[0]
    out = tmp_path / "out"
    cfg = _config(tmp_path, "c", cam0 / "color", cam0 / "prompts.json", out, backend="classic")
    p = _holder(out)
    try:
        code, _, err = run_cli("segment", "--no-progress", str(cfg))
    finally:
        p.kill()
        p.wait()
    assert code == 2 and err.count("\n") == 1 and f"pid {p.pid}" in err and str(out) in err
    assert sorted(x.name for x in out.iterdir()) == [lock.LOCK_NAME]
    code, _, err = run_cli("segment", "--no-progress", str(cfg))  # the holder is gone: no stale block
    assert code == 0, err
    assert json.loads((out / "sessions/arm/manifest.json").read_text())["complete"]


def test_annotate_save_on_a_locked_folder_is_423(tmp_path, synth_dataset):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from masktrack.annotate.app import create_app

    cam0 = sorted((synth_dataset / "pick_cube/train/scene_0").glob("cam*"))[0]
    prompts = tmp_path / "p" / "prompts.json"
    app = create_app(cam0 / "color", prompts)
    doc = {"revision": "absent", "prompts": {"objects": [{"name": "arm", "id": 1, "keyframes": []}]}}
    p = _holder(prompts.parent)
    try:
        with TestClient(app, base_url="http://127.0.0.1", headers={"Origin": "http://127.0.0.1"}) as c:
            r = c.put("/api/prompts", json=doc)
    finally:
        p.kill()
        p.wait()
    assert r.status_code == 423 and f"pid {p.pid}" in r.json()["detail"]
    assert not prompts.exists()


def test_compose_and_track_on_a_locked_folder_exit_2_and_write_nothing(tmp_path, synth_dataset):
    scene_dir = synth_dataset / "pick_cube/train/scene_0"
    cam0 = sorted(scene_dir.glob("cam*"))[0]
    out = tmp_path / "out"
    cfg = _config(tmp_path, "c", cam0 / "color", cam0 / "prompts.json", out, backend="classic")
    data = yaml.safe_load(cfg.read_text())
    data["compose"] = {"wide": "dilate(arm, 3)"}
    cfg.write_text(yaml.safe_dump(data))
    assert run_cli("segment", "--no-progress", str(cfg))[0] == 0
    tracks = tmp_path / "tracks"
    for folder, args in (
        (out, ["compose", "--no-progress", str(cfg)]),
        (tracks, ["track", str(scene_dir / "scene"), "--out", str(tracks), "--max-queries", "8", "--quiet"]),
    ):
        before = _files(folder)
        p = _holder(folder)
        try:
            code, _, err = run_cli(*args)
        finally:
            p.kill()
            p.wait()
        assert code == 2 and err.count("\n") == 1 and f"pid {p.pid}" in err and str(folder) in err, err
        assert _files(folder) == before
        code, _, err = run_cli(*args)  # the holder is gone: it runs
        assert code == 0, err

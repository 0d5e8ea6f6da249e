"""Resume after SIGKILL: a `masktrack segment` subprocess killed mid-session, then rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from masktrack.config import load_config
from masktrack.masks.store import MaskStore
from masktrack.segment.pipeline import run_segment

SEGMENT_TESTS = Path(__file__).resolve().parents[1] / "segment"  # masktrack_oracle_plugin.py lives there


def _sessions(delay: float) -> list[dict]:
    return [
        {"name": "a", "backend": "oracle", "objects": ["red", "blue"]},
        {"name": "b", "backend": "oracle", "options": {"delay": delay, "drift": 1}, "objects": ["cham"]},
    ]


@pytest.mark.slow
def test_sigkill_mid_session_then_rerun(tmp_path, colour_video, oracle, oracle_mod, mask_checks):
    objects = {
        "red": [oracle_mod.kf("red", 0)],
        "blue": [oracle_mod.kf("blue", 6)],
        "cham": [oracle_mod.kf("cham", 2), oracle_mod.kf("cham", 9)],
    }
    cfg = oracle_mod.write_job(tmp_path, _sessions(0.06), objects)
    out = tmp_path / "out"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SEGMENT_TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MASKTRACK_PLUGINS"] = "masktrack_oracle_plugin"
    proc = subprocess.Popen(
        [sys.executable, "-m", "masktrack", "segment", str(cfg), "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    a, b = MaskStore(out).session("a"), MaskStore(out).session("b")
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            m = a.manifest()
            if (
                m is not None
                and m.complete
                and b.frames_dir.is_dir()
                and len(list(b.frames_dir.glob("*.npz"))) >= 3
            ):
                break
            if proc.poll() is not None:
                pytest.fail(f"segment finished before it could be killed: {proc.communicate()}")
            time.sleep(0.01)
        else:
            pytest.fail("session b never started")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert a.is_complete(a.manifest().key)
    assert not b.manifest().complete  # killed mid-session: not trusted
    a_files = {p.name: p.stat().st_mtime_ns for p in a.frames_dir.iterdir()}

    reports = run_segment(load_config(cfg), progress=False)
    assert [(r.session, r.status) for r in reports] == [("a", "reused"), ("b", "computed")]
    assert {p.name: p.stat().st_mtime_ns for p in a.frames_dir.iterdir()} == a_files  # a not recomputed
    assert not [p for p in b.frames_dir.iterdir() if p.name.startswith(".")]  # no temp leftovers

    ref_cfg = oracle_mod.write_job(
        tmp_path / "ref", _sessions(0.0), objects, video=str(colour_video), output="out"
    )
    run_segment(load_config(ref_cfg), progress=False)
    ref = MaskStore(tmp_path / "ref" / "out")
    for name in ("a", "b"):
        got, want = MaskStore(out).session(name), ref.session(name)
        mask_checks.assert_same_masks(
            [want.read_stack(t) for t in range(16)], [got.read_stack(t) for t in range(16)], name
        )

"""Batch runs: expansion, bad scenes skipped, local and Ray engines agree, SIGKILL of the driver resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from masktrack.batch.job import expand_scene_units, expand_units, load_job, parse_scene_list
from masktrack.batch.run import run_batch
from masktrack.errors import ConfigError
from masktrack.masks.store import MaskStore
from masktrack.track.base import Tracks

GOOD = ["pick_cube/scene_0", "pick_cube/scene_1"]


def _outputs(out: Path) -> dict[str, dict]:
    """Every good unit's masks (session frames decoded), composed PNG bytes and 3D tracks."""
    res: dict[str, dict] = {}
    for unit_dir in sorted(out.glob("pick_cube/scene_*/cam*")):
        store = MaskStore(unit_dir).session("arm")
        m = store.require_manifest()
        frames = {f: np.packbits(store.read_stack(f, m)).tobytes() for f in range(m.num_frames)}
        pngs = {
            int(p.stem): p.read_bytes() for p in sorted((unit_dir / "composed" / "arm_wide").glob("*.png"))
        }
        res[str(unit_dir.relative_to(out))] = {"masks": frames, "pngs": pngs}
    for tracks in sorted(out.glob("pick_cube/scene_*/tracks/*/tracks.npz")):
        t = Tracks.load(tracks)
        res[str(tracks.relative_to(out))] = {
            "tracks": np.nan_to_num(t.tracks, nan=-1).tobytes(),
            "visibility": t.visibility.tobytes(),
            "queries": t.queries.tobytes(),
        }
    return res


def test_expand_units_names_task_scene_camera(tmp_path, synth_dataset, job_file):
    job = load_job(job_file)
    units = expand_units(job, tmp_path / "out")
    assert len(units) == 6
    u = units[0]
    assert u.id.startswith("pick_cube/scene_0/cam")
    assert u.fields == {"task": "pick_cube", "scene": "scene_0"}
    assert u.video == synth_dataset / "pick_cube/train/scene_0" / u.camera / "color"
    assert u.output == tmp_path / "out" / "pick_cube" / "scene_0" / u.camera
    only = expand_units(
        job, tmp_path / "out", parse_scene_list(str(synth_dataset / "pick_cube/train/scene_1"))
    )
    assert {x.scene for x in only} == {"pick_cube/scene_1"}
    scenes = expand_scene_units(job, tmp_path / "out", units)
    assert [s.id for s in scenes] == [
        "pick_cube/scene_0/track",
        "pick_cube/scene_1/track",
        "pick_cube/scene_2/track",
    ]
    assert scenes[0].scene_path == synth_dataset / "pick_cube/train/scene_0/scene"
    assert scenes[0].output == tmp_path / "out" / "pick_cube" / "scene_0" / "tracks"
    assert scenes[0].outputs == {x.camera: x.output for x in units if x.scene == "pick_cube/scene_0"}


def test_job_errors_name_the_field(tmp_path, job_file):
    p = job_file
    p.write_text(p.read_text().replace("{scene_dir}/{camera}/color", "{scene_dir}/{cam}/color"))
    with pytest.raises(ConfigError) as e:
        expand_units(load_job(p), tmp_path / "out")
    assert "video" in str(e.value) and "{cam}" in str(e.value)
    (tmp_path / "bad.yaml").write_text("video: x\npipeline: {video: y, sessions: []}\n")
    with pytest.raises(ConfigError) as e:
        load_job(tmp_path / "bad.yaml")
    assert "pipeline" in str(e.value)


@pytest.mark.slow
def test_local_and_ray_engines_agree_and_skip_the_bad_scene(tmp_path, job_file):
    job = load_job(job_file)
    local = run_batch(job, tmp_path / "local", engine="local", workers=2)
    by_id = {u.id: u for u in local.units}
    # 4 good camera units + 2 scene tracking units; scene_2's 2 cameras (bad prompts) and its tracking unit skipped
    assert local.count("computed") == 6 and local.count("skipped") == 3 and local.count("failed") == 0
    bad = [u for u in local.units if u.status == "skipped"]
    assert {u.id for u in bad} == {x for x in by_id if x.startswith("pick_cube/scene_2/")}
    assert all("points[0]" in u.reason and "outside" in u.reason for u in bad if not u.id.endswith("/track"))
    assert "camera unit(s) not done" in by_id["pick_cube/scene_2/track"].reason
    report = json.loads((tmp_path / "local" / "batch_report.json").read_text())
    assert {u["id"] for u in report["units"] if u["status"] == "skipped"} == {u.id for u in bad}
    cams = [u for u in local.units if u.status == "computed" and not u.id.endswith("/track")]
    assert len(cams) == 4 and all(u.stages == {"segment": "computed", "compose": "computed"} for u in cams)
    assert by_id["pick_cube/scene_0/track"].stages == {"track": "computed"}
    tracks = Tracks.load(tmp_path / "local/pick_cube/scene_0/tracks/arm_wide/tracks.npz")
    assert 0 < tracks.num_points <= 64 and tracks.num_frames == 6 and np.isfinite(tracks.tracks[0]).all()
    assert all(Path(u.log).read_text().count("=== unit") == 1 for u in local.units if u.log)

    ray_report = run_batch(job, tmp_path / "ray", engine="ray", ray_init={"num_cpus": 2})
    assert sorted((u.id, u.status) for u in ray_report.units) == sorted((u.id, u.status) for u in local.units)
    assert _outputs(tmp_path / "local") == _outputs(tmp_path / "ray")

    again = run_batch(job, tmp_path / "local", engine="local", workers=2)
    assert again.count("reused") == 6 and again.count("skipped") == 3


@pytest.mark.slow
def test_sigkill_of_the_driver_then_rerun_recomputes_nothing_finished(tmp_path, job_file, monkeypatch):
    # The classic backend slowed to ~0.1 s per frame, so that units take long enough to kill between them.
    job_path = job_file
    job = yaml.safe_load(job_path.read_text())
    job["pipeline"]["sessions"][0].update(backend="slow_classic", options={"delay": 0.1})
    job_path.write_text(yaml.safe_dump(job))
    monkeypatch.setenv("MASKTRACK_PLUGINS", "masktrack_slow_plugin")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    )
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "masktrack", "batch", str(job_path), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    units_dir = out / "batch" / "units"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            done = (
                [p for p in units_dir.glob("[!.]*.json") if json.loads(p.read_text())["status"] == "computed"]
                if units_dir.exists()
                else []
            )
            if len(done) >= 1:
                break
            assert proc.poll() is None, (
                f"batch finished before it could be killed: {proc.stderr.read().decode()[-2000:]}"
            )
            time.sleep(0.05)
        else:
            pytest.fail("no unit finished in time")
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-batch
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finished = {
        p.name: p.stat().st_mtime_ns
        for p in units_dir.glob("[!.]*.json")
        if json.loads(p.read_text())["status"] == "computed"
    }  # [!.]: not temp files
    assert 1 <= len(finished) < 6
    manifests = {
        p: p.stat().st_mtime_ns
        for p in out.glob("pick_cube/*/*/sessions/arm/manifest.json")
        if json.loads(p.read_text())["complete"]
    }
    assert len(manifests) >= len(finished)

    report = run_batch(load_job(job_path), out, engine="local", workers=1)
    assert report.count("failed") == 0 and report.count("computed") + report.count("reused") == 6
    assert report.count("reused") >= len(finished)
    for name, mtime in finished.items():
        assert (units_dir / name).stat().st_mtime_ns == mtime  # not dispatched again
    for p, mtime in manifests.items():
        assert p.stat().st_mtime_ns == mtime  # sessions finished before the kill were not recomputed

    fresh = run_batch(load_job(job_path), tmp_path / "fresh", engine="local", workers=1)
    assert fresh.count("computed") == 6
    assert _outputs(out) == _outputs(tmp_path / "fresh")


def test_dry_run_lists_camera_and_scene_units_and_runs_nothing(tmp_path, job_file, capsys, monkeypatch):
    from masktrack.cli.main import main

    monkeypatch.setenv("COLUMNS", "300")  # one table row per line
    assert main(["batch", str(job_file), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "6 units: 6 to run" in text and "pick_cube/scene_1/track" in text and "after its cameras" in text
    assert not (tmp_path / "out").exists()


def test_dry_run_never_cuts_a_path(tmp_path, job_file, capsys, monkeypatch):
    from masktrack.cli.main import main

    monkeypatch.setenv("COLUMNS", "160")
    out = tmp_path / ("a_rather_long_output_folder_name_" * 3) / "out"
    assert main(["batch", str(job_file), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "…" not in text
    outputs = [
        str(out.resolve() / "pick_cube" / f"scene_{i}" / c)
        for i in range(3)
        for c in ("cam0_front", "cam1_left")
    ]
    assert all(o in text for o in outputs), text


def test_a_mistake_every_unit_would_hit_stops_the_batch_before_any_unit(
    tmp_path, job_file, capsys, monkeypatch
):
    import importlib.util

    import yaml

    from masktrack.cli.main import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "sam3" else real(n, *a))
    job = yaml.safe_load(job_file.read_text())
    job["pipeline"] = {
        "sessions": [
            {"name": "arm", "backend": "sam2", "objects": ["arm"], "options": {"checkpoint": "ckpt/nope.pt"}},
            {"name": "hands", "backend": "nosuch", "objects": ["hands"]},
            {"name": "cable", "backend": "sam3", "objects": ["cable"]},
        ]
    }
    job_file.write_text(yaml.safe_dump(job))
    rc = main(["batch", str(job_file), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 3, err
    text = "\n".join(err)
    assert "pipeline.sessions[0:arm].options.checkpoint: ckpt/nope.pt: file not found" in text
    assert "pipeline.sessions[1:hands].backend: unknown backend 'nosuch'" in text
    assert "pipeline.sessions[2:cable].backend: 'sam3' needs sam3 (not installed)" in text
    assert not (tmp_path / "out").exists()  # no unit ran

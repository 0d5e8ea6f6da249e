"""Faults at scale: a 3-node Ray cluster on one machine loses a worker node mid-batch.

The units that were running on the lost node are retried on the surviving
node by Ray; the batch finishes with every unit done, outputs identical to an
undisturbed run, and the report names the retries (the lost workers).
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import yaml

from masktrack.batch.job import load_job
from masktrack.batch.run import run_batch
from masktrack.masks.store import MaskStore
from masktrack.track.base import Tracks

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")


def _outputs(out):
    res = {}
    for unit_dir in sorted(out.glob("pick_cube/scene_*/cam*")):
        store = MaskStore(unit_dir).session("arm")
        m = store.require_manifest()
        res[str(unit_dir.relative_to(out))] = [
            np.packbits(store.read_stack(f, m)).tobytes() for f in range(m.num_frames)
        ] + [p.read_bytes() for p in sorted((unit_dir / "composed" / "arm_wide").glob("*.png"))]
    for t in sorted(out.glob("pick_cube/scene_*/tracks/*/tracks.npz")):
        tr = Tracks.load(t)
        res[str(t.relative_to(out))] = [np.nan_to_num(tr.tracks, nan=-1).tobytes(), tr.visibility.tobytes()]
    return res


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_losing_a_ray_worker_node_mid_batch_retries_its_units_elsewhere(tmp_path, job_file, slow_env):
    job_path = job_file
    job = yaml.safe_load(job_path.read_text())
    job["pipeline"]["sessions"][0].update(backend="slow_classic", options={"delay": 0.15})
    job["stages"] = ["segment", "compose"]  # camera units only: small and bounded
    job.pop("track")
    job_path.write_text(yaml.safe_dump(job))
    job = load_job(job_path)

    cluster = cluster_utils.Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    doomed = cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    killed = threading.Event()
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        doomed_id = doomed.node_id[:12]

        def kill_when_busy() -> None:
            # as soon as a unit starts on the doomed node, take the node away (raylet and its workers)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                for log in (tmp_path / "ray" / "batch" / "logs").glob("*.log"):
                    text = log.read_text(errors="replace")
                    if f"node-{doomed_id}" in text and "=== done" not in text.split(f"node-{doomed_id}")[-1]:
                        time.sleep(0.3)  # mid-unit: some frames written
                        cluster.remove_node(doomed, allow_graceful=False)
                        killed.set()
                        return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        report = run_batch(job, tmp_path / "ray", engine="ray")
        killer.join(5)
    finally:
        ray.shutdown()
        cluster.shutdown()

    assert killed.is_set(), "no unit ever ran on the doomed node"
    assert report.count("failed") == 0, [(u.id, u.reason) for u in report.units if u.status == "failed"]
    assert report.count("computed") == 4 and report.count("skipped") == 2
    retried = [u for u in report.units if u.retries]
    assert retried, "the report names no retries"
    for u in retried:
        assert any(f"node-{doomed_id}" in w for w in u.retries), u.retries
        assert f"node-{doomed_id}" not in u.worker  # finished elsewhere
    saved = json.loads((tmp_path / "ray" / "batch_report.json").read_text())
    assert set(saved["retried"]) == {u.id for u in retried}

    undisturbed = run_batch(job, tmp_path / "local", engine="local", workers=2)
    assert undisturbed.count("computed") == 4
    got, want = _outputs(tmp_path / "ray"), _outputs(tmp_path / "local")
    assert len(want) == 4 and all(any(np.frombuffer(b, np.uint8).any() for b in v[:6]) for v in want.values())
    assert got == want

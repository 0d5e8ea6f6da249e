"""``flow`` on a synthetic scene seen through a real-sensor model with a calibration error (loose bounds)."""

from __future__ import annotations

import numpy as np

from masktrack.io.scene import load_scene
from masktrack.track.flow import FlowTracker
from masktrack.track.instances import load_instance
from masktrack.track.queries import QueryOptions, sample_queries


def test_flow_holds_the_gripper_through_d435_noise_and_a_3mm_03deg_calibration_error(tmp_path) -> None:
    from masktrack.synth import SynthConfig, generate
    from masktrack.synth.truth import SceneTruth, track_errors

    cfg = SynthConfig.small(
        frames=16, width=192, height=144, sensor="realsense-d435", calib_mm=3.0, calib_deg=0.3
    )
    syn = generate(cfg, tmp_path / "s")
    scene = load_scene(syn.scene_path)
    assert (np.asarray(scene.depths) == 0).mean() > 0.001  # the sensor model made holes
    inst = load_instance(syn.scene_path, "gt_gripper")
    q = sample_queries(scene, inst, QueryOptions(window="frame", frame=0, max_queries=300))
    assert len(q) > 50
    tr = FlowTracker().track(scene, q.points, instance=inst)
    err = track_errors(SceneTruth.load(syn.root), tr.tracks, tr.queries)["error"][1:]
    moved = np.linalg.norm(tr.tracks[-1] - tr.tracks[0], axis=1)
    assert np.median(moved) > 0.02  # the gripper really moves: a tracker that stands still fails below
    assert np.isfinite(err).all()
    # loose: the calibration error alone puts lifted points ~3-6 mm off; the clean-scene test holds 1 cm
    assert np.median(err) < 0.015, np.median(err)
    assert np.median(err[-1]) < 0.025, np.median(err[-1])
    assert tr.visibility.mean() > 0.3

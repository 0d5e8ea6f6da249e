"""The issue's quality target on the real-format RLBench episode (exact gripper ground truth)."""

import numpy as np

from masktrack.io.scene_import import import_npz
from masktrack.track.flow import FlowTracker
from masktrack.track.instances import load_instance
from masktrack.track.queries import QueryOptions, sample_queries


def test_flow_tracks_the_rlbench_gripper_within_2cm(rlbench_npz, tmp_path) -> None:
    scene = import_npz(rlbench_npz, tmp_path / "scene", mask_key="gt_masks_gripper=gripper")
    inst = load_instance(tmp_path / "scene", "gripper")
    q = sample_queries(scene, inst, QueryOptions(window="frame", frame=0))
    assert (q.points[:, 0] == 0).all() and len(q) > 50
    tr = FlowTracker().track(scene, q.points, instance=inst)
    with np.load(rlbench_npz) as z:
        G = z["gripper_matrix"].astype(np.float64)
    p0 = np.concatenate([q.points[:, 1:].astype(np.float64), np.ones((len(q), 1))], axis=1)
    gt = np.einsum("tij,jk,nk->tni", G, np.linalg.inv(G[0]), p0)[..., :3]
    err = np.linalg.norm(tr.tracks - gt, axis=2)
    assert np.median(err) <= 0.02, np.median(err)
    # the gripper travels ~75 cm: a tracker that stood still would fail by far
    assert np.median(np.linalg.norm(gt[-1] - gt[0], axis=1)) > 0.5

import numpy as np

from masktrack.io.scene import load_scene
from masktrack.track.base import Tracks, track_batched
from masktrack.track.flow import FlowTracker, _fuse, rigid_smooth
from masktrack.track.instances import load_instance
from masktrack.track.queries import QueryOptions, sample_queries


def _gt(poses: np.ndarray, q: np.ndarray) -> np.ndarray:
    t = q[:, 0].astype(int)
    p = np.concatenate([q[:, 1:4].astype(np.float64), np.ones((len(q), 1))], axis=1)
    return np.einsum("tij,njk,nk->tni", poses, np.linalg.inv(poses[t]), p)[..., :3]


def test_flow_recovers_rigid_motion_of_a_textured_cube_seen_by_3_cameras(cube_scene) -> None:
    path, poses = cube_scene
    scene = load_scene(path)
    inst = load_instance(path, "cube")
    q = sample_queries(scene, inst, QueryOptions(window="frame", frame=0, voxel=0.01, max_queries=600))
    tr = FlowTracker().track(scene, q.points, instance=inst)
    err = np.linalg.norm(tr.tracks - _gt(poses, q.points), axis=2)
    assert np.median(err) < 0.01, np.median(err)
    assert tr.visibility.mean() > 0.9
    # the cube moved ~25 cm: standing still would be far off
    assert np.median(np.linalg.norm(_gt(poses, q.points)[-1] - q.points[:, 1:], axis=1)) > 0.1


def test_queries_starting_mid_video_have_nothing_before_t(cube_scene) -> None:
    path, poses = cube_scene
    scene = load_scene(path)
    inst = load_instance(path, "cube")
    q = sample_queries(scene, inst, QueryOptions(window="all", stride=4, voxel=0.02, max_queries=200))
    assert len(np.unique(q.points[:, 0])) >= 3
    tr = FlowTracker().track(scene, q.points, instance=inst)
    t = q.points[:, 0].astype(int)
    before = np.arange(scene.num_frames)[:, None] < t[None]
    assert np.isnan(tr.tracks[before]).all() and not tr.visibility[before].any()
    assert np.isfinite(tr.tracks[~before]).all()
    at_t = tr.tracks[t, np.arange(len(t))]
    assert np.allclose(at_t, q.points[:, 1:], atol=1e-6)  # a track starts exactly at its query
    err = np.linalg.norm(tr.tracks - _gt(poses, q.points), axis=2)[~before]
    assert np.median(err) < 0.01


def test_batches_merge_to_the_same_shape_and_order(cube_scene) -> None:
    path, _ = cube_scene
    scene = load_scene(path)
    inst = load_instance(path, "cube")
    q = sample_queries(scene, inst, QueryOptions(window="frame", frame=0, voxel=0.03, max_queries=60))
    tr = track_batched(FlowTracker(), scene, q.points, max_points=25, instance=inst)
    assert tr.tracks.shape == (scene.num_frames, len(q), 3) and tr.provenance["batches"] == 3
    assert np.array_equal(tr.queries, q.points)


def test_occluded_views_are_rejected_by_depth_and_fused_robustly() -> None:
    meas = np.array([[[0.0, 0, 0]], [[0.001, 0, 0]], [[0.5, 0, 0]]])  # third camera saw an occluder
    fused, w = _fuse(meas, np.ones((3, 1)), 0.02)
    assert np.allclose(fused, [[0.0005, 0, 0]]) and w[0] == 2.0
    fused, w = _fuse(np.full((2, 1, 3), np.nan), np.zeros((2, 1)), 0.02)
    assert w[0] == 0


def test_rigid_smooth_is_exact_for_rigid_motion_and_rejects_outliers() -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(-0.1, 0.1, (200, 3))
    a = 0.2
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    Y = X @ R.T + [0.05, 0.0, 0.02]
    Ybad = Y.copy()
    Ybad[::10] += 0.2  # 10% gross outliers
    out, ok = rigid_smooth(X, Ybad, np.ones(200), 24, 3, 0.01)
    assert ok.all() and np.median(np.linalg.norm(out - Y, axis=1)) < 1e-3


def test_tracks_save_load_pickle_free(tmp_path) -> None:
    tr = Tracks(np.zeros((3, 2, 3), np.float32), np.ones((3, 2), bool), np.zeros((2, 4), np.float32), "x", {"a": 1})
    tr.save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz", allow_pickle=False) as z:
        assert {k: z[k].dtype.kind for k in z.files}["provenance"] == "U"
    assert Tracks.load(tmp_path / "t.npz").provenance == {"a": 1}

import cv2
import numpy as np

from masktrack.io.scene import load_scene
from masktrack.track.base import Tracks, track_batched
from masktrack.track.flow import FlowOptions, FlowTracker, _Frame, _fuse, _matmul, _pair, _thin, rigid_smooth
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
    tr = Tracks(
        np.zeros((3, 2, 3), np.float32), np.ones((3, 2), bool), np.zeros((2, 4), np.float32), "x", {"a": 1}
    )
    tr.save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz", allow_pickle=False) as z:
        assert {k: z[k].dtype.kind for k in z.files}["provenance"] == "U"
    assert Tracks.load(tmp_path / "t.npz").provenance == {"a": 1}


def test_rigid_smooth_kernel_mode_is_exact_for_rigid_motion_and_rejects_outliers() -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(-0.1, 0.1, (200, 3)) + [0.4, -0.3, 0.9]  # off the origin: the centring matters
    a = 0.2
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    Y = X @ R.T + [0.05, 0.0, 0.02]
    out, ok = rigid_smooth(X, Y, np.ones(200), 24, 2, 0.01, 32, radius=0.05)
    assert ok.all() and np.abs(out - Y).max() < 1e-9
    Ybad = Y.copy()
    Ybad[::10] += 0.2  # 10% gross outliers
    out, ok = rigid_smooth(X, Ybad, np.ones(200), 24, 3, 0.01, 32, radius=0.05)
    assert np.median(np.linalg.norm(out - Y, axis=1)) < 1e-3


def test_rigid_smooth_kernel_lets_coarse_views_borrow_precise_motion_nearby() -> None:
    # region A (precise, e.g. a close camera) and region B 5 cm away seen only coarsely (1 cm noise)
    rng = np.random.default_rng(1)
    A = rng.uniform(-0.02, 0.02, (150, 3))
    B = rng.uniform(-0.02, 0.02, (150, 3)) + [0.05, 0.0, 0.0]
    X = np.concatenate([A, B])
    a = 0.05
    R = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    Y = X @ R.T + [0.01, 0.02, 0.0]
    meas = Y + np.concatenate([rng.normal(0, 2e-4, (150, 3)), rng.normal(0, 1e-2, (150, 3))])
    w = np.concatenate([np.full(150, 100.0), np.full(150, 1.0)])  # precision ~ 1 / noise^2
    out, _ = rigid_smooth(X, meas, w, 24, 2, 0.01, 64, radius=0.05)
    knn, _ = rigid_smooth(X, meas, w, 24, 2, 0.01, 64)
    err_b = np.linalg.norm(out[150:] - Y[150:], axis=1)
    assert np.median(err_b) < 1.5e-3, np.median(err_b)
    assert np.median(np.linalg.norm(knn[150:] - Y[150:], axis=1)) > 2 * np.median(
        err_b
    )  # the local fit cannot


def test_thin_keeps_one_point_per_cell_preferring_keyframe_anchored_points() -> None:
    uv = np.array([[0.2, 0.2], [0.7, 0.4], [1.5, 0.5], [1.2, 0.9], [5.0, 5.0]])
    prefer = np.array([False, True, False, False, False])
    keep = _thin(uv, prefer, 1.0)
    assert keep.tolist() == [1, 2, 4]  # cell (0,0): the anchored one; cell (1,0): the lowest index
    assert _thin(uv, np.zeros(5, bool), 2.0).tolist() == [0, 4]


def test_blocked_matmul_equals_matmul() -> None:
    rng = np.random.default_rng(2)
    for sa, sb in [
        ((64, 3000), (3000, 16)),
        ((64, 16), (16, 3000)),
        ((3, 3), (3, 3)),
        ((300, 900), (900, 16)),
    ]:
        a, b = rng.normal(size=sa), rng.normal(size=sb)
        assert np.allclose(_matmul(a, b), a @ b, rtol=1e-12, atol=1e-10)


def test_lk_runs_on_the_instance_region_of_interest_with_a_flat_background(cube_scene) -> None:
    path, _ = cube_scene
    scene = load_scene(path)
    masks = load_instance(path, "cube").masks()
    opts = FlowOptions(levels=1, win=5)  # small reach: a crop smaller than the 112 px image
    a, b = _Frame(scene, 0, opts, masks[:, 0]), _Frame(scene, 5, opts, masks[:, 5])
    ga, gb, off = _pair(a, b, 0)
    y0, y1, x0, x1 = a.roi[0]
    assert ga.shape == gb.shape and ga.shape[0] < scene.size[0]
    assert (off <= [x0, y0]).all()
    full = cv2.cvtColor(np.ascontiguousarray(scene.rgbs[0, 0]), cv2.COLOR_RGB2GRAY)
    mask = a.mask[0]
    crop = ga[y0 - int(off[1]) : y1 - int(off[1]), x0 - int(off[0]) : x1 - int(off[0])]
    assert np.array_equal(crop[mask[y0:y1, x0:x1]], full[y0:y1, x0:x1][mask[y0:y1, x0:x1]])
    assert (crop[~mask[y0:y1, x0:x1]] == opts.mask_fill).all()


def test_rigid_smooth_choose_keeps_a_turning_part_off_its_static_neighbour() -> None:
    """A static base and a turret turning about its axis just above it: each measured point takes its own part's motion."""
    rng = np.random.default_rng(1)
    base = np.concatenate([rng.uniform(-0.08, 0.08, (300, 2)), rng.uniform(0.0, 0.08, (300, 1))], axis=1)
    ang = rng.uniform(0, 2 * np.pi, 300)
    turret = np.stack([0.06 * np.cos(ang), 0.06 * np.sin(ang), rng.uniform(0.08, 0.19, 300)], axis=1)
    X = np.concatenate([base, turret])
    a = np.radians(4.0)
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    Y = np.concatenate([base, turret @ R.T])
    Yn = Y + rng.normal(0, 3e-4, Y.shape)
    errs = {}
    for choose in (1, 4):
        out, ok = rigid_smooth(X, Yn, np.ones(len(X)), 24, 4, 0.003, 32, radius=0.05, choose=choose)
        assert ok.all()
        errs[choose] = np.linalg.norm(out - Y, axis=1)
    # the turret moves ~4 mm; nearest-anchor motion blends the parts, the best-fitting anchor does not
    assert np.percentile(errs[4], 90) < 0.75 * np.percentile(errs[1], 90), (
        np.percentile(errs[1], 90),
        np.percentile(errs[4], 90),
    )
    assert np.median(errs[4]) < np.median(errs[1]) and np.percentile(errs[4], 90) < 1e-3


def test_flow_follows_the_small_fast_synthetic_gripper(tmp_path) -> None:
    """GT gripper masks of a low-resolution synthetic scene (the gripper yaws ~40 degrees and spans ~25 px):
    under 1 cm median.  A 9 px LK window, loose visibility and a 1 cm robust scale gave ~1.7 cm here."""
    from masktrack.synth import SynthConfig, generate
    from masktrack.synth.truth import SceneTruth, track_errors

    syn = generate(SynthConfig.small(frames=16, width=192, height=144), tmp_path / "s")
    scene = load_scene(syn.scene_path)
    inst = load_instance(syn.scene_path, "gt_gripper")
    q = sample_queries(scene, inst, QueryOptions(max_queries=400))
    tr = FlowTracker().track(scene, q.points, instance=inst)
    err = track_errors(SceneTruth.load(syn.root), tr.tracks, tr.queries)["error"]
    assert np.nanmedian(err) < 0.01, np.nanmedian(err)


def _rot(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def test_rigid_support_carries_unmeasured_points_with_all_the_surface_rigidly_attached() -> None:
    """A rod 30 cm long turns 5 degrees; only its first 10 cm are measured, with 3 mm noise.  The
    unmeasured far end must follow the rotation the whole measured part shows (support), not the
    nearest small patch's noisy rotation."""
    rng = np.random.default_rng(0)
    X = np.stack([np.linspace(0, 0.3, 300), rng.normal(0, 0.01, 300), rng.normal(0, 0.01, 300)], 1)
    Y = X @ _rot(5).T
    w = np.where(X[:, 0] < 0.1, 1.0, 0.0)
    meas = Y + rng.normal(0, 0.003, Y.shape)
    far = X[:, 0] > 0.25
    errs = {}
    for support in (0, 64):
        out, ok = rigid_smooth(X, meas, w, 24, 4, 0.003, 32, radius=0.02, choose=1, support=support)
        assert ok.all()
        errs[support] = np.median(np.linalg.norm(out[far] - Y[far], axis=1))
    assert errs[64] < 0.5 * errs[0], errs


def test_rigid_support_does_not_drag_a_part_along_with_its_moving_neighbour() -> None:
    """Two 10 cm blocks side by side: one static, one moved 2 cm.  Widening the scale must not mix them."""
    rng = np.random.default_rng(1)
    A = rng.uniform([0, 0, 0], [0.1, 0.05, 0.05], (200, 3))
    B = rng.uniform([0.1, 0, 0], [0.2, 0.05, 0.05], (200, 3))
    X = np.concatenate([A, B])
    Y = np.concatenate([A, B + [0.0, 0.02, 0.0]])
    w = np.ones(len(X))
    out, _ = rigid_smooth(X, Y, w, 24, 4, 0.003, 64, radius=0.02, choose=4, support=64)
    err = np.linalg.norm(out - Y, axis=1)
    inner = np.abs(X[:, 0] - 0.1) > 0.02  # away from the boundary
    assert np.median(err[inner]) < 1e-3 and np.percentile(err[inner], 90) < 3e-3, np.percentile(
        err[inner], 90
    )

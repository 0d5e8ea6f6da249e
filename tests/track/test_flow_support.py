"""``flow``'s support points: the instance's pixels are tracked too, so a few queries move as well as many."""

from __future__ import annotations

import numpy as np

from masktrack.io.scene import load_scene
from masktrack.track.flow import (
    FlowOptions,
    FlowTracker,
    _consistent_depth,
    _fill_gaps,
    _Frame,
    _sees,
    _State,
)
from masktrack.track.geometry import project_cameras
from masktrack.track.instances import load_instance
from masktrack.track.queries import QueryOptions, sample_queries


def _gt(poses: np.ndarray, q: np.ndarray) -> np.ndarray:
    t = q[:, 0].astype(int)
    p = np.concatenate([q[:, 1:4].astype(np.float64), np.ones((len(q), 1))], axis=1)
    return np.einsum("tij,njk,nk->tni", poses, np.linalg.inv(poses[t]), p)[..., :3]


def test_six_queries_move_with_the_whole_cube_measured_by_support_points(cube_scene) -> None:
    """Six queries on the rotating cube: alone they are six noisy LK measurements for the rigid fit
    (median 4.8 mm); with support points on every cube pixel they get the cube's motion (0.5 mm)."""
    path, poses = cube_scene
    scene = load_scene(path)
    inst = load_instance(path, "cube")
    q = sample_queries(scene, inst, QueryOptions(window="frame", frame=0, voxel=0.01, max_queries=6))
    assert len(q) == 6
    gt = _gt(poses, q.points)
    assert np.median(np.linalg.norm(gt[-1] - gt[0], axis=1)) > 0.1  # the cube moves ~25 cm
    err = {}
    for sp in (0, FlowOptions().support_points):
        tr = FlowTracker(support_points=sp).track(scene, q.points, instance=inst)
        assert tr.tracks.shape == (scene.num_frames, 6, 3) and tr.visibility.shape == (scene.num_frames, 6)
        assert np.isfinite(tr.tracks).all()
        assert tr.provenance["point_frames"] == 6 * scene.num_frames  # support points are not counted
        err[sp] = float(np.median(np.linalg.norm(tr.tracks - gt, axis=2)))
    assert err[FlowOptions().support_points] < 0.002, err
    assert err[0] > 2 * err[FlowOptions().support_points], err


def test_no_support_points_when_the_queries_fill_the_budget(cube_scene) -> None:
    """With as many queries as the budget the tracks are exactly those without support (no extra cost)."""
    path, _ = cube_scene
    scene = load_scene(path)
    inst = load_instance(path, "cube")
    q = sample_queries(scene, inst, QueryOptions(window="frame", frame=0, voxel=0.02, max_queries=60))
    assert len(q) == 60
    a = FlowTracker(support_points=60).track(scene, q.points, instance=inst)
    b = FlowTracker(support_points=0).track(scene, q.points, instance=inst)
    c = FlowTracker(support_points=200).track(scene, q.points, instance=inst)
    assert np.isfinite(a.tracks).all() and np.ptp(a.tracks[:, :, 0]) > 0.05
    assert np.array_equal(a.tracks, b.tracks)
    assert not np.array_equal(a.tracks, c.tracks)  # below the budget support points do change the fit
    assert a.provenance["version"] == 8


def test_support_points_skip_flying_pixels_but_keep_an_exact_silhouette() -> None:
    """A plate at 1 m over a floor at 3 m: its border pixels share its depth and stay; a pixel with a
    depth halfway to the floor (a real sensor's flying pixel) and one off by 5 cm are skipped."""
    depth = np.full((20, 20), 3.0, np.float32)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    depth[mask] = 1.0
    depth[5, 9] = 2.0  # flying pixel on the top border
    depth[10, 10] = 1.05  # inside, 5 cm off its neighbours
    depth[14, 14] = 0.0  # a hole: no depth
    keep = _consistent_depth(depth, mask, FlowOptions())
    assert keep[5, 5] and keep[14, 5] and keep[5, 14] and keep[9, 5]  # corners and borders: exact
    assert not keep[5, 9] and not keep[10, 10] and not keep[14, 14]
    assert not keep[~mask].any()
    assert keep.sum() == mask.sum() - 3


def test_support_fills_uncovered_pixels_and_recycles_the_slots_of_points_no_camera_sees(cube_scene) -> None:
    path, poses = cube_scene
    scene = load_scene(path)
    inst = load_instance(path, "cube")
    masks = inst.masks()
    q = sample_queries(scene, inst, QueryOptions(window="frame", frame=0, voxel=0.01, max_queries=6))
    opts = FlowOptions(support_points=106)
    tr = FlowTracker(**vars(opts))
    T = scene.num_frames
    st = _State.start(np.asarray(q.points, np.float64), T, scene.num_cameras, slots=100)
    assert (st.qt[6:] == T).all()  # slots not in use: never active
    f0 = _Frame(scene, 0, opts, masks[:, 0])
    tr._support(st, f0, 0, 0)
    sup = np.arange(6, 106)
    assert (st.qt[sup] == 0).all()  # the cube has far more free pixels than slots: all used
    # each support point is a cube pixel of some camera, lifted: it projects onto the mask at its own depth
    uv, z = project_cameras(st.q[sup, 1:4], f0.K, f0.E)
    pix = np.rint(uv).astype(int)
    own = np.zeros((scene.num_cameras, len(sup)), bool)  # lifted from camera c's pixel
    for c in range(scene.num_cameras):
        u, v = pix[c, :, 0].clip(0, 111), pix[c, :, 1].clip(0, 111)
        own[c] = (
            (np.abs(uv[c] - pix[c]).max(1) < 1e-3)
            & masks[c, 0][v, u]
            & (np.abs(z[c] - f0.depth[c][v, u]) < 1e-4)
        )
    assert own.any(axis=0).all()
    # with slots for every pixel: each free cube pixel gets one, a query's own pixel is covered already
    big = _State.start(np.asarray(q.points, np.float64), T, scene.num_cameras, slots=100000)
    tr._support(big, f0, 0, 0)
    used = np.flatnonzero(big.qt[6:] == 0) + 6
    assert len(used) > 1000
    buv, bz = project_cameras(big.q[used, 1:4], f0.K, f0.E)
    for c, quv in zip(q.camera, q.uv):
        mine = np.abs(buv[c] - np.rint(buv[c])).max(1) < 1e-3  # lifted from camera c's pixels
        assert mine.sum() > 300 and np.linalg.norm(buv[c][mine] - quv, axis=1).min() > 0.5
    # at frame 8: half of them are lost far off every view, the rest (and the queries) where the cube took them
    st.X[:106] = _gt(poses, np.c_[np.zeros(106), st.q[:106, 1:4]])[8]
    st.X[sup[:50]] += 5.0
    f8 = _Frame(scene, 8, opts, masks[:, 8])
    before = st.q[sup].copy()
    tr._support(st, _Frame(scene, 4, opts, masks[:, 4]), 4, 0)  # off the refresh cadence: nothing
    assert np.array_equal(st.q[sup], before, equal_nan=True)
    tr._support(st, f8, 8, 0)
    # freed slots (the lost points and any other no camera sees at 8) are refilled at 8, the others stay
    assert (st.qt[sup[:50]] == 8).all()
    seen8 = _sees(f8, st.X[sup[50:]], opts, scene.size)[0].any(axis=0)
    assert seen8.mean() > 0.8
    assert (st.qt[sup[50:]][seen8] == 0).all() and (st.qt[sup[50:]][~seen8] == 8).all()
    assert np.isnan(st.kf_uv[:, sup[:50]]).all()  # no stale anchors of the slots' old points
    assert not np.allclose(st.q[sup[:50], 1:4], before[:50, 1:4])


def test_fill_gaps_puts_support_where_the_tracked_points_are_sparsest() -> None:
    """Candidates along a line with queries tracked at its left end: the first picks are the far end, then
    the middle of the remaining gap, never next to a query (a plain farthest-point spread ignores them)."""
    X = np.c_[np.linspace(0.0, 1.0, 101), np.zeros(101), np.zeros(101)]
    tracked = np.c_[np.linspace(0.0, 0.3, 31), np.zeros(31), np.zeros(31)]
    pick = _fill_gaps(X, tracked, 2)
    assert np.allclose(np.sort(X[pick, 0]), [0.65, 1.0])
    assert np.allclose(np.sort(X[_fill_gaps(X, tracked[:0], 3), 0]), [0.0, 0.5, 1.0])  # none tracked: FPS

"""The ``flow`` tracker's whole-instance rigid fit, noise-aware robust scale and prediction-started anchor tracks."""

import numpy as np

from masktrack.io.scene import load_scene, save_scene
from masktrack.io.scene_import import import_npz
from masktrack.track.flow import FlowOptions, FlowTracker, _Frame
from masktrack.track.geometry import lift, project
from masktrack.track.instances import load_instance, save_instance
from masktrack.track.queries import QueryOptions, sample_queries
from masktrack.track.rigid import fit_kernel, rigid_smooth


def _rot(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def _box(rng: np.random.Generator, lo, hi, n: int) -> np.ndarray:
    return rng.uniform(lo, hi, (n, 3))


def test_whole_instance_fit_carries_unmeasured_points_past_a_wrong_cluster() -> None:
    """A rigid 30 cm bar turns 4 degrees and moves 5 cm.  Its far end is not measured except by a
    small cluster of tracks that slid 3 cm off (all the same way).  The local fits there follow the
    cluster and take the unmeasured end with them; the whole-instance fit, which the far end's
    little evidence does not reject, keeps it on the body."""
    rng = np.random.default_rng(0)
    X = _box(rng, [0, 0, 0], [0.3, 0.04, 0.04], 400)
    Y = X @ _rot(4).T + [0.05, 0.01, 0.0]
    meas = Y + rng.normal(0, 0.002, Y.shape)
    w = np.where(X[:, 0] < 0.18, 1.0, 0.0)
    cluster = np.flatnonzero((X[:, 0] > 0.2) & (X[:, 0] < 0.23))[:10]
    meas[cluster] += [0.0, 0.03, 0.0]
    w[cluster] = 1.0
    far = (X[:, 0] > 0.24) & (w == 0)
    assert far.sum() > 50
    errs = {}
    for whole in (None, 3.0):
        out, ok = rigid_smooth(X, meas, w, 24, 4, 0.003, 64, radius=0.05, choose=4, whole_nats=whole)
        assert ok.all()
        errs[whole] = np.median(np.linalg.norm(out[far] - Y[far], axis=1))
    assert errs[None] > 0.01, errs  # the local fits follow the cluster: the case is a real one
    assert errs[3.0] < 0.003, errs


def test_whole_instance_fit_does_not_drag_a_part_that_moves_on_its_own() -> None:
    """Two 10 cm blocks side by side, both measured: one static, one moved 2 cm.  Every measurement
    of the moved block rejects the whole-instance motion, so each block keeps its own."""
    rng = np.random.default_rng(1)
    A = _box(rng, [0, 0, 0], [0.1, 0.05, 0.05], 200)
    B = _box(rng, [0.1, 0, 0], [0.2, 0.05, 0.05], 200)
    X = np.concatenate([A, B])
    Y = np.concatenate([A, B + [0.0, 0.02, 0.0]])
    meas = Y + rng.normal(0, 0.001, Y.shape)
    assert np.median(np.abs(Y - X)[200:, 1]) > 0.019  # the block did move
    err = {}
    for whole in (None, 3.0):
        out, ok = rigid_smooth(
            X, meas, np.ones(len(X)), 24, 4, 0.003, 64, radius=0.03, choose=4, whole_nats=whole
        )
        assert ok.all()
        err[whole] = np.linalg.norm(out - Y, axis=1)
    for part in (slice(0, 200), slice(200, 400)):  # each block on its own motion (the seam aside)
        assert np.median(err[3.0][part]) < 0.001, np.median(err[3.0][part])
    assert np.percentile(err[3.0], 90) <= np.percentile(err[None], 90) + 1e-4  # no worse than local fits


def test_noise_aware_robust_scale_uses_every_coarse_measurement() -> None:
    """A coarse view: 1 px = 6 mm, measurements with 6 mm noise.  Judged against the 3 mm scale of
    part motion alone, ordinary noise looks like outliers and the robust fit leans on a few lucky
    measurements; counting each measurement's expected error (1 px) keeps them all."""
    rng = np.random.default_rng(2)
    errs: dict[float, list[float]] = {0.0: [], 1.0: []}
    for _ in range(20):
        X = _box(rng, [0, 0, 0], [0.2, 0.06, 0.06], 150)
        Y = X @ _rot(3).T + [0.02, 0.0, 0.01]
        meas = Y + rng.normal(0, 0.006, Y.shape)
        prec = np.full(len(X), 1 / 0.006**2)  # (focal / depth)^2: one pixel is 6 mm
        for noise in errs:
            fit = fit_kernel(
                X, meas, prec, np.array([0]), radius=np.inf, iters=6, scale=0.003, noise_px=noise
            )
            est = X @ fit.R[0].T + fit.t[0]
            errs[noise].append(float(np.median(np.linalg.norm(est - Y, axis=1))))
    mean = {k: float(np.mean(v)) for k, v in errs.items()}
    assert mean[1.0] < 0.9 * mean[0.0], mean


def test_anchor_tracks_hold_on_the_rlbench_gripper_over_several_frames(rlbench_npz, tmp_path) -> None:
    """Keyframe 8 -> frame 12 in the right-shoulder view (the gripper ~40 px, moving ~2 px a frame),
    started at the true position 0.7 px off: the anchor track without a pyramid lands within the
    gate on most points.  The default 3-level pyramid ran off on a 7 px high top level (the failure
    that made every origin/keyframe track fall back to chained frame-to-frame flow)."""

    scene = import_npz(rlbench_npz, tmp_path / "scene", mask_key="gt_masks_gripper=gripper")
    inst = load_instance(tmp_path / "scene", "gripper")
    c = scene.camera_ids.index("right_shoulder")
    masks = inst.masks()
    with np.load(rlbench_npz) as z:
        G = z["gripper_matrix"].astype(np.float64)
    # gripper surface points visible at frame 8 in this view: its mask pixels lifted with depth
    ys, xs = np.nonzero(masks[c, 8])
    uv8 = np.stack([xs, ys], 1).astype(np.float64)
    X8 = lift(uv8, np.asarray(scene.depths[c, 8])[ys, xs], scene.intrs[c, 8], scene.extrs[c, 8])
    X12 = (np.c_[X8, np.ones(len(X8))] @ (G[12] @ np.linalg.inv(G[8])).T)[:, :3]
    uv12, _ = project(X12, scene.intrs[c, 12], scene.extrs[c, 12])
    assert np.median(np.linalg.norm(uv12 - uv8, axis=1)) > 5  # it moved several pixels
    opts = FlowOptions()
    a = _Frame(scene, 8, opts, masks[:, 8])
    b = _Frame(scene, 12, opts, masks[:, 12])
    guess = uv12 + [0.5, -0.5]
    tr = FlowTracker()
    kept = {}
    for lv in (opts.anchor_levels, 3):
        p1, ok = tr._flow(a, b, c, uv8, guess, levels=lv)
        good = ok & (np.linalg.norm(p1 - guess, axis=1) <= opts.anchor_gate_px)
        kept[lv] = float(good.mean())
    assert kept[3] < 0.3, kept  # the failure is real on this data
    assert kept[opts.anchor_levels] > 0.5, kept


def test_flow_holds_the_rlbench_gripper_without_the_wrist_camera(rlbench_npz, tmp_path) -> None:
    """External cameras only, the CLI's query density: median under 3 mm, a loose bound on the final frame (before the
    whole-instance fit and the depth gate the unmeasured far side drifted 3 cm by the end)."""
    scene = import_npz(rlbench_npz, tmp_path / "scene", mask_key="gt_masks_gripper=gripper")
    inst = load_instance(tmp_path / "scene", "gripper")
    cams = [c for c in scene.camera_ids if c != "wrist"]
    q = sample_queries(scene, inst, QueryOptions(window="frame", frame=0, cameras=tuple(cams)))
    idx = [scene.camera_ids.index(c) for c in cams]
    path = save_scene(scene.with_cameras(cams), tmp_path / "sub")
    save_instance(path, "gripper", inst.masks()[idx], id=1, color=(255, 0, 0))
    tr = FlowTracker().track(load_scene(path), q.points, instance=load_instance(path, "gripper"))
    with np.load(rlbench_npz) as z:
        G = z["gripper_matrix"].astype(np.float64)
    p0 = np.c_[q.points[:, 1:].astype(np.float64), np.ones(len(q))]
    gt = np.einsum("tij,jk,nk->tni", G, np.linalg.inv(G[0]), p0)[..., :3]
    err = np.linalg.norm(tr.tracks - gt, axis=2)
    assert np.isfinite(err).all() and len(q) > 50
    assert np.median(np.linalg.norm(gt[-1] - gt[0], axis=1)) > 0.5  # standing still would fail by far
    assert np.median(err) < 0.003, np.median(err)  # the issue-19 target; 3.3 mm before support points
    assert np.median(err[-1]) < 0.015, np.median(err[-1])

"""The ``flow`` tracker's offline temporal smoothing (``smooth_window``): less per-frame jitter, real motion kept."""

import numpy as np

from masktrack.io.scene import load_scene
from masktrack.track.flow import FlowOptions, FlowTracker
from masktrack.track.instances import load_instance
from masktrack.track.queries import QueryOptions, sample_queries
from masktrack.track.smooth import smooth_tracks


def _rot_z(a: float) -> np.ndarray:
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def _small_rot(v: np.ndarray) -> np.ndarray:
    K = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + K  # first order: the jitter's angles are a fraction of a degree


def _articulated(T: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Truth [T, N, 3] of a 10 cm palm turning (3 deg/frame) and accelerating, and a finger that opens and
    closes relative to it (2 cm, period 12 frames); and which points are the finger's."""
    rng = np.random.default_rng(0)
    palm = rng.uniform([0, 0, 0], [0.1, 0.04, 0.04], (60, 3))
    finger = rng.uniform([0.1, 0, 0], [0.14, 0.01, 0.02], (30, 3))
    out = np.empty((T, 90, 3))
    for t in range(T):
        R = _rot_z(np.deg2rad(3.0 * t))
        move = np.array([0.004 * t + 0.0002 * t**2, 0.002 * t, 0.0])
        open_ = np.array([0.0, 0.02 * np.sin(2 * np.pi * t / 12), 0.0])
        out[t] = np.concatenate([palm, finger + open_]) @ R.T + move
    return out, np.arange(90) >= 60


def _jitter(truth: np.ndarray, finger: np.ndarray, mm: float, seed: int) -> np.ndarray:
    """Each frame's estimate off by a small rigid pose error of the whole body (the palm and the finger
    each get their own), as the tracker's per-frame fits are: ~``mm`` at the points."""
    rng = np.random.default_rng(seed)
    out = truth.copy()
    for t in range(1, len(truth)):
        for part in (~finger, finger):
            c = truth[t, part].mean(axis=0)
            R = _small_rot(rng.normal(0, mm / 1000 / 0.05, 3))
            out[t, part] = (truth[t, part] - c) @ R.T + c + rng.normal(0, mm / 1000, 3)
    return out


def test_smoothing_brings_a_jittered_articulated_trajectory_closer_to_the_truth() -> None:
    truth, finger = _articulated()
    qt = np.zeros(truth.shape[1], np.int64)
    noisy = _jitter(truth, finger, 3.0, seed=1)
    before = np.linalg.norm(noisy - truth, axis=2)[1:]
    after = np.linalg.norm(smooth_tracks(noisy, qt, half=2, scale=0.005) - truth, axis=2)[1:]
    assert np.median(before) > 0.003  # the jitter is there
    assert np.median(after) < 0.85 * np.median(before), (np.median(before), np.median(after))
    assert np.median(after[:, finger]) < 0.85 * np.median(before[:, finger])
    # without noise, the real motion - turning, accelerating, the finger opening - passes unchanged
    clean = smooth_tracks(truth, qt, half=2, scale=0.005)
    assert np.abs(clean - truth).max() < 0.002, np.abs(clean - truth).max()
    assert np.linalg.norm(truth[-1] - truth[0], axis=1).min() > 0.1  # and it did move


def test_smoothing_keeps_a_jump_and_a_sudden_start_and_each_track_s_query_frame() -> None:
    T = 30
    X = np.zeros((T, 3, 3))
    X[15:, 0, 0] = 0.03  # a 3 cm jump between frames 14 and 15
    X[15:, 1, 1] = 0.01 * np.arange(1, T - 14)  # at rest, then 1 cm/frame (a contact)
    X[:8, 2] = np.nan  # a track that starts at frame 8 from its query...
    X[8:, 2] = [0.0, 0.0, 0.05]
    X[9:, 2, 2] = 0.0  # ...and is 5 cm off its query from the next frame on (a bad first step)
    qt = np.array([0, 0, 8])
    out = smooth_tracks(X, qt, half=2, scale=0.005)
    assert np.abs(out[:, 0] - X[:, 0]).max() < 0.002  # plain least squares smears it by 7 mm
    plain = smooth_tracks(X, qt, half=2, scale=0.0)
    assert np.abs(plain[:, 0] - X[:, 0]).max() > 0.005  # the case is a real one
    assert np.abs(out[:, 1] - X[:, 1]).max() < 0.002
    assert np.isnan(out[:8, 2]).all() and np.array_equal(out[8, 2], X[8, 2])  # the query itself is kept
    assert np.isfinite(out[8:]).all()


def test_smoothing_bounds_memory_by_blocks_of_points() -> None:
    rng = np.random.default_rng(2)
    X = np.cumsum(rng.normal(0, 0.002, (12, 5000, 3)), axis=0)
    qt = rng.integers(0, 4, 5000)
    X[np.arange(12)[:, None] < qt[None]] = np.nan
    whole = smooth_tracks(X, qt, half=2, scale=0.005)
    assert np.isfinite(whole[~np.isnan(X)]).all() and np.abs(whole - X)[np.isfinite(X)].max() > 0
    parts = np.concatenate(
        [
            smooth_tracks(X[:, :2500], qt[:2500], half=2, scale=0.005),
            smooth_tracks(X[:, 2500:], qt[2500:], half=2, scale=0.005),
        ],
        axis=1,
    )
    assert np.allclose(whole, parts, equal_nan=True)


def test_flow_smooths_its_output_and_window_zero_turns_it_off(cube_scene) -> None:
    path, _ = cube_scene
    scene = load_scene(path)
    inst = load_instance(path, "cube")
    q = sample_queries(scene, inst, QueryOptions(window="frame", frame=0, voxel=0.03, max_queries=40))
    assert FlowOptions().smooth_window >= 2  # on by default (1 would change nothing: see smooth.py)
    raw = FlowTracker(smooth_window=0).track(scene, q.points, instance=inst)
    out = FlowTracker().track(scene, q.points, instance=inst)
    assert np.isfinite(raw.tracks).all() and np.ptp(raw.tracks[:, :, 0]) > 0.05
    assert not np.array_equal(raw.tracks, out.tracks)
    qt = np.rint(q.points[:, 0]).astype(np.int64)
    expect = smooth_tracks(raw.tracks, qt, half=2, scale=FlowOptions().smooth_scale_m)
    assert np.allclose(
        out.tracks, expect, atol=1e-6
    )  # the loop itself is unchanged: smoothing is a last step
    assert np.array_equal(out.visibility, raw.visibility)
    assert out.provenance["version"] == 8 and out.provenance["smooth_window"] == 2

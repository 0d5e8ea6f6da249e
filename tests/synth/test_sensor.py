"""The sensor model's generated noise has the statistics its preset states; the ground truth stays exact."""

from __future__ import annotations

import numpy as np
import pytest

from masktrack.synth import SynthConfig, render_scene
from masktrack.synth.sensor import SENSORS, get_sensor, perturb_extrinsics


@pytest.mark.parametrize("name", ["realsense-d435", "azure-kinect"])
@pytest.mark.parametrize("z", [0.6, 1.0, 2.0])
def test_axial_noise_on_a_flat_bright_wall_matches_sigma_of_z(name: str, z: float) -> None:
    s = get_sensor(name)
    depth = np.full((200, 200), z, np.float32)
    out = s.apply_depth(depth, np.full(depth.shape, 0.8), np.random.default_rng(0))
    assert (out > 0).all()  # no edges, bright: no holes
    err = out.astype(np.float64) - z
    assert err.std() > 0
    # quantisation to 1 mm adds variance q^2 / 12
    expected = np.sqrt(s.sigma(z) ** 2 + s.quant_m**2 / 12)
    assert abs(err.std() / expected - 1) < 0.05, (err.std(), expected)
    assert abs(err.mean()) < 3 * expected / 200  # unbiased (standard error of the mean over 40k pixels x3)
    steps = out.astype(np.float64) / s.quant_m
    assert np.allclose(steps, np.rint(steps), atol=1e-3)  # 1 mm depth units


def test_d435_noise_grows_with_z_squared() -> None:
    s = get_sensor("realsense-d435")
    rng = np.random.default_rng(1)
    stds = []
    for z in (1.0, 2.0, 3.0):
        out = s.apply_depth(np.full((300, 300), z, np.float32), np.ones((300, 300)), rng)
        stds.append((out - z).std())
    # sigma(2)/sigma(1) ~ 4 minus the constant term: far above linear growth
    assert stds[1] / stds[0] > 3.0 and stds[2] / stds[1] > 1.9, stds


def test_dark_surfaces_lose_the_preset_fraction_of_pixels() -> None:
    s = get_sensor("realsense-d435")
    gray = np.where(np.arange(200)[None, :] < 100, 0.05, 0.9).repeat(200, 0)
    out = s.apply_depth(np.full((200, 200), 1.0, np.float32), gray, np.random.default_rng(2))
    dark_holes = (out[:, :100] == 0).mean()
    assert abs(dark_holes - s.dark_invalid) < 0.02, dark_holes
    assert (out[:, 100:] > 0).all()


def test_depth_edges_get_holes_and_flying_pixels_but_flat_regions_do_not() -> None:
    s = get_sensor("azure-kinect")
    depth = np.full((200, 200), 1.5, np.float32)
    depth[:, :100] = 0.8  # a foreground slab: one vertical discontinuity between columns 99 and 100
    rng = np.random.default_rng(3)
    outs = np.stack([s.apply_depth(depth, np.ones(depth.shape), rng) for _ in range(5)])
    edge = outs[:, :, 99:101]
    holes = (edge == 0).mean()
    assert abs(holes - s.edge_invalid) < 0.04, holes
    valid = edge[edge > 0]
    between = ((valid > 0.85) & (valid < 1.45)).mean()  # neither surface: flying pixels
    assert 0.5 * s.flying < between < 1.2 * s.flying, between
    far_from_edge = outs[:, :, 110:]
    assert (far_from_edge > 0).all() and np.abs(far_from_edge - 1.5).max() < 6 * s.sigma(1.5)


def test_ideal_sensor_changes_nothing_and_presets_are_named() -> None:
    d = np.random.default_rng(4).uniform(0.5, 2, (20, 20)).astype(np.float32)
    assert np.array_equal(SENSORS["none"].apply_depth(d, np.ones_like(d), np.random.default_rng(0)), d)
    with pytest.raises(ValueError, match="realsense-d435"):
        get_sensor("kinect-v1")


@pytest.mark.parametrize("mm,deg", [(3.0, 0.3), (10.0, 0.0), (0.0, 1.0)])
def test_calibration_error_has_exactly_the_stated_size(mm: float, deg: float) -> None:
    rng = np.random.default_rng(5)
    R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    R *= np.sign(np.linalg.det(R))
    t = rng.normal(size=3)
    R2, t2 = perturb_extrinsics(R, t, mm, deg, rng)
    assert np.allclose(R2 @ R2.T, np.eye(3)) and np.linalg.det(R2) > 0
    moved = np.linalg.norm((-R2.T @ t2) - (-R.T @ t)) * 1e3
    angle = np.rad2deg(np.arccos(np.clip((np.trace(R2 @ R.T) - 1) / 2, -1, 1)))
    assert moved == pytest.approx(mm, abs=1e-6) and angle == pytest.approx(deg, abs=1e-4)


def test_a_noisy_scene_keeps_exact_ground_truth_and_old_keys() -> None:
    base = SynthConfig.small(frames=3)
    noisy = SynthConfig.small(frames=3, sensor="realsense-d435", calib_mm=3.0, calib_deg=0.3)
    assert "sensor" not in base.to_dict() and noisy.to_dict()["sensor"] == "realsense-d435"
    assert base.key() != noisy.key()
    a, b = render_scene(base), render_scene(noisy)
    assert (a.depths > 0).mean() > 0.5  # non-trivial depth
    for name in a.tracks:
        assert np.array_equal(a.tracks[name].points, b.tracks[name].points)
    assert np.array_equal(a.ids, b.ids)  # masks come from exact geometry
    assert not np.array_equal(a.depths, b.depths) and not np.array_equal(a.rgbs, b.rgbs)
    assert (b.depths == 0).mean() > (a.depths == 0).mean()  # holes
    assert 0.001 < np.abs(a.extrs() - b.extrs()).max() < 0.05  # reported calibration is off
    assert np.array_equal(a.intrs(), b.intrs())

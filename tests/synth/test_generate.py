"""The synthetic scene is deterministic and its ground truth agrees with its images."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from masktrack.io.scene import load_scene
from masktrack.synth import SynthConfig, generate, load_gt_tracks, render_scene
from masktrack.synth import render as R
from masktrack.track.instances import list_instances, load_instance


@pytest.fixture(scope="module")
def small():
    return render_scene(SynthConfig.small())


def test_same_seed_same_arrays(small):
    again = render_scene(SynthConfig.small())
    assert np.array_equal(small.rgbs, again.rgbs)
    assert np.array_equal(small.depths, again.depths)
    assert np.array_equal(small.ids, again.ids)
    for name, g in small.tracks.items():
        assert np.array_equal(g.points, again.tracks[name].points)
        assert np.array_equal(g.visibility, again.tracks[name].visibility)


def test_other_seed_other_scene(small):
    other = render_scene(SynthConfig.small(seed=1))
    assert not np.array_equal(small.rgbs, other.rgbs)


def test_scene_content(small):
    cfg = small.config
    assert small.rgbs.shape == (cfg.cameras, cfg.frames, cfg.height, cfg.width, 3)
    m = small.masks()
    for name in ("gt_arm", "gt_gripper", "gt_object"):
        assert m[name].any(axis=(2, 3)).all(), f"{name} must be seen in every camera and frame"
    assert not (m["gt_arm_only"] & m["gt_gripper"]).any()
    assert np.array_equal(m["gt_arm"], m["gt_arm_only"] | m["gt_gripper"])
    # depth is valid where something was hit, the robot moves, the object gets pushed
    assert (small.depths[small.ids >= 0] > 0).all()
    arm = small.tracks["arm"].points
    assert np.linalg.norm(arm[-1] - arm[0], axis=-1).max() > 0.2
    obj = small.tracks["object"].points
    assert 0.08 < np.linalg.norm(obj[-1] - obj[0], axis=-1).mean() < 0.2
    # gripper opens and closes
    grip = small.joints[:, 3]
    assert grip.max() - grip.min() > 0.02
    # textured: flow needs local contrast on the robot
    g = small.rgbs[0, 0].astype(float).mean(-1)
    grad = np.hypot(*np.gradient(g))
    assert grad[m["gt_arm_only"][0, 0]].mean() > 4


def _project(cam, pts):
    uv, z = cam.project(pts.reshape(-1, 3).astype(np.float64))
    return uv.reshape(*pts.shape[:-1], 2), z.reshape(pts.shape[:-1])


def test_visible_points_land_on_their_mask_with_their_depth(small):
    """Projected visible GT points hit their instance's mask and the rendered depth; occluded ones are behind something."""
    cfg = small.config
    masks = small.masks()
    for name, g in small.tracks.items():
        mk = masks[f"gt_{name}"]
        for c, cam in enumerate(small.cameras):
            uv, z = _project(cam, g.points)
            ui = np.rint(uv).astype(int)
            inside = (
                (ui[..., 0] >= 0)
                & (ui[..., 0] < cfg.width)
                & (ui[..., 1] >= 0)
                & (ui[..., 1] < cfg.height)
                & (z > 0)
            )
            tt, nn = np.nonzero(g.visibility[c])
            assert len(tt) > 50
            u, v = ui[tt, nn, 0], ui[tt, nn, 1]
            # the nearest pixel or (rounding at silhouettes) one of its neighbours is in the mask
            pad = np.pad(mk[c], ((0, 0), (1, 1), (1, 1)))
            near = np.zeros(len(tt), bool)
            for dv in range(3):
                for du in range(3):
                    near |= pad[tt, v + dv, u + du]
            assert near.mean() > 0.99, (name, c, near.mean())
            assert mk[c, tt, v, u].mean() > 0.8, (name, c)
            # where the nearest pixel shows the point's own solid, its depth agrees within the depth change across ~a pixel
            on = small.ids[c, tt, v, u] == g.prim[nn]
            assert on.mean() > 0.8, (name, c, on.mean())
            foot = z[tt, nn] / cam.K[0, 0]
            err = np.abs(small.depths[c, tt, v, u] - z[tt, nn])[on] / foot[on]
            assert np.median(err) < 0.5, (name, c, np.median(err))
            assert (err < 3).mean() > 0.95, (name, c, (err < 3).mean())
            # in-frame points marked occluded have something in front of them
            occ = inside & ~g.visibility[c]
            to, no = np.nonzero(occ)
            front = small.depths[c, to, ui[to, no, 1], ui[to, no, 0]] < z[to, no] - 1e-3
            assert front.mean() > 0.9, (name, c, front.mean())


def test_exact_projection_convention(small):
    """Shift the principal point so a GT point falls exactly on a pixel centre: depth and mask must match exactly."""
    cfg = small.config
    rng = np.random.default_rng(0)
    checked = 0
    for name in ("arm", "gripper", "object"):
        g = small.tracks[name]
        c_idx, t_idx, n_idx = np.nonzero(g.visibility)
        for k in rng.choice(len(c_idx), size=8, replace=False):
            c, t, n = c_idx[k], t_idx[k], n_idx[k]
            cam = small.cameras[c]
            uv, z = cam.project(g.points[t, n].astype(np.float64)[None])
            u0, v0 = np.rint(uv[0]).astype(int)
            shifted = dataclasses.replace(cam, K=cam.K.copy())
            shifted.K[0, 2] += u0 - uv[0, 0]
            shifted.K[1, 2] += v0 - uv[0, 1]
            view = R.ViewRenderer(small.prims, shifted, cfg.height, cfg.width)
            _, depth, ids = view.render(int(t))
            assert abs(depth[v0, u0] - z[0]) < 2e-4, (name, c, t, n, depth[v0, u0], z[0])
            assert small.prims[ids[v0, u0]].instance in (("arm", "gripper") if name == "arm" else (name,))
            checked += 1
    assert checked == 24


def test_generate_writes_and_reuses(tmp_path: Path):
    cfg = SynthConfig.small(frames=4, cameras=2, points=50)
    out = generate(cfg, tmp_path / "s")
    assert not out.reused
    scene = load_scene(out.scene_path)
    assert scene.rgbs.shape == (2, 4, cfg.height, cfg.width, 3)
    assert scene.intrs.shape == (2, 4, 3, 3) and scene.extrs.shape == (2, 4, 3, 4)
    for cid in out.camera_ids:
        assert len(list(out.frames_dir(cid).glob("*.png"))) == 4
    assert {"gt_arm", "gt_gripper", "gt_object"} <= set(list_instances(out.scene_path))
    inst = load_instance(out.scene_path, "gt_gripper")
    assert inst.masks().shape == (2, 4, cfg.height, cfg.width) and inst.masks().any()
    tracks = load_gt_tracks(out.tracks_path)
    assert tracks["object"].points.shape == (4, 50, 3)
    # PNG frames are the scene's RGB
    import cv2

    png = cv2.cvtColor(cv2.imread(str(out.frames_dir(out.camera_ids[1]) / "00003.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(png, scene.rgbs[1, 3])
    again = generate(cfg, tmp_path / "s")
    assert again.reused
    changed = generate(dataclasses.replace(cfg, seed=5), tmp_path / "s")
    assert not changed.reused
    # an interrupted run (no manifest) is never trusted
    (tmp_path / "s" / "synth.json").unlink()
    assert not generate(cfg, tmp_path / "s").reused

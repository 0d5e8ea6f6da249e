"""Robot core: FK against the Panda's published DH parameters, rendering vs analytic shapes, calibration."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from masktrack.robot import RobotModel, RobotModelError, RobotState, occlude, render
from masktrack.robot.calibrate import (
    CalibrationError,
    CameraView,
    check_calibration,
    fit_base_from_ee,
    refine_camera,
    se3,
)


def _has_panda() -> bool:
    if importlib.util.find_spec("trimesh") is None:
        return False
    try:
        from masktrack.robot.model import panda_urdf_path

        p = panda_urdf_path()
    except Exception:
        return False
    return "example-robot-data" not in str(p) or importlib.util.find_spec("collada") is not None


HAS_PANDA = _has_panda()
RLBENCH = Path(__file__).resolve().parents[3] / "shared" / "data" / "rlbench" / "reach_target_episode0.npz"
needs_panda = pytest.mark.skipif(
    not HAS_PANDA, reason="needs trimesh and example-robot-data (+ pycollada) or pybullet"
)

URDF = """<robot name="prim">
  <link name="base"><visual><geometry><box size="0.2 0.2 0.1"/></geometry></visual></link>
  <link name="arm"><visual><origin xyz="0 0 0.25"/><geometry><cylinder radius="0.05" length="0.5"/></geometry>
  </visual></link>
  <link name="ball"><visual><geometry><sphere radius="0.08"/></geometry></visual></link>
  <link name="finger_l"><visual><geometry><box size="0.02 0.02 0.08"/></geometry></visual></link>
  <link name="finger_r"><visual><geometry><box size="0.02 0.02 0.08"/></geometry></visual></link>
  <joint name="j1" type="revolute"><parent link="base"/><child link="arm"/><origin xyz="0 0 0.05"/>
    <axis xyz="0 1 0"/><limit lower="-3" upper="3"/></joint>
  <joint name="j2" type="continuous"><parent link="arm"/><child link="ball"/><origin xyz="0 0 0.5"/>
    <axis xyz="0 0 1"/></joint>
  <joint name="fl" type="prismatic"><parent link="ball"/><child link="finger_l"/><origin xyz="0 0 0.1"/>
    <axis xyz="0 1 0"/><limit lower="0" upper="0.05"/></joint>
  <joint name="fr" type="prismatic"><parent link="ball"/><child link="finger_r"/><origin xyz="0 0 0.1"/>
    <axis xyz="0 -1 0"/><limit lower="0" upper="0.05"/><mimic joint="fl"/></joint>
</robot>
"""
GROUPS = {"arm": ["base", "arm"], "gripper": ["ball", "finger_l", "finger_r"], "left": ["finger_l"]}


@pytest.fixture()
def prim(tmp_path):
    p = tmp_path / "prim.urdf"
    p.write_text(URDF)
    return RobotModel.load(p), str(p)


def _look_down(height: float = 2.0) -> np.ndarray:
    return np.array([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, height]], float)


K128 = np.array([[200.0, 0, 63.5], [0, 200.0, 63.5], [0, 0, 1]])


# --------------------------------------------------------------------------- FK


def _dh_flange(q: np.ndarray) -> np.ndarray:
    """Franka's documented (Craig / modified) DH table -> base-from-flange."""
    a = [0, 0, 0, 0.0825, -0.0825, 0, 0.088, 0]
    d = [0.333, 0, 0.316, 0, 0.384, 0, 0, 0.107]
    al = [0, -np.pi / 2, np.pi / 2, np.pi / 2, -np.pi / 2, np.pi / 2, np.pi / 2, 0]
    th = list(q) + [0.0]
    T = np.eye(4)
    for i in range(8):
        ca, sa, ct, st = np.cos(al[i]), np.sin(al[i]), np.cos(th[i]), np.sin(th[i])
        T = T @ np.array(
            [
                [ct, -st, 0, a[i]],
                [st * ca, ct * ca, -sa, -d[i] * sa],
                [st * sa, ct * sa, ca, d[i] * ca],
                [0, 0, 0, 1],
            ]
        )
    return T


@needs_panda
def test_panda_fk_matches_dh_table():
    m = RobotModel.load("panda")
    assert m.joint_names[:7] == [f"panda_joint{i}" for i in range(1, 8)]
    assert set(m.link_groups) >= {"arm", "gripper", "gripper_left", "gripper_right"}
    # zero configuration: flange at (0.088, 0, 0.926), pointing down (documented home geometry)
    P = m.fk(np.zeros(len(m.joint_names)))["panda_link8"][0]
    np.testing.assert_allclose(P[:3, 3], [0.088, 0, 0.926], atol=1e-6)
    np.testing.assert_allclose(P[:3, 2], [0, 0, -1], atol=1e-6)
    rng = np.random.default_rng(0)
    qs = np.c_[rng.uniform(-2, 2, (20, 7)), np.zeros(20)]
    P = m.fk(qs)["panda_link8"]
    for q, p in zip(qs, P):
        np.testing.assert_allclose(p, _dh_flange(q[:7]), atol=1e-9)


@needs_panda
def test_panda_mimic_finger_and_missing_joint_error():
    m = RobotModel.load("panda")
    P = m.fk(np.r_[np.zeros(7), 0.03])
    left = np.linalg.inv(P["panda_hand"][0]) @ P["panda_leftfinger"][0]
    right = np.linalg.inv(P["panda_hand"][0]) @ P["panda_rightfinger"][0]
    assert left[1, 3] == pytest.approx(0.03) and right[1, 3] == pytest.approx(-0.03)
    # arm joints only: fingers unrequested -> fine; requested -> clear error naming the joint
    arm = m.fk(np.zeros(7), m.joint_names[:7], links=["panda_hand"])
    assert arm["panda_hand"].shape == (1, 4, 4)
    with pytest.raises(RobotModelError, match="panda_finger_joint1"):
        m.fk(np.zeros(7), m.joint_names[:7], links=["panda_leftfinger"])


# --------------------------------------------------------------------------- rendering


def test_render_primitives_match_analytic_shapes(prim):
    m, ref = prim
    st = RobotState(ref, ["j1", "j2", "fl"], np.zeros((1, 3)))
    r = render(m, st, K128, _look_down(), 128, 128, groups={"ball": ["ball"], "base": ["base"]})
    ball = r.masks("ball")[0]
    # sphere at z = 0.55 (camera 1.45 m away): silhouette radius f r / sqrt(D^2 - r^2)
    D, rad = 1.45, 0.08
    rp = 200 * rad / np.sqrt(D**2 - rad**2)
    v, u = np.mgrid[0:128, 0:128]
    disc = (u - 63.5) ** 2 + (v - 63.5) ** 2 <= rp**2
    assert disc.sum() > 300
    iou = (ball & disc).sum() / (ball | disc).sum()
    assert iou > 0.93
    assert r.depth[0][63, 63] == pytest.approx(D - rad, abs=2e-3)
    # the box top (0.2 m at 1.95 m -> 20 px square) is partly hidden by the ball, never drawn over it
    base = r.masks("base")[0]
    assert base.any() and not (base & ball).any()
    box = (np.abs(u - 63.5) <= 200 * 0.1 / 1.95) & (np.abs(v - 63.5) <= 200 * 0.1 / 1.95)
    assert ((base | ball) & box).sum() / box.sum() > 0.95


def test_render_frames_groups_and_mimic(prim):
    m, ref = prim
    q = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.04]])
    st = RobotState(ref, ["j1", "j2", "fl"], q)
    E = np.array([[0, 1, 0, 0], [0, 0, -1, 0.6], [-1, 0, 0, 2.0]], float)  # side view along -x
    r = render(m, st, K128, E, 128, 128, groups=GROUPS, frames=[1])
    assert r.link_labels.shape == (1, 128, 128) and list(r.frames) == [1]
    left = r.masks("left")[0]
    grip = r.masks("gripper")[0]
    assert left.any() and (left <= grip).all()
    labels = r.labels[0]
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_occlude_removes_pixels_in_front(prim):
    m, ref = prim
    st = RobotState(ref, ["j1", "j2", "fl"], np.zeros((1, 3)))
    r = render(m, st, K128, _look_down(), 128, 128, groups=GROUPS)
    before = r.masks("gripper")
    assert before.sum() > 100
    meas = np.where(r.depth > 0, r.depth + 0.002, 3.0).astype(np.float32)
    meas[:, :, :64] = np.where(
        r.depth[:, :, :64] > 0, r.depth[:, :, :64] - 0.2, 3.0
    )  # a hand in front, left half
    o = occlude(r, meas, margin=0.03)
    after = o.masks("gripper")
    assert not after[:, :, :64].any()
    np.testing.assert_array_equal(after[:, :, 64:], before[:, :, 64:])


# --------------------------------------------------------------------------- calibration


def _scene(m, ref, q, E, background=2.0):
    st = RobotState(ref, ["j1", "j2", "fl"], q)
    r = render(m, st, K128, E, 128, 128, groups=GROUPS)
    depth = np.where(r.depth > 0, r.depth, background).astype(np.float32)
    return st, depth


def test_refine_camera_recovers_perturbation(prim):
    m, ref = prim
    T = 6
    q = np.c_[np.linspace(-0.6, 0.6, T), np.linspace(0, 1.5, T), np.full(T, 0.03)]
    E = np.array([[1, 0, 0, 0], [0, 0.6, -0.8, 0.5], [0, 0.8, 0.6, 1.5]], float)
    st, depth = _scene(m, ref, q, E, background=2.2)
    P = se3(np.radians([0.3, -0.3, 0.25]), [0.004, -0.003, 0.002])
    view = CameraView("cam", K128, E, depth)
    rc = refine_camera(m, st, view, initial=P, frames=np.arange(T))
    err = rc.correction
    assert np.linalg.norm(err[:3, 3]) < 1e-3  # back to identity: within 1 mm
    assert np.degrees(np.arccos(np.clip((np.trace(err[:3, :3]) - 1) / 2, -1, 1))) < 0.1
    assert rc.residual_mm_after < rc.residual_mm_before


def test_bad_calibration_is_a_clear_error(prim):
    m, ref = prim
    T = 4
    q = np.c_[np.linspace(-0.5, 0.5, T), np.zeros(T), np.full(T, 0.03)]
    E = np.array([[1, 0, 0, 0], [0, 0.6, -0.8, 0.5], [0, 0.8, 0.6, 1.5]], float)
    st, depth = _scene(m, ref, q, E, background=2.2)
    good = render(m, st, K128, E, 128, 128, groups=GROUPS).depth
    assert check_calibration(good, depth, "cam").ok
    wrong = st.with_offsets({"j1": 0.4})
    bad = render(m, wrong, K128, E, 128, 128, groups=GROUPS).depth
    with pytest.raises(CalibrationError, match="camera cam"):
        check_calibration(bad, depth, "cam")


@needs_panda
def test_fit_base_from_ee_recovers_known_pose_and_offset():
    m = RobotModel.load("panda")
    rng = np.random.default_rng(1)
    T = 40
    q = np.cumsum(rng.normal(0, 0.05, (T, 7)), 0) + np.array([0, -0.3, 0, -2.0, 0, 1.8, 0.8])
    B = se3([0.0, 0.0, 0.3], [-0.3, 0.05, 0.75])
    tool = m.tool_from_ee @ se3([0, 0, np.pi], [0, 0, 0])
    truth_q = q.copy()
    truth_q[:, 3] += 0.07
    G = B[None] @ m.fk(truth_q, m.joint_names[:7], links=["panda_hand"])["panda_hand"] @ tool[None]
    fit = fit_base_from_ee(m, m.joint_names[:7], q, G, "panda_hand", tool_from_link=m.tool_from_ee)
    assert fit.joint_offsets["panda_joint4"] == pytest.approx(0.07, abs=2e-3)
    np.testing.assert_allclose(fit.base_pose[:3, 3], B[:3, 3], atol=2e-3)
    np.testing.assert_allclose(fit.base_pose[:3, :3], B[:3, :3], atol=2e-3)
    assert fit.residual_mm < 1.0


@needs_panda
@pytest.mark.skipif(not RLBENCH.is_file(), reason="needs ../shared/data/rlbench")
def test_rlbench_render_agrees_with_ground_truth():
    from masktrack.eval.davis import jaccard

    d = np.load(RLBENCH)
    m = RobotModel.load("panda")
    names = m.joint_names[:7] + ["panda_finger_joint1", "panda_finger_joint2"]
    q = np.c_[d["joint_positions"], d["gripper_joint_positions"]].astype(float)
    fit = fit_base_from_ee(m, names, q, d["gripper_matrix"], m.ee_link, tool_from_link=m.tool_from_ee)
    assert fit.joint_offsets["panda_joint4"] == pytest.approx(0.07, abs=0.01)  # CoppeliaSim's Panda
    st = fit.apply(RobotState("panda", names, q))
    fr = list(range(0, 70, 10))
    r = render(m, st, d["intrs"][1, 0], d["extrs"][1], 128, 128, frames=fr)  # left_shoulder
    gt = d["gt_masks_arm"][1, fr]
    assert gt.any() and r.masks("arm").any()
    assert np.mean([jaccard(a, b) for a, b in zip(r.masks("arm"), gt)]) > 0.85
    assert check_calibration(r.depth, d["depths"][1, fr, 0], "left_shoulder").ok


def test_mounted_camera_follows_its_link(prim):
    m, ref = prim
    T = 3
    q = np.c_[np.linspace(-0.4, 0.4, T), np.zeros(T), np.full(T, 0.02)]
    cam_from_ball = np.linalg.inv(se3([np.pi, 0, 0], [0.0, 0.0, 0.35]))  # looking down at the fingers
    st = RobotState(ref, ["j1", "j2", "fl"], q, mounted_cameras={"wrist": ("ball", cam_from_ball)})
    r = render(m, st, K128, None, 128, 128, groups=GROUPS, camera_id="wrist")
    assert r.masks("gripper").sum() > 200
    # the fingers ride with the camera: the same pixels at every frame
    np.testing.assert_array_equal(r.masks("left")[0], r.masks("left")[-1])
    world_from_ball = m.fk(q, ["j1", "j2", "fl"], links=["ball"])["ball"]
    E = cam_from_ball[None] @ np.linalg.inv(world_from_ball)
    r2 = render(m, st, K128, E, 128, 128, groups=GROUPS)
    np.testing.assert_array_equal(r.link_labels, r2.link_labels)


@pytest.mark.skipif(importlib.util.find_spec("mujoco") is None, reason="needs mujoco")
def test_mjcf_model_matches_urdf(prim, tmp_path):
    m, _ = prim
    xml = tmp_path / "prim.xml"
    xml.write_text(
        """<mujoco model="prim"><worldbody><geom type="plane" size="1 1 0.1"/>
        <body name="base"><geom type="box" size="0.1 0.1 0.05"/>
          <body name="arm" pos="0 0 0.05"><joint name="j1" type="hinge" axis="0 1 0"/>
            <geom type="cylinder" size="0.05 0.25" pos="0 0 0.25"/>
            <body name="ball" pos="0 0 0.5"><joint name="j2" type="hinge" axis="0 0 1"/>
              <geom type="sphere" size="0.08"/></body></body></body></worldbody></mujoco>"""
    )
    mj = RobotModel.load(xml)
    assert mj.joint_names == ["j1", "j2"]
    q = np.array([[0.3, 0.2]])
    np.testing.assert_allclose(mj.fk(q)["ball"], m.fk(np.c_[q, 0.0], ["j1", "j2", "fl"])["ball"], atol=1e-9)
    groups = {"all": ["base", "arm", "ball"]}
    a = render(mj, RobotState(str(xml), ["j1", "j2"], q), K128, _look_down(), 128, 128, groups=groups)
    b = render(
        m, RobotState("p", ["j1", "j2", "fl"], np.c_[q, 0.0]), K128, _look_down(), 128, 128, groups=groups
    )
    am, bm = a.masks("all")[0], b.masks("all")[0]
    assert am.sum() > 300
    assert (am ^ bm).sum() < 0.02 * am.sum()  # MuJoCo's primitives are tessellated by us the same way


def test_robot_height_from_depth_recovers_a_base_shift(prim):
    from masktrack.robot.calibrate import refine_robot_from_depth

    m, ref = prim
    T = 5
    q = np.c_[np.linspace(-0.6, 0.6, T), np.linspace(0, 1.0, T), np.full(T, 0.03)]
    cams = [
        np.array([[1, 0, 0, 0], [0, 0.6, -0.8, 0.5], [0, 0.8, 0.6, 1.5]], float),
        np.array([[0, 1, 0, 0], [0.6, 0, -0.8, 0.5], [-0.8, 0, -0.6, 1.5]], float),
    ]
    views = []
    for i, E in enumerate(cams):
        st, depth = _scene(m, ref, q, E, background=2.5)
        views.append(CameraView(f"cam{i}", K128, E, depth))
    wrong = RobotState(ref, ["j1", "j2", "fl"], q, base_pose=se3([0, 0, 0], [0.004, -0.003, 0.012]))
    fixed, S = refine_robot_from_depth(m, wrong, views, frames=np.arange(T))
    np.testing.assert_allclose(S[:3, 3], [-0.004, 0.003, -0.012], atol=1e-3)
    np.testing.assert_allclose(fixed.base_pose, np.eye(4), atol=1e-3)

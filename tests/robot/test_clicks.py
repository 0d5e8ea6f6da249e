"""Base pose from clicked correspondences: recovery from synthetic clicks, refusal when under-determined."""

from __future__ import annotations

import json

import numpy as np
import pytest

from masktrack.errors import SceneError
from masktrack.robot import RobotModel
from masktrack.robot.calibrate import matrix_to_rotvec, se3
from masktrack.robot.clicks import ClickFitError, RobotClick, fit_base_from_clicks, read_clicks

from .test_robot import needs_panda

K = np.array([[600.0, 0, 319.5], [0, 600.0, 239.5], [0, 0, 1]])


def _look_at(eye, target) -> np.ndarray:
    """World-to-camera [4,4] of a camera at ``eye`` looking at ``target`` (z forward, y down)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0, 0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    E = np.eye(4)
    E[:3, :3] = R
    E[:3, 3] = -R @ eye
    return E


def _scene(rng):
    m = RobotModel.load("panda")
    T = 30
    q = np.linspace([0.3, -0.5, 0.1, -2.2, 0.0, 1.6, 0.6], [-0.4, 0.2, -0.2, -1.6, 0.3, 2.1, 1.0], T)
    names = m.joint_names[:7]
    B = se3([0.01, -0.02, 0.4], [-0.35, 0.12, 0.76])
    extrs = {
        "front": _look_at([1.2, 0.1, 1.4], [-0.2, 0.1, 1.0]),
        "left": _look_at([0.2, 1.3, 1.5], [-0.2, 0.1, 1.0]),
    }
    return m, names, q, B, extrs


def _clicks(m, names, q, B, extrs, spec, rng, offset4=0.0, noise=0.5):
    qq = q.copy()
    qq[:, 3] += offset4
    out = []
    for cam, frame, link, point in spec:
        T = m.fk(qq[frame : frame + 1], names, links=[link])[link][0]
        X = B @ T @ np.array([*point, 1.0])
        c = extrs[cam] @ X
        assert c[2] > 0.2
        uv = (K @ c[:3])[:2] / c[2] + rng.normal(0, noise, 2)
        out.append(RobotClick(cam, frame, (float(uv[0]), float(uv[1])), link, tuple(point)))
    return out


SPEC = [
    ("front", 0, "panda_link4", (0, 0, 0)),
    ("front", 10, "panda_hand", (0, 0, 0.1034)),
    ("front", 29, "panda_link6", (0, 0, 0)),
    ("front", 20, "panda_link2", (0, 0, 0)),
    ("left", 5, "panda_link3", (0, 0, 0)),
    ("left", 15, "panda_hand", (0, 0, 0.1034)),
    ("left", 25, "panda_link5", (0, 0, 0)),
    ("left", 29, "panda_link7", (0, 0, 0)),
]


def _angle_deg(A, B) -> float:
    return float(np.degrees(np.linalg.norm(matrix_to_rotvec(A[:3, :3].T @ B[:3, :3]))))


@needs_panda
def test_clicks_recover_known_base_pose():
    rng = np.random.default_rng(3)
    m, names, q, B, extrs = _scene(rng)
    clicks = _clicks(m, names, q, B, extrs, SPEC, rng)
    # the problem is non-trivial: the identity base puts the points far from the clicks
    fit = fit_base_from_clicks(m, names, q, clicks, {"front": K, "left": K}, extrs)
    assert np.linalg.norm(B[:3, 3]) > 0.5
    assert np.linalg.norm(fit.base_pose[:3, 3] - B[:3, 3]) < 0.005
    assert _angle_deg(fit.base_pose, B) < 0.5
    assert 0.1 < fit.residual_px < 1.5  # 0.5 px noise per axis
    assert fit.per_click_px.shape == (8,)


@needs_panda
def test_clicks_recover_joint_offset():
    rng = np.random.default_rng(4)
    m, names, q, B, extrs = _scene(rng)
    spec = SPEC + [(c, f, "panda_hand", (0, 0, 0.1034)) for c in ("front", "left") for f in (3, 8, 18, 27)]
    clicks = _clicks(m, names, q, B, extrs, spec, rng, offset4=0.07)
    plain = fit_base_from_clicks(m, names, q, clicks, {"front": K, "left": K}, extrs)
    fit = fit_base_from_clicks(
        m, names, q, clicks, {"front": K, "left": K}, extrs, fit_joint_offsets=["panda_joint4"]
    )
    assert fit.joint_offsets["panda_joint4"] == pytest.approx(0.07, abs=0.01)
    assert np.linalg.norm(fit.base_pose[:3, 3] - B[:3, 3]) < 0.01
    assert fit.residual_px < plain.residual_px / 2  # the offset explains what a base pose cannot


@needs_panda
def test_too_few_or_degenerate_clicks_are_refused():
    rng = np.random.default_rng(5)
    m, names, q, B, extrs = _scene(rng)
    clicks = _clicks(m, names, q, B, extrs, SPEC, rng)
    with pytest.raises(ClickFitError, match=r"3 click\(s\) cannot determine the base pose: need at least 4"):
        fit_base_from_clicks(m, names, q, clicks[:3], {"front": K, "left": K}, extrs)
    same = [clicks[0]] * 5  # one robot point clicked five times
    with pytest.raises(ClickFitError, match="on one line"):
        fit_base_from_clicks(m, names, q, same, {"front": K, "left": K}, extrs)
    with pytest.raises(ClickFitError, match="need at least 5"):
        fit_base_from_clicks(
            m, names, q, clicks[:4], {"front": K, "left": K}, extrs, fit_joint_offsets=["panda_joint4"]
        )


@needs_panda
def test_read_clicks_reports_every_problem(tmp_path):
    m = RobotModel.load("panda")
    p = tmp_path / "clicks.json"
    p.write_text(
        json.dumps(
            {
                "clicks": [
                    {"camera": "front", "frame": 3, "uv": [10, 20.5], "link": "panda_hand", "point": "tcp"},
                    {"camera": "nope", "frame": 99, "uv": [1], "link": "panda_link99"},
                ],
                "fit_joint_offsets": ["panda_joint4"],
            }
        )
    )
    with pytest.raises(SceneError) as e:
        read_clicks(p, m, camera_ids=["front"], num_frames=30)
    text = "\n".join(e.value.lines())
    for f in ("clicks[1].camera", "clicks[1].frame", "clicks[1].uv", "clicks[1].link"):
        assert f in text
    assert "clicks[0]" not in text
    data = json.loads(p.read_text())
    data["clicks"] = data["clicks"][:1]
    p.write_text(json.dumps(data))
    cf = read_clicks(p, m, camera_ids=["front"], num_frames=30)
    assert cf.clicks[0].point == pytest.approx((0, 0, 0.1034))
    assert cf.fit_joint_offsets == ["panda_joint4"]


@needs_panda
def test_scene_import_with_base_clicks(tmp_path, capsys):
    from masktrack.cli.main import main
    from masktrack.io.scene import load_scene

    rng = np.random.default_rng(6)
    m, names, q, B, extrs = _scene(rng)
    T, H, W = len(q), 12, 16
    cams = ["front", "left"]
    npz = tmp_path / "ep.npz"
    np.savez(
        npz,
        rgbs=np.zeros((2, T, 3, H, W), np.uint8),
        depths=np.ones((2, T, 1, H, W), np.float32),
        intrs=np.broadcast_to(K.astype(np.float32), (2, T, 3, 3)),
        extrs=np.stack([np.broadcast_to(extrs[c][:3].astype(np.float32), (T, 3, 4)) for c in cams]),
        camera_ids=np.array(cams),
        joint_positions=q.astype(np.float32),
        gripper_joint_positions=np.full((T, 2), 0.03, np.float32),
    )
    clicks = _clicks(m, names, q, B, extrs, SPEC, rng)
    f = tmp_path / "clicks.json"
    rows = [
        {"camera": c.camera, "frame": c.frame, "uv": list(c.uv), "link": c.link, "point": list(c.point)}
        for c in clicks
    ]
    f.write_text(json.dumps({"clicks": rows}))
    out = tmp_path / "scene"
    args = ["scene", "import", str(npz), str(out), "--robot-model", "panda", "--no-robot-refine"]
    rc = main([*args, "--robot-base-clicks", str(f)])
    assert rc == 0, capsys.readouterr().err
    assert "base fitted to 8 clicks" in capsys.readouterr().out
    r = load_scene(out).robot
    assert r is not None and r.source["base_fit"]["residual_px"] < 1.5
    assert np.linalg.norm(r.base_pose[:3, 3] - B[:3, 3]) < 0.005 and _angle_deg(r.base_pose, B) < 0.5
    # three clicks: one line naming the file, exit 2, nothing written
    f.write_text(json.dumps({"clicks": rows[:3]}))
    out2 = tmp_path / "scene2"
    rc = main(
        ["scene", "import", str(npz), str(out2), "--robot-model", "panda", "--robot-base-clicks", str(f)]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert str(f) in err and "cannot determine the base pose" in err
    assert not (out2 / "scene.json").exists()

"""Robot state in the scene format: round trip, validation (every problem at once), NPZ import."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from masktrack.cli.main import main
from masktrack.errors import SceneError
from masktrack.io.scene import load_scene, save_scene
from masktrack.io.scene_robot import SceneRobot, load_scene_robot
from masktrack.robot.scene_state import load_robot_model, robot_state


def _needs_panda() -> None:
    """Skip unless the built-in Panda loads (example-robot-data + pycollada, or pybullet)."""
    try:
        from masktrack.robot.model import RobotModel

        RobotModel.load("panda")
    except Exception as exc:  # any missing package or mesh reader means "not installed"
        pytest.skip(f"the built-in Panda model is not available: {exc}")


def test_round_trip_and_state(synth_robot, tmp_path: Path) -> None:
    sc = load_scene(synth_robot.scene_path)
    robot = sc.robot
    assert robot is not None and robot.model == "robot.urdf" and robot.model_path().is_file()
    # a per-frame base pose, a mounted camera and an offset survive a save / load
    base = np.tile(np.eye(4), (sc.num_frames, 1, 1))
    base[:, 0, 3] = np.linspace(0, 0.1, sc.num_frames)
    robot.base_pose = base
    robot.joint_offsets = {"yaw": 0.01}
    robot.mounted_cameras = {sc.camera_ids[1]: ("palm", np.eye(4))}
    dst = tmp_path / "scene"
    shutil.copytree(synth_robot.scene_path, dst)  # the URDF travels with the scene
    sc.robot = robot
    save_scene(sc, dst)
    back = load_scene(dst).robot
    assert back is not None and np.allclose(back.base_pose, base) and back.joint_offsets == {"yaw": 0.01}
    assert (
        list(back.mounted_cameras) == [sc.camera_ids[1]]
        and back.mounted_cameras[sc.camera_ids[1]][0] == "palm"
    )
    state = robot_state(back)
    assert state.positions.shape == (sc.num_frames, 6) and state.base_at().shape == (sc.num_frames, 4, 4)
    assert state.positions_with_offsets()[0, 0] == pytest.approx(back.positions[0, 0] + 0.01)


def _broken_scene(synth_robot, tmp_path: Path) -> Path:
    dst = tmp_path / "scene"
    shutil.copytree(synth_robot.scene_path, dst)
    meta_path = dst / "robot" / "robot.json"
    meta = json.loads(meta_path.read_text())
    meta["joint_names"] = meta["joint_names"][:-1] + ["yaw"]  # a duplicate, and 6 names for 6 columns
    rot = np.eye(4)
    rot[0, 0] = 2.0
    meta["base_pose"] = rot.tolist()  # not a rotation
    meta["joint_offsets"] = {"knee": 0.1}
    meta["mounted_cameras"] = {"cam9": {"link": "palm", "camera_from_link": np.eye(4).tolist()}}
    meta_path.write_text(json.dumps(meta))
    q = np.load(dst / "robot" / "joint_positions.npy")
    q[2, 1] = np.nan
    np.save(dst / "robot" / "joint_positions.npy", q[:-1])  # one frame short, with a NaN
    return dst


def test_every_problem_at_once_naming_file_and_field(synth_robot, tmp_path: Path, capsys) -> None:
    dst = _broken_scene(synth_robot, tmp_path)
    with pytest.raises(SceneError) as e:
        load_scene(dst)
    lines = e.value.lines()
    text = "\n".join(lines)
    expect = [
        "robot/robot.json:joint_names: duplicate joint name(s): yaw",
        "robot/joint_positions.npy:joint_positions: 7 frames, the scene has 8",
        "robot/joint_positions.npy:joint_positions: has NaN or inf values",
        "robot/robot.json:base_pose: rotation part is not orthonormal",
        "robot/robot.json:joint_offsets.knee: not one of joint_names",
        "robot/robot.json:mounted_cameras.cam9: unknown camera 'cam9'",
    ]
    for x in expect:
        assert x in text, (x, text)
    assert all(line.startswith(str(dst)) for line in lines) and len(lines) >= len(expect)
    # the CLI prints the same lines and exits 2, no traceback
    assert main(["scene", "info", str(dst)]) == 2
    err = capsys.readouterr().err
    assert err.count("masktrack: error:") == len(lines) and "Traceback" not in err


def test_missing_base_pose_and_unknown_model_names(synth_robot, tmp_path: Path) -> None:
    dst = tmp_path / "scene"
    shutil.copytree(synth_robot.scene_path, dst)
    meta_path = dst / "robot" / "robot.json"
    meta = json.loads(meta_path.read_text())
    meta["base_pose"] = None
    meta["model"] = "missing.urdf"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SceneError) as e:
        load_scene_robot(dst, num_frames=8)
    text = str(e.value)
    assert "robot/robot.json:base_pose: missing" in text and "model file not found" in text
    # names the model does not have are caught when the model is loaded
    meta["base_pose"], meta["model"] = np.eye(4).tolist(), "robot.urdf"
    meta["joint_names"] = [
        "yaw",
        "shoulder_pitch",
        "elbow_pitch",
        "wrist_pitch",
        "knee",
        "finger_right_joint",
    ]
    meta["link_groups"] = {"tool": ["palm", "sponge"]}
    meta_path.write_text(json.dumps(meta))
    robot = load_scene_robot(dst, num_frames=8)
    assert isinstance(robot, SceneRobot)
    with pytest.raises(SceneError) as e:
        load_robot_model(robot)
    text = str(e.value)
    assert "joint_names: not joints of model 'robot.urdf': knee" in text and "link_groups.tool" in text


def test_rlbench_npz_import_with_robot_state(shared_data: Path, tmp_path: Path, capsys) -> None:
    _needs_panda()
    RLBENCH = shared_data / "rlbench" / "reach_target_episode0.npz"
    out = tmp_path / "scene"
    rc = main(
        [
            "scene",
            "import",
            str(RLBENCH),
            str(out),
            "--robot-model",
            "panda",
            "--robot-mount",
            "wrist=panda_hand",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "base fitted to gripper_matrix" in capsys.readouterr().out
    sc = load_scene(out)
    r = sc.robot
    assert r is not None and r.model == "panda" and r.positions.shape == (70, 9)
    assert r.joint_names[:7] == [f"panda_joint{i}" for i in range(1, 8)] and r.joint_names[7:] == [
        "panda_finger_joint1",
        "panda_finger_joint2",
    ]
    with np.load(RLBENCH) as z:
        q = np.concatenate([z["joint_positions"], z["gripper_joint_positions"]], 1)
        ee = z["gripper_matrix"].astype(np.float64)
        extr = z["extrs"][4].astype(np.float64)
    assert np.allclose(r.positions, q, atol=1e-6)
    assert r.source["base_fit"]["residual_mm"] < 2.0
    cal = r.source["calibration"]  # depth refinement: every static camera agrees with the render afterwards
    for cam in ("front", "left_shoulder", "right_shoulder", "overhead", "wrist"):
        chk = cal["cameras"][cam]["check"]
        assert chk["ok"] and chk["residual_mm"] < 5 and chk["pixels"] > 1000, (cam, chk)
    assert set(r.camera_corrections) <= set(sc.camera_ids) and r.camera_corrections
    assert r.joint_offsets.get("panda_joint4", 0) == pytest.approx(0.07, abs=0.02)  # the simulator's offset
    # the fitted base + offsets reproduce the recorded end-effector track
    model = load_robot_model(r)
    state = robot_state(r, model)
    fk = model.fk(state.positions_with_offsets(), state.joint_names, links=["panda_hand"])["panda_hand"]
    tool = state.base_at() @ fk @ model.tool_from_ee
    assert np.abs(tool[:, :3, 3] - ee[:, :3, 3]).max() < 0.01
    # without depth refinement, the wrist camera's mount reproduces its recorded extrinsics
    from masktrack.robot.render import camera_from_world

    raw = tmp_path / "raw"
    assert main(["scene", "import", str(RLBENCH), str(raw), "--robot-model", "panda",
                 "--robot-mount", "wrist=panda_hand", "--no-robot-refine"]) == 0  # fmt: skip
    r = load_scene(raw).robot
    assert "calibration" not in r.source and not r.camera_corrections
    model = load_robot_model(r)
    e = camera_from_world(model, robot_state(r, model), "wrist", np.arange(70))
    assert np.abs(e[:, :3, 3] - extr[:, :3, 3]).max() < 0.002
    assert np.abs(e[:, :3, :3] - extr[:, :3, :3]).max() < 0.002


def test_npz_robot_errors_all_at_once(tmp_path: Path) -> None:
    _needs_panda()
    from masktrack.io.scene_import import import_npz
    from masktrack.io.scene_robot import RobotImport
    from masktrack.robot.scene_state import read_npz_robot

    C, T, H, W = 2, 3, 8, 8
    extr = np.zeros((C, T, 3, 4), np.float32)
    extr[..., :3, :3] = np.eye(3)
    extr[..., 2, 3] = 1
    npz = tmp_path / "ep.npz"
    np.savez(
        npz,
        rgbs=np.zeros((C, T, 3, H, W), np.uint8),
        depths=np.ones((C, T, 1, H, W), np.float32),
        intrs=np.broadcast_to(np.array([[10, 0, 4], [0, 10, 4], [0, 0, 1.0]], np.float32), (C, T, 3, 3)),
        extrs=extr,
        joint_positions=np.zeros((T + 1, 7), np.float32),
    )
    spec = RobotImport(model="panda", mounts={"cam7": "panda_sponge"}, ee="gripper_matrix")
    with pytest.raises(SceneError) as e:
        import_npz(npz, tmp_path / "scene", robot=functools.partial(read_npz_robot, spec=spec))
    text = str(e.value)
    for x in (
        "joint_positions: shape (4, 7), expected [T=3, J]",
        "gripper_joint_positions: missing key",
        "--robot-mount cam7: unknown camera",
        "'panda_sponge' is not a link",
        "--robot-base: no base pose",
    ):
        assert x in text, (x, text)
    assert not (tmp_path / "scene" / "scene.json").exists()  # nothing half-written

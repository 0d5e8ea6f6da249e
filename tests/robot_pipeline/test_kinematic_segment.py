"""Kinematic prompts through ``masktrack segment``: zero clicks, any backend, and the kinematic backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masktrack.cli.main import main
from masktrack.masks.store import MaskStore
from masktrack.track.instances import load_instance

from .conftest import iou, write_config

CONFIG = """
video: {root}/frames/{cam}
output: {out}
robot: {{scene: {root}/scene, camera: {cam}}}
sessions:
  - name: arm
    backend: classic
    kinematics: {{objects: {{arm: arm}}}}
  - name: gripper
    kinematics: {{objects: {{gripper: gripper}}, mode: prior}}
  - name: rendered
    kinematics: {{objects: {{arm_r: arm, left: gripper_left}}, mode: render}}
compose:
  arm_only: "dilate(arm.arm, 3) - dilate(gripper.gripper, 3)"
"""


def _mean_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean([iou(p, g) for p, g in zip(pred, gt, strict=True) if g.any()]))


def test_kinematic_sessions_through_the_cli(synth_robot, tmp_path: Path, capsys) -> None:
    cam = synth_robot.camera_ids[0]
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", CONFIG.format(root=synth_robot.root, cam=cam, out=out))
    assert main(["segment", str(cfg), "--no-progress"]) == 0
    store = MaskStore(out)
    gt_arm = load_instance(synth_robot.scene_path, "gt_arm").masks(0)
    gt_grip = load_instance(synth_robot.scene_path, "gt_gripper").masks(0)
    gt_left = load_instance(synth_robot.scene_path, "gt_finger_left").masks(0)
    assert gt_arm.sum() > 0 and gt_grip.sum() > 0
    arm = store.session("arm").read_object("arm")
    grip = store.session("gripper").read_object("gripper")
    arm_r = store.session("rendered").read_object("arm_r")
    left = store.session("rendered").read_object("left")
    assert arm.any(axis=(1, 2)).all() and grip.any(axis=(1, 2)).all()  # every frame has a mask
    assert _mean_iou(arm, gt_arm) > 0.85  # classic backend from rendered prompts, zero clicks
    assert _mean_iou(grip, gt_grip) > 0.8  # kinematic prior, refined to edges
    assert _mean_iou(arm_r, gt_arm) > 0.95  # the render itself
    assert _mean_iou(left, gt_left) > 0.7 and iou(left[0], gt_grip[0] & ~gt_left[0]) < 0.2
    # the prompt masks are on disk, hashed into the session key like any prompt mask
    assert sorted(p.name for p in (out / "kinematics" / "arm" / "arm").glob("*.png"))[0] == "00000.png"
    # a second run reuses every session
    capsys.readouterr()
    assert main(["segment", str(cfg), "--no-progress"]) == 0
    out_text = capsys.readouterr().out
    assert "reused" in out_text and "computed" not in out_text
    # composition works unchanged on the results
    assert main(["compose", str(cfg)]) == 0


def test_changed_joint_states_are_refused_then_recomputed(synth_robot, tmp_path: Path, capsys) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synth_robot.root, root)
    cam = synth_robot.camera_ids[0]
    text = (
        f"video: {root}/frames/{cam}\noutput: {tmp_path}/out\nrobot: {{scene: {root}/scene, camera: {cam}}}\n"
        "sessions:\n  - name: arm\n    kinematics: {objects: {arm: arm}, mode: render, check: CHECK}\n"
    )
    cfg = write_config(tmp_path / "job.yaml", text.replace("CHECK", "true"))
    assert main(["segment", str(cfg), "--no-progress"]) == 0
    key = MaskStore(tmp_path / "out").session("arm").require_manifest().key
    q = np.load(root / "scene" / "robot" / "joint_positions.npy")
    q[:, 0] += 0.2  # turn the arm: joint states that no longer match the images
    np.save(root / "scene" / "robot" / "joint_positions.npy", q)
    capsys.readouterr()
    # the rendered robot now disagrees with the measured depth: refused with the numbers, nothing written
    assert main(["segment", str(cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "rendered robot and measured depth disagree in camera" in err and "kinematics.check" in err
    assert MaskStore(tmp_path / "out").session("arm").require_manifest().key == key
    # without the check the new joint states make a new session key
    write_config(tmp_path / "job.yaml", text.replace("CHECK", "false"))
    assert main(["segment", str(cfg), "--no-progress"]) == 0
    assert MaskStore(tmp_path / "out").session("arm").require_manifest().key != key


@pytest.mark.parametrize(
    ("session", "robot", "expect"),
    [
        ("kinematics: {objects: {arm: elbow}}", True, "unknown link group 'elbow'"),
        ("kinematics: {objects: {arm: arm}, keyframes: [99]}", True, "out of range"),
        ("kinematics: {objects: {arm: arm}}", False, "no `robot: {scene, camera}`"),
        (
            "backend: classic\n    kinematics: {objects: {arm: arm}, mode: prior}",
            True,
            "runs the 'kinematic' backend",
        ),
        ("objects: [cube]\n    kinematics: {objects: {arm: arm}}", True, "not listed in objects"),
    ],
)
def test_config_errors_are_one_line_exit_2(
    synth_robot, tmp_path: Path, capsys, session, robot, expect
) -> None:
    cam = synth_robot.camera_ids[0]
    text = f"video: {synth_robot.root}/frames/{cam}\noutput: {tmp_path}/out\n"
    if robot:
        text += f"robot: {{scene: {synth_robot.root}/scene, camera: {cam}}}\n"
    text += f"sessions:\n  - name: arm\n    {session}\n"
    cfg = write_config(tmp_path / "job.yaml", text)
    assert main(["segment", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err
    assert not (tmp_path / "out" / "sessions").exists()


def test_unknown_camera_and_scene_without_robot(synth_robot, tmp_path: Path, capsys) -> None:
    import shutil

    cam = synth_robot.camera_ids[0]
    text = (
        f"video: {synth_robot.root}/frames/{cam}\noutput: {tmp_path}/out\n"
        "robot: {{scene: {scene}, camera: {cam}}}\nsessions:\n  - name: arm\n    kinematics: {{objects: {{arm: arm}}}}\n"
    )
    cfg = write_config(tmp_path / "a.yaml", text.format(scene=synth_robot.scene_path, cam="nope"))
    assert main(["segment", str(cfg)]) == 2
    assert "unknown camera 'nope'" in capsys.readouterr().err
    bare = tmp_path / "bare_scene"
    shutil.copytree(synth_robot.scene_path, bare)
    shutil.rmtree(bare / "robot")
    cfg = write_config(tmp_path / "b.yaml", text.format(scene=bare, cam=cam))
    assert main(["segment", str(cfg)]) == 2
    assert "no robot state" in capsys.readouterr().err

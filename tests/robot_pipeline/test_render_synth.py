"""The synthetic robot, rendered from its exported URDF and joint states, matches the generator's ground truth."""

from __future__ import annotations

import numpy as np

from masktrack.io.scene import load_scene
from masktrack.robot import occlude, render
from masktrack.robot.scene_state import load_robot_model, robot_state
from masktrack.track.instances import load_instance

from .conftest import iou


def test_urdf_render_matches_ground_truth_masks(synth_robot) -> None:
    sc = load_scene(synth_robot.scene_path)
    assert sc.robot is not None and sc.robot.positions.shape == (sc.num_frames, 6)
    model = load_robot_model(sc.robot)
    state = robot_state(sc.robot, model)
    for gt_name, group, floor in (("gt_arm", "arm", 0.97), ("gt_gripper", "gripper", 0.93)):
        gt = load_instance(sc.path, gt_name).masks()
        assert gt.sum() > 0
        for c in range(sc.num_cameras):
            rr = render(model, state, sc.intrs[c], sc.extrs[c], *sc.size, groups=state.link_groups)
            rr = occlude(rr, sc.depths[c], 0.02)
            pred = rr.masks(group)
            assert pred.sum() > 0.5 * gt[c].sum()  # non-trivial
            ious = [iou(pred[t], gt[c, t]) for t in range(sc.num_frames) if gt[c, t].any()]
            assert np.mean(ious) >= floor, (gt_name, c, np.round(ious, 3))


def test_rendered_links_line_up_with_per_link_ground_truth(synth_robot) -> None:
    sc = load_scene(synth_robot.scene_path)
    model = load_robot_model(sc.robot)
    state = robot_state(sc.robot, model)
    links = ("upper_arm", "forearm", "finger_left", "finger_right")
    groups = {**state.link_groups, **{ln: [ln] for ln in links}}  # every link drawn: they hide each other
    rr = occlude(render(model, state, sc.intrs[0], sc.extrs[0], *sc.size, groups=groups), sc.depths[0], 0.02)
    for ln in links:
        gt = load_instance(sc.path, f"gt_{ln}").masks(0)
        assert gt.any()
        assert iou(rr.masks(ln), gt) > 0.8, ln
    # the left finger is not the right one (the swap a person makes by hand)
    assert iou(rr.masks("finger_left"), load_instance(sc.path, "gt_finger_right").masks(0)) < 0.2

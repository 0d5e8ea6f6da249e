"""The left/right swap warning."""

from __future__ import annotations

import pytest

from masktrack.annotate.checks import object_side, side_warnings
from masktrack.prompts.model import Keyframe, ObjectPrompts, PromptFile


@pytest.mark.parametrize(
    "name,side",
    [
        ("gripper_left", "left"),
        ("left-finger", "left"),
        ("GripperRight", None),
        ("gripper_right_2", "right"),
        ("bright_cup", None),
        ("upright", None),
        ("left_right_bar", None),
        ("arm", None),
        ("right", "right"),
    ],
)
def test_object_side(name, side):
    assert object_side(name) == side


def _pf(name, points, labels, boxes=()):
    return PromptFile(
        objects=[
            ObjectPrompts(
                name=name,
                id=1,
                keyframes=[Keyframe(frame=4, points=points, labels=labels, boxes=list(boxes))],
            )
        ]
    )


def test_left_object_clicked_on_the_right_half_warns():
    (w,) = side_warnings(_pf("gripper_left", [(90, 10), (100, 20), (10, 10)], [1, 1, 1]), width=128)
    assert (
        w.location == "objects[gripper_left].frame[4]" and "2 of 3" in w.message and "right half" in w.message
    )


def test_right_object_clicked_on_the_left_half_warns():
    (w,) = side_warnings(_pf("gripper_right", [], [], boxes=[(0, 0, 40, 40)]), width=128)
    assert "left half" in w.message


@pytest.mark.parametrize(
    "pf",
    [
        _pf("gripper_left", [(10, 10), (100, 20)], [1, 1]),  # half and half is not "mostly"
        _pf(
            "gripper_left", [(10, 10), (100, 20), (110, 20)], [1, 0, 0]
        ),  # negatives on the other finger are fine
        _pf("gripper_right", [(100, 10)], [1]),
        _pf("cup", [(100, 10)], [1]),
        _pf("gripper_left", [(63.5, 10)], [1]),  # exactly the middle counts as neither
    ],
)
def test_no_warning(pf):
    assert side_warnings(pf, width=128) == []

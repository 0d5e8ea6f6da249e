"""Import of the notebook format sam3.annotation_prompts.v1."""

from __future__ import annotations

import json

import jsonschema
import pytest

from masktrack.errors import PromptError
from masktrack.prompts import load_prompts, parse_prompts, prompt_schema

SIZE = (480, 640)  # (h, w)

SAMPLE = {
    "format": "sam3.annotation_prompts.v1",
    "prompts": {
        "ARM_CABLE_INITIAL_PROMPTS": [
            {
                "frame_index": 0,
                "obj_id": 1,
                "coord_type": "rel",
                "points": [[0.5, 0.25], [0.1, 0.9]],
                "labels": [1, 0],
            },
        ],
        "ARM_CABLE_2_INITIAL_PROMPTS": [
            {"frame_index": 0, "obj_id": 2, "coord_type": "abs", "points": [[320, 100]], "labels": [1]},
        ],
        "GRIPPER_LEFT_KEYFRAME_PROMPTS": [
            {"frame_index": 0, "obj_id": 1, "coord_type": "abs", "points": [[200, 300]], "labels": [1]},
            {"frame_index": 40, "obj_id": 1, "coord_type": "rel", "points": [[0.25, 0.5]], "labels": [1]},
            {"frame_index": 0, "obj_id": 1, "coord_type": "abs", "points": [[210, 330]], "labels": [0]},
        ],
        "GRIPPER_RIGHT_KEYFRAME_PROMPTS": [
            {
                "frame_index": 12,
                "obj_id": 2,
                "coord_type": "abs",
                "points": [[400, 300], [420, 310]],
                "labels": [1, 1],
            },
        ],
    },
}


def test_v1_import_abs_and_rel(tmp_path):
    p = tmp_path / "legacy.json"
    p.write_text(json.dumps(SAMPLE))
    pf = load_prompts(p, size=SIZE).validate_for(num_frames=50, size=SIZE, path=p)
    assert pf.names() == ["arm", "arm_2", "gripper_left", "gripper_right"]
    assert [o.id for o in pf.objects] == [1, 2, 3, 4]  # renumbered: gripper obj_ids repeat the arm's
    arm = pf.object("arm")
    assert arm.keyframes[0].points == [(320.0, 120.0), (64.0, 432.0)]  # rel * (w, h)
    assert arm.keyframes[0].labels == [1, 0]
    assert pf.object("arm_2").keyframes[0].points == [(320.0, 100.0)]
    left = pf.object("gripper_left")
    assert [k.frame for k in left.keyframes] == [0, 40]
    # the two frame-0 entries are merged, not overwritten
    assert left.keyframes[0].points == [(200.0, 300.0), (210.0, 330.0)]
    assert left.keyframes[0].labels == [1, 0]
    assert left.keyframes[1].points == [(160.0, 240.0)]
    right = pf.object("gripper_right")
    assert right.keyframes[0].frame == 12 and len(right.keyframes[0].points) == 2
    # the converted file validates against the shipped JSON Schema
    jsonschema.validate(pf.model_dump(mode="json", exclude_none=True), prompt_schema())


def test_bare_map_with_legacy_arm_keys_is_concatenated():
    bare = {
        "ARM_LEFT_INITIAL_PROMPTS": [
            {"frame_index": 0, "obj_id": 1, "coord_type": "abs", "points": [[10, 10]], "labels": [1]}
        ],
        "ARM_RIGHT_INITIAL_PROMPTS": [
            {"frame_index": 5, "obj_id": 1, "coord_type": "abs", "points": [[20, 30]], "labels": [1]}
        ],
        "GRIPPER_RIGHT_KEYFRAME_PROMPTS": [
            {"frame_index": 0, "obj_id": 1, "points": [[5, 6]], "labels": [1]}
        ],
    }
    pf = parse_prompts(bare)
    assert pf.names() == ["arm", "gripper_right"]
    assert [(k.frame, k.points) for k in pf.object("arm").keyframes] == [
        (0, [(10.0, 10.0)]),
        (5, [(20.0, 30.0)]),
    ]


def test_rel_without_video_size_is_refused():
    with pytest.raises(PromptError, match="relative coordinates") as e:
        parse_prompts(SAMPLE, path="legacy.json")
    assert "prompts.ARM_CABLE_INITIAL_PROMPTS[0]" in str(e.value)


def test_rel_edges_clamp_inside_the_image():
    data = {
        "ARM_CABLE_INITIAL_PROMPTS": [
            {
                "frame_index": 0,
                "obj_id": 1,
                "coord_type": "rel",
                "points": [[1.0, 1.0], [0.0, 0.0]],
                "labels": [1, 1],
            }
        ]
    }
    pf = parse_prompts(data, size=SIZE)
    assert pf.object("arm").keyframes[0].points == [(639.0, 479.0), (0.0, 0.0)]
    assert pf.problems(num_frames=1, size=SIZE) == []


def test_every_legacy_problem_reported_at_once_with_location():
    bad = {
        "format": "sam3.annotation_prompts.v1",
        "prompts": {
            "GRIPPER_LEFT_KEYFRAME_PROMPTS": [
                {"frame_index": "3", "obj_id": 1, "points": [[1, 2]], "labels": [1]},
                {"frame_index": 3, "obj_id": 1, "points": [[1, 2], [3, 4]], "labels": [1]},
                {"frame_index": 3, "obj_id": 1, "points": [[1, 2]], "labels": [2]},
                {"frame_index": 3, "obj_id": 1, "coord_type": "rel", "points": [[1.5, 0.2]], "labels": [1]},
                {
                    "frame_index": 3,
                    "obj_id": 1,
                    "coord_type": "px",
                    "points": [[1, 2]],
                    "labels": [1],
                    "box": [1, 2, 3, 4],
                },
            ]
        },
    }
    with pytest.raises(PromptError) as e:
        parse_prompts(bad, path="p.json", size=SIZE)
    lines = e.value.lines()
    k = "p.json: prompts.GRIPPER_LEFT_KEYFRAME_PROMPTS"
    assert f"{k}[0].frame_index: must be an integer, got '3'" in lines
    assert f"{k}[1]: 2 points but 1 labels (lengths must match)" in lines
    assert any(l.startswith(f"{k}[2].labels[0]: label must be 0") for l in lines)
    assert any(l.startswith(f"{k}[3].points[0]: relative point") for l in lines)
    assert any(l.startswith(f"{k}[4].coord_type") for l in lines)
    assert any(l.startswith(f"{k}[4]: unknown key(s) box") for l in lines)


def test_range_checks_after_import():
    data = {
        "GRIPPER_LEFT_KEYFRAME_PROMPTS": [
            {"frame_index": 99, "obj_id": 1, "points": [[700, 2]], "labels": [1]}
        ]
    }
    pf = parse_prompts(data)
    with pytest.raises(PromptError) as e:
        pf.validate_for(num_frames=50, size=SIZE, path="p.json")
    text = str(e.value)
    assert "keyframes[0].frame: frame 99 out of range [0, 49]" in text
    assert "keyframes[0].points[0]: point (700, 2) outside the 640x480 image" in text

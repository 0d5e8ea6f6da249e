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


# ---- files in the exact shape the notebook's writer produces -------------------------------------
# The writer dumps {"format", "created_at_utc", "prompts", "stats"} with json.dump(indent=2,
# ensure_ascii=False); "prompts" always holds the three required lists plus ARM_CABLE_2 (empty when the
# notebook had no second arm); "stats" counts entries/points per list and points per frame (int frame
# keys, strings once in JSON).  Its own clicks are "abs" integers; "rel" lists come from seeded lists.

WRITER_KEYS = (
    "ARM_CABLE_INITIAL_PROMPTS",
    "GRIPPER_LEFT_KEYFRAME_PROMPTS",
    "GRIPPER_RIGHT_KEYFRAME_PROMPTS",
    "ARM_CABLE_2_INITIAL_PROMPTS",
)


def _writer_stats(prompts: dict) -> dict:
    entries, points, per_frame, frames = {}, {}, {}, set()
    for key in WRITER_KEYS:
        lst = prompts.get(key, [])
        entries[key] = len(lst)
        points[key] = sum(len(e["points"]) for e in lst)
        counts: dict[int, int] = {}
        for e in lst:
            counts[e["frame_index"]] = counts.get(e["frame_index"], 0) + len(e["points"])
            frames.add(e["frame_index"])
        per_frame[key] = {f: counts[f] for f in sorted(counts)}
    left = per_frame["GRIPPER_LEFT_KEYFRAME_PROMPTS"]
    right = per_frame["GRIPPER_RIGHT_KEYFRAME_PROMPTS"]
    warnings = [
        f"frame={f}: left_points={left.get(f, 0)}, right_points={right.get(f, 0)}"
        for f in sorted(set(left) | set(right))
        if left.get(f, 0) != right.get(f, 0)
    ]
    return {
        "entries_per_object": entries,
        "points_per_object": points,
        "frame_point_counts_per_object": per_frame,
        "gripper_frame_count_warnings": warnings,
        "num_frames_with_prompts": len(frames),
    }


def _writer_bytes(prompts: dict) -> str:
    full = {k: prompts.get(k, []) for k in WRITER_KEYS}
    payload = {
        "format": "sam3.annotation_prompts.v1",
        "created_at_utc": "2025-11-03T08:15:42.123456+00:00",
        "prompts": full,
        "stats": _writer_stats(full),
    }
    return json.dumps(payload, ensure_ascii=False, indent=2)


def _e(frame, obj_id, pts, labels, ct="abs"):
    return {"frame_index": frame, "obj_id": obj_id, "coord_type": ct, "points": pts, "labels": labels}


WRITER_PROMPTS = {
    "ARM_CABLE_INITIAL_PROMPTS": [_e(0, 3, [[320, 120], [64, 432]], [1, 0])],
    "GRIPPER_LEFT_KEYFRAME_PROMPTS": [_e(0, 1, [[200, 300]], [1]), _e(40, 1, [[0.25, 0.5]], [1], "rel")],
    "GRIPPER_RIGHT_KEYFRAME_PROMPTS": [_e(12, 2, [[400, 300], [420, 310]], [1, 1])],
    "ARM_CABLE_2_INITIAL_PROMPTS": [_e(0, 1, [[100, 100]], [1])],
}


def test_writer_file_with_metadata_keys_validates_and_keeps_provenance(tmp_path):
    p = tmp_path / "annotation_prompts.json"
    p.write_text(_writer_bytes(WRITER_PROMPTS), encoding="utf-8")
    pf = load_prompts(p, size=SIZE, num_frames=50).validate_for(num_frames=50, size=SIZE, path=p)
    # named by key: the main arm has the larger obj_id (3) but is still "arm"
    assert pf.names() == ["arm", "arm_2", "gripper_left", "gripper_right"]
    assert pf.object("arm").keyframes[0].points == [(320.0, 120.0), (64.0, 432.0)]
    assert pf.object("arm_2").keyframes[0].points == [(100.0, 100.0)]
    assert pf.object("gripper_left").keyframes[1].points == [(160.0, 240.0)]
    assert pf.provenance is not None
    assert pf.provenance["created_at_utc"] == "2025-11-03T08:15:42.123456+00:00"
    assert pf.provenance["stats"]["points_per_object"]["ARM_CABLE_INITIAL_PROMPTS"] == 2
    jsonschema.validate(pf.model_dump(mode="json", exclude_none=True), prompt_schema())


def test_writer_file_through_the_cli(tmp_path, capsys):
    from masktrack.cli.main import main
    from masktrack.prompts import load_prompts as load

    p = tmp_path / "annotation_prompts.json"
    p.write_text(_writer_bytes({**WRITER_PROMPTS, "ARM_CABLE_2_INITIAL_PROMPTS": []}), encoding="utf-8")
    assert main(["prompts", "validate", str(p)]) == 2  # rel entries need the video...
    err = capsys.readouterr().err
    assert "relative coordinates" in err
    assert "created_at_utc" not in err and "stats" not in err  # ...but the metadata keys are fine
    abs_only = {k: [e for e in v if e["coord_type"] == "abs"] for k, v in WRITER_PROMPTS.items()}
    p.write_text(_writer_bytes(abs_only), encoding="utf-8")
    assert main(["prompts", "validate", str(p)]) == 0, capsys.readouterr()
    out = tmp_path / "v1.json"
    assert main(["prompts", "convert", str(p), str(out)]) == 0, capsys.readouterr()
    conv = load(out)
    assert conv.names() == ["arm", "arm_2", "gripper_left", "gripper_right"]
    assert conv.provenance and conv.provenance["format"] == "sam3.annotation_prompts.v1"


def test_unknown_top_level_key_is_still_refused_with_the_others():
    doc = json.loads(_writer_bytes(WRITER_PROMPTS))
    doc["note"] = "x"
    doc["prompts"]["GRIPPER_RIGHT_KEYFRAME_PROMPTS"][0]["labels"] = [1, 7]
    with pytest.raises(PromptError) as e:
        parse_prompts(doc, path="p.json", size=SIZE)
    text = str(e.value)
    assert "unknown top-level key(s): note" in text
    assert "GRIPPER_RIGHT_KEYFRAME_PROMPTS[0].labels[1]" in text


def test_new_arm_key_wins_over_the_old_pair_like_the_original_loader():
    prompts = {
        **WRITER_PROMPTS,
        "ARM_LEFT_INITIAL_PROMPTS": [_e(0, 7, [[10, 10]], [1])],
        "ARM_RIGHT_INITIAL_PROMPTS": [_e(0, 8, [[20, 20]], [1])],
    }
    doc = json.loads(_writer_bytes(WRITER_PROMPTS))
    doc["prompts"] = prompts
    pf = parse_prompts(doc, size=SIZE)
    assert pf.names() == ["arm", "arm_2", "gripper_left", "gripper_right"]  # no extra arm object
    assert pf.object("arm").keyframes[0].points == [(320.0, 120.0), (64.0, 432.0)]  # no old points
    assert pf.provenance["ignored_keys"] == ["ARM_LEFT_INITIAL_PROMPTS", "ARM_RIGHT_INITIAL_PROMPTS"]


def test_legacy_only_map_merges_the_old_pair_into_arm():
    # an old file: bare map, ARM_LEFT/ARM_RIGHT (same obj_id), both grippers, no ARM_CABLE keys
    bare = {
        "ARM_LEFT_INITIAL_PROMPTS": [_e(0, 1, [[10, 10]], [1])],
        "ARM_RIGHT_INITIAL_PROMPTS": [_e(5, 1, [[0.5, 0.5]], [1], "rel")],
        "GRIPPER_LEFT_KEYFRAME_PROMPTS": [_e(0, 2, [[30, 40]], [1])],
        "GRIPPER_RIGHT_KEYFRAME_PROMPTS": [_e(0, 3, [[50, 60]], [1])],
    }
    pf = parse_prompts(json.loads(json.dumps(bare, indent=2)), size=SIZE)
    assert pf.names() == ["arm", "gripper_left", "gripper_right"]
    assert [(k.frame, k.points) for k in pf.object("arm").keyframes] == [
        (0, [(10.0, 10.0)]),
        (5, [(320.0, 240.0)]),
    ]
    assert pf.provenance == {"format": "sam3.annotation_prompts.v1"}


def test_arms_named_by_key_not_by_obj_id_order():
    # bare map of the writer's four keys, the second arm has the smaller obj_id
    bare = {
        "ARM_CABLE_INITIAL_PROMPTS": [_e(0, 9, [[1, 1]], [1])],
        "GRIPPER_LEFT_KEYFRAME_PROMPTS": [],
        "GRIPPER_RIGHT_KEYFRAME_PROMPTS": [],
        "ARM_CABLE_2_INITIAL_PROMPTS": [_e(0, 2, [[5, 5]], [1])],
    }
    pf = parse_prompts(bare)
    assert pf.object("arm").keyframes[0].points == [(1.0, 1.0)]
    assert pf.object("arm_2").keyframes[0].points == [(5.0, 5.0)]
    assert [o.id for o in pf.objects] == [1, 2]


def test_validate_reports_conversion_and_range_problems_together(tmp_path, capsys):
    from masktrack.cli.main import main

    frames = tmp_path / "frames"
    frames.mkdir()
    import numpy as np
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(frames / f"{i:05d}.jpg")
    prompts = {
        "ARM_CABLE_INITIAL_PROMPTS": [_e(0, 1, [[1.5, 0.2]], [1], "rel")],
        "GRIPPER_LEFT_KEYFRAME_PROMPTS": [_e(7, 2, [[10, 10]], [1])],
        "GRIPPER_RIGHT_KEYFRAME_PROMPTS": [_e(1, 3, [[100, 10]], [1])],
    }
    p = tmp_path / "p.json"
    p.write_text(_writer_bytes(prompts), encoding="utf-8")
    assert main(["prompts", "validate", str(p), "--video", str(frames)]) == 2
    err = capsys.readouterr().err
    assert "ARM_CABLE_INITIAL_PROMPTS[0].points[0]: relative point [1.5, 0.2] outside 0..1" in err
    assert "GRIPPER_LEFT_KEYFRAME_PROMPTS[0].frame_index: frame 7 out of range [0, 2]" in err
    assert "GRIPPER_RIGHT_KEYFRAME_PROMPTS[0].points[0]: point (100, 10) outside the 64x48 image" in err

"""The v1 prompt format: validation, merging, JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from masktrack.errors import PromptError
from masktrack.prompts import PromptFile, load_prompts, prompt_schema, save_prompts

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arm_gripper_prompts.json"


def _doc(**kw):
    obj = {"name": "gripper", "id": 1, "keyframes": [{"frame": 2, "points": [[5, 5]], "labels": [1]}]}
    obj.update(kw)
    return {"format": "masktrack.prompts", "version": 1, "objects": [obj]}


def test_every_problem_at_once_with_location():
    doc = {
        "format": "masktrack.prompts",
        "version": 1,
        "objects": [
            {
                "name": "a",
                "id": 1,
                "keyframes": [
                    {"frame": 10, "points": [[5, 5], [50, 5]], "labels": [1]},
                    {"frame": 1, "points": [[5, 5]], "labels": [3]},
                    {"frame": 1, "boxes": [[9, 9, 2, 2]]},
                ],
            },
            {"name": "a", "id": 1},
        ],
    }
    with pytest.raises(PromptError) as e:
        PromptFile.model_validate(doc).validate_for(num_frames=5, size=(20, 30), path="p.json")
    lines = e.value.lines()
    assert "p.json: objects[0:a].keyframes[0].frame: frame 10 out of range [0, 4]" in lines
    assert "p.json: objects[0:a].keyframes[0]: 2 points but 1 labels (lengths must match)" in lines
    assert "p.json: objects[0:a].keyframes[0].points[1]: point (50, 5) outside the 30x20 image" in lines
    assert any(l.startswith("p.json: objects[0:a].keyframes[1].labels[0]: label must be 0") for l in lines)
    assert any(l.startswith("p.json: objects[0:a].keyframes[2].boxes[0]") for l in lines)
    assert "p.json: objects[1:a]: duplicate object name 'a'" in lines
    assert any(l.startswith("p.json: objects[1:a]: duplicate object id 1") for l in lines)
    assert len(lines) == 7


def test_same_object_and_frame_merged_never_overwritten():
    pf = PromptFile.model_validate(
        _doc(
            keyframes=[
                {"frame": 3, "points": [[1, 1]], "labels": [1]},
                {"frame": 0, "boxes": [[0, 0, 4, 4]]},
                {"frame": 3, "points": [[2, 2]], "labels": [0], "boxes": [[1, 1, 3, 3]]},
            ]
        )
    )
    m = pf.validate_for(num_frames=5, size=(10, 10))
    kf = m.objects[0].keyframes
    assert [k.frame for k in kf] == [0, 3]
    assert (
        kf[1].points == [(1.0, 1.0), (2.0, 2.0)]
        and kf[1].labels == [1, 0]
        and kf[1].boxes == [(1.0, 1.0, 3.0, 3.0)]
    )


def test_two_masks_for_one_frame_is_an_error():
    pf = PromptFile.model_validate(
        _doc(keyframes=[{"frame": 1, "mask": "a.png"}, {"frame": 1, "mask": "b.png"}])
    )
    with pytest.raises(PromptError, match="second mask for frame 1"):
        pf.validate_for(num_frames=5, size=None)


def test_load_errors_name_the_file(tmp_path):
    p = tmp_path / "p.json"
    p.write_text("{not json")
    with pytest.raises(PromptError, match="not valid JSON") as e:
        load_prompts(p)
    assert e.value.path == p
    p.write_text(json.dumps({"format": "other"}))
    with pytest.raises(PromptError, match="unknown prompt format") as e:
        load_prompts(p)
    assert e.value.field == "format"
    p.write_text(json.dumps(_doc(keyframes=[{"frame": 1, "pts": []}])))
    with pytest.raises(PromptError) as e:
        load_prompts(p)
    assert "objects[0].keyframes[0].pts" in str(e.value)


def test_roundtrip_and_mask_paths(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps(_doc(keyframes=[{"frame": 1, "mask": "m/1.png"}])))
    pf = load_prompts(p)
    assert pf.objects[0].keyframes[0].mask == str((tmp_path / "m" / "1.png").resolve())
    out = tmp_path / "out.json"
    save_prompts(pf, out)
    assert load_prompts(out) == pf


def test_schema_accepts_model_output_and_rejects_bad_files():
    schema = prompt_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    pf = load_prompts(EXAMPLE)
    jsonschema.validate(pf.model_dump(mode="json", exclude_none=True), schema)
    jsonschema.validate(pf.model_dump(mode="json"), schema)  # None colour / mask allowed too
    for bad in (
        _doc(keyframes=[{"frame": 1, "points": [[1, 1]], "labels": [2]}]),
        _doc(keyframes=[{"frame": 1, "extra": 1}]),
        _doc(id=0),
        _doc(color=[1, 2]),
        {"format": "masktrack.prompts", "version": 2, "objects": []},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_schema_ships_as_package_data():
    from importlib.resources import files

    assert files("masktrack.prompts").joinpath("schema.json").is_file()

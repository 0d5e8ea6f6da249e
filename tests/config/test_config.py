"""The pipeline config and the shipped arm/gripper example."""

from __future__ import annotations

from pathlib import Path

import pytest

from masktrack.config import InlineObject, load_config
from masktrack.errors import ConfigError
from masktrack.prompts import load_prompts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_arm_gripper_example_parses():
    cfg = load_config(EXAMPLES / "arm_gripper.yaml")
    assert [s.name for s in cfg.sessions] == ["arm", "gripper"]
    arm, gripper = cfg.sessions
    assert arm.backend == "sam3" and arm.text.text == "robot and cable" and arm.text.frame == 0
    assert arm.object_names() == ["arm", "arm_2"]
    assert gripper.text is None and gripper.object_names() == ["gripper_left", "gripper_right"]
    assert cfg.video == EXAMPLES / "frames" / "cam0" and cfg.output == EXAMPLES / "out" / "cam0"
    # its prompt file: refinement points for arm, points/boxes for both grippers, no arm_2 (text-only)
    pf = load_prompts(cfg.prompts_for(gripper))
    assert pf.names() == ["arm", "gripper_left", "gripper_right"]
    assert pf.problems(num_frames=200, size=(720, 1280)) == []
    # the compose expression parses and resolves against the sessions' objects
    compose = pytest.importorskip("masktrack.masks.compose")
    expr = compose.compile_expression(
        cfg.compose["arm_only"].expr, {s.name: s.object_names() for s in cfg.sessions}
    )
    assert expr.sessions == ["arm", "gripper"]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "job.yaml"
    p.write_text(text)
    return p


def test_shorthands_inline_objects_and_paths(tmp_path):
    cfg = load_config(
        _write(
            tmp_path,
            """
video: v.mp4
output: out
sessions:
  - name: s
    text: "red things"
    objects:
      - a
      - {name: b, id: 7, keyframes: [{frame: 0, points: [[1, 2]], labels: [1]}, {frame: 2, mask: m.png}]}
    direction: forward
""",
        )
    )
    s = cfg.sessions[0]
    assert s.text.text == "red things" and s.text.frame == 0 and s.backend == "bilateral"
    b = s.objects[1]
    assert isinstance(b, InlineObject) and b.id == 7 and b.keyframes[1].mask == str(tmp_path / "m.png")
    assert cfg.video == tmp_path / "v.mp4" and cfg.prompts is None


def test_invalid_yaml_names_file_and_line(tmp_path):
    p = _write(tmp_path, "video: [unclosed\n")
    with pytest.raises(ConfigError, match=r"invalid YAML: line \d+") as e:
        load_config(p)
    assert e.value.path == p


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            "video: v\noutput: o\nsessions: [{name: s, objects: [a], direction: sideways}]\n",
            "sessions[0].direction",
        ),
        ("video: v\noutput: o\nsessions: [{name: s, objects: []}]\n", "sessions[0].objects"),
        ("video: v\noutput: o\nsessions: [{name: s, objects: [a], colour: red}]\n", "sessions[0].colour"),
        ("video: v\nsessions: [{name: s, objects: [a]}]\n", "output"),
        (
            "video: v\noutput: o\nsessions: [{name: s, objects: [a]}, {name: s, objects: [b]}]\n",
            "duplicate session names",
        ),
    ],
)
def test_invalid_config_fields(tmp_path, text, field):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert field in str(e.value) and str(p) in str(e.value)


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")

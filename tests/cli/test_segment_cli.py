"""``masktrack segment`` / ``backends`` in-process: summary, reuse, and bad input (exit 2, one line, nothing written)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest


def _job(oracle_mod, tmp_path, sessions=None, objects=None):
    sessions = sessions or [
        {"name": "arm", "backend": "oracle", "objects": ["red", "blue"]},
        {"name": "gripper", "backend": "oracle", "objects": ["cham"]},
    ]
    objects = (
        objects
        if objects is not None
        else {
            "red": [oracle_mod.kf("red", 0)],
            "blue": [oracle_mod.kf("blue", 3)],
            "cham": [oracle_mod.kf("cham", 5)],
        }
    )
    return oracle_mod.write_job(tmp_path, sessions, objects)


def test_segment_summary_and_reuse(tmp_path, colour_video, oracle, oracle_mod, cli):
    cfg = _job(oracle_mod, tmp_path)
    rc, out, err = cli("segment", cfg, "--no-progress")
    assert rc == 0, err
    for word in (
        "session",
        "objects",
        "frames",
        "seconds",
        "status",
        "empty frames",
        "arm",
        "gripper",
        "computed",
        "cham: 9",
    ):
        assert word in out
    assert any("'cham' is empty on 9 of 16 frames" in line for line in err)
    rc, out, _ = cli("segment", cfg, "--no-progress")
    assert rc == 0 and out.count("reused") == 2 and "computed" not in out
    rc, out, _ = cli("segment", cfg, "--only", "gripper", "--force")  # with progress bars (on stderr)
    assert rc == 0 and "computed" in out and "arm " not in out


def test_backends_lists_text_support(oracle, cli):
    rc, out, _ = cli("backends")
    assert rc == 0
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 3}
    assert "yes" in rows["sam3"] and "yes" in rows["oracle"] and "no" in rows["sam2"]


def _expect_error(cli, tmp_path, args, *parts):
    rc, out, err = cli(*args)
    assert rc == 2
    assert len(err) == 1, err
    assert err[0].startswith("masktrack: error: ")
    for p in parts:
        assert str(p) in err[0], err[0]
    assert not (tmp_path / "out").exists()  # nothing written
    return err[0]


def test_invalid_yaml(tmp_path, cli):
    p = tmp_path / "job.yaml"
    p.write_text("sessions: [\n  {name: a\n")
    _expect_error(cli, tmp_path, ["segment", p], p, "invalid YAML")


def test_unknown_backend(tmp_path, colour_video, oracle, oracle_mod, cli):
    cfg = _job(oracle_mod, tmp_path, sessions=[{"name": "s", "backend": "nope", "objects": ["red"]}])
    _expect_error(
        cli, tmp_path, ["segment", cfg], cfg, "sessions[0:s].backend", "unknown backend 'nope'", "oracle"
    )


def test_bad_backend_option(tmp_path, colour_video, oracle, oracle_mod, cli):
    cfg = _job(
        oracle_mod,
        tmp_path,
        sessions=[{"name": "s", "backend": "oracle", "options": {"speed": 3}, "objects": ["red"]}],
    )
    _expect_error(cli, tmp_path, ["segment", cfg], cfg, "sessions[0:s].options", "speed")


def test_text_on_a_points_only_backend(tmp_path, colour_video, oracle, oracle_mod, cli):
    from masktrack.segment.registry import register_backend, unregister_backend

    class NoText(oracle_mod.OracleBackend):
        supports_text = False

    register_backend("notext", NoText)
    try:
        cfg = _job(
            oracle_mod,
            tmp_path,
            sessions=[{"name": "s", "backend": "notext", "text": "red", "objects": ["red"]}],
        )
        _expect_error(cli, tmp_path, ["segment", cfg], cfg, "sessions[0:s].text", "does not take text")
    finally:
        unregister_backend("notext")


def test_unknown_object(tmp_path, colour_video, oracle, oracle_mod, cli):
    cfg = _job(
        oracle_mod, tmp_path, sessions=[{"name": "s", "backend": "oracle", "objects": ["red", "ghost"]}]
    )
    _expect_error(
        cli,
        tmp_path,
        ["segment", cfg],
        cfg,
        "sessions[0:s].objects[1]",
        "unknown object 'ghost'",
        "red, blue, cham",
    )


def test_unknown_only_session(tmp_path, colour_video, oracle, oracle_mod, cli):
    cfg = _job(oracle_mod, tmp_path)
    _expect_error(cli, tmp_path, ["segment", cfg, "--only", "hands"], cfg, "--only", "'hands'")


def test_out_of_range_frame(tmp_path, colour_video, oracle, oracle_mod, cli):
    cfg = _job(
        oracle_mod,
        tmp_path,
        objects={"red": [oracle_mod.kf("red", 0) | {"frame": 16}], "blue": [], "cham": []},
    )
    _expect_error(
        cli,
        tmp_path,
        ["segment", cfg],
        tmp_path / "prompts.json",
        "objects[0:red].keyframes[0].frame",
        "out of range [0, 15]",
    )


def test_point_outside_the_image(tmp_path, colour_video, oracle, oracle_mod, cli):
    kf = {"frame": 2, "points": [[96.0, 3.0]], "labels": [1]}
    cfg = _job(oracle_mod, tmp_path, objects={"red": [kf], "blue": [], "cham": []})
    _expect_error(
        cli,
        tmp_path,
        ["segment", cfg],
        tmp_path / "prompts.json",
        "objects[0:red].keyframes[0].points[0]",
        "outside the 96x56 image",
    )


def test_mixed_frame_sizes(tmp_path, colour_video, oracle, oracle_mod, cli):
    cfg = _job(oracle_mod, tmp_path)
    bad = colour_video / "00004.png"
    cv2.imwrite(str(bad), np.zeros((50, 96, 3), np.uint8))
    _expect_error(cli, tmp_path, ["segment", cfg], bad, "mixed frame sizes")


def test_unreadable_frame(tmp_path, colour_video, oracle, oracle_mod, cli):
    cfg = _job(oracle_mod, tmp_path)
    bad = colour_video / "00007.png"
    bad.write_bytes(bad.read_bytes()[:60])
    _expect_error(cli, tmp_path, ["segment", cfg], bad, "unreadable frame")


def test_truncated_prompt_mask_left_by_a_killed_run(tmp_path, colour_video, oracle, oracle_mod, cli):
    mask = (oracle_mod.square_mask("red", 3) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "red_3.png"), mask)
    data = (tmp_path / "red_3.png").read_bytes()
    (tmp_path / "red_3.png").write_bytes(data[: len(data) // 2])
    cfg = _job(
        oracle_mod,
        tmp_path,
        objects={"red": [{"frame": 3, "mask": "red_3.png"}], "blue": [], "cham": []},
        sessions=[{"name": "s", "backend": "oracle", "objects": ["red"]}],
    )
    _expect_error(
        cli,
        tmp_path,
        ["segment", cfg],
        tmp_path / "prompts.json",
        "objects[0:red].keyframes[0].mask",
        "red_3.png",
    )


def test_mask_prompt_works_when_intact(tmp_path, colour_video, oracle, oracle_mod, cli):
    cv2.imwrite(str(tmp_path / "red_3.png"), (oracle_mod.square_mask("red", 3) * 255).astype(np.uint8))
    cfg = _job(
        oracle_mod,
        tmp_path,
        objects={"red": [{"frame": 3, "mask": "red_3.png"}]},
        sessions=[{"name": "s", "backend": "oracle", "objects": ["red"]}],
    )
    rc, out, err = cli("segment", cfg, "--no-progress")
    assert rc == 0, err
    from masktrack.masks.store import MaskStore

    red = MaskStore(tmp_path / "out").session("s").read_object("red")
    assert all(np.array_equal(red[t], oracle_mod.square_mask("red", t)) for t in range(16))


def test_prompts_validate_and_convert_legacy(tmp_path, colour_video, cli):
    legacy = {
        "format": "sam3.annotation_prompts.v1",
        "prompts": {
            "ARM_CABLE_INITIAL_PROMPTS": [
                {"frame_index": 0, "obj_id": 1, "coord_type": "rel", "points": [[0.5, 0.5]], "labels": [1]}
            ],
            "GRIPPER_LEFT_KEYFRAME_PROMPTS": [
                {"frame_index": 3, "obj_id": 1, "coord_type": "abs", "points": [[10, 20]], "labels": [1]}
            ],
        },
    }
    src = tmp_path / "legacy.json"
    src.write_text(json.dumps(legacy))
    _expect_error(
        cli, tmp_path, ["prompts", "validate", src], src, "prompts.ARM_CABLE_INITIAL_PROMPTS[0]", "--video"
    )
    rc, out, err = cli("prompts", "validate", src, "--video", colour_video)
    assert rc == 0 and "ok, 2 object(s) (arm, gripper_left)" in out
    dst = tmp_path / "prompts.json"
    rc, out, err = cli("prompts", "convert", src, dst, "--video", colour_video)
    assert rc == 0, err
    doc = json.loads(dst.read_text())
    assert doc["format"] == "masktrack.prompts" and doc["video"] == "frames"
    assert doc["objects"][0] == {
        "name": "arm",
        "id": 1,
        "keyframes": [{"frame": 0, "points": [[48.0, 28.0]], "labels": [1], "boxes": []}],
    }
    rc, out, _ = cli("prompts", "validate", dst, "--video", colour_video)
    assert rc == 0


def test_prompts_validate_reports_all_problems(tmp_path, colour_video, cli):
    doc = {
        "format": "masktrack.prompts",
        "version": 1,
        "objects": [
            {
                "name": "a",
                "id": 1,
                "keyframes": [
                    {"frame": 20, "points": [[1, 1]], "labels": [1]},
                    {"frame": 0, "points": [[500, 1]], "labels": [1]},
                ],
            },
            {"name": "b", "id": 1},
        ],
    }
    p = tmp_path / "p.json"
    p.write_text(json.dumps(doc))
    rc, out, err = cli("prompts", "validate", p, "--video", colour_video)
    assert rc == 2 and len(err) == 3
    assert all(line.startswith(f"masktrack: error: {p}: objects[") for line in err)


@pytest.mark.parametrize(
    "cmd",
    [
        ["segment", "--help"],
        ["prompts", "validate", "--help"],
        ["prompts", "convert", "--help"],
        ["backends", "--help"],
    ],
)
def test_help(cli, cmd):
    rc, out, _ = cli(*cmd)
    assert rc == 0 and "Usage" in out


def test_a_config_with_three_mistakes_reports_all_three_in_one_run(
    tmp_path, colour_video, oracle, oracle_mod, cli
):
    cfg = _job(
        oracle_mod,
        tmp_path,
        sessions=[
            {"name": "a", "backend": "nope", "objects": ["red"]},
            {"name": "b", "backend": "oracle", "objects": ["blue", "ghost"]},
            {"name": "c", "backend": "oracle", "options": {"speed": 3}, "objects": ["cham"]},
        ],
    )
    rc, out, err = cli("segment", cfg, "--no-progress")
    assert rc == 2
    assert len(err) == 3, err
    assert all(line.startswith(f"masktrack: error: {cfg}: sessions[") for line in err), err
    assert "sessions[0:a].backend: unknown backend 'nope'" in err[0]
    assert "sessions[1:b].objects[1]" in err[1] and "unknown object 'ghost'" in err[1]
    assert "sessions[2:c].options" in err[2] and "speed" in err[2]
    assert not (tmp_path / "out").exists()  # nothing written


def test_backends_say_whether_installed_and_what_is_missing(oracle, cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sam3" else real(name, *a)
    )
    rc, out, _ = cli("backends")
    assert rc == 0
    rows = {
        line.split("│")[1].strip(): line
        for line in out.replace("\n│  ", " ").splitlines()
        if line.count("│") >= 4
    }
    assert "yes" in rows["classic"].split("│")[2]
    assert "no: missing sam3" in out and "masktrack[sam3]" in out


def test_help_has_no_raw_markup_and_every_option_says_what_it_does(cli):
    import importlib

    import click

    from masktrack.cli.main import COMMANDS

    def walk(cmd, path):
        yield cmd, path
        if isinstance(cmd, click.Group):
            for n, c in cmd.commands.items():
                yield from walk(c, [*path, n])

    undocumented = []
    for name, (mod, attr, _) in COMMANDS.items():
        for cmd, path in walk(getattr(importlib.import_module(mod), attr), [name]):
            rc, out, err = cli(*path, "--help")
            assert rc == 0, (path, err)
            assert "``" not in out, f"raw markup in `masktrack {' '.join(path)} --help`"
            undocumented += [
                f"{' '.join(path)} {p.opts[0]}"
                for p in cmd.params
                if isinstance(p, click.Option) and not p.help and p.name != "help"
            ]
    assert undocumented == []

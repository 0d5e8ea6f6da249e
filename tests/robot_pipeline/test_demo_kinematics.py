"""``masktrack demo --prompts kinematics``: the whole job with zero clicks."""

from __future__ import annotations

import json
from pathlib import Path

from masktrack.cli.main import main


def test_demo_with_zero_clicks(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    args = ["demo", str(out), "--small", "--frames", "8", "--size", "128x96", "--cameras", "2"]
    main([*args, "--prompts", "kinematics", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["prompt_source"] == "kinematics" and report["clicks"] == 0
    assert not (out / "prompts").exists()  # no prompt file was written
    cfg = (out / "cam0_front.yaml").read_text()
    assert "kinematics" in cfg and "prompts:" not in cfg
    jf = report["jf_mean"]
    assert jf["arm.arm"] > 0.85 and jf["gripper.gripper"] > 0.7, jf
    # the clicks demo on the same scene counts its clicks
    assert main([*args, "--json"]) in (0, 1)
    clicked = json.loads(capsys.readouterr().out)
    assert clicked["prompt_source"] == "clicks" and clicked["clicks"] > 0

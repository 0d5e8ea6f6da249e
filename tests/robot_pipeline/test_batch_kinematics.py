"""A batch over synthetic scenes with robot state and zero prompt files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import yaml

from masktrack.batch.job import load_job
from masktrack.batch.run import run_batch
from masktrack.masks.store import MaskStore
from masktrack.synth import SynthConfig, generate
from masktrack.track.instances import load_instance

from .conftest import iou


def _dataset(root: Path) -> Path:
    """scene_0, scene_1: robot state, no prompt files; scene_2: no robot state, no prompt file;
    scene_3: no robot state but a prompt file (the fallback)."""
    import json

    for i in range(4):
        gen = generate(
            SynthConfig.small(width=96, height=72, frames=6, cameras=2, seed=i, points=20),
            root / "_gen" / f"s{i}",
        )
        scene_dir = root / f"scene_{i}"
        for cam in gen.camera_ids:
            shutil.copytree(gen.frames_dir(cam), scene_dir / cam / "color")
        shutil.copytree(gen.scene_path, scene_dir / "scene")
        if i >= 2:
            shutil.rmtree(scene_dir / "scene" / "robot")
        if i == 3:
            for c, cam in enumerate(gen.camera_ids):
                m = load_instance(gen.scene_path, "gt_arm").masks(c, 0)
                ys, xs = np.nonzero(m)
                box = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
                pf = {
                    "format": "masktrack.prompts",
                    "version": 1,
                    "objects": [{"name": "arm", "id": 1, "keyframes": [{"frame": 0, "boxes": [box]}]}],
                }
                (scene_dir / cam / "prompts.json").write_text(json.dumps(pf))
    shutil.rmtree(root / "_gen")
    return root


def test_batch_with_zero_prompt_files(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    job = {
        "version": 1,
        "root": str(root),
        "scenes": "{scene}",
        "cameras": "cam*",
        "video": "{scene_dir}/{camera}/color",
        "prompts": "{scene_dir}/{camera}/prompts.json",
        "output": "{out}/{scene}/{camera}",
        "robot": {"scene": "{scene_dir}/scene", "camera": "{camera}"},
        "stages": ["segment", "compose"],
        "pipeline": {
            "sessions": [{"name": "arm", "kinematics": {"objects": {"arm": "arm"}, "mode": "render"}}],
            "compose": {"arm_wide": "dilate(arm, 3)"},
        },
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    assert not list(root.glob("scene_[012]/*/prompts.json"))  # zero prompt files where robot state exists
    report = run_batch(load_job(tmp_path / "job.yaml"), tmp_path / "out", workers=1)
    status = {u.id: u.status for u in report.units}
    assert status == {
        "scene_0/cam0_front": "computed",
        "scene_0/cam1_left": "computed",
        "scene_1/cam0_front": "computed",
        "scene_1/cam1_left": "computed",
        "scene_2/cam0_front": "skipped",
        "scene_2/cam1_left": "skipped",
        "scene_3/cam0_front": "computed",
        "scene_3/cam1_left": "computed",
    }, {u.id: (u.status, u.reason) for u in report.units}
    skipped = [u for u in report.units if u.status == "skipped"]
    assert all("no robot state" in u.reason for u in skipped)
    for scene in ("scene_0", "scene_1"):
        gt = load_instance(root / scene / "scene", "gt_arm").masks(0)
        pred = MaskStore(tmp_path / "out" / scene / "cam0_front").session("arm").read_object("arm")
        assert gt.any() and pred.any()
        assert np.mean([iou(p, g) for p, g in zip(pred, gt, strict=True)]) > 0.95
    # scene_3 fell back to its prompt file (the default weight-free backend from a box)
    from masktrack.segment.registry import DEFAULT_BACKEND

    fb = MaskStore(tmp_path / "out" / "scene_3" / "cam0_front").session("arm")
    assert fb.require_manifest().backend == DEFAULT_BACKEND and fb.read_object("arm").any()
    # a re-run reuses everything; changing one scene's joint states re-runs only its units
    again = run_batch(load_job(tmp_path / "job.yaml"), tmp_path / "out", workers=1)
    assert again.count("reused") == 6 and again.count("skipped") == 2
    q_path = root / "scene_1" / "scene" / "robot" / "joint_positions.npy"
    q = np.load(q_path)
    q[:, 0] += 0.1
    np.save(q_path, q)
    third = run_batch(load_job(tmp_path / "job.yaml"), tmp_path / "out", workers=1)
    assert {u.id for u in third.units if u.status == "computed"} == {
        "scene_1/cam0_front",
        "scene_1/cam1_left",
    }

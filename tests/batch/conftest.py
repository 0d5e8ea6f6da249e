"""A tiny synthetic dataset in the AirExo-2 layout: <task>/train/<scene>/cam_<id>/color/%05d.png."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

PIPELINE = {
    "sessions": [{"name": "arm", "backend": "classic", "objects": ["arm"]}],
    "compose": {"arm_wide": "dilate(arm, 3)"},
}


def click_points(mask: np.ndarray, n_pos: int = 3, n_neg: int = 3) -> tuple[list[list[float]], list[int]]:
    """Clicks a person would make: positives deep inside the mask, negatives in a ring just outside."""
    inside = ndimage.distance_transform_edt(mask)
    order = np.argsort(inside.ravel())[::-1]
    pos: list[tuple[int, int]] = []
    for idx in order:
        y, x = divmod(int(idx), mask.shape[1])
        if all((x - px) ** 2 + (y - py) ** 2 > 36 for px, py in pos):
            pos.append((x, y))
        if len(pos) == n_pos:
            break
    ring = ndimage.binary_dilation(mask, iterations=8) & ~ndimage.binary_dilation(mask, iterations=4)
    ys, xs = np.nonzero(ring)
    pick = np.linspace(0, len(xs) - 1, n_neg).astype(int) if len(xs) else []
    neg = [(int(xs[i]), int(ys[i])) for i in pick]
    pts = [[float(x), float(y)] for x, y in pos + neg]
    return pts, [1] * len(pos) + [0] * len(neg)


def write_prompt_file(path: Path, mask: np.ndarray) -> None:
    pts, labels = click_points(mask)
    data = {
        "format": "masktrack.prompts",
        "version": 1,
        "objects": [{"name": "arm", "id": 1, "keyframes": [{"frame": 0, "points": pts, "labels": labels}]}],
    }
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory) -> Path:
    """3 scenes x 2 cameras of a small synthetic robot scene (+ its masktrack scene folder); scene_2 has a broken prompt file."""
    from masktrack.synth import SynthConfig, generate
    from masktrack.track.instances import load_instance

    root = tmp_path_factory.mktemp("dataset")
    for i in range(3):
        gen = generate(
            SynthConfig.small(width=96, height=72, frames=6, cameras=2, seed=i, points=20),
            root / "_gen" / f"s{i}",
        )
        inst = load_instance(gen.scene_path, "gt_arm")
        for c, cam in enumerate(gen.camera_ids):
            cam_dir = (
                root / "pick_cube" / "train" / f"scene_{i}" / cam
            )  # camera folders named by the scene's camera ids
            shutil.copytree(gen.frames_dir(cam), cam_dir / "color")
            write_prompt_file(cam_dir / "prompts.json", inst.masks(c, 0))
        shutil.copytree(gen.scene_path, root / "pick_cube" / "train" / f"scene_{i}" / "scene")
    bad = root / "pick_cube" / "train" / "scene_2"
    for cam_dir in bad.iterdir():
        (cam_dir / "prompts.json").write_text(
            '{"format": "masktrack.prompts", "version": 1, "objects": [{"name": "arm", "id": 1, "keyframes": [{"frame": 0, "points": [[9999, 5]], "labels": [1]}]}]}'
        )
    shutil.rmtree(root / "_gen")
    return root


def write_job(path: Path, root: Path) -> Path:
    import yaml

    job = {
        "version": 1,
        "root": str(root),
        "scenes": "{task}/train/{scene}",
        "cameras": "cam*",
        "video": "{scene_dir}/{camera}/color",
        "prompts": "{scene_dir}/{camera}/prompts.json",
        "output": "{out}/{task}/{scene}/{camera}",
        "stages": ["segment", "compose", "track"],
        "pipeline": PIPELINE,
        "track": {
            "scene": "{scene_dir}/scene",
            "instances": {"arm": "arm.arm", "arm_wide": "composed:arm_wide"},
            "output": "{out}/{task}/{scene}/tracks",
            "query": {"window": "frame", "frame": 0, "max_queries": 64},
        },
    }
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return path


@pytest.fixture()
def job_file(tmp_path, synth_dataset) -> Path:
    """The batch job over ``synth_dataset``."""
    return write_job(tmp_path / "job.yaml", synth_dataset)

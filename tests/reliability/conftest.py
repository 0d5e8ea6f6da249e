"""Fixtures of the reliability suite: the batch tests' synthetic dataset, and helpers to run the CLI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "_masktrack_batch_conftest", Path(__file__).parent.parent / "batch" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_batch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_batch)

synth_dataset = _batch.synth_dataset
job_file = _batch.job_file
write_job = _batch.write_job
BATCH_DIR = Path(__file__).parent.parent / "batch"
HERE = Path(__file__).parent


def make_workspace(root: Path, synth_dataset: Path) -> dict[str, Path]:
    """frames/, prompts.json, job.yaml (one classic `arm` session + a `wide` composition) and scene/
    (with instances) under ROOT, copied from the first camera of the synthetic dataset's first scene."""
    import shutil

    import yaml

    src = synth_dataset / "pick_cube/train/scene_0"
    cam = sorted(src.glob("cam*"))[0]
    shutil.copytree(cam / "color", root / "frames")
    shutil.copy(cam / "prompts.json", root / "prompts.json")
    shutil.copytree(src / "scene", root / "scene")
    cfg = {
        "video": "frames",
        "output": "out",
        "prompts": "prompts.json",
        "sessions": [{"name": "arm", "backend": "classic", "objects": ["arm"]}],
        "compose": {"wide": "dilate(arm, 3)"},
    }
    (root / "job.yaml").write_text(yaml.safe_dump(cfg))
    return {"root": root, "cfg": root / "job.yaml", "scene": root / "scene"}


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120):
    """``python -m masktrack ARGS`` in a subprocess: (exit code, stdout, stderr)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(
        [sys.executable, "-m", "masktrack", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=e,
        timeout=timeout,
    )
    return p.returncode, p.stdout, p.stderr


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime: "nothing written" compares two of these."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def slow_env(monkeypatch):
    """Subprocess environment in which the ``slow_classic`` backend plugin is importable."""
    path = os.pathsep.join([str(BATCH_DIR), str(HERE), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("MASKTRACK_PLUGINS", "masktrack_slow_plugin")
    monkeypatch.syspath_prepend(str(BATCH_DIR))
    monkeypatch.syspath_prepend(str(HERE))
    return {"PYTHONPATH": path, "MASKTRACK_PLUGINS": "masktrack_slow_plugin"}

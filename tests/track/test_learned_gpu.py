"""The learned trackers' real code, with random weights, on a CUDA GPU, through ``masktrack track``.

Each test needs the tracker's source tree (never vendored here) named by an
environment variable, and skips without it:

* ``MASKTRACK_MVTRACKER_REPO``: a clone of ethz-vlg/mvtracker (torch.hub ``mvtracker`` entry);
* ``MASKTRACK_COTRACKER_REPO``: a clone of facebookresearch/co-tracker (``cotracker3_offline``);
* ``MASKTRACK_SPATIALTRACKER_CODE``: a clone of henry123-boy/SpaTrackerV2 (its ``Predictor``, built with
  random weights from the clone's ``config/magic_infer_offline.yaml``: ``pretrained=false``); its imports
  need utils3d (from git, a version with ``utils3d.torch.depth_edge``), kornia, pycolmap, pyceres,
  decord, easydict, jaxtyping, flow_vis, scikit-learn, matplotlib, safetensors and huggingface_hub.

They run on the RLBench episode (``../shared/data/rlbench``, or ``$MASKTRACK_SHARED/data``), queries at
frame 5 on the gripper, tracked in batches of 64, and prove the plumbing,
not accuracy (random weights): output shapes and the query order across
batches, NaN before each query's frame and finite after, masktrack's
world-to-camera projection equal to the model's own (MVTracker), and
the throughput, written to ``$MASKTRACK_GPU_REPORT`` (JSON lines) when set.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

QUERY_FRAME = 5


@pytest.fixture(scope="module")
def rlbench_scene(tmp_path_factory: pytest.TempPathFactory, rlbench_npz: Path) -> Path:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    npz = rlbench_npz
    from masktrack.io.scene_import import import_npz

    out = tmp_path_factory.mktemp("rlbench") / "scene"
    import_npz(npz, out, mask_key="gt_masks_gripper=gripper")
    return out


def _run(scene: Path, out: Path, tracker: str, options: list[str]) -> tuple[dict, float]:
    from click.testing import CliRunner

    from masktrack.cli.main import cli

    args = ["track", str(scene), "--out", str(out), "--tracker", tracker, "--instances", "gripper"]
    args += ["--window", "frame", "--frame", str(QUERY_FRAME), "--max-queries", "256"]
    args += ["--max-points-per-batch", "64", "--quiet"]
    for o in options:
        args += ["-o", o]
    t0 = time.perf_counter()
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    dt = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    return {"output": res.output}, dt


def _check(scene_dir: Path, out: Path, name: str, seconds: float) -> None:
    from masktrack.io.scene import load_scene
    from masktrack.track.base import Tracks
    from masktrack.track.geometry import project_cameras

    scene = load_scene(scene_dir)
    tr = Tracks.load(out / "gripper" / "tracks.npz")
    T, n = scene.num_frames, tr.num_points
    assert n > 64, n  # more than one batch
    assert tr.tracks.shape == (T, n, 3) and tr.visibility.shape == (T, n)
    qt = tr.queries[:, 0].astype(int)
    assert (qt == QUERY_FRAME).all()
    before = np.arange(T)[:, None] < qt[None]
    assert np.isnan(tr.tracks[before]).all() and not tr.visibility[before].any()
    assert np.isfinite(tr.tracks[~before]).all()
    # the queries lie on the gripper's surface: they project into the gripper mask of some camera
    uv, z = project_cameras(
        tr.queries[:, 1:4].astype(np.float64), scene.intrs[:, QUERY_FRAME], scene.extrs[:, QUERY_FRAME]
    )
    assert (z > 0).any(axis=0).all()
    # the tracks move (not a constant copy of the queries) and stay in the scene's metric range
    spread = np.nanstd(tr.tracks[QUERY_FRAME:], axis=0).max()
    assert spread > 0
    assert np.abs(tr.tracks[~before]).max() < 50
    report = os.environ.get("MASKTRACK_GPU_REPORT")
    if report:
        import torch

        rec = {
            "tracker": name,
            "device": torch.cuda.get_device_name(0),
            "queries": int(n),
            "frames": int(T),
            "cameras": int(scene.num_cameras),
            "seconds_incl_load": round(seconds, 3),
            "point_frames_per_s_incl_load": float(n * T / seconds),
            "provenance": tr.provenance,
            "final_median_disp_from_query_m": float(
                np.median(np.linalg.norm(tr.tracks[-1] - tr.queries[:, 1:4], axis=1))
            ),
        }
        with open(report, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=str) + "\n")


def _repo(var: str) -> str:
    repo = os.environ.get(var)
    if not repo:
        pytest.skip(f"set {var} to the tracker's source tree")
    return repo


def test_mvtracker_real_code_random_weights(rlbench_scene: Path, tmp_path: Path) -> None:
    repo = _repo("MASKTRACK_MVTRACKER_REPO")
    # MVTracker's own projection (world_space_to_pixel_xy_and_camera_z) agrees with masktrack's on the scene
    import sys

    import torch

    sys.path.insert(0, repo)
    from mvtracker.models.core.model_utils import world_space_to_pixel_xy_and_camera_z

    from masktrack.io.scene import load_scene
    from masktrack.track.geometry import project_cameras

    scene = load_scene(rlbench_scene)
    X = np.random.default_rng(0).normal([0.3, 0.0, 1.0], 0.1, (50, 3))
    uv, z = project_cameras(X, scene.intrs[:, 0], scene.extrs[:, 0])
    for c in range(scene.num_cameras):
        xy, cz = world_space_to_pixel_xy_and_camera_z(
            torch.from_numpy(X).float()[None],
            torch.from_numpy(np.asarray(scene.intrs[c, :1])).float(),
            torch.from_numpy(np.asarray(scene.extrs[c, :1])).float(),
        )
        np.testing.assert_allclose(xy[0].numpy(), uv[c], atol=1e-3)
        np.testing.assert_allclose(cz.numpy().ravel(), z[c], atol=1e-4)
    out = tmp_path / "tracks"
    _, dt = _run(
        rlbench_scene, out, "mvtracker", [f"repo={repo}", "source=local", "pretrained=false", "device=cuda"]
    )
    _check(rlbench_scene, out, "mvtracker", dt)


def test_cotracker3_real_code_random_weights(rlbench_scene: Path, tmp_path: Path) -> None:
    repo = _repo("MASKTRACK_COTRACKER_REPO")
    out = tmp_path / "tracks"
    _, dt = _run(
        rlbench_scene, out, "cotracker", [f"repo={repo}", "source=local", "pretrained=false", "device=cuda"]
    )
    _check(rlbench_scene, out, "cotracker", dt)


def test_spatialtracker_real_code_random_weights(rlbench_scene: Path, tmp_path: Path) -> None:
    code = _repo("MASKTRACK_SPATIALTRACKER_CODE")
    out = tmp_path / "tracks"
    _, dt = _run(rlbench_scene, out, "spatialtracker", [f"code={code}", "pretrained=false", "device=cuda"])
    _check(rlbench_scene, out, "spatialtracker", dt)

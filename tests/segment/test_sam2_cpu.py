"""The ``sam2`` backend on CPU: SAM2.1 tiny from its config, random weights, 64 px input.

The weights are random, so these tests check the plumbing, not the masks'
quality: every frame covered by both passes, sessions isolated (a session's
masks do not depend on what ran before it on the same backend), shared
features change nothing but the cost, resume, and one-line errors.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sam2")

from masktrack.errors import BackendError
from masktrack.io.video import open_video
from masktrack.segment.base import FramePrompt, SessionObject
from masktrack.segment.registry import load_backend

TINY = {"random_weights": True, "device": "cpu", "image_size": 64}
FRAMES = 8


@pytest.fixture()
def cli_main(capsys):
    """Run ``masktrack ARGS`` in-process: (exit code, stdout, stderr)."""
    from masktrack.cli.main import main

    def run(*args):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture()
def video(tmp_path, oracle_mod):
    return oracle_mod.make_colour_video(tmp_path / "frames", frames=FRAMES)


def _run(backend, video, objects, prompts, start):
    out = {}
    with backend.open_session(video, objects) as s:
        for p in prompts:
            s.add_prompt(p)
        for reverse in (False, True):
            for f, masks in s.propagate(start, reverse=reverse):
                out[(reverse, f)] = masks
    return out


def _prompts(oracle_mod):
    red = oracle_mod.kf("red", 3)
    return (
        (SessionObject("red", 1, (255, 0, 0)), SessionObject("blue", 2, (0, 0, 255))),
        [
            FramePrompt(
                frame=3,
                object="red",
                points=np.array(red["points"], np.float32),
                labels=np.array(red["labels"]),
            ),
            FramePrompt(frame=3, object="blue", boxes=np.array([[25, 22, 37, 34]], np.float32)),
        ],
    )


def test_sessions_share_features_and_stay_isolated(video, oracle_mod, mask_checks):
    objects, prompts = _prompts(oracle_mod)
    with open_video(video) as v, load_backend("sam2", **TINY) as shared:
        first = _run(shared, v, objects, prompts, 3)
        misses = shared.cache.stats.misses
        entries = len(shared.cache)
        # another session in between, with other objects and prompts
        cham = oracle_mod.kf("cham", 6)
        _run(
            shared,
            v,
            (SessionObject("cham", 1, (0, 255, 0)),),
            [
                FramePrompt(
                    frame=6, object="cham", points=np.array(cham["points"], np.float32), labels=np.array([1])
                )
            ],
            6,
        )
        again = _run(shared, v, objects, prompts, 3)
        assert (
            shared.cache.stats.misses == misses and len(shared.cache) == entries
        )  # nothing decoded or encoded twice
        with load_backend("sam2", **TINY, share_features=False) as alone:
            fresh = _run(alone, v, objects, prompts, 3)
    # forward 3..7, backward 3..0: every frame, both directions
    assert sorted(f for r, f in first if not r) == list(range(3, FRAMES))
    assert sorted(f for r, f in first if r) == list(range(0, 4))
    for key in first:
        assert set(first[key]) == {"red", "blue"}
        for name in ("red", "blue"):
            m = first[key][name]
            assert m.shape == (56, 96) and m.dtype == bool
    mask_checks.assert_same_masks(first, again, "isolation")
    mask_checks.assert_same_masks(first, fresh, "shared features == SAM2's own per-session path")


def test_backward_from_frame_zero_yields_frame_zero(video, oracle_mod):
    red = oracle_mod.kf("red", 0)
    with (
        open_video(video) as v,
        load_backend("sam2", **TINY) as b,
        b.open_session(v, (SessionObject("red", 1, (1, 2, 3)),)) as s,
    ):
        s.add_prompt(
            FramePrompt(
                frame=0, object="red", points=np.array(red["points"], np.float32), labels=np.array([1])
            )
        )
        assert [f for f, _ in s.propagate(0, reverse=True)] == [0]


def test_no_prompts_is_a_clear_error(video):
    with (
        open_video(video) as v,
        load_backend("sam2", **TINY) as b,
        b.open_session(v, (SessionObject("red", 1, (1, 2, 3)),)) as s,
    ):
        with pytest.raises(BackendError, match="no clicks, boxes or masks"):
            next(s.propagate(0))


@pytest.mark.slow
def test_two_session_job_through_the_cli(tmp_path, video, oracle_mod, cli_main, mask_checks):
    from masktrack.masks.store import MaskStore

    opts = dict(TINY)
    sessions = [
        {"name": "arm", "backend": "sam2", "options": opts, "objects": ["red", "blue"]},
        {"name": "gripper", "backend": "sam2", "options": opts, "objects": ["cham"]},
    ]
    objects = {
        "red": [oracle_mod.kf("red", 2)],
        "blue": [oracle_mod.kf("blue", 5)],
        "cham": [oracle_mod.kf("cham", 4)],
    }
    cfg = oracle_mod.write_job(tmp_path, sessions, objects)
    rc, out, err = cli_main("segment", cfg, "--no-progress")
    assert rc == 0, err
    assert out.count("computed") == 2
    store = MaskStore(tmp_path / "out")
    both = {}
    for name, objs in (("arm", ["red", "blue"]), ("gripper", ["cham"])):
        s = store.session(name)
        m = s.require_manifest()
        assert m.num_frames == FRAMES and m.names == objs
        assert s.verify() == []  # every frame stored and readable
        st = m.stats
        assert st["forward_start"] is not None and st["backward_start"] is not None  # both directions ran
        both[name] = [s.read_stack(f) for f in range(FRAMES)]

    # isolation through the CLI: the gripper session alone, on a fresh backend, stores the same masks
    alone = oracle_mod.write_job(
        tmp_path / "alone", sessions[1:], {"cham": objects["cham"]}, video="../frames"
    )
    rc, _, err = cli_main("segment", alone, "--no-progress")
    assert rc == 0, err
    solo = MaskStore(tmp_path / "alone" / "out").session("gripper")
    mask_checks.assert_same_masks(both["gripper"], [solo.read_stack(f) for f in range(FRAMES)], "isolation")

    # resume: nothing to redo; a changed prompt redoes only its session
    rc, out, _ = cli_main("segment", cfg, "--no-progress")
    assert rc == 0 and out.count("reused") == 2
    objects["cham"] = [oracle_mod.kf("cham", 6)]
    cfg = oracle_mod.write_job(tmp_path, sessions, objects)
    rc, out, _ = cli_main("segment", cfg, "--no-progress")
    assert rc == 0 and out.count("reused") == 1 and out.count("computed") == 1


def test_a_checkpoint_file_loads_through_sam2s_loader(tmp_path, video, oracle_mod, mask_checks):
    """A state dict saved as SAM2's released checkpoints are ({"model": ...}) gives back the model it came from."""
    import torch

    objects, prompts = _prompts(oracle_mod)
    ckpt = tmp_path / "sam2.1_tiny_random.pt"
    with open_video(video) as v:
        with load_backend("sam2", **TINY) as random_model:
            torch.save({"model": random_model.predictor.state_dict()}, ckpt)
            expected = _run(random_model, v, objects, prompts, 3)
        with load_backend("sam2", checkpoint=str(ckpt), device="cpu", image_size=64) as loaded:
            got = _run(loaded, v, objects, prompts, 3)
            assert loaded.fingerprint()["weights"] != random_model.fingerprint()["weights"]
    mask_checks.assert_same_masks(expected, got, "checkpoint file vs the model it came from")


def test_cpu_runs_have_no_cuda_graphs_and_keep_their_fingerprint():
    """Graphs are GPU-only; on CPU the fingerprint (and so every stored manifest) is what it was before them."""
    with load_backend("sam2", **TINY) as b:
        assert (
            b.graphs is None and "cuda_graphs" not in b.fingerprint() and "cuda_graphs" not in b.cache_stats()
        )


def test_checkpoint_errors_name_the_file(tmp_path):
    import torch

    with pytest.raises(BackendError) as e:
        load_backend("sam2", device="cpu")
    assert e.value.field == "options.checkpoint" and "random_weights" in str(e.value)
    missing = tmp_path / "nope.pt"
    with pytest.raises(BackendError) as e:
        load_backend("sam2", checkpoint=str(missing), device="cpu")
    assert str(missing) in str(e.value) and "not found" in str(e.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BackendError) as e:
        load_backend("sam2", checkpoint=str(junk), device="cpu", image_size=64)
    assert str(junk) in str(e.value) and "cannot read" in str(e.value)
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"image_encoder.trunk.pos_embed": torch.zeros(1, 2, 3, 4)}}, wrong)
    with pytest.raises(BackendError) as e:
        load_backend("sam2", checkpoint=str(wrong), device="cpu", image_size=64)
    assert str(wrong) in str(e.value) and "does not match config" in str(e.value)
    with pytest.raises(BackendError, match="unknown sam2 config"):
        load_backend("sam2", config="configs/nope.yaml", **TINY)

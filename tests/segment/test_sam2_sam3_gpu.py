"""GPU tests of the ``sam2`` and ``sam3`` backends (random weights; run on a CUDA machine, skipped in CI).

Run with ``python -m pytest -m gpu tests/segment``.  What they check is the
plumbing: every frame covered in both directions, isolation (a session's
masks do not depend on earlier sessions of the same backend), the shared
feature cache really reused, and GPU memory back to its starting level once
sessions and backends are closed.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():  # pragma: no cover - CI has no GPU
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from masktrack.io.video import open_video  # noqa: E402
from masktrack.segment.base import FramePrompt, SessionObject, TextPrompt  # noqa: E402
from masktrack.segment.registry import load_backend  # noqa: E402

pytestmark = pytest.mark.gpu
FRAMES = 10
MiB = 1024**2


@pytest.fixture()
def video(tmp_path, oracle_mod):
    return oracle_mod.make_colour_video(tmp_path / "frames", frames=FRAMES, size=(120, 200))


def _allocated() -> int:
    """Bytes held by tensors (cuBLAS keeps a workspace in PyTorch's allocator: not counted)."""
    gc.collect()
    torch.cuda.synchronize()
    if hasattr(torch._C, "_cuda_clearCublasWorkspaces"):
        torch._C._cuda_clearCublasWorkspaces()
    return torch.cuda.memory_allocated()


def _assert_nothing_left(reference: int) -> None:
    """A closed session leaves no state on the GPU.

    One session's own state here (memory bank of 10 frames x 2 objects, masks)
    is over 10 MiB; a few hundred KiB of drift were seen once on sam3 after a
    second session (not reproduced), so drift under 1 MiB is not a leak.
    """
    grown = _allocated() - reference
    assert grown <= MiB, f"{grown / MiB:.2f} MiB more held after the session closed"
    if grown:
        print(f"allocated drift after a closed session: {grown} bytes")


def _click(oracle_mod, name, frame, obj):
    k = oracle_mod.kf(name, frame)
    return FramePrompt(
        frame=frame, object=obj, points=np.array(k["points"], np.float32), labels=np.array(k["labels"])
    )


def _both(session, start):
    fwd = dict(session.propagate(start, reverse=False))
    bwd = dict(session.propagate(start, reverse=True))
    return fwd, bwd


def _points_run(backend, v, oracle_mod):
    objs = (SessionObject("g_left", 1, (1, 2, 3)), SessionObject("g_right", 2, (4, 5, 6)))
    with backend.open_session(v, objs) as s:
        s.add_prompt(_click(oracle_mod, "red", 4, "g_left"))
        s.add_prompt(_click(oracle_mod, "blue", 4, "g_right"))
        return _both(s, 4)


def _check_cover(fwd, bwd, start, names):
    assert list(fwd) == list(range(start, FRAMES))
    assert list(bwd) == list(range(start, -1, -1))
    for masks in (*fwd.values(), *bwd.values()):
        assert set(masks) == set(names)
        assert all(m.dtype == bool and m.shape == (120, 200) for m in masks.values())


def _same(a, b):
    return all(np.array_equal(a[f][n], b[f][n]) for f in a for n in a[f])


def test_sam2_gpu_sessions_isolated_shared_and_freed(video, oracle_mod):
    before = _allocated()
    with open_video(video) as v:
        b = load_backend("sam2", random_weights=True, device="cuda")
        loaded = _allocated()
        fwd1, bwd1 = _points_run(b, v, oracle_mod)
        after_first = _allocated()
        misses = b.cache.stats.misses
        fwd2, bwd2 = _points_run(b, v, oracle_mod)
        assert b.cache.stats.misses == misses  # frames and features came from the shared cache
        _assert_nothing_left(after_first)
        b.close()
    _check_cover(fwd1, bwd1, 4, ["g_left", "g_right"])
    assert _same(fwd1, fwd2) and _same(bwd1, bwd2)
    assert loaded > before
    assert _allocated() - before < 8 * MiB, "backend close must free the model, frames and features"


def _sam3(**kw):
    return load_backend("sam3", random_weights=True, device="cuda", **kw)


def test_sam3_points_session_no_text_bootstrap(video, oracle_mod):
    before = _allocated()
    with open_video(video) as v:
        b = _sam3()
        calls = []
        b.predictor.handle_request = lambda req: calls.append(
            req
        )  # a points session must not touch the text API
        fwd1, bwd1 = _points_run(b, v, oracle_mod)
        after_first = _allocated()
        misses = b.cache.stats.misses
        fwd2, bwd2 = _points_run(b, v, oracle_mod)
        assert calls == []
        assert b.cache.stats.misses == misses
        _assert_nothing_left(after_first)
        b.close()
    _check_cover(fwd1, bwd1, 4, ["g_left", "g_right"])
    assert _same(fwd1, fwd2) and _same(bwd1, bwd2)
    assert _allocated() - before < 64 * MiB


def test_sam3_points_objects_starting_on_different_frames(video, oracle_mod):
    """Objects prompted on different frames get separate tracker states (the sam3 0.1.4 workaround):
    object b's masks are exactly those of a session holding b alone, driven the same way."""
    with open_video(video) as v, _sam3() as b:
        objs = (SessionObject("a", 1, (1, 2, 3)), SessionObject("b", 2, (4, 5, 6)))
        with b.open_session(v, objs) as s:
            s.add_prompt(_click(oracle_mod, "red", 2, "a"))
            s.add_prompt(_click(oracle_mod, "blue", 6, "b"))
            fwd, bwd = dict(s.propagate(2)), dict(s.propagate(6, reverse=True))
            assert len(s._groups) == 2
        with b.open_session(v, objs[1:]) as s:
            s.add_prompt(_click(oracle_mod, "blue", 6, "b"))
            fwd_b, bwd_b = dict(s.propagate(2)), dict(s.propagate(6, reverse=True))
    assert list(fwd) == list(range(2, FRAMES)) and list(bwd) == list(range(6, -1, -1))
    for f in fwd:
        assert np.array_equal(fwd[f]["b"], fwd_b[f]["b"]), f
    for f in bwd:
        assert np.array_equal(bwd[f]["b"], bwd_b[f]["b"]), f


def test_sam3_text_session_then_points_session_share_features(video, oracle_mod):
    before = _allocated()
    with open_video(video) as v:
        b = _sam3()
        objs = (SessionObject("arm", 1, (1, 2, 3)), SessionObject("arm_2", 2, (4, 5, 6)))
        with b.open_session(v, objs) as s:
            s.add_text(TextPrompt(frame=3, text="robot and cable"))
            fwd, bwd = _both(s, 3)
            mapped = dict(s.mapping)
            assert all(n in ("arm", "arm_2") for n in mapped.values())
            assert s.dropped_detections == len(s.dropped)
        _check_cover(fwd, bwd, 3, ["arm", "arm_2"])
        assert b.cache.stats.misses > 0
        computed = []
        put = b.cache.put
        b.cache.put = lambda key, value: (computed.append(key[1]), put(key, value))[1]
        fwd2, bwd2 = _points_run(
            b, v, oracle_mod
        )  # the gripper session: reads the text session's trunk output
        assert "sam3-trunk" not in computed and "frame" not in computed
        _check_cover(fwd2, bwd2, 4, ["g_left", "g_right"])
        after_points = _allocated()  # (the first points session fills model-level constant caches)
        _points_run(b, v, oracle_mod)
        _assert_nothing_left(after_points)
        b.close()
    assert _allocated() - before < 64 * MiB


def test_sam3_text_session_with_refinement_clicks(video, oracle_mod):
    with open_video(video) as v, _sam3() as b:
        objs = (SessionObject("arm", 1, (1, 2, 3)),)
        with b.open_session(v, objs) as s:
            s.add_prompt(_click(oracle_mod, "red", 5, "arm"))
            s.add_text(TextPrompt(frame=2, text="robot"))
            fwd, bwd = dict(s.propagate(2)), dict(s.propagate(5, reverse=True))
            assert "arm" in s.mapping.values()  # the click maps (or adds) the object
        assert list(fwd) == list(range(2, FRAMES)) and list(bwd) == list(range(5, -1, -1))


def _held_after_points_run(backend, v, oracle_mod):
    """(forward, backward masks, GPU bytes held by the open session + caches after propagating)."""
    objs = (SessionObject("g_left", 1, (1, 2, 3)), SessionObject("g_right", 2, (4, 5, 6)))
    with backend.open_session(v, objs) as s:
        s.add_prompt(_click(oracle_mod, "red", 4, "g_left"))
        s.add_prompt(_click(oracle_mod, "blue", 4, "g_right"))
        fwd, bwd = _both(s, 4)
        return fwd, bwd, _allocated()


@pytest.mark.parametrize(
    ("name", "offload"),
    [
        ("sam2", {"offload_video_to_cpu": True, "offload_state_to_cpu": True}),
        ("sam3", {"offload_video_to_cpu": True}),
    ],
)
def test_offload_to_host_keeps_the_masks_and_holds_less_gpu_memory(video, oracle_mod, name, offload):
    runs = {}
    with open_video(video) as v:
        for off in (False, True):
            before = _allocated()
            b = load_backend(name, random_weights=True, device="cuda", **(offload if off else {}))
            loaded = _allocated()
            fwd, bwd, held = _held_after_points_run(b, v, oracle_mod)
            runs[off] = (fwd, bwd, held - loaded)
            b.close()
            assert _allocated() - before < 64 * MiB
    print(
        f"{name}: GPU bytes held after a 10-frame session: {runs[False][2] / MiB:.1f} MiB, offloaded {runs[True][2] / MiB:.1f} MiB"
    )
    assert _same(runs[False][0], runs[True][0]) and _same(runs[False][1], runs[True][1])
    assert runs[True][2] < runs[False][2]


@pytest.fixture(scope="module")
def sam3_checkpoint(tmp_path_factory):
    """The random-weights model saved as a checkpoint file ({"model": state dict}, as sam3's loader reads)."""
    path = tmp_path_factory.mktemp("sam3_ckpt") / "sam3_random.pt"
    b = _sam3()
    torch.save({"model": b.model.state_dict()}, path)
    b.close()
    return path


def _text_run(backend, v, oracle_mod):
    """A text session with a refinement click (random weights detect nothing; the click maps "arm" to an instance)."""
    objs = (SessionObject("arm", 1, (1, 2, 3)), SessionObject("arm_2", 2, (4, 5, 6)))
    with backend.open_session(v, objs) as s:
        s.add_prompt(_click(oracle_mod, "red", 5, "arm"))
        s.add_text(TextPrompt(frame=2, text="robot and cable"))
        fwd, bwd = dict(s.propagate(2)), dict(s.propagate(5, reverse=True))
        return fwd, bwd, dict(s.mapping)


def test_sam3_checkpoint_file_loads_through_sam3s_builder(video, oracle_mod, sam3_checkpoint):
    with open_video(video) as v:
        with _sam3() as b:
            expected = _points_run(b, v, oracle_mod)
        with load_backend("sam3", checkpoint=str(sam3_checkpoint), device="cuda") as b:
            got = _points_run(b, v, oracle_mod)
    assert _same(expected[0], got[0]) and _same(expected[1], got[1])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_sam3_text_session_on_two_gpus_matches_one(video, oracle_mod, sam3_checkpoint):
    """``gpus_to_use: [0, 1]`` runs SAM3's multi-GPU predictor (worker process, NCCL) end to end."""
    with open_video(video) as v:
        with load_backend("sam3", checkpoint=str(sam3_checkpoint), device="cuda") as one:
            fwd1, bwd1, map1 = _text_run(one, v, oracle_mod)
        two = load_backend("sam3", checkpoint=str(sam3_checkpoint), device="cuda", gpus_to_use=[0, 1])
        assert two.multi_gpu and two.predictor.world_size == 2
        try:
            fwd2, bwd2, map2 = _text_run(two, v, oracle_mod)
        finally:
            two.close()
    assert list(fwd2) == list(range(2, FRAMES)) and list(bwd2) == list(range(5, -1, -1))
    assert "arm" in map2.values() and map2 == map1  # the click mapped the same instance on both
    # (random weights score every tracked mask as "no object", so the pixel check below is weak)
    differ = sum(
        int(np.count_nonzero(a[f][n] != b[f][n]))
        for a, b in ((fwd1, fwd2), (bwd1, bwd2))
        for f in a
        for n in a[f]
    )
    total = sum(m.size for d in (fwd1, bwd1) for masks in d.values() for m in masks.values())
    print(f"two GPUs vs one: {differ} of {total} pixels differ; mapping {map2}")
    assert differ <= 0.001 * total


@pytest.mark.parametrize("name", ["sam2", "sam3"])
def test_cuda_graphs_replay_the_tracker_steps_and_match_eager(video, oracle_mod, name):
    """Graphs on vs off: the steps really replay, nothing falls back, and the masks agree."""
    before = _allocated()
    runs, stats = {}, {}
    with open_video(video) as v:
        for graphs in (False, True):
            b = load_backend(name, random_weights=True, device="cuda", cuda_graphs=graphs)
            runs[graphs] = _points_run(b, v, oracle_mod)
            stats[graphs] = b.cache_stats().get("cuda_graphs")
            b.close()
    assert stats[False] is None
    g = stats[True]
    assert g["failures"] == 0, g
    assert g["by_step"]["mask_heads"]["replays"] > 0 and g["by_step"]["memory_encoder"]["replays"] > 0, g
    differ = total = 0
    for d in (0, 1):
        for f, masks in runs[False][d].items():
            for n, m in masks.items():
                differ += int(np.count_nonzero(m != runs[True][d][f][n]))
                total += m.size
    print(f"{name}: {differ} of {total} mask pixels differ with CUDA graphs; {g}")
    assert differ <= 0.001 * total
    assert _allocated() - before < 64 * MiB, "closing the backend frees its graphs"


@pytest.mark.slow
def test_sam2_and_sam3_jobs_through_the_cli(tmp_path, video, oracle_mod, capsys):
    import cv2

    from masktrack.cli.main import main
    from masktrack.masks.store import MaskStore

    for backend, opts in (("sam2", {"random_weights": True}), ("sam3", {"random_weights": True})):
        folder = tmp_path / backend
        sessions = [
            {"name": "arm", "backend": backend, "options": opts, "objects": ["red", "blue"]},
            {"name": "gripper", "backend": backend, "options": opts, "objects": ["cham"]},
        ]
        # mask prompts: with random weights only a mask prompt guarantees a non-empty object
        # (SAM uses an input mask as the prompt frame's output), which the runner requires
        folder.mkdir(parents=True)
        objects = {}
        for name, frame in (("red", 2), ("blue", 2), ("cham", 5)):
            cv2.imwrite(
                str(folder / f"{name}.png"),
                oracle_mod.square_mask(name, frame, (120, 200)).astype(np.uint8) * 255,
            )
            objects[name] = [{"frame": frame, "mask": f"{name}.png"}]
        cfg = oracle_mod.write_job(folder, sessions, objects, video="../frames")
        capsys.readouterr()
        assert main(["segment", str(cfg), "--no-progress"]) == 0, capsys.readouterr().err
        store = MaskStore(folder / "out")
        for name in ("arm", "gripper"):
            assert store.session(name).verify() == []
        (folder / "alone").mkdir()
        (folder / "alone" / "cham.png").write_bytes((folder / "cham.png").read_bytes())
        alone = oracle_mod.write_job(
            folder / "alone", sessions[1:], {"cham": objects["cham"]}, video="../../frames"
        )
        assert main(["segment", str(alone), "--no-progress"]) == 0, capsys.readouterr().err
        solo = MaskStore(folder / "alone" / "out").session("gripper")
        together = store.session("gripper")
        for f in range(FRAMES):
            assert np.array_equal(solo.read_stack(f), together.read_stack(f)), (backend, f)
        capsys.readouterr()
        assert main(["segment", str(cfg), "--no-progress"]) == 0
        assert capsys.readouterr().out.count("reused") == 2

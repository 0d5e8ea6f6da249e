"""Bookkeeping of :mod:`masktrack.segment.cuda_graphs` on CPU.

A stand-in capture replays the step eagerly into static buffers, the way a
CUDA graph writes into its captured outputs, so the rules (per-session
counts, static inputs, cloned outputs, signatures, eviction, fallbacks) are
checked without a GPU.  Real graphs are checked in ``test_sam2_sam3_gpu.py``.
"""

from __future__ import annotations

from collections import Counter

import pytest

torch = pytest.importorskip("torch")

from masktrack.segment.cuda_graphs import (  # noqa: E402
    Captured,
    StepGraphs,
    copy_into,
    fingerprint_entry,
    flatten,
    install_sam_step_graphs,
    make_static,
    session_scope,
    stats_entry,
    unflatten,
)


class _Replay:
    def __init__(self, fn, a, k, outs):
        self.fn, self.a, self.k, self.outs = fn, a, k, outs

    def replay(self):
        for o, n in zip(self.outs, flatten(self.fn(*self.a, **self.k))[0]):
            o.copy_(n)


def stand_in_capture(fn, args, kwargs, stream):
    leaves, spec = flatten((args, kwargs))
    statics = [make_static(t) for t in leaves]
    for (base, _), t in zip(statics, leaves):
        copy_into(base, t)
    a, k = unflatten(spec, iter([view for _, view in statics]))
    out_leaves, out_spec = flatten(fn(*a, **k))
    outs = [o.clone() for o in out_leaves]
    return Captured(_Replay(fn, a, k, outs), [b for b, _ in statics], outs, out_spec)


def graphs(**kw):
    return StepGraphs(capture=stand_in_capture, require_cuda=False, **kw)


def test_flatten_round_trip_keeps_structure_and_values():
    t1, t2 = torch.ones(2), torch.zeros(3)
    obj = ([t1, {"a": t2, "n": 3}], (None, "x"))
    leaves, spec = flatten(obj)
    assert len(leaves) == 2 and leaves[0] is t1 and leaves[1] is t2
    back = unflatten(spec, iter(leaves))
    assert back[0][0] is t1 and back[0][1]["a"] is t2 and back[0][1]["n"] == 3 and back[1] == (None, "x")
    hash(spec)


def test_static_copy_keeps_strides_and_broadcasts():
    x = torch.arange(6.0).reshape(2, 3).t()  # transposed view
    base, view = make_static(x)
    copy_into(base, x)
    assert view.stride() == x.stride() and torch.equal(view, x)
    e = torch.arange(4.0).reshape(1, 4).expand(3, 4)
    base, view = make_static(e)
    copy_into(base, e)
    assert view.stride() == (0, 1) and base.shape == (1, 4) and torch.equal(view, e)


def test_replays_only_after_a_signature_repeats_in_the_session_and_reads_new_inputs():
    g = graphs(after=2)
    calls = []

    def step(x, scale):
        calls.append(1)
        return {"y": x * scale, "s": x.sum()}

    wrapped = g.wrap("step", step)
    counts = Counter()
    outs = []
    with g.session(counts):
        for i in range(5):
            outs.append(wrapped(torch.full((3,), float(i)), 2.0))
    assert g.stats.eager == 2 and g.stats.captures == 1 and g.stats.replays == 3
    for i, o in enumerate(outs):  # replays see each call's own input, not the captured one
        assert torch.equal(o["y"], torch.full((3,), 2.0 * i)) and float(o["s"]) == 3.0 * i
    outs[-1]["y"].add_(100)  # outputs are clones: the graph's buffers are untouched
    with g.session(counts):
        again = wrapped(torch.full((3,), 4.0), 2.0)
    assert torch.equal(again["y"], torch.full((3,), 8.0))
    assert again["y"].data_ptr() != outs[-1]["y"].data_ptr()


def test_counts_belong_to_the_session_so_an_earlier_session_changes_nothing():
    g = graphs(after=2)
    wrapped = g.wrap("step", lambda x: x + 1)

    def run(counts):
        with g.session(counts):
            return [wrapped(torch.full((2,), float(i))) for i in range(4)]

    run(Counter())
    eager_before = g.stats.eager
    second = run(Counter())
    assert g.stats.captures == 1  # reused the first session's graph ...
    assert g.stats.eager - eager_before == 2  # ... but only where the session itself would have
    assert all(torch.equal(o, torch.full((2,), i + 1.0)) for i, o in enumerate(second))


def test_outside_a_session_when_false_or_new_shapes_run_eagerly_and_graphs_are_bounded():
    g = graphs(after=1, max_per_step=2)
    wrapped = g.wrap("step", lambda x, flag=False: x * 2, when=lambda x, flag=False: not flag)
    for _ in range(3):
        wrapped(torch.ones(2))
    assert g.stats.replays == 0 and len(g) == 0
    with g.session(Counter()):
        for _ in range(3):
            wrapped(torch.ones(2), flag=True)
        assert len(g) == 0
        for n in (2, 3, 4):  # three shapes, each twice: one capture each, the oldest evicted
            for _ in range(2):
                assert torch.equal(wrapped(torch.ones(n)), torch.full((n,), 2.0))
    assert g.stats.captures == 3 and g.stats.evictions == 1 and len(g) == 2


def test_a_step_whose_shapes_keep_changing_stops_capturing_but_keeps_its_graphs():
    g = graphs(after=1, max_per_step=2)
    g.thrash_factor = 2
    wrapped = g.wrap("step", lambda x: x + 1)
    with g.session(Counter()):
        for n in range(2, 12):  # ten shapes cycling through a two-graph cache
            for _ in range(2):
                assert torch.equal(wrapped(torch.zeros(n)), torch.ones(n))
        held = len(g)
        for _ in range(2):
            assert torch.equal(
                wrapped(torch.zeros(7)), torch.ones(7)
            )  # the last shape captured still replays
    by = g.stats.by_step["step"]
    assert by["evictions"] == 4 and g.stats.captures == 6 and by["thrashing"] == 1
    assert held == 2 and by["replays"] == 6 + 2 and by["eager"] == 10 + 4 * 1  # shapes 8-11 ran eagerly


def test_non_tensor_arguments_are_part_of_the_signature():
    g = graphs(after=1)
    wrapped = g.wrap("step", lambda x, k: x * k)
    with g.session(Counter()):
        for _ in range(2):
            a = wrapped(torch.ones(2), 2)
            b = wrapped(torch.ones(2), 3)
    assert g.stats.captures == 2
    assert torch.equal(a, torch.full((2,), 2.0)) and torch.equal(b, torch.full((2,), 3.0))


def test_a_failed_capture_falls_back_to_eager_and_gives_up_after_two_tries():
    attempts = []

    def failing(fn, args, kwargs, stream):
        attempts.append(1)
        raise RuntimeError("operation not permitted when stream is capturing")

    g = StepGraphs(capture=failing, require_cuda=False, after=1)
    wrapped = g.wrap("step", lambda x: x - 1)
    with g.session(Counter()):
        outs = [wrapped(torch.ones(2)) for _ in range(4)]
    assert len(attempts) == 2 and g.stats.failures == 2 and g.stats.replays == 0
    assert all(torch.equal(o, torch.zeros(2)) for o in outs)


def test_steps_called_inside_a_capture_run_raw_so_they_become_part_of_it():
    seen = []

    def capture(fn, args, kwargs, stream):
        before = dict(g.stats.by_step.get("inner", {}))
        captured = stand_in_capture(fn, args, kwargs, stream)
        seen.append(before == dict(g.stats.by_step.get("inner", {})))
        return captured

    g = StepGraphs(capture=capture, require_cuda=False, after=1)
    inner = g.wrap("inner", lambda x: x * 3)
    outer = g.wrap("outer", lambda x: inner(x) + 1)
    with g.session(Counter()):
        outs = [outer(torch.ones(2)) for _ in range(2)]
    assert seen and all(seen)  # the inner step was not counted, replayed or captured while outer was captured
    assert all(torch.equal(o, torch.full((2,), 4.0)) for o in outs)


def test_gpu_required_by_default_so_cpu_tensors_run_eagerly():
    g = StepGraphs(capture=stand_in_capture, after=1)
    wrapped = g.wrap("step", lambda x: x * 2)
    with g.session(Counter()):
        for _ in range(3):
            wrapped(torch.ones(2))
    assert g.stats.replays == 0 and len(g) == 0


class _FakeTracker:
    """The SAM2/SAM3 tracker surface the installer relies on."""

    class SimpleMaskEncoder:
        pass

    def __init__(self):
        self.maskmem_backbone = self.SimpleMaskEncoder()
        self.seen = []

    def _forward_sam_heads(
        self,
        backbone_features,
        point_inputs=None,
        mask_inputs=None,
        high_res_features=None,
        multimask_output=False,
    ):
        return backbone_features * 2, backbone_features.sum()

    def _encode_new_memory(
        self,
        image,
        current_vision_feats,
        feat_sizes,
        pred_masks_high_res,
        object_score_logits,
        is_mask_from_pts,
        output_dict=None,
        is_init_cond_frame=False,
    ):
        self.seen.append((image, len(current_vision_feats), list(feat_sizes), output_dict))
        return current_vision_feats[-1] + pred_masks_high_res.mean(), [object_score_logits * 1]


def test_install_on_a_sam_style_tracker_graphs_only_frames_without_prompts():
    tracker = _FakeTracker()
    g = graphs(after=1)
    assert install_sam_step_graphs(tracker, g, memory_attention=False) == ["mask_heads", "memory_encoder"]
    feats = [torch.ones(4, 1, 2), torch.ones(2, 1, 2)]
    with g.session(Counter()):
        for i in range(3):
            bf = torch.full((1, 2), float(i))
            tracker._forward_sam_heads(backbone_features=bf, point_inputs={"p": 1})
            out, _ = tracker._forward_sam_heads(backbone_features=bf)
            assert torch.equal(out, bf * 2)
            mem, (score,) = tracker._encode_new_memory(
                image=torch.zeros(1, 3, 8, 8),
                current_vision_feats=feats,
                feat_sizes=[(2, 2), (1, 2)],
                pred_masks_high_res=torch.full((1, 1, 4, 4), float(i)),
                object_score_logits=torch.ones(1, 1),
                is_mask_from_pts=False,
                output_dict={"cond_frame_outputs": {0: {"x": torch.ones(1)}}},
            )
            assert torch.equal(mem, feats[-1] + i) and torch.equal(score, torch.ones(1, 1))
    by = g.stats.by_step
    assert by["mask_heads"]["replays"] == 2 and by["memory_encoder"]["replays"] == 2
    # the encoder saw only the top level, no memory bank and no image (SimpleMaskEncoder ignores it)
    assert all(
        img is None and n == 1 and sizes == [(1, 2)] and od is None for img, n, sizes, od in tracker.seen
    )


def test_backend_helpers_say_nothing_without_graphs():
    assert stats_entry(None) == {} and fingerprint_entry(None) == {}
    with session_scope(None, Counter()):
        pass
    g = graphs(after=1)
    wrapped = g.wrap("step", lambda x: x * 2)
    counts = Counter()
    with session_scope(g, counts):
        wrapped(torch.ones(2))
    assert sum(counts.values()) == 1 and fingerprint_entry(g) == {"cuda_graphs": True}
    assert stats_entry(g)["cuda_graphs"]["held"] == 0 and stats_entry(g)["cuda_graphs"]["eager"] == 1

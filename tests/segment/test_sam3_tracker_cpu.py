"""CPU checks of the SAM3 tracker speed-ups against sam3's own code (skipped where sam3 is not importable).

* the one-sync memory selection picks exactly the frames the library's picks;
* memory attention with its first self-attention computed once on one row
  (and read back from a cache) gives the library's output.
"""

from __future__ import annotations

import importlib
import inspect
from types import MethodType, SimpleNamespace

import pytest

torch = pytest.importorskip("torch")


def _sam3(module: str):
    try:
        return importlib.import_module(module)
    except Exception as e:
        pytest.skip(f"sam3 not importable ({type(e).__name__}: {e})")


def _library_frame_filter():
    """sam3's own ``frame_filter``, taken from its source without importing the whole tracker module."""
    spec = importlib.util.find_spec("sam3")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("sam3 not installed")
    from pathlib import Path

    src = (Path(next(iter(spec.submodule_search_locations))) / "model" / "sam3_tracker_base.py").read_text()
    start = src.index("    def frame_filter(")
    end = src.index("    def _prepare_memory_conditioned_features(")
    code = inspect.cleandoc("\n" + src[start:end])
    ns: dict = {}
    exec(code, ns)
    return ns["frame_filter"]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("good", [0.0, 0.3, 0.9])
def test_frame_filter_matches_sam3(reverse, good):
    from masktrack.segment.sam3_tracker import frame_filter

    library = _library_frame_filter()
    rng = torch.Generator().manual_seed(int(good * 10) + reverse)
    n = 60
    outs = {}
    for i in range(n):
        if torch.rand((), generator=rng) < 0.1:
            continue  # a frame not tracked (yet)
        s = torch.tensor(0.5 if torch.rand((), generator=rng) < good else 0.005)
        outs[i] = {"eff_iou_score": s}
    outs[7] = {"pred_masks": None}  # an entry without a score
    tracker = SimpleNamespace(max_obj_ptrs_in_encoder=16, mf_threshold=0.01)
    ours = MethodType(frame_filter, tracker)
    theirs = MethodType(library, tracker)
    for r in (1, 2):
        for f in range(n):
            d = {"non_cond_frame_outputs": outs}
            assert ours(d, reverse, f, n, r) == theirs(d, reverse, f, n, r), (f, r)


def test_frame_filter_syncs_once_per_new_frame(monkeypatch):
    from masktrack.segment import sam3_tracker

    calls = []
    monkeypatch.setattr(sam3_tracker, "_flags", _counting(sam3_tracker._flags, calls))
    tracker = SimpleNamespace(max_obj_ptrs_in_encoder=16, mf_threshold=0.01)
    outs = {}
    transfers = 0
    for f in range(1, 40):
        outs[f - 1] = {"eff_iou_score": torch.tensor(0.0)}  # never valid: the library scans every frame
        before = sum(calls)
        sam3_tracker.frame_filter(tracker, {"non_cond_frame_outputs": outs}, False, f, 40, 1)
        transfers += sum(calls) - before
    assert (
        transfers == 38
    )  # one transfer per call with a new candidate (frame 0 is never one); the library: 741


def _counting(fn, calls):
    def wrapped(scores, threshold):
        calls.append(sum(not hasattr(s, "_masktrack_valid") for s in scores) > 0)
        return fn(scores, threshold)

    return wrapped


def _tracker_transformer():
    """The tracker's memory attention as sam3 0.1.4 builds it (4 RoPE layers, 72x72 features), small seed."""
    decoder = _sam3("sam3.model.decoder")
    transformer = _sam3("sam3.sam.transformer")
    torch.manual_seed(0)
    sa = transformer.RoPEAttention(
        embedding_dim=256,
        num_heads=1,
        downsample_rate=1,
        dropout=0.1,
        rope_theta=10000.0,
        feat_sizes=[72, 72],
    )
    ca = transformer.RoPEAttention(
        embedding_dim=256,
        num_heads=1,
        downsample_rate=1,
        dropout=0.1,
        kv_in_dim=64,
        rope_theta=10000.0,
        feat_sizes=[72, 72],
        rope_k_repeat=True,
    )
    layer = decoder.TransformerDecoderLayerv2(
        cross_attention_first=False,
        activation="relu",
        dim_feedforward=2048,
        dropout=0.1,
        pos_enc_at_attn=False,
        pre_norm=True,
        self_attention=sa,
        d_model=256,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        cross_attention=ca,
    )
    enc = decoder.TransformerEncoderCrossAttention(
        remove_cross_attention_layers=[],
        batch_first=True,
        d_model=256,
        frozen=False,
        pos_enc_at_input=True,
        layer=layer,
        num_layers=4,
    )
    return enc.eval()


def test_shared_first_self_attention_matches_sam3():
    from masktrack.segment.features import FeatureCache
    from masktrack.segment.sam3_tracker import ServedFeatures, install_shared_first_self_attention

    # sam3 puts RoPE tables on the GPU when there is one: run there too (in float32)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    enc = _tracker_transformer().to(dev)
    reference = enc.forward
    h = w = 72
    batch, frames, ptr_tokens = 2, 2, 8
    feat = torch.randn(1, 256, h, w, device=dev)
    pos = torch.randn(1, 256, h, w, device=dev)
    src = feat.expand(batch, -1, -1, -1).flatten(2).permute(2, 0, 1)
    src_pos = pos.expand(batch, -1, -1, -1).flatten(2).permute(2, 0, 1)
    prompt = torch.randn(frames * h * w + ptr_tokens, batch, 64, device=dev)
    prompt_pos = torch.randn(frames * h * w + ptr_tokens, batch, 64, device=dev)
    kw = dict(
        src_key_padding_mask=[None],
        src_pos=[src_pos],
        prompt_pos=prompt_pos,
        feat_sizes=[(h, w)],
        num_obj_ptr_tokens=ptr_tokens,
    )
    with torch.inference_mode():
        expected = reference(src=[src], prompt=prompt, **kw)["memory"]
        served = ServedFeatures()
        served.record(("video", 3), feat)
        cache = FeatureCache(1 << 30)
        tracker = SimpleNamespace(transformer=SimpleNamespace(encoder=enc))
        assert install_shared_first_self_attention(
            tracker, lambda s: None if served.key_of(s) is None else ("sa0", served.key_of(s)), cache
        )
        got = enc.forward(src=[src], prompt=prompt, **kw)
        assert len(cache) == 1  # computed once, on one row
        again = enc.forward(src=[src], prompt=prompt, **kw)["memory"]  # read back from the cache
        other = enc.forward(src=[src.clone()], prompt=prompt, **kw)[
            "memory"
        ]  # not a served frame: the library's path
    assert cache.stats.hits == 1
    assert got["memory"].shape == expected.shape == (h * w, batch, 256)
    torch.testing.assert_close(got["memory"], expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(again, got["memory"])
    assert torch.equal(other, expected)
    assert torch.equal(got["pos_embed"], src_pos)

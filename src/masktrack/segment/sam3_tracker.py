"""Per-frame cost of SAM3's tracker: fewer host syncs, and frame-pure work shared across sessions.

A points session's time, once the trunk output is cached, is the tracker's
own per-frame work.  Three parts of it need no session state:

* **memory selection** (``frame_filter``) asks each earlier frame's score
  ``> threshold`` one GPU scalar at a time, so frame ``k`` of a pass waits on
  ``k`` host-device syncs (with random or weak weights no frame passes and it
  scans the whole pass).  :func:`install_frame_filter` evaluates each frame's
  test once, all pending ones in one transfer, and remembers the answer on
  the score tensor itself: the same frames are chosen.
* the prompt encoder's **dense positional encoding** depends on the weights
  only; :func:`install_dense_pe_memo` computes it once.
* the **first self-attention of memory attention** reads only the current
  frame's features (memory enters in the cross-attention after it), so it is
  a pure function of the frame like the trunk output: :func:`install_shared_first_self_attention`
  computes it once per frame on one row, keeps it in the backend's feature
  cache, and expands it to the session's objects.  It is always computed
  this way when sharing is on, whether the cache has it or not, so a
  session's masks do not depend on what ran before it.

* what is left per frame is a few hundred small kernels (memory attention,
  mask decoder, memory encoder) whose shapes stop changing once the memory
  bank is full: :func:`masktrack.segment.cuda_graphs.install_sam_step_graphs` replays
  them as CUDA graphs.

All of this touches private parts of ``sam3`` 0.1.4; each function checks
that what it needs is there and otherwise leaves the model alone.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from types import MethodType
from typing import Any

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- memory selection


def _flags(scores: list, threshold: float) -> list[bool]:
    """``score > threshold`` for each score tensor, fetched in one transfer and remembered on the tensor."""
    import torch

    pending = [s for s in scores if not hasattr(s, "_masktrack_valid")]
    if pending:
        values = torch.stack([(s > threshold).reshape(()) for s in pending]).cpu().tolist()
        for s, v in zip(pending, values):
            s._masktrack_valid = bool(v)
    return [s._masktrack_valid for s in scores]


def frame_filter(
    self: Any, output_dict: dict, track_in_reverse: bool, frame_idx: int, num_frames: int, r: int
) -> list[int]:
    """The tracker's memory-frame selection with one host sync per call (at most), same frames chosen."""
    if (frame_idx == 0 and not track_in_reverse) or (frame_idx == num_frames - 1 and track_in_reverse):
        return []
    max_num = min(num_frames, self.max_obj_ptrs_in_encoder)
    if not track_in_reverse:
        order, must_include = range(frame_idx - 1, 0, -r), frame_idx - 1
    else:
        order, must_include = range(frame_idx + 1, num_frames, r), frame_idx + 1
    outs = output_dict["non_cond_frame_outputs"]
    frames = [i for i in order if i in outs and "eff_iou_score" in outs[i]]
    scores = [outs[i]["eff_iou_score"] for i in frames]
    # resolve the flags lazily in chunks: a pass with good scores stops after max_num - 1 frames
    valid: list[int] = []
    chunk = max(1, max_num)
    for start in range(0, len(frames), chunk):
        part = frames[start : start + chunk]
        for i, ok in zip(part, _flags(scores[start : start + chunk], self.mf_threshold)):
            if ok:
                valid.insert(0, i)
            if len(valid) >= max_num - 1:
                break
        if len(valid) >= max_num - 1:
            break
    if must_include not in valid:
        valid.append(must_include)
    return valid


def install_frame_filter(tracker: Any) -> bool:
    if not (
        hasattr(tracker, "frame_filter")
        and hasattr(tracker, "mf_threshold")
        and hasattr(tracker, "max_obj_ptrs_in_encoder")
    ):
        return False
    tracker.frame_filter = MethodType(frame_filter, tracker)
    return True


# --------------------------------------------------------------------------- constants


def install_dense_pe_memo(tracker: Any) -> bool:
    """Memoise ``sam_prompt_encoder.get_dense_pe()`` (weights-only) per autocast setting and weight version."""
    import torch

    encoder = getattr(tracker, "sam_prompt_encoder", None)
    gauss = getattr(getattr(encoder, "pe_layer", None), "positional_encoding_gaussian_matrix", None)
    if encoder is None or gauss is None or not hasattr(encoder, "get_dense_pe"):
        return False
    original = encoder.get_dense_pe
    memo: dict[tuple, Any] = {}  # never evicted: a CUDA graph may read an entry (a handful of keys at most)

    def get_dense_pe() -> Any:
        key = (
            torch.is_autocast_enabled("cuda"),
            torch.get_autocast_dtype("cuda"),
            gauss.device,
            gauss.data_ptr(),
            gauss._version,
            torch.is_grad_enabled(),
            torch.is_inference_mode_enabled(),
        )
        value = memo.get(key)
        if value is None:
            value = memo[key] = original()
        return value

    encoder.get_dense_pe = get_dense_pe
    return True


# --------------------------------------------------------------------------- memory attention


def _layers_ok(encoder: Any) -> bool:
    layers = getattr(encoder, "layers", None)
    if not layers or not getattr(encoder, "batch_first", False) or not hasattr(encoder, "norm"):
        return False
    need = ("_forward_sa", "_forward_ca", "norm3", "linear1", "linear2", "activation", "dropout", "dropout3")
    return all(
        all(hasattr(layer, n) for n in need)
        and getattr(layer, "cross_attention_first", None) is False
        and getattr(layer, "pre_norm", False) is True
        for layer in layers
    )


def memory_attention(
    encoder: Any,
    output: Any,
    first_sa_done: bool,
    prompt: Any,
    src_pos: Any,
    prompt_pos: Any,
    num_obj_ptr_tokens: int,
) -> Any:
    """The encoder's layers on batch-first tensors; the first self-attention skipped when already applied."""
    for i, layer in enumerate(encoder.layers):
        if i > 0 or not first_sa_done:
            output = layer._forward_sa(output, src_pos)
        output = layer._forward_ca(output, prompt, src_pos, prompt_pos, num_obj_ptr_tokens)
        hidden = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm3(output)))))
        output = output + layer.dropout3(hidden)
    return encoder.norm(output)


def install_shared_first_self_attention(
    tracker: Any,
    frame_of: Callable[[Any], tuple | None],
    cache: Any,
    wrap_fn: Callable[[Callable], Callable] | None = None,
) -> bool:
    """Replace the tracker's memory-attention forward by one that shares its first self-attention.

    ``frame_of(src)`` returns the cache key of the frame whose features ``src``
    views (or None: then the library's forward runs, e.g. for text sessions,
    whose features come from the detector).  ``wrap_fn`` optionally wraps
    :func:`memory_attention` (``torch.compile``, or CUDA-graph replay).
    """
    encoder = getattr(getattr(tracker, "transformer", None), "encoder", None)
    if encoder is None or not _layers_ok(encoder) or not hasattr(encoder, "pos_enc_at_input"):
        return False
    original = encoder.forward
    run = wrap_fn(memory_attention) if wrap_fn is not None else memory_attention
    first = encoder.layers[0]

    def forward(
        src: Any,
        prompt: Any,
        src_mask: Any = None,
        prompt_mask: Any = None,
        src_key_padding_mask: Any = None,
        prompt_key_padding_mask: Any = None,
        src_pos: Any = None,
        prompt_pos: Any = None,
        feat_sizes: Any = None,
        num_obj_ptr_tokens: int = 0,
    ) -> dict:
        s = src[0] if isinstance(src, list) and len(src) == 1 else src
        pos = src_pos[0] if isinstance(src_pos, list) and len(src_pos) == 1 else src_pos
        key = None
        if (
            not encoder.training
            and src_mask is None
            and prompt_mask is None
            and pos is not None
            and getattr(s, "dim", lambda: 0)() == 3
            and (s.shape[1] == 1 or s.stride(1) == 0)
            and pos.shape == s.shape
            and (pos.shape[1] == 1 or pos.stride(1) == 0)
        ):
            key = frame_of(s)
        if key is None:
            return original(
                src,
                prompt,
                src_mask=src_mask,
                prompt_mask=prompt_mask,
                src_key_padding_mask=src_key_padding_mask,
                prompt_key_padding_mask=prompt_key_padding_mask,
                src_pos=src_pos,
                prompt_pos=prompt_pos,
                feat_sizes=feat_sizes,
                num_obj_ptr_tokens=num_obj_ptr_tokens,
            )
        batch = s.shape[1]
        pos_bf = pos.transpose(0, 1)  # (B, HW, C), rows identical

        def first_sa() -> Any:
            x = s[:, :1]
            if encoder.pos_enc_at_input:
                x = x + 0.1 * pos[:, :1]
            return first._forward_sa(x.transpose(0, 1), pos_bf[:1])

        sa = cache.get_or_compute(key, first_sa)
        out = run(
            encoder,
            sa.expand(batch, -1, -1),
            True,
            prompt.transpose(0, 1),
            pos_bf,
            prompt_pos.transpose(0, 1),
            num_obj_ptr_tokens,
        )
        key_padding = (
            src_key_padding_mask[0] if isinstance(src_key_padding_mask, list) else src_key_padding_mask
        )
        return {
            "memory": out.transpose(0, 1),
            "pos_embed": pos_bf.transpose(0, 1),
            "padding_mask": key_padding,
        }

    encoder.forward = forward
    return True


class ServedFeatures:
    """Recently handed-out tracker feature maps by data pointer, so memory attention can tell which frame it sees.

    Holding the tensors keeps their memory from being reused by another frame
    while they are listed.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[int, tuple[tuple, Any]] = OrderedDict()

    def record(self, key: tuple, feature: Any) -> None:
        ptr = feature.data_ptr()
        self._items[ptr] = (key, feature)
        self._items.move_to_end(ptr)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def key_of(self, src: Any) -> tuple | None:
        """The key of the frame that ``src`` [(HW), B, C] views, if it views a recorded [1, C, H, W] map."""
        hit = self._items.get(src.data_ptr())
        if hit is None:
            return None
        key, feature = hit
        _, c, h, w = feature.shape
        if (
            src.shape[0] != h * w
            or src.shape[2] != c
            or src.dtype != feature.dtype
            or src.device != feature.device
        ):
            return None
        return key

    def clear(self) -> None:
        self._items.clear()


def compile_memory_attention(fn: Callable) -> Callable:
    """``torch.compile`` of :func:`memory_attention` (dynamic shapes: the memory grows over the first frames)."""
    import torch

    compiled = torch.compile(fn, dynamic=True)
    state = {"failed": False}

    def run(*args: Any, **kwargs: Any) -> Any:
        if not state["failed"]:
            try:
                return compiled(*args, **kwargs)
            except Exception as e:
                state["failed"] = True
                log.warning(
                    "sam3: torch.compile of memory attention failed (%s: %s); running eagerly",
                    type(e).__name__,
                    e,
                )
        return fn(*args, **kwargs)

    return run

"""Replay a tracker's fixed-shape per-frame steps as CUDA graphs.

Why: once its memory bank is full, a SAM tracker runs the same few hundred
small kernels on every frame, with the same shapes.  Launching them one by one
from Python costs more host time than the GPU needs to run them, so a second
session on a video, whose image features are already cached, is paced by the
CPU.  A CUDA graph launches a whole step at once.

Rules that keep sessions isolated and results trustworthy:

* a step runs as a graph only after the same input signature has run eagerly
  ``after`` times **in the same session** (the counts belong to the session,
  see :meth:`StepGraphs.session`), so which frames replay a graph never
  depends on what other sessions ran before;
* the first graph result for a signature comes from a replay, never from the
  capture run, so a session that captures a graph and one that reuses it get
  the same numbers;
* every output is cloned out of the graph's static buffers (the memory bank
  keeps them across frames);
* capture runs with autocast's weight-cast cache off, so no graph reads a
  cached cast that autocast frees later.

A wrapped step must be a pure function of its tensor arguments and of the
module's weights: no host syncs, no data-dependent shapes, no in-place writes
to its inputs.  Tensors it reads from elsewhere (weights, constants) must stay
allocated at the same address while the graph lives.

Nothing here imports torch at module import time.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- flattening


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "data_ptr") and hasattr(x, "stride") and hasattr(x, "dtype")


def flatten(obj: Any) -> tuple[list[Any], Any]:
    """Tensors of a nested list/tuple/dict, and a hashable spec of everything else (to rebuild it)."""
    leaves: list[Any] = []

    def walk(x: Any) -> Any:
        if _is_tensor(x):
            leaves.append(x)
            return ("T",)
        if isinstance(x, (list, tuple)):
            return (type(x).__name__, tuple(walk(v) for v in x))
        if isinstance(x, dict):
            return ("dict", tuple((k, walk(v)) for k, v in x.items()))
        return ("V", x)

    return leaves, walk(obj)


def unflatten(spec: Any, leaves: Iterator[Any]) -> Any:
    kind = spec[0]
    if kind == "T":
        return next(leaves)
    if kind == "V":
        return spec[1]
    if kind == "dict":
        return {k: unflatten(v, leaves) for k, v in spec[1]}
    items = [unflatten(v, leaves) for v in spec[1]]
    return items if kind == "list" else tuple(items)


def tensor_sig(t: Any) -> tuple:
    return (tuple(t.shape), tuple(t.stride()), str(t.dtype), str(t.device))


# --------------------------------------------------------------------------- static inputs


def _base_shape(t: Any) -> list[int]:
    """The shape without broadcast dimensions (stride 0 -> size 1): what actually has to be copied."""
    return [1 if st == 0 else s for s, st in zip(t.shape, t.stride())]


def make_static(t: Any) -> tuple[Any, Any]:
    """(buffer to copy into, tensor to hand the step): same shape and strides as ``t``; broadcasts kept."""
    import torch

    base_shape = _base_shape(t)
    strides = [st if st else 1 for st in t.stride()]
    base = torch.empty_strided(base_shape, strides, dtype=t.dtype, device=t.device)
    view = base.expand(tuple(t.shape)) if list(base_shape) != list(t.shape) else base
    return base, view


def copy_into(base: Any, t: Any) -> None:
    src = t.as_strided(_base_shape(t), t.stride(), t.storage_offset())
    base.copy_(src)


# --------------------------------------------------------------------------- graphs


@dataclass
class Captured:
    """One captured step: its static input buffers, its static outputs and the graph."""

    graph: Any
    bases: list[Any]
    out_leaves: list[Any]
    out_spec: Any
    replays: int = 0

    def replay(self, tensors: list[Any]) -> Any:
        for base, t in zip(self.bases, tensors):
            copy_into(base, t)
        self.graph.replay()
        self.replays += 1
        return unflatten(self.out_spec, iter([o.clone() for o in self.out_leaves]))


@dataclass
class GraphStats:
    eager: int = 0
    replays: int = 0
    captures: int = 0
    evictions: int = 0
    failures: int = 0
    by_step: dict[str, Counter] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "eager": self.eager,
            "replays": self.replays,
            "captures": self.captures,
            "evictions": self.evictions,
            "failures": self.failures,
            "by_step": {k: dict(v) for k, v in self.by_step.items()},
        }


def _autocast_state() -> tuple:
    import torch

    return (
        torch.is_autocast_enabled("cuda"),
        str(torch.get_autocast_dtype("cuda")),
        torch.is_grad_enabled(),
        torch.is_inference_mode_enabled(),
    )


def cuda_capture(fn: Callable, args: tuple, kwargs: dict, stream: Any) -> Captured:
    """Warm ``fn`` up once on ``stream`` with static copies of the inputs, then capture it there."""
    import torch

    leaves, spec = flatten((args, kwargs))
    statics = [make_static(t) for t in leaves]
    for (base, _), t in zip(statics, leaves):
        copy_into(base, t)
    a, k = unflatten(spec, iter([view for _, view in statics]))
    enabled, dtype_name, _, _ = _autocast_state()
    dtype = getattr(torch, dtype_name.replace("torch.", ""))
    no_cache = torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False)
    current = torch.cuda.current_stream()
    stream.wait_stream(current)
    with torch.cuda.stream(stream), no_cache:
        fn(*a, **k)  # warm-up: lazy inits (handles, workspaces) happen outside the capture
    graph = torch.cuda.CUDAGraph()
    # thread_local: the frame reader thread keeps uploading frames during a capture; in the default
    # "global" mode its synchronous copies would invalidate the capture
    with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"), no_cache:
        out = fn(*a, **k)
    current.wait_stream(stream)
    out_leaves, out_spec = flatten(out)
    return Captured(graph, [base for base, _ in statics], out_leaves, out_spec)


class StepGraphs:
    """The captured steps of one model: per step, a few graphs by input signature (least recently used dropped).

    ``capture`` is how a graph is made (default: :func:`cuda_capture`); tests
    pass a stand-in that replays eagerly into static buffers to check the
    bookkeeping without a GPU.
    """

    max_failures = 2
    thrash_factor = 4  # a step that has evicted this many times max_per_step graphs captures no more

    def __init__(
        self,
        *,
        after: int = 2,
        max_per_step: int = 4,
        enabled: bool = True,
        capture: Callable[[Callable, tuple, dict, Any], Captured] | None = None,
        require_cuda: bool = True,
    ) -> None:
        if after < 1:
            raise ValueError("after must be >= 1 (the first calls of a signature run eagerly)")
        self.after = int(after)
        self.max_per_step = int(max_per_step)
        self.enabled = bool(enabled)
        self.require_cuda = require_cuda
        self._capture = capture or cuda_capture
        self._graphs: dict[str, OrderedDict[tuple, Captured]] = {}
        self._failed: Counter = Counter()  # capture failures by signature; two and it stays eager
        self._counts: Counter | None = None
        self._stream: Any = None
        self._capturing = False  # steps called inside a capture run as part of it
        self.stats = GraphStats()

    @contextlib.contextmanager
    def session(self, counts: Counter) -> Iterator[None]:
        """Run a session's steps under its own signature counts (graphs are used only inside this)."""
        saved, self._counts = self._counts, counts
        try:
            yield
        finally:
            self._counts = saved

    def wrap(self, name: str, fn: Callable, when: Callable[..., bool] | None = None) -> Callable:
        """``fn`` that replays a graph once a session has run the same signature ``after`` times.

        ``when(*args, **kwargs)`` says whether a call is eligible at all (e.g. no prompts on the frame).
        """

        def step(*args: Any, **kwargs: Any) -> Any:
            counts = self._counts
            if (
                self._capturing
                or not self.enabled
                or counts is None
                or (when is not None and not when(*args, **kwargs))
            ):
                return fn(*args, **kwargs)
            leaves, spec = flatten((args, kwargs))
            if not leaves or (self.require_cuda and not all(t.device.type == "cuda" for t in leaves)):
                return fn(*args, **kwargs)
            try:
                sig = (name, spec, tuple(tensor_sig(t) for t in leaves), _autocast_state())
                hash(sig)
            except TypeError:  # an unhashable non-tensor argument: not a fixed step
                return fn(*args, **kwargs)
            counts[sig] += 1
            per_step = self.stats.by_step.setdefault(name, Counter())
            if counts[sig] <= self.after or self._failed[sig] >= self.max_failures:
                self.stats.eager += 1
                per_step["eager"] += 1
                return fn(*args, **kwargs)
            captured = self._get(name, sig, fn, args, kwargs)
            if captured is None:
                self.stats.eager += 1
                per_step["eager"] += 1
                return fn(*args, **kwargs)
            self.stats.replays += 1
            per_step["replays"] += 1
            return captured.replay(leaves)

        step.__wrapped__ = fn  # type: ignore[attr-defined]
        return step

    def _get(self, name: str, sig: tuple, fn: Callable, args: tuple, kwargs: dict) -> Captured | None:
        graphs = self._graphs.setdefault(name, OrderedDict())
        captured = graphs.get(sig)
        if captured is not None:
            graphs.move_to_end(sig)
            return captured
        per_step = self.stats.by_step.setdefault(name, Counter())
        if per_step["evictions"] >= self.thrash_factor * self.max_per_step:
            # shapes keep changing (e.g. real weights choosing a varying number of memory frames):
            # capturing more would cost more than replays save; the graphs held keep replaying
            if not per_step["thrashing"]:
                per_step["thrashing"] = 1
                log.info("CUDA graphs of %s: shapes keep changing; no new captures for this step", name)
            return None
        self._capturing = True
        try:
            captured = self._capture(fn, args, kwargs, self._side_stream())
        except Exception as e:
            self._failed[sig] += 1
            self.stats.failures += 1
            final = (
                "; this shape runs eagerly from now on"
                if self._failed[sig] >= self.max_failures
                else "; will retry"
            )
            log.warning(
                "CUDA graph capture of %s failed (%s: %s)%s",
                name,
                type(e).__name__,
                str(e).splitlines()[0][:200],
                final,
            )
            return None
        finally:
            self._capturing = False
        self.stats.captures += 1
        graphs[sig] = captured
        while len(graphs) > self.max_per_step:
            graphs.popitem(last=False)
            self.stats.evictions += 1
            per_step["evictions"] += 1
        return captured

    def _side_stream(self) -> Any:
        if not self.require_cuda:
            return None
        if self._stream is None:
            import torch

            self._stream = torch.cuda.Stream()
        return self._stream

    def __len__(self) -> int:
        return sum(len(g) for g in self._graphs.values())

    def clear(self) -> None:
        """Drop every graph (frees their memory pools once nothing else holds them)."""
        self._graphs.clear()
        self._failed.clear()


def session_scope(graphs: StepGraphs | None, counts: Counter) -> contextlib.AbstractContextManager:
    """``graphs.session(counts)``, or nothing for a backend without graphs (CPU, or ``cuda_graphs: false``)."""
    return graphs.session(counts) if graphs is not None else contextlib.nullcontext()


def stats_entry(graphs: StepGraphs | None) -> dict:
    """The ``cuda_graphs`` entry of a backend's ``cache_stats()`` (empty without graphs)."""
    return {} if graphs is None else {"cuda_graphs": {"held": len(graphs), **graphs.stats.as_dict()}}


def fingerprint_entry(graphs: StepGraphs | None) -> dict:
    """The fingerprint entry: named only when graphs are on, the one case where results may differ from eager runs."""
    return {} if graphs is None else {"cuda_graphs": True}


# --------------------------------------------------------------------------- SAM-style trackers


def _no_prompts(*args: Any, point_inputs: Any = None, mask_inputs: Any = None, **kwargs: Any) -> bool:
    return not args and point_inputs is None and mask_inputs is None


def install_sam_step_graphs(model: Any, graphs: StepGraphs, *, memory_attention: bool = True) -> list[str]:
    """Replay a SAM2-style tracker's per-frame steps as graphs; returns what was installed.

    Works on the layout shared by ``sam2`` 1.1 (``SAM2Base``) and ``sam3``
    0.1.4 (``Sam3TrackerBase``):

    * ``memory_attention`` (sam2's module; sam3's goes through
      :func:`masktrack.segment.sam3_tracker.install_shared_first_self_attention`
      instead, so pass ``memory_attention=False`` there);
    * ``_forward_sam_heads`` on frames without prompts;
    * ``_encode_new_memory``, which reads only the top feature level: only that
      level enters the graph, and the image only for encoders that look at it.
    """
    done = []
    attention = getattr(model, "memory_attention", None)
    if memory_attention and attention is not None and hasattr(attention, "forward"):
        attention.forward = graphs.wrap("memory_attention", attention.forward)
        done.append("memory_attention")
    heads = getattr(model, "_forward_sam_heads", None)
    if heads is not None:
        model._forward_sam_heads = graphs.wrap("mask_heads", heads, when=_no_prompts)
        done.append("mask_heads")
    encode = getattr(model, "_encode_new_memory", None)
    if encode is not None:
        sig = inspect.signature(encode)
        if {"current_vision_feats", "feat_sizes", "pred_masks_high_res"} <= set(sig.parameters):
            mem = getattr(model, "maskmem_backbone", None)
            drop_image = "image" in sig.parameters and type(mem).__name__ == "SimpleMaskEncoder"
            graphed = graphs.wrap("memory_encoder", lambda **kw: encode(**kw))

            def encode_new_memory(*args: Any, **kwargs: Any) -> Any:
                bound = sig.bind(*args, **kwargs)
                kw = dict(bound.arguments)
                kw["current_vision_feats"] = [kw["current_vision_feats"][-1]]
                kw["feat_sizes"] = [tuple(kw["feat_sizes"][-1])]
                if (
                    "output_dict" in kw
                ):  # unused by the step; the whole memory bank must not enter a signature
                    kw["output_dict"] = None
                if drop_image:
                    kw["image"] = None
                return graphed(**kw)

            model._encode_new_memory = encode_new_memory
            done.append("memory_encoder")
    return done

"""The ``sam3`` backend: text sessions on SAM3's video predictor, points sessions on its tracker.

Options (``sessions[].options``)::

    checkpoint: checkpoints/sam3.pt  # required unless random_weights: true
    random_weights: false            # build without a checkpoint (tests, benchmarks), seeded by `seed`
    bpe_path: null                   # BPE vocabulary; default: the copy inside an installed open_clip
    device: auto                     # a CUDA device: SAM3 runs on GPU only
    gpus_to_use: null                # e.g. [0, 1, 2, 3]: SAM3's multi-GPU text propagation (needs a checkpoint)
    feature_cache_gb: null           # bound of the frame/feature cache (default 30% of the GPU, max 24)
    share_features: true             # reuse frames + image-encoder output across sessions of this backend
    offload_video_to_cpu: false      # keep decoded frames in host memory
    compile: false                   # torch.compile the tracker's memory attention (measured slower on H200: off)
    cuda_graphs: true                # replay the points tracker's fixed-shape per-frame steps as CUDA graphs

How a session runs depends on its prompts, decided when it first propagates:

* **text session** (the config gives ``text``): SAM3's request API
  (``start_session`` / ``add_prompt(text)`` / ``propagate_in_video`` /
  ``close_session``).  Detected instances map to the session's objects by
  :func:`masktrack.segment.base.assign_detections` on the text frame
  (highest score first, in the config's object order); instances that first
  appear later fill the objects still unassigned, in order of appearance;
  the rest are dropped (``session.dropped`` lists their ids).  Clicks in a
  text session refine the mapped instance; SAM3 accepts clicks only on frames
  it has already propagated, so such a session costs one extra text pass.
* **points session** (no text): SAM3's SAM2-style tracker
  (``model.tracker``: ``init_state`` / ``add_new_points_or_box`` with
  relative coordinates / ``propagate_in_video``) straight on a fresh state,
  with no text bootstrap and no extra propagation.  Objects whose prompts
  start on different frames get separate tracker states: the 0.1.4 tracker
  loses objects that are added on a later frame than the first one in a
  shared state (reported upstream for ``sam3``; see the README).

The image encoder (the ViT trunk, the bulk of SAM3's cost) runs once per
frame per backend: its output is cached by video content hash and frame, and
both the detector (text sessions) and the tracker (points sessions) read it;
the tracker's own neck output is cached the same way, and so is the first
self-attention of its memory attention (a function of the frame alone).  The
tracker's per-frame host syncs are cut to one (see :mod:`masktrack.segment.sam3_tracker`),
and in points sessions its memory attention, mask heads and memory encoder
are replayed as CUDA graphs once their shapes repeat
(:mod:`masktrack.segment.cuda_graphs`): a second session on a video is then
no longer paced by the host CPU launching ~700 small kernels per frame.
"""

from __future__ import annotations

import gc
import importlib.util
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import MethodType
from typing import Any

import numpy as np
from pydantic import Field

from masktrack.errors import BackendError
from masktrack.io.video import VideoSource
from masktrack.plugins import options_from_signature
from masktrack.segment.base import (
    Backend,
    Detection,
    FrameMasks,
    FramePrompt,
    Session,
    SessionObject,
    TextPrompt,
    assign_detections,
)
from masktrack.segment.cuda_graphs import (
    StepGraphs,
    fingerprint_entry,
    install_sam_step_graphs,
    session_scope,
    stats_entry,
)
from masktrack.segment.features import (
    FeatureCache,
    FrameSequence,
    FrameStore,
    autocast_for,
    default_cache_bytes,
    resolve_device,
    weights_id,
)
from masktrack.segment.sam3_tracker import (
    ServedFeatures,
    compile_memory_attention,
    install_dense_pe_memo,
    install_frame_filter,
    install_shared_first_self_attention,
)

BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
_IMG_MEAN = (0.5, 0.5, 0.5)
_IMG_STD = (0.5, 0.5, 0.5)


def find_bpe(bpe_path: str | None) -> Path:
    """SAM3's BPE vocabulary: the user's path, else the identical file shipped by open_clip (or a sam3 source checkout)."""
    if bpe_path is not None:
        p = Path(bpe_path).expanduser()
        if not p.is_file():
            raise BackendError("BPE vocabulary file not found", path=p, field="options.bpe_path")
        return p
    for package, rel in (("open_clip", BPE_NAME), ("sam3", f"../assets/{BPE_NAME}")):
        spec = importlib.util.find_spec(package)  # locates without importing the package
        if spec is not None and spec.origin:
            p = (Path(spec.origin).parent / rel).resolve()
            if p.is_file():
                return p
    raise BackendError(
        f"SAM3's BPE vocabulary {BPE_NAME} was not found: the sam3 wheel does not ship it; "
        "pip install open_clip_torch (which has the identical file) or set options.bpe_path",
        field="options.bpe_path",
    )


def _import_sam3() -> None:
    try:
        import sam3.model_builder  # noqa: F401
    except ImportError as e:
        raise BackendError(
            f"backend 'sam3' needs the sam3 package ({e}); pip install 'masktrack[sam3]'", field="backend"
        ) from None


_PREDICTOR_CLASS: type | None = None


def _predictor_class() -> type:
    """SAM3's request-API predictor around a model built here (so the model is built once, with our options)."""
    global _PREDICTOR_CLASS
    if _PREDICTOR_CLASS is not None:
        return _PREDICTOR_CLASS
    from sam3.model.sam3_video_predictor import Sam3VideoPredictor

    class WrappedPredictor(Sam3VideoPredictor):
        def __init__(self, model: Any) -> None:
            self.model = model
            self.async_loading_frames = False
            self.video_loader_type = "cv2"

        def start_session(self, resource_path: Any, session_id: str | None = None) -> dict:
            """Accept a :class:`FrameSequence` (shared decoded frames) as well as a path."""
            if not isinstance(resource_path, FrameSequence):
                return super().start_session(resource_path, session_id=session_id)
            import sam3.model.sam3_video_inference as vi

            seq = resource_path
            original = vi.load_resource_as_video_frames
            vi.load_resource_as_video_frames = lambda **_: (seq, seq.video.height, seq.video.width)
            try:
                state = self.model.init_state(resource_path=str(seq.video.path))
            finally:
                vi.load_resource_as_video_frames = original
            session_id = session_id or str(uuid.uuid4())
            self._ALL_INFERENCE_STATES[session_id] = {
                "state": state,
                "session_id": session_id,
                "start_time": time.time(),
            }
            return {"session_id": session_id}

    _PREDICTOR_CLASS = WrappedPredictor
    return WrappedPredictor


class Sam3Backend(Backend):
    """A SAM3 video model (detector + tracker) and the frame/feature cache its sessions share."""

    name = "sam3"
    supports_text = True
    supports_points = True

    def __init__(
        self,
        checkpoint: str | None = None,
        random_weights: bool = False,
        seed: int = 0,
        bpe_path: str | None = None,
        device: str = "auto",
        gpus_to_use: list[int] | None = None,
        feature_cache_gb: float | None = None,
        share_features: bool = True,
        offload_video_to_cpu: bool = False,
        apply_temporal_disambiguation: bool = True,
        compile: bool = False,
        cuda_graphs: bool = True,
    ) -> None:
        if checkpoint is None and not random_weights:
            raise BackendError(
                "sam3 needs a checkpoint (options.checkpoint: path to sam3.pt); set random_weights: true only for tests",
                field="options.checkpoint",
            )
        if checkpoint is not None and random_weights:
            raise BackendError(
                "give either checkpoint or random_weights: true, not both", field="options.checkpoint"
            )
        self.checkpoint = Path(checkpoint).expanduser() if checkpoint is not None else None
        if self.checkpoint is not None and not self.checkpoint.is_file():
            raise BackendError("sam3 checkpoint not found", path=self.checkpoint, field="options.checkpoint")
        self.gpus_to_use = [int(g) for g in gpus_to_use] if gpus_to_use else None
        if self.gpus_to_use and len(self.gpus_to_use) > 1 and self.checkpoint is None:
            raise BackendError(
                "gpus_to_use with several GPUs needs a checkpoint (each GPU loads it)",
                field="options.gpus_to_use",
            )
        _import_sam3()
        import torch

        self.device = resolve_device(device)
        if self.device.type != "cuda":
            raise BackendError(
                "sam3 runs on a CUDA GPU only (torch sees none, or device is cpu)", field="options.device"
            )
        self.bpe_path = find_bpe(bpe_path)
        self.random_weights = bool(random_weights)
        self.seed = int(seed)
        self.share_features = bool(share_features)
        self.multi_gpu = bool(self.gpus_to_use and len(self.gpus_to_use) > 1)
        self.compile = bool(compile)
        self.graphs = StepGraphs() if cuda_graphs and not self.multi_gpu else None
        self.predictor, self.model = self._build(apply_temporal_disambiguation)
        self.image_size = int(self.model.image_size)
        self.cache = FeatureCache(default_cache_bytes(self.device, feature_cache_gb))
        self.frames = FrameStore(self.cache, torch.device("cpu") if offload_video_to_cpu else self.device)
        # frames handed to the model, by data pointer: lets the trunk know which frame it encodes
        self._served: OrderedDict[int, tuple[str, int, Any]] = OrderedDict()
        self._tracker_pos: list | None = None
        self._tracker_served = ServedFeatures()
        self._install_trunk_cache()
        self.tracker_speedups = self._install_tracker_speedups()
        self._weights_hash: str | None = None

    # -- model -------------------------------------------------------------
    def _build(self, apply_temporal_disambiguation: bool) -> tuple[Any, Any]:
        import torch
        from sam3.model_builder import build_sam3_video_model, build_sam3_video_predictor

        ckpt = str(self.checkpoint) if self.checkpoint is not None else None
        try:
            if self.multi_gpu:
                predictor = build_sam3_video_predictor(
                    checkpoint_path=ckpt,
                    bpe_path=str(self.bpe_path),
                    gpus_to_use=self.gpus_to_use,
                    apply_temporal_disambiguation=apply_temporal_disambiguation,
                )
                return predictor, predictor.model
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = build_sam3_video_model(
                    checkpoint_path=ckpt,
                    load_from_HF=False,
                    bpe_path=str(self.bpe_path),
                    device=str(self.device),
                    apply_temporal_disambiguation=apply_temporal_disambiguation,
                )
        except (RuntimeError, KeyError, OSError) as e:
            if ckpt is None:
                raise
            first = str(e).strip().splitlines()[0][:300]
            raise BackendError(
                f"checkpoint does not load into SAM3 ({type(e).__name__}: {first})",
                path=self.checkpoint,
                field="options.checkpoint",
            ) from None
        model = model.eval()
        return _predictor_class()(model), model

    def _install_trunk_cache(self) -> None:
        """Serve the ViT trunk's output from the shared cache when the input is a frame we handed out."""
        trunk = self.model.detector.backbone.vision_backbone.trunk
        original = trunk.forward
        backend = self

        def forward(self_trunk: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
            key = backend._frame_key(x) if backend.share_features and not args and not kwargs else None
            if key is None:
                return original(x, *args, **kwargs)
            return backend.cache.get_or_compute(key, lambda: original(x))

        trunk.forward = MethodType(forward, trunk)

    def _install_tracker_speedups(self) -> list[str]:
        """Fewer host syncs and shared frame-pure work in the tracker (what got installed, for reports)."""
        if self.multi_gpu:  # the model lives in other processes
            return []
        tracker = self.model.tracker
        done = []
        if install_frame_filter(tracker):
            done.append("frame_filter")
        if install_dense_pe_memo(tracker):
            done.append("dense_pe")
        wrap = None
        if self.compile:
            wrap = compile_memory_attention
        elif self.graphs is not None:
            graphs = self.graphs
            wrap = lambda fn: graphs.wrap("memory_attention", fn)  # noqa: E731
        if self.share_features or wrap is not None:
            frame_of = self._sa0_key if self.share_features else (lambda _src: None)
            if install_shared_first_self_attention(tracker, frame_of, self.cache, wrap):
                done.append("shared_first_self_attention" if self.share_features else "memory_attention")
        if self.compile and "memory_attention" not in done and "shared_first_self_attention" not in done:
            raise BackendError(
                "compile: true needs sam3's memory attention layout (sam3 0.1.4)", field="options.compile"
            )
        if self.graphs is not None:
            done += [
                f"cuda_graph:{name}"
                for name in install_sam_step_graphs(tracker, self.graphs, memory_attention=False)
            ]
        return done

    def _sa0_key(self, src: Any) -> tuple | None:
        key = self._tracker_served.key_of(src)
        return None if key is None else (key[0], "sam3-sa0", self.image_size, key[1])

    def _on_serve(self, vkey: str) -> Any:
        def record(index: int, image: Any) -> None:
            self._served[image.data_ptr()] = (vkey, index, image)
            self._served.move_to_end(image.data_ptr())
            while len(self._served) > 8:
                self._served.popitem(last=False)

        return record

    def _frame_key(self, x: Any) -> tuple | None:
        if not hasattr(x, "data_ptr") or x.dim() != 4 or x.shape[0] != 1:
            return None
        hit = self._served.get(x.data_ptr())
        if hit is None:
            return None
        vkey, index, image = hit
        if tuple(image.shape) != tuple(x.shape[1:]) or image.dtype != x.dtype or image.device != x.device:
            return None
        return (vkey, "sam3-trunk", self.image_size, index)

    def frame_sequence(self, video: VideoSource) -> FrameSequence:
        seq = FrameSequence(self.frames, video, self.image_size, self.device, _IMG_MEAN, _IMG_STD)
        seq.on_serve = self._on_serve(video.content_hash())
        return seq

    def tracker_features(self, seq: FrameSequence, index: int) -> tuple[Any, dict]:
        """The tracker's (SAM2-style) backbone output for one frame: shared across sessions like the trunk's.

        Position encodings depend only on the input size: one copy is kept.
        """
        image = seq[index].unsqueeze(0)
        if not self.share_features:
            return image, self._tracker_features(image)
        vkey = seq.video.content_hash()
        key = (vkey, "sam3-tracker", self.image_size, index)
        fpn = self.cache.get(key)
        if fpn is None or self._tracker_pos is None:
            out = self._tracker_features(image)
            self._tracker_pos = out["vision_pos_enc"]
            self.cache.put(key, out["backbone_fpn"])
        else:
            out = {"vision_features": fpn[-1], "vision_pos_enc": self._tracker_pos, "backbone_fpn": fpn}
        self._tracker_served.record((vkey, index), out["backbone_fpn"][-1])
        return image, out

    def _tracker_features(self, image: Any) -> dict:
        backbone = self.model.detector.backbone
        neck = backbone.vision_backbone
        if getattr(neck, "sam2_convs", None) is None:  # unexpected sam3 layout: the library's own path
            out = backbone.forward_image(image)["sam2_backbone_out"]
            fpn, pos = list(out["backbone_fpn"]), list(out["vision_pos_enc"])
        else:
            x = neck.trunk(image)[-1]
            fpn, pos = [], []
            for conv in neck.sam2_convs:
                f = conv(x)
                fpn.append(f)
                pos.append(neck.position_encoding(f).to(f.dtype))
            scalp = int(getattr(backbone, "scalp", 0))
            if scalp > 0:
                fpn, pos = fpn[:-scalp], pos[:-scalp]
        decoder = self.model.tracker.sam_mask_decoder
        fpn[0] = decoder.conv_s0(fpn[0])
        fpn[1] = decoder.conv_s1(fpn[1])
        return {"vision_features": fpn[-1], "vision_pos_enc": pos, "backbone_fpn": fpn}

    def autocast(self) -> Any:
        return autocast_for(self.device, True)

    def graph_scope(self, counts: Counter) -> Any:
        """Tracker steps run under ``counts`` (one session's): graphs replace them once a shape repeats."""
        return session_scope(self.graphs, counts)

    # -- Backend API -------------------------------------------------------
    def open_session(self, video: VideoSource, objects: Sequence[SessionObject]) -> Sam3Session:
        return Sam3Session(self, video, objects)

    def fingerprint(self) -> dict:
        from importlib.metadata import version

        if self._weights_hash is None:
            self._weights_hash = weights_id(self.checkpoint, self.seed)
        shared_sa = "shared_first_self_attention" in self.tracker_speedups
        fp = {
            "backend": self.name,
            "sam3": version("sam3"),
            "weights": self._weights_hash,
            "image_size": self.image_size,
            "memory_attention": "first-self-attention-per-frame" if shared_sa else "sam3",
        }
        return {**fp, **fingerprint_entry(self.graphs)}

    def cache_stats(self) -> dict:
        return {**self.cache.report(), **stats_entry(self.graphs)}

    def close(self) -> None:
        import torch

        if self.model is None:
            return
        if self.graphs is not None:
            self.graphs.clear()
        self.frames.close()
        self.cache.clear()
        self._served.clear()
        self._tracker_served.clear()
        self._tracker_pos = None
        if self.multi_gpu:
            self.predictor.shutdown()
        self.predictor = None
        self.model = None
        gc.collect()
        torch.cuda.empty_cache()


class _TrackerFeatures(dict):
    """A tracker state's ``cached_features``: every frame is 'cached', read from the shared trunk cache.

    The last frame's tracker features stay here, as SAM's own one-frame cache
    does, because a prompt and its memory encoding ask for the same frame.
    """

    def __init__(self, backend: Sam3Backend, seq: FrameSequence) -> None:
        super().__init__()
        self.backend = backend
        self.seq = seq
        self._last: tuple[int, tuple] | None = None

    def get(self, key: Any, default: Any = None) -> Any:
        if not isinstance(key, (int, np.integer)):
            return super().get(key, default)
        key = int(key)
        if self._last is None or self._last[0] != key:
            self._last = (key, self.backend.tracker_features(self.seq, key))
        return self._last[1]


class Sam3Session(Session):
    """One SAM3 session: a text session (request API) or a points session (tracker API).

    Prompts are buffered and applied when the session first propagates,
    because the kind of session and the grouping of objects depend on all of them.
    """

    def __init__(self, backend: Sam3Backend, video: VideoSource, objects: Sequence[SessionObject]) -> None:
        self.backend = backend
        self.video = video
        self.objects = tuple(objects)
        self._names = [o.name for o in self.objects]
        self._ids = {o.name: o.id for o in self.objects}
        self._text: TextPrompt | None = None
        self._prompts: list[FramePrompt] = []
        self._started = False
        self._closed = False
        self.mapping: dict[int, str] = {}
        self.dropped: set[int] = set()
        self.detections: list[Detection] = []
        self._sid: str | None = None
        self._groups: list[tuple[list[str], dict]] = []
        self._keep: set[int] = set()
        self._at: dict[int, FrameMasks] = {}  # latest masks on prompted frames
        self._graph_counts: Counter = Counter()  # this session's step signatures (see cuda_graphs)
        self.seq = backend.frame_sequence(video)

    # -- prompts -----------------------------------------------------------
    def add_text(self, prompt: TextPrompt) -> None:
        if self._started:
            raise BackendError("sam3: add the text prompt before propagating", field="text")
        if self._text is not None:
            raise BackendError("sam3 takes one text prompt per session", field="text")
        if not 0 <= prompt.frame < self.video.num_frames:
            raise BackendError(
                f"text frame {prompt.frame} out of range [0, {self.video.num_frames - 1}]", field="text.frame"
            )
        self._text = prompt

    def add_prompt(self, prompt: FramePrompt) -> None:
        if prompt.object not in self._ids:
            raise BackendError(
                f"prompt for {prompt.object!r}, which is not an object of this session ({', '.join(self._names)})",
                field="object",
            )
        if self._started:
            raise BackendError("sam3: add prompts before propagating", field="prompts")
        self._prompts.append(prompt)

    # -- propagation -------------------------------------------------------
    def propagate(self, start_frame: int, *, reverse: bool = False) -> Iterator[tuple[int, FrameMasks]]:
        if self._closed:
            raise RuntimeError("session is closed")
        if not self._started:
            self._start()
        if self._text is not None:
            yield from self._propagate_text(start_frame, reverse)
        else:
            yield from self._propagate_points(start_frame, reverse)

    def _start(self) -> None:
        self._started = True
        if self._text is not None:
            self._start_text()
        else:
            if not self._prompts:
                raise BackendError(
                    "sam3 session has neither a text prompt nor clicks/boxes/masks", field="prompts"
                )
            self._start_points()

    def _empty(self) -> np.ndarray:
        return np.zeros((self.video.height, self.video.width), bool)

    # text sessions ---------------------------------------------------------
    def _rel_points(self, p: FramePrompt) -> tuple[Any, Any]:
        import torch

        pts = np.asarray(p.points, np.float32).reshape(-1, 2) / np.array(
            [self.video.width, self.video.height], np.float32
        )
        return torch.from_numpy(pts), torch.from_numpy(np.asarray(p.labels, np.int32).reshape(-1))

    def _request_stream(self, direction: str, start: int) -> Iterator[dict]:
        pred = self.backend.predictor
        req = {
            "type": "propagate_in_video",
            "session_id": self._sid,
            "propagation_direction": direction,
            "start_frame_index": start,
        }
        gen = pred.handle_stream_request(req)
        try:
            while True:
                with self.backend.autocast():
                    item = next(gen, None)
                if item is None:
                    return
                yield item
        finally:
            gen.close()

    def _start_text(self) -> None:
        for p in self._prompts:
            if len(p.boxes) or p.mask is not None:
                raise BackendError(
                    f"sam3 text sessions refine instances with clicks only; {p.object!r} on frame {p.frame} has a box or mask",
                    field="prompts",
                )
        backend = self.backend
        resource: Any = str(self.video.path) if backend.multi_gpu else self.seq
        text = self._text
        assert text is not None
        with backend.autocast():
            self._sid = backend.predictor.handle_request(
                {"type": "start_session", "resource_path": resource}
            )["session_id"]
            out = backend.predictor.handle_request(
                {"type": "add_prompt", "session_id": self._sid, "frame_index": text.frame, "text": text.text}
            )["outputs"]
        clicks = [p for p in self._prompts if len(p.points)]
        self._keep = {text.frame, *(int(p.frame) for p in clicks)}
        self._at[text.frame] = self._masks(out)
        if not clicks:
            return
        # SAM3 refuses clicks on frames without cached outputs: one text pass first.
        for direction in ("forward", "backward"):
            for item in self._request_stream(direction, text.frame):
                frame, masks = int(item["frame_index"]), self._masks(item["outputs"])
                if frame in self._keep:
                    self._at[frame] = masks
        next_id = max([*self.mapping, *self.dropped, 0]) + 1
        by_name = {n: i for i, n in self.mapping.items()}
        with backend.autocast():
            for p in clicks:
                bid = by_name.get(p.object)
                if bid is None:  # an object the text did not find: the clicks add it as a new instance
                    bid = by_name[p.object] = next_id
                    self.mapping[bid] = p.object
                    next_id += 1
                pts, labels = self._rel_points(p)
                backend.predictor.handle_request(
                    {
                        "type": "add_prompt",
                        "session_id": self._sid,
                        "frame_index": int(p.frame),
                        "points": pts,
                        "point_labels": labels,
                        "obj_id": int(bid),
                    }
                )

    def _assign(self, outputs: dict) -> None:
        """Map backend ids seen in ``outputs`` that are new to still-unassigned objects (the documented rule)."""
        ids = [int(i) for i in outputs["out_obj_ids"]]
        new = [i for i in ids if i not in self.mapping and i not in self.dropped]
        if not new:
            return
        probs = {int(i): float(s) for i, s in zip(outputs["out_obj_ids"], outputs["out_probs"])}
        masks = outputs["out_binary_masks"]
        areas = {int(i): int(np.asarray(m).sum()) for i, m in zip(outputs["out_obj_ids"], masks)}
        dets = [Detection(backend_id=i, score=probs.get(i, 0.0), area=areas.get(i, 0)) for i in new]
        self.detections.extend(dets)
        taken = set(self.mapping.values())
        free = [o for o in self.objects if o.name not in taken]
        assigned = assign_detections(dets, free)
        self.mapping.update(assigned)
        self.dropped.update(i for i in new if i not in assigned)

    def _masks(self, outputs: dict) -> FrameMasks:
        self._assign(outputs)
        masks = {n: self._empty() for n in self._names}
        for i, m in zip(outputs["out_obj_ids"], outputs["out_binary_masks"]):
            name = self.mapping.get(int(i))
            if name is not None:
                masks[name] = np.asarray(m, bool)
        return masks

    def _propagate_text(self, start: int, reverse: bool) -> Iterator[tuple[int, FrameMasks]]:
        # SAM3's backward pass starts one frame before `start`; the contract
        # yields `start` too: its latest masks (forward pass or text prompt).
        order = range(start - 1, -1, -1) if reverse else range(start, self.video.num_frames)
        self.backend.frames.prefetch(self.video, self.backend.image_size, order)
        try:
            if reverse:
                yield start, self._at.get(start) or {n: self._empty() for n in self._names}
            for item in self._request_stream("backward" if reverse else "forward", start):
                frame = int(item["frame_index"])
                masks = self._masks(item["outputs"])
                if frame in self._keep:
                    self._at[frame] = masks
                yield frame, masks
        finally:
            self.backend.frames.stop_prefetch()

    @property
    def dropped_detections(self) -> int:  # type: ignore[override]
        """Text detections that matched no object of the session (the runner reports them)."""
        return len(self.dropped)

    # points sessions -------------------------------------------------------
    def _start_points(self) -> None:
        # Objects whose prompts start on different frames get separate tracker
        # states (sam3 0.1.4 loses objects added later than the first in one state).
        by_frames: dict[tuple[int, ...], list[str]] = {}
        prompted: dict[str, set[int]] = {}
        for p in self._prompts:
            prompted.setdefault(p.object, set()).add(int(p.frame))
        for name in self._names:
            if name in prompted:
                by_frames.setdefault(tuple(sorted(prompted[name])), []).append(name)
        tracker = self.backend.model.tracker
        with self.backend.autocast():
            for names in by_frames.values():
                state = tracker.init_state(
                    video_height=self.video.height,
                    video_width=self.video.width,
                    num_frames=self.video.num_frames,
                    cached_features=_TrackerFeatures(self.backend, self.seq),
                )
                self._apply_points(state, [p for p in self._prompts if p.object in names])
                self._groups.append((names, state))

    def _apply_points(self, state: dict, prompts: list[FramePrompt]) -> None:
        import torch

        tracker = self.backend.model.tracker
        w, h = self.video.width, self.video.height
        clicks: dict[tuple[int, int], list] = {}
        for p in prompts:
            oid = self._ids[p.object]
            if p.mask is not None:
                mask = np.asarray(p.mask, bool)
                if mask.shape != (h, w):
                    raise BackendError(
                        f"mask of {p.object!r} on frame {p.frame} has shape {mask.shape}, video is {h}x{w}",
                        field="mask",
                    )
                tracker.add_new_mask(state, frame_idx=int(p.frame), obj_id=oid, mask=torch.from_numpy(mask))
            acc = clicks.setdefault(
                (oid, int(p.frame)),
                [np.zeros((0, 2), np.float32), np.zeros(0, np.int32), None, p.mask is not None],
            )
            acc[0] = np.concatenate([acc[0], np.asarray(p.points, np.float32).reshape(-1, 2)])
            acc[1] = np.concatenate([acc[1], np.asarray(p.labels, np.int32).reshape(-1)])
            boxes = np.asarray(p.boxes, np.float32).reshape(-1, 4)
            if len(boxes) > 1 or (len(boxes) and acc[2] is not None):
                raise BackendError(
                    f"sam3 takes one box per object and frame; {p.object!r} has more on frame {p.frame}",
                    field="boxes",
                )
            if len(boxes):
                acc[2] = boxes[0]
            acc[3] = acc[3] or p.mask is not None
        scale = np.array([w, h], np.float32)
        for (oid, frame), (pts, labels, box, has_mask) in clicks.items():
            if len(pts) == 0 and box is None:
                continue
            if has_mask and box is not None:
                raise BackendError(
                    f"sam3 cannot combine a box and a mask for one object on frame {frame}", field="boxes"
                )
            rel_box = None if box is None else torch.from_numpy((box.reshape(2, 2) / scale).reshape(4))
            tracker.add_new_points_or_box(
                inference_state=state,
                frame_idx=frame,
                obj_id=oid,
                points=torch.from_numpy(pts / scale) if len(pts) else None,
                labels=torch.from_numpy(labels) if len(pts) else None,
                clear_old_points=not has_mask,
                rel_coordinates=True,
                box=rel_box,
            )

    def _propagate_points(self, start: int, reverse: bool) -> Iterator[tuple[int, FrameMasks]]:
        backend = self.backend
        tracker = backend.model.tracker
        n = self.video.num_frames
        order = range(start, -1, -1) if reverse else range(start, n)
        backend.frames.prefetch(self.video, backend.image_size, order)
        gens = [
            tracker.propagate_in_video(
                state,
                start_frame_idx=start,
                max_frame_num_to_track=n,
                reverse=reverse,
                propagate_preflight=True,
            )
            for _, state in self._groups
        ]
        try:
            while True:
                masks = {name: self._empty() for name in self._names}
                frame = None
                with backend.autocast(), backend.graph_scope(self._graph_counts):
                    for (names, _), gen in zip(self._groups, gens):
                        item = next(gen, None)
                        if item is None:
                            return
                        f, obj_ids, _low, video_res, _scores = item
                        if frame is not None and f != frame:
                            raise RuntimeError(f"sam3 tracker states out of step ({f} vs {frame})")
                        frame = f
                        binary = (video_res[:, 0] > 0.0).cpu().numpy()
                        by_id = dict(zip((int(i) for i in obj_ids), binary))
                        for name in names:
                            if self._ids[name] in by_id:
                                masks[name] = by_id[self._ids[name]]
                yield int(frame), masks  # type: ignore[arg-type]
        finally:
            for gen in gens:
                gen.close()
            backend.frames.stop_prefetch()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sid is not None and self.backend.predictor is not None:
            self.backend.predictor.handle_request({"type": "close_session", "session_id": self._sid})
            self._sid = None
        for _, state in self._groups:
            state.clear()
        self._groups.clear()
        self.seq = None  # type: ignore[assignment]


# The typed options (masktrack.plugins): the constructor's keyword arguments, strict types and bounds.
Sam3Backend.Options = options_from_signature(
    Sam3Backend.__init__, "Sam3Options", seed=Field(ge=0), feature_cache_gb=Field(ge=0)
)

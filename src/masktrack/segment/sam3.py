"""The ``sam3`` backend: text sessions on SAM3's video predictor, points sessions on its tracker.

Options (``sessions[].options``)::

    checkpoint: checkpoints/sam3.pt  # required unless random_weights: true
    random_weights: false            # build without a checkpoint (tests, benchmarks), seeded by `seed`;
                                     # objects present + `random_detections` per text prompt (below)
    random_detections: 2             # random weights only: objects the detector reports per text prompt (1-5)
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

**Random weights.** A randomly initialised SAM3 detects nothing for a text
prompt and scores every tracked object "no object", so its masks are empty
and every comparison of them is vacuous.  With ``random_weights: true`` it is
made to behave like a model with objects, through SAM3's own code paths
(:mod:`masktrack.segment.sam_compat`):

* the tracker's object-score head gets
  :data:`~masktrack.segment.sam_compat.OBJECT_SCORE_BIAS` added to its bias
  (:func:`~masktrack.segment.sam_compat.make_objects_present`), so clicked
  and detected objects are present on every frame (object pointers, memory
  of real masks, memory selection all run);
* its mask logits are smoothed into blobs (a random decoder's logits are
  pixel noise, whose specks SAM3's hole filling erases) and shifted per mask
  so that each covers about a quarter of the frame instead of ~98%
  (:func:`~masktrack.segment.sam_compat.localise_random_masks`),
  and the objects decoded together are made disjoint (each pixel stays on
  for the object whose logit is highest relative to its own spread,
  :func:`~masktrack.segment.sam_compat.disjoint_objects`), so that objects are
  not all one overlapping blob that SAM3's non-overlap and occlusion rules
  reduce to a single object;
* the detector's per-frame output reports ``random_detections`` objects for
  any text prompt with distinct probabilities 0.95, 0.9, ... (fixed query
  slots, their own mask logits smoothed into blobs like the tracker's and
  made disjoint; see
  :func:`~masktrack.segment.sam_compat.install_random_detections`), so NMS,
  detection-to-track association, new-object creation and the session's
  object mapping run on real outputs;
* on frames where objects are already tracked, those detections are the
  tracked objects (each takes its track's mask logits; one without a track
  scores between SAM3's detection and new-object thresholds,
  :func:`~masktrack.segment.sam_compat.match_random_detections_to_tracks`),
  as a trained detector's would be: SAM3 associates them with the tracks
  instead of starting new objects on every frame, so a text session keeps
  its objects in both directions.

All are recorded in the fingerprint (``random_objects``).  The first is a
change of weights (a checkpoint saved from such a model keeps it); the others
wrap the built model, so a checkpoint loaded from a file segments and
detects as its weights say.
"""

from __future__ import annotations

import importlib.util
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from masktrack.errors import BackendError
from masktrack.io.video import VideoSource
from masktrack.plugins import options_from_signature
from masktrack.segment.base import (
    Detection,
    FrameMasks,
    FramePrompt,
    SessionObject,
    TextPrompt,
    assign_detections,
)
from masktrack.segment.cuda_graphs import StepGraphs
from masktrack.segment.features import (
    FeatureCache,
    FrameSequence,
    FrameStore,
    autocast_for,
    default_cache_bytes,
    resolve_device,
)
from masktrack.segment.sam3_tracker import ServedFeatures
from masktrack.segment.sam_base import (
    FloatRecord,
    PromptMerger,
    RecordingSession,
    SamBackend,
    check_mask_shape,
    checked_weights,
)
from masktrack.segment.sam_compat import (
    OBJECT_SCORE_BIAS,
    RANDOM_DETECTION_PROBS,
    RANDOM_MASK_SHARE,
    RANDOM_MASK_SMOOTHING,
    initialise_unset_parameters,
    install_random_detections,
    install_sam3_tracker_speedups,
    install_trunk_cache,
    library_version,
    localise_random_masks,
    make_objects_present,
    match_random_detections_to_tracks,
    sam3_predictor_class,
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


class Sam3Backend(SamBackend):
    """A SAM3 video model (detector + tracker) and the frame/feature cache its sessions share."""

    name = "sam3"
    library = "sam3"
    supports_text = True
    supports_points = True

    def __init__(
        self,
        checkpoint: str | None = None,
        random_weights: bool = False,
        random_detections: int = 2,
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
        self.checkpoint = checked_weights("sam3", checkpoint, random_weights, "sam3.pt")
        if not 1 <= int(random_detections) <= len(RANDOM_DETECTION_PROBS):
            raise BackendError(
                f"random_detections must be 1..{len(RANDOM_DETECTION_PROBS)}, got {random_detections}",
                field="options.random_detections",
            )
        self.random_detections = int(random_detections)
        self.gpus_to_use = [int(g) for g in gpus_to_use] if gpus_to_use else None
        if self.gpus_to_use and len(self.gpus_to_use) > 1 and self.checkpoint is None:
            raise BackendError(
                "gpus_to_use with several GPUs needs a checkpoint (each GPU loads it)",
                field="options.gpus_to_use",
            )
        _import_sam3()
        library_version("sam3")
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
                if ckpt is None:
                    initialise_unset_parameters(model)
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
        if ckpt is None:
            make_objects_present(model.tracker.sam_mask_decoder)
            localise_random_masks(model.tracker.sam_mask_decoder)
            install_random_detections(model.detector, self.random_detections)
            match_random_detections_to_tracks(model)
        return sam3_predictor_class(FrameSequence)(model), model

    def _install_trunk_cache(self) -> None:
        """Serve the ViT trunk's output from the shared cache when the input is a frame we handed out."""
        install_trunk_cache(
            self.model,
            lambda x: self._frame_key(x) if self.share_features else None,
            lambda key, compute: self.cache.get_or_compute(key, compute),
        )

    def _install_tracker_speedups(self) -> list[str]:
        """Fewer host syncs and shared frame-pure work in the tracker (what got installed, for reports)."""
        if self.multi_gpu:  # the model lives in other processes
            return []
        done = install_sam3_tracker_speedups(
            self.model.tracker,
            graphs=self.graphs,
            compile=self.compile,
            frame_of=self._sa0_key if self.share_features else None,
            cache=self.cache,
        )
        if self.compile and "memory_attention" not in done and "shared_first_self_attention" not in done:
            raise BackendError(
                "compile: true needs sam3's memory attention layout (sam3 0.1.4)", field="options.compile"
            )
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

    # -- Backend API -------------------------------------------------------
    def open_session(self, video: VideoSource, objects: Sequence[SessionObject]) -> Sam3Session:
        return Sam3Session(self, video, objects)

    def model_fingerprint(self) -> dict:
        shared_sa = "shared_first_self_attention" in self.tracker_speedups
        return {
            "weights": self.weights(),
            "image_size": self.image_size,
            "memory_attention": "first-self-attention-per-frame" if shared_sa else "sam3",
        }

    def random_objects(self) -> dict:
        return {
            "object_score_bias": OBJECT_SCORE_BIAS,
            "mask_share": RANDOM_MASK_SHARE,
            "mask_smoothing": RANDOM_MASK_SMOOTHING,
            "detections": list(RANDOM_DETECTION_PROBS[: self.random_detections]),
            "objects_disjoint": "by-logit-over-spread",
            "detection_masks": "smoothed",
            "detections_follow_tracks": True,
        }

    def release_model(self) -> None:
        self._served.clear()
        self._tracker_served.clear()
        self._tracker_pos = None
        if self.multi_gpu:
            self.predictor.shutdown()
        self.predictor = None
        self.model = None


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


class Sam3Session(RecordingSession):
    """One SAM3 session: buffers its prompts, then runs as a :class:`Sam3TextSession` or a :class:`Sam3PointsSession`.

    The kind (and, for points, the grouping of objects into tracker states)
    depends on all of the session's prompts, so they are applied when the
    session first propagates.
    """

    def __init__(self, backend: Sam3Backend, video: VideoSource, objects: Sequence[SessionObject]) -> None:
        self.backend = backend
        self.video = video
        self.objects = tuple(objects)
        self._ids = {o.name: o.id for o in self.objects}
        self._text: TextPrompt | None = None
        self._prompts: list[FramePrompt] = []
        self._closed = False
        self.kind: Sam3TextSession | Sam3PointsSession | None = None

    # -- prompts -----------------------------------------------------------
    def add_text(self, prompt: TextPrompt) -> None:
        if self.kind is not None:
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
                f"prompt for {prompt.object!r}, which is not an object of this session ({', '.join(self._ids)})",
                field="object",
            )
        if self.kind is not None:
            raise BackendError("sam3: add prompts before propagating", field="prompts")
        self._prompts.append(prompt)

    # -- propagation -------------------------------------------------------
    def propagate(self, start_frame: int, *, reverse: bool = False) -> Iterator[tuple[int, FrameMasks]]:
        if self._closed:
            raise RuntimeError("session is closed")
        if self.kind is None:
            if self._text is not None:
                self.kind = Sam3TextSession(self, self._text, self._prompts)
            elif self._prompts:
                self.kind = Sam3PointsSession(self, self._prompts)
            else:
                raise BackendError(
                    "sam3 session has neither a text prompt nor clicks/boxes/masks", field="prompts"
                )
        yield from self.kind.propagate(start_frame, reverse)

    # -- what a text session found (empty for points sessions) --------------
    @property
    def mapping(self) -> dict[int, str]:
        """SAM3 object id -> object name (text sessions)."""
        return self.kind.mapping if isinstance(self.kind, Sam3TextSession) else {}

    @property
    def dropped(self) -> set[int]:
        """SAM3 object ids that matched no object of the session (text sessions)."""
        return self.kind.dropped if isinstance(self.kind, Sam3TextSession) else set()

    @property
    def detections(self) -> list[Detection]:
        return self.kind.detections if isinstance(self.kind, Sam3TextSession) else []

    @property
    def dropped_detections(self) -> int:  # type: ignore[override]
        """Text detections that matched no object of the session (the runner reports them)."""
        return len(self.dropped)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.kind is not None:
            self.kind.close()
            self.kind = None


class _Sam3Kind:
    """What both session kinds hold: the front session's backend, video, objects and frames."""

    def __init__(self, front: Sam3Session) -> None:
        self.front = front
        self.backend = front.backend
        self.video = front.video
        self.objects = front.objects
        self._names = [o.name for o in self.objects]
        self._ids = front._ids
        self.seq: FrameSequence | None = self.backend.frame_sequence(self.video)

    @property
    def floats(self) -> FloatRecord | None:
        return self.front.floats

    def _empty(self) -> np.ndarray:
        return np.zeros((self.video.height, self.video.width), bool)


class Sam3TextSession(_Sam3Kind):
    """A text session on SAM3's request API: detections mapped to the session's objects.

    Detected instances map to the session's objects by
    :func:`masktrack.segment.base.assign_detections` on the text frame;
    instances that first appear later fill the objects still unassigned, in
    order of appearance; the rest are dropped (``dropped`` lists their ids).
    Clicks refine the mapped instance (or add an object the text did not
    find); SAM3 accepts clicks only on frames it has already propagated, so
    such a session costs one extra text pass.
    """

    def __init__(self, front: Sam3Session, text: TextPrompt, prompts: list[FramePrompt]) -> None:
        super().__init__(front)
        self.mapping: dict[int, str] = {}
        self.dropped: set[int] = set()
        self.detections: list[Detection] = []
        self._sid: str | None = None
        self._keep: set[int] = set()
        self._at: dict[int, FrameMasks] = {}  # latest masks on prompted frames
        self._start(text, prompts)

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

    def _start(self, text: TextPrompt, prompts: list[FramePrompt]) -> None:
        for p in prompts:
            if len(p.boxes) or p.mask is not None:
                raise BackendError(
                    f"sam3 text sessions refine instances with clicks only; {p.object!r} on frame {p.frame} has a box or mask",
                    field="prompts",
                )
        backend = self.backend
        resource: Any = str(self.video.path) if backend.multi_gpu else self.seq
        with backend.autocast():
            self._sid = backend.predictor.handle_request(
                {"type": "start_session", "resource_path": resource}
            )["session_id"]
            out = backend.predictor.handle_request(
                {"type": "add_prompt", "session_id": self._sid, "frame_index": text.frame, "text": text.text}
            )["outputs"]
        clicks = [p for p in prompts if len(p.points)]
        self._keep = {text.frame, *(int(p.frame) for p in clicks)}
        self._at[text.frame] = self._masks(text.frame, out)
        if not clicks:
            return
        # SAM3 refuses clicks on frames without cached outputs: one text pass first.
        for direction in ("forward", "backward"):
            for item in self._request_stream(direction, text.frame):
                frame = int(item["frame_index"])
                masks = self._masks(frame, item["outputs"])
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

    def _masks(self, frame: int, outputs: dict) -> FrameMasks:
        if self.floats is not None:
            self.floats.seen[frame] = [
                (int(i), round(float(p), 4), int(np.asarray(m).sum()))
                for i, p, m in zip(outputs["out_obj_ids"], outputs["out_probs"], outputs["out_binary_masks"])
            ]
        self._assign(outputs)
        masks = {n: self._empty() for n in self._names}
        for i, m, prob in zip(outputs["out_obj_ids"], outputs["out_binary_masks"], outputs["out_probs"]):
            name = self.mapping.get(int(i))
            if name is not None:
                masks[name] = np.asarray(m, bool)
                if self.floats is not None:
                    self.floats.add(frame, name, score=prob)
        return masks

    def propagate(self, start: int, reverse: bool) -> Iterator[tuple[int, FrameMasks]]:
        # SAM3's backward pass starts one frame before `start`; the contract
        # yields `start` too: its latest masks (forward pass or text prompt).
        order = range(start - 1, -1, -1) if reverse else range(start, self.video.num_frames)
        self.backend.frames.prefetch(self.video, self.backend.image_size, order)
        try:
            if reverse:
                yield start, self._at.get(start) or {n: self._empty() for n in self._names}
            for item in self._request_stream("backward" if reverse else "forward", start):
                frame = int(item["frame_index"])
                masks = self._masks(frame, item["outputs"])
                if frame in self._keep:
                    self._at[frame] = masks
                yield frame, masks
        finally:
            self.backend.frames.stop_prefetch()

    def close(self) -> None:
        if self._sid is not None and self.backend.predictor is not None:
            self.backend.predictor.handle_request({"type": "close_session", "session_id": self._sid})
            self._sid = None
        self.seq = None


class Sam3PointsSession(_Sam3Kind):
    """A points session on SAM3's SAM2-style tracker, with no text bootstrap and no extra propagation.

    ``model.tracker``'s ``init_state`` / ``add_new_points_or_box`` (relative
    coordinates) / ``propagate_in_video`` run straight on fresh states.
    Objects whose prompts start on different frames get separate tracker
    states: the 0.1.4 tracker loses objects that are added on a later frame
    than the first one in a shared state (reported upstream for ``sam3``).
    """

    def __init__(self, front: Sam3Session, prompts: list[FramePrompt]) -> None:
        super().__init__(front)
        self._graph_counts: Counter = Counter()  # this session's step signatures (see cuda_graphs)
        self.groups: list[tuple[list[str], dict]] = []
        by_frames: dict[tuple[int, ...], list[str]] = {}
        prompted: dict[str, set[int]] = {}
        for p in prompts:
            prompted.setdefault(p.object, set()).add(int(p.frame))
        for name in self._names:
            if name in prompted:
                by_frames.setdefault(tuple(sorted(prompted[name])), []).append(name)
        tracker = self.backend.model.tracker
        seq = self.seq
        assert seq is not None
        with self.backend.autocast():
            for names in by_frames.values():
                state = tracker.init_state(
                    video_height=self.video.height,
                    video_width=self.video.width,
                    num_frames=self.video.num_frames,
                    cached_features=_TrackerFeatures(self.backend, seq),
                )
                self._apply(state, [p for p in prompts if p.object in names])
                self.groups.append((names, state))

    def _apply(self, state: dict, prompts: list[FramePrompt]) -> None:
        import torch

        tracker = self.backend.model.tracker
        w, h = self.video.width, self.video.height
        merger = PromptMerger("sam3")
        for p in prompts:
            oid = self._ids[p.object]
            if p.mask is not None:
                mask = check_mask_shape(p, h, w)
                tracker.add_new_mask(state, frame_idx=int(p.frame), obj_id=oid, mask=torch.from_numpy(mask))
            merger.add(oid, p)
        scale = np.array([w, h], np.float32)
        for (oid, frame), acc in merger.by_key.items():
            if len(acc.points) == 0 and acc.box is None:
                continue
            rel_box = (
                None if acc.box is None else torch.from_numpy((acc.box.reshape(2, 2) / scale).reshape(4))
            )
            tracker.add_new_points_or_box(
                inference_state=state,
                frame_idx=frame,
                obj_id=oid,
                points=torch.from_numpy(acc.points / scale) if len(acc.points) else None,
                labels=torch.from_numpy(acc.labels) if len(acc.points) else None,
                clear_old_points=not acc.has_mask,
                rel_coordinates=True,
                box=rel_box,
            )

    def propagate(self, start: int, reverse: bool) -> Iterator[tuple[int, FrameMasks]]:
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
            for _, state in self.groups
        ]
        try:
            while True:
                masks = {name: self._empty() for name in self._names}
                frame = None
                with backend.autocast(), backend.graph_scope(self._graph_counts):
                    for (names, _), gen in zip(self.groups, gens):
                        item = next(gen, None)
                        if item is None:
                            return
                        f, obj_ids, _low, video_res, scores = item
                        if frame is not None and f != frame:
                            raise RuntimeError(f"sam3 tracker states out of step ({f} vs {frame})")
                        frame = f
                        binary = (video_res[:, 0] > 0.0).cpu().numpy()
                        ids = [int(i) for i in obj_ids]
                        by_id = dict(zip(ids, binary))
                        for name in names:
                            if self._ids[name] in by_id:
                                masks[name] = by_id[self._ids[name]]
                        if self.floats is not None:
                            self._record(int(f), names, ids, video_res, scores)
                assert frame is not None  # every group yields each frame
                yield int(frame), masks
        finally:
            for gen in gens:
                gen.close()
            backend.frames.stop_prefetch()

    def _record(self, frame: int, names: list[str], ids: list[int], video_res: Any, scores: Any) -> None:
        assert self.floats is not None
        logits = video_res[:, 0].float().cpu().numpy()
        flat = scores.float().reshape(len(ids), -1)[:, 0].cpu().numpy() if scores is not None else None
        for name in names:
            oid = self._ids[name]
            if oid in ids:
                k = ids.index(oid)
                self.floats.add(frame, name, logits[k], None if flat is None else flat[k])

    def close(self) -> None:
        for _, state in self.groups:
            state.clear()
        self.groups.clear()
        self.seq = None


# The typed options (masktrack.plugins): the constructor's keyword arguments, strict types and bounds.
Sam3Backend.Options = options_from_signature(
    Sam3Backend.__init__,
    "Sam3Options",
    seed=Field(ge=0),
    feature_cache_gb=Field(ge=0),
    random_detections=Field(ge=1, le=5),
)

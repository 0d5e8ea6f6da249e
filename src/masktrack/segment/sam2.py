"""The ``sam2`` backend: SAM 2 / 2.1 video predictor, clicks, boxes and masks.

Options (``sessions[].options`` in the pipeline config)::

    config: configs/sam2.1/sam2.1_hiera_t.yaml   # a config name inside the sam2 package
    checkpoint: checkpoints/sam2.1_hiera_tiny.pt # required unless random_weights: true
    random_weights: false   # build without a checkpoint (tests, benchmarks), seeded by `seed`;
                            # the object-score head is biased so that objects are present (below)
    device: auto            # auto | cuda | cuda:N | cpu
    bf16: true              # bfloat16 autocast on GPU
    image_size: null        # override the model's input size (small sizes for CPU tests)
    offload_video_to_cpu: false   # keep the decoded frames in host memory
    offload_state_to_cpu: false   # keep each session's memory bank in host memory
    feature_cache_gb: null  # bound of the frame/feature cache (default: 30% of the GPU, max 24)
    share_features: true    # reuse frames + image features across sessions of this backend
    cuda_graphs: true       # replay the fixed-shape per-frame tracker steps as CUDA graphs (GPU only)

The model and the frame/feature cache belong to the backend; every session
gets a fresh SAM2 inference state (memory bank, object pointers), built from
the backend's shared, already-decoded frames instead of a video path: a
second session on the same video re-runs only the temporal part, and on a
GPU that part's memory attention, mask heads and memory encoder replay as
CUDA graphs once their shapes repeat (:mod:`masktrack.segment.cuda_graphs`).

**Random weights.** A randomly initialised SAM2 scores about half of its
frames "no object" and then outputs no mask, so tests and benchmarks would
compare empty arrays.  With ``random_weights: true`` the mask decoder's
object-score head gets :data:`~masktrack.segment.sam_compat.OBJECT_SCORE_BIAS`
added to its bias (:func:`~masktrack.segment.sam_compat.make_objects_present`):
objects are present on every frame, so object pointers, memory of real masks
and memory selection run as with a trained model; the masks themselves stay
meaningless.  The fingerprint records it (``random_objects``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from masktrack.errors import BackendError
from masktrack.io.video import VideoSource
from masktrack.plugins import options_from_signature
from masktrack.segment.base import FrameMasks, FramePrompt, SessionObject
from masktrack.segment.cuda_graphs import StepGraphs, install_sam_step_graphs
from masktrack.segment.features import (
    FeatureCache,
    FrameSequence,
    FrameStore,
    autocast_for,
    default_cache_bytes,
    resolve_device,
)
from masktrack.segment.sam_base import (
    PromptMerger,
    RecordingSession,
    SamBackend,
    check_mask_shape,
    checked_weights,
)
from masktrack.segment.sam_compat import (
    install_sam2_shared_features,
    library_version,
    make_objects_present,
    memory_in_model_dtype,
    sam2_frames_from,
)

DEFAULT_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
_IMG_MEAN = (0.485, 0.456, 0.406)
_IMG_STD = (0.229, 0.224, 0.225)


def _import_sam2() -> Any:
    try:
        import sam2.build_sam  # noqa: F401
        import sam2.sam2_video_predictor as vp
    except ImportError as e:
        raise BackendError(
            f"backend 'sam2' needs the sam2 package ({e}); pip install 'masktrack[sam2]'", field="backend"
        ) from None
    return vp


class Sam2Backend(SamBackend):
    """SAM 2 video predictor + a frame/feature cache shared by its sessions."""

    name = "sam2"
    library = "sam2"
    supports_text = False
    supports_points = True

    def __init__(
        self,
        config: str = DEFAULT_CONFIG,
        checkpoint: str | None = None,
        random_weights: bool = False,
        seed: int = 0,
        device: str = "auto",
        bf16: bool = True,
        image_size: int | None = None,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        feature_cache_gb: float | None = None,
        share_features: bool = True,
        cuda_graphs: bool = True,
    ) -> None:
        self.checkpoint = checked_weights("sam2", checkpoint, random_weights, "e.g. sam2.1_hiera_tiny.pt")
        if image_size is not None and (int(image_size) < 64 or int(image_size) % 16):
            raise BackendError(
                f"image_size must be a multiple of 16 and >= 64, got {image_size}", field="options.image_size"
            )
        self._vp = _import_sam2()
        import torch

        library_version("sam2")
        self.config = config
        self.random_weights = bool(random_weights)
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.bf16 = bool(bf16)
        self.offload_video_to_cpu = bool(offload_video_to_cpu)
        self.offload_state_to_cpu = bool(offload_state_to_cpu)
        self.share_features = bool(share_features)
        self.predictor = self._build(image_size)
        self.image_size = int(self.predictor.image_size)
        self.graphs = StepGraphs() if cuda_graphs and self.device.type == "cuda" else None
        self.graph_steps = (
            install_sam_step_graphs(self.predictor, self.graphs) if self.graphs is not None else []
        )
        self.cache = FeatureCache(default_cache_bytes(self.device, feature_cache_gb))
        frames_device = torch.device("cpu") if self.offload_video_to_cpu else self.device
        self.frames = FrameStore(self.cache, frames_device)
        self._pos_enc: list | None = None

    # -- model -------------------------------------------------------------
    def _build(self, image_size: int | None) -> Any:
        import torch
        from hydra.errors import HydraException
        from sam2.build_sam import build_sam2_video_predictor

        # SAM2's own video post-processing settings, except that hole filling
        # needs sam2's CUDA extension: without it, skip it instead of failing per frame.
        try:
            import sam2._C  # noqa: F401

            fill_hole_area = 8
        except ImportError:
            fill_hole_area = 0
        overrides = [
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
            "++model.binarize_mask_from_pts_for_mem_enc=true",
            f"++model.fill_hole_area={fill_hole_area}",
        ]
        if image_size is not None:
            overrides.append(f"++model.image_size={int(image_size)}")
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = build_sam2_video_predictor(
                    self.config,
                    ckpt_path=None,
                    device="cpu",
                    hydra_overrides_extra=overrides,
                    apply_postprocessing=False,
                )
        except HydraException as e:
            raise BackendError(
                f"unknown sam2 config {self.config!r} ({str(e).splitlines()[0]}); e.g. {DEFAULT_CONFIG}",
                field="options.config",
            ) from None
        if self.checkpoint is not None:
            self._load_checkpoint(model)
        else:
            make_objects_present(model.sam_mask_decoder)
        model = model.to(self.device).eval()
        install_sam2_shared_features(model)
        if not (self.bf16 and self.device.type == "cuda"):
            memory_in_model_dtype(model)
        return model

    def _load_checkpoint(self, model: Any) -> None:
        import torch

        path = self.checkpoint
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)  # type: ignore[arg-type]
        except Exception as e:
            raise BackendError(
                f"cannot read sam2 checkpoint ({type(e).__name__}: {e})",
                path=path,
                field="options.checkpoint",
            ) from None
        state = ckpt.get("model") if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise BackendError(
                "not a SAM2 checkpoint (no 'model' state dict)", path=path, field="options.checkpoint"
            )
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[-1].strip()
            raise BackendError(
                f"checkpoint does not match config {self.config!r} ({first})",
                path=path,
                field="options.checkpoint",
            ) from None
        if missing or unexpected:
            raise BackendError(
                f"checkpoint does not match config {self.config!r}: {len(missing)} missing keys "
                f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})",
                path=path,
                field="options.checkpoint",
            )

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast_for(self.device, self.bf16)

    # -- shared features ---------------------------------------------------
    def frame_sequence(self, video: VideoSource) -> FrameSequence:
        seq = FrameSequence(self.frames, video, self.image_size, self.device, _IMG_MEAN, _IMG_STD)
        vkey = video.content_hash()
        if self.share_features:
            seq.feature_provider = lambda i: self._features(seq, vkey, i)  # type: ignore[attr-defined]
        else:
            last: dict[int, tuple] = {}

            def one_frame(i: int) -> tuple:  # SAM2's own policy: keep only the latest frame
                if i not in last:
                    last.clear()
                    last[i] = self._compute(seq, i)
                return last[i]

            seq.feature_provider = one_frame  # type: ignore[attr-defined]
        return seq

    def _compute(self, seq: FrameSequence, index: int) -> tuple:
        image = seq[index].unsqueeze(0)
        out = self.predictor.forward_image(image)
        if self._pos_enc is None:  # a function of the input size only: keep one copy
            self._pos_enc = list(out["vision_pos_enc"])
        return image, {"backbone_fpn": list(out["backbone_fpn"]), "vision_pos_enc": self._pos_enc}

    def _features(self, seq: FrameSequence, vkey: str, index: int) -> tuple:
        key = (vkey, "sam2-features", self.image_size, index)
        fpn = self.cache.get(key)
        if fpn is None:
            image, out = self._compute(seq, index)
            self.cache.put(key, out["backbone_fpn"])
            return image, out
        image = seq[index].unsqueeze(0)
        return image, {"backbone_fpn": fpn, "vision_pos_enc": self._pos_enc}

    # -- Backend API -------------------------------------------------------
    def open_session(self, video: VideoSource, objects: Sequence[SessionObject]) -> Sam2Session:
        return Sam2Session(self, video, objects)

    def model_fingerprint(self) -> dict:
        return {
            "config": self.config,
            "weights": self.weights(),
            "image_size": self.image_size,
            "bf16": self.bf16 and self.device.type == "cuda",
        }

    def release_model(self) -> None:
        self._pos_enc = None
        self.predictor = None


class Sam2Session(RecordingSession):
    """One SAM2 inference state: its own memory bank and object pointers, shared frames/features."""

    def __init__(self, backend: Sam2Backend, video: VideoSource, objects: Sequence[SessionObject]) -> None:
        self.backend = backend
        self.video = video
        self.objects = tuple(objects)
        self._ids = {o.name: o.id for o in self.objects}
        self._merger = PromptMerger("sam2")
        self._prompted: set[int] = set()
        self._graph_counts: Counter = Counter()  # this session's step signatures (see cuda_graphs)
        self.images = backend.frame_sequence(video)
        predictor = backend.predictor
        with sam2_frames_from(backend._vp, self.images, video.height, video.width), backend.autocast():
            self.state = predictor.init_state(
                video_path=str(video.path),
                offload_video_to_cpu=backend.offload_video_to_cpu,
                offload_state_to_cpu=backend.offload_state_to_cpu,
            )

    def _obj_id(self, name: str) -> int:
        if name not in self._ids:
            raise BackendError(
                f"prompt for {name!r}, which is not an object of this session ({', '.join(self._ids)})",
                field="object",
            )
        return self._ids[name]

    def add_prompt(self, prompt: FramePrompt) -> None:
        import torch

        if self.state is None:
            raise RuntimeError("session is closed")
        oid = self._obj_id(prompt.object)
        frame = int(prompt.frame)
        pred = self.backend.predictor
        with self.backend.autocast():
            if prompt.mask is not None:
                mask = check_mask_shape(prompt, self.video.height, self.video.width)
                pred.add_new_mask(self.state, frame_idx=frame, obj_id=oid, mask=torch.from_numpy(mask))
                self._prompted.add(oid)
            acc, points, labels = self._merger.add(oid, prompt)
            if len(points) == 0 and not len(np.asarray(prompt.boxes).reshape(-1)):
                return
            if acc.has_mask:  # the mask is the frame's prompt state: only the new clicks go on top
                pred.add_new_points_or_box(
                    self.state,
                    frame_idx=frame,
                    obj_id=oid,
                    points=points,
                    labels=labels,
                    clear_old_points=False,
                )
            else:
                pred.add_new_points_or_box(
                    self.state,
                    frame_idx=frame,
                    obj_id=oid,
                    points=acc.points if len(acc.points) else None,
                    labels=acc.labels if len(acc.labels) else None,
                    box=acc.box,
                    clear_old_points=True,
                )
            self._prompted.add(oid)

    def _object_score(self, oid: int, frame: int) -> float | None:
        """SAM2's object-score logit of ``oid`` on ``frame`` (from its per-object output dict)."""
        idx = self.state["obj_id_to_idx"].get(oid)
        if idx is None:
            return None
        per_obj = self.state["output_dict_per_obj"][idx]
        out = per_obj["cond_frame_outputs"].get(frame) or per_obj["non_cond_frame_outputs"].get(frame)
        score = None if out is None else out.get("object_score_logits")
        return None if score is None else float(score.float().reshape(-1)[0])

    def propagate(self, start_frame: int, *, reverse: bool = False) -> Iterator[tuple[int, FrameMasks]]:
        if self.state is None:
            raise RuntimeError("session is closed")
        if not self._prompted:
            raise BackendError("sam2 session has no clicks, boxes or masks for any object", field="prompts")
        n = self.video.num_frames
        order = range(start_frame, -1, -1) if reverse else range(start_frame, n)
        backend = self.backend
        backend.frames.prefetch(self.video, backend.image_size, order)
        if reverse and start_frame == 0:
            # SAM2 yields nothing backward from frame 0; the contract wants frame 0
            gen = backend.predictor.propagate_in_video(
                self.state, start_frame_idx=0, max_frame_num_to_track=0
            )
        else:
            gen = backend.predictor.propagate_in_video(
                self.state, start_frame_idx=start_frame, reverse=reverse
            )
        h, w = self.video.height, self.video.width
        try:
            while True:
                with backend.autocast(), backend.graph_scope(self._graph_counts):
                    item = next(gen, None)
                    if item is None:
                        return
                    frame, obj_ids, logits = item
                    binary = (logits[:, 0] > 0.0).cpu().numpy()
                    if self.floats is not None:
                        names = {o.id: o.name for o in self.objects}
                        for oid, lg in zip(obj_ids, logits[:, 0].float().cpu().numpy()):
                            if oid in names:
                                score = self._object_score(oid, int(frame))
                                self.floats.add(int(frame), names[oid], lg, score)
                by_id = dict(zip(obj_ids, binary))
                yield (
                    int(frame),
                    {o.name: by_id[o.id] if o.id in by_id else np.zeros((h, w), bool) for o in self.objects},
                )
        finally:
            gen.close()
            backend.frames.stop_prefetch()

    def close(self) -> None:
        if self.state is None:
            return
        self.backend.predictor.reset_state(self.state)
        self.state.clear()
        self.state = None
        self.images = None  # type: ignore[assignment]


# The typed options (masktrack.plugins): the constructor's keyword arguments, strict types and bounds.
Sam2Backend.Options = options_from_signature(
    Sam2Backend.__init__,
    "Sam2Options",
    seed=Field(ge=0),
    image_size=Field(ge=64),
    feature_cache_gb=Field(ge=0),
)

"""Every place where masktrack reaches into ``sam2``'s or ``sam3``'s private API, in one module.

masktrack drives SAM2/SAM3 through their public predictors, but four things
need their insides: sessions built on the backend's shared decoded frames
(instead of each predictor decoding the video again), image-encoder output
shared across sessions, the tracker speed-ups of
:mod:`masktrack.segment.sam3_tracker` and :mod:`masktrack.segment.cuda_graphs`,
and random-weight models that behave like models with objects (tests and
benchmarks).  Each of those patches is reached from here, and this module
says which library versions they were written and verified against:

=========  ===========================  =========================================
library    supported (verified)         what is patched
=========  ===========================  =========================================
sam2       1.0 – 1.1.x (1.1.0)          ``sam2_video_predictor.load_video_frames``
                                        (swapped while a session's state is
                                        built), ``SAM2Base._get_image_feature``,
                                        ``memory_attention.forward`` (dtype),
                                        the tracker steps replayed as CUDA graphs,
                                        ``sam_mask_decoder.pred_obj_score_head``
                                        (random weights only)
sam3       0.1.x (0.1.4)                ``sam3_video_inference.load_resource_as_video_frames``
                                        and ``Sam3VideoPredictor.start_session``,
                                        the ViT trunk's ``forward``, the tracker's
                                        ``frame_filter``, dense PE, memory
                                        attention, CUDA-graph steps, the object-
                                        score head and the detector's
                                        ``forward_grounding`` (random weights only)
=========  ===========================  =========================================

Outside those ranges the backend still loads (each patch checks that the
attributes it needs exist and otherwise leaves the model alone, so a missing
patch costs speed, not correctness) and logs one warning naming the version.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from types import MethodType
from typing import Any

from masktrack.errors import BackendError
from masktrack.segment.cuda_graphs import StepGraphs, install_sam_step_graphs
from masktrack.segment.sam3_tracker import (
    compile_memory_attention,
    install_dense_pe_memo,
    install_frame_filter,
    install_shared_first_self_attention,
)

log = logging.getLogger(__name__)

#: library -> (lowest supported, first unsupported) version prefixes, and the version verified on GPU
SUPPORTED: dict[str, tuple[tuple[int, ...], tuple[int, ...], str]] = {
    "sam2": ((1, 0), (1, 2), "1.1.0"),
    "sam3": ((0, 1, 4), (0, 2), "0.1.4"),
}
_warned: set[str] = set()


def _parse(v: str) -> tuple[int, ...]:
    parts = []
    for p in v.split("+")[0].split("."):
        digits = "".join(c for c in p if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def is_supported(library: str, installed: str) -> bool:
    low, high, _ = SUPPORTED[library]
    v = _parse(installed)
    return low <= v < high


def library_version(library: str) -> str:
    """The installed version of ``library``; warns once when the patches were not written for it."""
    try:
        installed = version(library)
    except PackageNotFoundError:  # a source checkout on the path
        installed = "unknown"
    if library not in _warned and (installed == "unknown" or not is_supported(library, installed)):
        _warned.add(library)
        low, high, verified = SUPPORTED[library]
        log.warning(
            "%s %s is outside the versions masktrack's patches support (>= %s, < %s; verified %s): "
            "patches that do not find what they need are skipped",
            library,
            installed,
            ".".join(map(str, low)),
            ".".join(map(str, high)),
            verified,
        )
    return installed


# --------------------------------------------------------------------------- sam2


def shared_get_image_feature(self: Any, inference_state: dict, frame_idx: int, batch_size: int) -> tuple:
    """SAM2's ``_get_image_feature``, reading the backbone output from the backend's shared cache.

    Falls back to SAM2's own method for states that masktrack did not build.
    """
    images = inference_state["images"]
    provider = getattr(images, "feature_provider", None)
    if provider is None:
        return type(self)._get_image_feature(self, inference_state, frame_idx, batch_size)
    image, backbone_out = provider(frame_idx)
    expanded_image = image.expand(batch_size, -1, -1, -1)
    expanded = {
        "backbone_fpn": [f.expand(batch_size, -1, -1, -1) for f in backbone_out["backbone_fpn"]],
        "vision_pos_enc": [p.expand(batch_size, -1, -1, -1) for p in backbone_out["vision_pos_enc"]],
    }
    features = self._prepare_backbone_features(expanded)
    return (expanded_image,) + features


def install_sam2_shared_features(model: Any) -> None:
    model._get_image_feature = MethodType(shared_get_image_feature, model)


def memory_in_model_dtype(model: Any) -> None:
    """SAM2 stores its memory bank in bfloat16 and relies on GPU autocast to mix it with float32.

    Without autocast (CPU, or ``bf16: false``) the memory is cast to the
    dtype of the current frame's features before the memory attention.
    """
    attention = model.memory_attention
    original = attention.forward

    def forward(
        curr: Any, memory: Any, curr_pos: Any = None, memory_pos: Any = None, num_obj_ptr_tokens: int = 0
    ) -> Any:
        dtype = (curr[0] if isinstance(curr, list) else curr).dtype
        memory = memory.to(dtype)
        memory_pos = memory_pos.to(dtype) if memory_pos is not None else None
        return original(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens)

    attention.forward = forward


@contextlib.contextmanager
def sam2_frames_from(vp_module: Any, images: Any, height: int, width: int) -> Iterator[None]:
    """While building an inference state, SAM2's frame loader returns the backend's shared frames."""
    original = vp_module.load_video_frames
    vp_module.load_video_frames = lambda **_: (images, height, width)
    try:
        yield
    finally:
        vp_module.load_video_frames = original


# --------------------------------------------------------------------------- sam3

_PREDICTOR_CLASS: type | None = None


def sam3_predictor_class(frames_type: type) -> type:
    """SAM3's request-API predictor around a model built by masktrack (built once, with our options).

    Its ``start_session`` also accepts a ``frames_type`` object (the backend's
    shared decoded frames) instead of a path.
    """
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
            if not isinstance(resource_path, frames_type):
                return super().start_session(resource_path, session_id=session_id)
            import sam3.model.sam3_video_inference as vi

            seq: Any = resource_path
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


def install_trunk_cache(model: Any, key_of: Callable[[Any], Any], get_or_compute: Callable) -> None:
    """Serve the ViT trunk's output from a shared cache when ``key_of(input)`` names a frame."""
    trunk = model.detector.backbone.vision_backbone.trunk
    original = trunk.forward

    def forward(self_trunk: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        key = key_of(x) if not args and not kwargs else None
        if key is None:
            return original(x, *args, **kwargs)
        return get_or_compute(key, lambda: original(x))

    trunk.forward = MethodType(forward, trunk)


def install_sam3_tracker_speedups(
    tracker: Any,
    *,
    graphs: StepGraphs | None,
    compile: bool,
    frame_of: Callable[[Any], Any] | None,
    cache: Any,
) -> list[str]:
    """The tracker speed-ups (see :mod:`masktrack.segment.sam3_tracker`); returns what got installed."""
    done = []
    if install_frame_filter(tracker):
        done.append("frame_filter")
    if install_dense_pe_memo(tracker):
        done.append("dense_pe")
    wrap = None
    if compile:
        wrap = compile_memory_attention
    elif graphs is not None:
        wrap = lambda fn: graphs.wrap("memory_attention", fn)  # noqa: E731
    if frame_of is not None or wrap is not None:
        key_fn = frame_of if frame_of is not None else (lambda _src: None)
        if install_shared_first_self_attention(tracker, key_fn, cache, wrap):
            done.append("shared_first_self_attention" if frame_of is not None else "memory_attention")
    if graphs is not None:
        done += [
            f"cuda_graph:{name}" for name in install_sam_step_graphs(tracker, graphs, memory_attention=False)
        ]
    return done


# --------------------------------------------------------------------------- random weights with objects

#: Added to the bias of the mask decoder's object-score head of a random-weight model.
OBJECT_SCORE_BIAS = 6.0
#: Detection probabilities a random-weight SAM3 reports for a text prompt, best first (all above
#: SAM3's new-object threshold 0.7, distinct so that the object mapping by score is defined).
RANDOM_DETECTION_PROBS = (0.95, 0.9, 0.85, 0.8, 0.75)


#: SAM3 0.1.4 parameters created with ``torch.empty``/``torch.Tensor(n, d)`` and never initialised:
#: the text encoder's positional embedding and (without a bias) projection, and the detector
#: encoder's per-level embedding.  A checkpoint overwrites them; a random-weight build keeps
#: whatever the allocator held.
UNINITIALISED_SAM3_PARAMETERS = ("positional_embedding", "text_projection", "level_embed")


def initialise_unset_parameters(
    model: Any, names: tuple[str, ...] = UNINITIALISED_SAM3_PARAMETERS, *, std: float = 0.02
) -> list[str]:
    """Seed a randomly built model's never-initialised parameters; raise if any other is non-finite.

    Why: SAM3 leaves a few parameters as raw memory (``UNINITIALISED_SAM3_PARAMETERS``),
    trusting the checkpoint to fill them.  Built without one, they held
    whatever the GPU allocator last stored: sometimes NaN, and then every
    mask logit of the detector was NaN and a text session's prompt frame came
    out empty (seen on H100s: 248832 of 248832 logits not finite, on some
    runs only).  Called under the build's seed, so random weights stay
    reproducible.  Returns the names it set.
    """
    import torch

    done = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1] in names:
                torch.nn.init.trunc_normal_(p, std=std, a=-2 * std, b=2 * std)
                done.append(name)
        bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise BackendError(
            f"randomly built model has non-finite parameters: {', '.join(bad[:5])}",
            field="options.random_weights",
        )
    return done


def make_objects_present(mask_decoder: Any, bias: float = OBJECT_SCORE_BIAS) -> bool:
    """Shift a random mask decoder's object-score logit up so that tracked objects are present.

    SAM2/SAM3 replace the masks of an object whose object-score logit is <= 0
    by "no object" (-1024) and keep it out of the memory selection; a random
    head scores about half of all frames that way (SAM3's tracker: all of
    them), so a random model tracks nothing.  Adding ``bias`` to the head's
    last bias keeps its per-frame variation (the logits still depend on the
    frame and the prompts) but makes every object present.  It is a change of
    weights, so a checkpoint saved from such a model behaves the same.
    """
    import torch

    head: Any = getattr(mask_decoder, "pred_obj_score_head", None)
    last = head.layers[-1] if hasattr(head, "layers") else head
    b = getattr(last, "bias", None)
    if b is None:
        return False
    with torch.no_grad():
        b.add_(bias)
    return True


#: A random SAM3 tracker's mask logits are shifted so that about this share of each mask is on.
RANDOM_MASK_SHARE = 0.25


def localise_random_masks(mask_decoder: Any) -> bool:
    """Turn a random mask decoder's mask logits into solid blobs covering about a quarter of the frame.

    A random SAM3 tracker puts ~98% of the frame in every object's mask, so
    objects overlap completely: SAM3's non-overlap constraint and occlusion
    suppression then hide all but one object, and detection-to-track
    association sees every track everywhere.  Two steps fix that:

    * the logits are smoothed (:func:`smooth_random_logits`): a random
      decoder's logits are close to pixel noise, so their top quarter is
      thousands of specks, and SAM3's post-processing
      (``fill_holes_in_mask_scores`` removes foreground islands of up to 16
      pixels) erases specks, leaving an empty mask after propagation; a
      trained model's masks are a few connected regions, which the smoothed
      logits resemble;
    * each mask's ``mean + 0.674 std`` (the upper quartile of a normal
      distribution) is subtracted, which keeps the spatial pattern, which
      differs per object (prompt tokens, object pointers, memory), and
      leaves about the top quarter on.

    Fixed-shape pooling and element-wise reductions only, so the step still
    replays as a CUDA graph.  It wraps the built decoder (not a weight
    change): apply it again to a model loaded from a checkpoint saved from a
    random one.
    """
    original = getattr(mask_decoder, "forward", None)
    if original is None:
        return False

    def forward(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        # In float32 until the end: under bf16 autocast the smoothed logits (a spread of ~0.02 on an
        # offset of several units) round to a handful of values, the shifted mask is a few blocks or
        # empty, and ties hand every contested pixel to the first object.
        masks = smooth_random_logits(out[0].float())
        flat = masks.flatten(-2)
        shift = flat.mean(-1) + 0.674 * flat.std(-1)
        masks = disjoint_objects(masks - shift[..., None, None])
        return (masks.to(out[0].dtype), *out[1:])

    mask_decoder.forward = forward
    return True


#: Side of the box filter :func:`smooth_random_logits` applies, as a share of the mask's shorter side.
RANDOM_MASK_SMOOTHING = 1 / 8


def smooth_random_logits(masks: Any) -> Any:
    """Mask logits ``(..., H, W)`` box-filtered twice with a side of 1/8 of the shorter side.

    Two box filters approximate a Gaussian with a standard deviation of about
    a tenth of the side, so the upper quartile of the result is a few blobs of
    several hundred pixels each at SAM's 256/288-pixel low resolution, not a
    field of single-pixel specks.  Borders average only the pixels inside the
    frame.  The output has the input's shape and dtype.
    """
    import torch.nn.functional as F

    h, w = int(masks.shape[-2]), int(masks.shape[-1])
    k = max(3, int(min(h, w) * RANDOM_MASK_SMOOTHING) | 1)
    x = masks.float().reshape(-1, 1, h, w)
    for _ in range(2):
        x = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)
    return x.reshape(masks.shape).to(masks.dtype)


def disjoint_objects(masks: Any) -> Any:
    """Mask logits ``(objects, channels, H, W)`` with each pixel positive for at most one object.

    A pixel where several objects' logits are positive stays positive only
    for the object whose logit is highest *relative to its own spread*
    (logit / the mask's standard deviation); the others get the logit's
    negative (same magnitude); of equal scores the first object's wins.  The
    objects a random tracker decodes in one batch share the frame's
    features, so their localised masks overlap heavily; a trained model
    separates distinct objects, and SAM3's association relies on that (a
    detection that overlaps two tracks makes them duplicates, which its
    hot-start rule removes).  Comparing raw logits let an object whose
    logits happen to spread wider win every contested pixel, leaving the
    other one empty on some frames (seen on the H100: one of two clicked
    objects empty on 2 of 22 frames); scaled by their own spread, each object
    wins where it is relatively strongest.  Reductions and element-wise
    steps only, so the step still replays as a CUDA graph; a batch of one
    object is unchanged.
    """
    import torch

    if masks.dim() != 4 or masks.shape[0] < 2:
        return masks
    spread = masks.float().flatten(-2).std(-1).clamp_min(1e-6)[..., None, None]
    winner = (masks.float() / spread).argmax(dim=0, keepdim=True)  # ties go to the first object
    ids = torch.arange(masks.shape[0], device=masks.device).view(-1, 1, 1, 1)
    return torch.where((masks > 0) & (ids != winner), -masks, masks)


def _boxes_of(own: Any) -> tuple[Any, Any, Any, Any]:
    """Normalised ``x0, y0, x1, y1`` of boolean masks ``(..., H, W)`` (an empty mask gives a degenerate box)."""
    import torch

    h, w = own.shape[-2:]
    ys = torch.arange(h, device=own.device, dtype=torch.float32).view(*([1] * (own.dim() - 2)), h, 1)
    xs = torch.arange(w, device=own.device, dtype=torch.float32).view(*([1] * (own.dim() - 2)), 1, w)
    big = float(max(h, w))
    x0 = torch.where(own, xs, big).amin(dim=(-2, -1)) / w
    y0 = torch.where(own, ys, big).amin(dim=(-2, -1)) / h
    x1 = (torch.where(own, xs, -1.0).amax(dim=(-2, -1)) + 1) / w
    y1 = (torch.where(own, ys, -1.0).amax(dim=(-2, -1)) + 1) / h
    return x0, y0, x1, y1


#: Weight of :func:`tie_breakers` in standardised units: far below any real pattern (which spans +-3).
TIE_BREAK = 1e-3


def tie_breakers(queries: int, h: int, w: int, *, device: Any = "cpu") -> Any:
    """Fixed, smooth, standardised fields ``(1, queries, h, w)``, one per query (seeded).

    Added with weight :data:`TIE_BREAK` to the standardised detection logits,
    they decide only where those carry no pattern; as they are fixed, the same
    query owns the same blob on every frame and in every session.
    """
    import torch

    g = torch.Generator().manual_seed(20)
    field = smooth_random_logits(torch.randn(1, queries, h, w, generator=g))
    flat = field.flatten(-2)
    field = (field - flat.mean(-1)[..., None, None]) / flat.std(-1).clamp_min(1e-6)[..., None, None]
    return field.to(device)


def install_random_detections(detector: Any, count: int) -> bool:
    """A random SAM3 detector that reports ``count`` objects for any text prompt, on every frame.

    Random weights score every query far below SAM3's detection threshold, so
    a text prompt finds nothing.  This rewrites the output of the detector's
    per-frame ``forward_grounding`` before SAM3's own NMS, association and
    tracking see it: the first ``count`` queries (fixed query slots, so the
    same "object" on consecutive frames) get the probabilities
    :data:`RANDOM_DETECTION_PROBS` and every other query a probability of
    about 2e-9.  Their masks come from the detector's own mask logits,
    smoothed like the tracker's (:func:`smooth_random_logits`: raw random
    logits are pixel noise, and on the prompt frame SAM3 outputs the
    detection masks as they are, so speckles would be erased by its hole
    filling and the prompt frame left empty) and made disjoint (each pixel
    goes to the chosen query whose standardised logit is highest) so that NMS
    keeps all of them; their boxes are those masks' bounding boxes.  Where the
    random detector's logits carry no pattern (non-finite, which is logged
    as a warning, or constant), a fixed smooth field per query
    (:func:`tie_breakers`) decides, so every chosen query still owns a blob.
    Why: on some H100 runs all three text-frame detections came out empty,
    already before SAM3's hole filling: every logit was NaN, from parameters
    SAM3 never initialises (now seeded by :func:`initialise_unset_parameters`);
    the warning and the tie-breakers stay as a guard, so a pattern-less
    detector is reported and still yields objects.
    """
    import torch

    original = getattr(detector, "forward_grounding", None)
    if original is None or not 0 < count <= len(RANDOM_DETECTION_PROBS):
        return False
    probs = torch.tensor(RANDOM_DETECTION_PROBS[:count])
    chosen_logits = torch.log(probs / (1 - probs))
    fields: dict[tuple, Any] = {}  # tie-breakers per shape and device; freed with the detector

    def forward_grounding(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        logits, masks = out.get("pred_logits"), out.get("pred_masks")
        if logits is None or masks is None or masks.dim() != 4 or logits.shape[1] < count:
            return out
        n = count
        logits = torch.full_like(logits, -20.0)
        logits[:, :n, 0] = chosen_logits.to(logits.device, logits.dtype)
        raw = masks[:, :n].float()  # float32 first: see localise_random_masks
        bad = int((~torch.isfinite(raw)).sum())  # a host sync, random weights only: worth seeing (below)
        if bad:
            log.warning("random-weight SAM3 detector: %d of %d mask logits are not finite", bad, raw.numel())
        chosen = smooth_random_logits(torch.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0))
        flat = chosen.flatten(-2)
        z = (chosen - flat.mean(-1)[..., None, None]) / flat.std(-1).clamp_min(1e-6)[..., None, None]
        key = (*z.shape[1:], str(z.device))
        if key not in fields:
            fields[key] = tie_breakers(*z.shape[1:], device=z.device)
        z = z + TIE_BREAK * fields[key]
        owner = z.argmax(dim=1, keepdim=True)
        own = owner == torch.arange(n, device=masks.device).view(1, n, 1, 1)
        magnitude = (z.abs() + 1.0).to(masks.dtype)
        masks = masks.clone()
        masks[:, :n] = torch.where(own, magnitude, -magnitude)
        x0, y0, x1, y1 = _boxes_of(own)
        xyxy = torch.stack([x0, y0, x1, y1], dim=-1).clamp(0, 1)
        out = dict(out)
        out["pred_logits"], out["pred_masks"] = logits, masks
        if "pred_boxes_xyxy" in out:
            boxes = out["pred_boxes_xyxy"].clone()
            boxes[:, :n] = xyxy.to(boxes.dtype)
            out["pred_boxes_xyxy"] = boxes
        if "pred_boxes" in out:
            cxcywh = torch.stack(
                [(x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0).clamp(min=0), (y1 - y0).clamp(min=0)], dim=-1
            )
            boxes = out["pred_boxes"].clone()
            boxes[:, :n] = cxcywh.to(boxes.dtype)
            out["pred_boxes"] = boxes
        return out

    detector.forward_grounding = forward_grounding
    return True


def match_random_detections_to_tracks(model: Any) -> bool:
    """Make a random SAM3's detections on a frame with tracked objects be those objects (random weights only).

    :func:`install_random_detections` makes the detector report the same
    query slots on every frame, but a random detector's masks and a random
    tracker's masks of the "same" object are unrelated, so SAM3's association
    (a track is matched by a detection with mask IoU >= ``trk_assoc_iou_thresh``
    0.5; a detection scoring >= ``new_det_thresh`` 0.7 that overlaps no track
    with IoU >= ``assoc_iou_thresh`` 0.1 starts a new object) would start new
    objects on every frame and, within its hot-start window, remove the
    tracked ones as unmatched.  A trained detector keeps finding the objects
    being tracked; this makes the random one do so, at the boundary where
    both outputs exist: SAM3's ``run_tracker_update_planning_phase``.  When
    the tracker has ``M > 0`` objects on a frame, detection ``i < M`` takes
    track ``i``'s mask logits (and their box), so it matches that track and
    no other (:func:`disjoint_objects` keeps tracks apart); a detection with
    no track (its mask made empty), or whose track is empty on that frame,
    gets a score between SAM3's detection threshold and its new-object
    threshold, so it starts nothing and marks no track a duplicate.  On the prompt frame (no tracks yet) the
    detections are left as the detector gave them and become the objects.
    SAM3's own association, hot-start rules and reconditioning then run
    unchanged on these outputs, as they would with a trained model.
    """
    import torch
    import torch.nn.functional as F

    original = getattr(model, "run_tracker_update_planning_phase", None)
    if original is None or not hasattr(model, "new_det_thresh"):
        return False
    low = (float(getattr(model, "score_threshold_detection", 0.5)) + float(model.new_det_thresh)) / 2

    def planning(*args: Any, **kwargs: Any) -> Any:
        det, trk = kwargs.get("det_out"), kwargs.get("tracker_low_res_masks_global")
        if not isinstance(det, dict) or trk is None or trk.dim() != 3 or trk.shape[0] == 0:
            return original(*args, **kwargs)
        masks, scores = det.get("mask"), det.get("scores")
        if masks is None or scores is None or masks.dim() != 3 or masks.shape[0] == 0:
            return original(*args, **kwargs)
        n = min(masks.shape[0], trk.shape[0])
        src = trk[:n].float()
        if src.shape[-2:] != masks.shape[-2:]:
            src = F.interpolate(src.unsqueeze(1), size=masks.shape[-2:], mode="bilinear", align_corners=False)
            src = src.squeeze(1)
        new_masks = masks.clone()
        new_masks[:n] = src.to(masks.dtype)
        new_masks[n:] = -masks[n:].abs() - 1  # a detection without a track overlaps nothing
        own = src > 0
        has_track = torch.zeros(masks.shape[0], dtype=torch.bool, device=scores.device)
        has_track[:n] = own.flatten(1).any(dim=1).to(scores.device)
        det = dict(det)
        det["mask"] = new_masks
        det["scores"] = torch.where(has_track, scores, torch.full_like(scores, low))
        bbox = det.get("bbox")
        if bbox is not None and bbox.dim() == 2 and bbox.shape[0] == masks.shape[0]:
            bbox = bbox.clone()
            bbox[:n] = torch.stack(_boxes_of(own), dim=-1).clamp(0, 1).to(bbox.device, bbox.dtype)
            det["bbox"] = bbox
        kwargs["det_out"] = det
        return original(*args, **kwargs)

    model.run_tracker_update_planning_phase = planning
    return True

"""What the ``sam2`` and ``sam3`` backends share: weights options, the shared caches, reports, closing,
and how clicks, boxes and masks given for one object on one frame combine.

Both backends own a model, a :class:`~masktrack.segment.features.FeatureCache`
with a :class:`~masktrack.segment.features.FrameStore` on it, and (on a GPU)
a :class:`~masktrack.segment.cuda_graphs.StepGraphs`; their fingerprints,
cache reports and ``close`` differ only in the model-specific entries.  The
prompt rules are the same for both trackers (SAM2's API): per object and
frame at most one box, clicks accumulate, and a box cannot be combined with a
mask prompt (the mask replaces the frame's prompt state).
"""

from __future__ import annotations

import contextlib
import gc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from masktrack.errors import BackendError
from masktrack.segment.base import Backend, FramePrompt, Session
from masktrack.segment.cuda_graphs import StepGraphs, fingerprint_entry, session_scope, stats_entry
from masktrack.segment.features import FeatureCache, FrameStore, weights_id
from masktrack.segment.sam_compat import OBJECT_SCORE_BIAS, library_version


def checked_weights(library: str, checkpoint: str | None, random_weights: bool, hint: str) -> Path | None:
    """The checkpoint path from ``checkpoint`` / ``random_weights`` (exactly one of them), checked to exist."""
    if checkpoint is None and not random_weights:
        raise BackendError(
            f"{library} needs a checkpoint (options.checkpoint: path to {hint}); "
            "set random_weights: true only for tests",
            field="options.checkpoint",
        )
    if checkpoint is not None and random_weights:
        raise BackendError(
            "give either checkpoint or random_weights: true, not both", field="options.checkpoint"
        )
    if checkpoint is None:
        return None
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise BackendError(f"{library} checkpoint not found", path=path, field="options.checkpoint")
    return path


class SamBackend(Backend):
    """A SAM model and the frame/feature cache (and CUDA graphs) its sessions share.

    Subclasses set ``library`` and fill ``checkpoint``, ``seed``, ``device``,
    ``cache``, ``frames`` and ``graphs`` in their constructor, and say what
    else identifies their model in :meth:`model_fingerprint`.
    """

    library: ClassVar[str]
    checkpoint: Path | None
    seed: int
    device: Any
    cache: FeatureCache
    frames: FrameStore
    graphs: StepGraphs | None
    _weights_hash: str | None = None

    def weights(self) -> str:
        if self._weights_hash is None:
            self._weights_hash = weights_id(
                None if self.checkpoint is None else str(self.checkpoint), self.seed
            )
        return self._weights_hash

    def model_fingerprint(self) -> dict:
        """Entries after the library version (weights, sizes, numerics) that change the masks."""
        raise NotImplementedError

    def random_objects(self) -> dict:
        """How a random-weight model was made to see objects (part of the fingerprint: it changes the masks)."""
        return {"object_score_bias": OBJECT_SCORE_BIAS}

    def fingerprint(self) -> dict:
        fp = {"backend": self.name, self.library: library_version(self.library), **self.model_fingerprint()}
        if self.checkpoint is None:
            fp["random_objects"] = self.random_objects()
        return {**fp, **fingerprint_entry(self.graphs)}

    def cache_stats(self) -> dict:
        return {**self.cache.report(), **stats_entry(self.graphs)}

    def graph_scope(self, counts: Counter) -> contextlib.AbstractContextManager:
        """Tracker steps run under ``counts`` (one session's): graphs replace them once a shape repeats."""
        return session_scope(self.graphs, counts)

    def release_model(self) -> None:
        """Drop the model and whatever else the subclass holds (called by :meth:`close`)."""

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        import torch

        if self.graphs is not None:
            self.graphs.clear()
        self.frames.close()
        self.cache.clear()
        self.release_model()
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------- prompts


@dataclass
class ObjectFramePrompt:
    """Everything given for one object on one frame so far (SAM2's prompt state for that frame)."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    box: np.ndarray | None = None
    has_mask: bool = False


class PromptMerger:
    """Combines a session's clicks, boxes and masks per (object id, frame) by the rules above."""

    def __init__(self, library: str) -> None:
        self.library = library
        self.by_key: dict[tuple[int, int], ObjectFramePrompt] = {}

    def add(self, oid: int, prompt: FramePrompt) -> tuple[ObjectFramePrompt, np.ndarray, np.ndarray]:
        """Merge ``prompt`` into its (object, frame) state; returns (state, new points, new labels)."""
        key = (oid, int(prompt.frame))
        acc = self.by_key.setdefault(key, ObjectFramePrompt())
        points = np.asarray(prompt.points, np.float32).reshape(-1, 2)
        labels = np.asarray(prompt.labels, np.int32).reshape(-1)
        boxes = np.asarray(prompt.boxes, np.float32).reshape(-1, 4)
        if len(boxes) > 1 or (len(boxes) and acc.box is not None):
            raise BackendError(
                f"{self.library} takes one box per object and frame; {prompt.object!r} has more on frame {prompt.frame}",
                field="boxes",
            )
        has_mask = acc.has_mask or prompt.mask is not None
        box = boxes[0] if len(boxes) else acc.box
        if has_mask and box is not None:
            raise BackendError(
                f"{self.library} cannot combine a box and a mask for {prompt.object!r} on frame {prompt.frame}",
                field="boxes",
            )
        acc.points = np.concatenate([acc.points, points])
        acc.labels = np.concatenate([acc.labels, labels])
        acc.box = box
        acc.has_mask = has_mask
        return acc, points, labels


def check_mask_shape(prompt: FramePrompt, height: int, width: int) -> np.ndarray:
    mask = np.asarray(prompt.mask, bool)
    if mask.shape != (height, width):
        raise BackendError(
            f"mask of {prompt.object!r} on frame {prompt.frame} has shape {mask.shape}, video is {height}x{width}",
            field="mask",
        )
    return mask


# --------------------------------------------------------------------------- float outputs


class FloatRecord:
    """A session's float outputs before thresholding, kept only when a test or benchmark asks.

    ``logits[frame][object]``: the video-resolution mask logits (float32);
    ``scores[frame][object]``: the object-score logit (points sessions) or the
    detection probability (text sessions).  Equivalence checks compare these
    with a tolerance as well as the binary masks.
    """

    def __init__(self) -> None:
        self.logits: dict[int, dict[str, np.ndarray]] = {}
        self.scores: dict[int, dict[str, float]] = {}
        #: text sessions: what SAM3 output per frame, (backend id, probability, pixels), before mapping
        self.seen: dict[int, list[tuple[int, float, int]]] = {}

    def add(self, frame: int, name: str, logits: Any = None, score: Any = None) -> None:
        if logits is not None:
            self.logits.setdefault(int(frame), {})[name] = np.asarray(logits, np.float32)
        if score is not None:
            self.scores.setdefault(int(frame), {})[name] = float(score)


class RecordingSession(Session):
    """A session that can keep its float outputs (:class:`FloatRecord`)."""

    floats: FloatRecord | None = None

    def record_floats(self) -> FloatRecord:
        """Start keeping this session's float outputs (costs a device-to-host copy per frame)."""
        if self.floats is None:
            self.floats = FloatRecord()
        return self.floats

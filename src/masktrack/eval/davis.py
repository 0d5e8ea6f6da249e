"""DAVIS video-object-segmentation measures: region similarity J and boundary accuracy F.

Follows the reference DAVIS evaluation code (davis2017-evaluation), so numbers
are comparable with published ones:

- J is the intersection over union; two empty masks score 1.
- F is the boundary F-measure: boundaries are one-pixel maps in the DAVIS
  ``seg2bmap`` convention, and a boundary pixel matches if the other boundary
  lies within ``ceil(0.008 * image diagonal)`` pixels (dilation with a disk).
- Per sequence: mean, recall (fraction of frames scoring > 0.5) and decay
  (mean of the first quarter of frames minus mean of the last quarter, with the
  reference code's bin edges).

The semi-supervised DAVIS protocol leaves out the first frame (it is the
prompt) and the last frame; :func:`evaluate_sequence` does that with
``skip_first_last=True``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

BOUND_TH = 0.008
"""DAVIS boundary tolerance, as a fraction of the image diagonal."""


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J: |pred & gt| / |pred | gt|; 1.0 when both are empty."""
    pred, gt = _pair(pred, gt)
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(pred & gt) / union)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel boundary map of a mask, as DAVIS's ``seg2bmap`` draws it.

    A pixel is on the boundary if it differs from its east, south or
    south-east neighbour (last row/column compare only along the edge), so the
    boundary lies on the object's side where the object is to the left/top and
    on the background's side otherwise - the convention the published F
    numbers were computed with.
    """
    seg = np.asarray(seg, bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def bound_pixels(shape: tuple[int, ...], bound_th: float = BOUND_TH) -> int:
    """Matching tolerance in pixels: ``bound_th`` itself if >= 1, else ceil(bound_th * diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm(shape[:2])))


@lru_cache(maxsize=8)
def _disk(radius: int) -> np.ndarray:
    """skimage.morphology.disk(radius) as uint8 (a pixel is in when x² + y² <= r²)."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def f_measure(pred: np.ndarray, gt: np.ndarray, *, bound_th: float = BOUND_TH) -> float:
    """Boundary accuracy F: harmonic mean of boundary precision and recall within the DAVIS tolerance.

    Conventions of the reference code: both boundaries empty -> 1; exactly one
    empty -> 0.
    """
    import cv2

    pred, gt = _pair(pred, gt)
    fg_b = seg2bmap(pred)
    gt_b = seg2bmap(gt)
    n_fg = int(np.count_nonzero(fg_b))
    n_gt = int(np.count_nonzero(gt_b))
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0
    se = _disk(bound_pixels(pred.shape, bound_th))
    fg_dil = cv2.dilate(fg_b.view(np.uint8), se).astype(bool)
    gt_dil = cv2.dilate(gt_b.view(np.uint8), se).astype(bool)
    precision = np.count_nonzero(fg_b & gt_dil) / n_fg
    recall = np.count_nonzero(gt_b & fg_dil) / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def mean_recall_decay(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall = fraction > 0.5, decay) of per-frame scores, as the DAVIS reference computes them."""
    v = np.asarray(values, float)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(np.nanmean(v))
    recall = float(np.nanmean(v > 0.5))
    # Four bins over the frames with the reference code's edges (1-based linspace, rounded).
    ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(int)
    bins = [v[ids[i] : ids[i + 1] + 1] for i in range(4)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


@dataclass
class SequenceScores:
    """J and F of one sequence: per evaluated frame, and the DAVIS statistics over them."""

    frames: list[int]
    j: list[float]
    f: list[float]
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float
    jf_mean: float
    name: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_sequence(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    skip_first_last: bool = False,
    name: str = "",
    bound_th: float = BOUND_TH,
) -> SequenceScores:
    """J and F per frame of bool [T, H, W] masks, plus mean/recall/decay.

    ``skip_first_last`` applies the semi-supervised DAVIS protocol (the first
    frame is the prompt, so scoring it would flatter the method).
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be [T, H, W] of one shape")
    t = gt.shape[0]
    frames = list(range(1, t - 1)) if skip_first_last and t > 2 else list(range(t))
    j = [jaccard(pred[i], gt[i]) for i in frames]
    f = [f_measure(pred[i], gt[i], bound_th=bound_th) for i in frames]
    jm, jr, jd = mean_recall_decay(np.array(j))
    fm, fr, fd = mean_recall_decay(np.array(f))
    return SequenceScores(
        frames=frames,
        j=j,
        f=f,
        j_mean=jm,
        j_recall=jr,
        j_decay=jd,
        f_mean=fm,
        f_recall=fr,
        f_decay=fd,
        jf_mean=(jm + fm) / 2,
        name=name,
    )


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be [H, W] of one shape")
    return pred, gt

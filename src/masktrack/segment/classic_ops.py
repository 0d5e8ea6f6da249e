"""Pure image operations of the ``classic`` backend (no session state).

Everything here works at the backend's *working resolution* on BGR ``uint8``
images and bool masks, so the session can share frames and flow between
objects.  Segmentation is OpenCV's GrabCut (colour GMMs + graph cut): on a
keyframe it is seeded by the prompts, on other frames by the flow-warped mask
of the previous frame, re-estimated only in a band around the warped boundary
so that errors are corrected frame by frame instead of accumulating.  A
persistent, keyframe-anchored colour model of each object (smoothed
histograms) gives back the thin parts GrabCut's smoothness would shave off
and re-detects objects whose mask collapses behind an occluder.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

FLOW_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) with the longer side capped at ``max_side`` (0 = keep the size)."""
    if max_side <= 0 or max(height, width) <= max_side:
        return height, width
    s = max_side / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


@lru_cache(maxsize=64)
def disk(radius: int) -> np.ndarray:
    r = max(0, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask to (h, w) through a float image, so thin parts and edges stay smooth.

    Bilinear weights are non-negative, so masks that are disjoint before
    stay disjoint after (two values > 0.5 cannot sum to <= 1).
    """
    h, w = size
    if mask.shape == (h, w):
        return mask.astype(bool, copy=True)
    shrink = h < mask.shape[0]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(mask.astype(np.float32), (w, h), interpolation=interp) > 0.5


def dense_flow(dis: cv2.DISOpticalFlow, gray_to: np.ndarray, gray_from: np.ndarray) -> np.ndarray:
    """Flow f such that pixel x of ``gray_to`` came from x + f(x) in ``gray_from`` (float32 [H, W, 2])."""
    return dis.calc(gray_to, gray_from, None)


def warp_mask(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Pull a mask of the previous frame into the current one: soft float32 [H, W] in [0, 1]."""
    h, w = mask.shape
    gx, gy = _grid(h, w)
    return cv2.remap(
        mask.astype(np.float32),
        gx + flow[..., 0],
        gy + flow[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def flow_error(flow: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Forward-backward inconsistency in pixels: |f(x) + b(x + f(x))|, large where a pixel is occluded or flow fails.

    ``flow`` maps the current frame into the previous one, ``back`` the previous into the current.
    """
    h, w = flow.shape[:2]
    gx, gy = _grid(h, w)
    b = cv2.remap(
        back, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.sqrt(((flow + b) ** 2).sum(axis=2))


@lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx, gy


def grabcut(image: np.ndarray, labels: np.ndarray, iterations: int) -> np.ndarray | None:
    """GrabCut from a GC_* label map; the foreground as bool, or None when it cannot run.

    GrabCut needs both foreground and background samples; a degenerate label
    map (or an OpenCV failure on it) returns None so callers fall back to
    their prior instead of crashing mid-video.
    """
    fg = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if iterations <= 0 or not fg.any() or fg.all():
        return None
    lab = np.ascontiguousarray(labels, dtype=np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut seeds its GMMs with k-means on OpenCV's (thread-global) RNG: fix it per call so a
    # session's masks never depend on what ran before it in the process (session isolation).
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(np.ascontiguousarray(image), lab, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    return (lab == cv2.GC_FGD) | (lab == cv2.GC_PR_FGD)


def keep_components(mask: np.ndarray, anchor: np.ndarray, min_fraction: float = 0.1) -> np.ndarray:
    """Connected components of ``mask`` that overlap ``anchor`` (at least ``min_fraction`` of the best one's overlap).

    Removes blobs a colour model grabbed far from where the object was.
    """
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask.astype(bool)
    overlap = np.bincount(lab[anchor], minlength=n)
    overlap[0] = 0
    if overlap.max() == 0:
        return np.zeros_like(mask, bool)
    keep = overlap >= max(1, min_fraction * overlap.max())
    keep[0] = False
    return keep[lab]


# -- keyframes -----------------------------------------------------------


@dataclass(frozen=True)
class KeyPrompt:
    """One object's prompts on one frame, in working-resolution pixels."""

    points: np.ndarray  # float [N, 2] (x, y)
    labels: np.ndarray  # int [N]
    boxes: np.ndarray  # float [M, 4]
    mask: np.ndarray | None  # bool [h, w]
    motion: np.ndarray | None = None  # float [h, w]: residual motion (px), see motion_residual


def segment_keyframe(image: np.ndarray, prompt: KeyPrompt, *, iterations: int = 5) -> np.ndarray:
    """The object's mask on a prompted frame.

    - a mask alone is taken as given;
    - a mask with clicks: GrabCut near the mask's boundary, clicks as hard seeds;
    - boxes: classic GrabCut (outside every box is background), clicks as seeds;
    - clicks only: the positive clicks' convex hull (grown a little) is probably
      foreground; far outside the clicks' spread (Mahalanobis distance > 3 with
      a floor of 5% of the diagonal) is background - a spatial prior that stops
      GrabCut from leaking into same-coloured regions across the image.  The
      grown hull is cut to the clicks' *geodesic* neighbourhood (image edges
      are expensive to cross, :func:`edge_cost`): a click near a contact
      boundary (a gripper touching a box) must not put the touched object into
      the prior, or GrabCut learns its colours as the object's and keeps it.
      Each click's near geodesic neighbourhood is a hard seed of its label.
      With ``prompt.motion`` (:func:`motion_residual`) and a clicked object
      that moves, what moves like the background is background
      (:func:`still_background`); so inside a box (the object's level: its
      positive clicks, else the box's central half; without clicks only
      "probable" background).
    Components not touching a positive click (or the box/mask) are dropped.
    """
    h, w = image.shape[:2]
    diag = float(np.hypot(h, w))
    pts = np.asarray(prompt.points, np.float32).reshape(-1, 2)
    labs = np.asarray(prompt.labels).reshape(-1)
    pos = pts[labs == 1]
    has_box = len(prompt.boxes) > 0
    if prompt.mask is not None and len(pts) == 0:
        return prompt.mask.astype(bool, copy=True)
    if prompt.mask is None and not has_box and len(pos) == 0:
        return np.zeros((h, w), bool)  # negative clicks alone select nothing

    lab = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    anchor = np.zeros((h, w), bool)
    if prompt.mask is not None:
        m = prompt.mask.astype(np.uint8)
        band = max(2, int(0.02 * diag))
        lab[:] = cv2.GC_BGD
        lab[cv2.dilate(m, disk(band)) > 0] = cv2.GC_PR_BGD
        lab[m > 0] = cv2.GC_PR_FGD
        lab[cv2.erode(m, disk(band)) > 0] = cv2.GC_FGD
        anchor |= m > 0
    elif has_box:
        lab[:] = cv2.GC_BGD
        for x0, y0, x1, y1 in np.asarray(prompt.boxes, np.float32).reshape(-1, 4):
            xa, ya = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
            xb, yb = min(w, int(np.ceil(x1)) + 1), min(h, int(np.ceil(y1)) + 1)
            lab[ya:yb, xa:xb] = cv2.GC_PR_FGD
            anchor[ya:yb, xa:xb] = True
        if prompt.motion is not None:
            still_background(
                lab, prompt.motion, _box_level(prompt.motion, prompt.boxes, pos), _far_from(pos, h, w, diag)
            )
    else:
        lab[_outside_click_spread(pos, h, w, diag)] = cv2.GC_BGD
        grow = max(2, int(0.03 * diag))
        prior = np.zeros((h, w), np.uint8)
        if len(pos) >= 3:
            cv2.fillConvexPoly(prior, cv2.convexHull(np.rint(pos).astype(np.int32)), 1)
        for x, y in pos:
            cv2.circle(prior, (int(round(x)), int(round(y))), grow, 1, -1)
        cost = edge_cost(image)
        d_pos = geodesic_distance(cost, pos)
        d_neg = geodesic_distance(cost, pts[labs == 0]) if (labs == 0).any() else np.full((h, w), np.inf)
        lab[(prior > 0) & (d_pos < 1.5 * grow) & (lab != cv2.GC_BGD)] = cv2.GC_PR_FGD
        # A click owns its near geodesic neighbourhood outright (the interactive protocol clicks in the
        # middle of an error region: the whole neighbourhood, not one pixel, is what the click says).
        near = HARD_REACH * diag
        lab[(d_pos < near) & (d_pos < HARD_RATIO * d_neg)] = cv2.GC_FGD
        lab[(d_neg < near) & (d_neg < HARD_RATIO * d_pos)] = cv2.GC_BGD
        if prompt.motion is not None:
            still_background(lab, prompt.motion, _level_at(prompt.motion, pos), d_pos >= near)

    # Clicks are hard seeds, kept small: a click near the boundary must not claim the other side.
    seed = max(1, int(round(0.004 * diag)))
    for (x, y), lb in zip(pts, labs):
        c = (int(round(x)), int(round(y)))
        cv2.circle(lab, c, seed, int(cv2.GC_FGD if lb == 1 else cv2.GC_BGD), -1)
        if lb == 1:
            cv2.circle(anchor.view(np.uint8), c, seed, 1, -1)

    out = grabcut(image, lab, iterations)
    if out is None:
        out = (lab == cv2.GC_FGD) | (lab == cv2.GC_PR_FGD)
    return keep_components(out, anchor, min_fraction=0.0)


EDGE_WEIGHT = 1.0
"""Geodesic cost of crossing an image edge: 1 + EDGE_WEIGHT * |grad Lab| / mean |grad Lab| per pixel step."""


def edge_cost(image: np.ndarray, weight: float = EDGE_WEIGHT) -> np.ndarray:
    """Per-pixel cost of a geodesic step: 1 in flat regions, higher on colour edges (float64 [h, w])."""
    lab = cv2.cvtColor(cv2.GaussianBlur(image, (3, 3), 0), cv2.COLOR_BGR2Lab).astype(np.float32)
    gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3)
    g = np.sqrt((gx * gx + gy * gy).sum(axis=2))
    return (1.0 + weight * g / max(1e-3, float(g.mean()))).astype(np.float64)


def geodesic_distance(cost: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Minimum accumulated ``cost`` from the nearest of ``points`` (x, y) to every pixel (float64 [h, w])."""
    from skimage.graph import MCP_Geometric

    h, w = cost.shape
    starts = [
        (int(np.clip(round(float(y)), 0, h - 1)), int(np.clip(round(float(x)), 0, w - 1))) for x, y in points
    ]
    dist, _ = MCP_Geometric(cost).find_costs(starts)
    return np.asarray(dist)


HARD_REACH, HARD_RATIO = 0.03, 0.3
"""Clicks-only keyframes: a pixel within geodesic distance HARD_REACH x diagonal of a click, and more than
1 / HARD_RATIO times closer to it than to any click of the other label, is a hard seed of the click's label."""


MOTION_GATE = (2.0, 0.5)
"""A prompted object counts as moving when its residual motion (at its positive clicks, in its box's
centre, or over what is left of its mask) exceeds ``MOTION_GATE[0]`` x the background's plus
``MOTION_GATE[1]`` px."""
MOTION_STILL = 3.0
"""Moving like the background: a residual under sqrt(object level x background level) / MOTION_STILL."""


def motion_residual(gray: np.ndarray, other: np.ndarray, dis: cv2.DISOpticalFlow) -> np.ndarray | None:
    """How far each pixel of ``gray`` moves unlike the frame's dominant motion towards ``other`` (px, float32 [h, w])."""
    return flow_residual(dense_flow(dis, gray, other))


def flow_residual(flow: np.ndarray) -> np.ndarray | None:
    """How far each pixel's flow is from the frame's dominant motion, in pixels (float32 [h, w]).

    The dominant motion is a homography fitted with RANSAC (1 px) to the
    flow sampled every 8 px: the camera's motion over the background wherever
    the background fills most of the frame.  Smoothed a little (sigma 2 px)
    so that flow noise is not motion.  None where no homography fits.
    """
    h, w = flow.shape[:2]
    gx, gy = _grid(h, w)
    src = np.stack([gx[::8, ::8].ravel(), gy[::8, ::8].ravel()], 1).astype(np.float32)
    dst = src + flow[::8, ::8].reshape(-1, 2)
    hom, _ = cv2.findHomography(src, dst, cv2.RANSAC, 1.0)
    if hom is None:
        return None
    bx, by = homography_map(hom, gx, gy)
    res = np.hypot(gx + flow[..., 0] - bx, gy + flow[..., 1] - by)
    return cv2.GaussianBlur(res.astype(np.float32), (0, 0), 2)


def homography_map(hom: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a 3x3 homography takes pixel coordinates ``xs``, ``ys`` (arrays of any one shape)."""
    den = hom[2, 0] * xs + hom[2, 1] * ys + hom[2, 2]
    den = np.where(np.abs(den) < 1e-6, 1e-6, den)
    return (hom[0, 0] * xs + hom[0, 1] * ys + hom[0, 2]) / den, (
        hom[1, 0] * xs + hom[1, 1] * ys + hom[1, 2]
    ) / den


def still_background(lab: np.ndarray, residual: np.ndarray, object_level: float, far: np.ndarray) -> bool:
    """Where the object moves, label what moves like the background as background (GrabCut labels, in place).

    Why: GrabCut guesses an object's extent from colour, and takes in
    neighbours of the object's colours (the red kerb behind a red car, the
    road under a soapbox, red stands behind a car it re-detects); in a video
    those neighbours stand still while the object moves.  ``object_level``
    is the object's residual motion (:func:`flow_residual`; the median at its
    clicks, or over what is left of its mask), the background's the median
    where ``lab`` is already background; only when the object clearly moves
    (:data:`MOTION_GATE`) do still pixels become probable background, and
    definite background in ``far`` (away from the clicks' own neighbourhoods,
    or from the object's remaining mask).  A static object, or a still camera
    on a still object, leaves ``lab`` as it was.  Returns whether it changed anything.
    """
    bg = lab == cv2.GC_BGD
    r_bg = float(np.median(residual[bg] if bg.any() else residual))
    if not object_level > MOTION_GATE[0] * r_bg + MOTION_GATE[1]:
        return False
    still = residual < np.sqrt(object_level * max(r_bg, 0.25)) / MOTION_STILL
    lab[still & (lab == cv2.GC_PR_FGD)] = cv2.GC_PR_BGD
    lab[still & far & (lab != cv2.GC_FGD)] = cv2.GC_BGD
    return True


def _box_level(residual: np.ndarray, boxes: np.ndarray, pos: np.ndarray) -> float:
    """A boxed object's residual motion: at its positive clicks, else the median over the boxes' central halves."""
    if len(pos):
        return _level_at(residual, pos)
    h, w = residual.shape
    vals = []
    for x0, y0, x1, y1 in np.asarray(boxes, np.float32).reshape(-1, 4):
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 4, (y1 - y0) / 4
        ya, yb = int(np.clip(cy - hh, 0, h - 1)), int(np.clip(np.ceil(cy + hh), 1, h))
        xa, xb = int(np.clip(cx - hw, 0, w - 1)), int(np.clip(np.ceil(cx + hw), 1, w))
        vals.append(residual[ya : max(yb, ya + 1), xa : max(xb, xa + 1)].ravel())
    return float(np.median(np.concatenate(vals))) if vals else float("nan")


def _far_from(pos: np.ndarray, h: int, w: int, diag: float) -> np.ndarray:
    """Pixels further than HARD_REACH x diagonal from every positive click (none without clicks: nothing hard)."""
    far = np.zeros((h, w), np.uint8)
    if len(pos):
        far[:] = 1
        for x, y in pos:
            cv2.circle(far, (int(round(x)), int(round(y))), int(HARD_REACH * diag), 0, -1)
    return far > 0


def _level_at(residual: np.ndarray, pos: np.ndarray) -> float:
    """Median residual at click positions (x, y); NaN without clicks."""
    if not len(pos):
        return float("nan")
    h, w = residual.shape
    xy = np.clip(np.rint(pos).astype(int), 0, [w - 1, h - 1])
    return float(np.median(residual[xy[:, 1], xy[:, 0]]))


def _outside_click_spread(pos: np.ndarray, h: int, w: int, diag: float, k: float = 3.0) -> np.ndarray:
    """Pixels further than ``k`` standard deviations from the positive clicks' spread."""
    c = pos.mean(axis=0)
    cov = np.cov(pos.T) if len(pos) > 1 else np.zeros((2, 2))
    cov = np.atleast_2d(cov) + np.eye(2) * (0.05 * diag) ** 2
    inv = np.linalg.inv(cov)
    gx, gy = _grid(h, w)
    dx, dy = gx - c[0], gy - c[1]
    md = inv[0, 0] * dx * dx + 2 * inv[0, 1] * dx * dy + inv[1, 1] * dy * dy
    return md > k * k


# -- propagation ---------------------------------------------------------

BINS = 16
"""Colour-histogram bins per BGR channel (16^3 = 4096 colours)."""


def colour_index(image: np.ndarray) -> np.ndarray:
    """Quantised colour of every pixel as an int32 bin index of a 16x16x16 BGR histogram."""
    q = (image >> 4).astype(np.int32)
    return (q[..., 0] << 8) | (q[..., 1] << 4) | q[..., 2]


def colour_histogram(index: np.ndarray, where: np.ndarray) -> np.ndarray | None:
    """Smoothed colour distribution of the pixels ``where`` is True (float32 [4096], sums to 1), or None if too few.

    Blurring across neighbouring bins makes a few thousand samples enough for
    4096 bins: an unseen shade next to seen ones is not treated as impossible.
    """
    from scipy.ndimage import gaussian_filter

    if int(np.count_nonzero(where)) < 16:
        return None
    h = np.bincount(index[where], minlength=BINS**3).astype(np.float32).reshape(BINS, BINS, BINS)
    h = gaussian_filter(h, 0.8, mode="nearest").ravel()
    h += 1e-3 * h.sum() / h.size  # a floor: no colour is impossible
    return h / h.sum()


@dataclass
class Appearance:
    """One object's colour models: the keyframe's foreground (the anchor against drift) and running estimates."""

    key_fg: np.ndarray
    fg: np.ndarray
    bg: np.ndarray | None = None

    @classmethod
    def from_mask(cls, index: np.ndarray, mask: np.ndarray) -> Appearance | None:
        fg = colour_histogram(index, mask)
        return None if fg is None else cls(key_fg=fg, fg=fg)

    def log_odds(self) -> np.ndarray | None:
        """Per colour bin: log p(colour | object) - log p(colour | surroundings), clipped to [-4, 4]."""
        if self.bg is None:
            return None
        return np.clip(np.log(self.fg) - np.log(self.bg), -4.0, 4.0).astype(np.float32)


def update_appearance(
    appearance: Appearance | None, index: np.ndarray, mask: np.ndarray, *, rate: float = 0.5
) -> None:
    """Blend the colours of the mask's interior into the object's model, half of it always the keyframe's."""
    if appearance is None or not mask.any():
        return
    fg = colour_histogram(index, cv2.erode(mask.astype(np.uint8), disk(1)) > 0)
    if fg is not None:
        appearance.fg = 0.5 * appearance.key_fg + 0.5 * ((1 - rate) * appearance.fg + rate * fg)


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Distance to the mask's boundary in pixels, positive inside, negative outside (float32)."""
    m = mask.astype(np.uint8)
    return cv2.distanceTransform(m, cv2.DIST_L2, 3) - cv2.distanceTransform(1 - m, cv2.DIST_L2, 3)


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def colour_trust(llr: np.ndarray, sd: np.ndarray, radius: float, band: float = 6.0) -> np.ndarray:
    """Where colour can be believed: the local rate at which it agrees with the warped mask near its boundary.

    A global colour model is often right on one side of an object and
    ambiguous on another (a dark swan over dark water).  Around every pixel,
    the warped mask's boundary pixels vote +1 where the colour log-odds has
    the warped mask's sign and -1 where not; the mean vote (floored at 0,
    shrunk towards the global vote where there are few voters) scales the
    colour term, so in ambiguous places location decides.
    """
    near = np.abs(sd) < band
    vote = np.where(near, np.sign(llr) * np.sign(sd + 0.5), 0.0).astype(np.float32)
    r = int(np.clip(0.2 * radius, 4, 24))
    num, den = box_mean(vote, r), box_mean(near.astype(np.float32), r)
    g, k = float(vote.sum() / max(1, int(near.sum()))), 0.05
    return np.clip((num + k * g) / (den + k), 0.0, 1.0)


def refine_mask(
    image: np.ndarray,
    index: np.ndarray,
    warped: np.ndarray,
    appearance: Appearance | None,
    *,
    flow_error: np.ndarray | None = None,
    band_fraction: float = 0.1,
    iterations: int = 2,
    sigma: float = 2.0,
    colour_weight: float = 1.0,
    rescue: float = 1.0,
    refine: bool = True,
) -> np.ndarray:
    """Re-segment a frame around the flow-warped mask of the previous frame.

    1. GrabCut in a band around the warped boundary (deep inside: definite
       foreground; far outside: definite background; colour models learnt on
       this frame), inside a box around the band so the cost follows the
       object.  It snaps the mask to edges, but its smoothness term cuts thin
       parts (legs, tails, handles) a little more every frame.
    2. So warped pixels GrabCut dropped are given back where an independent
       posterior still calls them object: location (signed distance to the
       warped boundary over the flow's uncertainty, ``sigma`` px plus the
       forward-backward flow error) plus the object-vs-surroundings colour
       log-odds (keyframe-anchored model, surroundings sampled on this frame),
       weighted by where colour is locally trustworthy.  Only warped pixels
       are rescued, so this removes GrabCut's shrinkage without adding growth.
    Pieces not connected to the warped mask are dropped.
    """
    h, w = warped.shape
    wb = warped > 0.5
    area = int(wb.sum())
    if area < 4:
        return np.zeros((h, w), bool)
    if not refine:
        return wb
    diag = float(np.hypot(h, w))
    radius = np.sqrt(area / np.pi)
    band = int(np.clip(band_fraction * radius, 3, 0.05 * diag))
    ys, xs = np.nonzero(wb)
    out = np.zeros((h, w), bool)
    # GrabCut only needs the band (cost follows the object); colour statistics want more surroundings.
    crop = _box_crop(ys, xs, 2 * band, h, w)
    m = wb[crop].astype(np.uint8)
    lab = np.full(m.shape, cv2.GC_BGD, np.uint8)
    lab[cv2.dilate(m, disk(band)) > 0] = cv2.GC_PR_BGD
    lab[m > 0] = cv2.GC_PR_FGD
    lab[cv2.erode(m, disk(band)) > 0] = cv2.GC_FGD
    cut = grabcut(image[crop], lab, iterations)
    out[crop] = m > 0 if cut is None else cut
    if rescue > 0:
        crop = _box_crop(ys, xs, max(2 * band, int(np.clip(0.5 * radius, 8, 0.1 * diag))), h, w)
        inside = wb[crop]
        logit = location_colour_logit(
            index[crop],
            inside,
            appearance,
            radius,
            sigma=sigma,
            colour_weight=colour_weight,
            flow_error=None if flow_error is None else flow_error[crop],
        )
        out[crop] |= inside & (logit > rescue)
    return keep_components(out, wb)


def _box_crop(ys: np.ndarray, xs: np.ndarray, margin: int, h: int, w: int) -> tuple[slice, slice]:
    return (
        slice(max(0, ys.min() - margin), min(h, ys.max() + 1 + margin)),
        slice(max(0, xs.min() - margin), min(w, xs.max() + 1 + margin)),
    )


def location_colour_logit(
    index: np.ndarray,
    warped: np.ndarray,
    appearance: Appearance | None,
    radius: float,
    *,
    sigma: float,
    flow_error: np.ndarray | None,
    colour_weight: float,
) -> np.ndarray:
    """Foreground log-odds of a crop from where the object should be and what it looks like.

    Updates ``appearance.bg`` with the surroundings seen on this frame (a
    ring around the warped mask beyond its uncertain boundary).
    """
    sd = signed_distance(warped)
    unc = np.full(sd.shape, float(sigma), np.float32)
    if flow_error is not None:
        unc += flow_error  # where flow is unreliable (occlusions) the warped boundary is less certain
    logit = np.clip(sd / unc, -8.0, 8.0)
    if appearance is None:
        return logit
    bg = colour_histogram(index, sd < -2 * sigma - 2)
    if bg is not None:
        appearance.bg = bg if appearance.bg is None else 0.5 * bg + 0.5 * appearance.bg
    lo = appearance.log_odds()
    if lo is None:
        return logit
    llr = lo[index]
    return logit + colour_weight * llr * colour_trust(llr, sd, radius)


def recover_mask(
    image: np.ndarray,
    index: np.ndarray,
    mask: np.ndarray,
    appearance: Appearance | None,
    box: tuple[int, int, int, int],
    *,
    iterations: int = 3,
    residual: np.ndarray | None = None,
) -> np.ndarray | None:
    """Re-detect an object whose mask collapsed, in ``box`` (x0, y0, x1, y1): GrabCut seeded by the colour model.

    Inside the box, pixels whose colour is more likely object than surroundings
    are probably foreground, the rest probably background; what is left of the
    mask is definite foreground.  With ``residual`` (:func:`flow_residual` of
    the frame) and an object whose remaining mask moves, what moves like the
    background is background (:func:`still_background`).  Returns None when
    the model cannot say.
    """
    lo = None if appearance is None else appearance.log_odds()
    if lo is None:
        return None
    h, w = mask.shape
    x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    m = max(4, (x1 - x0 + y1 - y0) // 8)
    cx0, cy0, cx1, cy1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
    lab = np.full((cy1 - cy0, cx1 - cx0), cv2.GC_BGD, np.uint8)
    lab[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = np.where(
        lo[index[y0:y1, x0:x1]] > 0, cv2.GC_PR_FGD, cv2.GC_PR_BGD
    )
    lab[mask[cy0:cy1, cx0:cx1]] = cv2.GC_FGD
    if residual is not None and mask.any():
        near = cv2.dilate(mask.astype(np.uint8), disk(m))[cy0:cy1, cx0:cx1] > 0
        r = residual[cy0:cy1, cx0:cx1]
        still_background(lab, r, float(np.median(residual[mask])), ~near)
    cut = grabcut(image[cy0:cy1, cx0:cx1], lab, iterations)
    if cut is None:
        return None
    out = np.zeros((h, w), bool)
    out[cy0:cy1, cx0:cx1] = cut
    anchor = mask.copy()
    if not anchor.any():
        anchor[y0:y1, x0:x1] = True
    return keep_components(out, cv2.dilate(anchor.astype(np.uint8), disk(m)) > 0)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of a mask, exclusive ends; None when empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def resolve_overlaps(masks: list[np.ndarray], confidence: list[np.ndarray]) -> list[np.ndarray]:
    """Give every pixel claimed by several objects to the most confident one (ties: earlier object)."""
    if len(masks) <= 1:
        return [m.astype(bool) for m in masks]
    stack = np.stack(masks).astype(bool)
    claims = stack.sum(axis=0)
    if not (claims > 1).any():
        return list(stack)
    conf = np.where(stack, np.stack(confidence).astype(np.float32), -np.inf)
    winner = np.argmax(conf, axis=0)
    contested = claims > 1
    out = []
    for i in range(len(masks)):
        mi = stack[i].copy()
        mi[contested & (winner != i)] = False
        out.append(mi)
    return out

"""Pure image operations of the ``bilateral`` backend (no session state).

The backend labels every frame from independent cues, each of which fails
in different places, fused as log-odds and smoothed along image edges:

- **location**: the previous mask pulled along dense optical flow, soft
  where forward and backward flow disagree;
- **bilateral appearance** (BVS, Maerki et al. 2016): the previous frame's
  labels splatted into a grid over position and colour (x, y, Y, Cr, Cb),
  sliced at every pixel of the new frame displaced by its flow.  It is a
  classifier that is local in space *and* colour, so a dark swan on dark
  water is judged by the nearby water only;
- **global colour**: object-vs-rest colour histograms anchored on the
  keyframe and updated on confident frames, which is what still knows the
  object when flow has lost it (occlusion, fast motion);
- **motion**: background and object motion models fitted to the flow; a
  pixel that moves like the background and not like the object is evidence
  against the object (what a mask takes in from what the object slides
  over), the reverse is evidence for it where the background nearby follows
  its model (parts of the object the other cues dropped);
- **keyframe matching**: every pixel's nearest patches among those sampled
  on the object's prompted frames vote object or background
  (:class:`KeyframeMemory`): a memory that reaches past the previous frame
  and does not go through the flow.

A few mean-field iterations with contrast-sensitive pairwise weights play the
role of a per-frame CRF: labels agree with their neighbours unless an image
edge separates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from scipy.ndimage import convolve1d

from masktrack.segment.classic_ops import _grid, disk, homography_map, signed_distance

CELL, CELLS_ACROSS = 16.0, 30
"""Bilateral grid cell: 16 working-resolution pixels (x and y), and 1/30 of the longest side where that is
larger, so above a 480 px working resolution the grid keeps its cell count (and cost) and a cell still
covers the same part of the scene."""
LUMA_BINS, CHROMA_BINS = 8, 12


@dataclass
class BilateralGrid:
    """Foreground and background mass of one frame splatted over (y, x, Y, Cr, Cb) cells.

    Only the cells a splat can reach are stored: ``shape[0]`` rows and
    ``shape[1]`` columns of the frame's cell grid starting at ``origin``; every
    other cell of the frame is empty (a splat covers the object's region, and
    the whole-frame grid was ~1M cells blurred along five axes every frame).
    """

    fg: np.ndarray
    bg: np.ndarray
    shape: tuple[int, ...]
    origin: tuple[int, int]
    frame_cells: tuple[int, int]
    """(rows, columns) of the frame's whole cell grid (positions are clipped to it)."""
    cell: float
    """Cell size in pixels (:func:`cell_size`)."""


def cell_size(h: int, w: int) -> float:
    return max(CELL, max(h, w) / CELLS_ACROSS)


def _cells(
    xs: np.ndarray, ys: np.ndarray, frame_cells: tuple[int, int], cell: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cell row and column of pixels at (xs, ys) (any float positions, clipped to the frame's grid)."""
    gy, gx = frame_cells
    cy = np.clip((ys / cell + 0.5).astype(np.int32), 0, gy - 1)
    cx = np.clip((xs / cell + 0.5).astype(np.int32), 0, gx - 1)
    return cy, cx


def _colour_cell(ycc: np.ndarray, nl: int, nc: int) -> np.ndarray:
    lum = (ycc[:, 0].astype(np.int32) * nl) >> 8
    cr = (ycc[:, 1].astype(np.int32) * nc) >> 8
    cb = (ycc[:, 2].astype(np.int32) * nc) >> 8
    return (lum * nc + cr) * nc + cb


def grid_shape(h: int, w: int) -> tuple[int, ...]:
    cell = cell_size(h, w)
    return (int(h / cell) + 2, int(w / cell) + 2, LUMA_BINS, CHROMA_BINS, CHROMA_BINS)


_KERNEL = np.array([1.0, 2.0, 1.0], np.float32) / 4.0


def splat(
    ycc: np.ndarray, mask: np.ndarray, region: tuple[slice, slice], balance: float = 1.0
) -> BilateralGrid:
    """Splat one frame's labels inside ``region`` into a grid, blurred by [1 2 1] along every axis.

    Cells outside the region stay empty, so they say nothing (log-odds 0)
    when sliced; the grid is sliced as nearest cell.  Only the region's cells
    and the one-cell border the blur reaches are stored.
    """
    h, w = mask.shape
    full, cell = grid_shape(h, w), cell_size(h, w)
    gx, gy = _grid(h, w)
    cy, cx = _cells(gx[region].ravel(), gy[region].ravel(), (full[0], full[1]), cell)
    y0, x0 = max(0, int(cy.min()) - 1), max(0, int(cx.min()) - 1)
    y1, x1 = min(full[0], int(cy.max()) + 2), min(full[1], int(cx.max()) + 2)
    shape = (y1 - y0, x1 - x0, *full[2:])
    nl, nc = full[2], full[3]
    idx = ((cy - y0) * shape[1] + (cx - x0)) * (nl * nc * nc) + _colour_cell(
        ycc[region].reshape(-1, 3), nl, nc
    )
    m = mask[region].ravel()
    size = int(np.prod(shape))
    fg = np.bincount(idx[m], minlength=size).astype(np.float32)
    bg = np.bincount(idx[~m], minlength=size).astype(np.float32)
    # Towards equal class priors (``balance`` 1): the region holds more background than object, and
    # that imbalance says little about one pixel (unbalanced, mixed cells lean background and masks
    # shrink; fully balanced, they lean object and masks grow).
    nf, nb = float(fg.sum()), float(bg.sum())
    if nf > 0 and nb > 0 and balance > 0:
        r = (nb / nf) ** (0.5 * balance)
        fg *= r
        bg /= r
    fg, bg = fg.reshape(shape), bg.reshape(shape)
    for ax in range(5):
        fg = convolve1d(fg, _KERNEL, axis=ax, mode="constant")
        bg = convolve1d(bg, _KERNEL, axis=ax, mode="constant")
    return BilateralGrid(fg.ravel(), bg.ravel(), shape, (y0, x0), (full[0], full[1]), cell)


def slice_logit(
    grid: BilateralGrid, ycc: np.ndarray, xs: np.ndarray, ys: np.ndarray, prior: float = 1.0
) -> np.ndarray:
    """Log-odds of foreground for pixels of colour ``ycc`` [h, w, 3] looked up at grid positions (xs, ys).

    The positions are where flow says the pixels came from in the splatted
    frame.  ``prior`` is a pseudo-count on both sides: cells with little mass
    say little.  Clipped to [-4, 4].
    """
    h, w = ycc.shape[:2]
    sy, sx, nl, nc, _ = grid.shape
    y0, x0 = grid.origin
    cy, cx = _cells(xs.ravel(), ys.ravel(), grid.frame_cells, grid.cell)
    cy, cx = cy - y0, cx - x0
    inside = (cy >= 0) & (cy < sy) & (cx >= 0) & (cx < sx)
    idx = (cy[inside] * sx + cx[inside]) * (nl * nc * nc) + _colour_cell(ycc.reshape(-1, 3)[inside], nl, nc)
    f = np.zeros(h * w, np.float32)
    b = np.zeros(h * w, np.float32)
    f[inside], b[inside] = grid.fg[idx], grid.bg[idx]
    return np.clip(np.log((f + prior) / (b + prior)), -4.0, 4.0).reshape(h, w).astype(np.float32)


# -- global colour -----------------------------------------------------------

COLOUR_BINS = 16


def colour_index(ycc: np.ndarray) -> np.ndarray:
    q = (ycc >> 4).astype(np.int32)
    return (q[..., 0] << 8) | (q[..., 1] << 4) | q[..., 2]


def histogram(index: np.ndarray, where: np.ndarray) -> np.ndarray | None:
    """Smoothed, floored colour distribution of ``where`` (float32 [4096]), None if too few pixels."""
    if int(np.count_nonzero(where)) < 16:
        return None
    n = COLOUR_BINS
    cube = np.bincount(index[where], minlength=n**3).astype(np.float32).reshape(n, n, n)
    for ax in range(3):
        cube = convolve1d(cube, _KERNEL, axis=ax, mode="nearest")
    h = cube.ravel()
    h += 1e-3 * h.sum() / h.size
    return h / h.sum()


def texture_index(luma: np.ndarray) -> np.ndarray:
    """Quantised local texture of every pixel as a bin index of a 16x16x16 histogram (like colour_index).

    Axes: local contrast (standard deviation of luma) in a 3x3 and in a 9x9
    window, on a log scale, and the coherence of the gradient structure
    tensor (0: no dominant orientation, 1: one edge direction).  All three
    are rotation invariant, so a turning object keeps its texture; fur and
    grass, or a car body and asphalt, differ here where their colours don't.
    """
    y = luma.astype(np.float32)
    feats = []
    for k in (3, 9):
        m = cv2.blur(y, (k, k))
        sd = np.sqrt(np.maximum(cv2.blur(y * y, (k, k)) - m * m, 0.0))
        feats.append(np.clip(np.log1p(sd) * (16 / np.log1p(64.0)), 0, 15).astype(np.int32))
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = (cv2.blur(a, (7, 7)) for a in (gx * gx, gy * gy, gx * gy))
    coh = np.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / (jxx + jyy + 1e-3)
    c = np.clip(coh * 16, 0, 15).astype(np.int32)
    return (feats[0] << 8) | (feats[1] << 4) | c


@dataclass
class ColourModel:
    """Object-vs-rest colour log-odds: the keyframe's foreground always counts half (anchor against drift)."""

    key_fg: np.ndarray
    fg: np.ndarray
    bg: np.ndarray

    @classmethod
    def from_mask(cls, index: np.ndarray, mask: np.ndarray) -> ColourModel | None:
        fg = histogram(index, mask)
        bg = histogram(index, ~(cv2.dilate(mask.astype(np.uint8), disk(2)) > 0))
        if fg is None or bg is None:
            return None
        return cls(key_fg=fg, fg=fg, bg=bg)

    def update(self, index: np.ndarray, mask: np.ndarray, rate: float) -> None:
        m8 = mask.astype(np.uint8)
        fg = histogram(index, cv2.erode(m8, disk(1)) > 0)
        bg = histogram(index, ~(cv2.dilate(m8, disk(3)) > 0))
        if fg is not None:
            self.fg = 0.5 * self.key_fg + 0.5 * ((1 - rate) * self.fg + rate * fg)
        if bg is not None:
            self.bg = (1 - rate) * self.bg + rate * bg

    def log_odds(self) -> np.ndarray:
        """Per colour bin, clipped to [-4, 4] (the table ``classic_ops.recover_mask`` seeds GrabCut with)."""
        return np.clip(np.log(self.fg) - np.log(self.bg), -4.0, 4.0).astype(np.float32)


# -- fusion and smoothing ----------------------------------------------------


def location_logit(
    warped: np.ndarray, sigma: float, flow_err: np.ndarray | None, floor: float = -6.0
) -> np.ndarray:
    """Signed distance to the warped boundary over its uncertainty, clipped to [``floor``, 6].

    A ``floor`` above -6 lets the location cue speak for the object inside the
    warped mask while saying little against it outside, so that what the other
    cues recognise there (a part the flow dropped) can be taken back.
    """
    sd = signed_distance(warped > 0.5)
    unc = np.full(sd.shape, float(sigma), np.float32)
    if flow_err is not None:
        unc += flow_err
    return np.clip(sd / unc, min(floor, 6.0), 6.0)


def edge_weights(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contrast-sensitive weights to the right and lower neighbour, exp(-|dI|^2 / (2 <|dI|^2>))."""
    im = image.astype(np.float32)
    dx = ((im[:, 1:] - im[:, :-1]) ** 2).sum(axis=2)
    dy = ((im[1:] - im[:-1]) ** 2).sum(axis=2)
    beta = 1.0 / (2.0 * max(1e-3, float((dx.mean() + dy.mean()) / 2)))
    return np.exp(-beta * dx), np.exp(-beta * dy)


def mean_field(
    unary: np.ndarray, wx: np.ndarray, wy: np.ndarray, strength: float, iterations: int
) -> np.ndarray:
    """Approximate posterior of a binary CRF: q_i = sigmoid(u_i + s * sum_j w_ij (2 q_j - 1))."""
    q = 1.0 / (1.0 + np.exp(-unary))
    for _ in range(iterations):
        s = 2.0 * q - 1.0
        msg = np.zeros_like(unary)
        msg[:, :-1] += wx * s[:, 1:]
        msg[:, 1:] += wx * s[:, :-1]
        msg[:-1] += wy * s[1:]
        msg[1:] += wy * s[:-1]
        q = 1.0 / (1.0 + np.exp(-(unary + strength * msg)))
    return q


def crop_box(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    h, w = mask.shape
    return (
        slice(max(0, ys.min() - margin), min(h, ys.max() + 1 + margin)),
        slice(max(0, xs.min() - margin), min(w, xs.max() + 1 + margin)),
    )


def fill_holes(mask: np.ndarray, max_fraction: float = 0.02) -> np.ndarray:
    """Fill background holes smaller than ``max_fraction`` of the mask's area."""
    inv = (~mask).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    if n <= 2:
        return mask
    h, w = mask.shape
    x, y, bw, bh, a = (stats[:, i] for i in range(5))
    touches = (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
    fill = ~touches & (a < max_fraction * max(1, int(mask.sum())))
    fill[0] = False
    return mask | fill[lab]


# -- motion ------------------------------------------------------------------

MOTION_NOISE = 1.0
"""Standard deviation of a flow vector around its motion model, working pixels (plus the forward-backward error)."""
MOTION_CLIP = 3.0
"""Largest log-odds the motion cue gives either way (before its weight and the rigidity)."""
TRUST_RADIUS = 12
"""How far around a pixel (working px) the background is checked against its model before motion may speak for the object."""


@dataclass
class MotionModels:
    """How the background and the object moved between two frames, both fitted robustly to the flow.

    Both map current-frame pixel coordinates to where they came from in the
    previous frame.  ``rigidity`` is the fraction of the object's reliable
    flow that its one affine motion explains (a car: ~0.85; a dancer's
    limbs: ~0.4).
    """

    background: np.ndarray  # 3x3 homography
    obj: np.ndarray  # 2x3 affine
    rigidity: float


def _fit_points(mask: np.ndarray, flow: np.ndarray, step: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` (x, y) points of ``mask`` on a ``step`` grid, and where flow says they came from."""
    ys, xs = np.nonzero(mask[::step, ::step])
    ys, xs = ys * step, xs * step
    if len(ys) > limit:
        k = np.linspace(0, len(ys) - 1, limit).astype(np.int64)
        ys, xs = ys[k], xs[k]
    src = np.stack([xs, ys], 1).astype(np.float32)
    return src, src + flow[ys, xs]


def fit_motion(
    flow: np.ndarray, err: np.ndarray | None, warped: np.ndarray, margin: float
) -> MotionModels | None:
    """Fit the background's motion (a homography, RANSAC) outside the warped mask grown by ``margin`` px
    and the object's (an affine motion) inside it shrunk by 2 px, on pixels whose flow is reliable
    (forward-backward error < 1 px).  None when either side has too few points or a fit fails."""
    sd = signed_distance(warped)
    reliable = np.ones(flow.shape[:2], bool) if err is None else err < 1.0
    src_b, dst_b = _fit_points((sd < -margin) & reliable, flow, 8, 3000)
    src_o, dst_o = _fit_points((sd > 2) & reliable, flow, 4, 2000)
    if len(src_b) < 16 or len(src_o) < 8:
        return None
    # OpenCV's RANSAC draws from its own fixed-seed generator: the fits are deterministic.
    hb, _ = cv2.findHomography(src_b, dst_b, cv2.RANSAC, 1.0, maxIters=500, confidence=0.99)
    if hb is None:
        return None
    # The object's motion from its pixels the background's does not explain: once part of the mask is
    # background (a wake taken in), an affine fitted to all of it would blend the two motions.
    moving = np.linalg.norm(cv2.perspectiveTransform(src_o[None], hb)[0] - dst_o, axis=1) > 2 * MOTION_NOISE
    if int(moving.sum()) < 8:
        return None  # the object moves like the background: motion cannot tell them apart
    ao, inliers = cv2.estimateAffine2D(
        src_o[moving], dst_o[moving], method=cv2.RANSAC, ransacReprojThreshold=1.0, maxIters=500
    )
    if ao is None or inliers is None:
        return None
    return MotionModels(hb.astype(np.float32), ao.astype(np.float32), float(inliers.mean()))


def background_motion_logit(
    flow: np.ndarray,
    err: np.ndarray | None,
    models: MotionModels,
    xs: np.ndarray,
    ys: np.ndarray,
    outside: np.ndarray | None = None,
) -> np.ndarray:
    """Log-odds that a pixel moves like the object rather than like the background, where that can be believed.

    The log-likelihood ratio of the pixel's flow under the object's and the
    background's motion (Gaussian residuals, ``MOTION_NOISE`` plus the
    forward-backward error), clipped to +-``MOTION_CLIP`` and scaled by the
    object's rigidity (a dancer's hand resting on the floor moves like the
    background too, and one affine motion explains little of a dancer).
    Zero where the two motions agree (a static object under a static camera).

    Evidence *against* the object is always kept: what leaks into a mask is
    what the object slides over (a swan's wake, the road behind a car, the
    grass behind a running dog), and it moves with the camera.  Evidence
    *for* it only where the background nearby (``outside`` pixels within
    ``TRUST_RADIUS``) follows the background model (mean squared residual
    below ``MOTION_NOISE``^2): the water beside a swan is at the swan's depth,
    not the bank's, so under parallax it "moves like the swan" too.  With
    ``outside`` None, only evidence against.
    """
    hb, ao = models.background, models.obj
    px, py = xs + flow[..., 0], ys + flow[..., 1]
    bx, by = homography_map(hb, xs, ys)
    ox = ao[0, 0] * xs + ao[0, 1] * ys + ao[0, 2]
    oy = ao[1, 0] * xs + ao[1, 1] * ys + ao[1, 2]
    rb = (px - bx) ** 2 + (py - by) ** 2
    ro = (px - ox) ** 2 + (py - oy) ** 2
    var = MOTION_NOISE**2 + (0.0 if err is None else err**2)
    llr = np.clip((rb - ro) / (2.0 * var), -MOTION_CLIP, MOTION_CLIP)
    if outside is None:
        llr = np.minimum(llr, 0.0)
    else:
        o = outside.astype(np.float32)
        near = cv2.boxFilter(o, -1, (2 * TRUST_RADIUS + 1,) * 2, borderType=cv2.BORDER_REFLECT)
        fit = cv2.boxFilter(
            o * np.minimum(rb, 25.0), -1, (2 * TRUST_RADIUS + 1,) * 2, borderType=cv2.BORDER_REFLECT
        ) / np.maximum(near, 1e-3)
        trusted = (near > 0.05) & (fit < MOTION_NOISE**2)
        llr = np.where(llr > 0, llr * trusted, llr)
    return (models.rigidity * llr).astype(np.float32)


# -- keyframe matching -----------------------------------------------------

MATCH_K, MATCH_EPS = 16, 1.0
"""Neighbours that vote per pixel, and the k-d tree's approximation: each returned neighbour is within
(1 + MATCH_EPS) x the distance of the true one (exact, with samples every 2nd pixel: ~5x the time, the
same J&F)."""
MATCH_STEP, MEMORY_STEP = 4, 3
"""Grid steps (working px) at which a frame is queried and a prompted frame is sampled; the votes are
interpolated between query points (the mean field then follows image edges)."""
MEMORY_LIMIT = 60_000
"""Most samples an object's memory keeps over all its prompted frames (evenly thinned beyond)."""
MATCH_CLIP = 3.0
"""Largest log-odds the matching cue gives either way (before its weight)."""


PATCH_RADII = (2, 5)
"""Half-sizes of the patch descriptor's two boxes (5x5 and 11x11) at the keyframe's scale."""


def patch_radii(scale: float) -> tuple[int, int]:
    """The descriptor's box half-sizes for an object ``scale`` times its size on the keyframe."""
    return max(1, int(round(PATCH_RADII[0] * scale))), max(2, int(round(PATCH_RADII[1] * scale)))


def patch_descriptor(bgr: np.ndarray, radii: tuple[int, int] = PATCH_RADII) -> np.ndarray:
    """Per-pixel appearance of a small neighbourhood (float32 [h, w, 11]).

    CIE Lab at the pixel, the Lab means over 5x5 and 11x11 boxes (``radii``),
    and the lightness contrast (standard deviation) in the same boxes: colour
    plus a little texture and context, so a swan's feathers differ from the
    dark water that has their colour, and a dog's fur from the dry grass it
    runs on.  Boxes grown with the object (:func:`patch_radii`) see on a near
    object what the keyframe's boxes saw on it far away.
    """
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab).astype(np.float32)
    parts = [lab]
    for r in radii:
        k = (2 * r + 1, 2 * r + 1)
        mean = cv2.blur(lab, k)
        l2 = cv2.blur(lab[..., 0] * lab[..., 0], k)
        parts += [mean, 2.0 * np.sqrt(np.maximum(l2 - mean[..., 0] ** 2, 0.0))[..., None]]
    return np.concatenate(parts, axis=2)


@dataclass
class KeyframeMemory:
    """Patches of an object and its surroundings on its prompted frames, to label new pixels by.

    The long-range memory the other cues lack: location and the bilateral
    grid only know the previous frame, so a part that flow lost (a dog's
    hind legs, a dancer's fast leg) stays lost; and the global colour model
    keeps colours, not patches.  Each pixel of a new frame is labelled by its
    nearest sampled patches on the keyframes (JumpCut's non-successive mask
    transfer by nearest-neighbour fields, here without flow or position), so
    a part that looks as it did on a keyframe is recognised wherever it is.
    """

    tree: Any
    labels: np.ndarray  # float32 [N]: 1 object, 0 background
    scale: np.ndarray  # float32 [D]: descriptors are divided by it (the samples' spread)
    prior: float  # log-odds of an object sample: the votes are balanced by it

    @staticmethod
    def sample(desc: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Descriptors and labels on a ``MEMORY_STEP`` grid over the mask's box padded by half its size."""
        ys, xs = np.nonzero(mask)
        if len(ys) == 0 or mask.all():
            return None
        box = crop_box(mask, int(max(16, 0.5 * max(np.ptp(ys), np.ptp(xs)))))
        assert box is not None
        d = desc[box][::MEMORY_STEP, ::MEMORY_STEP]
        lab = mask[box][::MEMORY_STEP, ::MEMORY_STEP]
        return d.reshape(-1, d.shape[2]), lab.reshape(-1).astype(np.float32)

    @classmethod
    def build(cls, samples: list[tuple[np.ndarray, np.ndarray]]) -> KeyframeMemory | None:
        """One memory over the samples of every keyframe; None without both labels or ``MATCH_K`` samples."""
        from scipy.spatial import cKDTree

        if not samples:
            return None
        feats = np.concatenate([s[0] for s in samples])
        labels = np.concatenate([s[1] for s in samples])
        if len(labels) > MEMORY_LIMIT:
            keep = np.linspace(0, len(labels) - 1, MEMORY_LIMIT).astype(np.int64)
            feats, labels = feats[keep], labels[keep]
        p = float(labels.mean()) if len(labels) >= MATCH_K else 0.0
        if not 0.0 < p < 1.0:
            return None
        scale = (feats.std(axis=0) + 1e-3).astype(np.float32)
        return cls(cKDTree(feats / scale), labels, scale, float(np.log(p / (1.0 - p))))

    def log_odds(self, desc: np.ndarray, balance: float = 1.0) -> np.ndarray:
        """Log-odds that each pixel of ``desc`` [h, w, D] is the object, clipped to +-``MATCH_CLIP``.

        The vote among the ``MATCH_K`` nearest samples, with its sampling prior
        (the share of object samples on the keyframes) removed to the extent
        ``balance``: 1 gives the likelihood ratio (a single object vote among
        background samples counts for the object, where a part is recognised),
        0 the raw vote (the keyframe's layout counts, and look-alikes of a few
        object patches do not).
        """
        h, w = desc.shape[:2]
        grid = desc[::MATCH_STEP, ::MATCH_STEP]
        q = (grid / self.scale).reshape(-1, desc.shape[2])
        _, idx = self.tree.query(q, k=MATCH_K, eps=MATCH_EPS)
        votes = self.labels[np.asarray(idx).reshape(len(q), -1)].sum(axis=1)
        pf = (votes + 0.5) / (MATCH_K + 1.0)
        llr = np.clip(np.log(pf / (1.0 - pf)) - balance * self.prior, -MATCH_CLIP, MATCH_CLIP)
        llr = llr.reshape(grid.shape[:2]).astype(np.float32)
        return cv2.resize(llr, (w, h), interpolation=cv2.INTER_LINEAR)

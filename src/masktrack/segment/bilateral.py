"""``bilateral``: the weight-free default backend (OpenCV + NumPy, CPU only).

``classic`` re-segments every frame with GrabCut in a band around the
flow-warped mask.  GrabCut learns its colour models on that one frame and
that one band, so once the band contains background the models learn it and
the mask drifts; it met its targets on the three sequences it was tuned on
and not on others.  This backend keeps classic's keyframes (GrabCut from
clicks/boxes, a mask taken as given) but labels every other frame from cues
that fail in different places (see :mod:`~masktrack.segment.bilateral_ops`):

1. **Location**: the previous mask pulled along DIS optical flow; its
   boundary is soft (``sigma`` px plus the forward-backward flow error).
   For an object prompted with an exact mask it speaks only for the object
   (``location_floor``): outside the warped mask the keyframe memory and the
   colour cues decide, so a part the flow dropped can be taken back.
2. **Bilateral appearance** (BVS): the previous frame's labels splatted into
   a (x, y, Y, Cr, Cb) grid and sliced where each pixel came from; a
   classifier local in space and colour, retrained every frame.
3. **Global colour**: object-vs-rest histograms anchored on the keyframe and
   updated on frames whose area is consistent, which re-detects the object
   (GrabCut seeded by it, in a search box that grows while the object is
   lost) after an occlusion or a motion flow could not follow.
4. **Motion** (``w_motion``): the background's motion (a homography) and
   the object's (an affine motion) fitted robustly to the flow; pixels that
   move like the background and not like the object get evidence against
   the object, and the reverse evidence for it where the background nearby
   follows its model (not under parallax), scaled by how rigid the object
   moves.  It is what refuses a wake: what an object slides over (a swan's
   wake, the road behind a car, the grass behind a dog) has its colours and
   is covered by the warped mask, but it moves with the camera; and what
   gives back parts the colour model dropped (a rider in dark clothes).
5. **Keyframe matching** (``w_match``): each pixel's nearest neighbours
   among small patches (colour, local contrast) sampled on the object's
   prompted frames vote for its label
   (:class:`~masktrack.segment.bilateral_ops.KeyframeMemory`).  Location
   and the bilateral grid remember only the previous frame and motion only
   the last flow, so a part the flow lost (a dog's hind legs, a dancer's fast
   leg) stayed lost; this memory recognises it wherever it looks as it did
   when prompted, and rejects what only shares its colour (a swan's dark
   reflection, the road under a car).  The patches' boxes grow and shrink
   with the object (its running area over its keyframe area), so a car that
   comes nearer is still recognised.
6. **Global texture** (opt-in, ``w_texture``): the same kind of model over
   local contrast at two scales and edge coherence
   (:func:`~masktrack.segment.bilateral_ops.texture_index`), clipped to
   +-``TEXTURE_CLIP`` so it breaks ties where colour is ambiguous (fur on dry
   grass, a car body on asphalt) without outvoting it.

Location and the bilateral grid both remember the previous frame's labels,
so an error there (a shadow taken in) tends to persist; the colour and
texture models and the keyframe matching are anchored on the keyframes, and
motion does not remember at all: those are what can undo it.

The log-odds are summed with weights and smoothed by a few mean-field
iterations of a contrast-sensitive CRF; components not connected to where
the object was are dropped.  Prompts on any frame re-anchor the object, in
either direction; where objects overlap the most confident one owns the
pixel.  Work happens at a working resolution (longest side ``max_side``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from masktrack.errors import BackendError, pydantic_problems
from masktrack.io.video import VideoSource
from masktrack.plugins import PluginOptions
from masktrack.segment.base import Backend, FrameMasks, SessionObject
from masktrack.segment.classic import ClassicSession, mask_taken_as_given, recent

VERSION = 9
"""Fingerprint version (a manifest key): 8 added ``location_floor`` and 10 keyframe iterations, 9 the patch boxes
that grow with the object, which changes results under the same options."""
TEXTURE_CLIP = 2.0
"""Texture breaks ties where colour is ambiguous; it must not outvote a confident colour model."""


class BilateralOptions(PluginOptions):
    """Options of the bilateral backend (config ``options:``); defaults chosen on the shared data (BENCHMARKS.md)."""

    flow: Literal["ultrafast", "fast", "medium"] = "medium"
    """DIS optical-flow preset."""
    max_side: int = Field(640, ge=0)
    """Working resolution: longest side in pixels (0 = full size).

    640 over 480 on the shared DAVIS sequences: mask-prompt J&F 0.609 -> 0.625, points 0.555 -> 0.570,
    every leave-one-out fold the same choice; the bilateral grid keeps its cell count above 480 px
    (:data:`~masktrack.segment.bilateral_ops.CELLS_ACROSS`), so the cost grows with the flow only."""
    sigma: float = Field(2.0, gt=0)
    """Uncertainty of the warped boundary in working pixels (plus the forward-backward flow error)."""
    w_location: float = Field(1.5, ge=0)
    """Weight of the location log-odds."""
    location_floor: float = Field(0.0, ge=-6, le=0)
    """Lowest location log-odds (before ``w_location``) for an object whose keyframes are exact masks
    (:func:`~masktrack.segment.classic.mask_taken_as_given`: a mask without clicks, such as a rendered
    robot mask with ``kinematics`` ``points: 0, negatives: 0``): how much its warped mask says *against* it
    outside; -6
    (version 7) for clicked or boxed objects and without the keyframe memory.

    A propagated mask mostly shrinks: on the shared DAVIS sequences (mask prompts) false negatives
    averaged 0.24 of the object's area and false positives 0.10, and in the last quarter of six sequences
    false negatives were 0.37-0.47.  A part the flow dropped was lost for good: a few pixels
    outside the warped boundary the location cue outvoted the keyframe memory and the colour cues that
    recognised it.  At 0 the location cue speaks only for the object, inside its warped mask.  Mask-prompt
    J&F 0.679 -> 0.694 (BENCHMARKS.md, version 8).  Not for clicks: there the memory also holds the
    keyframe's own errors (libby's fence pole, taken in between the clicks), which the location cue kept
    from spreading (points J&F 0.636 -> 0.626 with the floor for every object)."""
    w_bilateral: float = Field(1.0, ge=0)
    """Weight of the bilateral-grid log-odds."""
    balance: float = Field(0.15, ge=0, le=1)
    """How far the bilateral grid's object/background counts are brought to equal priors (0: not, 1: fully)."""
    w_colour: float = Field(1.0, ge=0)
    """Weight of the global colour log-odds."""
    w_texture: float = Field(0.0, ge=0)
    """Weight of the global texture log-odds (local contrast at two scales and edge coherence); 0 = off.

    Off by default: on the shared DAVIS sequences 0.5 gives mask-prompt J&F +0.030 but points-prompt
    -0.023 (spray taken in on kite-surf), see BENCHMARKS.md."""
    smooth: float = Field(1.0, ge=0)
    """Strength of the contrast-sensitive pairwise term."""
    mf_iterations: int = Field(5, ge=0)
    """Mean-field iterations per frame."""
    colour_rate: float = Field(0.2, ge=0, le=1)
    """How fast the global colour model follows confident frames (the keyframe always keeps half)."""
    recover: float = Field(0.6, ge=0, lt=1)
    """Re-detect an object whose area falls below this fraction of its running area (0 = off)."""
    lost_frames: int = Field(30, ge=0)
    """How many frames a lost object is searched for (its search box grows each frame)."""
    w_motion: float = Field(2.0, ge=0)
    """Weight of the motion cue: pixels that move like the background, not like the object, and the reverse."""
    keyframe_iterations: int = Field(10, ge=0)
    """GrabCut iterations on a frame prompted with clicks and/or boxes (each re-fits its colour models and
    re-cuts).

    10 over 5 (version 8): GrabCut's colour models still move after 5 iterations (10 and 20 give other
    masks), and one more click could swing the mask by 0.1 J far from where it was made.  On the shared DAVIS first frames NoC@85 8.125 -> 7.875 and NoC@90
    12.6 -> 11.5 (3: 8.375; 20: 7.875 / 12.0); points J&F unchanged (0.636).  Cost: a clicked keyframe at
    640 px takes 1.2 s of CPU instead of 0.8 s (BENCHMARKS.md)."""
    keyframe_side: int | None = Field(None, ge=0)
    """Longest side at which a frame prompted with clicks/boxes is segmented, if finer than ``max_side``
    (0 = full size; None = the working resolution).

    A clicked thin part (a cable, a kite line) then survives on its frame, whose mask comes back at
    this resolution; the frames after it are still labelled at ``max_side``.  Off by default: at
    854x480 the keyframe took ~3.6 s of CPU at 5 GrabCut iterations (~1 s at 480 px; every click in the annotation app's
    preview), and on the shared DAVIS first frames (480 px working resolution) it moved NoC@85
    10.4 -> 9.25, inside the +-1 that any change to GrabCut's input moves it (BENCHMARKS.md)."""
    recover_motion: bool = True
    """When re-detecting a collapsed object, what moves like the background is background, if what is left of
    the object moves (the rule of ``keyframe_motion``, on the frame's flow to the previous frame)."""
    w_match: float = Field(2.0, ge=0)
    """Weight of the keyframe-matching log-odds (nearest patches on the prompted frames vote); 0 = off
    (version 6's results exactly).

    On the shared DAVIS sequences it lifted mask-prompt J&F 0.629 -> 0.679 and points 0.586 -> 0.636
    (BENCHMARKS.md, version 7)."""
    match_balance: float = Field(0.5, ge=0, le=1)
    """How far the keyframe matching's vote is corrected for the share of object samples (0: not, 1: fully;
    :meth:`~masktrack.segment.bilateral_ops.KeyframeMemory.log_odds`).

    1 scored higher on DAVIS (mask 0.695) but took the demo's arm onto the pushed box in the top camera
    (0.71 % of its pixels, the check allows 0.5 %): 0.5 is the best setting that keeps every target the
    default met before."""
    keyframe_motion: bool = True
    """On a frame prompted with clicks and/or boxes (not a mask), what moves like the background is background,
    if the prompted object moves (:func:`~masktrack.segment.classic_ops.still_background`; flow to the next
    frame, the previous one on the last).  A static object is segmented from colour as before."""


class BilateralBackend(Backend):
    """Flow-warped location + bilateral-grid, global colour and motion cues, fused by a mean-field CRF."""

    name = "bilateral"
    supports_text = False
    supports_points = True
    Options = BilateralOptions

    def __init__(self, **options: object) -> None:
        try:
            self.options = BilateralOptions(**options)  # type: ignore[arg-type]
        except ValidationError as e:
            problems = "; ".join(str(p) for p in pydantic_problems(e, "options"))
            raise BackendError(f"bad options for backend 'bilateral': {problems}", field="options") from None

    def open_session(self, video: VideoSource, objects: Sequence[SessionObject]) -> BilateralSession:
        return BilateralSession(video, objects, self.options)

    def fingerprint(self) -> dict:
        return {"backend": self.name, "version": VERSION, **self.options.model_dump()}


class BilateralSession(ClassicSession):
    """Prompts, keyframes, frame cache and output as in classic; a different per-frame step."""

    def __init__(
        self, video: VideoSource, objects: Sequence[SessionObject], options: BilateralOptions
    ) -> None:
        super().__init__(video, objects, options)  # type: ignore[arg-type]
        self.opts = options
        self._grids: dict[str, object] = {}
        self._texture: dict[str, Any] = {}
        self._ycc: dict[int, np.ndarray] = {}
        self._residuals: dict[tuple[int, tuple[int, int]], np.ndarray | None] = {}
        self._desc: dict[int, np.ndarray] = {}
        self._recall: dict[str, _Recall] = {}

    def propagate(self, start_frame: int, *, reverse: bool = False) -> Iterator[tuple[int, FrameMasks]]:
        # The keyframe memory holds the keyframes visited on this pass only, like the colour model: a result
        # must not depend on what an earlier pass visited.
        self._recall.clear()
        yield from super().propagate(start_frame, reverse=reverse)

    def _keyframe_size(self) -> tuple[int, int]:
        from masktrack.segment.classic_ops import working_size

        if self.opts.keyframe_side is None:
            return self._size
        fine = working_size(self.video.height, self.video.width, self.opts.keyframe_side)
        return fine if fine[0] >= self._size[0] else self._size

    def _keyframe_motion(self, frame: int, size: tuple[int, int]) -> np.ndarray | None:
        import cv2

        from masktrack.segment.classic_ops import motion_residual

        n = self.video.num_frames
        if not self.opts.keyframe_motion or n < 2:
            return None
        if (frame, size) not in self._residuals:  # once per frame, for all its clicked objects
            other = frame + 1 if frame + 1 < n else frame - 1
            res = motion_residual(self._frame(frame)[1], self._frame(other)[1], self._dis)
            if res is not None and size != self._size:
                scale = size[1] / self._size[1]
                res = cv2.resize(res, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) * scale
            self._residuals[(frame, size)] = res
        return self._residuals[(frame, size)]

    def _colour(self, t: int) -> np.ndarray:
        import cv2

        return recent(self._ycc, t, lambda: cv2.cvtColor(self._frame(t)[0], cv2.COLOR_BGR2YCrCb), keep=3)

    def _descriptor(self, t: int) -> np.ndarray:
        """Frame ``t``'s patch descriptors (keyframe matching), shared by all objects."""
        from masktrack.segment.bilateral_ops import patch_descriptor

        return recent(self._desc, t, lambda: patch_descriptor(self._frame(t)[0]), keep=2)

    def _scaled_descriptor(self, name: str, t: int, bgr: np.ndarray, crop: tuple[slice, slice]) -> np.ndarray:
        """Frame ``t``'s patch descriptors over ``crop``, with boxes grown or shrunk as the object has since
        its last keyframe (the square root of its running area over its keyframe area).

        A car that comes five times nearer fills the keyframe's 11x11 box with what a 5x5 box held, and
        its patches stop matching; boxes scaled with it match again.  At the keyframe's scale (the rounded
        radii unchanged) this is the frame's shared descriptor, exactly.
        """
        from masktrack.segment.bilateral_ops import PATCH_RADII, patch_descriptor, patch_radii

        tr = self._track.get(name)
        key_area = self._recall[name].key_area if name in self._recall else 0.0
        radii = patch_radii(np.sqrt(max(tr["area"], 1.0) / key_area)) if tr and key_area > 0 else PATCH_RADII
        if radii == PATCH_RADII:
            return self._descriptor(t)[crop]
        h, w = bgr.shape[:2]
        ys, xs = crop
        pad = radii[1] + 1  # real neighbours for every box inside the crop
        y0, y1 = max(0, ys.start - pad), min(h, ys.stop + pad)
        x0, x1 = max(0, xs.start - pad), min(w, xs.stop + pad)
        desc = patch_descriptor(bgr[y0:y1, x0:x1], radii)
        return desc[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]

    def _remember(self, name: str, t: int, mask: np.ndarray) -> None:
        """Add a prompted frame's patches to the object's keyframe memory (rebuilt over all its keyframes)."""
        from masktrack.segment.bilateral_ops import KeyframeMemory

        samples = KeyframeMemory.sample(self._descriptor(t), mask)
        r = self._recall.setdefault(name, _Recall())
        r.exact = r.exact and mask_taken_as_given(self._prompts[(t, name)])
        if samples is None:
            r.samples.pop(t, None)
        else:
            r.samples[t] = samples
        r.memory = KeyframeMemory.build([r.samples[f] for f in sorted(r.samples)])
        r.key_area = float(mask.sum())

    def _step(
        self, t: int, prev: int | None, state: dict[str, np.ndarray | None]
    ) -> dict[str, np.ndarray | None]:
        from masktrack.segment.bilateral_ops import ColourModel, colour_index, splat, texture_index
        from masktrack.segment.classic_ops import dense_flow, flow_error, resolve_overlaps

        bgr, gray = self._frame(t)
        ycc = self._colour(t)
        cidx = colour_index(ycc)
        tidx = texture_index(ycc[..., 0]) if self.opts.w_texture > 0 else None
        flow = err = None
        if prev is not None and (any(m is not None and m.any() for m in state.values()) or self._track):
            gray_prev = self._frame(prev)[1]
            flow = dense_flow(self._dis, gray, gray_prev)  # once per frame pair, for all objects
            err = flow_error(flow, dense_flow(self._dis, gray_prev, gray))
        masks, conf = [], []
        for name in self._names:
            if (t, name) in self._prompts:
                m = self._keymask(t, name)
                self._appearance[name] = ColourModel.from_mask(cidx, m)
                if tidx is not None:
                    self._texture[name] = ColourModel.from_mask(tidx, m)
                if self.opts.w_match > 0:
                    self._remember(name, t, m)
                self._track.pop(name, None)
                masks.append(m)
                conf.append(np.full(m.shape, 2.0, np.float32))
            else:
                m, q = self._label(name, t, prev, state[name], bgr, ycc, cidx, flow, err, tidx)
                masks.append(m)
                conf.append(q)
        out = resolve_overlaps(masks, conf)
        for name, m in zip(self._names, out):
            self._grids[name] = splat(ycc, m, _region(m), self.opts.balance) if m.any() else None
        return dict(zip(self._names, out))

    def _label(
        self,
        name: str,
        t: int,
        prev: int | None,
        m_prev: np.ndarray | None,
        bgr: np.ndarray,
        ycc: np.ndarray,
        cidx: np.ndarray,
        flow: np.ndarray | None,
        err: np.ndarray | None,
        tidx: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One object's mask and confidence on frame ``t`` from its mask on ``prev``."""
        from masktrack.segment.bilateral_ops import (
            BilateralGrid,
            background_motion_logit,
            crop_box,
            edge_weights,
            fill_holes,
            fit_motion,
            location_logit,
            mean_field,
            slice_logit,
        )
        from masktrack.segment.classic_ops import _grid, keep_components, signed_distance, warp_mask

        o = self.opts
        zeros = np.zeros(self._size, bool), np.zeros(self._size, np.float32)
        if m_prev is None or flow is None:
            return zeros
        if not m_prev.any():
            m = self._search(name, bgr, cidx, m_prev, flow)
            return m, m.astype(np.float32)
        warped = warp_mask(m_prev, flow)
        wb = warped > 0.5
        if wb.sum() < 4:
            m = self._search(name, bgr, cidx, np.zeros(self._size, bool), flow)
            return m, m.astype(np.float32)
        h, w = self._size
        radius = float(np.sqrt(wb.sum() / np.pi))
        motion = float(np.percentile(np.abs(flow[wb]), 95)) if wb.any() else 0.0
        crop = crop_box(wb, int(max(8, 0.4 * radius + 2 * motion)))
        assert crop is not None
        recall = self._recall.get(name) if o.w_match > 0 else None
        memory = recall.memory if recall is not None else None
        floor = o.location_floor if memory is not None and recall is not None and recall.exact else -6.0
        unary = o.w_location * location_logit(
            warped[crop], o.sigma, None if err is None else err[crop], floor
        )
        grid = self._grids.get(name)
        if o.w_bilateral > 0 and isinstance(grid, BilateralGrid):
            gx, gy = _grid(h, w)
            xs = gx[crop] + flow[crop][..., 0]
            ys = gy[crop] + flow[crop][..., 1]
            unary += o.w_bilateral * slice_logit(grid, ycc[crop], xs, ys)
        app = self._appearance.get(name)
        if o.w_colour > 0 and app is not None:
            unary += o.w_colour * app.log_odds()[cidx[crop]]
        if o.w_motion > 0:
            models = fit_motion(flow, err, wb, 4 + motion)
            if models is not None:
                gx, gy = _grid(h, w)
                e = None if err is None else err[crop]
                out = signed_distance(wb[crop]) < -(4 + motion)  # where fit_motion sampled the background
                unary += o.w_motion * background_motion_logit(flow[crop], e, models, gx[crop], gy[crop], out)
        if memory is not None:
            unary += o.w_match * memory.log_odds(self._scaled_descriptor(name, t, bgr, crop), o.match_balance)
        tex = self._texture.get(name)
        if tidx is not None and tex is not None:
            unary += o.w_texture * np.clip(tex.log_odds()[tidx[crop]], -TEXTURE_CLIP, TEXTURE_CLIP)
        wx, wy = edge_weights(ycc[crop])
        q_crop = mean_field(unary, wx, wy, o.smooth, o.mf_iterations)
        q = np.zeros(self._size, np.float32)
        q[crop] = q_crop
        m = keep_components(q > 0.5, wb)
        m = fill_holes(m)
        m = self._check_area(name, bgr, cidx, m, warped, flow, tidx)
        return m, q

    def _check_area(
        self,
        name: str,
        bgr: np.ndarray,
        cidx: np.ndarray,
        m: np.ndarray,
        warped: np.ndarray,
        flow: np.ndarray,
        tidx: np.ndarray | None = None,
    ) -> np.ndarray:
        """Keep a running area and box; update the colour model on consistent frames; re-detect on collapse."""
        from masktrack.segment.classic_ops import mask_box

        o = self.opts
        area = float(m.sum())
        tr = self._track.get(name)
        app = self._appearance.get(name)
        sel = warped > 0.5
        motion = -np.median(flow[sel], axis=0) if sel.any() else np.zeros(2)  # backward flow: minus motion
        if tr is None:
            self._track[name] = {"area": area, "box": mask_box(m), "lost": 0, "velocity": motion}
            return m
        if o.recover > 0 and area < o.recover * tr["area"]:
            return self._search(name, bgr, cidx, m, flow)
        if area > tr["area"] / max(o.recover, 0.5):
            tr["area"] = 0.9 * tr["area"] + 0.1 * area  # suspicious growth: follow slowly, do not learn it
        else:
            tr["area"] = 0.8 * tr["area"] + 0.2 * area
            if app is not None:
                app.update(cidx, m, self.opts.colour_rate)
            tex = self._texture.get(name)
            if tex is not None and tidx is not None:
                tex.update(tidx, m, self.opts.colour_rate)
        tr["box"], tr["lost"] = mask_box(m), 0
        tr["velocity"] = 0.5 * tr["velocity"] + 0.5 * motion
        return m

    def _search(
        self,
        name: str,
        bgr: np.ndarray,
        cidx: np.ndarray,
        m: np.ndarray,
        flow: np.ndarray | None = None,
    ) -> np.ndarray:
        """The object is (partly) lost: look for it with its colour model in its last box, grown per lost frame."""
        from masktrack.segment.classic_ops import flow_residual, mask_box, recover_mask

        o = self.opts
        tr = self._track.get(name)
        app = self._appearance.get(name)
        if tr is None or tr["box"] is None or app is None or o.recover <= 0:
            return m
        tr["lost"] += 1
        if tr["lost"] > o.lost_frames:
            return m
        # Where it should be: its last good box moved by its last velocity for every frame it has been
        # lost (fast motion, or an occluder it moves behind), padded more the longer it is lost.
        x0, y0, x1, y1 = tr["box"]
        d = tr["velocity"]
        tr["box"] = (x0 + d[0], y0 + d[1], x1 + d[0], y1 + d[1])
        x0, y0, x1, y1 = tr["box"]
        pad = 0.15 + 0.15 * tr["lost"]
        bw, bh = x1 - x0, y1 - y0
        box = (int(x0 - pad * bw), int(y0 - pad * bh), int(x1 + pad * bw), int(y1 + pad * bh))
        residual = flow_residual(flow) if o.recover_motion and flow is not None and m.any() else None
        cand = recover_mask(bgr, cidx, m, app, box, residual=residual)
        thr = o.recover
        if cand is not None and thr * tr["area"] <= cand.sum() <= tr["area"] / thr:
            tr["box"], tr["lost"] = mask_box(cand), 0
            return cand
        return m

    def close(self) -> None:
        super().close()
        self._grids.clear()
        self._ycc.clear()
        self._residuals.clear()
        self._desc.clear()
        self._recall.clear()


@dataclass
class _Recall:
    """One object's keyframe memory on this pass: the samples of each prompted frame it visited, the
    memory built over them, whether every one was an exact mask (``location_floor``), and its area on the
    latest (the scale the patch boxes follow)."""

    samples: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    memory: Any = None
    exact: bool = True
    key_area: float = 0.0


def _region(mask: np.ndarray) -> tuple[slice, slice]:
    """Where a frame's labels are splatted: the mask's box with a margin of half its size."""
    from masktrack.segment.bilateral_ops import crop_box

    ys, xs = np.nonzero(mask)
    margin = int(max(16, 0.5 * max(np.ptp(ys), np.ptp(xs))))
    box = crop_box(mask, margin)
    assert box is not None
    return box

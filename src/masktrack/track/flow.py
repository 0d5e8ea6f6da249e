"""``flow``: the weight-free default tracker (CPU, OpenCV pyramidal Lucas-Kanade + depth).

Per frame step ``f -> f+1``, for every active query (``t <= f``):

0. **Support points (with masks, ``support_points > 0``).** At the first
   query frame and every ``support_every`` frames after, the instance's
   pixels that no tracked point covers get points of their own, tracked
   like queries through steps 1-5 and never returned, up to
   ``support_points`` points in all (queries first: with that many queries
   there are none).  The motion of a point comes from the measurements of
   *tracked* points (step 5), and queries are a sparse sample of the
   surface the instance showed at the query frame; without support the
   accuracy depended on how many queries the user asked for (RLBench
   gripper, no wrist camera, frame 0: 116 queries 2.9 mm median, 101 of
   them 3.3 mm, random 101 of them 2.9-3.6 mm) and on faces the instance
   turns towards a camera later nothing was measured at all.
1. **Who sees it.** The current 3D estimate is projected into every camera at
   ``f``; a camera sees the point if it lands inside the image, the depth
   there agrees with the projected depth within a few mm (``depth_tol_*``:
   the camera measures the surface under the point's pixel, so a point on a
   face turned away, a few cm behind that surface, must not be measured
   there - it would be pulled onto the near face), and - when the
   instance's masks are given - it lands on the instance.
   This re-projection happens every frame, so a camera that lost a point (or
   never had it) picks it up again as soon as it is visible: the tracks are
   re-anchored in every view by the fused 3D estimate.
2. **2D tracking.** Pyramidal LK from ``f`` to ``f+1`` in each seeing camera,
   started at a constant-velocity prediction, kept only if the backward track
   returns within ``fb_max_px`` and (with masks) lands on the instance.  Each
   camera tracks from its first keyframe (``origin_anchor``: no drift at all
   while the appearance still matches), else from its latest keyframe
   (re-anchoring every ``keyframe_every`` frames, no chained drift), and
   falls back to frame-to-frame flow where both fail.  With masks, LK runs on the
   instance's region of interest only, background flattened.  The window
   is small (5 px): on an object a few tens of pixels across a wide window
   is dominated by the silhouette, which under-measures the object's
   rotation (synthetic gripper, 320 px: a 9 px window saw ~2/3 of its yaw,
   ~1 cm error at its ends); the rigidity step averages the noise.  With the
   rigidity step on, one point per ``measure_cell_px`` pixel cell is tracked
   per camera: queries closer than that in an image share one LK window (a
   small far view of a densely sampled object holds many per pixel), and
   the rigidity step carries the others.
3. **Lift.** Depth at the tracked pixel (bilinear between pixel centres;
   across a depth discontinuity the nearest pixel's depth, never a blend).
   A measurement whose depth is more than ``depth_gate_m`` plus the
   point's last step away from the predicted point's depth is dropped: a
   track a fraction of a pixel off a thin part lands on the silhouette and
   lifts onto the background (on RLBench's 128 px external views, 15 cm to
   2.7 m behind the gripper) - the mask cannot tell, the depth can.
4. **Fuse.** Robust median of the per-camera 3D estimates; estimates farther
   than ``fuse_outlier_m`` from the median are dropped, the rest averaged
   by precision ``(focal / depth)^2``: a close view's pixel is a smaller step
   in metres.
5. **Local rigidity (optional, ``rigidity > 0``).** Each point is moved by the
   robust (IRLS, Cauchy-weighted) rigid transform that best maps nearby
   measured points from the instance's reference geometry (their estimates
   when the queries started, ``rigid_reference="query"``; so per-frame
   errors do not accumulate into its shape) to their fused estimates at
   ``f+1``.  "Nearby"
   is a Gaussian of scale ``rigid_radius_m`` times each measurement's
   precision: where only far, coarse views see a region (1 px can be 1 cm
   there), it borrows the motion of precisely measured surface a few cm
   away, and where precise measurements are local they dominate.  (With
   ``rigid_radius_m = 0``: the ``neighbours`` nearest measurements.)  This is
   a general prior - surfaces move rigidly at the scale of a few cm - not a
   model of any object.  Parts that move relative to each other (joints):
   the robust weights use a scale about the size of one part's per-frame
   motion relative to the next (``rigid_scale_m``), so an anchor's fit
   settles on one part; and a measured point takes, of its
   ``rigid_choose`` nearest anchors' motions, the one that explains its own
   measurement best (a point of a turning turret takes the turret's
   anchor, not the static base's).  Fast relative motion of small parts
   (closing fingers) is still partly pulled towards their neighbours; set
   ``rigid_radius_m = 0`` for strongly articulated or
   deforming instances.  It averages LK noise and
   carries points through frames where no camera sees them.  ``rigidity``
   blends the rigid prediction with the point's own fused measurement
   (1 = rigid prediction only).
   The robust scale of each measurement also counts its expected error,
   ``rigid_noise_px`` pixels of its own view (1 px of a far external view
   is 4-9 mm, beyond ``rigid_scale_m``).  And every anchor whose
   neighbourhood does not reject the *whole instance's* robust rigid fit
   by ``rigid_whole_nats`` of evidence takes that fit instead of its local
   one (``rigid_whole``; :func:`masktrack.track.rigid.prefer_whole`): a
   local fit's six degrees of freedom follow a small cluster of wrong
   measurements, and the points it carries - often the majority no camera
   measures - go with it; parts that really move on their own reject the
   whole-instance motion with every measurement they have.
6. **Temporal smoothing (offline, ``smooth_window > 0``).** After the last
   frame, every point's track is replaced by a robust local quadratic fit
   in time over ``smooth_window`` frames either side
   (:func:`masktrack.track.smooth.smooth_tracks`): each frame's estimate
   used only that frame's measurements, so it carries that frame's tracking
   noise (one pixel of a far view is several mm); the window is symmetric,
   so constant velocity and acceleration pass without lag, and a sample far
   off the local fit (``smooth_scale_m``: a real jump) loses its weight.
   Per point, so parts moving relative to each other are never mixed.

Visibility at ``f`` is "at least one camera sees the point" (step 1).  Frames
before a query's ``t`` are NaN and not visible.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from masktrack.io.scene import Scene
from masktrack.plugins import options_from_dataclass
from masktrack.track.base import Tracker, Tracks
from masktrack.track.geometry import bilinear, in_image, lift, project_cameras, sample_depth
from masktrack.track.instances import Instance
from masktrack.track.rigid import _matmul, rigid_smooth  # noqa: F401  (re-exported: tests, callers)
from masktrack.track.smooth import smooth_tracks


@dataclass(frozen=True)
class FlowOptions:
    method: str = (
        "lk"  # "lk": sparse pyramidal Lucas-Kanade; "dis": dense DIS flow (cost per frame, not per point)
    )
    win: int = 5  # LK window (pixels, odd); small: a wide window is dominated by the silhouette and under-measures rotation
    levels: int = 3  # pyramid levels above the base
    iters: int = 10  # LK iterations per level
    fb_max_px: float = 1.0  # forward-backward disagreement allowed
    keyframe_every: int = 8  # re-anchor: track from a per-camera keyframe this many frames back (1 = off)
    anchor_gate_px: float = 3.0
    depth_tol_m: float = 0.005  # visibility: |depth - projected z| <= depth_tol_m + depth_tol_rel * z (raise for noisy sensors)
    depth_tol_rel: float = 0.005
    use_masks: bool = True  # use the instance masks (when the caller passes them)
    mask_dilate_px: int = 2
    mask_images: bool = True  # track on images with the background (outside the dilated mask) flattened
    mask_fill: int = 128
    measure_cell_px: float = (
        1.0  # with rigidity: measure (2D-track) one point per cell of this size per camera; 0 = all
    )
    fuse_outlier_m: float = 0.02
    rigidity: float = 1.0  # 0 = off
    rigid_radius_m: float = 0.05  # rigid neighbourhood: Gaussian of this scale over all measurements, confidence-weighted; 0 = k nearest
    neighbours: int = 24  # (with rigid_radius_m = 0)
    rigid_iters: int = 4
    rigid_anchors: int = (
        64  # fit at most this many neighbourhoods per frame; other points take their nearest anchor's motion
    )
    rigid_choose: int = (
        4  # a measured point takes the best-fitting motion of its this many nearest anchors (articulation)
    )
    rigid_scale_m: float = 0.003  # Cauchy scale of the robust rigid fit: about the per-frame motion of one part relative to the next
    margin_px: float = 2.0
    rigid_reference: Literal["query", "frame"] = (
        "query"  # fit the rigid motion from the geometry when the queries started, or from the last frame's estimates
    )
    rigid_support: int = 0  # > 0: robust iterations widen each anchor's scale to this many measurements (rigid.fit_kernel); helps rigid instances seen coarsely, hurts articulated ones
    origin_anchor: bool = True  # track from each camera's first keyframe before its latest one (no drift where the appearance still matches)
    anchor_levels: int = 0  # pyramid levels of keyframe/origin tracks: they start at the prediction and are gated to anchor_gate_px, so need no coarse search
    depth_gate_m: float = (
        0.03  # drop a measurement whose depth is this far from the predicted point's depth (0 = off)
    )
    rigid_noise_px: float = 1.0  # expected tracking error (px): widens the rigid fit's robust scale by each measurement's pixel size
    rigid_whole: bool = True  # anchors whose neighbourhood does not reject the whole instance's rigid fit take it (kernel mode)
    rigid_whole_nats: float = 3.0  # evidence (Cauchy log-likelihood, kernel-weighted) a local fit needs to beat the whole-instance fit
    smooth_window: int = 2  # offline: each point's estimate is a robust quadratic in time over this many frames either side (0 = off): averages per-frame tracking noise without lag
    smooth_scale_m: float = 0.005  # Cauchy scale of the smoothing's robust weights: above the per-frame noise (2-5 mm), below a real jump (cm)
    support_points: int = 1024  # with masks: track up to this many points in all (queries first); the rest of the budget goes to support points on the instance's pixels, never returned (0 = off)
    support_every: int = 8  # frames between support refreshes: pixels of the instance no tracked point covers get new support points (0 = at the first query frame only)


# `-o key=value` / batch `track.options` as a typed model (masktrack.plugins): FlowOptions' names and
# defaults, the bounds here.
FLOW_OPTIONS = options_from_dataclass(
    FlowOptions,
    "FlowOptionsModel",
    method=Literal["lk", "dis"],
    win=Field(ge=1),
    levels=Field(ge=0),
    iters=Field(ge=1),
    fb_max_px=Field(gt=0),
    keyframe_every=Field(ge=1),
    anchor_gate_px=Field(gt=0),
    depth_tol_m=Field(ge=0),
    depth_tol_rel=Field(ge=0),
    mask_dilate_px=Field(ge=0),
    mask_fill=Field(ge=0, le=255),
    measure_cell_px=Field(ge=0),
    fuse_outlier_m=Field(gt=0),
    rigidity=Field(ge=0),
    rigid_radius_m=Field(ge=0),
    neighbours=Field(ge=1),
    rigid_iters=Field(ge=0),
    rigid_anchors=Field(ge=1),
    rigid_choose=Field(ge=1),
    rigid_scale_m=Field(gt=0),
    margin_px=Field(ge=0),
    rigid_reference=Literal["query", "frame"],
    rigid_support=Field(ge=0),
    anchor_levels=Field(ge=0),
    depth_gate_m=Field(ge=0),
    rigid_noise_px=Field(ge=0),
    rigid_whole_nats=Field(ge=0),
    smooth_window=Field(ge=0),
    smooth_scale_m=Field(ge=0),
    support_points=Field(ge=0),
    support_every=Field(ge=0),
)


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return mask
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def _bbox(mask: np.ndarray, pad: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the mask's bounding box grown by ``pad``, clipped to the image; empty -> zeros."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return (0, 0, 0, 0)
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        max(rows[0] - pad, 0),
        min(rows[-1] + 1 + pad, h),
        max(cols[0] - pad, 0),
        min(cols[-1] + 1 + pad, w),
    )


class _Frame:
    """What the tracker needs of one frame: depth, masks (stacked over cameras) and gray images per camera.

    With masks and ``mask_images``, a camera's gray image is only made for the
    instance's region of interest (its bounding box grown by the LK reach):
    outside it the flattened image is constant, so nothing there is computed.
    Gray images are made lazily, only for cameras that track something.
    """

    def __init__(self, scene: Scene, f: int, opts: FlowOptions, masks: np.ndarray | None) -> None:
        self.f = f
        self.scene = scene
        self.opts = opts
        self.depth = np.asarray(scene.depths[:, f], np.float32)  # [C, H, W]
        self.instance_mask = masks  # [C, H, W] bool (undilated) or None
        self.K = np.asarray(scene.intrs[:, f], np.float64)
        self.E = np.asarray(scene.extrs[:, f], np.float64)
        self.mask = (
            None
            if masks is None
            else [_dilate(masks[c], opts.mask_dilate_px) for c in range(scene.num_cameras)]
        )
        self.maskf = None if self.mask is None else np.stack(self.mask).astype(np.float32)
        self.flat = self.mask is not None and opts.mask_images
        h, w = scene.size
        # the LK window's reach at the coarsest level, plus the pyramid filter's
        self.pad = (opts.win // 2 + 3) * 2**opts.levels
        self.roi = (
            [_bbox(m, self.pad) for m in self.mask]
            if self.flat and self.mask is not None
            else [(0, h, 0, w)] * scene.num_cameras
        )
        self._gray: dict[int, np.ndarray] = {}
        self._dense: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def gray(self, c: int) -> np.ndarray:
        """Camera c's gray image over ``roi[c]`` (background flattened when masked)."""
        if c not in self._gray:
            y0, y1, x0, x1 = self.roi[c]
            g = _gray(self.scene.rgbs[c, self.f, y0:y1, x0:x1])
            if self.flat and self.mask is not None:
                # flatten everything off the instance: a static background inside the LK window
                # would otherwise drag points near the silhouette towards zero motion
                g = np.where(self.mask[c][y0:y1, x0:x1], g, np.uint8(self.opts.mask_fill))
            self._gray[c] = g
        return self._gray[c]

    def canvas(self, c: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """Camera c's gray image over ``box`` (which contains ``roi[c]``)."""
        y0, y1, x0, x1 = self.roi[c]
        if box == self.roi[c]:
            return self.gray(c)
        out = np.full((box[1] - box[0], box[3] - box[2]), np.uint8(self.opts.mask_fill))
        if y1 > y0 and x1 > x0:
            out[y0 - box[0] : y1 - box[0], x0 - box[2] : x1 - box[2]] = self.gray(c)
        return out


def _pair(a: _Frame, b: _Frame, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera c's images of frames a and b over one common box, and the box's (x0, y0) offset."""
    ra, rb = a.roi[c], b.roi[c]
    if ra[1] <= ra[0] or ra[3] <= ra[2]:
        ra = rb
    if rb[1] <= rb[0] or rb[3] <= rb[2]:
        rb = ra
    box = (min(ra[0], rb[0]), max(ra[1], rb[1]), min(ra[2], rb[2]), max(ra[3], rb[3]))
    return a.canvas(c, box), b.canvas(c, box), np.array([box[2], box[0]], np.float64)


def _sees(
    fr: _Frame, X: np.ndarray, opts: FlowOptions, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(seen bool [C, N], uv [C, N, 2]) of world points X in every camera at frame fr (one batched pass)."""
    uv, z = project_cameras(X, fr.K, fr.E)
    C, n = z.shape
    ok = in_image(uv.reshape(-1, 2), size, opts.margin_px).reshape(C, n) & (z > 0)
    seen = np.zeros((C, n), bool)
    cam, idx = np.nonzero(ok)
    if idx.size:
        p = uv[cam, idx]
        zz = z[cam, idx]
        d = sample_depth(fr.depth, p, cam=cam)
        good = (d > 0) & (np.abs(d - zz) <= opts.depth_tol_m + opts.depth_tol_rel * zz)
        if fr.maskf is not None:
            good &= bilinear(fr.maskf, p, cam=cam) > 0.25
        seen[cam[good], idx[good]] = True
    return seen, uv


def _thin(uv: np.ndarray, prefer: np.ndarray, cell: float) -> np.ndarray:
    """Indices of one point per ``cell`` x ``cell`` pixel block (``prefer``-ed points first, then the lowest index).

    Points closer than the LK window in one image give nearly the same
    measurement; the rigid step carries the others.
    """
    n = len(uv)
    cu = np.floor(uv / cell).astype(np.int64)
    key = (cu[:, 1] << 32) + cu[:, 0]
    order = np.lexsort((np.arange(n), ~prefer, key))
    ks = key[order]
    first = np.ones(n, bool)
    first[1:] = ks[1:] != ks[:-1]
    return np.sort(order[first])


@dataclass
class _State:
    """What the tracker carries from frame to frame (per query unless said otherwise)."""

    n: int  # the first n rows are the queries; the rest are support slots (``_support``), never returned
    q: np.ndarray  # [N, 4] queries (t, x, y, z)
    qt: np.ndarray  # int [N] query frames (T: a support slot not in use)
    X: np.ndarray  # [N, 3] current estimate (NaN before the query frame)
    Xprev: np.ndarray  # [N, 3] the estimate one frame earlier (constant-velocity prediction)
    ref: np.ndarray  # [N, 3] the reference geometry: the estimates when queries last started
    kf: list[_Frame | None]  # per camera: the keyframe its points are re-anchored to
    kf_uv: np.ndarray  # [C, N, 2] pixels of the points at their camera's keyframe (NaN = not anchored)
    kf0: list[_Frame | None]  # per camera: its first keyframe (origin_anchor)
    kf0_uv: np.ndarray  # [C, N, 2] pixels there
    tracks: np.ndarray  # float32 [T, N, 3] output
    vis: np.ndarray  # bool [T, N] output

    @classmethod
    def start(cls, q: np.ndarray, T: int, C: int, slots: int = 0) -> _State:
        nq = len(q)
        q = np.concatenate([q, np.full((slots, 4), np.nan)])
        n = len(q)
        qt = np.full(n, T, np.int64)
        qt[:nq] = np.clip(np.rint(q[:nq, 0]).astype(np.int64), 0, T - 1)
        return cls(
            n=nq,
            q=q,
            qt=qt,
            X=np.full((n, 3), np.nan),
            Xprev=np.full((n, 3), np.nan),
            ref=np.full((n, 3), np.nan),
            kf=[None] * C,
            kf_uv=np.full((C, n, 2), np.nan),
            kf0=[None] * C,
            kf0_uv=np.full((C, n, 2), np.nan),
            tracks=np.full((T, n, 3), np.nan, np.float32),
            vis=np.zeros((T, n), bool),
        )


@dataclass
class _Step:
    """One frame step f -> f+1 over the active queries (``active`` indexes the state's arrays)."""

    f: int
    active: np.ndarray  # int [A]
    X: np.ndarray  # [A, 3] estimates at f
    seen: np.ndarray  # bool [C, A]: camera c sees the point at f
    uv: np.ndarray  # [C, A, 2] its pixels at f
    pred: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))  # [A, 3] predicted at f+1
    guess: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 2)))  # [C, A, 2] predicted pixels
    zpred: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # [C, A] predicted depths there
    speed: np.ndarray = field(default_factory=lambda: np.empty(0))  # [A] length of the last step (m)


class FlowTracker(Tracker):
    """Weight-free multi-view LK + depth tracker (see the module docstring)."""

    name: ClassVar[str] = "flow"
    Options = FLOW_OPTIONS

    def __init__(self, **options: Any) -> None:
        self.options = FlowOptions(**options)

    def fingerprint(self) -> dict[str, Any]:
        return {"tracker": self.name, "version": 8, **asdict(self.options)}

    def _flow(
        self,
        a: _Frame,
        b: _Frame,
        c: int,
        p0: np.ndarray,
        guess: np.ndarray,
        check: bool = True,
        levels: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Track pixels p0 [n, 2] of camera c from frame a to b; returns (p1 [n, 2], ok [n]).

        ``check``: ok also requires the backward track to return within
        ``fb_max_px`` (otherwise only the forward status).  Both directions
        run on the same pair of images over the instance's region of interest.
        ``levels``: pyramid levels (default ``options.levels``).
        """
        import cv2

        opts = self.options
        ga, gb, off = _pair(a, b, c)
        if ga.size == 0:
            return guess.copy(), np.zeros(len(p0), bool)
        if opts.method == "dis":
            key = (b.f, c)
            if key not in a._dense:
                a._dense[key] = (self._dis.calc(ga, gb, None), off)
                b._dense[(a.f, c)] = (self._dis.calc(gb, ga, None), off)
            (fw, o), (bw, _) = a._dense[key], b._dense[(a.f, c)]
            p1 = p0 + bilinear(fw, p0 - o)
            pb = p1 + bilinear(bw, p1 - o)
            fb = np.linalg.norm(pb - p0, axis=1)
            return p1, fb <= opts.fb_max_px
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, opts.iters, 0.01)
        lk = dict(
            winSize=(opts.win, opts.win),
            maxLevel=opts.levels if levels is None else levels,
            criteria=crit,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        )
        q0 = (p0 - off).astype(np.float32).reshape(-1, 1, 2)
        q1, st1, _ = cv2.calcOpticalFlowPyrLK(
            ga, gb, q0, (guess - off).astype(np.float32).reshape(-1, 1, 2), **lk
        )
        p1 = q1.reshape(-1, 2).astype(np.float64) + off
        if not check:
            return p1, st1.ravel() == 1
        qb, st2, _ = cv2.calcOpticalFlowPyrLK(gb, ga, q1, q0.copy(), **lk)
        fb = np.linalg.norm(qb.reshape(-1, 2) - q0.reshape(-1, 2), axis=1)
        return p1, (st1.ravel() == 1) & (st2.ravel() == 1) & (fb <= opts.fb_max_px)

    def _track_camera(
        self,
        c: int,
        cur: _Frame,
        nxt: _Frame,
        kf: list,
        kf_uv: np.ndarray,
        ids: np.ndarray,
        p0: np.ndarray,
        guess: np.ndarray,
        origin: tuple[list, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """2D tracks in camera c from ``cur`` to ``nxt`` of points ``ids`` (query indices) at pixels p0.

        Keyframe first: chained frame-to-frame flow accumulates a small bias
        every frame, tracking from camera c's keyframe directly (started at
        the motion prediction ``guess``) does not.  Where the keyframe track
        fails its forward-backward check or lands more than
        ``anchor_gate_px`` from the prediction, frame-to-frame flow is used.
        ``origin`` (the camera's first keyframe and its pixels) is tried
        before the keyframe: where the appearance still matches, the track
        has no drift at all since then.
        Anchor tracks run on ``anchor_levels`` pyramid levels (0: the full
        image only): they start at the prediction and only results within
        ``anchor_gate_px`` of it are kept, so a coarse search has nothing to
        find - and on an instance's small region of interest it does harm:
        a 60 px high box is 7 px at level 3, where the window sees mostly
        the flattened background and LK runs off (on the RLBench gripper
        almost every origin/keyframe track failed from ~10 frames on).
        Returns (pixels [n, 2], ok [n]).
        """
        opts = self.options
        p1 = guess.copy()
        ok = np.zeros(len(ids), bool)
        used = np.zeros(len(ids), bool)
        levels = [(kf[c], kf_uv)] if origin is None else [(origin[0][c], origin[1]), (kf[c], kf_uv)]
        for k, k_uv in levels:
            if opts.keyframe_every <= 1 or k is None or k is cur:
                continue
            anchors = k_uv[c, ids]
            sel = np.flatnonzero(np.isfinite(anchors[:, 0]) & ~used)
            if sel.size:
                start = guess[sel]
                pa, oka = self._flow(k, nxt, c, anchors[sel], start, levels=opts.anchor_levels)
                use = oka & (np.linalg.norm(pa - start, axis=1) <= opts.anchor_gate_px)
                p1[sel[use]] = pa[use]
                ok[sel[use]] = True
                used[sel[use]] = True
        rest = np.flatnonzero(~used)  # no keyframe track: frame-to-frame flow
        if rest.size:
            p1[rest], ok[rest] = self._flow(cur, nxt, c, p0[rest], guess[rest])
        return p1, ok

    def track(self, scene: Scene, queries: np.ndarray, *, instance: Instance | None = None) -> Tracks:
        """The module docstring's loop: per frame step, support, predict, keyframe, measure, fuse, update."""
        opts = self.options
        if opts.method == "dis":
            import cv2

            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        q = np.asarray(queries, np.float64).reshape(-1, 4)
        T, n = scene.num_frames, len(q)
        t0 = time.perf_counter()
        if n == 0:
            return Tracks(
                np.full((T, 0, 3), np.nan, np.float32),
                np.zeros((T, 0), bool),
                q.astype(np.float32),
                provenance=self.fingerprint(),
            )
        packed = instance.packed() if (instance is not None and opts.use_masks) else None
        slots = max(opts.support_points - n, 0) if packed is not None else 0
        st = _State.start(q, T, scene.num_cameras, slots)

        def frame(f: int) -> _Frame:
            masks = None
            if packed is not None:
                masks = np.unpackbits(np.asarray(packed[:, f]), axis=-1, count=scene.size[1]).astype(bool)
            return _Frame(scene, f, opts, masks)

        first = int(st.qt.min())
        cur = frame(first)
        for f in range(first, T):
            self._support(st, cur, f, first)
            step = self._observe(st, cur, f)
            if f == T - 1:
                break
            nxt = frame(f + 1)
            self._predict(st, step, nxt)
            self._keyframe(st, step, cur)
            meas, prec = self._measure(st, step, cur, nxt)
            fused, weight = _fuse(meas, prec, opts.fuse_outlier_m)
            self._update(st, step, fused, weight)
            cur = nxt
        self._smooth(st)
        elapsed = time.perf_counter() - t0
        prov = {
            **self.fingerprint(),
            "seconds": round(elapsed, 3),
            "point_frames": int((T - st.qt[:n]).sum()),
        }
        return Tracks(st.tracks[:, :n], st.vis[:, :n], q.astype(np.float32), provenance=prov)

    # ------------------------------------------------------------ the steps of one frame f -> f+1
    def _support(self, st: _State, cur: _Frame, f: int, first: int) -> None:
        """Support points: the instance's pixels that no tracked point covers get points of their own (step 0).

        The rigid fit (step 5) can only use measurements of the points the
        tracker tracks, and the queries are a sparse sample of the surface the
        instance showed at the query frame: a few per pixel of a far view, and
        none at all on the faces it turns towards a camera later (RLBench
        gripper without the wrist camera: at the query frame the front view
        sees 15 of its pixels, from frame 20 on 200-440, none of them a
        query's).  So at the first query frame and every ``support_every``
        frames after, each camera's instance pixels whose pixel cell no
        point seen there covers get a support point, lifted with that
        frame's depth: tracked like a query, never returned.  The pixels are
        not eroded (on a small object the silhouette is much of its texture:
        in a first-frame-only variant, eroded pixels gave RLBench frame 0 at
        the CLI's density 3.0 mm, all pixels 2.5),
        but a pixel whose depth disagrees with its neighbours' on the mask is
        skipped (:func:`_consistent_depth`: flying pixels of real sensors).
        The budget is ``support_points`` points in all, queries first (with
        that many queries there are no support points and no extra cost);
        support points no camera sees any more free their slots, so the
        budget follows the surface the cameras see now.  Where the pixels
        exceed the budget, the ones farthest from every tracked point are
        taken (:func:`_fill_gaps`): support goes where the queries are
        sparsest (a plain farthest-point spread put it next to queries and
        cost the densely queried synthetic gripper 0.15 mm).
        New points re-base the reference geometry (step 5) as queries that
        start later always did.
        """
        opts = self.options
        T = len(st.tracks)
        if len(st.qt) == st.n or cur.instance_mask is None:
            return
        if f != first and (opts.support_every <= 0 or (f - first) % opts.support_every):
            return
        active = np.flatnonzero(st.qt <= f)
        starts = (st.qt[active] == f)[:, None]  # queries starting now are where they were sampled
        Xa = np.where(starts, st.q[active, 1:4], st.X[active])
        seen, uv = _sees(cur, Xa, opts, cur.scene.size)
        gone = active[(active >= st.n) & ~seen.any(axis=0)]  # support no camera sees: free its slot
        st.qt[gone] = T
        free = np.flatnonzero(st.qt[st.n :] >= T) + st.n
        if free.size == 0:
            return
        cell = max(opts.measure_cell_px, 1.0)
        pts = []
        for c in range(len(cur.K)):
            v, u = np.nonzero(_consistent_depth(cur.depth[c], cur.instance_mask[c], opts))
            if u.size == 0:
                continue
            key = (np.floor((v + 0.5) / cell).astype(np.int64) << 32) + np.floor((u + 0.5) / cell).astype(
                np.int64
            )
            taken = np.floor((uv[c, seen[c]] + 0.5) / cell).astype(np.int64)
            _, first_px = np.unique(key, return_index=True)  # one pixel per cell
            keep = first_px[~np.isin(key[first_px], (taken[:, 1] << 32) + taken[:, 0])]
            if keep.size:
                px = np.stack([u[keep], v[keep]], axis=1).astype(np.float64)
                pts.append(lift(px, cur.depth[c][v[keep], u[keep]], cur.K[c], cur.E[c]))
        if not pts:
            return
        X = np.concatenate(pts)
        if len(X) > free.size:
            X = X[:: max(len(X) // (16 * free.size), 1)]  # an even subset in each image bounds the cost
            kept = Xa[(st.qt[active] <= f) & np.isfinite(Xa).all(axis=1)]  # not the slots freed above
            X = X[_fill_gaps(X, kept, min(free.size, len(X)))]
        slot = free[: len(X)]
        st.q[slot] = np.concatenate([np.full((len(X), 1), float(f)), X], axis=1)
        st.qt[slot] = f
        st.kf_uv[:, slot] = np.nan  # a freed slot's anchors belonged to another point
        st.kf0_uv[:, slot] = np.nan

    def _observe(self, st: _State, cur: _Frame, f: int) -> _Step:
        """Start the queries sampled at f; record every active point's estimate and who sees it (step 1)."""
        new = st.qt == f
        st.X[new] = st.q[new, 1:4]
        st.Xprev[new] = np.nan
        active = np.flatnonzero(st.qt <= f)
        Xa = st.X[active]
        if new.any():  # the instance's geometry now is the reference its later motion is fitted from
            st.ref[active] = Xa
        seen, uv = _sees(cur, Xa, self.options, cur.scene.size)
        st.tracks[f, active] = Xa
        st.vis[f, active] = seen.any(axis=0)
        return _Step(f=f, active=active, X=Xa, seen=seen, uv=uv)

    def _predict(self, st: _State, step: _Step, nxt: _Frame) -> None:
        """Constant-velocity prediction (world) for the LK start and for points no camera measures."""
        prev = st.Xprev[step.active]
        vel = np.where(np.isfinite(prev), step.X - prev, 0.0)
        step.pred = step.X + vel
        step.speed = np.linalg.norm(vel, axis=1)
        step.guess, step.zpred = project_cameras(step.pred, nxt.K, nxt.E)

    def _keyframe(self, st: _State, step: _Step, cur: _Frame) -> None:
        """Per camera: every ``keyframe_every`` frames, ``cur`` becomes the keyframe its points are re-anchored to."""
        k = self.options.keyframe_every
        if k <= 1:
            return
        for c in range(len(st.kf)):
            idx = np.flatnonzero(step.seen[c])
            kf = st.kf[c]
            if idx.size and (kf is None or step.f - kf.f >= k):
                st.kf[c] = cur  # anchor every point camera c sees now
                st.kf_uv[c] = np.nan
                st.kf_uv[c, step.active[idx]] = step.uv[c, idx]
                if st.kf0[c] is None:  # the camera's first keyframe stays: the drift-free origin
                    st.kf0[c] = cur
                    st.kf0_uv[c] = st.kf_uv[c]

    def _measure(self, st: _State, step: _Step, cur: _Frame, nxt: _Frame) -> tuple[np.ndarray, np.ndarray]:
        """2D-track in every seeing camera and lift with depth (steps 2-3).

        Returns (per-camera 3D measurements [C, A, 3], precisions [C, A]:
        inverse variance (focal / depth)^2 = 1 / (metres per pixel)^2, 0 = none).
        """
        opts = self.options
        C, size = len(st.kf), cur.scene.size
        thin = opts.measure_cell_px > 0 and opts.rigidity > 0
        active = step.active
        cams, pts, p1s, oks = [], [], [], []
        for c in range(C):
            idx = np.flatnonzero(step.seen[c])
            if idx.size == 0:
                continue
            if thin and idx.size > 1:
                idx = idx[
                    _thin(step.uv[c, idx], np.isfinite(st.kf_uv[c, active[idx], 0]), opts.measure_cell_px)
                ]
            p0 = step.uv[c, idx]
            guess = np.where(np.isfinite(step.guess[c, idx]), step.guess[c, idx], p0)
            origin = (st.kf0, st.kf0_uv) if opts.origin_anchor else None
            p1, ok = self._track_camera(c, cur, nxt, st.kf, st.kf_uv, active[idx], p0, guess, origin)
            cams.append(np.full(idx.size, c))
            pts.append(idx)
            p1s.append(p1)
            oks.append(ok)
        meas = np.full((C, active.size, 3), np.nan)
        prec = np.zeros((C, active.size))
        if cams:
            cam, idx, p1, ok = (np.concatenate(v) for v in (cams, pts, p1s, oks))
            ok &= in_image(p1, size, opts.margin_px)
            if nxt.maskf is not None:
                ok &= bilinear(nxt.maskf, np.where(np.isfinite(p1), p1, 0), cam=cam) > 0.25
            cam, idx, p1 = cam[ok], idx[ok], p1[ok]
            d = sample_depth(nxt.depth, p1, cam=cam)
            good = d > 0
            if opts.depth_gate_m > 0:  # a pixel next to the silhouette that lifts onto the background
                gate = opts.depth_gate_m + step.speed[idx]  # the prediction is off by about its last step
                good &= ~(np.abs(d - step.zpred[cam, idx]) > gate)
            cam, idx, p1, d = cam[good], idx[good], p1[good], d[good]
            meas[cam, idx] = lift(p1, d, nxt.K[cam], nxt.E[cam])
            prec[cam, idx] = (nxt.K[cam, 0, 0] / d) ** 2
        return meas, prec

    def _update(self, st: _State, step: _Step, fused: np.ndarray, weight: np.ndarray) -> None:
        """New estimates: the local rigid motion (step 5) blended with the fused measurement, else the prediction."""
        opts = self.options
        Xa, pred = step.X, step.pred
        has = weight > 0
        if opts.rigidity > 0:
            # "query": fit the motion from the reference geometry (not from the last estimates), so
            # per-frame errors do not accumulate into the shape; "frame": from the last estimates
            query_ref = opts.rigid_reference == "query"
            src = st.ref[step.active] if query_ref else Xa
            rig, rok = rigid_smooth(
                src,
                np.where(has[:, None], fused, Xa),
                weight,
                opts.neighbours,
                opts.rigid_iters,
                opts.rigid_scale_m,
                opts.rigid_anchors,
                radius=opts.rigid_radius_m,
                choose=opts.rigid_choose,
                support=opts.rigid_support,
                noise_px=opts.rigid_noise_px,
                whole_nats=opts.rigid_whole_nats if opts.rigid_whole else None,
            )
            new_pos = np.where(has[:, None], opts.rigidity * rig + (1 - opts.rigidity) * fused, rig)
            new_pos = np.where(rok[:, None], new_pos, np.where(has[:, None], fused, pred))
        else:
            new_pos = np.where(has[:, None], fused, pred)
        st.Xprev[step.active] = Xa
        st.X[step.active] = new_pos

    # ------------------------------------------------------------ after the last frame
    def _smooth(self, st: _State) -> None:
        """Offline temporal smoothing of every point's track (step 6, :mod:`masktrack.track.smooth`).

        Each frame's estimate came from that frame's measurements only, so it
        carries that frame's tracking noise; the frames after it are known
        too (the tracker is offline), so a symmetric window averages the noise
        without lagging behind the motion.  It runs on the output only: the
        frame-by-frame loop (visibility, predictions, gates) is unchanged.
        """
        opts = self.options
        if opts.smooth_window > 0:
            st.tracks = smooth_tracks(
                st.tracks[:, : st.n], st.qt[: st.n], half=opts.smooth_window, scale=opts.smooth_scale_m
            ).astype(np.float32)


def _fill_gaps(X: np.ndarray, tracked: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` of the candidates X [m, 3], each in turn the one farthest from the tracked points and those chosen.

    Greedy farthest-point sampling that starts from the points already
    tracked: support goes where the tracked set is sparsest, not next to a
    query that already measures there.
    """
    if len(tracked):
        from scipy.spatial import cKDTree

        dist = cKDTree(tracked).query(X)[0] ** 2
    else:
        dist = np.full(len(X), np.inf)
    idx = np.empty(k, np.int64)
    for i in range(k):
        j = int(np.argmax(dist))
        idx[i] = j
        np.minimum(dist, ((X - X[j]) ** 2).sum(axis=1), out=dist)
    return np.sort(idx)


def _consistent_depth(depth: np.ndarray, mask: np.ndarray, opts: FlowOptions) -> np.ndarray:
    """Mask pixels whose depth agrees with the median of their valid 3x3 neighbours on the mask.

    Real sensors put flying pixels (depths between the object and what is
    behind it) and wobbling depths on silhouettes; lifted, such a pixel is
    centimetres off the object, and a farthest-point choice would even
    prefer it (it is far from everything).  The tolerance is the visibility
    test's (``depth_tol_m + depth_tol_rel * z``).  Exact (simulated)
    silhouettes pass: their neighbours on the mask share their surface.
    """
    ok = mask & (depth > 0)
    v, u = np.nonzero(ok)
    if u.size == 0:
        return ok
    d = np.pad(np.where(ok, depth, np.nan), 1, constant_values=np.nan)
    nb = np.stack([d[v + 1 + dv, u + 1 + du] for dv in (-1, 0, 1) for du in (-1, 0, 1) if dv or du], axis=1)
    cnt = np.isfinite(nb).sum(axis=1)
    has = cnt > 0
    srt = np.sort(
        np.where(np.isfinite(nb), nb, np.inf), axis=1
    )  # the valid ones first (np.nanmedian is slow)
    rows = np.arange(len(nb))
    med = 0.5 * (srt[rows, np.maximum(cnt - 1, 0) // 2] + srt[rows, cnt // 2])
    z = depth[v, u]
    keep = has & (np.abs(z - med) <= opts.depth_tol_m + opts.depth_tol_rel * z)
    out = np.zeros_like(ok)
    out[v[keep], u[keep]] = True
    return out


def _fuse(meas: np.ndarray, prec: np.ndarray, outlier: float) -> tuple[np.ndarray, np.ndarray]:
    """Fuse the cameras' estimates [C, N, 3] with precisions [C, N] (0 = none).

    Robust centre: the weighted median per coordinate; estimates farther than
    ``outlier`` from it are dropped and the rest averaged by precision.
    Returns (fused [N, 3], total precision [N]; 0 where no camera measured).
    """
    C, N = prec.shape
    out = np.full((N, 3), np.nan)
    weight = np.zeros(N)
    has = (prec > 0).any(axis=0)
    if not has.any():
        return out, weight
    m, w = meas[:, has], prec[:, has]
    med = np.stack([_weighted_median(m[..., k], w) for k in range(3)], axis=1)
    dist = np.linalg.norm(np.where(w[..., None] > 0, m, 0.0) - med, axis=2)
    keep = (w > 0) & (dist <= outlier)
    wk = np.where(keep, w, 0.0)
    tot = wk.sum(axis=0)
    avg = (np.where(keep[..., None], m, 0.0) * wk[..., None]).sum(axis=0) / np.maximum(tot, 1e-12)[:, None]
    out[has] = np.where(tot[:, None] > 0, avg, med)
    weight[has] = np.where(tot > 0, tot, w.max(axis=0) * 0.1)
    return out, weight


def _weighted_median(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Column-wise weighted median of v [C, N] with weights w [C, N] (zero weight = absent)."""
    v = np.where(w > 0, v, np.inf)
    order = np.argsort(v, axis=0)
    vs = np.take_along_axis(v, order, axis=0)
    ws = np.take_along_axis(w, order, axis=0)
    cw = np.cumsum(ws, axis=0)
    half = cw[-1] / 2
    i = (cw < half[None]).sum(axis=0)
    return np.take_along_axis(vs, i[None], axis=0)[0]

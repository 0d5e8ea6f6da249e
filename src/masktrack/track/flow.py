"""``flow``: the weight-free default tracker (CPU, OpenCV pyramidal Lucas-Kanade + depth).

Per frame step ``f -> f+1``, for every active query (``t <= f``):

1. **Who sees it.** The current 3D estimate is projected into every camera at
   ``f``; a camera sees the point if it lands inside the image, the depth
   there agrees with the projected depth (so occluded views are rejected),
   and - when the instance's masks are given - it lands on the instance.
   This re-projection happens every frame, so a camera that lost a point (or
   never had it) picks it up again as soon as it is visible: the tracks are
   re-anchored in every view by the fused 3D estimate.
2. **2D tracking.** Pyramidal LK from ``f`` to ``f+1`` in each seeing camera,
   started at a constant-velocity prediction, kept only if the backward track
   returns within ``fb_max_px`` and (with masks) lands on the instance.
3. **Lift.** Depth at the tracked pixel (bilinear between pixel centres;
   across a depth discontinuity the nearest pixel's depth, never a blend).
4. **Fuse.** Robust median of the per-camera 3D estimates; estimates farther
   than ``fuse_outlier_m`` from the median are dropped, the rest averaged.
5. **Local rigidity (optional, ``rigidity > 0``).** Each point is moved by the
   robust (IRLS, Cauchy-weighted) rigid transform that best maps its ``k``
   nearest active neighbours from ``f`` to their fused estimates at ``f+1``.
   This is a general prior - surfaces move locally rigidly - not a model of
   any object: an articulated or deforming instance is fine as long as it is
   rigid at the scale of ``k`` neighbours.  It averages LK noise over the
   neighbourhood and carries points through frames where no camera sees them.
   ``rigidity`` blends the rigid prediction with the point's own fused
   measurement (1 = rigid prediction only).

Visibility at ``f`` is "at least one camera sees the point" (step 1).  Frames
before a query's ``t`` are NaN and not visible.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from masktrack.io.scene import Scene
from masktrack.track.base import Tracker, Tracks
from masktrack.track.geometry import bilinear, in_image, lift, project, sample_depth
from masktrack.track.instances import Instance


@dataclass(frozen=True)
class FlowOptions:
    method: str = "lk"  # "lk": sparse pyramidal Lucas-Kanade; "dis": dense DIS flow (cost per frame, not per point)
    win: int = 9  # LK window (pixels, odd)
    levels: int = 3  # pyramid levels above the base
    iters: int = 10  # LK iterations per level
    fb_max_px: float = 1.0  # forward-backward disagreement allowed
    keyframe_every: int = 8  # re-anchor: track from a per-camera keyframe this many frames back (1 = off)
    anchor_gate_px: float = 3.0
    depth_tol_m: float = 0.02  # visibility: |depth - projected z| <= depth_tol_m + depth_tol_rel * z
    depth_tol_rel: float = 0.02
    use_masks: bool = True  # use the instance masks (when the caller passes them)
    mask_dilate_px: int = 2
    mask_images: bool = True  # track on images with the background (outside the dilated mask) flattened
    mask_fill: int = 128
    fuse_outlier_m: float = 0.02
    rigidity: float = 1.0  # 0 = off
    neighbours: int = 24
    rigid_iters: int = 2
    rigid_anchors: int = 256  # fit at most this many neighbourhoods per frame; other points take their nearest anchor's motion
    rigid_scale_m: float = 0.01  # Cauchy scale of the robust rigid fit
    margin_px: float = 2.0


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return mask
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


class _Frame:
    """What the tracker needs of one frame: gray images, pyramids, depth, masks per camera."""

    def __init__(self, scene: Scene, f: int, opts: FlowOptions, masks: np.ndarray | None) -> None:
        self.f = f
        self.gray = [_gray(scene.rgbs[c, f]) for c in range(scene.num_cameras)]
        self.depth = [np.asarray(scene.depths[c, f], np.float32) for c in range(scene.num_cameras)]
        self.K = np.asarray(scene.intrs[:, f], np.float64)
        self.E = np.asarray(scene.extrs[:, f], np.float64)
        self.mask = None if masks is None else [_dilate(masks[c], opts.mask_dilate_px) for c in range(scene.num_cameras)]
        self.maskf = None if self.mask is None else [m.astype(np.float32) for m in self.mask]
        if self.mask is not None and opts.mask_images:
            # flatten everything off the instance: a static background inside the LK window
            # would otherwise drag points near the silhouette towards zero motion
            self.gray = [np.where(m, g, np.uint8(opts.mask_fill)) for g, m in zip(self.gray, self.mask)]
        self._dense: dict[tuple[int, int], np.ndarray] = {}

    def dis_to(self, other: _Frame, c: int, dis: Any) -> np.ndarray:
        """Dense flow [H, W, 2] of camera c from this frame to ``other`` (cached)."""
        key = (other.f, c)
        if key not in self._dense:
            self._dense[key] = dis.calc(self.gray[c], other.gray[c], None)
        return self._dense[key]


def _sees(fr: _Frame, c: int, X: np.ndarray, opts: FlowOptions, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(seen bool [N], uv [N, 2]) of world points X in camera c at frame fr."""
    uv, z = project(X, fr.K[c], fr.E[c])
    ok = in_image(uv, size, opts.margin_px) & (z > 0)
    seen = np.zeros(len(X), bool)
    idx = np.flatnonzero(ok)
    if idx.size:
        d = sample_depth(fr.depth[c], uv[idx])
        good = (d > 0) & (np.abs(d - z[idx]) <= opts.depth_tol_m + opts.depth_tol_rel * z[idx])
        if fr.mask is not None:
            good &= bilinear(fr.maskf[c], uv[idx]) > 0.25
        seen[idx[good]] = True
    return seen, uv


def _kabsch(P: np.ndarray, Q: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched weighted rigid fit Q ~ R P + t. P, Q [B, k, 3], W [B, k] -> R [B, 3, 3], t [B, 3]."""
    ws = W.sum(axis=1, keepdims=True)
    ws = np.where(ws > 0, ws, 1.0)
    Wn = (W / ws)[..., None]
    pc = (Wn * P).sum(axis=1)
    qc = (Wn * Q).sum(axis=1)
    H = np.matmul(((P - pc[:, None]) * Wn).transpose(0, 2, 1), Q - qc[:, None])
    U, _, Vt = np.linalg.svd(H)
    V = Vt.transpose(0, 2, 1)
    Ut = U.transpose(0, 2, 1)
    d = np.sign(np.linalg.det(np.matmul(V, Ut)))
    V[:, :, 2] *= d[:, None]
    R = np.matmul(V, Ut)
    t = qc - np.matmul(R, pc[..., None])[..., 0]
    return R, t


def rigid_smooth(X: np.ndarray, Y: np.ndarray, weight: np.ndarray, k: int, iters: int, scale: float, anchors: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Move each point of X [N,3] by the robust rigid fit of its k nearest neighbours' X -> Y.

    ``weight`` [N] is each measurement's confidence (0 = no measurement Y).
    ``anchors`` > 0 fits only that many neighbourhoods (an even subset of the
    points) and moves every point with its nearest anchor's transform.
    Returns (new positions [N,3], ok [N]: the neighbourhood had enough measurements).
    """
    from scipy.spatial import cKDTree

    has = weight > 0
    n = len(X)
    m = int(has.sum())
    if m < 3:
        return Y.copy(), np.zeros(n, bool)
    src = np.flatnonzero(has)
    kk = min(k, m)
    centres = np.arange(n)
    if anchors and n > anchors:
        centres = np.linspace(0, n - 1, anchors).round().astype(np.int64)
    _, nb = cKDTree(X[src]).query(X[centres], k=kk)
    nb = src[nb.reshape(len(centres), kk)]
    P = X[nb]
    Q = Y[nb]
    W0 = weight[nb] / weight[has].max()
    W = W0
    for i in range(max(1, iters)):
        R, t = _kabsch(P, Q, W)
        if i + 1 < iters:
            r = np.linalg.norm(np.matmul(P, R.transpose(0, 2, 1)) + t[:, None] - Q, axis=2)
            W = W0 / (1.0 + (r / scale) ** 2)
    if len(centres) < n:
        _, near = cKDTree(X[centres]).query(X, k=1)
        R, t = R[near], t[near]
    out = np.matmul(R, X[..., None])[..., 0] + t
    return out, np.full(n, kk >= 3)


class FlowTracker(Tracker):
    """Weight-free multi-view LK + depth tracker (see the module docstring)."""

    name: ClassVar[str] = "flow"

    def __init__(self, **options: Any) -> None:
        self.options = FlowOptions(**options)

    def fingerprint(self) -> dict[str, Any]:
        return {"tracker": self.name, "version": 1, **asdict(self.options)}

    def _flow(self, a: _Frame, b: _Frame, c: int, p0: np.ndarray, guess: np.ndarray, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Track pixels p0 [n, 2] of camera c from frame a to b; returns (p1 [n, 2], ok [n]).

        ``check``: ok also requires the backward track to return within
        ``fb_max_px`` (otherwise only the forward status).
        """
        import cv2

        opts = self.options
        if opts.method == "dis":
            fw = a.dis_to(b, c, self._dis)
            p1 = p0 + bilinear(fw, p0)
            bw = b.dis_to(a, c, self._dis)
            pb = p1 + bilinear(bw, p1)
            fb = np.linalg.norm(pb - p0, axis=1)
            return p1, fb <= opts.fb_max_px
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, opts.iters, 0.01)
        lk = dict(winSize=(opts.win, opts.win), maxLevel=opts.levels, criteria=crit, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        q0 = p0.astype(np.float32).reshape(-1, 1, 2)
        q1, st1, _ = cv2.calcOpticalFlowPyrLK(a.gray[c], b.gray[c], q0, guess.astype(np.float32).reshape(-1, 1, 2), **lk)
        if not check:
            return q1.reshape(-1, 2).astype(np.float64), st1.ravel() == 1
        qb, st2, _ = cv2.calcOpticalFlowPyrLK(b.gray[c], a.gray[c], q1, q0.copy(), **lk)
        p1 = q1.reshape(-1, 2).astype(np.float64)
        fb = np.linalg.norm(qb.reshape(-1, 2) - q0.reshape(-1, 2), axis=1)
        return p1, (st1.ravel() == 1) & (st2.ravel() == 1) & (fb <= opts.fb_max_px)

    def _reanchor(self, kf: list, kf_uv: np.ndarray, cur: _Frame, nxt: _Frame, c: int, active: np.ndarray, idx: np.ndarray,
                  seen_c: np.ndarray, uv_c: np.ndarray, f: int, p1: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Replace frame-to-frame results by tracks from camera c's keyframe where they agree.

        Chained frame-to-frame flow accumulates a small bias every frame;
        tracking from the keyframe directly (started at the motion
        prediction ``p1``) does not.  Where the keyframe track fails its
        forward-backward check or lands more than ``anchor_gate_px`` from
        the prediction, the caller falls back to frame-to-frame flow.
        Returns (pixels, ok, which points took the keyframe track).
        """
        opts = self.options
        k = kf[c]
        used = np.zeros(len(idx), bool)
        if k is None or f - k.f >= opts.keyframe_every:
            kf[c] = cur
            kf_uv[c] = np.nan
            kf_uv[c, active[seen_c]] = uv_c[seen_c]
            return p1, ok, used
        anchors = kf_uv[c, active[idx]]
        sel = np.flatnonzero(np.isfinite(anchors[:, 0]))
        if sel.size == 0:
            return p1, ok, used
        start = np.where(np.isfinite(p1[sel]), p1[sel], uv_c[idx[sel]])
        pa, oka = self._flow(k, nxt, c, anchors[sel], start)
        near = np.linalg.norm(pa - start, axis=1) <= opts.anchor_gate_px
        use = oka & near
        p1 = p1.copy()
        ok = ok.copy()
        p1[sel[use]] = pa[use]
        ok[sel[use]] = True
        used[sel[use]] = True
        return p1, ok, used

    def track(self, scene: Scene, queries: np.ndarray, *, instance: Instance | None = None) -> Tracks:
        opts = self.options
        if opts.method == "dis":
            import cv2

            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        opts = self.options
        q = np.asarray(queries, np.float64).reshape(-1, 4)
        T, C = scene.num_frames, scene.num_cameras
        size = scene.size
        n = len(q)
        tracks = np.full((T, n, 3), np.nan, np.float32)
        vis = np.zeros((T, n), bool)
        t0 = time.perf_counter()
        if n == 0:
            return Tracks(tracks, vis, q.astype(np.float32), provenance=self.fingerprint())
        qt = np.clip(np.rint(q[:, 0]).astype(np.int64), 0, T - 1)
        packed = instance.packed() if (instance is not None and opts.use_masks) else None

        def frame(f: int) -> _Frame:
            masks = None
            if packed is not None:
                masks = np.unpackbits(np.asarray(packed[:, f]), axis=-1, count=size[1]).astype(bool)
            return _Frame(scene, f, opts, masks)

        X = np.full((n, 3), np.nan)
        Xprev = np.full((n, 3), np.nan)
        first = int(qt.min())
        cur = frame(first)
        kf: list[_Frame | None] = [None] * C  # per camera: the keyframe points are re-anchored to
        kf_uv = np.full((C, n, 2), np.nan)
        for f in range(first, T):
            new = qt == f
            X[new] = q[new, 1:4]
            Xprev[new] = np.nan
            active = np.flatnonzero(qt <= f)
            # who sees each active point at f (also the visibility output)
            seen = np.zeros((C, active.size), bool)
            uvs = np.zeros((C, active.size, 2))
            for c in range(C):
                seen[c], uvs[c] = _sees(cur, c, X[active], opts, size)
            tracks[f, active] = X[active]
            vis[f, active] = seen.any(axis=0)
            if f == T - 1:
                break
            nxt = frame(f + 1)
            # constant-velocity prediction (world) for the LK start and for unseen points
            vel = np.where(np.isfinite(Xprev[active]), X[active] - Xprev[active], 0.0)
            pred = X[active] + vel
            meas = np.full((C, active.size, 3), np.nan)
            prec = np.zeros((C, active.size))  # inverse variance: (focal / depth)^2 = 1 / (metres per pixel)^2
            for c in range(C):
                idx = np.flatnonzero(seen[c])
                if idx.size == 0:
                    continue
                p0 = uvs[c, idx]
                guess, _ = project(pred[idx], nxt.K[c], nxt.E[c])
                guess = np.where(np.isfinite(guess), guess, p0)
                p1 = guess.copy()
                ok = np.zeros(idx.size, bool)
                used = ok.copy()
                if opts.keyframe_every > 1:
                    p1, ok, used = self._reanchor(kf, kf_uv, cur, nxt, c, active, idx, seen[c], uvs[c], f, p1, ok)
                rest = np.flatnonzero(~used)  # no keyframe track: frame-to-frame flow
                if rest.size:
                    p1[rest], ok[rest] = self._flow(cur, nxt, c, p0[rest], guess[rest])
                ok &= in_image(p1, size, opts.margin_px)
                if nxt.mask is not None:
                    ok &= bilinear(nxt.maskf[c], np.where(np.isfinite(p1), p1, 0)) > 0.25
                if not ok.any():
                    continue
                d = sample_depth(nxt.depth[c], p1[ok])
                good = d > 0
                Y = lift(p1[ok][good], d[good], nxt.K[c], nxt.E[c])
                meas[c, idx[ok][good]] = Y
                prec[c, idx[ok][good]] = (nxt.K[c, 0, 0] / d[good]) ** 2
            fused, weight = _fuse(meas, prec, opts.fuse_outlier_m)
            has = weight > 0
            Xa = X[active]
            if opts.rigidity > 0:
                rig, rok = rigid_smooth(Xa, np.where(has[:, None], fused, Xa), weight, opts.neighbours, opts.rigid_iters, opts.rigid_scale_m, opts.rigid_anchors)
                new_pos = np.where(has[:, None], opts.rigidity * rig + (1 - opts.rigidity) * fused, rig)
                new_pos = np.where(rok[:, None], new_pos, np.where(has[:, None], fused, pred))
            else:
                new_pos = np.where(has[:, None], fused, pred)
            Xprev[active] = Xa
            X[active] = new_pos
            cur = nxt
        elapsed = time.perf_counter() - t0
        prov = {**self.fingerprint(), "seconds": round(elapsed, 3), "point_frames": int((T - qt).sum())}
        return Tracks(tracks, vis, q.astype(np.float32), provenance=prov)


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

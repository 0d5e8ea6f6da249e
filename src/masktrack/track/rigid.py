"""Robust local rigid motion of a point set: the ``flow`` tracker's rigidity step.

Given positions X [N, 3] at frame f and (some of) their measured positions
Y at f+1 with confidences, every point is moved by a robust rigid transform
fitted to measurements around it.  Three pieces, each its own function:

* :func:`fit_kernel` - neighbourhoods as a confidence-weighted Gaussian over
  *all* measurements (scale ``radius``): a region only coarse views see
  borrows the motion of precisely measured surface nearby.  Computed through
  moments, so the cost is products of [A, 16] x [16, m], never [A, m, 3].
* :func:`fit_knn` - neighbourhoods as the ``k`` nearest measurements.
* :func:`articulate` - which fitted transform each point takes: its nearest
  anchor's, or - for a measured point - the one of its ``choose`` nearest
  anchors that best explains its own measurement (across a joint, the
  transform of its own part).
* :func:`prefer_whole` - which anchors take the whole instance's robust fit
  instead of their local one: those whose own neighbourhood's measurements
  do not reject it (a likelihood-ratio test).  A local fit has six degrees
  of freedom for a few measurements; where an object moves as one body, a
  cluster of consistently wrong measurements (a track that slid onto the
  other finger) or a patch seen by one coarse view drags it, and the points
  that take it - mostly ones no camera measures - follow it far off.  The
  whole-instance fit does not care, and articulated parts still reject it.

:func:`rigid_smooth` composes them (the tracker's entry point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RigidFits:
    """Robust rigid transforms fitted around ``centres`` (indices into the point set)."""

    R: np.ndarray  # [A, 3, 3]
    t: np.ndarray  # [A, 3]
    ok: np.ndarray  # bool [A]: the neighbourhood had enough measurements
    centres: np.ndarray  # int [A]


def _fit_from_covariance(H: np.ndarray, pc: np.ndarray, qc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rotation (reflections excluded) and translation of q ~ R p + t from the cross-covariance H [B, 3, 3] and centroids."""
    U, _, Vt = np.linalg.svd(H)
    V = Vt.transpose(0, 2, 1)
    Ut = U.transpose(0, 2, 1)
    d = np.sign(np.linalg.det(V) * np.linalg.det(U))
    V[:, :, 2] *= d[:, None]
    R = np.matmul(V, Ut)
    t = qc - np.matmul(R, pc[..., None])[..., 0]
    return R, t


def _kabsch(P: np.ndarray, Q: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched weighted rigid fit Q ~ R P + t. P, Q [B, k, 3], W [B, k] -> R [B, 3, 3], t [B, 3]."""
    ws = W.sum(axis=1, keepdims=True)
    Wn = W / np.where(ws > 0, ws, 1.0)
    pc = np.matmul(Wn[:, None, :], P)[:, 0]
    qc = np.matmul(Wn[:, None, :], Q)[:, 0]
    # weighted cross-covariance sum_i w_i (p_i - pc)(q_i - qc)^T, with sum w_i = 1
    H = np.matmul(P.transpose(0, 2, 1) * Wn[:, None, :], Q) - pc[:, :, None] * qc[:, None, :]
    return _fit_from_covariance(H, pc, qc)


_GEMM_BLOCK = 1 << 17  # multiply-adds per BLAS call


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in blocks small enough that BLAS runs them on one thread.

    OpenBLAS splits products above a few 1e5 multiply-adds over threads; at
    the sizes here ([A, m] x [m, 16]) the threads' start-up costs 100x the
    product itself on a busy machine, and they compete with OpenCV's.
    """
    (A, k), m = a.shape, b.shape[1]
    if A * k * m <= _GEMM_BLOCK:
        return a @ b
    if k >= m:  # long contraction: sum over blocks of it
        step = max(1, _GEMM_BLOCK // max(1, A * m))
        out = a[:, :step] @ b[:step]
        for i in range(step, k, step):
            out += a[:, i : i + step] @ b[i : i + step]
        return out
    step = max(1, _GEMM_BLOCK // max(1, A * k))  # many columns: blocks of them
    return np.concatenate([a @ b[:, i : i + step] for i in range(0, m, step)], axis=1)


def _rotation_from_moments(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted rigid fits q ~ R p + t from moments M [A, 16] = sum_i w_i [1, p_i, q_i, p_i q_i^T]."""
    sw = np.where(M[:, 0] > 0, M[:, 0], 1.0)[:, None]
    pc = M[:, 1:4] / sw
    qc = M[:, 4:7] / sw
    H = (M[:, 7:16] / sw).reshape(-1, 3, 3) - pc[:, :, None] * qc[:, None, :]
    return _fit_from_covariance(H, pc, qc)


def _squared_residuals(R: np.ndarray, t: np.ndarray, base: np.ndarray, Fr: np.ndarray) -> np.ndarray:
    """|R_a p_i + t_a - q_i|^2 [A, m] for every transform a and measurement i, through [A, 16] x [16, m].

    ``base`` [m] is |p|^2 + |q|^2 and ``Fr`` [m, 16] the rows [1, q, p, vec(q p^T)]:
    |R p + t - q|^2 = |p|^2 + |q|^2 + |t|^2 - 2 t.q + 2 (R^T t).p - 2 vec(R).vec(q p^T), so no
    [A, m, 3] array is formed.  Clipped at 0 (the expansion can round below it).
    """
    G = np.concatenate(
        [
            (t * t).sum(1)[:, None],
            -2 * t,
            2 * np.matmul(R.transpose(0, 2, 1), t[..., None])[..., 0],
            -2 * R.reshape(-1, 9),
        ],
        axis=1,
    )
    return np.maximum(base[None] + _matmul(G, Fr.T), 0)


def robust_scale2(weight: np.ndarray, scale: float, noise_px: float) -> np.ndarray:
    """Squared Cauchy scale per measurement: ``scale`` combined with its expected error.

    ``weight`` is a measurement's precision (focal / depth)^2, i.e. one over
    its pixel's size squared; ``noise_px`` is the tracking error in pixels.
    A far, coarse view's 1 px is several mm: judged against the ``scale`` of
    relative part motion alone (3 mm) its ordinary noise looks like an
    outlier and the robust fit locks onto a few measurements.
    """
    return scale**2 + noise_px**2 / np.maximum(weight, 1e-12)


def anchor_indices(n: int, anchors: int) -> np.ndarray:
    """An even subset of ``anchors`` of n points (all of them when ``anchors`` is 0 or >= n)."""
    if anchors and n > anchors:
        return np.linspace(0, n - 1, anchors).round().astype(np.int64)
    return np.arange(n)


def fit_kernel(
    X: np.ndarray,
    Y: np.ndarray,
    weight: np.ndarray,
    centres: np.ndarray,
    *,
    radius: float,
    iters: int,
    scale: float,
    support: int = 0,
    noise_px: float = 0.0,
) -> RigidFits:
    """Rigid fits X -> Y around ``centres`` over every measurement (``weight`` > 0), Gaussian-weighted by distance.

    IRLS with Cauchy weights of scale ``scale`` (metres), widened per
    measurement by its expected error (:func:`robust_scale2`, ``noise_px``).
    ``radius = inf`` fits the whole instance.  Every (anchor,
    measurement) pair enters only through products of [A, 16] x [16, m]: a
    weighted rigid fit needs only the moments sum w [1, p, q, p q^T].
    ``support`` > 0: the first fit uses the local scale ``radius``; the
    robust iterations after it widen each anchor's scale to at least the
    distance of its ``support``-th nearest measurement.  The local fit
    picks the anchor's own part; the widened ones recruit the farther
    measurements that move with it (the Cauchy weights drop those of other
    parts), so a region few cameras measure takes its rotation from all the
    surface rigidly attached to it, not from the nearest small patch, whose
    rotation error grows with the lever arm.
    """
    src = np.flatnonzero(weight > 0)
    m = len(src)
    o = X[src].mean(axis=0)  # centred: the expanded products below lose no precision
    P, Q, C = X[src] - o, Y[src] - o, X[centres] - o
    one = np.ones((m, 1))
    Fm = np.concatenate([one, P, Q, (P[:, :, None] * Q[:, None, :]).reshape(-1, 9)], axis=1)
    Fr = np.concatenate([one, Q, P, (Q[:, :, None] * P[:, None, :]).reshape(-1, 9)], axis=1)
    pp = (P * P).sum(1)
    d2 = (C * C).sum(1)[:, None] + pp[None] - 2 * _matmul(C, P.T)
    d2 = np.maximum(d2, 0)
    wn = (weight[src] / weight[src].max())[None]
    K = np.exp(-d2 / (2 * radius**2)) * wn
    W = K
    Kw = K  # the robust iterations' kernel
    if support > 0:
        kth = min(support, m) - 1
        bw2 = np.maximum(radius**2, np.partition(d2, kth, axis=1)[:, kth : kth + 1])
        Kw = np.exp(-d2 / (2 * bw2)) * wn
    base = pp + (Q * Q).sum(1)
    s2 = robust_scale2(weight[src], scale, noise_px)
    for i in range(max(1, iters)):
        R, t = _rotation_from_moments(_matmul(W, Fm))
        if i + 1 < iters:
            W = Kw / (1.0 + _squared_residuals(R, t, base, Fr) / s2[None])
    t = t + o - np.matmul(R, o)  # back from centred coordinates
    return RigidFits(R, t, K.sum(axis=1) > 0, centres)  # ok: some measurement within reach


def fit_knn(
    X: np.ndarray, Y: np.ndarray, weight: np.ndarray, centres: np.ndarray, *, k: int, iters: int, scale: float
) -> RigidFits:
    """Rigid fits X -> Y around ``centres`` over each one's ``k`` nearest measurements (IRLS, Cauchy ``scale``)."""
    from scipy.spatial import cKDTree

    has = weight > 0
    src = np.flatnonzero(has)
    kk = min(k, len(src))
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
    return RigidFits(R, t, np.full(len(centres), kk >= 3), centres)


def articulate(
    X: np.ndarray,
    Y: np.ndarray,
    has: np.ndarray,
    fits: RigidFits,
    choose: int,
) -> np.ndarray:
    """Index into ``fits`` of the transform each point of X takes.

    Every point takes its nearest anchor's; with ``choose`` > 1 a measured
    point (``has``) takes, of its ``choose`` nearest anchors' transforms, the
    one that maps it closest to its own measurement Y - across a joint, the
    anchor of its own part.
    """
    from scipy.spatial import cKDTree

    n = len(X)
    kc = min(choose, len(fits.centres))
    _, near = cKDTree(X[fits.centres]).query(X, k=kc)
    near = near.reshape(n, kc)
    pick = near[:, 0]
    if kc > 1:
        mi = np.flatnonzero(has)
        cand = near[mi]  # [m, kc]
        pred = np.matmul(fits.R[cand], X[mi][:, None, :, None])[..., 0] + fits.t[cand]
        r = np.linalg.norm(pred - Y[mi][:, None], axis=2)
        pick[mi] = cand[np.arange(len(mi)), np.argmin(r, axis=1)]
    return pick


def prefer_whole(
    X: np.ndarray,
    Y: np.ndarray,
    weight: np.ndarray,
    local: RigidFits,
    whole: RigidFits,
    *,
    radius: float,
    scale: float,
    noise_px: float,
    nats: float,
) -> np.ndarray:
    """Anchors (bool [A]) whose neighbourhood does not reject the whole-instance transform ``whole``.

    For anchor a, with the Cauchy negative log-likelihood
    rho(r) = log(1 + |r|^2 / s^2) of a measurement's residual (s from
    :func:`robust_scale2`), and kernel memberships k_i = exp(-d_i^2 / 2
    radius^2) of the measurements around it: the local transform is kept
    only if it explains them better by more than ``nats`` in total,
    sum_i k_i (rho_whole,i - rho_local,i) > nats.  The sum is not
    normalised, so an anchor with little data nearby has little evidence
    and takes the whole-instance motion; a part that really moves
    differently (a link of an arm, closing fingers) piles up evidence
    quickly, since every one of its measurements disagrees.
    """
    src = np.flatnonzero(weight > 0)
    o = X[src].mean(axis=0)  # centred, as in fit_kernel: the expanded products lose no precision
    P, Q, C = X[src] - o, Y[src] - o, X[local.centres] - o
    s2 = robust_scale2(weight[src], scale, noise_px)
    pp = (P * P).sum(1)
    d2 = np.maximum((C * C).sum(1)[:, None] + pp[None] - 2 * _matmul(C, P.T), 0)
    k = np.exp(-d2 / (2 * radius**2))  # [A, m]
    Fr = np.concatenate(
        [np.ones((len(src), 1)), Q, P, (Q[:, :, None] * P[:, None, :]).reshape(-1, 9)], axis=1
    )
    base = pp + (Q * Q).sum(1)

    def rho(R: np.ndarray, t: np.ndarray) -> np.ndarray:
        """log(1 + |R p + t - q|^2 / s^2) for every (transform, measurement), through [B, 16] x [16, m]."""
        tc = t + np.matmul(R, o) - o  # the same transform in centred coordinates
        return np.log1p(_squared_residuals(R, tc, base, Fr) / s2[None])

    evidence = (k * (rho(whole.R[:1], whole.t[:1]) - rho(local.R, local.t))).sum(axis=1)
    return evidence <= nats


def rigid_smooth(
    X: np.ndarray,
    Y: np.ndarray,
    weight: np.ndarray,
    k: int,
    iters: int,
    scale: float,
    anchors: int = 0,
    *,
    radius: float = 0.0,
    choose: int = 1,
    support: int = 0,
    noise_px: float = 0.0,
    whole_nats: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Move each point of X [N,3] by the robust rigid fit of its neighbours' X -> Y.

    ``weight`` [N] is each measurement's confidence (0 = no measurement Y).
    Neighbourhoods: :func:`fit_kernel` with ``radius`` > 0, else
    :func:`fit_knn` (``k`` nearest).  ``anchors`` > 0 fits only that many
    neighbourhoods (an even subset of the points) and each point takes one
    of them (:func:`articulate`, ``choose``); ``support``, ``noise_px``: see
    :func:`fit_kernel`.  ``whole_nats`` (kernel mode only; None = off): anchors
    whose neighbourhood does not reject the whole instance's robust fit by
    that much evidence take it (:func:`prefer_whole`).
    Returns (new positions [N,3], ok [N]: the neighbourhood had enough measurements).
    """
    has = weight > 0
    n = len(X)
    if int(has.sum()) < 3:
        return Y.copy(), np.zeros(n, bool)
    centres = anchor_indices(n, anchors)
    if radius > 0:
        fits = fit_kernel(
            X, Y, weight, centres, radius=radius, iters=iters, scale=scale, support=support, noise_px=noise_px
        )
        if whole_nats is not None:
            whole = fit_kernel(
                X, Y, weight, centres[:1], radius=np.inf, iters=iters, scale=scale, noise_px=noise_px
            )
            use = prefer_whole(
                X, Y, weight, fits, whole, radius=radius, scale=scale, noise_px=noise_px, nats=whole_nats
            )
            fits.R[use] = whole.R[0]
            fits.t[use] = whole.t[0]
    else:
        fits = fit_knn(X, Y, weight, centres, k=k, iters=iters, scale=scale)
    R, t, ok = fits.R, fits.t, fits.ok
    if len(centres) < n:
        pick = articulate(X, Y, has, fits, choose)
        R, t, ok = R[pick], t[pick], ok[pick]
    out = np.matmul(R, X[..., None])[..., 0] + t
    return out, ok

"""Monocular 2D trackers lifted to 3D with the scene's depth (shared by the CoTracker3 and SpatialTrackerV2 adapters).

For each query the camera that sees it best at its frame ``t`` is chosen:
the point must project inside the image with the depth there agreeing with
the projected depth (not occluded); among those, the camera with the finest
pixel footprint (largest ``focal / depth``) wins, ties broken by distance to
the image border.  The 2D tracker runs once per chosen camera on that
camera's video with the queries' pixels ``(t, u, v)`` (pixel centres,
integer = centre).  Its 2D tracks are lifted with the depth at the tracked
pixel and that frame's intrinsics and inverse extrinsics.

While the 2D tracker says "occluded", the depth at its pixel belongs to the
occluder, so the 3D position is held at the last visible one (and reported
not visible).  Frames before ``t`` are NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from masktrack.io.scene import Scene
from masktrack.track.base import Tracks, empty_tracks
from masktrack.track.geometry import in_image, lift, project, sample_depth

#: run(camera_index, frames [T, H, W, 3] uint8, queries [n, 3] (t, u, v)) -> (tracks2d [T, n, 2], visible [T, n])
Run2D = Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def best_cameras(
    scene: Scene, queries: np.ndarray, *, depth_tol_m: float = 0.02, depth_tol_rel: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """(camera index [N] (-1 = seen by none), pixel [N, 2]) of each query's best view at its frame."""
    n = len(queries)
    t = np.clip(np.rint(queries[:, 0]).astype(int), 0, scene.num_frames - 1)
    best = np.full(n, -1)
    score = np.full(n, -np.inf)
    uv_best = np.full((n, 2), np.nan)
    h, w = scene.size
    for c in range(scene.num_cameras):
        for f in np.unique(t):
            sel = np.flatnonzero(t == f)
            uv, z = project(queries[sel, 1:4], scene.intrs[c, f], scene.extrs[c, f])
            ok = in_image(uv, (h, w)) & (z > 0)
            if not ok.any():
                continue
            d = np.zeros(len(sel))
            d[ok] = sample_depth(np.asarray(scene.depths[c, f]), uv[ok])
            ok &= (d > 0) & (np.abs(d - z) <= depth_tol_m + depth_tol_rel * np.abs(z))
            border = np.minimum.reduce(
                [uv[:, 0] + 0.5, w - 0.5 - uv[:, 0], uv[:, 1] + 0.5, h - 0.5 - uv[:, 1]]
            )
            s = np.where(
                ok,
                float(scene.intrs[c, f, 0, 0]) / np.maximum(z, 1e-9) + 1e-3 * np.minimum(border, 50),
                -np.inf,
            )
            better = s > score[sel]
            idx = sel[better]
            best[idx], score[idx], uv_best[idx] = c, s[better], uv[better]
    return best, uv_best


def lift_2d(
    scene: Scene, c: int, tracks2d: np.ndarray, visible: np.ndarray, q_t: np.ndarray, q_xyz: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Lift one camera's 2D tracks [T, n, 2] to world [T, n, 3]; visibility needs valid depth too."""
    T, n = visible.shape
    out = np.full((T, n, 3), np.nan)
    vis = np.zeros((T, n), bool)
    last = q_xyz.astype(np.float64).copy()
    h, w = scene.size
    for f in range(T):
        active = q_t <= f
        out_f = np.full((n, 3), np.nan)
        uv = tracks2d[f]
        ok = active & visible[f] & np.isfinite(uv).all(axis=1) & in_image(np.nan_to_num(uv, nan=-10), (h, w))
        idx = np.flatnonzero(ok)
        if idx.size:
            d = sample_depth(np.asarray(scene.depths[c, f]), uv[idx])
            good = d > 0
            X = lift(uv[idx[good]], d[good], scene.intrs[c, f], scene.extrs[c, f])
            out_f[idx[good]] = X
            vis[f, idx[good]] = True
        at_q = q_t == f
        out_f[at_q] = q_xyz[at_q]  # a track starts exactly at its query
        held = active & ~np.isfinite(out_f[:, 0])
        out_f[held] = last[held]
        last = np.where(np.isfinite(out_f), out_f, last)
        out[f] = np.where(active[:, None], out_f, np.nan)
    return out, vis


def track_monocular(
    scene: Scene, queries: np.ndarray, run: Run2D, *, provenance: dict | None = None
) -> Tracks:
    """Track queries with a 2D tracker in each query's best camera and lift them to 3D."""
    q = np.asarray(queries, np.float64).reshape(-1, 4)
    res = empty_tracks(scene.num_frames, q)
    cams, uv = best_cameras(scene, q)
    qt = np.clip(np.rint(q[:, 0]).astype(int), 0, scene.num_frames - 1)
    for c in np.unique(cams[cams >= 0]):
        sel = np.flatnonzero(cams == c)
        q2d = np.concatenate([qt[sel, None].astype(np.float64), uv[sel]], axis=1).astype(np.float32)
        tr2, vis2 = run(int(c), np.asarray(scene.rgbs[c]), q2d)
        tr2 = np.asarray(tr2, np.float64).reshape(scene.num_frames, len(sel), 2)
        vis2 = np.asarray(vis2).reshape(scene.num_frames, len(sel)).astype(bool)
        X, vis = lift_2d(scene, int(c), tr2, vis2, qt[sel], q[sel, 1:4])
        res.tracks[:, sel] = X.astype(np.float32)
        res.visibility[:, sel] = vis
    lost = np.flatnonzero(cams < 0)  # no camera sees them at their frame: only the query itself is known
    res.tracks[qt[lost], lost] = q[lost, 1:4]
    res.provenance = {
        **(provenance or {}),
        "query_cameras": np.bincount(cams[cams >= 0], minlength=scene.num_cameras).tolist(),
        "unseen_queries": int((cams < 0).sum()),
    }
    return res

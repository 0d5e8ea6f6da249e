"""Query points: world points sampled inside an instance's masks, each with its true frame.

A query is a row ``(t, x, y, z)``: the frame the pixel was sampled from and
its world position, lifted with that frame's depth, intrinsics and inverse
extrinsics (pixel centres: integer ``(u, v)`` is the centre of column ``u``,
row ``v``; see :mod:`masktrack.track.geometry`).  A point sampled at frame 12
says ``t = 12``: trackers start it there and report nothing before.

Steps (all deterministic for a fixed ``seed``):

1. frames per camera from the window (:class:`QueryOptions.window`);
2. pixels inside the (eroded) mask with valid depth, lifted to world;
3. voxel de-duplication across cameras and frames: one point per voxel, the
   earliest frame wins (so its track covers the most frames);
4. a cap with an even spatial spread (farthest-point sampling from a
   seed-chosen start), so a large flat part does not take all the budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from masktrack.errors import ConfigError, Problem, SceneError
from masktrack.io.instances import GIVEN_QUERIES, Instance
from masktrack.io.scene import Scene
from masktrack.track.geometry import lift

Window = Literal["first", "frame", "all", "before_contact", "after_contact", "given"]


@dataclass(frozen=True)
class QueryOptions:
    """How to sample query points (all settings enter the tracking manifest).

    ``window``: ``first`` = the first frame(s) in which the instance is visible
    in each camera; ``frame`` = frame ``frame``; ``all`` = every ``stride``-th
    frame; ``before_contact`` / ``after_contact`` = the ``span`` frames before /
    from the contact frame (``contact``: one frame for all cameras or
    ``{camera_id: frame}``; left out, the scene's imported ``contact_frames``);
    ``given`` = the instance's own queries (``instances/<name>/queries.npy``,
    written by ``scene import`` from an NPZ's ``query_points``), kept as they
    are, their ``t`` included.  ``span`` frames are used from the start of the
    window (``first``, ``frame``) with ``stride``.
    """

    window: Window = "first"
    frame: int = 0
    span: int = 1
    stride: int = 1
    contact: int | dict[str, int] | None = None
    cameras: tuple[str, ...] | None = None  # None = all cameras
    erode: int = 1  # pixels; mask borders mix depth of object and background
    pixel_stride: int = 1
    voxel: float = 0.005  # metres; 0 disables de-duplication
    max_queries: int = 1024  # 0 = no cap
    min_depth: float = 0.0
    max_depth: float = float("inf")
    seed: int = 0

    def __post_init__(self) -> None:
        probs = self.problems()
        if probs:
            raise ConfigError("invalid query options", problems=probs)

    def problems(self) -> list[Problem]:
        """Every bad value at once, named by option (NaN voxels, negative caps, ...)."""

        def whole(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def real(v: Any) -> bool:
            return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and not np.isnan(v)

        probs = []
        for name, lo in (
            ("frame", 0),
            ("span", 1),
            ("stride", 1),
            ("erode", 0),
            ("pixel_stride", 1),
            ("max_queries", 0),
        ):
            v = getattr(self, name)
            if not whole(v) or v < lo:
                probs.append(Problem(name, f"must be a whole number >= {lo}, got {v!r}"))
        if not whole(self.seed):
            probs.append(Problem("seed", f"must be a whole number, got {self.seed!r}"))
        for name in ("voxel", "min_depth"):
            v = getattr(self, name)
            if not real(v) or not np.isfinite(v) or v < 0:
                probs.append(Problem(name, f"must be a finite number >= 0, got {v!r}"))
        if not real(self.max_depth) or self.max_depth <= 0:
            probs.append(Problem("max_depth", f"must be a number > 0 (or inf), got {self.max_depth!r}"))
        frames: list[Any] = (
            [self.contact] if not isinstance(self.contact, dict) else list(self.contact.values())
        )
        if self.contact is not None and not all(whole(f) and f >= 0 for f in frames):
            probs.append(Problem("contact", f"frames must be whole numbers >= 0, got {self.contact!r}"))
        return probs

    def to_json(self) -> dict:
        d = asdict(self)
        d["cameras"] = list(self.cameras) if self.cameras is not None else None
        d["max_depth"] = None if np.isinf(self.max_depth) else self.max_depth
        return d


@dataclass
class Queries:
    """Sampled queries with where they came from."""

    points: np.ndarray  # float32 [N, 4] (t, x, y, z)
    camera: np.ndarray  # int32 [N] source camera
    uv: np.ndarray  # float32 [N, 2] source pixel centre
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.points.shape[0])


def window_frames(opts: QueryOptions, visible: np.ndarray, camera_id: str) -> list[int]:
    """Frames to sample in one camera; ``visible`` is bool [T] (mask non-empty)."""
    t = visible.shape[0]
    span, stride = max(1, opts.span), max(1, opts.stride)
    if opts.window == "all":
        return list(range(0, t, stride))
    if opts.window == "frame":
        if not 0 <= opts.frame < t:
            raise SceneError(f"frame {opts.frame} outside 0..{t - 1}", field="queries.frame")
        start = opts.frame
    elif opts.window == "first":
        idx = np.flatnonzero(visible)
        if idx.size == 0:
            return []
        start = int(idx[0])
    elif opts.window in ("before_contact", "after_contact"):
        if opts.contact is None:
            raise SceneError(f"window {opts.window!r} needs a contact frame", field="queries.contact")
        c = opts.contact.get(camera_id) if isinstance(opts.contact, dict) else opts.contact
        if c is None:
            return []
        if opts.window == "before_contact":
            return [f for f in range(c - span * stride, c, stride) if 0 <= f < t]
        start = c
    else:
        raise SceneError(f"unknown window {opts.window!r}", field="queries.window")
    return [f for f in range(start, start + span * stride, stride) if 0 <= f < t]


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return mask
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.erode(mask.astype(np.uint8), k, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def voxel_dedup(points: np.ndarray, voxel: float) -> np.ndarray:
    """Indices keeping one point per world voxel; rows must be sorted by priority (first wins)."""
    if voxel <= 0 or len(points) == 0:
        return np.arange(len(points))
    keys = np.floor(points[:, 1:4] / voxel).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    return np.sort(first)


def farthest_point_sample(xyz: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Indices of ``k`` points spread evenly in space (greedy farthest-point)."""
    n = len(xyz)
    if k >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    xyz = np.asarray(xyz, np.float64)
    idx = np.empty(k, np.int64)
    idx[0] = rng.integers(n)
    dist = np.full(n, np.inf)
    for i in range(1, k):
        d = ((xyz - xyz[idx[i - 1]]) ** 2).sum(axis=1)
        np.minimum(dist, d, out=dist)
        idx[i] = int(np.argmax(dist))
    return np.sort(idx)


def sample_queries(scene: Scene, instance: Instance, opts: QueryOptions | None = None) -> Queries:
    """Sample ``instance``'s query points in ``scene`` (see the module docstring)."""
    opts = opts or QueryOptions()
    c_all, t_all, h, w = instance.shape
    if (c_all, t_all, h, w) != (scene.num_cameras, scene.num_frames, *scene.size):
        raise SceneError(
            f"instance shape {instance.shape} does not match the scene", path=instance.folder, field="shape"
        )
    cams = (
        range(c_all)
        if opts.cameras is None
        else [scene.camera_ids.index(c) for c in opts.cameras if c in scene.camera_ids]
    )
    if opts.window == "given":
        return _given_queries(instance, t_all)
    if opts.contact is None and opts.window in ("before_contact", "after_contact"):
        imported = scene.meta.get("contact_frames")
        if imported:
            from dataclasses import replace

            opts = replace(opts, contact={str(k): int(v) for k, v in dict(imported).items()})
    packed = instance.packed()
    rows, cam_of, uvs = [], [], []
    for c in cams:
        visible = np.asarray(np.asarray(packed[c]).reshape(t_all, -1).any(axis=1))
        for t in window_frames(opts, visible, scene.camera_ids[c]):
            m = np.unpackbits(np.asarray(packed[c, t]), axis=-1, count=w).astype(bool)
            m = _erode(m, opts.erode)
            if opts.pixel_stride > 1:
                grid = np.zeros_like(m)
                grid[:: opts.pixel_stride, :: opts.pixel_stride] = True
                m &= grid
            d = np.asarray(scene.depths[c, t])
            m &= (d > max(opts.min_depth, 0.0)) & (d < opts.max_depth)
            v, u = np.nonzero(m)
            if u.size == 0:
                continue
            uv = np.stack([u, v], axis=1).astype(np.float64)
            X = lift(uv, d[v, u], scene.intrs[c, t], scene.extrs[c, t])
            rows.append(np.concatenate([np.full((len(X), 1), t, np.float64), X], axis=1))
            cam_of.append(np.full(len(X), c, np.int32))
            uvs.append(uv)
    if not rows:
        return Queries(
            np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros((0, 2), np.float32), {"sampled": 0}
        )
    pts = np.concatenate(rows).astype(np.float32).astype(np.float64)  # de-dup on the values that are stored
    cam = np.concatenate(cam_of)
    uv = np.concatenate(uvs)
    sampled = len(pts)
    # earliest frame first, then camera: voxel de-dup keeps the longest track
    order = np.lexsort((cam, pts[:, 0]))
    pts, cam, uv = pts[order], cam[order], uv[order]
    keep = voxel_dedup(pts, opts.voxel)
    pts, cam, uv = pts[keep], cam[keep], uv[keep]
    deduped = len(pts)
    if opts.max_queries and len(pts) > opts.max_queries:
        keep = farthest_point_sample(pts[:, 1:4], opts.max_queries, opts.seed)
        pts, cam, uv = pts[keep], cam[keep], uv[keep]
    return Queries(
        pts.astype(np.float32),
        cam,
        uv.astype(np.float32),
        {"sampled": sampled, "after_voxel": deduped, "kept": len(pts)},
    )


def _given_queries(instance: Instance, num_frames: int) -> Queries:
    """The instance's stored queries, unchanged (source camera unknown: reported as camera 0)."""
    p = instance.folder / GIVEN_QUERIES
    if not p.exists():
        raise SceneError(
            "instance has no given queries (import an NPZ with query_points, or use another --window)",
            path=instance.folder,
            field="queries.window",
        )
    try:
        q = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SceneError(f"unreadable queries ({e})", path=p) from None
    if q.ndim != 2 or q.shape[1] != 4 or not np.isfinite(q).all():
        raise SceneError(f"queries must be finite [N, 4] (t, x, y, z), got {q.shape}", path=p)
    if len(q) and (q[:, 0].min() < 0 or q[:, 0].max() > num_frames - 1):
        raise SceneError(f"query frames outside 0..{num_frames - 1}", path=p)
    n = len(q)
    return Queries(
        q.astype(np.float32),
        np.zeros(n, np.int32),
        np.full((n, 2), np.nan, np.float32),
        {"given": n, "kept": n},
    )

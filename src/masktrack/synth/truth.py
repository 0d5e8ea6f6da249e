"""Exact ground-truth motion of any surface point of a generated scene.

Every solid of the synthetic scene is rigid, so a point on its surface at
frame ``t`` moves as ``pose[s] @ inv(pose[t]) @ x`` for every frame ``s``.
:meth:`SceneTruth.attach` finds the solid whose surface is nearest to a
world point (and how far it is), :meth:`SceneTruth.paths` gives the world
path of attached points.  This scores a tracker's query points wherever they
were sampled: a query lifted from a pixel of the robot follows its link; one
that a segmentation error put on the table must stay where it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SceneTruth:
    kinds: list[str]  # "box" | "cylinder" per primitive
    half: np.ndarray  # [P, 3]
    instances: list[str]  # per primitive: arm, gripper, object, table, floor
    links: list[str]
    poses: np.ndarray  # [T, P, 4, 4] world-from-local

    @classmethod
    def load(cls, root: str | Path) -> SceneTruth:
        """From a generated scene folder (``gt/kinematics.{json,npz}``)."""
        root = Path(root)
        meta = json.loads((root / "gt" / "kinematics.json").read_text(encoding="utf-8"))
        with np.load(root / "gt" / "kinematics.npz", allow_pickle=False) as z:
            poses = z["prim_poses"].astype(np.float64)
        prims = meta["primitives"]
        return cls(
            [p["kind"] for p in prims],
            np.array([p["half"] for p in prims], np.float64),
            [p["instance"] for p in prims],
            [p["link"] for p in prims],
            poses,
        )

    def surface_distance(self, points: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """|signed distance| [N, P] of world points (each at its own frame) to every primitive's surface."""
        pose = self.poses[frames]  # [N, P, 4, 4]
        loc = np.einsum("npji,npj->npi", pose[..., :3, :3], points[:, None, :] - pose[..., :3, 3])
        out = np.empty(loc.shape[:2])
        for p, kind in enumerate(self.kinds):
            q = loc[:, p]
            h = self.half[p]
            if kind == "box":
                d = np.abs(q) - h
            else:
                d = np.stack([np.hypot(q[:, 0], q[:, 1]) - h[0], np.abs(q[:, 2]) - h[2]], 1)
            outside = np.linalg.norm(np.maximum(d, 0), axis=1)
            inside = np.minimum(d.max(axis=1), 0)
            out[:, p] = np.abs(outside + inside)
        return out

    def attach(self, points: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(primitive index [N], local coordinates [N, 3], distance to that surface [N] in metres)."""
        points = np.asarray(points, np.float64)
        frames = np.asarray(frames, int)
        dist = self.surface_distance(points, frames)
        prim = dist.argmin(axis=1)
        pose = self.poses[frames, prim]  # [N, 4, 4]
        local = np.einsum("nji,nj->ni", pose[:, :3, :3], points - pose[:, :3, 3])
        return prim, local, dist[np.arange(len(points)), prim]

    def paths(self, prim: np.ndarray, local: np.ndarray) -> np.ndarray:
        """World positions [T, N, 3] of attached points over all frames."""
        pose = self.poses[:, prim]  # [T, N, 4, 4]
        return np.einsum("tnij,nj->tni", pose[..., :3, :3], local) + pose[..., :3, 3]


def track_errors(truth: SceneTruth, tracks: np.ndarray, queries: np.ndarray) -> dict[str, np.ndarray]:
    """Per (frame, query) 3D error of ``tracks`` [T, N, 3] against the GT motion of each query's surface point.

    Returns ``error`` [T, N] (NaN before a query's frame, at it, and where the
    track is NaN), ``prim`` [N] and ``attach_dist`` [N] (how far the query
    lies from the nearest surface: large means its depth was wrong).
    """
    t_q = queries[:, 0].astype(int)
    prim, local, dist = truth.attach(queries[:, 1:4], t_q)
    gt = truth.paths(prim, local)
    err = np.linalg.norm(tracks.astype(np.float64) - gt, axis=-1)
    after = np.arange(tracks.shape[0])[:, None] > t_q[None, :]
    err = np.where(after, err, np.nan)
    return {"error": err, "prim": prim, "attach_dist": dist}

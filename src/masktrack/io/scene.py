"""masktrack's multi-view RGB-D scene format (pickle-free).

A scene is a folder::

    scene.json        {"format": "masktrack.scene", "version": 1, camera_ids, num_frames, height, width, fps, ...}
    rgbs.npy          uint8   [C, T, H, W, 3]   colour, RGB
    depths.npy        float32 [C, T, H, W]      planar depth z in metres, 0 = invalid
    intrs.npy         float32 [C, T, 3, 3]      OpenCV intrinsics; integer pixel (u, v) is the pixel centre
    extrs.npy         float32 [C, T, 3, 4]      world-to-camera [R|t]: x_cam = R X + t
    timestamps.npy    float64 [C, T]            optional
    instances/<name>/instance.json, masks.npy   per-instance data only (see masktrack.io.instances)

Arrays are plain ``.npy`` files opened with ``mmap_mode="r"``: loading a scene
reads no pixels, and per-instance views never copy RGB or depth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.errors import SceneError
from masktrack.io.atomic import atomic_path, atomic_write_json

SCENE_FORMAT = "masktrack.scene"
SCENE_VERSION = 1


@dataclass
class Scene:
    """A multi-view RGB-D recording with cameras. Arrays may be memory-mapped."""

    rgbs: np.ndarray  # uint8 [C, T, H, W, 3]
    depths: np.ndarray  # float32 [C, T, H, W]
    intrs: np.ndarray  # float32 [C, T, 3, 3]
    extrs: np.ndarray  # float32 [C, T, 3, 4] world-to-camera
    camera_ids: list[str]
    fps: float = 30.0
    timestamps: np.ndarray | None = None
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_cameras(self) -> int:
        return int(self.rgbs.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.rgbs.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.rgbs.shape[2]), int(self.rgbs.shape[3])

    def validate(self, *, where: Path | None = None) -> None:
        """Shapes agree, depth finite and >= 0, rotations orthonormal (raises SceneError)."""
        where = where or self.path
        c, t, h, w = self.rgbs.shape[:4]
        expect = {
            "rgbs": ((c, t, h, w, 3), self.rgbs.shape),
            "depths": ((c, t, h, w), self.depths.shape),
            "intrs": ((c, t, 3, 3), self.intrs.shape),
            "extrs": ((c, t, 3, 4), self.extrs.shape),
        }
        for name, (want, got) in expect.items():
            if tuple(got) != want:
                raise SceneError(f"shape {tuple(got)} does not match {want}", path=where, field=name)
        if self.rgbs.dtype != np.uint8:
            raise SceneError(f"dtype {self.rgbs.dtype}, expected uint8", path=where, field="rgbs")
        if len(self.camera_ids) != c:
            raise SceneError(f"{len(self.camera_ids)} ids for {c} cameras", path=where, field="camera_ids")
        d = np.asarray(self.depths)
        if not np.isfinite(d).all():
            raise SceneError("depth has NaN or inf values (use 0 for invalid)", path=where, field="depths")
        if (d < 0).any():
            raise SceneError("depth has negative values (use 0 for invalid)", path=where, field="depths")
        r = np.asarray(self.extrs[..., :3], np.float64)
        err = np.abs(np.einsum("...ij,...kj->...ik", r, r) - np.eye(3)).max()
        if err > 1e-3:
            raise SceneError(
                f"rotation part is not orthonormal (max |R R^T - I| = {err:.2g})", path=where, field="extrs"
            )
        k = np.asarray(self.intrs, np.float64)
        if (k[..., 0, 0] <= 0).any() or (k[..., 1, 1] <= 0).any():
            raise SceneError("focal lengths must be positive", path=where, field="intrs")
        if self.timestamps is not None and tuple(self.timestamps.shape) != (c, t):
            raise SceneError(
                f"shape {tuple(self.timestamps.shape)} does not match {(c, t)}",
                path=where,
                field="timestamps",
            )


def save_scene(scene: Scene, path: str | Path) -> Path:
    """Write ``scene`` as a scene folder (each file atomically; scene.json last)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arrays = {
        "rgbs": scene.rgbs,
        "depths": scene.depths.astype(np.float32),
        "intrs": scene.intrs.astype(np.float32),
        "extrs": scene.extrs.astype(np.float32),
    }
    if scene.timestamps is not None:
        arrays["timestamps"] = np.asarray(scene.timestamps, np.float64)
    for name, arr in arrays.items():
        with atomic_path(path / f"{name}.npy") as tmp:
            np.save(tmp, np.ascontiguousarray(arr), allow_pickle=False)
    meta = {
        "format": SCENE_FORMAT,
        "version": SCENE_VERSION,
        "camera_ids": list(scene.camera_ids),
        "num_cameras": scene.num_cameras,
        "num_frames": scene.num_frames,
        "height": scene.size[0],
        "width": scene.size[1],
        "fps": scene.fps,
        **{k: v for k, v in scene.meta.items() if k not in {"format", "version"}},
    }
    atomic_write_json(path / "scene.json", meta)
    return path


def load_scene(path: str | Path, *, mmap: bool = True, validate: bool = True) -> Scene:
    """Open a scene folder (memory-mapped, pickle-free) and validate it."""
    path = Path(path)
    meta_path = path / "scene.json"
    if not meta_path.exists():
        raise SceneError(
            "not a masktrack scene (no scene.json); import it with `masktrack scene import`", path=path
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SceneError(f"invalid JSON ({e})", path=meta_path) from None
    if meta.get("format") != SCENE_FORMAT:
        raise SceneError(
            f"format {meta.get('format')!r}, expected {SCENE_FORMAT!r}", path=meta_path, field="format"
        )

    def arr(name: str) -> np.ndarray:
        p = path / f"{name}.npy"
        if not p.exists():
            raise SceneError("missing array file", path=p, field=name)
        try:
            return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        except ValueError as e:
            raise SceneError(f"unreadable array ({e})", path=p, field=name) from None

    scene = Scene(
        rgbs=arr("rgbs"),
        depths=arr("depths"),
        intrs=arr("intrs"),
        extrs=arr("extrs"),
        camera_ids=[str(c) for c in meta.get("camera_ids", [])],
        fps=float(meta.get("fps", 30.0)),
        timestamps=arr("timestamps") if (path / "timestamps.npy").exists() else None,
        path=path,
        meta={k: v for k, v in meta.items() if k not in {"camera_ids", "fps"}},
    )
    if validate:
        scene.validate(where=path)
    return scene

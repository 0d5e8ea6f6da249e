"""masktrack's multi-view RGB-D scene format (pickle-free).

A scene is a folder::

    scene.json        {"format": "masktrack.scene", "version": 1, camera_ids, num_frames, height, width, fps, ...}
    rgbs.npy          uint8   [C, T, H, W, 3]   colour, RGB
    depths.npy        float32 [C, T, H, W]      planar depth z in metres, 0 = invalid
    intrs.npy         float32 [C, T, 3, 3]      OpenCV intrinsics; integer pixel (u, v) is the pixel centre
    extrs.npy         float32 [C, T, 3, 4]      world-to-camera [R|t]: x_cam = R X + t
    timestamps.npy    float64 [C, T]            optional
    instances/<name>/instance.json, masks.npy   per-instance data only (see masktrack.io.instances)
    robot/robot.json, joint_positions.npy       optional robot state (see masktrack.io.scene_robot)

Arrays are plain ``.npy`` files opened with ``mmap_mode="r"``: loading a scene
reads no pixels, and per-instance views never copy RGB or depth.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.errors import Problem, SceneError
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
    robot: Any = None  # masktrack.io.scene_robot.SceneRobot | None: joint states, base pose, wrist mounts

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

    def with_cameras(self, camera_ids: Sequence[str]) -> Scene:
        """An in-memory scene of only these cameras, in this order (what a rig without, say, its wrist
        camera would have recorded); the robot state is left out, since it names cameras of its own."""
        idx = [self.camera_ids.index(c) for c in camera_ids]
        return Scene(
            np.asarray(self.rgbs[idx]),
            np.asarray(self.depths[idx]),
            np.asarray(self.intrs[idx]),
            np.asarray(self.extrs[idx]),
            list(camera_ids),
            fps=self.fps,
            timestamps=None if self.timestamps is None else np.asarray(self.timestamps)[idx],
            meta=dict(self.meta),
        )

    def validate(self, *, where: Path | None = None) -> None:
        """Shapes agree, depth finite and >= 0, cameras proper (raises SceneError listing every problem).

        Cameras: intrinsics and extrinsics finite, focal lengths positive, the
        rotation part of each extrinsic orthonormal with determinant +1 (a
        reflection or a NaN would only show up later as NaN tracks).
        """
        where = where or self.path
        problems = scene_problems(self)
        if problems:
            raise SceneError(f"{len(problems)} problem(s) in the scene", path=where, problems=problems)


def _first(mask: Any) -> str:
    """'camera c, frame t' of the first True entry of a [C, T] mask, and how many there are."""
    idx = np.argwhere(mask)
    c, t = (int(i) for i in idx[0][:2])
    n = len(idx)
    return f"camera {c}, frame {t}" + (f" (and {n - 1} more)" if n > 1 else "")


def scene_problems(scene: Scene, rot_tol: float = 1e-3) -> list[Problem]:
    """Every problem of ``scene`` at once (empty when it is valid); see :meth:`Scene.validate`."""
    probs: list[Problem] = []
    if scene.rgbs.ndim != 5:
        return [
            Problem("rgbs", f"expected 5 dimensions [C, T, H, W, 3], got shape {tuple(scene.rgbs.shape)}")
        ]
    c, t, h, w = scene.rgbs.shape[:4]
    if c == 0:
        probs.append(Problem("rgbs", "the scene has zero cameras"))
    if t == 0:
        probs.append(Problem("rgbs", "the scene has zero frames"))
    expect = {
        "rgbs": ((c, t, h, w, 3), scene.rgbs.shape),
        "depths": ((c, t, h, w), scene.depths.shape),
        "intrs": ((c, t, 3, 3), scene.intrs.shape),
        "extrs": ((c, t, 3, 4), scene.extrs.shape),
    }
    bad_shape = set()
    for name, (want, got) in expect.items():
        if tuple(got) != want:
            probs.append(Problem(name, f"shape {tuple(got)} does not match {want}"))
            bad_shape.add(name)
    if scene.rgbs.dtype != np.uint8:
        probs.append(Problem("rgbs", f"dtype {scene.rgbs.dtype}, expected uint8"))
    if len(scene.camera_ids) != c:
        probs.append(Problem("camera_ids", f"{len(scene.camera_ids)} ids for {c} cameras"))
    if not (np.isfinite(scene.fps) and scene.fps > 0):
        probs.append(Problem("fps", f"must be a positive finite number, got {scene.fps}"))
    if scene.timestamps is not None and tuple(scene.timestamps.shape) != (c, t):
        probs.append(Problem("timestamps", f"shape {tuple(scene.timestamps.shape)} does not match {(c, t)}"))
    if c == 0 or t == 0:
        return probs
    if "depths" not in bad_shape:
        d = np.asarray(scene.depths)
        if not np.isfinite(d).all():
            probs.append(Problem("depths", "depth has NaN or inf values (use 0 for invalid)"))
        elif (d < 0).any():
            probs.append(Problem("depths", "depth has negative values (use 0 for invalid)"))
    if "intrs" not in bad_shape:
        k = np.asarray(scene.intrs, np.float64)
        finite = np.asarray(np.isfinite(k).all(axis=(-2, -1)))
        if not finite.all():
            probs.append(Problem("intrs", f"NaN or inf values at {_first(~finite)}"))
        with np.errstate(invalid="ignore"):
            focal = (k[..., 0, 0] > 0) & (k[..., 1, 1] > 0)
        if not (focal | ~finite).all():
            probs.append(
                Problem("intrs", f"focal lengths must be positive, not at {_first(~focal & finite)}")
            )
    if "extrs" not in bad_shape:
        e = np.asarray(scene.extrs, np.float64)
        finite = np.asarray(np.isfinite(e).all(axis=(-2, -1)))
        if not finite.all():
            probs.append(Problem("extrs", f"NaN or inf values at {_first(~finite)}"))
        r = np.where(finite[..., None, None], e[..., :3], np.eye(3))
        err = np.abs(np.einsum("...ij,...kj->...ik", r, r) - np.eye(3)).max(axis=(-2, -1))
        if (err > rot_tol).any():
            probs.append(
                Problem(
                    "extrs",
                    f"rotation part is not orthonormal (max |R R^T - I| = {err.max():.2g}) at {_first(err > rot_tol)}",
                )
            )
        det = np.linalg.det(r)
        flipped = (det < 0) & (err <= rot_tol)
        if flipped.any():
            probs.append(Problem("extrs", f"rotation part is a reflection (det R = -1) at {_first(flipped)}"))
    return probs


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
        ts = np.asarray(scene.timestamps)  # integer clocks (ns) stay exact; anything else float64
        arrays["timestamps"] = ts if np.issubdtype(ts.dtype, np.integer) else ts.astype(np.float64)
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
    if scene.robot is not None:
        from masktrack.io.scene_robot import save_scene_robot

        save_scene_robot(scene.robot, path)
    else:
        (path / "robot" / "robot.json").unlink(missing_ok=True)  # a stale robot is not this scene's
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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise SceneError(f"invalid JSON ({e}); re-import the scene", path=meta_path) from None
    if not isinstance(meta, dict):
        raise SceneError("expected a JSON object", path=meta_path)
    meta_probs = _meta_problems(meta)
    if meta_probs:
        raise SceneError("invalid scene.json", path=meta_path, problems=meta_probs)
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
        except (ValueError, OSError, EOFError) as e:  # truncated or not an .npy
            raise SceneError(f"unreadable array ({e}); re-import the scene", path=p, field=name) from None

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
    from masktrack.io.scene_robot import load_scene_robot

    scene.robot = load_scene_robot(
        path, num_frames=scene.num_frames, camera_ids=scene.camera_ids, validate=validate
    )
    return scene


def _meta_problems(meta: dict[str, Any]) -> list[Problem]:
    """Types of scene.json's fields (a hand-edited file must fail here, not as a traceback later)."""
    probs = []
    ids = meta.get("camera_ids", [])
    if not isinstance(ids, list) or not all(isinstance(c, (str, int)) for c in ids):
        probs.append(Problem("camera_ids", "must be a list of camera names"))
    fps = meta.get("fps", 30.0)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not np.isfinite(fps) or fps <= 0:
        probs.append(Problem("fps", f"must be a positive number, got {fps!r}"))
    return probs

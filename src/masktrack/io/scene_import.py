"""Import multi-view RGB-D recordings into masktrack's scene format.

The NPZ layout users have today::

    rgbs        uint8   [C, T, 3, H, W]
    depths      float32 [C, T, 1, H, W]   metres, 0 = invalid
    intrs       float32 [C, T, 3, 3]
    extrs       float32 [C, T, 3, 4]      world-to-camera [R|t]
    camera_ids  [C] strings (often an *object* array, which needs pickle)
    timestamps  [C, T] or [T]             optional
    <masks>     either a 0-d object array holding {"instance_0": bool [C, T, H, W], ...}
                (needs pickle) or a plain bool array [C, T, H, W]

Pickle runs arbitrary code from the file, so the NPZ is opened with
``allow_pickle=False`` and a key that needs pickle is an error naming the key,
unless the caller explicitly opts in (``--allow-pickle`` on the command line)
because they trust the file.

Masks whose size differs from the images are resized with nearest-neighbour
sampling of pixel centres (``cv2.INTER_NEAREST``); the aspect ratio must
match within 1 %.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.errors import SceneError
from masktrack.io.atomic import hash_file
from masktrack.io.instances import list_instances, remove_instance, save_instance
from masktrack.io.scene import Scene, load_scene, save_scene

PALETTE: list[tuple[int, int, int]] = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

PICKLE_WHY = (
    "is a pickled object array; loading it would run code stored in the file. "
    "Re-save it as a plain array, or pass --allow-pickle if you trust the file"
)


def parse_mask_keys(specs: str | Sequence[str] | None) -> list[tuple[str, str | None]]:
    """``"sam2_masks"`` or ``["gt_masks_gripper=gripper", ...]`` -> [(key, name or None)]."""
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    out = []
    for s in specs:
        key, _, name = s.strip().partition("=")
        out.append((key.strip(), name.strip() or None))
    return out


def _check_name(name: str, where: Path, field: str) -> str:
    if not _NAME.match(name):
        raise SceneError(
            f"instance name {name!r} must be letters, digits, '_', '-', '.'", path=where, field=field
        )
    return name


class _Npz:
    """An opened NPZ that reads keys pickle-free first and explains refusals."""

    def __init__(self, path: Path, allow_pickle: bool) -> None:
        self.path = path
        self.allow_pickle = allow_pickle
        try:
            self.z = np.load(path, allow_pickle=allow_pickle)
        except FileNotFoundError:
            raise SceneError("file not found", path=path) from None
        except (OSError, ValueError) as e:
            raise SceneError(f"not a readable .npz ({e})", path=path) from None
        if not hasattr(self.z, "files"):
            raise SceneError("not an .npz archive (expected several named arrays)", path=path)

    def __contains__(self, key: str) -> bool:
        return key in self.z.files

    def get(self, key: str, *, required: bool = True) -> np.ndarray | None:
        if key not in self.z.files:
            if required:
                raise SceneError(f"missing key (keys: {', '.join(self.z.files)})", path=self.path, field=key)
            return None
        try:
            return self.z[key]
        except ValueError as e:
            if "pickle" in str(e).lower():
                raise SceneError(PICKLE_WHY, path=self.path, field=key) from None
            raise SceneError(f"unreadable array ({e})", path=self.path, field=key) from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.z.close()


def _resize_masks(m: np.ndarray, size: tuple[int, int], where: Path, field: str) -> np.ndarray:
    """Nearest-neighbour resize of bool [..., h, w] to ``size`` (H, W); aspect ratio must agree."""
    h, w = m.shape[-2:]
    H, W = size
    if (h, w) == (H, W):
        return m
    if abs(h / w - H / W) > 0.01 * (H / W):
        raise SceneError(
            f"mask size {h}x{w} does not match image size {H}x{W} (different aspect ratio)",
            path=where,
            field=field,
        )
    import cv2

    flat = m.reshape(-1, h, w)
    out = np.empty((flat.shape[0], H, W), bool)
    for i, f in enumerate(flat):
        out[i] = cv2.resize(f.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)
    return out.reshape(*m.shape[:-2], H, W)


def _as_masks(arr: Any, shape: tuple[int, int, int, int], where: Path, field: str) -> np.ndarray:
    c, t, H, W = shape
    a = np.asarray(arr)
    if a.ndim == 5 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 4 or a.shape[:2] != (c, t):
        raise SceneError(f"masks shape {a.shape}, expected [C={c}, T={t}, H, W]", path=where, field=field)
    if a.dtype != bool:
        if not np.issubdtype(a.dtype, np.number):
            raise SceneError(f"masks dtype {a.dtype}, expected bool", path=where, field=field)
        a = a > 0
    return _resize_masks(a, (H, W), where, field)


def read_npz_masks(
    npz: _Npz, specs: list[tuple[str, str | None]], shape: tuple[int, int, int, int]
) -> dict[str, np.ndarray]:
    """Masks named by ``specs`` (a dict-holding object array or plain bool arrays) -> {name: bool [C,T,H,W]}."""
    out: dict[str, np.ndarray] = {}
    for key, name in specs:
        arr = npz.get(key)
        assert arr is not None
        if arr.dtype == object:
            obj = arr.item() if arr.ndim == 0 else None
            if not isinstance(obj, dict):
                raise SceneError(
                    "object array must be 0-d and hold a dict {instance: bool [C,T,H,W]}",
                    path=npz.path,
                    field=key,
                )
            for inst, m in obj.items():
                n = f"{name}.{inst}" if name else str(inst)
                out[_check_name(n, npz.path, f"{key}[{inst}]")] = _as_masks(
                    m, shape, npz.path, f"{key}[{inst}]"
                )
        else:
            n = name or key
            out[_check_name(n, npz.path, key)] = _as_masks(arr, shape, npz.path, key)
    return out


def import_npz(
    npz: str | Path,
    out_scene: str | Path,
    *,
    mask_key: str | Sequence[str] | None = None,
    allow_pickle: bool = False,
    camera_ids: Sequence[str] | None = None,
    fps: float = 30.0,
) -> Scene:
    """Convert the multi-view NPZ layout into a scene folder (plus instances from ``mask_key``).

    ``mask_key``: ``"sam2_masks"`` (a pickled dict of instances), or
    ``"gt_masks_gripper=gripper"`` (a plain bool array, renamed), or a list /
    comma-separated string of those.  ``camera_ids`` overrides the file's ids
    (useful when they are stored as a pickled object array).
    """
    npz = Path(npz)
    out_scene = Path(out_scene)
    src = _Npz(npz, allow_pickle)
    try:
        rgbs = src.get("rgbs")
        depths = src.get("depths")
        intrs = src.get("intrs")
        extrs = src.get("extrs")
        assert rgbs is not None and depths is not None and intrs is not None and extrs is not None
        if rgbs.ndim != 5 or rgbs.shape[2] not in (3, 4):
            raise SceneError(f"shape {rgbs.shape}, expected [C, T, 3, H, W]", path=npz, field="rgbs")
        if rgbs.dtype != np.uint8:
            raise SceneError(f"dtype {rgbs.dtype}, expected uint8", path=npz, field="rgbs")
        c, t, _, h, w = rgbs.shape
        if depths.ndim == 5 and depths.shape[2] == 1:
            depths = depths[:, :, 0]
        if depths.shape != (c, t, h, w):
            raise SceneError(
                f"shape {depths.shape}, expected [C={c}, T={t}, 1, H={h}, W={w}]", path=npz, field="depths"
            )
        intrs = _per_frame(intrs, (3, 3), c, t, npz, "intrs")
        extrs = _per_frame(extrs, (3, 4), c, t, npz, "extrs")
        ids = _camera_ids(src, c, camera_ids)
        ts = src.get("timestamps", required=False)
        if ts is not None:
            ts = np.asarray(ts, np.float64)
            if ts.shape == (t,):
                ts = np.broadcast_to(ts, (c, t)).copy()
        specs = parse_mask_keys(mask_key)
        masks = read_npz_masks(src, specs, (c, t, h, w)) if specs else {}
        scene = Scene(
            rgbs=np.ascontiguousarray(rgbs[:, :, :3].transpose(0, 1, 3, 4, 2)),
            depths=np.nan_to_num(np.asarray(depths, np.float32), nan=0.0, posinf=0.0, neginf=0.0),
            intrs=intrs.astype(np.float32),
            extrs=extrs.astype(np.float32),
            camera_ids=ids,
            fps=fps,
            timestamps=ts,
            meta={
                "source": {
                    "kind": "npz",
                    "path": str(npz.resolve()),
                    "sha256": hash_file(npz),
                    "mask_keys": [list(s) for s in specs],
                }
            },
        )
        scene.validate(where=npz)
    finally:
        src.close()
    # scene.json goes last: a killed import leaves a folder load_scene refuses
    (out_scene / "scene.json").unlink(missing_ok=True)
    out_scene.mkdir(parents=True, exist_ok=True)
    for old in list_instances(out_scene):
        if old in masks:
            remove_instance(out_scene, old)
    for i, (name, m) in enumerate(masks.items()):
        save_instance(
            out_scene,
            name,
            m,
            id=i + 1,
            color=PALETTE[i % len(PALETTE)],
            source={"kind": "npz", "key": specs_key(specs, name)},
        )
    save_scene(scene, out_scene)
    return load_scene(out_scene)


def specs_key(specs: list[tuple[str, str | None]], name: str) -> str:
    for key, n in specs:
        if n == name or key == name or (n and name.startswith(n + ".")):
            return key
    return specs[0][0] if len(specs) == 1 else ""


def _per_frame(a: np.ndarray, tail: tuple[int, int], c: int, t: int, where: Path, field: str) -> np.ndarray:
    a = np.asarray(a)
    if a.shape == (c, *tail):
        a = np.broadcast_to(a[:, None], (c, t, *tail)).copy()
    if a.shape == (c, t, 4, 4) and tail == (3, 4):
        a = a[:, :, :3, :]
    if a.shape != (c, t, *tail):
        raise SceneError(
            f"shape {a.shape}, expected [C={c}, T={t}, {tail[0]}, {tail[1]}]", path=where, field=field
        )
    return a


def _camera_ids(src: _Npz, c: int, override: Sequence[str] | None) -> list[str]:
    if override is not None:
        ids = [str(i) for i in override]
        if len(ids) != c:
            raise SceneError(f"{len(ids)} camera ids given for {c} cameras", field="camera_ids")
        return ids
    if "camera_ids" not in src:
        return [f"cam{i}" for i in range(c)]
    try:
        arr = src.get("camera_ids")
    except SceneError as e:
        if "pickle" in e.message:
            raise SceneError(
                "is a pickled object array of strings; pass --camera-ids a,b,c (or re-save it with "
                "np.array(ids, dtype=str)), or --allow-pickle if you trust the file",
                path=src.path,
                field="camera_ids",
            ) from None
        raise
    assert arr is not None
    ids = [str(x) for x in np.asarray(arr).reshape(-1)]
    if len(ids) != c:
        raise SceneError(f"{len(ids)} ids for {c} cameras", path=src.path, field="camera_ids")
    return ids

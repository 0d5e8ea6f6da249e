"""Import multi-view RGB-D recordings into masktrack's scene format.

The NPZ layout users have today (mvtracker's, and its per-mask files)::

    rgbs        uint8   [C, T, 3, H, W]   or channels-last [C, T, H, W, 3]
    depths      float32 [C, T, 1, H, W]   metres, 0 = invalid (or [C, T, H, W])
    intrs       float32 [C, T, 3, 3]      or static [C, 3, 3] (broadcast over frames)
    extrs       float32 [C, T, 3, 4]      world-to-camera [R|t]; also [C, T, 4, 4] and static
                                          [C, 3, 4] / [C, 4, 4]
    camera_ids  [C] strings (often an *object* array, which needs pickle)
    timestamps  [C, T] or [T]             optional
    per_camera_timestamps [C, T]          optional (int64, e.g. ns): the scene's timestamps, kept exact
    query_points float32 [N, 4]           optional (t, x, y, z): every imported instance's own queries
                                          (``masktrack track --window given``), t kept
    sam2_contact_frames   int, 0-d or [C] optional: contact frame (per camera; < 0 = none), the
                                          default of ``--window before_contact/after_contact``
    <masks>     either a 0-d object array holding {"instance_0": bool [C, T, H, W], ...}
                (needs pickle) or a plain bool array [C, T, H, W]

Every problem of a file is reported at once (each key's shape, dtype and
pickle refusal), not one per run.

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

from masktrack.errors import Problem, SceneError
from masktrack.io.atomic import atomic_path, hash_file
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
    npz: _Npz,
    specs: list[tuple[str, str | None]],
    shape: tuple[int, int, int, int],
    *,
    problems: list[Problem] | None = None,
) -> dict[str, np.ndarray]:
    """Masks named by ``specs`` (a dict-holding object array or plain bool arrays) -> {name: bool [C,T,H,W]}.

    With ``problems``, each key's problem is appended there and the other keys are still read.
    """
    if problems is not None:
        out_all: dict[str, np.ndarray] = {}
        for spec in specs:
            try:
                out_all.update(read_npz_masks(npz, [spec], shape))
            except SceneError as e:
                problems.extend(_as_problems(e))
        return out_all
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


CONTACT_KEYS = ("sam2_contact_frames", "contact_frames")


def import_npz(
    npz: str | Path,
    out_scene: str | Path,
    *,
    mask_key: str | Sequence[str] | None = None,
    allow_pickle: bool = False,
    camera_ids: Sequence[str] | None = None,
    fps: float = 30.0,
    robot: Any = None,
) -> Scene:
    """Convert the multi-view NPZ layout into a scene folder (plus instances from ``mask_key``).

    ``mask_key``: ``"sam2_masks"`` (a pickled dict of instances), or
    ``"gt_masks_gripper=gripper"`` (a plain bool array, renamed), or a list /
    comma-separated string of those.  ``camera_ids`` overrides the file's ids
    (useful when they are stored as a pickled object array).  ``robot``, a
    reader ``robot(npz, num_frames=, camera_ids=, extrs=, intrs=, depths=) -> SceneRobot``
    (``functools.partial(masktrack.robot.scene_state.read_npz_robot, spec=RobotImport(...))``),
    also imports the robot's joint states into ``robot/`` before anything is written.  Every problem in the
    file is collected and raised as one :class:`SceneError`.
    """
    npz = Path(npz)
    out_scene = Path(out_scene)
    src = _Npz(npz, allow_pickle)
    probs: list[Problem] = []

    def attempt(fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except SceneError as e:
            probs.extend(_as_problems(e))
            return None

    try:
        rgbs = attempt(src.get, "rgbs")
        depths = attempt(src.get, "depths")
        intrs = attempt(src.get, "intrs")
        extrs = attempt(src.get, "extrs")
        c = t = h = w = None
        if rgbs is not None:
            rgbs = attempt(_rgb_channels_last, rgbs, npz)
            if rgbs is not None:
                c, t, h, w = (int(x) for x in rgbs.shape[:4])
        if depths is not None and c is not None:
            depths = attempt(_depths, depths, (c, t, h, w), npz)
        if intrs is not None and c is not None:
            intrs = attempt(_per_frame, intrs, (3, 3), c, t, npz, "intrs")
        if extrs is not None and c is not None:
            extrs = attempt(_per_frame, extrs, (3, 4), c, t, npz, "extrs")
        n_cams = c if c is not None else _guess_cameras(src)
        ids = attempt(_camera_ids, src, n_cams, camera_ids) if n_cams is not None else None
        ts = attempt(_timestamps, src, c, t) if c is not None else None
        queries = attempt(_query_points, src, t) if t is not None else None
        contact = attempt(_contact_frames, src, ids, t) if ids is not None and t is not None else None
        specs = parse_mask_keys(mask_key)
        masks: dict[str, np.ndarray] = {}
        if specs and c is not None and t is not None and h is not None and w is not None:
            masks = read_npz_masks(src, specs, (c, t, h, w), problems=probs)
        elif specs:  # no image shape to check against: at least report unreadable mask keys
            for key, _ in specs:
                attempt(src.get, key)
        if len(probs) == 1:
            raise SceneError(probs[0].message, path=npz, field=probs[0].location or None)
        if probs:
            raise SceneError(f"{len(probs)} problem(s)", path=npz, problems=probs)
        assert rgbs is not None and depths is not None and intrs is not None and extrs is not None
        assert ids is not None
        meta: dict[str, Any] = {
            "source": {
                "kind": "npz",
                "path": str(npz.resolve()),
                "sha256": hash_file(npz),
                "mask_keys": [list(s) for s in specs],
            }
        }
        if contact:
            meta["contact_frames"] = contact
        scene = Scene(
            rgbs=np.ascontiguousarray(rgbs),
            depths=np.nan_to_num(np.asarray(depths, np.float32), nan=0.0, posinf=0.0, neginf=0.0),
            intrs=intrs.astype(np.float32),
            extrs=extrs.astype(np.float32),
            camera_ids=ids,
            fps=fps,
            timestamps=ts,
            meta=meta,
        )
        scene.validate(where=npz)
        if robot is not None:
            scene.robot = (
                robot(  # masktrack.robot.scene_state.read_npz_robot with its spec (io imports no robot)
                    src,
                    num_frames=t,
                    camera_ids=ids,
                    extrs=np.asarray(scene.extrs, np.float64),
                    intrs=np.asarray(scene.intrs, np.float64),
                    depths=scene.depths,
                )
            )
    finally:
        src.close()
    # scene.json goes last: a killed import leaves a folder load_scene refuses
    (out_scene / "scene.json").unlink(missing_ok=True)
    out_scene.mkdir(parents=True, exist_ok=True)
    for old in list_instances(out_scene):
        if old in masks:
            remove_instance(out_scene, old)
    from masktrack.io.instances import GIVEN_QUERIES

    for i, (name, m) in enumerate(masks.items()):
        folder = out_scene / "instances" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / GIVEN_QUERIES).unlink(missing_ok=True)
        if queries is not None:  # before instance.json: the instance appears with its queries
            with atomic_path(folder / GIVEN_QUERIES) as tmp:
                np.save(tmp, queries, allow_pickle=False)
        save_instance(
            out_scene,
            name,
            m,
            id=i + 1,
            color=PALETTE[i % len(PALETTE)],
            source={
                "kind": "npz",
                "key": specs_key(specs, name),
                **({"query_points": int(len(queries))} if queries is not None else {}),
            },
        )
    save_scene(scene, out_scene)
    return load_scene(out_scene)


def _as_problems(e: SceneError) -> list[Problem]:
    if e.problems:
        return list(e.problems)
    return [Problem(e.field or "", e.message)]


def _rgb_channels_last(rgbs: np.ndarray, where: Path) -> np.ndarray:
    """uint8 [C, T, H, W, 3] from channels-first [C, T, 3|4, H, W] or channels-last [C, T, H, W, 3|4]."""
    if rgbs.dtype != np.uint8:
        raise SceneError(f"dtype {rgbs.dtype}, expected uint8", path=where, field="rgbs")
    if rgbs.ndim == 5 and rgbs.shape[2] in (3, 4):  # the documented layout wins when both could be
        return np.asarray(rgbs[:, :, :3].transpose(0, 1, 3, 4, 2))
    if rgbs.ndim == 5 and rgbs.shape[4] in (3, 4):
        return np.asarray(rgbs[..., :3])
    raise SceneError(
        f"shape {rgbs.shape}, expected [C, T, 3, H, W] (or channels-last [C, T, H, W, 3])",
        path=where,
        field="rgbs",
    )


def _depths(depths: np.ndarray, shape: tuple[int, ...], where: Path) -> np.ndarray:
    c, t, h, w = shape
    if depths.ndim == 5 and depths.shape[2] == 1:
        depths = depths[:, :, 0]
    elif depths.ndim == 5 and depths.shape[4] == 1:
        depths = depths[..., 0]
    if depths.shape != (c, t, h, w):
        raise SceneError(
            f"shape {depths.shape}, expected [C={c}, T={t}, 1, H={h}, W={w}]", path=where, field="depths"
        )
    if not np.issubdtype(depths.dtype, np.number):
        raise SceneError(f"dtype {depths.dtype}, expected float", path=where, field="depths")
    return depths


def _guess_cameras(src: _Npz) -> int | None:
    for key in ("depths", "intrs", "extrs"):
        if key in src:
            with contextlib.suppress(SceneError):
                a = src.get(key)
                if a is not None and a.ndim >= 3:
                    return int(a.shape[0])
    return None


def _timestamps(src: _Npz, c: int, t: int) -> np.ndarray | None:
    """``per_camera_timestamps`` [C, T] (kept as stored, e.g. int64 ns) or ``timestamps`` [C, T] / [T]."""
    for key in ("per_camera_timestamps", "timestamps"):
        if key not in src:
            continue
        a = src.get(key)
        assert a is not None
        if not np.issubdtype(a.dtype, np.number):
            raise SceneError(f"dtype {a.dtype}, expected numbers", path=src.path, field=key)
        if a.shape == (t,) and key == "timestamps":
            a = np.broadcast_to(a, (c, t))
        if a.shape != (c, t):
            raise SceneError(f"shape {a.shape}, expected [C={c}, T={t}]", path=src.path, field=key)
        keep = a.dtype if np.issubdtype(a.dtype, np.integer) else np.float64
        return np.array(a, dtype=keep)
    return None


def _query_points(src: _Npz, t: int) -> np.ndarray | None:
    if "query_points" not in src:
        return None
    q = src.get("query_points")
    assert q is not None
    if q.ndim != 2 or q.shape[1] != 4 or not np.issubdtype(q.dtype, np.number):
        raise SceneError(
            f"shape {q.shape} {q.dtype}, expected numbers [N, 4] (t, x, y, z)",
            path=src.path,
            field="query_points",
        )
    q = q.astype(np.float32)
    if not np.isfinite(q).all():
        raise SceneError("has NaN or inf values", path=src.path, field="query_points")
    if len(q) and (q[:, 0].min() < 0 or q[:, 0].max() > t - 1 or (q[:, 0] != np.round(q[:, 0])).any()):
        raise SceneError(
            f"query frames (column t) must be whole frames in 0..{t - 1}", path=src.path, field="query_points"
        )
    return q


def _contact_frames(src: _Npz, ids: list[str], t: int) -> dict[str, int] | None:
    key = next((k for k in CONTACT_KEYS if k in src), None)
    if key is None:
        return None
    a = src.get(key)
    assert a is not None
    if not np.issubdtype(a.dtype, np.integer) and not (
        np.issubdtype(a.dtype, np.floating) and np.all(np.asarray(a) == np.round(a))
    ):
        raise SceneError(f"dtype {a.dtype}, expected integer frames", path=src.path, field=key)
    a = np.asarray(a).astype(np.int64)
    if a.ndim == 0:
        a = np.full(len(ids), int(a))
    if a.shape != (len(ids),):
        raise SceneError(
            f"shape {a.shape}, expected one frame for all cameras or [C={len(ids)}]", path=src.path, field=key
        )
    if (a > t - 1).any():
        raise SceneError(f"contact frame past the last frame {t - 1}", path=src.path, field=key)
    return {cid: int(f) for cid, f in zip(ids, a) if f >= 0}


def specs_key(specs: list[tuple[str, str | None]], name: str) -> str:
    for key, n in specs:
        if n == name or key == name or (n and name.startswith(n + ".")):
            return key
    return specs[0][0] if len(specs) == 1 else ""


def _per_frame(a: np.ndarray, tail: tuple[int, int], c: int, t: int, where: Path, field: str) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.number):
        raise SceneError(f"dtype {a.dtype}, expected numbers", path=where, field=field)
    if a.shape == (c, 4, 4) and tail == (3, 4):
        a = a[:, :3, :]
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

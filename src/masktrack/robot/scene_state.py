"""A scene's stored robot (:mod:`masktrack.io.scene_robot`) as the robot core's model and state, and its import.

The scene format stores only data (joint track, base pose, mounts, model
reference); this adapter loads the model, checks the stored names against it,
builds the :class:`RobotState` the renderer takes, and reads a robot's state
from an NPZ recording (base pose fitted to an end-effector track, robot
height and camera corrections refined against depth).  It lives in the
robot layer because it needs the robot core, which the scene format (``io``)
may not import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from masktrack.errors import MasktrackError, Problem, SceneError
from masktrack.io.scene_robot import (
    BUILTIN_MODELS,
    PANDA_JOINT_NAMES,
    RobotImport,
    SceneRobot,
    _pose_problems,
    as_pose4,
)
from masktrack.robot.model import RobotModel
from masktrack.robot.render import render
from masktrack.robot.state import RobotState


def load_robot_model(robot: SceneRobot) -> RobotModel:
    """The scene robot's model with its extra link groups, its names checked against the data (all at once)."""
    try:
        model = RobotModel.load(robot.model_ref())
    except MasktrackError:
        raise
    except Exception as e:  # a broken URDF/MJCF is the user's input
        raise SceneError(
            f"cannot load robot model {robot.model_ref()!r}: {e}",
            path=robot.folder / "robot.json" if robot.folder else None,
            field="model",
        ) from None
    if robot.link_groups:
        groups = dict(getattr(model, "link_groups", {}) or {})
        groups.update({g: list(v) for g, v in robot.link_groups.items()})
        try:
            model.link_groups = groups
        except AttributeError:  # pragma: no cover - a model with read-only groups
            pass
    probs = robot.model_problems(model)
    if probs:
        raise SceneError(
            f"{len(probs)} problem(s)", path=robot.folder.parent if robot.folder else None, problems=probs
        )
    return model


def robot_state(robot: SceneRobot, model: RobotModel | None = None) -> RobotState:
    """The scene robot as a :class:`RobotState` (loads and checks the model unless given)."""
    if model is None:
        load_robot_model(robot)  # checks names against the model; the state refers to it by name
    return RobotState(
        model=robot.model_ref(),
        joint_names=list(robot.joint_names),
        positions=np.asarray(robot.positions, np.float64),
        base_pose=np.asarray(robot.base_pose, np.float64),
        joint_offsets=dict(robot.joint_offsets),
        mounted_cameras={k: (v[0], np.asarray(v[1], np.float64)) for k, v in robot.mounted_cameras.items()},
        link_groups={g: list(v) for g, v in robot.link_groups.items()},
    )


def read_npz_robot(
    npz: Any,
    spec: RobotImport,
    *,
    num_frames: int,
    camera_ids: list[str],
    extrs: np.ndarray,
    intrs: np.ndarray | None = None,
    depths: np.ndarray | None = None,
) -> SceneRobot:
    """A :class:`SceneRobot` from an opened NPZ (``masktrack.io.scene_import._Npz``); every problem at once."""
    where = npz.path
    probs: list[Problem] = []
    cols = []
    for key in spec.joints:
        if key not in npz:
            probs.append(Problem(key, f"missing key (keys: {', '.join(npz.z.files)})"))
            continue
        a = np.asarray(npz.get(key), np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[0] != num_frames:
            probs.append(Problem(key, f"shape {a.shape}, expected [T={num_frames}, J]"))
            continue
        cols.append(a)
    try:
        model = RobotModel.load(
            spec.model if spec.model in BUILTIN_MODELS else str(Path(spec.model).resolve())
        )
    except MasktrackError as e:
        raise SceneError(
            f"cannot load robot model {spec.model!r}: {e.message}", field="--robot-model"
        ) from None
    q = np.concatenate(cols, 1) if cols and len(cols) == len(spec.joints) else None
    names = spec.joint_names
    if names is None and q is not None:
        if spec.model == "panda" and q.shape[1] == len(PANDA_JOINT_NAMES):
            names = list(PANDA_JOINT_NAMES)
        elif q.shape[1] == len(model.joint_names):
            names = list(model.joint_names)
        else:
            probs.append(
                Problem(
                    "--robot-joint-names",
                    f"{q.shape[1]} joint columns in {', '.join(spec.joints)}; name them "
                    f"(the model's joints: {', '.join(model.joint_names)})",
                )
            )
    if names is not None and q is not None and len(names) != q.shape[1]:
        probs.append(Problem("--robot-joint-names", f"{len(names)} names for {q.shape[1]} joint columns"))
    all_joints = [j.name for j in model.joints]
    if names is not None:
        bad = [n for n in names if n not in all_joints]
        if bad:
            probs.append(Problem("--robot-joint-names", f"not joints of {spec.model!r}: {', '.join(bad)}"))
    if q is not None and not np.isfinite(q).all():
        probs.append(Problem(",".join(spec.joints), "joint positions have NaN or inf values"))
    for cid, link in spec.mounts.items():
        if cid not in camera_ids:
            probs.append(
                Problem(f"--robot-mount {cid}", f"unknown camera (cameras: {', '.join(camera_ids)})")
            )
        if link not in model.link_names:
            probs.append(Problem(f"--robot-mount {cid}", f"{link!r} is not a link of {spec.model!r}"))
    base = None
    if spec.base is not None:
        if spec.base not in npz:
            probs.append(Problem(spec.base, "missing key (the robot base pose, [4,4] or [T,4,4])"))
        else:
            base = as_pose4(npz.get(spec.base))
            probs += [
                Problem(spec.base, p.message)
                for p in _pose_problems(base, spec.base, num_frames=num_frames, per_frame_ok=True)
            ]
    elif spec.base_clicks is not None:
        pass  # read below, its problems reported with the file's name
    elif spec.ee is None or spec.ee not in npz:
        probs.append(
            Problem(
                "--robot-base",
                "no base pose: name its key (--robot-base KEY), clicked robot points (--robot-base-clicks FILE)"
                f", or an end-effector pose track (--robot-ee KEY{'; ' + repr(spec.ee) + ' is not in the file' if spec.ee else ''}) to fit it",
            )
        )
    if probs:
        raise SceneError(f"{len(probs)} problem(s) in the robot state", path=where, problems=probs)
    clicks = None
    if base is None and spec.base_clicks is not None:
        from masktrack.robot.clicks import read_clicks

        clicks = read_clicks(spec.base_clicks, model, camera_ids=camera_ids, num_frames=num_frames)
    assert q is not None and names is not None
    source: dict[str, Any] = {"kind": "npz", "joints": list(spec.joints), "model": spec.model}
    offsets: dict[str, float] = {}
    if base is None and clicks is not None:
        from masktrack.robot.calibrate import CalibrationError
        from masktrack.robot.clicks import fit_base_from_clicks

        if intrs is None:  # pragma: no cover - import_npz always passes them
            raise SceneError("clicks need the cameras' intrinsics", path=spec.base_clicks)
        try:
            cfit = fit_base_from_clicks(
                model,
                names,
                q,
                clicks.clicks,
                {cid: np.asarray(intrs[c], np.float64) for c, cid in enumerate(camera_ids)},
                {cid: as_pose4(extrs[c]) for c, cid in enumerate(camera_ids)},
                fit_joint_offsets=clicks.fit_joint_offsets,
            )
        except CalibrationError as e:
            raise SceneError(e.message, path=spec.base_clicks, field="clicks") from None
        base, offsets = cfit.base_pose, {k: v for k, v in cfit.joint_offsets.items()}
        source["base_fit"] = {"clicks_file": str(Path(str(spec.base_clicks)).resolve()), **cfit.to_dict()}
    elif base is None:
        from masktrack.robot.calibrate import fit_base_from_ee

        ee = as_pose4(npz.get(spec.ee))
        if ee.shape != (num_frames, 4, 4):
            raise SceneError(f"shape {ee.shape}, expected [T={num_frames}, 4, 4]", path=where, field=spec.ee)
        ee_link = spec.ee_link or getattr(model, "ee_link", None)
        if ee_link is None or ee_link not in model.link_names:
            raise SceneError(
                f"which link does {spec.ee!r} follow? pass --robot-ee-link (links: {', '.join(model.link_names)})",
                path=where,
                field="--robot-ee-link",
            )
        fit = fit_base_from_ee(
            model, names, q, ee, ee_link, tool_from_link=getattr(model, "tool_from_ee", None)
        )
        base, offsets = fit.base_pose, dict(fit.joint_offsets)
        source["base_fit"] = {
            "ee_key": spec.ee,
            "ee_link": ee_link,
            "residual_mm": round(float(fit.residual_mm), 3),
            "residual_deg": round(float(fit.residual_deg), 4),
        }
    corrections: dict[str, np.ndarray] = {}
    if spec.refine and intrs is not None and depths is not None:
        base, corrections, source["calibration"] = refine_from_depth(
            model, names, q, offsets, base, set(spec.mounts), camera_ids, intrs, extrs, depths
        )
    # mounts last, from the final base pose and the corrected extrinsics (the correction is folded in:
    # a wrist camera sits millimetres from the hand, where 5 mm decide what the render shows)
    mounted: dict[str, tuple[str, np.ndarray]] = {}
    for cid, link in spec.mounts.items():
        cam_extrs = as_pose4(extrs[camera_ids.index(cid)])
        d = corrections.pop(cid, None)
        if d is not None:
            cam_extrs = d[None] @ cam_extrs
        mounted[cid] = (link, _fit_mount(model, names, q, offsets, base, link, cam_extrs))
    return SceneRobot(
        model=spec.model if spec.model in BUILTIN_MODELS else str(Path(spec.model).resolve()),
        joint_names=list(names),
        positions=q,
        base_pose=np.asarray(base, np.float64),
        joint_offsets={k: float(v) for k, v in offsets.items() if abs(v) > 0},
        mounted_cameras=mounted,
        source=source,
        camera_corrections=corrections,
    )


def refine_from_depth(
    model: Any,
    names: list[str],
    q: np.ndarray,
    offsets: dict[str, float],
    base: np.ndarray,
    moving: set[str],
    camera_ids: list[str],
    intrs: np.ndarray,
    extrs: np.ndarray,
    depths: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """(base pose with the depth-fitted world shift, per-camera corrections, a report) from the cameras' depth.

    Every camera uses its recorded extrinsics here; the ``moving`` ones (wrist
    cameras) do not vote on the robot's position.  A camera's correction is
    kept only when it lowers its depth residual; a
    camera whose depth still disagrees is reported (``ok: false``), not
    refused: the pipeline refuses to draw masks from it (see
    :mod:`masktrack.segment.kinematic`), other cameras stay usable.
    """
    from masktrack.robot.calibrate import (
        CameraView,
        check_calibration,
        refine_camera,
        refine_robot_from_depth,
    )

    state = RobotState(
        model="",
        joint_names=list(names),
        positions=q,
        base_pose=np.asarray(base, np.float64),
        joint_offsets=dict(offsets),
    )
    views = [
        CameraView(
            cid,
            np.asarray(intrs[c], np.float64),
            np.asarray(extrs[c], np.float64),
            np.asarray(depths[c], np.float32),
            static=cid not in moving,
        )
        for c, cid in enumerate(camera_ids)
    ]
    state, shift = refine_robot_from_depth(model, state, views)
    corrections: dict[str, np.ndarray] = {}
    cams: dict[str, Any] = {}
    for v in views:
        rc = refine_camera(model, state, v)
        entry = rc.to_dict()
        keep = np.isfinite(rc.residual_mm_after) and rc.residual_mm_after < rc.residual_mm_before
        if keep:
            corrections[v.camera_id] = np.asarray(rc.correction, np.float64)
        entry["kept"] = bool(keep)
        fr = np.asarray(rc.frames, np.int64)
        h, w = v.depth.shape[-2:]
        rr = render(
            model,
            state,
            v.K,
            v.world_to_cam,
            h,
            w,
            frames=fr,
            camera_id=v.camera_id,
            cam_correction=corrections.get(v.camera_id),
            groups={"robot": model.links_of(None)},
        )
        chk = check_calibration(rr.depth, v.depth[fr], v.camera_id, raise_error=False)
        entry["check"] = chk.to_dict()
        cams[v.camera_id] = entry
    report = {"world_shift_mm": [round(float(x) * 1000, 2) for x in shift[:3, 3]], "cameras": cams}
    return np.asarray(state.base_pose, np.float64), corrections, report


def _fit_mount(
    model: Any,
    names: list[str],
    q: np.ndarray,
    offsets: dict[str, float],
    base: np.ndarray,
    link: str,
    extrs: np.ndarray,
) -> np.ndarray:
    """Camera-from-link [4,4] that best explains a mounted camera's per-frame extrinsics (mean, rotation projected)."""
    qq = q.copy()
    for i, n in enumerate(names):
        qq[:, i] += offsets.get(n, 0.0)
    world_link = as_pose4(base) @ model.fk(qq, names, links=[link])[link]
    cam_link = as_pose4(extrs) @ world_link  # [T,4,4]
    r = cam_link[:, :3, :3].mean(0)
    u, _, vt = np.linalg.svd(r)
    out = np.eye(4)
    out[:3, :3] = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
    out[:3, 3] = cam_link[:, :3, 3].mean(0)
    return out

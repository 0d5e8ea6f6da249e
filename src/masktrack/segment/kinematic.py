"""Prompt source ``kinematics`` and the weight-free ``kinematic`` backend: masks from the robot's joint states.

A robot dataset records the robot (joint positions, base pose, calibrated
cameras), and the robot model says where each link is; so the arm and the
gripper need no clicks.  A session with a ``kinematics`` section (see
:class:`masktrack.config.KinematicsConfig`) gets its robot objects from a
render of the scene's robot in the video's camera (:mod:`masktrack.robot`),
made occlusion-aware with the scene's measured depth (a robot pixel whose
measured depth is clearly in front of the rendered surface is hidden by
something: an object in the gripper, a hand).

Three modes:

``prompt``
    On each keyframe the rendered mask becomes a prompt for the session's own
    backend (classic, sam2, sam3, ...): the mask itself (written as a PNG under
    ``<output>/kinematics/<session>/<object>/``, hashed into the session key
    like any prompt mask), its box, positive points spread over its deep
    interior and negative points just outside it, first on other robot parts
    nearby (the wrist for a gripper), then on a ring around it.
``prior``
    The ``kinematic`` backend: on every frame the rendered mask is refined to
    image edges by GrabCut in a band around the rendered outline (sure
    foreground: the eroded render; sure background: beyond the band), then
    occluded pixels are removed again.  The render is trusted where the image
    gives no evidence.
``render``
    The ``kinematic`` backend outputs the occlusion-aware render as it is.

Results land in the normal mask store, so composition works unchanged.  The
kinematic backend's fingerprint names the robot data (joint track, model
file, base pose), the camera's intrinsics and extrinsics by content and the
measured depth by file stamp, so editing the robot data recomputes the
session.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.config import InlineObject, KinematicsConfig, PipelineConfig, SessionConfig
from masktrack.errors import ConfigError, SceneError
from masktrack.io.atomic import atomic_path, hash_json
from masktrack.io.video import VideoSource
from masktrack.prompts.model import Keyframe
from masktrack.segment.base import Backend, FrameMasks, FramePrompt, Session, SessionObject

KINEMATIC_VERSION = 2  # 2: prior mode lets measured depth overrule colour
ALL_LINKS = "__robot__"
CACHE_BYTES = (
    512 << 20
)  # a whole video's render (labels, depth, occlusion) is kept below this size  # the render's group holding every link (for negatives near other parts)


# --------------------------------------------------------------------------- the robot in one camera


@dataclass
class KinematicView:
    """The scene's robot as one camera sees it, at the video's image size."""

    scene_path: Path
    camera: str
    camera_index: int
    size: tuple[int, int]  # (H, W) of the video
    K: np.ndarray  # [T, 3, 3] scaled to the video's size
    extrs: np.ndarray | None  # [T, 3, 4] world-to-camera; None for a camera mounted on a link
    depths: Any  # [T, h, w] measured depth (memory-mapped), scene size
    model: Any  # masktrack.robot.RobotModel
    state: Any  # masktrack.robot.RobotState
    groups: dict[str, list[str]]
    key: str  # content key of everything the render depends on
    correction: np.ndarray | None = None  # depth-refined correction of this camera (robot.camera_corrections)
    _cache: dict[tuple[bool, float], Any] = field(default_factory=dict, repr=False)
    _checked: Any = field(default=None, repr=False)

    @classmethod
    def open(
        cls, scene: str | Path, camera: str, video: VideoSource, *, where: Path | None = None
    ) -> KinematicView:
        """Load the scene's robot for ``camera``; the video must show the same frames (sizes may scale)."""
        from masktrack.io.scene import load_scene

        scene_path = Path(scene)
        sc = load_scene(scene_path)
        if sc.robot is None:
            raise SceneError(
                "the scene has no robot state (robot/robot.json); import it with "
                "`masktrack scene import ... --robot-model ...` or use prompt files",
                path=scene_path,
                field="robot",
            )
        if camera not in sc.camera_ids:
            raise ConfigError(
                f"unknown camera {camera!r} in scene {scene_path} (cameras: {', '.join(sc.camera_ids)})",
                path=where,
                field="robot.camera",
            )
        if video.num_frames != sc.num_frames:
            raise ConfigError(
                f"the video has {video.num_frames} frames, scene {scene_path} has {sc.num_frames}: "
                "kinematic prompts need the scene's frames",
                path=where,
                field="robot.scene",
            )
        c = sc.camera_ids.index(camera)
        h, w = sc.size
        H, W = video.size
        if abs(h / w - H / W) > 0.01 * (H / W):
            raise ConfigError(
                f"the video is {W}x{H}, camera {camera!r} of the scene is {w}x{h} (different aspect ratio)",
                path=where,
                field="robot.camera",
            )
        K = np.asarray(sc.intrs[c], np.float64).copy()
        sx, sy = W / w, H / h
        if (sx, sy) != (1.0, 1.0):  # pixel centres: u' = (u + 0.5) s - 0.5
            K[:, 0, :] *= sx
            K[:, 1, :] *= sy
            K[:, 0, 2] += 0.5 * sx - 0.5
            K[:, 1, 2] += 0.5 * sy - 0.5
        robot = sc.robot
        from masktrack.robot.scene_state import load_robot_model, robot_state

        model = load_robot_model(robot)
        state = robot_state(robot, model)
        groups = dict(model.link_groups)
        groups.update(state.link_groups)
        groups[ALL_LINKS] = model.links_of(None)
        mounted = camera in state.mounted_cameras
        extrs = None if mounted else np.asarray(sc.extrs[c], np.float64)
        dpath = scene_path / "depths.npy"
        stamp = [dpath.stat().st_size, dpath.stat().st_mtime_ns] if dpath.exists() else None
        key = hash_json(
            {
                "version": KINEMATIC_VERSION,
                "robot": robot.content_key(),
                "camera": camera,
                "K": np.round(K, 6).tolist()[0] if np.allclose(K, K[:1]) else hash_json(K.round(6).tolist()),
                "extrs": None if extrs is None else hash_json(np.round(extrs, 7).tolist()),
                "size": [H, W],
                "depth_stamp": stamp,
            }
        )
        corr = robot.camera_corrections.get(camera)
        return cls(scene_path, camera, c, (H, W), K, extrs, sc.depths[c], model, state, groups, key, corr)

    def check_calibration(self) -> Any:
        """Rendered vs measured depth on a few frames where the robot moves; CalibrationError when they disagree.

        Wrong joint order, a wrong model, a swapped camera or a bad base pose put
        the rendered robot centimetres off its measured surface: masks drawn from
        it would be wrong, so the session stops with the numbers instead.
        """
        if self._checked is not None:
            return self._checked
        from masktrack.robot.calibrate import CalibrationError, check_calibration, moving_frames

        fr = moving_frames(self.state)
        rr = self.render(fr, occlusion=False)
        try:
            self._checked = check_calibration(rr.depth, self.measured(fr), self.camera)
        except CalibrationError as e:
            raise CalibrationError(
                e.message + " (or set kinematics.check: false)", path=self.scene_path, field="robot"
            ) from None
        return self._checked

    def check_groups(self, wanted: dict[str, str], *, where: Path | None, loc: str) -> None:
        bad = {o: g for o, g in wanted.items() if g not in self.groups or g == ALL_LINKS}
        if bad:
            known = ", ".join(g for g in self.groups if g != ALL_LINKS)
            raise ConfigError(
                "; ".join(f"object {o!r}: unknown link group {g!r}" for o, g in bad.items())
                + f" (groups of the robot model: {known})",
                path=where,
                field=loc,
            )

    def measured(self, frames: Sequence[int] | np.ndarray) -> np.ndarray:
        """Measured depth [T', H, W] at the video's size (nearest neighbour)."""
        d = np.asarray(self.depths[np.asarray(frames)], np.float32)
        H, W = self.size
        if d.shape[1:] == (H, W):
            return d
        import cv2

        return np.stack([cv2.resize(x, (W, H), interpolation=cv2.INTER_NEAREST) for x in d])

    def render(
        self, frames: Sequence[int] | np.ndarray, *, occlusion: bool = True, margin: float = 0.02
    ) -> Any:
        """The robot's ``RobotRender`` on ``frames`` (every group; occluders removed unless ``occlusion`` is off).

        A render of every frame is kept (when under :data:`CACHE_BYTES`), so the
        kinematic backend's per-frame pass does not draw the robot a second time.
        """
        from masktrack.robot import RobotRender, occlude, render

        fr = np.asarray(list(frames), np.int64)
        cached = self._cache.get((occlusion, margin))
        if cached is not None:
            occ = cached.occluded[fr] if cached.occluded is not None else None
            return RobotRender(cached.link_labels[fr], cached.depth[fr], cached.links, cached.groups, fr, occ)
        rr = render(
            self.model,
            self.state,
            self.K,
            self.extrs,
            self.size[0],
            self.size[1],
            groups=self.groups,
            frames=fr,
            camera_id=self.camera if self.extrs is None else None,
            cam_correction=self.correction,
        )
        if occlusion:
            rr = occlude(rr, self.measured(fr), margin)
        T = len(self.K)
        if (
            len(fr) == T
            and np.array_equal(fr, np.arange(T))
            and T * self.size[0] * self.size[1] * 7 <= CACHE_BYTES
        ):
            self._cache = {(occlusion, margin): rr}
        return rr


_VIEWS: dict[tuple[str, str, tuple[int, int]], KinematicView] = {}


def open_view(
    scene: str | Path, camera: str, video: VideoSource, *, where: Path | None = None
) -> KinematicView:
    """:meth:`KinematicView.open`, memoised per process for the scene files' current state."""
    p = Path(scene).resolve()
    k = (str(p), camera, video.size)
    v = _VIEWS.get(k)
    stamp = _robot_stamp(p)
    if v is None or getattr(v, "_stamp", None) != stamp:
        v = KinematicView.open(scene, camera, video, where=where)
        v._stamp = stamp  # type: ignore[attr-defined]
        _VIEWS[k] = v
    return v


def _robot_stamp(scene: Path) -> list[Any]:
    out = []
    for f in (
        *sorted((scene / "robot").glob("*")),
        scene / "intrs.npy",
        scene / "extrs.npy",
        scene / "depths.npy",
    ):
        if f.is_file():
            st = f.stat()
            out.append([f.name, st.st_size, st.st_mtime_ns])
    return out


# --------------------------------------------------------------------------- prompts from a rendered mask


def auto_keyframes(masks: np.ndarray, *, max_keyframes: int, iou: float) -> list[int]:
    """Keyframes for one object's rendered masks [T, H, W].

    The first frame where the object shows at least a quarter of its largest
    visible area, then every frame whose mask overlaps the last keyframe's by
    less than ``iou`` (its shape changed enough for a tracker to drift); at
    most ``max_keyframes``, evenly thinned.
    """
    areas = masks.reshape(len(masks), -1).sum(1)
    if areas.max() == 0:
        return []
    min_area = max(0.25 * float(areas.max()), 4.0)
    ok = areas >= min_area
    first = int(np.argmax(ok))
    kfs = [first]
    for f in range(first + 1, len(masks)):
        if not ok[f]:
            continue
        a, b = masks[f], masks[kfs[-1]]
        j = (a & b).sum() / max((a | b).sum(), 1)
        if j < iou:
            kfs.append(f)
    if len(kfs) > max_keyframes:
        idx = np.round(np.linspace(0, len(kfs) - 1, max_keyframes)).astype(int)
        kfs = [kfs[i] for i in sorted(set(idx.tolist()))]
    return kfs


def _spread(cands: np.ndarray, k: int) -> list[tuple[float, float]]:
    """``k`` well-spread (x, y) points of ``cands`` [N, 2] (farthest-point sampling from the first)."""
    if len(cands) == 0 or k <= 0:
        return []
    idx = [0]
    d = np.linalg.norm(cands - cands[0], axis=1)
    while len(idx) < min(k, len(cands)):
        i = int(np.argmax(d))
        if d[i] == 0:
            break
        idx.append(i)
        d = np.minimum(d, np.linalg.norm(cands - cands[i], axis=1))
    return [(float(cands[i, 0]), float(cands[i, 1])) for i in idx]


def mask_prompt(
    mask: np.ndarray, other_robot: np.ndarray, *, points: int, negatives: int
) -> tuple[list[tuple[float, float]], list[int], list[float] | None]:
    """(points, labels, box) for one rendered mask.

    Positives start at the pixel deepest inside the mask and spread over
    pixels at least half as deep; negatives go first on other robot parts
    touching the object (what a tracker confuses it with), then on a ring a
    few pixels outside it.
    """
    import cv2

    if not mask.any():
        return [], [], None
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    box = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    pos: list[tuple[float, float]] = []
    if points > 0:
        deep = dist >= 0.5 * dist.max()
        yy, xx = np.nonzero(deep)
        order = np.argsort(-dist[yy, xx], kind="stable")
        pos = _spread(np.stack([xx[order], yy[order]], 1).astype(np.float64), points)
    neg: list[tuple[float, float]] = []
    if negatives > 0:
        r = max(2, round(0.012 * (h + w) / 2))
        u8 = mask.astype(np.uint8)
        near = cv2.dilate(u8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (6 * r + 1, 6 * r + 1))).astype(
            bool
        )
        other = other_robot & ~cv2.dilate(u8, np.ones((3, 3), np.uint8)).astype(bool) & near
        if other.any():
            d_o = cv2.distanceTransform(np.pad(other, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
            yy, xx = np.nonzero(d_o >= max(1.0, 0.5 * d_o.max()))
            order = np.argsort(-d_o[yy, xx], kind="stable")
            neg = _spread(np.stack([xx[order], yy[order]], 1).astype(np.float64), min(2, negatives))
        k1 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        k2 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * r + 1, 4 * r + 1))
        ring = cv2.dilate(u8, k2).astype(bool) & ~cv2.dilate(u8, k1).astype(bool) & ~other_robot
        yy, xx = np.nonzero(ring)
        if len(yy):
            c = np.array([xs.mean(), ys.mean()])
            cand = np.stack([xx, yy], 1).astype(np.float64)
            start = int(np.argmax(np.linalg.norm(cand - c, axis=1)))
            cand[[0, start]] = cand[[start, 0]]
            neg += _spread(cand, negatives - len(neg))
    return pos + neg, [1] * len(pos) + [0] * len(neg), box


def _write_mask(path: Path, mask: np.ndarray) -> None:
    """A prompt mask PNG, rewritten only when its pixels change (its hash is in the session key)."""
    import cv2

    if path.exists():
        old = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if old is not None and old.shape == mask.shape and np.array_equal(old > 0, mask):
            return
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), mask.astype(np.uint8) * 255)


# --------------------------------------------------------------------------- config expansion


def view_source(cfg: PipelineConfig, s: SessionConfig) -> tuple[Path, str]:
    k = s.kinematics
    assert k is not None
    scene = k.scene or (cfg.robot.scene if cfg.robot else None)
    camera = k.camera or (cfg.robot.camera if cfg.robot else None)
    if scene is None or camera is None:  # checked here, not in the config: a batch job sets it per unit
        raise ConfigError(
            f"session {s.name!r} uses kinematics but the config has no `robot: {{scene, camera}}`",
            path=cfg.source,
            field=f"sessions[{cfg.sessions.index(s)}:{s.name}].kinematics",
        )
    return Path(scene), camera


def expand_kinematics(
    cfg: PipelineConfig, video: VideoSource, *, only: Sequence[str] | None = None
) -> PipelineConfig:
    """The config with every ``kinematics`` section turned into ordinary inline objects and prompts.

    ``prompt`` sessions keep their backend and get keyframe prompts from the
    render; ``prior``/``render`` sessions switch to the ``kinematic`` backend
    (one mask keyframe each, so the runner propagates from there).  Objects
    not in ``kinematics.objects`` keep their prompt file / text prompts.
    """
    if not any(s.kinematics for s in cfg.sessions):
        return cfg
    sessions = []
    for index, s in enumerate(cfg.sessions):
        if s.kinematics is None or (only is not None and s.name not in only):
            sessions.append(s)
            continue
        sessions.append(_expand_session(cfg, index, s, video))
    return cfg.model_copy(update={"sessions": sessions})


def _expand_session(cfg: PipelineConfig, index: int, s: SessionConfig, video: VideoSource) -> SessionConfig:
    k: KinematicsConfig = s.kinematics  # type: ignore[assignment]
    loc = f"sessions[{index}:{s.name}].kinematics"
    scene, camera = view_source(cfg, s)
    view = open_view(scene, camera, video, where=cfg.source)
    view.check_groups(k.objects, where=cfg.source, loc=f"{loc}.objects")
    if k.check:
        view.check_calibration()
    T = video.num_frames
    if k.keyframes != "auto":
        bad = [f for f in k.keyframes if not 0 <= f < T]
        if bad:
            raise ConfigError(
                f"keyframe(s) {bad} out of range [0, {T - 1}]", path=cfg.source, field=f"{loc}.keyframes"
            )
    prompt_mode = k.mode == "prompt"
    frames = list(range(T)) if (k.keyframes == "auto" or not prompt_mode) else sorted(set(k.keyframes))
    rr = view.render(frames, occlusion=k.occlusion, margin=k.margin)
    pos_of = {f: i for i, f in enumerate(frames)}
    robot_all = rr.masks(ALL_LINKS)
    kin_names = [o if isinstance(o, str) else o.name for o in s.objects]
    kin_names = [n for n in kin_names if n in k.objects]
    unseen = [n for n in kin_names if not rr.masks(k.objects[n]).any()]
    if prompt_mode and len(frames) == T and unseen and len(unseen) == len(kin_names) == len(s.objects):
        # nothing of this session is in view (an arm session on a wrist camera): nothing to prompt, and
        # the right answer is known - empty masks - so the session outputs the render instead
        prompt_mode = False
        k = k.model_copy(update={"mode": "render"})
    new_objects: list[str | InlineObject] = []
    for o in s.objects:
        name = o if isinstance(o, str) else o.name
        if name not in k.objects:
            new_objects.append(o)
            continue
        masks = rr.masks(k.objects[name])
        if prompt_mode and k.keyframes != "auto":
            kfs = [f for f in frames if masks[pos_of[f]].any()]
        else:
            kfs = auto_keyframes(
                masks, max_keyframes=k.max_keyframes if prompt_mode else 1, iou=k.keyframe_iou
            )
        if not kfs and not prompt_mode:
            kfs = [frames[0]]  # never in view: the kinematic backend outputs empty masks
        if not kfs:
            raise ConfigError(
                f"object {name!r} (link group {k.objects[name]!r}) is not visible in camera {camera!r} "
                f"on {'any frame' if k.keyframes == 'auto' else 'its keyframes ' + str(k.keyframes)}; "
                "nothing to prompt: give it a session of its own (then it is stored empty), use mode "
                "prior or render, drop it from this camera's config, or check the robot's calibration",
                path=cfg.source,
                field=f"{loc}.objects.{name}",
            )
        keyframes = []
        for f in kfs:
            m = masks[pos_of[f]]
            other = robot_all[pos_of[f]] & ~m
            pts, labels, box = mask_prompt(
                m, other, points=k.points if prompt_mode else 0, negatives=k.negatives if prompt_mode else 0
            )
            mask_file = None
            if k.mask or not prompt_mode:
                mask_file = Path(cfg.output) / "kinematics" / s.name / name / f"{f:05d}.png"
                _write_mask(mask_file, m)
            keyframes.append(
                Keyframe(
                    frame=f,
                    points=[(x, y) for x, y in pts],
                    labels=labels,
                    boxes=[tuple(box)] if (box is not None and k.box and prompt_mode) else [],  # type: ignore[list-item]
                    mask=str(mask_file) if mask_file is not None else None,
                )
            )
        oid = None if isinstance(o, str) else o.id
        color = None if isinstance(o, str) else o.color
        new_objects.append(InlineObject(name=name, id=oid, color=color, keyframes=keyframes))
    update: dict[str, Any] = {"objects": new_objects}
    if not prompt_mode:
        update["backend"] = "kinematic"
        update["options"] = {
            **s.options,
            "mode": k.mode,
            "scene": str(scene),
            "camera": camera,
            "groups": {n: g for n, g in k.objects.items()},
            "occlusion": k.occlusion,
            "margin": k.margin,
        }
    return s.model_copy(update=update)


# --------------------------------------------------------------------------- the kinematic backend


def refine_to_edges(
    image: np.ndarray, mask: np.ndarray, *, band: int, iterations: int = 2, keep: np.ndarray | None = None
) -> np.ndarray:
    """GrabCut in a ``band``-pixel ring around ``mask``'s outline; the render decides elsewhere.

    Sure foreground is the mask eroded by the band, sure background lies
    beyond it; GrabCut's colour models only move the outline inside the ring.
    ``keep`` (bool) marks pixels that may never become foreground (occluders).
    Falls back to ``mask`` when GrabCut cannot run (too small, one class only).
    """
    import cv2

    if not mask.any():
        return mask
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    pad = 3 * band + 2
    y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
    m = mask[y0:y1, x0:x1].astype(np.uint8)
    # a thin part (a finger far away) keeps a sure core: the band is at most half its half-width
    depth = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 5)[1:-1, 1:-1].max()
    band = int(max(1, min(band, depth // 2)))
    kern = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    sure_fg = cv2.erode(m, kern).astype(bool)
    ring = cv2.dilate(m, kern).astype(bool)
    gc = np.full(m.shape, cv2.GC_BGD, np.uint8)
    gc[ring] = cv2.GC_PR_BGD
    gc[m.astype(bool)] = cv2.GC_PR_FGD
    gc[sure_fg] = cv2.GC_FGD
    if keep is not None:
        gc[keep[y0:y1, x0:x1]] = cv2.GC_BGD
    fg_any = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).any()
    bg_any = ((gc == cv2.GC_BGD) | (gc == cv2.GC_PR_BGD)).any()
    if not (fg_any and bg_any) or min(m.shape) < 8:
        return mask
    crop = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])  # BGR
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(crop, gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return mask
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    area, before = int(out.sum()), int(mask.sum())
    if not 0.5 * before <= area <= 2.0 * before:  # the colour models failed: trust the render
        return mask
    return out


def depth_vote(
    rendered: np.ndarray,
    refined: np.ndarray,
    rdepth: np.ndarray,
    measured: np.ndarray,
    *,
    margin: float,
    band: int,
) -> np.ndarray:
    """Where measured depth has a say, it overrules colour: the edge refinement may only move the outline
    where depth does not contradict it.

    A rendered pixel whose measured depth matches the rendered surface
    (within ``margin``) stays robot; a pixel the refinement adds must lie no
    further than the robot surface nearby (``band`` pixels) plus ``margin``
    (not background seen past the robot's edge).  Invalid depth (0) leaves
    the colour decision.
    """
    import cv2

    valid = measured > 0
    agree = rendered & valid & (np.abs(measured - rdepth) < margin)
    kern = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    near = cv2.dilate(np.where(rendered, rdepth, 0).astype(np.float32), kern)  # farthest robot depth nearby
    added = refined & ~rendered
    behind = added & valid & ((near <= 0) | (measured > near + margin))
    return (refined & ~behind) | agree


class KinematicSession(Session):
    """Yields the (refined) rendered masks of the session's objects on every frame; prompts are not needed."""

    def __init__(
        self, backend: KinematicBackend, video: VideoSource, objects: Sequence[SessionObject]
    ) -> None:
        self.backend = backend
        self.video = video
        self.objects = tuple(objects)
        missing = [o.name for o in self.objects if o.name not in backend.groups]
        if missing:
            raise ConfigError(
                f"kinematic backend: no link group for object(s) {', '.join(missing)} (options.groups)",
                field="options.groups",
            )
        self.view = open_view(backend.scene, backend.camera, video)
        self.view.check_groups(
            {o.name: backend.groups[o.name] for o in self.objects}, where=None, loc="options.groups"
        )

    def add_prompt(self, prompt: FramePrompt) -> None:
        """Prompts are accepted and not needed: the robot's state decides every frame."""

    def _frame(self, f: int) -> FrameMasks:
        b = self.backend
        rr = self.view.render([f], occlusion=b.occlusion, margin=b.margin)
        out: FrameMasks = {}
        image = self.video.read(f) if b.mode == "prior" else None
        occluded = rr.occluded[0] if rr.occluded is not None else None
        H, W = self.video.size
        band = b.band if b.band is not None else max(2, round(0.01 * (H + W) / 2))
        measured = self.view.measured([f])[0] if image is not None else None
        for o in self.objects:
            m = rr.masks(b.groups[o.name])[0]
            if image is not None and measured is not None and m.any():
                refined = refine_to_edges(image, m, band=band, iterations=b.iterations, keep=occluded)
                m = depth_vote(m, refined, rr.depth[0], measured, margin=b.margin, band=band)
            out[o.name] = m
        return out

    def propagate(self, start_frame: int, *, reverse: bool = False) -> Iterator[tuple[int, FrameMasks]]:
        T = self.video.num_frames
        frames = range(start_frame, -1, -1) if reverse else range(start_frame, T)
        for f in frames:
            yield f, self._frame(f)

    def close(self) -> None:
        self.view = None  # type: ignore[assignment]


class KinematicBackend(Backend):
    """Masks from the robot's joint states (``mode: render``), refined to image edges (``mode: prior``).

    Options (set by the ``kinematics`` config section, see :func:`expand_kinematics`):
    ``scene``, ``camera``, ``groups`` (object -> link group), ``mode``,
    ``occlusion``, ``margin`` (metres), ``band`` (pixels, default 1 % of the
    image size), ``iterations`` (GrabCut).
    """

    name = "kinematic"
    supports_points = True
    allows_empty = True  # a link group this camera never sees is empty on every frame, and that is right

    def __init__(
        self,
        scene: str,
        camera: str,
        groups: dict[str, str],
        mode: str = "prior",
        occlusion: bool = True,
        margin: float = 0.02,
        band: int | None = None,
        iterations: int = 2,
    ) -> None:
        if mode not in ("prior", "render"):
            raise ConfigError(
                f"kinematic backend mode must be 'prior' or 'render', got {mode!r}", field="options.mode"
            )
        self.scene, self.camera, self.groups = str(scene), str(camera), dict(groups)
        self.mode, self.occlusion, self.margin = mode, bool(occlusion), float(margin)
        self.band, self.iterations = band, int(iterations)

    def open_session(self, video: VideoSource, objects: Sequence[SessionObject]) -> Session:
        return KinematicSession(self, video, objects)

    def fingerprint(self) -> dict:
        p = Path(self.scene)
        return {
            "backend": self.name,
            "version": KINEMATIC_VERSION,
            "robot": hash_json(_robot_stamp(p)) if p.exists() else None,
        }

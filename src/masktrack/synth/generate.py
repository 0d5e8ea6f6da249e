"""Render a synthetic robot scene with exact ground truth, resumably.

Output folder::

    synth.json                   manifest: config, its hash, camera ids, instances (written last)
    frames/<camera_id>/00000.png the segmentation input, one folder per camera
    scene/                       masktrack scene (rgbs, depths, intrs, extrs) + GT instances
                                 gt_arm, gt_gripper, gt_object, gt_arm_only, gt_<link>
    gt/tracks.npz                GT surface points per instance (pickle-free, see GTTracks)
    gt/kinematics.npz            joints, tip, object pose, primitive poses per frame
    gt/kinematics.json           primitives (kind, sizes, instance, link) and config
    scene/robot/                 the robot as a dataset records it: robot.urdf (boxes and cylinders,
                                 see masktrack.synth.urdf), joint_positions.npy, base pose (identity)

``gt_arm`` is the whole robot (links, joints, base and gripper): what an
``arm`` session is asked to segment; ``gt_gripper`` is palm and fingers;
``gt_arm_only`` is the robot without the gripper.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.io.atomic import atomic_path, atomic_write_json, hash_json
from masktrack.io.manifest import TOOL_VERSION, OutputEntry, Status, entry_for, finish_fields, verify_entry
from masktrack.synth import render as R
from masktrack.synth.scene import (
    BOX,
    ArmGeometry,
    Camera,
    Primitive,
    build_primitives,
    make_cameras,
    plan_trajectory,
)
from masktrack.synth.sensor import get_sensor, perturb_extrinsics

GENERATOR_VERSION = 2  # 2: scene/robot/ (URDF + joint states)

INSTANCE_IDS = {"gt_arm": 1, "gt_gripper": 2, "gt_object": 3, "gt_arm_only": 4}
INSTANCE_COLORS = {
    "gt_arm": (230, 25, 75),
    "gt_gripper": (255, 225, 25),
    "gt_object": (60, 180, 75),
    "gt_arm_only": (0, 130, 200),
}
LINK_NAMES = ["base", "turret", "upper_arm", "forearm", "wrist", "palm", "finger_left", "finger_right"]
# GT surface points: instance -> primitive instance labels they are sampled on
TRACKED = {"arm": ("arm", "gripper"), "gripper": ("gripper",), "object": ("object",), "arm_only": ("arm",)}


@dataclass(frozen=True)
class SynthConfig:
    """What to render. Everything is derived from ``seed``: same config, same bytes."""

    width: int = 320
    height: int = 240
    frames: int = 48
    cameras: int = 4
    seed: int = 0
    noise: float = 1.5  # sensor noise std (uint8 levels)
    points: int = 400  # GT surface points per tracked instance
    fps: float = 15.0
    # real-sensor effects on what the tracker sees (masktrack.synth.sensor); the ground truth stays exact
    sensor: str = "none"  # depth/colour model preset: none, realsense-d435, azure-kinect
    calib_mm: float = 0.0  # calibration error: each camera's reported centre off by this much...
    calib_deg: float = 0.0  # ... and its orientation by this angle (random directions)

    @classmethod
    def small(cls, **kw: Any) -> SynthConfig:
        """A quick scene for tests (a few seconds)."""
        base: dict[str, Any] = {"width": 160, "height": 120, "frames": 12, "cameras": 3, "points": 200}
        base.update(kw)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        """The config; sensor fields only when set, so scenes rendered before they existed keep their key."""
        d = asdict(self)
        for k, v in _SENSOR_DEFAULTS.items():
            if d[k] == v:
                del d[k]
        return d

    def key(self) -> str:
        return hash_json({"generator": GENERATOR_VERSION, **self.to_dict()})


_SENSOR_DEFAULTS: dict[str, Any] = {"sensor": "none", "calib_mm": 0.0, "calib_deg": 0.0}


@dataclass
class GTTracks:
    """Ground-truth surface points of one instance."""

    name: str
    points: np.ndarray  # float32 [T, N, 3] world metres
    visibility: np.ndarray  # bool [C, T, N]: in the image, front-facing and not occluded
    prim: np.ndarray  # int16 [N] primitive index (see kinematics.json)
    local: np.ndarray  # float32 [N, 3] position in the primitive's local frame


@dataclass
class SynthRender:
    """A rendered scene in memory."""

    config: SynthConfig
    cameras: list[Camera]
    prims: list[Primitive]
    rgbs: np.ndarray  # uint8 [C, T, H, W, 3]
    depths: np.ndarray  # float32 [C, T, H, W]
    ids: np.ndarray  # int16 [C, T, H, W] primitive index, -1 = none
    tracks: dict[str, GTTracks]
    joints: np.ndarray  # [T, 4]
    tip: np.ndarray  # [T, 3]
    geometry: ArmGeometry = field(default_factory=ArmGeometry)
    reported: list[Camera] | None = None  # the cameras as the (mis)calibration reports them; None = exact

    @property
    def camera_ids(self) -> list[str]:
        return [c.id for c in self.cameras]

    def masks(self) -> dict[str, np.ndarray]:
        """GT instance masks bool [C, T, H, W] by instance name (``gt_*``)."""
        inst = np.array([p.instance for p in self.prims] + ["none"])
        link = np.array([p.link for p in self.prims] + ["none"])
        ids = np.where(self.ids < 0, len(self.prims), self.ids)
        out = {
            "gt_arm": np.isin(inst, ["arm", "gripper"])[ids],
            "gt_gripper": (inst == "gripper")[ids],
            "gt_object": (inst == "object")[ids],
            "gt_arm_only": (inst == "arm")[ids],
        }
        for name in LINK_NAMES:
            out[f"gt_{name}"] = (link == name)[ids]
        return out

    def intrs(self) -> np.ndarray:
        t = self.config.frames
        return np.stack([np.tile(c.K, (t, 1, 1)) for c in self.cameras]).astype(np.float32)

    def extrs(self) -> np.ndarray:
        """World-to-camera [C, T, 3, 4] as the scene reports them (with the calibration error, if any)."""
        t = self.config.frames
        cams = self.reported or self.cameras
        return np.stack([np.tile(c.extrinsic, (t, 1, 1)) for c in cams]).astype(np.float32)


@dataclass
class SynthScene:
    """A generated scene on disk."""

    root: Path
    config: SynthConfig
    camera_ids: list[str]
    reused: bool = False
    instances: list[str] = field(default_factory=list)
    status: Status = Status.COMPUTED  # reused | computed | repaired (a generated file failed verification)

    @property
    def scene_path(self) -> Path:
        return self.root / "scene"

    @property
    def tracks_path(self) -> Path:
        return self.root / "gt" / "tracks.npz"

    def frames_dir(self, camera_id: str) -> Path:
        return self.root / "frames" / camera_id

    def gt_tracks(self) -> dict[str, GTTracks]:
        return load_gt_tracks(self.tracks_path)


# ---------------------------------------------------------------- rendering
def _sample_surface(prim: Primitive, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniform points on the primitive's surface, local frame."""
    w = prim.area_weights()
    face = rng.choice(len(w), size=n, p=w / w.sum())
    u, v = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    hx, hy, hz = prim.half
    p = np.zeros((n, 3))
    if prim.kind == BOX:
        h = np.array([hx, hy, hz])
        axis = face // 2
        sign = np.where(face % 2 == 0, 1.0, -1.0)
        other = np.array([[1, 2], [0, 2], [0, 1]])[axis]
        rows = np.arange(n)
        p[rows, axis] = sign * h[axis]
        p[rows, other[:, 0]] = u * h[other[:, 0]]
        p[rows, other[:, 1]] = v * h[other[:, 1]]
        return p
    r = hx
    ang = rng.uniform(0, 2 * np.pi, n)
    rad = r * np.sqrt(rng.uniform(0, 1, n))
    side = face == 0
    p[:, 0] = np.where(side, r * np.cos(ang), rad * np.cos(ang))
    p[:, 1] = np.where(side, r * np.sin(ang), rad * np.sin(ang))
    p[:, 2] = np.where(side, u * hz, np.where(face == 1, hz, -hz))
    return p


def _gt_tracks(
    prims: list[Primitive], cams: list[Camera], cfg: SynthConfig, rng: np.random.Generator
) -> dict[str, GTTracks]:
    """Surface points per tracked instance, their world paths and per-camera visibility.

    Visibility is decided by casting the exact ray camera -> point against every
    primitive (not by reading the rendered depth), so the renderer and the
    ground truth check each other.
    """
    out: dict[str, GTTracks] = {}
    t_count = cfg.frames
    for name, labels in TRACKED.items():
        idx = [i for i, p in enumerate(prims) if p.instance in labels]
        areas = np.array([prims[i].area_weights().sum() for i in idx])
        counts = rng.multinomial(cfg.points, areas / areas.sum())
        locs, pids = [], []
        for i, k in zip(idx, counts, strict=True):
            if k:
                locs.append(_sample_surface(prims[i], int(k), rng))
                pids.append(np.full(int(k), i, np.int16))
        local = np.concatenate(locs)
        prim = np.concatenate(pids)
        pts = np.zeros((t_count, len(local), 3))
        for i in np.unique(prim):
            sel = prim == i
            poses = prims[i].poses  # [T, 4, 4]
            pts[:, sel] = np.einsum("tij,nj->tni", poses[:, :3, :3], local[sel]) + poses[:, None, :3, 3]
        vis = np.zeros((len(cams), t_count, len(local)), bool)
        for c, cam in enumerate(cams):
            for t in range(t_count):
                uv, z = cam.project(pts[t])
                inside = (
                    (z > 1e-3)
                    & (uv[:, 0] >= -0.5)
                    & (uv[:, 0] <= cfg.width - 0.5)
                    & (uv[:, 1] >= -0.5)
                    & (uv[:, 1] <= cfg.height - 0.5)
                )
                dirs = (pts[t] - cam.center) / np.where(z > 1e-6, z, 1.0)[:, None]
                hit = R.first_hit(prims, t, cam.center, dirs)
                vis[c, t] = inside & (hit >= z - 2e-4)
        out[name] = GTTracks(
            name=name,
            points=pts.astype(np.float32),
            visibility=vis,
            prim=prim,
            local=local.astype(np.float32),
        )
    return out


def render_scene(cfg: SynthConfig) -> SynthRender:
    """Render every camera and frame of ``cfg`` in memory (deterministic)."""
    if cfg.frames < 2 or cfg.width < 32 or cfg.height < 24:
        raise ValueError("a synthetic scene needs >= 2 frames and >= 32x24 pixels")
    rng = np.random.default_rng(cfg.seed)
    geo = ArmGeometry()
    traj = plan_trajectory(cfg.frames, geo, rng)
    prims = build_primitives(traj, geo, rng)
    cams = make_cameras(cfg.cameras, cfg.width, cfg.height, rng)
    c_n, t_n, h, w = cfg.cameras, cfg.frames, cfg.height, cfg.width
    rgbs = np.zeros((c_n, t_n, h, w, 3), np.uint8)
    depths = np.zeros((c_n, t_n, h, w), np.float32)
    ids = np.zeros((c_n, t_n, h, w), np.int16)
    noise_rng = np.random.default_rng([cfg.seed, 1])
    sensor = get_sensor(cfg.sensor)
    sensor_rng = np.random.default_rng([cfg.seed, 3])
    for c, cam in enumerate(cams):
        view = R.ViewRenderer(prims, cam, h, w)
        for t in range(t_n):
            rgb, depth, pid = view.render(t)
            img = rgb * 255.0
            if not sensor.is_ideal:
                depth = sensor.apply_depth(depth, rgb.mean(axis=-1), sensor_rng)
                img = sensor.apply_rgb(img, sensor_rng)
            if cfg.noise > 0:
                img = img + noise_rng.normal(0, cfg.noise, img.shape)
            rgbs[c, t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
            depths[c, t] = depth
            ids[c, t] = pid
    reported = None
    if cfg.calib_mm > 0 or cfg.calib_deg > 0:
        calib_rng = np.random.default_rng([cfg.seed, 4])
        reported = []
        for cam in cams:
            R2, t2 = perturb_extrinsics(cam.R, cam.t, cfg.calib_mm, cfg.calib_deg, calib_rng)
            reported.append(Camera(cam.id, cam.K, R2, t2))
    tracks = _gt_tracks(prims, cams, cfg, np.random.default_rng([cfg.seed, 2]))
    return SynthRender(
        config=cfg,
        cameras=cams,
        prims=prims,
        rgbs=rgbs,
        depths=depths,
        ids=ids,
        tracks=tracks,
        joints=traj.joints,
        tip=traj.tip,
        geometry=geo,
        reported=reported,
    )


# ---------------------------------------------------------------- files
def save_gt_tracks(tracks: dict[str, GTTracks], path: Path) -> None:
    arrays: dict[str, np.ndarray] = {"names": np.array(list(tracks))}
    for name, g in tracks.items():
        arrays[f"{name}.points"] = g.points
        arrays[f"{name}.visibility"] = g.visibility
        arrays[f"{name}.prim"] = g.prim
        arrays[f"{name}.local"] = g.local
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # numpy stubs: **kwds typed as allow_pickle


def load_gt_tracks(path: str | Path) -> dict[str, GTTracks]:
    """GT surface tracks by instance name (``arm``, ``gripper``, ``object``, ``arm_only``)."""
    with np.load(path, allow_pickle=False) as z:
        names = [str(n) for n in z["names"]]
        return {
            n: GTTracks(n, z[f"{n}.points"], z[f"{n}.visibility"], z[f"{n}.prim"], z[f"{n}.local"])
            for n in names
        }


def _write_frames(r: SynthRender, root: Path) -> None:
    import cv2

    for c, cid in enumerate(r.camera_ids):
        folder = root / "frames" / cid
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(r.config.frames):
            with atomic_path(folder / f"{t:05d}.png", fsync=False) as tmp:
                cv2.imwrite(str(tmp), cv2.cvtColor(r.rgbs[c, t], cv2.COLOR_RGB2BGR))


def read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(root) / "synth.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def generate(cfg: SynthConfig, out_dir: str | Path, *, force: bool = False) -> SynthScene:
    """Render ``cfg`` into ``out_dir`` (see module doc); reuse it if already generated with the same config.

    The manifest ``synth.json`` is written last and removed first, so an
    interrupted run is never trusted.  It records every generated file's size and
    hash (:mod:`masktrack.io.manifest`); a re-run reuses the scene only if all of
    them verify, and regenerates it (``repaired``) otherwise.
    """
    from masktrack.io.instances import save_instance
    from masktrack.io.scene import Scene, save_scene

    root = Path(out_dir)
    man = read_manifest(root)
    damaged = False
    if not force and man is not None and man.get("key") == cfg.key() and isinstance(man.get("outputs"), dict):
        entries = {n: OutputEntry.model_validate(e) for n, e in man["outputs"].items()}
        if entries and all(verify_entry(root / n, e) for n, e in entries.items()):
            return SynthScene(
                root=root,
                config=cfg,
                camera_ids=list(man["camera_ids"]),
                reused=True,
                instances=list(man.get("instances", [])),
                status=Status.REUSED,
            )
        damaged = True
    (root / "synth.json").unlink(missing_ok=True)
    for sub in ("frames", "scene", "gt"):
        if (root / sub).exists():
            shutil.rmtree(root / sub)
    r = render_scene(cfg)
    _write_frames(r, root)
    scene = Scene(
        rgbs=r.rgbs,
        depths=r.depths,
        intrs=r.intrs(),
        extrs=r.extrs(),
        camera_ids=r.camera_ids,
        fps=cfg.fps,
        meta={"source": "masktrack.synth", "synth_key": cfg.key()},
        robot=_scene_robot(r, root / "scene"),
    )
    save_scene(scene, root / "scene")
    names = []
    for i, (name, m) in enumerate(r.masks().items()):
        iid = INSTANCE_IDS.get(name, 10 + i)
        color = INSTANCE_COLORS.get(name, _link_color(i))
        save_instance(
            root / "scene",
            name,
            m,
            id=iid,
            color=color,
            source={"kind": "ground_truth", "generator": "masktrack.synth"},
        )
        names.append(name)
    (root / "gt").mkdir(parents=True, exist_ok=True)
    save_gt_tracks(r.tracks, root / "gt" / "tracks.npz")
    poses = np.stack([p.poses for p in r.prims], 1).astype(np.float32)  # [T, P, 4, 4]
    obj = next(i for i, p in enumerate(r.prims) if p.instance == "object")
    with atomic_path(root / "gt" / "kinematics.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                joints=r.joints.astype(np.float32),
                tip=r.tip.astype(np.float32),
                object_pose=poses[:, obj],
                prim_poses=poses,
            )
    atomic_write_json(
        root / "gt" / "kinematics.json",
        {
            "joints": ["yaw", "shoulder_pitch", "elbow_pitch", "grip_half_opening"],
            "geometry": asdict(ArmGeometry()),
            "primitives": [
                {
                    "name": p.name,
                    "kind": "box" if p.kind == BOX else "cylinder",
                    "half": list(p.half),
                    "instance": p.instance,
                    "link": p.link,
                }
                for p in r.prims
            ],
            "cameras": [
                {"id": c.id, "K": c.K.tolist(), "R": c.R.tolist(), "t": c.t.tolist()} for c in r.cameras
            ],
        },
    )
    outputs = {
        str(p.relative_to(root)): entry_for(p).model_dump()
        for sub in ("frames", "scene", "gt")
        for p in sorted((root / sub).rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    finish_fields(
        root / "synth.json",
        {
            "format": "masktrack.synth",
            "stage": "synth",
            "tool_version": TOOL_VERSION,
            "version": GENERATOR_VERSION,
            "key": cfg.key(),
            "config": cfg.to_dict(),
            "camera_ids": r.camera_ids,
            "instances": names,
            "outputs": outputs,
        },
    )
    return SynthScene(
        root=root,
        config=cfg,
        camera_ids=r.camera_ids,
        reused=False,
        instances=names,
        status=Status.REPAIRED if damaged else Status.COMPUTED,
    )


def _scene_robot(r: SynthRender, scene_dir: Path) -> Any:
    """The robot's URDF (written into ``scene_dir/robot/``) and joint states, as a dataset records them."""
    from masktrack.io.atomic import atomic_write_text
    from masktrack.io.scene_robot import SceneRobot
    from masktrack.synth.urdf import JOINT_NAMES, LINK_GROUPS, joint_states, robot_urdf

    atomic_write_text(scene_dir / "robot" / "robot.urdf", robot_urdf(r.geometry))
    return SceneRobot(
        model="robot.urdf",
        joint_names=list(JOINT_NAMES),
        positions=joint_states(r.joints),
        base_pose=np.eye(4),
        link_groups={k: list(v) for k, v in LINK_GROUPS.items()},
        source={"kind": "masktrack.synth"},
    )


def _link_color(i: int) -> tuple[int, int, int]:
    from masktrack.prompts.model import default_color

    return default_color(i + 1)

"""``masktrack demo``: the whole job on a synthetic robot scene, scored against exact ground truth.

Stages (each one resumable; a second run reuses everything and says so)::

    generate   synth scene -> OUT/frames/<cam>/, OUT/scene/, OUT/gt/        (masktrack.synth)
    prompts    OUT/<cam>.yaml + OUT/prompts/<cam>.json, clicks derived from GT masks
               (``--prompts kinematics``: no prompt files, zero clicks; the sessions' prompts are
               rendered from the robot's URDF + joint states in OUT/scene/robot/)
    segment    sessions `arm` and `gripper` per camera (bilateral backend)    -> OUT/out/<cam>/sessions/
    compose    arm_only = dilate(arm, 15) - dilate(gripper, 15)              -> OUT/out/<cam>/composed/
    previews   contact sheets per session and composed output                -> OUT/out/<cam>/previews/
    instances  scene instances arm, gripper, arm_only from the outputs       -> OUT/scene/instances/
    track      per-instance queries + `flow` tracker                          -> OUT/tracks/<instance>/
    rerun      recordings                                                     -> OUT/tracks/rerun/
    evaluate   J&F per camera vs GT masks; 3D track errors vs GT motion       -> OUT/report.json

How track errors are measured: every query of a tracked instance is a world
point lifted from a predicted-mask pixel at frame t_q.  It is attached to the
nearest solid surface of the synthetic scene at t_q (exact geometry, see
:mod:`masktrack.synth.truth`; the attach distance is reported and is ~0 since
depth is exact), and its GT path is that surface point's rigid motion.  The
error of a track at frame t > t_q is the Euclidean distance to the GT path;
the report gives the median and 90th percentile over all (frame, query)
pairs after the query frame.  Queries on the wrong solid (mask leaks) are
scored against that solid's motion and counted in ``on_instance``.

Mask J&F: DAVIS J (IoU) and F (boundary F-measure) per frame over all frames
of each camera, averaged; ``arm.arm`` is scored against the whole robot,
``gripper.gripper`` against palm + fingers, ``composed:arm_only`` against the
same expression applied to the GT masks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.io.atomic import atomic_write_json, atomic_write_text, hash_file, hash_json
from masktrack.synth import SynthConfig, SynthScene, generate

DEMO_VERSION = 1
SESSIONS = {"arm": "gt_arm", "gripper": "gt_gripper"}  # session (= its one object) -> GT instance
COMPOSE = {"arm_only": "dilate(arm, 15) - dilate(gripper, 15)"}
TRACKED = ["arm", "gripper"]
THRESHOLDS = {"jf": 0.8, "median_track_error_m": 0.01, "arm_on_objects": 0.005}
# arm_on_objects: the fraction of the arm session's mask pixels (all frames of a camera) that lie on
# ground-truth non-arm objects (the pushed box); 0.5% leaves room for contact-edge pixels only.
NON_ARM = ("gt_object",)
DEMO_SMALL = SynthConfig(
    width=256, height=192, frames=40, cameras=3
)  # `masktrack demo --small`, the end-to-end test


@dataclass
class Stage:
    """One step of the demo and what this run did for it."""

    stage: str
    target: str
    status: str  # "computed" | "reused"
    seconds: float = 0.0
    detail: str = ""


@dataclass
class MaskScore:
    camera: str
    mask: str  # "arm.arm", "gripper.gripper", "composed:arm_only"
    gt: str
    j: float
    f: float
    jf: float


@dataclass
class TrackScore:
    instance: str
    queries: int
    median_m: float
    p90_m: float
    median_visible_m: float
    on_instance: float  # fraction of queries whose surface belongs to the instance's GT solids
    attach_p90_m: float


@dataclass
class DemoReport:
    out: Path
    config: dict[str, Any]
    stages: list[Stage] = field(default_factory=list)
    masks: list[MaskScore] = field(default_factory=list)
    tracks: list[TrackScore] = field(default_factory=list)
    seconds: float = 0.0
    prompt_source: str = "clicks"  # "clicks" (derived from GT) | "kinematics" (robot state, zero clicks)
    clicks: int = 0  # clicked points + dragged boxes in the prompt files
    arm_on_objects: dict[str, float] = field(default_factory=dict)
    """Per camera: fraction of the arm mask's pixels on GT non-arm objects (see THRESHOLDS)."""

    def jf(self, mask: str) -> float:
        """Mean J&F of one mask over cameras."""
        v = [m.jf for m in self.masks if m.mask == mask]
        return float(np.mean(v)) if v else float("nan")

    def track(self, instance: str) -> TrackScore:
        return next(t for t in self.tracks if t.instance == instance)

    @property
    def reused_all(self) -> bool:
        return all(s.status == "reused" for s in self.stages)

    def checks(self) -> dict[str, bool]:
        out = {
            f"J&F {m} >= {THRESHOLDS['jf']}": self.jf(m) >= THRESHOLDS["jf"]
            for m in ("arm.arm", "gripper.gripper")
        }
        for t in self.tracks:
            out[f"median track error {t.instance} <= {THRESHOLDS['median_track_error_m'] * 100:g} cm"] = (
                t.median_m <= THRESHOLDS["median_track_error_m"]
            )
        if self.arm_on_objects:
            out[f"arm mask on non-arm objects <= {THRESHOLDS['arm_on_objects']:.1%} in every camera"] = (
                max(self.arm_on_objects.values()) <= THRESHOLDS["arm_on_objects"]
            )
        return out

    @property
    def passed(self) -> bool:
        return all(self.checks().values())

    def to_json(self) -> dict[str, Any]:
        per_mask = {m: self.jf(m) for m in dict.fromkeys(s.mask for s in self.masks)}
        return {
            "format": "masktrack.demo_report",
            "version": DEMO_VERSION,
            "out": str(self.out),
            "config": self.config,
            "prompt_source": self.prompt_source,
            "clicks": self.clicks,
            "seconds": round(self.seconds, 2),
            "passed": self.passed,
            "checks": self.checks(),
            "thresholds": THRESHOLDS,
            "jf_mean": per_mask,
            "masks": [asdict(m) for m in self.masks],
            "tracks": [asdict(t) for t in self.tracks],
            "arm_on_objects": self.arm_on_objects,
            "stages": [asdict(s) for s in self.stages],
        }


# --------------------------------------------------------------------------- prompts
def _scale(width: int) -> float:
    return width / 320.0


def _interior_point(mask: np.ndarray, dist: np.ndarray) -> tuple[int, int] | None:
    """The pixel of ``mask`` farthest from the outline (x, y), None if too thin to click safely."""
    d = np.where(mask, dist, 0)
    if d.max() < 1.5:
        return None
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(x), int(y)


def _spread(cands: np.ndarray, k: int, start: np.ndarray) -> list[tuple[int, int]]:
    """``k`` well-spread (x, y) points of ``cands`` [N, 2]: farthest-point sampling from the one nearest ``start``."""
    if len(cands) == 0:
        return []
    idx = [int(np.argmin(np.linalg.norm(cands - start, axis=1)))]
    d = np.linalg.norm(cands - cands[idx[0]], axis=1)
    while len(idx) < min(k, len(cands)):
        i = int(np.argmax(d))
        idx.append(i)
        d = np.minimum(d, np.linalg.norm(cands - cands[i], axis=1))
    return [(int(cands[i, 0]), int(cands[i, 1])) for i in idx]


def click_points(
    masks: dict[str, np.ndarray],
    target: str,
    parts: list[str],
    avoid: list[str],
    width: int,
    negatives: int = 3,
) -> tuple[list[tuple[int, int]], list[int]]:
    """Clicks a person would make on one frame: positives well inside each visible part, negatives just outside.

    ``masks`` are one frame's GT masks by name; ``parts`` split the target into
    pieces worth a click each (the links of the arm); ``avoid`` are nearby
    things that must not be included (the arm's wrist for the gripper).
    """
    import cv2

    m = masks[target]
    dist = cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 5)
    pos = []
    for p in parts:
        # one click inside each visible piece of the part (an occluder may split it), the two largest at most
        n, comp, stats, _ = cv2.connectedComponentsWithStats((masks[p] & m).astype(np.uint8), connectivity=8)
        for k in sorted(range(1, n), key=lambda k: -stats[k, cv2.CC_STAT_AREA])[:2]:
            pt = _interior_point(comp == k, dist)
            if pt is not None:
                pos.append(pt)
    if not pos:
        pt = _interior_point(m, dist)
        if pt is None:
            return [], []
        pos.append(pt)
    s = _scale(width)
    r1, r2 = max(2, round(5 * s)), max(4, round(12 * s))
    k1 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r1 + 1, 2 * r1 + 1))
    k2 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r2 + 1, 2 * r2 + 1))
    u8 = m.astype(np.uint8)
    ring = cv2.dilate(u8, k2).astype(bool) & ~cv2.dilate(u8, k1).astype(bool)
    ys, xs = np.nonzero(ring)
    centre = np.array(np.nonzero(m)[::-1]).mean(axis=1)
    neg = _spread(np.stack([xs, ys], 1), negatives, centre)
    for a in avoid:
        other = masks[a] & ~m
        if other.any():
            d_o = cv2.distanceTransform(other.astype(np.uint8), cv2.DIST_L2, 5)
            near = cv2.dilate(
                u8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * r2 + 1, 4 * r2 + 1))
            ).astype(bool)
            pt = _interior_point(other & near, d_o)
            if pt is not None:
                # two clicks on a neighbour that touches the target: its centre and its far side
                ys, xs = np.nonzero(other & near & (d_o >= 2))
                neg.extend(_spread(np.stack([xs, ys], 1), 2, np.array(pt)) if len(xs) else [pt])
    return pos + neg, [1] * len(pos) + [0] * len(neg)


def drag_box(mask: np.ndarray, width: int) -> list[float]:
    """The box a person drags around an object: its extent plus a few pixels, inside the image."""
    ys, xs = np.nonzero(mask)
    pad = max(2.0, 3 * _scale(width))
    h, w = mask.shape
    return [
        float(max(0, xs.min() - pad)),
        float(max(0, ys.min() - pad)),
        float(min(w - 1, xs.max() + pad)),
        float(min(h - 1, ys.max() + pad)),
    ]


def keyframes(num_frames: int, at: tuple[float, ...] = (0.0, 0.65)) -> list[int]:
    """Prompted frames at fractions ``at`` of the video: by default the first frame and one where the gripper pushes."""
    return sorted({int(round(a * (num_frames - 1))) for a in at})


def make_prompts(scene_path: Path, camera: int, num_frames: int, width: int) -> dict[str, Any]:
    """The prompt file (masktrack.prompts v1) of one camera, derived from the GT masks."""
    from masktrack.io.instances import load_instance

    names = [
        "gt_arm",
        "gt_gripper",
        "gt_arm_only",
        "gt_base",
        "gt_turret",
        "gt_upper_arm",
        "gt_forearm",
        "gt_wrist",
        "gt_palm",
        "gt_finger_left",
        "gt_finger_right",
        "gt_object",
    ]
    objects = []
    specs = {
        # name: (GT mask, parts worth a positive click each, neighbours worth negative clicks, ring negatives, keyframes)
        "arm": (
            "gt_arm",
            ["gt_base", "gt_turret", "gt_upper_arm", "gt_forearm", "gt_wrist", "gt_palm"],
            [],
            6,
            (0.0, 0.65),
            False,
        ),
        # the small, fast gripper gets a box, and a keyframe before and one after it meets the object
        "gripper": (
            "gt_gripper",
            ["gt_palm", "gt_finger_left", "gt_finger_right"],
            ["gt_wrist", "gt_forearm", "gt_object"],
            3,
            (0.0, 0.4, 0.75),
            True,
        ),
    }
    insts = {n: load_instance(scene_path, n) for n in names}
    for oid, (obj, (target, parts, avoid, nneg, at, box)) in enumerate(specs.items(), 1):
        kfs = []
        for f in keyframes(num_frames, at):
            frame_masks = {n: i.masks(camera, f) for n, i in insts.items()}
            pts, labels = click_points(frame_masks, target, parts, avoid, width, nneg)
            if pts:
                kf: dict[str, Any] = {
                    "frame": f,
                    "points": [[float(x), float(y)] for x, y in pts],
                    "labels": labels,
                }
                if box:
                    kf["boxes"] = [drag_box(frame_masks[target], width)]
                kfs.append(kf)
        objects.append({"name": obj, "id": oid, "keyframes": kfs})
    return {"format": "masktrack.prompts", "version": 1, "objects": objects}


def pipeline_config(
    camera_id: str, backend: str, backend_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    opts = {"options": dict(backend_options)} if backend_options else {}
    return {
        "version": 1,
        "video": f"frames/{camera_id}",
        "output": f"out/{camera_id}",
        "prompts": f"prompts/{camera_id}.json",
        "sessions": [{"name": s, "backend": backend, **opts, "objects": [s]} for s in SESSIONS],
        "compose": dict(COMPOSE),
    }


def kinematic_pipeline_config(
    camera_id: str, backend: str | None, backend_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The demo's job with zero clicks: each session's object is a link group of the scene's robot.

    Without a backend the sessions run in ``prior`` mode (the weight-free ``kinematic`` backend: the
    rendered mask on every frame, snapped to image edges, occluders removed by depth): the
    zero-click path that keeps the arm off the pushed box.  Propagating rendered prompts with a
    generic tracker (``prompt`` mode) is what a named backend (sam2, sam3, bilateral, ...) gets.
    """
    opts = {"options": dict(backend_options)} if backend_options else {}
    groups = {"arm": "arm", "gripper": "gripper"}
    sessions: list[dict[str, Any]] = []
    for s in SESSIONS:
        if backend is None:
            sessions.append({"name": s, "kinematics": {"mode": "prior", "objects": {s: groups[s]}}})
        else:
            sessions.append(
                {"name": s, "backend": backend, **opts, "kinematics": {"objects": {s: groups[s]}}}
            )
    return {
        "version": 1,
        "video": f"frames/{camera_id}",
        "output": f"out/{camera_id}",
        "robot": {"scene": "scene", "camera": camera_id},
        "sessions": sessions,
        "compose": dict(COMPOSE),
    }


def count_clicks(prompts: dict[str, Any]) -> int:
    """Clicked points plus dragged boxes of a prompt file's objects (what a person would have done)."""
    return sum(
        len(k.get("points", [])) + len(k.get("boxes", []))
        for o in prompts.get("objects", [])
        for k in o.get("keyframes", [])
    )


def _check_backend(backend: str, options: dict[str, Any] | None) -> None:
    """Load the backend once (and close it) so that a missing package, checkpoint or bad option is
    reported before the scene is generated."""
    from masktrack.errors import BackendError
    from masktrack.segment.registry import load_backend

    try:
        load_backend(backend, **(options or {})).close()
    except BackendError as e:
        raise BackendError(
            f"{e.message} (demo: pass --checkpoint PATH or -o KEY=VALUE)",
            field=f"--backend {backend}",
            problems=e.problems,
        ) from None


def _write_if_changed(path: Path, text: str, *, force: bool = False) -> bool:
    """Atomically write ``text`` unless the file already holds it (``force``: always); True if written."""
    try:
        if not force and path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    atomic_write_text(path, text)
    return True


# --------------------------------------------------------------------------- stages
class _Stages:
    """Collects stage statuses and hands each to ``on_stage`` as it happens (the CLI prints it)."""

    def __init__(self, report: DemoReport, on_stage: Callable[[Stage], None] | None) -> None:
        self.report, self.on_stage = report, on_stage

    def add(self, stage: str, target: str, status: str, seconds: float, detail: str = "") -> None:
        s = Stage(stage, target, status, round(seconds, 2), detail)
        self.report.stages.append(s)
        if self.on_stage is not None:
            self.on_stage(s)


def _demo_manifest(out: Path) -> dict[str, Any]:
    try:
        m = json.loads((out / "demo.json").read_text(encoding="utf-8"))
        return m if m.get("version") == DEMO_VERSION else {}
    except (FileNotFoundError, ValueError):
        return {}


def run_demo(
    out: str | Path = "masktrack-demo",
    *,
    config: SynthConfig | None = None,
    backend: str | None = None,
    backend_options: dict[str, Any] | None = None,
    force: bool = False,
    progress: Callable[[Stage], None] | bool | None = None,
    prompts: str = "clicks",
) -> DemoReport:
    """Generate the synthetic scene and run the whole pipeline on it; returns the scored report.

    Every stage is skipped when its inputs are unchanged (``force`` redoes
    all).  ``backend`` (with ``backend_options``, e.g. a checkpoint) is the segmentation backend of
    both sessions (default: the registry's default for clicks, the ``kinematic`` prior for kinematics); it is loaded once before anything is generated, so a missing checkpoint or
    package is reported first, not after the scene is rendered.
    ``progress`` is called with each :class:`Stage` as it finishes.
    ``prompts``: ``"clicks"`` derives clicks from the GT masks (what a person
    would do); ``"kinematics"`` writes no prompt files at all: the sessions'
    prompts are rendered from the robot's URDF and joint states.
    """
    if prompts not in ("clicks", "kinematics"):
        from masktrack.errors import ConfigError

        raise ConfigError(f"prompts must be 'clicks' or 'kinematics', got {prompts!r}", field="--prompts")
    import yaml

    from masktrack.config import load_config
    from masktrack.io.instances import load_instance
    from masktrack.masks.store import MaskStore

    if backend is None and prompts == "clicks":
        from masktrack.segment.registry import DEFAULT_BACKEND

        backend = DEFAULT_BACKEND
    if backend is not None:  # the kinematic prior needs no package or checkpoint
        _check_backend(backend, backend_options)
    t_all = time.perf_counter()
    cfg = config or SynthConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = DemoReport(out=out, config=cfg.to_dict(), prompt_source=prompts)
    st = _Stages(report, progress if callable(progress) else None)
    manifest = {} if force else _demo_manifest(out)
    new_manifest: dict[str, Any] = {"version": DEMO_VERSION}

    def save_manifest() -> None:
        atomic_write_json(out / "demo.json", new_manifest)

    # 1. the scene
    t0 = time.perf_counter()
    syn: SynthScene = generate(cfg, out, force=force)
    st.add(
        "generate",
        f"{cfg.cameras} cams x {cfg.frames} frames",
        str(syn.status),
        time.perf_counter() - t0,
        f"{cfg.width}x{cfg.height}",
    )
    cams = syn.camera_ids

    # 2. configs and prompts
    t0 = time.perf_counter()
    written = 0
    cfg_paths = {}
    for c, cid in enumerate(cams):
        cfg_paths[cid] = out / f"{cid}.yaml"
        if prompts == "kinematics":
            text = (
                "# masktrack demo job (generated): zero clicks, arm and gripper prompts rendered from the\n"
                "# robot's URDF + joint states (scene/robot/), arm_only composition\n"
                + yaml.safe_dump(kinematic_pipeline_config(cid, backend, backend_options), sort_keys=False)
            )
            written += _write_if_changed(cfg_paths[cid], text, force=force)
            continue
        pf = make_prompts(syn.scene_path, c, cfg.frames, cfg.width)
        report.clicks += count_clicks(pf)
        written += _write_if_changed(
            out / "prompts" / f"{cid}.json", json.dumps(pf, indent=1) + "\n", force=force
        )
        text = (
            "# masktrack demo job (generated): arm and gripper sessions, arm_only composition\n"
            + yaml.safe_dump(pipeline_config(cid, backend or "bilateral", backend_options), sort_keys=False)
        )
        written += _write_if_changed(cfg_paths[cid], text, force=force)
    st.add(
        "prompts",
        f"{len(cams)} configs" + (" + prompt files" if prompts == "clicks" else ""),
        "computed" if written else "reused",
        time.perf_counter() - t0,
        f"{report.clicks} clicks derived from GT masks"
        if prompts == "clicks"
        else "0 clicks: prompt source kinematics (robot URDF + joint states)",
    )
    jobs = {cid: load_config(p) for cid, p in cfg_paths.items()}

    # 3-5. per camera: segment and compose (the batch unit's stage sequence), then previews
    from masktrack.batch.unit import run_camera_stages

    keys: dict[str, dict[str, str]] = {}
    for cid, job in jobs.items():
        done = run_camera_stages(job, force=force)
        for r in done.segment:
            st.add(
                "segment",
                f"{cid}/{r.session}",
                r.status,
                r.seconds,
                f"{r.frames} frames" + (f", empty: {r.empty_frames}" if any(r.empty_frames.values()) else ""),
            )
        comp = done.compose
        for o in comp.outputs:
            st.add(
                "compose",
                f"{cid}/{o.name}",
                "reused" if o.written == 0 else str(o.status),
                o.seconds,
                f"{o.written} written, {o.skipped} kept",
            )
        t0 = time.perf_counter()
        store = MaskStore(job.output)
        keys[cid] = {s: store.session(s).require_manifest().key for s in SESSIONS} | {
            n: comp[n].key for n in COMPOSE
        }
        pkey = hash_json(keys[cid])
        sheets = [Path(job.output) / "previews" / f"session_{s}.png" for s in SESSIONS] + [
            Path(job.output) / "previews" / f"composed_{n}.png" for n in COMPOSE
        ]
        if not force and manifest.get("previews", {}).get(cid) == pkey and all(p.exists() for p in sheets):
            status = "reused"
        else:
            from masktrack.viz.preview import preview_composed, preview_session

            for s in SESSIONS:
                preview_session(job, s, video=False)
            for n in COMPOSE:
                preview_composed(job, n, video=False)
            status = "computed"
        new_manifest.setdefault("previews", {})[cid] = pkey
        save_manifest()
        st.add("previews", f"{cid}", status, time.perf_counter() - t0, "contact sheets")

    # 6-8. scene instances from the outputs, tracking, Rerun recordings (the batch scene unit's stage)
    from masktrack.batch.unit import run_track_stage

    refs = {s: f"{s}.{s}" for s in SESSIONS} | {n: f"composed:{n}" for n in COMPOSE}
    ikey = hash_json(keys)
    t0 = time.perf_counter()
    ts = run_track_stage(
        syn.scene_path,
        {cid: job.output for cid, job in jobs.items()},
        refs,
        out / "tracks",
        tracked=TRACKED,
        tracker="flow",
        rerun=True,
        force=force,
        instances_current=manifest.get("instances") == ikey,
    )
    new_manifest["instances"] = ikey
    save_manifest()
    st.add("instances", ", ".join(refs), str(ts.instances), ts.instances_seconds)
    for ir in ts.tracking.instances:
        st.add(
            "track",
            ir.name,
            str(ir.status),
            ir.seconds if ir.status != "reused" else ts.tracking_seconds,
            f"{ir.num_queries} queries, {100 * ir.visible_fraction:.0f}% visible",
        )
    rec = ts.recording
    st.add("rerun", str(Path(rec.combined).relative_to(out)), str(rec.status), ts.recording_seconds)
    from masktrack.track.base import Tracks

    tracks = {n: Tracks.load(out / "tracks" / n / "tracks.npz") for n in TRACKED}
    insts = {n: load_instance(syn.scene_path, n) for n in refs}

    # 9. evaluation
    t0 = time.perf_counter()
    ekey = hash_json(
        {
            "version": DEMO_VERSION,
            "instances": {n: hash_file(insts[n].folder / "masks.npy") for n in refs},
            "tracks": {n: hash_file(out / "tracks" / n / "tracks.npz") for n in TRACKED},
            "synth": cfg.key(),
        }
    )
    old = _read_report(out)
    if not force and manifest.get("evaluate") == ekey and old is not None:
        report.masks = [MaskScore(**m) for m in old["masks"]]
        report.tracks = [TrackScore(**t) for t in old["tracks"]]
        report.arm_on_objects = old.get("arm_on_objects") or arm_on_objects(syn, insts)
        status = "reused"
    else:
        report.masks = evaluate_masks(syn, insts, refs)
        report.tracks = evaluate_tracks(syn, tracks)
        report.arm_on_objects = arm_on_objects(syn, insts)
        status = "computed"
    new_manifest["evaluate"] = ekey
    st.add("evaluate", "masks + tracks vs GT", status, time.perf_counter() - t0)
    report.seconds = time.perf_counter() - t_all
    atomic_write_json(out / "report.json", report.to_json())
    save_manifest()
    return report


def _read_report(out: Path) -> dict[str, Any] | None:
    try:
        r = json.loads((out / "report.json").read_text(encoding="utf-8"))
        return r if r.get("version") == DEMO_VERSION else None
    except (FileNotFoundError, ValueError):
        return None


# --------------------------------------------------------------------------- evaluation
def evaluate_masks(syn: SynthScene, insts: dict[str, Any], refs: dict[str, str]) -> list[MaskScore]:
    """J&F of every predicted instance per camera against its GT."""
    from masktrack.eval.davis import evaluate_sequence
    from masktrack.io.instances import load_instance
    from masktrack.masks.compose import evaluate_full

    gt_arm = load_instance(syn.scene_path, "gt_arm").masks()
    gt_grip = load_instance(syn.scene_path, "gt_gripper").masks()
    scores = []
    for name, ref in refs.items():
        pred = insts[name].masks()
        for c, cid in enumerate(syn.camera_ids):
            if name in SESSIONS:
                gt_name = SESSIONS[name]
                gt = gt_arm[c] if gt_name == "gt_arm" else gt_grip[c]
            else:
                gt_name = f"{COMPOSE[name]} on GT"
                gt = np.stack(
                    [
                        evaluate_full(
                            COMPOSE[name], {"arm.arm": gt_arm[c, t], "gripper.gripper": gt_grip[c, t]}
                        )
                        for t in range(gt_arm.shape[1])
                    ]
                )
            s = evaluate_sequence(pred[c], gt, name=f"{cid}/{ref}")
            scores.append(
                MaskScore(cid, ref, gt_name, round(s.j_mean, 4), round(s.f_mean, 4), round(s.jf_mean, 4))
            )
    return scores


def arm_on_objects(syn: SynthScene, insts: dict[str, Any]) -> dict[str, float]:
    """Per camera, the fraction of the ``arm`` session's mask pixels that lie on GT non-arm objects.

    A leak of the arm mask onto the pushed box is what would make ``arm_only``
    erase part of the box; J&F barely notices a small one, this does.
    """
    from masktrack.track.instances import load_instance

    if "arm" not in insts:
        return {}
    pred = insts["arm"].masks().astype(bool)
    other = np.zeros(pred.shape, bool)
    for n in NON_ARM:
        other |= load_instance(syn.scene_path, n).masks().astype(bool)
    out = {}
    for c, cid in enumerate(syn.camera_ids):
        area = int(pred[c].sum())
        out[cid] = round(float((pred[c] & other[c]).sum() / area) if area else 0.0, 5)
    return out


def evaluate_tracks(syn: SynthScene, tracks: dict[str, Any]) -> list[TrackScore]:
    """3D track errors against the GT motion of each query's surface point (see module doc)."""
    from masktrack.synth.truth import SceneTruth, track_errors

    truth = SceneTruth.load(syn.root)
    labels = {"arm": ("arm", "gripper"), "gripper": ("gripper",)}
    out = []
    for name, tr in tracks.items():
        if tr.num_points == 0:
            out.append(TrackScore(name, 0, float("nan"), float("nan"), float("nan"), 0.0, float("nan")))
            continue
        e = track_errors(truth, tr.tracks, tr.queries)
        err = e["error"]
        ok = np.isfinite(err)
        vis = ok & tr.visibility.astype(bool)
        on = np.isin(np.array(truth.instances)[e["prim"]], labels.get(name, (name,)))
        out.append(
            TrackScore(
                name,
                int(tr.num_points),
                round(float(np.median(err[ok])), 5) if ok.any() else float("nan"),
                round(float(np.percentile(err[ok], 90)), 5) if ok.any() else float("nan"),
                round(float(np.median(err[vis])), 5) if vis.any() else float("nan"),
                round(float(on.mean()), 4),
                round(float(np.percentile(e["attach_dist"], 90)), 5),
            )
        )
    return out

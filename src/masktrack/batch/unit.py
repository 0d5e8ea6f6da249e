"""Running one unit of a batch (in a worker process or a Ray task).

A unit runs the stages it needs through the same public APIs as the CLI
(``run_segment``, ``run_compose``), so each stage's own manifests decide what
is reused.  Input problems (missing or invalid prompts, unreadable video)
make the unit *skipped* with the reason; anything else makes it *failed*.
Either way the batch goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from masktrack.batch.job import SceneUnit, Unit
from masktrack.batch.kinematics import check_prompt_source, robot_stamp
from masktrack.errors import MasktrackError, PromptError, VideoError
from masktrack.io.atomic import hash_file, hash_json
from masktrack.io.manifest import Status


@dataclass
class UnitResult:
    """What happened to one unit; one row of ``batch_report.json``."""

    id: str
    status: Status  # computed | reused | skipped (bad input) | failed
    reason: str = ""
    seconds: float = 0.0
    stages: dict[str, str] = field(default_factory=dict)
    key: str = ""
    worker: str = ""
    log: str = ""
    # workers of earlier attempts of this unit in this run that were lost (a Ray node died, ...)
    retries: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _video_stamp(video: Path) -> list[Any]:
    """A cheap fingerprint of a video (names, sizes, mtimes): the batch fast path, not the stage manifests."""
    if video.is_dir():
        return sorted(
            [p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in video.iterdir() if p.is_file()
        )
    if video.is_file():
        st = video.stat()
        return [video.name, st.st_size, int(st.st_mtime)]
    return ["missing", str(video)]


CAMERA_STAGES = ("segment", "compose")
UNIT_LOCK_WAIT = 60.0  # see masktrack.io.lock.wait_seconds


def unit_key(unit: Unit, pipeline: dict[str, Any], stages: list[str]) -> str:
    """Key of a unit's inputs: if it is unchanged and the unit is done, the batch does not dispatch it."""
    prompts = hash_file(unit.prompts) if unit.prompts is not None and unit.prompts.is_file() else None
    camera_stages = [s for s in stages if s in CAMERA_STAGES]
    return hash_json(
        {
            "pipeline": unit.pipeline_dict_from(pipeline),
            "prompts": prompts,
            "video": _video_stamp(unit.video),
            "stages": camera_stages,
            **({"robot": robot_stamp(unit.robot_scene)} if unit.robot_scene is not None else {}),
        }
    )


def scene_unit_key(unit: SceneUnit, track: dict[str, Any], camera_keys: list[str]) -> str:
    """A scene unit is redone when its tracking settings or any of its camera units' inputs change."""
    return hash_json(
        {
            "track": track,
            "scene": str(unit.scene_path),
            "outputs": {k: str(v) for k, v in unit.outputs.items()},
            "cameras": camera_keys,
        }
    )


def run_unit(
    unit: Unit | SceneUnit,
    pipeline: dict[str, Any],
    stages: list[str],
    log_path: str,
    base: str,
    track: dict[str, Any] | None = None,
) -> UnitResult:
    """Run one unit's stages; never raises (the batch must go on)."""
    t0 = time.perf_counter()
    result = UnitResult(
        id=unit.id, status=Status.COMPUTED, worker=f"{os.uname().nodename}:{os.getpid()}", log=log_path
    )
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpu is not None:
        result.worker += f":gpu{gpu}"
    node = _ray_node()
    if node:
        result.worker += f":node-{node}"
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with (
        open(log_path, "a", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        handler = logging.StreamHandler(log)
        logging.getLogger().addHandler(handler)
        print(f"=== unit {unit.id} ({time.strftime('%Y-%m-%d %H:%M:%S')}) worker {result.worker}", flush=True)
        from masktrack.io import lock

        lock.wait_seconds, wait_before = UNIT_LOCK_WAIT, lock.wait_seconds
        try:
            if isinstance(unit, SceneUnit):
                assert track is not None
                _run_track(unit, track, result)
            else:
                _run_stages(unit, pipeline, stages, Path(base), result)
        except (PromptError, VideoError) as e:
            result.status, result.reason = Status.SKIPPED, _one_line(e)
        except MasktrackError as e:
            result.status, result.reason = Status.FAILED, _one_line(e)
        except Exception as e:
            result.status, result.reason = Status.FAILED, f"{type(e).__name__}: {e}"
            traceback.print_exc(file=log)
        finally:
            lock.wait_seconds = wait_before
            result.seconds = round(time.perf_counter() - t0, 3)
            print(f"=== {result.status} in {result.seconds:.1f}s {result.reason}", flush=True)
            logging.getLogger().removeHandler(handler)
    return result


def _ray_node() -> str:
    """The Ray node running this task (several nodes can share one host name), or ''."""
    import sys

    if "ray" not in sys.modules:
        return ""
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())[:12] if ray.is_initialized() else ""
    except Exception:  # the report is still right without it
        return ""


def attempts_in_log(log_path: str, offset: int, unit_id: str) -> list[str]:
    """Workers that started ``unit_id`` in its log since byte ``offset`` (one per attempt, in order)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    head = f"=== unit {unit_id} ("
    return [line.rsplit(" worker ", 1)[-1].strip() for line in text.splitlines() if line.startswith(head)]


def _one_line(e: MasktrackError) -> str:
    lines = e.lines()
    return lines[0] + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "")


@dataclass
class CameraStages:
    """What the per-camera stages did (the currency of a batch unit and of the demo's cameras)."""

    segment: list[Any] = field(default_factory=list)  # SessionReport per session
    compose: Any = None  # ComposeReport, when the config composes

    def statuses(self) -> dict[str, Status]:
        out = {}
        if self.segment:
            statuses = {r.status for r in self.segment}
            out["segment"] = Status.REUSED if statuses == {Status.REUSED} else Status.COMPUTED
        if self.compose is not None:
            out["compose"] = _compose_status(self.compose)
        return out


def run_camera_stages(
    cfg: Any,
    stages: Sequence[str] = ("segment", "compose"),
    *,
    force: bool = False,
    into: CameraStages | None = None,
) -> CameraStages:
    """Segment, then compose one camera's pipeline config: the stage sequence of a batch unit.

    Each stage's own manifests decide what is reused (``force`` recomputes all); the demo runs
    its cameras through this function too, so the two cannot drift apart.  ``into`` collects the
    reports as stages finish (what a failing unit had done before its error).
    """
    done = into if into is not None else CameraStages()
    if "segment" in stages:
        from masktrack.segment.pipeline import run_segment

        done.segment = run_segment(cfg, force=force)
    if "compose" in stages and cfg.compose:
        from masktrack.masks.export import run_compose

        done.compose = run_compose(cfg, force=force)
    return done


def _run_stages(
    unit: Unit, pipeline: dict[str, Any], stages: list[str], base: Path, result: UnitResult
) -> None:
    from masktrack.config import parse_config

    check_prompt_source(pipeline, unit.robot_scene, unit.prompts)  # kinematic prompts or a prompt file
    cfg = parse_config(unit.pipeline_dict_from(pipeline), base=base)
    done = CameraStages()
    try:
        run_camera_stages(cfg, stages, into=done)
    finally:
        result.stages.update(done.statuses())


@dataclass
class TrackStage:
    """What the per-scene track stage did (the currency of a batch scene unit and of the demo)."""

    instances: Status  # scene instances from the cameras' outputs: computed, or reused (caller's key)
    instances_seconds: float
    tracking: Any  # masktrack.track.pipeline.TrackingReport
    tracking_seconds: float
    recording: Any = None  # masktrack.viz.rerun.RecordingPaths, when recordings were asked for
    recording_seconds: float = 0.0

    @property
    def status(self) -> Status:
        return Status.COMPUTED if self.tracking.tracked else Status.REUSED


def run_track_stage(
    scene_path: str | Path,
    outputs: dict[str, Any],
    refs: dict[str, str],
    out_dir: str | Path,
    *,
    tracked: Sequence[str] | None = None,
    tracker: str = "flow",
    tracker_options: dict[str, Any] | None = None,
    query: dict[str, Any] | None = None,
    rerun: bool = False,
    force: bool = False,
    instances_current: bool = False,
) -> TrackStage:
    """Scene instances from the cameras' outputs, then per-instance 3D tracks, then (``rerun``) recordings.

    The stage sequence of a batch scene unit; the demo runs its scene through this function too.
    ``outputs``: camera id -> output folder; ``refs``: instance name -> ``session.object`` or
    ``composed:name``; ``tracked`` (default: all of ``refs``) are the instances tracked, while the
    recordings show every instance of ``refs``.  ``instances_current``: the caller's key says the
    outputs are unchanged since the instances were built, so they are reused when all exist.
    Tracking and recordings are resumable through their own manifests (``force`` recomputes).
    """
    from masktrack.io.instances import list_instances
    from masktrack.masks.instances import instances_from_outputs
    from masktrack.track.pipeline import run_tracking
    from masktrack.track.queries import QueryOptions

    scene_path = Path(scene_path)
    t0 = time.perf_counter()
    if not force and instances_current and all(n in list_instances(scene_path) for n in refs):
        inst_status = Status.REUSED
    else:
        instances_from_outputs(scene_path, outputs, refs)
        inst_status = Status.COMPUTED
    inst_seconds = time.perf_counter() - t0
    q = dict(query or {})
    if isinstance(q.get("cameras"), list):
        q["cameras"] = tuple(q["cameras"])
    names = list(refs if tracked is None else tracked)
    t0 = time.perf_counter()
    report = run_tracking(
        scene_path,
        out_dir,
        tracker=tracker,
        tracker_options=tracker_options or {},
        instances=names,
        query_options=QueryOptions(**q),
        force=force,
        progress=False,
    )
    done = TrackStage(inst_status, inst_seconds, report, time.perf_counter() - t0)
    if rerun:
        from masktrack.viz.recordings import recording_report

        t0 = time.perf_counter()
        done.recording = recording_report(
            scene_path, out_dir, [r.name for r in report.instances], force=force, shown=list(refs)
        )
        done.recording_seconds = time.perf_counter() - t0
    return done


def _run_track(unit: SceneUnit, track: dict[str, Any], result: UnitResult) -> None:
    """Instances from the scene's camera outputs, then per-instance 3D tracks (both resumable)."""
    done = run_track_stage(
        unit.scene_path,
        unit.outputs,
        track["instances"],
        unit.output,
        tracker=track.get("tracker", "flow"),
        tracker_options=track.get("options"),
        query=track.get("query"),
        rerun=bool(track.get("rerun")),
    )
    result.stages["track"] = done.status


def _compose_status(report: Any) -> Status:
    """A ComposeReport (masktrack.masks.export) as one status word."""
    return Status.COMPUTED if any(o.written for o in report.outputs) else Status.REUSED

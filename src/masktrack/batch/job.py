"""Batch job descriptions, expanded into units of work (one per scene and camera).

A job file is YAML::

    version: 1
    root: /data/airexo2                 # where scenes live (relative to the job file)
    scenes: "{task}/train/{scene}"      # pattern under root; each {name} matches one folder level
    cameras: "cam_*"                    # glob under each scene folder; omit for one video per scene
    video: "{scene_dir}/{camera}/color" # templates; placeholders below
    prompts: "{scene_dir}/{camera}/prompts.json"
    output: "{out}/{task}/{scene}/{camera}"
    stages: [segment, compose, track]
    robot:                              # optional: zero-click kinematic prompts (masktrack.batch.kinematics)
      scene: "{scene_dir}/scene"        # scene with robot/ state; units without it use their prompt file
      camera: "{camera}"                # the scene camera the unit's video shows
    pipeline:                           # a pipeline config without video/output/prompts
      sessions: [...]
      compose: {...}
    track:                              # per scene, once all its camera units are done
      scene: "{scene_dir}/scene"        # masktrack scene folder (`masktrack scene import`)
      instances: {arm: "composed:arm_only", gripper: "gripper.gripper"}
      output: "{out}/{task}/{scene}/tracks"
      tracker: flow
      query: {window: frame, frame: 0}
      rerun: true

Placeholders: every ``{name}`` captured by ``scenes``, plus ``{scene_dir}``
(the scene folder), ``{camera}`` (the camera folder name, empty without
cameras), ``{root}`` and ``{out}`` (the batch output folder).  ``--scenes``
on the command line replaces discovery with a glob or a list of folders; the
pattern still names their parts when it matches.
"""

from __future__ import annotations

import glob as globlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from masktrack.errors import ConfigError, Problem, pydantic_problems

Stage = Literal["segment", "compose", "track"]
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TrackConfig(BaseModel):
    """The per-scene tracking stage: instances from the camera units' outputs, then 3D tracks."""

    model_config = ConfigDict(extra="forbid")

    scene: str
    instances: dict[str, str]
    cameras: dict[str, str] = Field(default_factory=dict)
    output: str = "{out}/{scene}/tracks"
    tracker: str = "flow"
    options: dict[str, Any] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict)
    rerun: bool = False

    @field_validator("instances")
    @classmethod
    def _some(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("name at least one instance: {name: 'session.object' or 'composed:name'}")
        return v

    @field_validator("query")
    @classmethod
    def _query_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        from dataclasses import fields

        from masktrack.track.queries import QueryOptions

        unknown = sorted(set(v) - {f.name for f in fields(QueryOptions)})
        if unknown:
            raise ValueError(f"unknown query option(s): {', '.join(unknown)}")
        return v


class RobotJobConfig(BaseModel):
    """Where each unit's robot state comes from (templates): enables sessions' ``kinematics`` prompts."""

    model_config = ConfigDict(extra="forbid")

    scene: str
    camera: str = "{camera}"


class JobConfig(BaseModel):
    """A batch job: how to find scenes, cameras, videos and prompts, and what to run on each."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    root: Path = Path(".")
    scenes: str = "{scene}"
    cameras: str | list[str] | None = None
    video: str
    prompts: str | None = None
    output: str = "{out}/{scene}/{camera}"
    stages: list[Stage] = Field(default_factory=lambda: ["segment", "compose"])  # type: ignore[arg-type]
    pipeline: dict[str, Any]
    track: TrackConfig | None = None
    robot: RobotJobConfig | None = None
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("pipeline")
    @classmethod
    def _no_paths(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted({"video", "output", "prompts", "robot"} & set(v))
        if clash:
            raise ValueError(f"set {', '.join(clash)} at the job level (as templates), not inside pipeline")
        if "sessions" not in v:
            raise ValueError("pipeline needs sessions")
        return v

    @model_validator(mode="after")
    def _track_stage(self) -> JobConfig:
        if "track" in self.stages and self.track is None:
            raise ValueError("stage 'track' needs a `track:` section")
        return self


@dataclass(frozen=True)
class Unit:
    """One unit of work: one camera video of one scene, with its resolved paths."""

    id: str
    scene: str
    camera: str
    video: Path
    prompts: Path | None
    output: Path
    fields: dict[str, str] = field(default_factory=dict)
    scene_dir: str = ""
    robot_scene: Path | None = None  # scene with robot state for kinematic prompts (job's `robot`)
    robot_camera: str = ""

    def pipeline_dict_from(self, pipeline: dict[str, Any]) -> dict[str, Any]:
        """The unit's pipeline config (the job's template plus this unit's paths), ready for ``parse_config``."""
        d = dict(pipeline)
        d["video"] = str(self.video)
        d["output"] = str(self.output)
        if self.prompts is not None:
            d["prompts"] = str(self.prompts)
        from masktrack.batch.kinematics import apply_robot

        return apply_robot(d, self.robot_scene, self.robot_camera)


@dataclass(frozen=True)
class SceneUnit:
    """The per-scene tracking unit: runs after every camera unit of its scene is done."""

    id: str
    scene: str
    scene_path: Path
    outputs: dict[str, Path]  # scene camera id -> that camera unit's output folder
    output: Path
    camera_units: tuple[str, ...]


def load_job(path: str | Path) -> JobConfig:
    """Load and validate a job file (one-line errors naming file and field)."""
    from masktrack.config import read_yaml

    path = Path(path)
    data = read_yaml(path, "job file")
    if not isinstance(data, dict):
        raise ConfigError("the job file must be a YAML mapping", path=path)
    try:
        job = JobConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError("invalid job file", path=path, problems=pydantic_problems(e)) from None
    if not job.root.is_absolute():
        job.root = (path.parent / job.root).resolve()
    job.source = path
    pipeline_problems = check_pipeline(job.pipeline, base=path.parent)
    if pipeline_problems:  # caught here, not as the same failure in every unit
        raise ConfigError("invalid pipeline", path=path, problems=pipeline_problems)
    return job


def check_pipeline(pipeline: dict[str, Any], *, base: Path | None = None) -> list[Problem]:
    """Problems of the job's pipeline template that do not depend on a unit (schema, backends, expressions,
    backend packages not installed, checkpoint files not found: see :mod:`masktrack.batch.preflight`)."""
    from masktrack.config import PipelineConfig
    from masktrack.errors import MasktrackError
    from masktrack.masks.compose import compile_expression
    from masktrack.segment.registry import available_backends

    try:
        cfg = PipelineConfig.model_validate({**pipeline, "video": "unit", "output": "unit"})
    except ValidationError as e:
        return pydantic_problems(e, "pipeline")
    probs = []
    known = set(available_backends())
    for i, s in enumerate(cfg.sessions):
        if s.backend not in known:
            probs.append(
                Problem(
                    f"pipeline.sessions[{i}:{s.name}].backend",
                    f"unknown backend {s.backend!r} (backends: {', '.join(sorted(known))})",
                )
            )
    from masktrack.batch.preflight import preflight_sessions

    probs += preflight_sessions(pipeline.get("sessions") or [], base=base, known=known)
    objects = {s.name: s.object_names() for s in cfg.sessions}
    for name, out in cfg.compose.items():
        try:
            compile_expression(out.expr, objects)
        except MasktrackError as e:
            probs.append(Problem(f"pipeline.compose.{name}", e.message))
    return probs


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    pos = 0
    for m in _PLACEHOLDER.finditer(pattern):
        parts.append(re.escape(pattern[pos : m.start()]))
        parts.append(f"(?P<{m.group(1)}>[^/]+)")
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(parts) + "$")


def _fill(template: str, values: dict[str, str], *, what: str, job: JobConfig) -> str:
    try:
        return template.format(**values)
    except KeyError as e:
        raise ConfigError(
            f"unknown placeholder {{{e.args[0]}}} (known: {', '.join(sorted(values))})",
            path=job.source,
            field=what,
        ) from None


def discover_scenes(
    job: JobConfig, scenes: str | list[str] | None = None
) -> list[tuple[Path, dict[str, str]]]:
    """Scene folders with the fields the ``scenes`` pattern captures from each."""
    regex = _pattern_regex(job.scenes)
    if scenes is None:
        pattern_glob = _PLACEHOLDER.sub("*", job.scenes)
        found = sorted(Path(p) for p in globlib.glob(str(job.root / pattern_glob)) if Path(p).is_dir())
    elif isinstance(scenes, str):
        base = Path(scenes) if Path(scenes).is_absolute() else Path.cwd() / scenes
        found = sorted(Path(p) for p in globlib.glob(str(base)) if Path(p).is_dir())
    else:
        found = [Path(s).resolve() for s in scenes]
    out = []
    for d in found:
        try:
            rel = d.resolve().relative_to(job.root.resolve()).as_posix()
        except ValueError:
            rel = d.name
        m = regex.match(rel)
        fields = dict(m.groupdict()) if m else {}
        fields.setdefault("scene", d.name)
        out.append((d, fields))
    return out


def expand_units(job: JobConfig, out: Path, scenes: str | list[str] | None = None) -> list[Unit]:
    """One unit per scene and camera, in a stable order."""
    units = []
    for scene_dir, fields in discover_scenes(job, scenes):
        if job.cameras is None:
            cameras = [""]
        elif isinstance(job.cameras, list):
            cameras = list(job.cameras)
        else:
            cameras = sorted(p.name for p in scene_dir.glob(job.cameras) if p.is_dir())
        for cam in cameras:
            values = {
                **fields,
                "scene_dir": str(scene_dir),
                "camera": cam,
                "root": str(job.root),
                "out": str(out),
            }
            video = Path(_fill(job.video, values, what="video", job=job))
            prompts = Path(_fill(job.prompts, values, what="prompts", job=job)) if job.prompts else None
            output = Path(_fill(job.output, values, what="output", job=job))
            robot_scene, robot_camera = None, ""
            if job.robot is not None:
                robot_scene = Path(_fill(job.robot.scene, values, what="robot.scene", job=job))
                robot_camera = _fill(job.robot.camera, values, what="robot.camera", job=job)
            scene_key = "/".join(v for k, v in fields.items()) or scene_dir.name
            uid = f"{scene_key}/{cam}" if cam else scene_key
            units.append(
                Unit(
                    id=uid,
                    scene=scene_key,
                    camera=cam,
                    video=video,
                    prompts=prompts,
                    output=output,
                    fields=fields,
                    scene_dir=str(scene_dir),
                    robot_scene=robot_scene,
                    robot_camera=robot_camera,
                )
            )
    ids = [u.id for u in units]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(
            f"several scenes expand to the same unit id {dup[0]!r}; add placeholders to `scenes`",
            path=job.source,
            field="scenes",
        )
    return units


def expand_scene_units(job: JobConfig, out: Path, units: list[Unit]) -> list[SceneUnit]:
    """One tracking unit per scene (when the job has a ``track`` stage), over its camera units."""
    if job.track is None or "track" not in job.stages:
        return []
    by_scene: dict[str, list[Unit]] = {}
    for u in units:
        by_scene.setdefault(u.scene, []).append(u)
    result = []
    for scene, cams in by_scene.items():
        first = cams[0]
        values = {
            **first.fields,
            "scene_dir": first.scene_dir,
            "camera": "",
            "root": str(job.root),
            "out": str(out),
        }
        scene_path = Path(_fill(job.track.scene, values, what="track.scene", job=job))
        output = Path(_fill(job.track.output, values, what="track.output", job=job))
        outputs = {job.track.cameras.get(u.camera, u.camera): u.output for u in cams}
        result.append(
            SceneUnit(
                id=f"{scene}/track",
                scene=scene,
                scene_path=scene_path,
                outputs=outputs,
                output=output,
                camera_units=tuple(u.id for u in cams),
            )
        )
    return result


def parse_scene_list(arg: str | None) -> str | list[str] | None:
    """``--scenes``: a glob, a comma-separated list, or ``@file`` with one folder per line."""
    if arg is None:
        return None
    if arg.startswith("@"):
        try:
            lines = Path(arg[1:]).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            why = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else (e.strerror or str(e))
            raise ConfigError(f"cannot read the scene list ({why})", path=arg[1:], field="--scenes") from None
        return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    if "," in arg:
        return [s.strip() for s in arg.split(",") if s.strip()]
    return arg

"""The pipeline config: a typed YAML file declaring the video, output folder and sessions.

Relative paths are resolved against the config file's folder.  Example
(``examples/arm_gripper.yaml``)::

    video: frames/cam0
    output: out/cam0
    prompts: prompts.json
    sessions:
      - name: arm
        backend: sam3
        text: {text: "robot and cable", frame: 0}
        objects: [arm, arm_2]
      - name: gripper
        backend: sam3
        objects: [gripper_left, gripper_right]
    compose:
      arm_only: "dilate(arm.arm | arm.arm_2, 15) - dilate(gripper.gripper_left | gripper.gripper_right, 15)"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from masktrack.errors import ConfigError, Problem
from masktrack.prompts.model import Keyframe

Direction = Literal["both", "forward", "backward"]


class TextPromptConfig(BaseModel):
    """A text prompt applied on one frame (SAM3-style detection bootstrap)."""

    model_config = ConfigDict(extra="forbid")
    text: str
    frame: int = 0


class InlineObject(BaseModel):
    """An object declared in the config itself (e.g. one that only text detection produces).

    It may carry its own keyframe prompts (points, boxes, mask) in the prompt
    file's keyframe format, for jobs small enough to live in one YAML file.
    Without ``id`` it gets the smallest id >= 1 not used by the session's
    other objects; without ``color`` the palette colour of that id.
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    id: int | None = None
    color: tuple[int, int, int] | None = None
    keyframes: list[Keyframe] = Field(default_factory=list)


class SessionConfig(BaseModel):
    """One isolated segmentation session."""

    model_config = ConfigDict(extra="forbid")

    name: str
    backend: str = "classic"
    options: dict[str, Any] = Field(default_factory=dict)
    objects: list[str | InlineObject]
    text: TextPromptConfig | None = None
    prompts: Path | None = None
    direction: Direction = "both"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or not v.replace("_", "a").replace("-", "a").isalnum():
            raise ValueError("session names use letters, digits, '_' and '-' only")
        return v

    @field_validator("text", mode="before")
    @classmethod
    def _text_shorthand(cls, v: Any) -> Any:
        # `text: "robot and cable"` means that text on frame 0
        return {"text": v, "frame": 0} if isinstance(v, str) else v

    @field_validator("objects")
    @classmethod
    def _objects(cls, v: list) -> list:
        if not v:
            raise ValueError("a session needs at least one object")
        return v

    def object_names(self) -> list[str]:
        return [o if isinstance(o, str) else o.name for o in self.objects]


class ComposeOutput(BaseModel):
    """A named composed mask: an expression over session objects (see masktrack.masks.compose)."""

    model_config = ConfigDict(extra="forbid")
    expr: str
    packed: bool = False


class PipelineConfig(BaseModel):
    """A whole segmentation (+ composition) job on one video."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    video: Path
    output: Path
    prompts: Path | None = None
    sessions: list[SessionConfig]
    compose: dict[str, ComposeOutput] = Field(default_factory=dict)
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("compose", mode="before")
    @classmethod
    def _compose_strings(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: {"expr": e} if isinstance(e, str) else e for k, e in v.items()}
        return v

    @model_validator(mode="after")
    def _unique_sessions(self) -> PipelineConfig:
        names = [s.name for s in self.sessions]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate session names: {', '.join(sorted(dup))}")
        if not self.sessions:
            raise ValueError("at least one session is needed")
        return self

    def session(self, name: str) -> SessionConfig:
        for s in self.sessions:
            if s.name == name:
                return s
        raise ConfigError(
            f"no session named {name!r} (sessions: {', '.join(s.name for s in self.sessions)})",
            path=self.source,
            field="sessions",
        )

    def prompts_for(self, session: SessionConfig) -> Path | None:
        return session.prompts or self.prompts


def _resolve(base: Path, p: Path | None) -> Path | None:
    if p is None:
        return None
    p = Path(p).expanduser()
    return p if p.is_absolute() else (base / p)


def parse_config(data: Any, *, path: Path | None = None, base: Path | None = None) -> PipelineConfig:
    """Validate a decoded YAML document; relative paths resolve against ``base``."""
    if not isinstance(data, dict):
        raise ConfigError("the config must be a YAML mapping", path=path)
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as e:
        probs = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            probs.append(Problem(loc, err["msg"]))
        raise ConfigError("invalid config", path=path, problems=probs) from None
    base = base or (path.parent if path else Path.cwd())
    cfg.video = _resolve(base, cfg.video)  # type: ignore[assignment]
    cfg.output = _resolve(base, cfg.output)  # type: ignore[assignment]
    cfg.prompts = _resolve(base, cfg.prompts)
    for s in cfg.sessions:
        s.prompts = _resolve(base, s.prompts)
        for o in s.objects:
            if isinstance(o, InlineObject):
                for k in o.keyframes:
                    if k.mask is not None:
                        k.mask = str(_resolve(base, Path(k.mask)))
    cfg.source = path
    return cfg


def load_config(path: str | Path) -> PipelineConfig:
    """Load and validate a pipeline config (one-line errors naming file and field)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"invalid YAML: {where}{problem}", path=path) from None
    return parse_config(data, path=path, base=path.parent)

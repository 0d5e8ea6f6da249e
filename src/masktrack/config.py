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

from masktrack.errors import ConfigError, pydantic_problems
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


class RobotSourceConfig(BaseModel):
    """Where a video's robot comes from: a scene with robot state, and which of its cameras the video is."""

    model_config = ConfigDict(extra="forbid")
    scene: Path
    camera: str


KinematicsMode = Literal["prompt", "prior", "render"]


class KinematicsConfig(BaseModel):
    """Prompt source ``kinematics``: objects drawn from the robot's joint states, zero clicks.

    ``objects`` maps each object to a link group of the robot model (``arm``,
    ``gripper``, ``gripper_left``...).  ``mode``: ``prompt`` turns the rendered
    (occlusion-aware) masks into mask, box and point prompts on ``keyframes``
    for the session's backend (any backend); ``prior`` runs the weight-free
    ``kinematic`` backend, which follows the render on every frame and refines
    its outline to image edges; ``render`` outputs the rendered masks as they
    are.  ``keyframes: auto`` picks the first frame that shows the object well,
    then a new one whenever its rendered shape has changed (IoU below
    ``keyframe_iou``), at most ``max_keyframes``.  ``check`` refuses a camera
    whose rendered robot disagrees with its measured depth (a bad calibration
    makes wrong masks).  ``scene``/``camera`` override the config's top-level
    ``robot``.  See masktrack.segment.kinematic.
    """

    model_config = ConfigDict(extra="forbid")
    objects: dict[str, str]
    mode: KinematicsMode = "prompt"
    keyframes: list[int] | Literal["auto"] = "auto"
    max_keyframes: int = Field(default=6, ge=1)
    keyframe_iou: float = Field(default=0.5, gt=0, lt=1)
    points: int = Field(default=3, ge=0)
    negatives: int = Field(default=3, ge=0)
    box: bool = True
    mask: bool = True
    occlusion: bool = True
    margin: float = Field(default=0.02, ge=0)
    check: bool = True
    scene: Path | None = None
    camera: str | None = None

    @field_validator("objects")
    @classmethod
    def _some_objects(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("map at least one object to a link group, e.g. {arm: arm}")
        return v


class SessionConfig(BaseModel):
    """One isolated segmentation session."""

    model_config = ConfigDict(extra="forbid")

    name: str
    backend: str = "bilateral"
    options: dict[str, Any] = Field(default_factory=dict)
    objects: list[str | InlineObject] = Field(default_factory=list)
    text: TextPromptConfig | None = None
    prompts: Path | None = None
    direction: Direction = "both"
    kinematics: KinematicsConfig | None = None

    @model_validator(mode="after")
    def _kinematic_objects(self) -> SessionConfig:
        # objects default to the kinematic ones; a session needs some either way
        if not self.objects and self.kinematics is not None:
            self.objects = list(self.kinematics.objects)
        if not self.objects:
            raise ValueError("a session needs at least one object")
        if self.kinematics is not None:
            names = self.object_names()
            extra = [o for o in self.kinematics.objects if o not in names]
            if extra:
                raise ValueError(f"kinematics.objects not listed in objects: {', '.join(extra)}")
            if (
                self.kinematics.mode != "prompt"
                and "backend" in self.model_fields_set
                and self.backend != "kinematic"
            ):
                raise ValueError(
                    f"kinematics mode {self.kinematics.mode!r} runs the 'kinematic' backend; "
                    f"drop `backend: {self.backend}` or use mode 'prompt'"
                )
        return self

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
    robot: RobotSourceConfig | None = None
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
        raise ConfigError("invalid config", path=path, problems=pydantic_problems(e)) from None
    base = base or (path.parent if path else Path.cwd())
    cfg.video = _resolve(base, cfg.video)  # type: ignore[assignment]
    cfg.output = _resolve(base, cfg.output)  # type: ignore[assignment]
    cfg.prompts = _resolve(base, cfg.prompts)
    if cfg.robot is not None:
        cfg.robot.scene = _resolve(base, cfg.robot.scene)  # type: ignore[assignment]
    for s in cfg.sessions:
        s.prompts = _resolve(base, s.prompts)
        if s.kinematics is not None:
            s.kinematics.scene = _resolve(base, s.kinematics.scene)
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
    return parse_config(read_yaml(path, "config file"), path=path, base=path.parent)


# Bounds on YAML documents: configs nest a few levels and are a few hundred nodes; anything far
# beyond is a mistake or an attack (a "billion laughs" alias bomb expands to 10^9 nodes).
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 200_000


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting and duplicate keys (composition is where depth recurses)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, Any] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    if key_node.value in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                        )
                    seen[key_node.value] = key_node
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: Any, memo: dict[int, int], active: set[int]) -> int:
    """Nodes the document has once aliases are expanded (memoised: cheap even for a bomb)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise yaml.composer.ComposerError(None, None, "recursive alias", node.start_mark)
    active.add(key)
    n = 1
    if isinstance(node, yaml.SequenceNode):
        n += sum(_expanded_size(c, memo, active) for c in node.value)
    elif isinstance(node, yaml.MappingNode):
        n += sum(_expanded_size(k, memo, active) + _expanded_size(v, memo, active) for k, v in node.value)
    active.discard(key)
    memo[key] = n = min(n, MAX_YAML_NODES + 1)
    return n


def safe_load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with bounded depth and alias expansion, and no duplicate keys (raises yaml.YAMLError)."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, set()) > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"aliases expand to more than {MAX_YAML_NODES} nodes", node.start_mark
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: Path, what: str = "file") -> Any:
    """Read and parse a YAML file; every failure is a ConfigError naming the file (and line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", path=path) from None
    except IsADirectoryError:
        raise ConfigError(f"this is a folder; give the {what} itself", path=path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start}); save the {what} as UTF-8", path=path) from None
    try:
        return safe_load_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"invalid YAML: {where}{problem}", path=path) from None

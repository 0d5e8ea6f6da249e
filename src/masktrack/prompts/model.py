"""The versioned prompt-file format (``masktrack.prompts`` v1).

A prompt file names objects (name, integer id, colour) and gives, per object,
keyframe prompts in pixel coordinates: positive/negative points, boxes
``[x0, y0, x1, y1]`` and an optional mask PNG (path relative to the prompt
file).  Text prompts belong to sessions (pipeline config), not to objects.

Pixel convention: ``(x, y)`` with x to the right, y down; integer values are
pixel centres, so valid points satisfy ``0 <= x <= W-1`` and ``0 <= y <= H-1``
(points up to half a pixel outside are accepted as the image's outer edge).

Two entries for the same object and frame are merged (points, labels and boxes
concatenated; two different masks for one frame is an error), never silently
overwritten.  The JSON Schema ships as ``masktrack/prompts/schema.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictInt, ValidationError, field_validator

from masktrack.errors import Problem, PromptError, pydantic_problems
from masktrack.io.atomic import atomic_write_json

PROMPT_FORMAT: Final = "masktrack.prompts"
PROMPT_VERSION: Final = 1

Color = tuple[int, int, int]

# Colour per object id when the file gives none: distinct, legible on video.
PALETTE: list[Color] = [
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
]


def default_color(obj_id: int) -> Color:
    return PALETTE[(obj_id - 1) % len(PALETTE)] if obj_id >= 1 else PALETTE[0]


_Num = Annotated[float, Strict()]  # a JSON number (int or float), not a bool or a numeric string


class Keyframe(BaseModel):
    """Prompts for one object on one frame."""

    model_config = ConfigDict(extra="forbid")

    # strict: `true` as a label, "12" as a coordinate or frame is a mistake to report, not to coerce
    frame: StrictInt
    points: list[tuple[_Num, _Num]] = Field(default_factory=list)
    labels: list[StrictInt] = Field(default_factory=list)
    boxes: list[tuple[_Num, _Num, _Num, _Num]] = Field(default_factory=list)
    mask: str | None = None

    def is_empty(self) -> bool:
        return not self.points and not self.boxes and self.mask is None


class ObjectPrompts(BaseModel):
    """A named object and its keyframe prompts."""

    model_config = ConfigDict(extra="forbid")

    name: str
    id: int
    color: Color | None = None
    keyframes: list[Keyframe] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not v or not v.replace("_", "a").replace("-", "a").isalnum():
            raise ValueError("object names use letters, digits, '_' and '-' only")
        return v

    @property
    def rgb(self) -> Color:
        return tuple(self.color) if self.color is not None else default_color(self.id)  # type: ignore[return-value]

    def prompted_frames(self) -> list[int]:
        return sorted({k.frame for k in self.keyframes if not k.is_empty()})


class PromptFile(BaseModel):
    """A whole prompt file."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["masktrack.prompts"] = PROMPT_FORMAT
    version: Literal[1] = PROMPT_VERSION
    video: str | None = None
    objects: list[ObjectPrompts] = Field(default_factory=list)
    #: where the prompts came from (e.g. the notebook file's ``created_at_utc``/``stats``); kept, never used
    provenance: dict[str, Any] | None = None

    def object(self, name: str) -> ObjectPrompts:
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(name)

    def names(self) -> list[str]:
        return [o.name for o in self.objects]

    def merged(self) -> PromptFile:
        """Same prompts with entries for the same object and frame merged (see module doc)."""
        out = self.model_copy(deep=True)
        for o in out.objects:
            by_frame: dict[int, Keyframe] = {}
            for k in o.keyframes:
                if k.frame not in by_frame:
                    by_frame[k.frame] = k.model_copy(deep=True)
                    continue
                m = by_frame[k.frame]
                m.points = [*m.points, *k.points]
                m.labels = [*m.labels, *k.labels]
                m.boxes = [*m.boxes, *k.boxes]
                if k.mask is not None:
                    if m.mask is not None and m.mask != k.mask:
                        raise PromptError(
                            f"two different masks for frame {k.frame} ({m.mask!r}, {k.mask!r})",
                            field=f"objects[{o.name}].keyframes",
                        )
                    m.mask = k.mask
            o.keyframes = [by_frame[f] for f in sorted(by_frame)]
        return out

    def problems(
        self, *, num_frames: int | None = None, size: tuple[int, int] | None = None
    ) -> list[Problem]:
        """Every problem at once, each with its location. ``size`` is (height, width)."""
        probs: list[Problem] = []
        seen_ids: dict[int, str] = {}
        seen_names: set[str] = set()
        for oi, o in enumerate(self.objects):
            loc_o = f"objects[{oi}:{o.name}]"
            if o.name in seen_names:
                probs.append(Problem(loc_o, f"duplicate object name {o.name!r}"))
            seen_names.add(o.name)
            if o.id in seen_ids:
                probs.append(Problem(loc_o, f"duplicate object id {o.id} (also {seen_ids[o.id]!r})"))
            else:
                seen_ids[o.id] = o.name
            if o.id < 1:
                probs.append(Problem(f"{loc_o}.id", f"object ids are integers >= 1, got {o.id}"))
            if o.color is not None and any(not 0 <= c <= 255 for c in o.color):
                probs.append(Problem(f"{loc_o}.color", f"colour components are 0..255, got {list(o.color)}"))
            for ki, k in enumerate(o.keyframes):
                loc_k = f"{loc_o}.keyframes[{ki}]"
                if k.frame < 0 or (num_frames is not None and k.frame >= num_frames):
                    rng = f"[0, {num_frames - 1}]" if num_frames is not None else ">= 0"
                    probs.append(Problem(f"{loc_k}.frame", f"frame {k.frame} out of range {rng}"))
                if len(k.points) != len(k.labels):
                    probs.append(
                        Problem(
                            loc_k, f"{len(k.points)} points but {len(k.labels)} labels (lengths must match)"
                        )
                    )
                for li, lab in enumerate(k.labels):
                    if lab not in (0, 1):
                        probs.append(
                            Problem(
                                f"{loc_k}.labels[{li}]",
                                f"label must be 0 (negative) or 1 (positive), got {lab}",
                            )
                        )
                if size is not None:
                    h, w = size
                    for pi, (x, y) in enumerate(k.points):
                        if not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5):
                            probs.append(
                                Problem(
                                    f"{loc_k}.points[{pi}]", f"point ({x:g}, {y:g}) outside the {w}x{h} image"
                                )
                            )
                for bi, (x0, y0, x1, y1) in enumerate(k.boxes):
                    if not (x0 < x1 and y0 < y1):
                        probs.append(
                            Problem(
                                f"{loc_k}.boxes[{bi}]", f"box {[x0, y0, x1, y1]} needs x0 < x1 and y0 < y1"
                            )
                        )
                    elif size is not None:
                        h, w = size
                        if x0 < -0.5 or y0 < -0.5 or x1 > w - 0.5 or y1 > h - 0.5:
                            probs.append(
                                Problem(
                                    f"{loc_k}.boxes[{bi}]",
                                    f"box {[x0, y0, x1, y1]} outside the {w}x{h} image",
                                )
                            )
        # merging two masks for one frame is a problem too
        for oi, o in enumerate(self.objects):
            masks: dict[int, str] = {}
            for ki, k in enumerate(o.keyframes):
                if k.mask is None:
                    continue
                if k.frame in masks and masks[k.frame] != k.mask:
                    probs.append(
                        Problem(
                            f"objects[{oi}:{o.name}].keyframes[{ki}].mask", f"second mask for frame {k.frame}"
                        )
                    )
                masks[k.frame] = k.mask
        return probs

    def validate_for(
        self, *, num_frames: int | None, size: tuple[int, int] | None, path: str | Path | None = None
    ) -> PromptFile:
        """Raise one :class:`PromptError` listing every problem; return the merged prompts."""
        probs = self.problems(num_frames=num_frames, size=size)
        if probs:
            raise PromptError(f"{len(probs)} problem(s)", path=path, problems=probs)
        return self.merged()


def parse_prompts(
    data: object,
    *,
    path: str | Path | None = None,
    size: tuple[int, int] | None = None,
    num_frames: int | None = None,
) -> PromptFile:
    """Parse a decoded JSON document: the v1 format, or the legacy ``sam3.annotation_prompts.v1``.

    ``size`` (height, width) is needed only for legacy ``rel`` coordinates;
    with ``num_frames`` too, a legacy file's range problems come with its
    conversion problems in one report.
    """
    if isinstance(data, dict) and data.get("format", PROMPT_FORMAT) == PROMPT_FORMAT and "objects" in data:
        try:
            return PromptFile.model_validate(data)
        except ValidationError as e:
            raise PromptError("invalid prompt file", path=path, problems=pydantic_problems(e)) from None
    from masktrack.prompts.legacy import is_legacy, parse_legacy

    if is_legacy(data):
        return parse_legacy(data, path=path, size=size, num_frames=num_frames)
    fmt = data.get("format") if isinstance(data, dict) else None
    raise PromptError(
        f"unknown prompt format {fmt!r}; expected {PROMPT_FORMAT!r} v{PROMPT_VERSION} or 'sam3.annotation_prompts.v1'",
        path=path,
        field="format",
    )


def load_prompts(
    path: str | Path, *, size: tuple[int, int] | None = None, num_frames: int | None = None
) -> PromptFile:
    """Load a prompt file (either format). Mask paths become absolute; ``size`` as in :func:`parse_prompts`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptError("prompt file not found", path=path) from None
    except IsADirectoryError:
        raise PromptError(
            "this is a folder; give the prompt file itself (e.g. prompts.json)", path=path
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PromptError(f"not valid JSON ({e})", path=path) from None
    except RecursionError:
        raise PromptError("JSON nested too deeply; this is not a prompt file", path=path) from None
    pf = parse_prompts(data, path=path, size=size, num_frames=num_frames)
    for o in pf.objects:
        for k in o.keyframes:
            if k.mask is not None and not Path(k.mask).is_absolute():
                k.mask = str((path.parent / k.mask).resolve())
    return pf


def prompt_schema() -> dict:
    """The JSON Schema of the v1 format (``masktrack/prompts/schema.json``, shipped as package data)."""
    from importlib.resources import files

    return json.loads(files("masktrack.prompts").joinpath("schema.json").read_text(encoding="utf-8"))


def save_prompts(prompts: PromptFile, path: str | Path) -> None:
    """Write atomically in the v1 format."""
    atomic_write_json(path, prompts.model_dump(mode="json", exclude_none=True))

"""Import of the notebook format ``sam3.annotation_prompts.v1``.

The notebook files look like::

    {"format": "sam3.annotation_prompts.v1",
     "prompts": {"ARM_CABLE_INITIAL_PROMPTS": [entry, ...],
                 "ARM_CABLE_2_INITIAL_PROMPTS": [...],
                 "GRIPPER_LEFT_KEYFRAME_PROMPTS": [...],
                 "GRIPPER_RIGHT_KEYFRAME_PROMPTS": [...]}}

or the bare ``prompts`` map, with entries ``{"frame_index", "obj_id",
"coord_type": "abs"|"rel", "points": [[x, y], ...], "labels": [1|0, ...]}``.

Relative coordinates
    ``rel`` is a 0-1 fraction of width/height as SAM3 normalises them, so the
    import needs the video size: ``parse_legacy(data, size=(h, w))``
    converts to pixels ``x = rel_x * W``, ``y = rel_y * H`` (clamped to the
    last pixel so that 1.0 stays inside).  Without a size, a file with
    ``rel`` entries is refused with an error asking for the video
    (``masktrack prompts convert IN OUT --video V``).  Files with only
    ``abs`` entries import without one.

Name rule
    * Arm lists - ``ARM_CABLE_INITIAL_PROMPTS``, ``ARM_CABLE_2_INITIAL_PROMPTS``
      and the older ``ARM_LEFT_INITIAL_PROMPTS`` + ``ARM_RIGHT_INITIAL_PROMPTS``
      (concatenated into the arm list) - are grouped by ``obj_id``: the
      smallest obj_id becomes ``arm``, the next ``arm_2``, ``arm_3``...
    * ``GRIPPER_LEFT_*`` -> ``gripper_left``, ``GRIPPER_RIGHT_*`` ->
      ``gripper_right`` (a second obj_id in one list -> ``gripper_left_2``...).
    * Any other ``NAME_INITIAL_PROMPTS`` / ``NAME_KEYFRAME_PROMPTS`` /
      ``NAME_PROMPTS`` list -> ``name`` in lower case, same numbering.
    * masktrack ids are renumbered 1..N in that order (arm group first, then
      grippers, then the other lists in file order): the notebook ran each
      group in its own session, so its obj_ids repeat across groups.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from masktrack.errors import Problem, PromptError

LEGACY_FORMAT = "sam3.annotation_prompts.v1"

ARM_KEYS = (
    "ARM_CABLE_INITIAL_PROMPTS",
    "ARM_CABLE_2_INITIAL_PROMPTS",
    "ARM_LEFT_INITIAL_PROMPTS",
    "ARM_RIGHT_INITIAL_PROMPTS",
)
_ENTRY_KEYS = {"frame_index", "obj_id", "coord_type", "points", "labels"}
_SUFFIX = re.compile(r"_(INITIAL|KEYFRAME)?_?PROMPTS$")


def is_legacy(data: object) -> bool:
    if not isinstance(data, dict):
        return False
    if data.get("format") == LEGACY_FORMAT:
        return True
    return bool(data) and all(
        isinstance(k, str) and k.isupper() and isinstance(v, list) for k, v in data.items()
    )


def base_name(key: str) -> str:
    """Object base name of a legacy list key (see the module's name rule)."""
    if key in ARM_KEYS or key.startswith("ARM_"):
        return "arm"
    if key.startswith("GRIPPER_LEFT"):
        return "gripper_left"
    if key.startswith("GRIPPER_RIGHT"):
        return "gripper_right"
    return _SUFFIX.sub("", key).lower() or key.lower()


def _group_order(key: str) -> int:
    b = base_name(key)
    return 0 if b == "arm" else 1 if b == "gripper_left" else 2 if b == "gripper_right" else 3


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_entry(e: Any, loc: str, probs: list[Problem]) -> bool:
    if not isinstance(e, dict):
        probs.append(Problem(loc, f"entry must be an object, got {type(e).__name__}"))
        return False
    ok = True
    extra = set(e) - _ENTRY_KEYS
    if extra:
        probs.append(
            Problem(
                loc, f"unknown key(s) {', '.join(sorted(extra))} (expected {', '.join(sorted(_ENTRY_KEYS))})"
            )
        )
        ok = False
    for k in ("frame_index", "obj_id", "points", "labels"):
        if k not in e:
            probs.append(Problem(loc, f"missing {k!r}"))
            ok = False
    if "frame_index" in e and not (
        isinstance(e["frame_index"], int) and not isinstance(e["frame_index"], bool)
    ):
        probs.append(Problem(f"{loc}.frame_index", f"must be an integer, got {e['frame_index']!r}"))
        ok = False
    if "obj_id" in e and not (isinstance(e["obj_id"], int) and not isinstance(e["obj_id"], bool)):
        probs.append(Problem(f"{loc}.obj_id", f"must be an integer, got {e['obj_id']!r}"))
        ok = False
    ct = e.get("coord_type", "abs")
    if ct not in ("abs", "rel"):
        probs.append(Problem(f"{loc}.coord_type", f"must be 'abs' or 'rel', got {ct!r}"))
        ok = False
    pts = e.get("points", [])
    if not isinstance(pts, list):
        probs.append(Problem(f"{loc}.points", "must be a list of [x, y]"))
        ok = False
    else:
        for i, p in enumerate(pts):
            if not (isinstance(p, list | tuple) and len(p) == 2 and all(_is_num(c) for c in p)):
                probs.append(Problem(f"{loc}.points[{i}]", f"must be [x, y] numbers, got {p!r}"))
                ok = False
            elif ct == "rel" and not all(0.0 <= c <= 1.0 for c in p):
                probs.append(Problem(f"{loc}.points[{i}]", f"relative point {list(p)} outside 0..1"))
                ok = False
    labels = e.get("labels", [])
    if not isinstance(labels, list):
        probs.append(Problem(f"{loc}.labels", "must be a list of 0/1"))
        ok = False
    else:
        for i, lab in enumerate(labels):
            if lab not in (0, 1) or isinstance(lab, bool):
                probs.append(
                    Problem(f"{loc}.labels[{i}]", f"label must be 0 (negative) or 1 (positive), got {lab!r}")
                )
                ok = False
        if isinstance(pts, list) and len(pts) != len(labels):
            probs.append(Problem(loc, f"{len(pts)} points but {len(labels)} labels (lengths must match)"))
            ok = False
    return ok


def parse_legacy(
    data: object, *, path: str | Path | None = None, size: tuple[int, int] | None = None
):  # -> PromptFile
    """Convert a ``sam3.annotation_prompts.v1`` document (wrapped or bare) to a :class:`PromptFile`.

    ``size`` is the video's (height, width), needed only for ``rel`` entries.
    Every structural problem is reported at once, located as
    ``prompts.KEY[i].field``.  Entries are kept one keyframe each; merging of
    same-frame entries happens in ``PromptFile.merged``/``validate_for``.
    """
    from masktrack.prompts.model import Keyframe, ObjectPrompts, PromptFile

    if not isinstance(data, dict):
        raise PromptError("a legacy prompt file must be a JSON object", path=path)
    if "format" in data:
        if data["format"] != LEGACY_FORMAT:
            raise PromptError(f"unknown format {data['format']!r}", path=path, field="format")
        extra = set(data) - {"format", "prompts"}
        lists = data.get("prompts")
        prefix = "prompts."
        if not isinstance(lists, dict):
            raise PromptError("'prompts' must be a map of LIST_NAME -> [entries]", path=path, field="prompts")
        if extra:
            raise PromptError(
                f"unknown top-level key(s): {', '.join(sorted(extra))}", path=path, field=sorted(extra)[0]
            )
    else:
        lists, prefix = data, ""

    probs: list[Problem] = []
    rel_locs: list[str] = []
    # group -> obj_id -> [(loc, entry)]
    groups: dict[str, dict[int, list[tuple[str, dict]]]] = {}
    group_first: dict[str, int] = {}
    for pos, (key, entries) in enumerate(lists.items()):
        loc_l = f"{prefix}{key}"
        if not isinstance(entries, list):
            probs.append(Problem(loc_l, "must be a list of prompt entries"))
            continue
        g = base_name(key)
        group_first.setdefault(g, pos)
        for i, e in enumerate(entries):
            loc = f"{loc_l}[{i}]"
            if not _check_entry(e, loc, probs):
                continue
            if e.get("coord_type", "abs") == "rel":
                rel_locs.append(loc)
            groups.setdefault(g, {}).setdefault(e["obj_id"], []).append((loc, e))
    if rel_locs and size is None:
        probs.append(
            Problem(
                rel_locs[0],
                f"{len(rel_locs)} entries use relative coordinates: pass the video (--video) so they can become pixels",
            )
        )
    if probs:
        raise PromptError(f"{len(probs)} problem(s)", path=path, problems=probs)

    objects = []
    next_id = 1
    for g in sorted(
        groups, key=lambda g: (_group_order(next(k for k in lists if base_name(k) == g)), group_first[g])
    ):
        for n, obj_id in enumerate(sorted(groups[g])):
            name = g if n == 0 else f"{g}_{n + 1}"
            keyframes = [
                Keyframe(frame=e["frame_index"], points=_to_pixels(e, size), labels=list(e["labels"]))
                for _, e in groups[g][obj_id]
            ]
            objects.append(ObjectPrompts(name=name, id=next_id, keyframes=keyframes))
            next_id += 1
    return PromptFile(objects=objects)


def _to_pixels(e: dict, size: tuple[int, int] | None) -> list[tuple[float, float]]:
    pts = [(float(x), float(y)) for x, y in e["points"]]
    if e.get("coord_type", "abs") != "rel":
        return pts
    assert size is not None
    h, w = size
    return [(min(x * w, w - 1.0), min(y * h, h - 1.0)) for x, y in pts]

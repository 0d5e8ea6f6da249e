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

Writer metadata
    The notebook's writer always adds ``created_at_utc`` (ISO time) and
    ``stats`` (entry/point counts per list) next to ``format`` and
    ``prompts``; both are accepted and kept as the v1 file's ``provenance``
    (with the source format), other top-level keys are refused.  Like the
    original loader, a document with a ``prompts`` key is the wrapped form
    (``format`` may be absent); anything else is the bare map.

Precedence (as the original loader)
    When ``ARM_CABLE_INITIAL_PROMPTS`` is present, the old
    ``ARM_LEFT_INITIAL_PROMPTS``/``ARM_RIGHT_INITIAL_PROMPTS`` are ignored
    (listed in ``provenance.ignored_keys``); otherwise the old pair is
    concatenated (left first) into the main arm list.

Name rule (by key, never by obj_id order: the ids are the notebook's choice)
    * ``ARM_CABLE_INITIAL_PROMPTS`` (or the old pair) -> ``arm``,
      ``ARM_CABLE_2_INITIAL_PROMPTS`` -> ``arm_2``.
    * ``GRIPPER_LEFT_*`` -> ``gripper_left``, ``GRIPPER_RIGHT_*`` ->
      ``gripper_right``.
    * Any other ``NAME_INITIAL_PROMPTS`` / ``NAME_KEYFRAME_PROMPTS`` /
      ``NAME_PROMPTS`` list -> ``name`` in lower case.
    * A second obj_id inside one list gets the next free ``<name>_2``,
      ``<name>_3``... (obj_ids in ascending order within the list).
    * masktrack ids are renumbered 1..N in that order (arm, arm_2, other
      arm lists, grippers, then the other lists in file order): the
      notebook ran each group in its own session, so its obj_ids repeat
      across groups.

Problems
    Every problem is reported at once: structure, relative points outside
    0..1 and, when the video is known (``size``/``num_frames``), frame
    indices past the video and pixel points outside the image, each as
    ``prompts.KEY[i].field``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from masktrack.errors import Problem, PromptError

LEGACY_FORMAT = "sam3.annotation_prompts.v1"

MAIN_ARM_KEY = "ARM_CABLE_INITIAL_PROMPTS"
OLD_ARM_KEYS = ("ARM_LEFT_INITIAL_PROMPTS", "ARM_RIGHT_INITIAL_PROMPTS")
ARM_KEYS = (MAIN_ARM_KEY, "ARM_CABLE_2_INITIAL_PROMPTS", *OLD_ARM_KEYS)
#: top-level keys the notebook's writer puts next to ``format`` and ``prompts``
METADATA_KEYS = ("created_at_utc", "stats")
_ENTRY_KEYS = {"frame_index", "obj_id", "coord_type", "points", "labels"}
_SUFFIX = re.compile(r"_(INITIAL|KEYFRAME)?_?PROMPTS$")


def is_legacy(data: object) -> bool:
    if not isinstance(data, dict):
        return False
    if data.get("format") == LEGACY_FORMAT:
        return True
    if "format" not in data and isinstance(data.get("prompts"), dict):
        return True  # the original loader takes any document with a "prompts" map
    return bool(data) and all(
        isinstance(k, str) and k.isupper() and isinstance(v, list) for k, v in data.items()
    )


def base_name(key: str) -> str:
    """Object name of a legacy list key (see the module's name rule)."""
    if key == "ARM_CABLE_2_INITIAL_PROMPTS":
        return "arm_2"
    if key in ARM_KEYS:
        return "arm"
    if key.startswith("ARM_"):
        return _SUFFIX.sub("", key).lower().replace("arm_cable", "arm") or "arm"
    if key.startswith("GRIPPER_LEFT"):
        return "gripper_left"
    if key.startswith("GRIPPER_RIGHT"):
        return "gripper_right"
    return _SUFFIX.sub("", key).lower() or key.lower()


def _group_order(name: str) -> int:
    if name == "arm":
        return 0
    if name == "arm_2":
        return 1
    if name.startswith("arm"):
        return 2
    return 3 if name == "gripper_left" else 4 if name == "gripper_right" else 5


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_entry(
    e: Any,
    loc: str,
    probs: list[Problem],
    num_frames: int | None = None,
    size: tuple[int, int] | None = None,
) -> bool:
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
    elif "frame_index" in e and (
        e["frame_index"] < 0 or (num_frames is not None and e["frame_index"] >= num_frames)
    ):
        rng = f"[0, {num_frames - 1}]" if num_frames is not None else ">= 0"
        probs.append(Problem(f"{loc}.frame_index", f"frame {e['frame_index']} out of range {rng}"))
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
            elif ct == "abs" and size is not None:
                h, w = size
                if not (-0.5 <= p[0] <= w - 0.5 and -0.5 <= p[1] <= h - 0.5):
                    probs.append(
                        Problem(f"{loc}.points[{i}]", f"point ({p[0]:g}, {p[1]:g}) outside the {w}x{h} image")
                    )
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
    data: object,
    *,
    path: str | Path | None = None,
    size: tuple[int, int] | None = None,
    num_frames: int | None = None,
):  # -> PromptFile
    """Convert a ``sam3.annotation_prompts.v1`` document (wrapped or bare) to a :class:`PromptFile`.

    ``size`` is the video's (height, width), needed only for ``rel`` entries;
    with ``size``/``num_frames`` the entries are also checked against the
    video here, so that one run reports conversion and range problems
    together.  Every problem is reported at once, located as
    ``prompts.KEY[i].field``.  Entries are kept one keyframe each; merging of
    same-frame entries happens in ``PromptFile.merged``/``validate_for``.
    """
    from masktrack.prompts.model import Keyframe, ObjectPrompts, PromptFile

    if not isinstance(data, dict):
        raise PromptError("a legacy prompt file must be a JSON object", path=path)
    probs: list[Problem] = []
    provenance: dict[str, Any] = {"format": LEGACY_FORMAT}
    if "format" in data or "prompts" in data:
        if data.get("format", LEGACY_FORMAT) != LEGACY_FORMAT:
            probs.append(Problem("format", f"unknown format {data['format']!r} (expected {LEGACY_FORMAT!r})"))
        extra = set(data) - {"format", "prompts", *METADATA_KEYS}
        if extra:
            probs.append(
                Problem(
                    sorted(extra)[0],
                    f"unknown top-level key(s): {', '.join(sorted(extra))} "
                    f"(expected format, prompts, {', '.join(METADATA_KEYS)})",
                )
            )
        for k in METADATA_KEYS:
            if k in data:
                provenance[k] = data[k]
        lists = data.get("prompts")
        prefix = "prompts."
        if not isinstance(lists, dict):
            probs.append(Problem("prompts", "must be a map of LIST_NAME -> [entries]"))
            raise PromptError(f"{len(probs)} problem(s)", path=path, problems=probs)
    else:
        lists, prefix = data, ""

    ignored = [k for k in OLD_ARM_KEYS if k in lists] if MAIN_ARM_KEY in lists else []
    if ignored:
        provenance["ignored_keys"] = ignored  # the original loader prefers the new arm key too
    rel_locs: list[str] = []
    # object base name -> obj_id -> [(loc, entry)]
    groups: dict[str, dict[int, list[tuple[str, dict]]]] = {}
    group_first: dict[str, int] = {}
    for pos, (key, entries) in enumerate(lists.items()):
        if key in ignored:
            continue
        loc_l = f"{prefix}{key}"
        if not isinstance(entries, list):
            probs.append(Problem(loc_l, "must be a list of prompt entries"))
            continue
        g = base_name(key)
        group_first.setdefault(g, pos)
        for i, e in enumerate(entries):
            loc = f"{loc_l}[{i}]"
            if not _check_entry(e, loc, probs, num_frames=num_frames, size=size):
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

    # names by key first, then a second obj_id inside one list takes the next free <name>_N
    order = sorted(groups, key=lambda g: (_group_order(g), group_first[g]))
    taken = set(order)
    objects: list[ObjectPrompts] = []
    for g in order:
        for n, obj_id in enumerate(sorted(groups[g])):
            name = g
            if n > 0:
                suffix = 2
                while f"{g}_{suffix}" in taken:
                    suffix += 1
                name = f"{g}_{suffix}"
                taken.add(name)
            keyframes = [
                Keyframe(frame=e["frame_index"], points=_to_pixels(e, size), labels=list(e["labels"]))
                for _, e in groups[g][obj_id]
            ]
            objects.append(ObjectPrompts(name=name, id=len(objects) + 1, keyframes=keyframes))
    return PromptFile(objects=objects, provenance=provenance)


def _to_pixels(e: dict, size: tuple[int, int] | None) -> list[tuple[float, float]]:
    pts = [(float(x), float(y)) for x, y in e["points"]]
    if e.get("coord_type", "abs") != "rel":
        return pts
    assert size is not None
    h, w = size
    return [(min(x * w, w - 1.0), min(y * h, h - 1.0)) for x, y in pts]

"""Plausibility checks that are warnings, not errors: the page shows them while clicking.

The left/right swap is the classic annotation slip on two-finger grippers: the
``gripper_left`` clicks land on the right finger.  "Left" is the image's left
here (the camera view the annotator sees); a rig where the robot's left finger
appears on the image's right simply ignores the warning.  ``app.js`` applies
the same rule live; keep the two in step.
"""

from __future__ import annotations

import re

from masktrack.errors import Problem
from masktrack.prompts.model import PromptFile

_TOKEN_SPLIT = re.compile(r"[^a-z]+")


def object_side(name: str) -> str | None:
    """``"left"``/``"right"`` when a word of the name says so (``gripper_left``, ``left-finger``), else None.

    Whole words only, so ``bright_cup`` or ``upright`` are no side.
    """
    words = set(_TOKEN_SPLIT.split(name.lower()))
    if "left" in words and "right" not in words:
        return "left"
    if "right" in words and "left" not in words:
        return "right"
    return None


def side_warnings(prompts: PromptFile, width: int) -> list[Problem]:
    """One warning per keyframe whose positive clicks lie mostly on the other half of the image.

    Positive points and box centres count; negative points do not (a negative
    click on the other finger is exactly what they are for).
    """
    out: list[Problem] = []
    mid = (width - 1) / 2.0
    for o in prompts.objects:
        side = object_side(o.name)
        if side is None:
            continue
        for k in o.keyframes:
            xs = [x for (x, _), lab in zip(k.points, k.labels) if lab == 1]
            xs += [(b[0] + b[2]) / 2.0 for b in k.boxes]
            if not xs:
                continue
            wrong = sum(1 for x in xs if (x > mid if side == "left" else x < mid))
            if wrong * 2 > len(xs):
                other = "right" if side == "left" else "left"
                out.append(
                    Problem(
                        f"objects[{o.name}].frame[{k.frame}]",
                        f"{wrong} of {len(xs)} positive prompts of {o.name!r} lie in the {other} half of the image "
                        f"(left/right swapped?)",
                    )
                )
    return out

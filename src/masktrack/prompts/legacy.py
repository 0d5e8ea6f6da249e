"""Import of the notebook format ``sam3.annotation_prompts.v1`` (to be completed in the Core issue)."""

from __future__ import annotations

from pathlib import Path

from masktrack.errors import PromptError

LEGACY_FORMAT = "sam3.annotation_prompts.v1"


def is_legacy(data: object) -> bool:
    if not isinstance(data, dict):
        return False
    if data.get("format") == LEGACY_FORMAT:
        return True
    return bool(data) and all(isinstance(k, str) and k.isupper() and isinstance(v, list) for k, v in data.items())


def parse_legacy(data: object, *, path: str | Path | None = None):  # -> PromptFile
    raise PromptError("legacy import not implemented yet", path=path)

"""Prompt files: the clicks, boxes and masks people give per object and keyframe."""

from masktrack.prompts.model import (
    PROMPT_FORMAT,
    PROMPT_VERSION,
    Keyframe,
    ObjectPrompts,
    PromptFile,
    load_prompts,
    parse_prompts,
    prompt_schema,
    save_prompts,
)

__all__ = [
    "PROMPT_FORMAT",
    "PROMPT_VERSION",
    "Keyframe",
    "ObjectPrompts",
    "PromptFile",
    "load_prompts",
    "parse_prompts",
    "prompt_schema",
    "save_prompts",
]

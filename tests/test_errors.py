"""The one pydantic-errors-to-problems path: every file format and option model names fields alike."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from masktrack.errors import location, pydantic_problems


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int


class _Doc(BaseModel):
    items: list[_Item]


def test_location_brackets_indices_and_dots_fields() -> None:
    assert location(["sessions", 0, "objects", 1]) == "sessions[0].objects[1]"
    assert location([2, "x"], "pipeline") == "pipeline[2].x"
    assert location(["band"], "options") == "options.band"


def test_pydantic_problems_every_error_with_its_location() -> None:
    with pytest.raises(ValidationError) as e:
        _Doc.model_validate({"items": [{"n": 1}, {"n": "x"}, {"n": 2, "extra": 1}]})
    probs = pydantic_problems(e.value, "job")
    assert [p.location for p in probs] == ["job.items[1].n", "job.items[2].extra"]
    assert all(p.message for p in probs)
    custom = pydantic_problems(e.value, message=lambda err: err["type"])
    assert [p.message for p in custom] == ["int_parsing", "extra_forbidden"]

"""The resumable-artifact layer: one manifest shape and one status vocabulary for every stage.

Every stage output (a session's mask frames, a composed PNG folder, an instance's tracks, the Rerun
recordings, a synthetic scene, a batch unit) follows the same rule:

1. Compute the **key** of the run: a hash of the inputs' *content* (never their paths or
   timestamps), the options and the format version.  Derived inputs (queries, masks written by an
   earlier stage) are keyed by the bytes they hold, so editing one invalidates what depends on it.
2. If the stored manifest is ``complete``, has the same key, and every output it lists still has the
   recorded **size and content hash**, reuse it (:attr:`Status.REUSED`).  An output that fails the
   check is recomputed - only it, where the stage can do that - and the stage says so
   (:attr:`Status.REPAIRED`).  Nothing that does not verify is trusted.
3. Otherwise write the manifest with ``complete: false`` first, write the outputs atomically, and
   write the manifest with ``complete: true`` and the outputs' sizes and hashes **last**: a SIGKILL
   at any moment leaves a manifest that the next run does not trust.

The content hash is BLAKE2b-128 of the file's bytes: cheap next to writing the file (hundreds of
MB/s), and it catches truncation, bit flips and a file swapped for another.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from masktrack.io.atomic import atomic_write_json

TOOL_VERSION = "0.1.0"  # masktrack.__version__, kept here so io does not import the package facade
MANIFEST_FORMAT = "masktrack.manifest"


class Status(StrEnum):
    """What a stage did with one output (the one vocabulary of segment, compose, track, demo, batch).

    ``SKIPPED`` means "not run because of a problem with its input" (never "up to date": that is
    ``REUSED``).
    """

    COMPUTED = "computed"
    REUSED = "reused"
    REPAIRED = "repaired"
    SKIPPED = "skipped"
    FAILED = "failed"


def content_hash(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 of a file's bytes (hex): the cheap content hash of manifests."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def bytes_hash(data: bytes) -> str:
    """BLAKE2b-128 of ``data`` (hex), for outputs hashed before they are written."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class OutputEntry(BaseModel):
    """One output file: its size and content hash when it was written."""

    model_config = ConfigDict(extra="forbid")

    size: int
    blake2b: str


def entry_for(path: str | os.PathLike[str]) -> OutputEntry:
    """The entry of an existing file (size + hash of its current bytes)."""
    p = Path(path)
    return OutputEntry(size=p.stat().st_size, blake2b=content_hash(p))


def entry_for_bytes(data: bytes) -> OutputEntry:
    return OutputEntry(size=len(data), blake2b=bytes_hash(data))


def verify_entry(path: str | os.PathLike[str], entry: OutputEntry) -> bool:
    """True if ``path`` exists with the recorded size and hash (size first: it costs a stat)."""
    try:
        if os.stat(path).st_size != entry.size:
            return False
        return content_hash(path) == entry.blake2b
    except OSError:
        return False


class Manifest(BaseModel):
    """A stage output's manifest: what it was computed from, what it holds, whether it is complete.

    ``outputs`` maps paths relative to ``root`` (the folder the manifest describes) to their entries.
    Stages keep their own extra fields (``extra="allow"``) for what they report (stats, names).
    """

    model_config = ConfigDict(extra="allow")

    format: str = MANIFEST_FORMAT
    stage: str
    key: str | None
    inputs: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    tool_version: str = TOOL_VERSION
    outputs: dict[str, OutputEntry] = Field(default_factory=dict)
    complete: bool = False


def read_manifest(path: str | os.PathLike[str], stage: str) -> Manifest | None:
    """The manifest at ``path`` if it is one of ``stage``; None if absent, unreadable or foreign.

    A file in an older layout (no ``format`` field) is not an error here: the stage decides whether
    it can read it (:func:`legacy_layout`) or recomputes, saying so.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        m = Manifest.model_validate_json(text)
    except ValidationError:
        return None
    return m if m.stage == stage and m.format == MANIFEST_FORMAT else None


def legacy_layout(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` holds a JSON manifest written before this layer (no ``format`` field)."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "format" not in data


def damaged_outputs(
    root: str | os.PathLike[str], manifest: Manifest, names: Iterable[str] | None = None
) -> list[str]:
    """Outputs (relative names) that are missing or do not match their recorded size and hash."""
    root = Path(root)
    wanted = (
        manifest.outputs
        if names is None
        else {n: manifest.outputs[n] for n in names if n in manifest.outputs}
    )
    return [name for name, entry in wanted.items() if not verify_entry(root / name, entry)]


def is_current(root: str | os.PathLike[str], manifest: Manifest | None, key: str) -> bool:
    """Complete, computed for ``key``, and every output verifies."""
    return (
        manifest is not None
        and manifest.complete
        and manifest.key == key
        and not damaged_outputs(root, manifest)
    )


def is_complete(manifest: BaseModel | Mapping[str, Any] | None) -> bool:
    """Whether a manifest is marked complete: a typed one, or a decoded dict (a stage's own or one of
    the previous layout).  The one reader of the flag, as :func:`begin`/:func:`finish` are its writers."""
    if manifest is None:
        return False
    if isinstance(manifest, Mapping):
        return bool(manifest.get("complete"))
    return bool(getattr(manifest, "complete", False))


_M = TypeVar("_M", bound=BaseModel)


def begin(path: str | os.PathLike[str], manifest: _M) -> _M:
    """Mark the output as being (re)computed: written before any output file."""
    m = manifest.model_copy(update={"complete": False})
    atomic_write_json(path, m.model_dump(mode="json"))
    return m


def finish(
    path: str | os.PathLike[str], manifest: _M, outputs: Mapping[str, OutputEntry], **fields: Any
) -> _M:
    """Record the outputs' entries and mark the manifest complete: the last write of a stage."""
    m = manifest.model_copy(update={"outputs": dict(outputs), "complete": True, **fields})
    atomic_write_json(path, m.model_dump(mode="json"))
    return m


def begin_fields(path: str | os.PathLike[str], fields: Mapping[str, Any]) -> None:
    """:func:`begin` for a stage that keeps its manifest as a plain dict (fields in their order)."""
    atomic_write_json(path, {**fields, "complete": False})


def finish_fields(path: str | os.PathLike[str], fields: Mapping[str, Any]) -> None:
    """:func:`finish` for a stage that keeps its manifest as a plain dict (outputs among ``fields``)."""
    atomic_write_json(path, {**fields, "complete": True})

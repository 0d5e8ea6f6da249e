"""The segmentation backend interface.

Following SAM2, the *backend* (model weights, frame/feature caches - state
that is a pure function of the frames) is separate from the *session*
(temporal state: memory bank, object pointers, object ids).  The runner opens
one session per configured session and closes it before the next starts;
sessions of one backend never share temporal state.

Life cycle::

    backend = load_backend("classic", **options)
    with backend.open_session(video, objects) as session:
        session.add_prompt(FramePrompt(frame=0, object="arm", points=..., labels=...))
        for frame, masks in session.propagate(0, reverse=False):
            ...  # masks: {object name: bool [H, W]}
    backend.close()

Constructing a backend must be cheap (load weights lazily, on the first
``open_session``): the runner instantiates every configured backend before
it writes anything, to check options and compute ``fingerprint()`` for the
manifest key, even when every session turns out to be reused.

Object ids are per session: ``SessionObject.id`` is the id within this
session only.  Backends that detect objects from text map their own ids to
the session's named objects with :func:`assign_detections`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from masktrack.errors import BackendError
from masktrack.io.video import VideoSource
from masktrack.plugins import PluginOptions

Color = tuple[int, int, int]
FrameMasks = dict[str, np.ndarray]
"""Masks of one frame: object name -> bool [H, W]."""


@dataclass(frozen=True)
class SessionObject:
    """An object tracked in one session: its name, per-session id and display colour."""

    name: str
    id: int
    color: Color


@dataclass(frozen=True)
class FramePrompt:
    """Prompts for one object on one frame, in pixel coordinates of the video.

    ``points`` float32 [N, 2] as (x, y); ``labels`` int [N] (1 positive, 0
    negative); ``boxes`` float32 [M, 4] as (x0, y0, x1, y1); ``mask`` bool
    [H, W] or None.
    """

    frame: int
    object: str
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class TextPrompt:
    """A text prompt ("robot and cable") applied on one frame to the whole session."""

    frame: int
    text: str


@dataclass(frozen=True)
class Detection:
    """An object a backend found from a text prompt, in the backend's own ids."""

    backend_id: int
    score: float
    area: int = 0


class Session(ABC):
    """Temporal segmentation state for one group of objects on one video."""

    video: VideoSource
    objects: tuple[SessionObject, ...]
    dropped_detections: int = 0
    """Text detections beyond the session's objects (see :func:`assign_detections`); reported by the runner."""

    @abstractmethod
    def add_prompt(self, prompt: FramePrompt) -> None:
        """Add clicks/boxes/mask for one object on one frame."""

    def add_text(self, prompt: TextPrompt) -> None:
        """Add a text prompt; backends without text support refuse with the list of those that have it."""
        from masktrack.segment.registry import text_backends

        raise BackendError(
            f"backend {type(self).__name__} does not support text prompts; use one of: {', '.join(text_backends())}",
            field="text",
        )

    @abstractmethod
    def propagate(self, start_frame: int, *, reverse: bool = False) -> Iterator[tuple[int, FrameMasks]]:
        """Yield ``(frame, masks)`` from ``start_frame`` forward (or backward) to the video's end (or start).

        Every session object appears in every yielded dict (an all-False mask
        when the object is not visible).  Propagation may be called twice (once
        per direction) after the prompts were added.
        """

    @abstractmethod
    def close(self) -> None:
        """Free everything this session holds (GPU memory included)."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend(ABC):
    """A loaded model plus caches that are pure functions of the frames (shareable across sessions)."""

    name: ClassVar[str]
    supports_text: ClassVar[bool] = False
    supports_points: ClassVar[bool] = True
    #: the typed ``options:`` of a config session (validated by the registry before construction)
    Options: ClassVar[type[PluginOptions] | None] = None

    @abstractmethod
    def open_session(self, video: VideoSource, objects: Sequence[SessionObject]) -> Session:
        """Start a session with zero temporal state."""

    def fingerprint(self) -> dict:
        """What identifies this backend's outputs in a manifest (name, version, weights hash...)."""
        return {"backend": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model and caches."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def assign_detections(detections: Sequence[Detection], objects: Sequence[SessionObject]) -> dict[int, str]:
    """Map backend detection ids to session object names.

    The documented rule: detections are ordered by descending score (ties:
    larger area, then smaller backend id) and assigned to the session's
    objects in the order the config lists them.  Detections beyond the
    number of objects are not tracked (the runner reports how many were
    dropped).  Because the result maps onto the session's own names, a
    backend id can never collide with another session's objects.
    """
    order = sorted(detections, key=lambda d: (-d.score, -d.area, d.backend_id))
    return {d.backend_id: o.name for d, o in zip(order, objects)}

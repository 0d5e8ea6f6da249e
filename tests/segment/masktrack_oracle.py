"""A deterministic test backend ("oracle") and a synthetic colour-square video.

The oracle segments by colour: a prompt on frame p samples the colours under
the object's positive points (box centres, mask pixels); on frame f a pass
uses the object's nearest prompt *behind f in its direction of travel* among
the frames it has passed, marks the pixels within ``tolerance`` of those
colours, and erodes the result by ``drift * |f - p|`` pixels (a tracker that
degrades with distance from its prompt).  So which pass produced a frame's
mask is observable: by its colour when an object changes colour, and by its
area when ``drift > 0``.

Text prompts name colours ("red and blue"): each colour word is a detection
scored by its pixel share on the text frame, mapped to the session's objects
with ``assign_detections``.  ``delay`` sleeps per yielded frame (for the
SIGKILL resume test).  Loaded in-process by the conftest fixtures, and in
subprocesses through ``MASKTRACK_PLUGINS=masktrack_oracle_plugin``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from masktrack.io.video import VideoSource
from masktrack.segment.base import (
    Backend,
    Detection,
    FramePrompt,
    Session,
    SessionObject,
    TextPrompt,
    assign_detections,
)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 220),
    "yellow": (230, 220, 30),
    "magenta": (220, 30, 220),
}
BACKGROUND = (128, 128, 128)


class OracleBackend(Backend):
    name = "oracle"
    supports_text = True
    instances: list[OracleBackend] = []  # every backend built in this process (tests inspect it)

    def __init__(self, tolerance: int = 40, delay: float = 0.0, drift: int = 0) -> None:
        self.tolerance = tolerance
        self.delay = delay
        self.drift = drift
        self.frames: dict[int, np.ndarray] = {}  # shared per-frame "features": a pure function of the frames
        self.log: list[tuple] = []
        self.open_sessions = 0
        self.closed = False
        OracleBackend.instances.append(self)

    def open_session(self, video: VideoSource, objects: Sequence[SessionObject]) -> Session:
        assert self.open_sessions == 0, "a session was opened before the previous one closed"
        self.open_sessions += 1
        self.log.append(("open", tuple(o.name for o in objects)))
        return OracleSession(self, video, objects)

    def frame(self, video: VideoSource, f: int) -> np.ndarray:
        if f not in self.frames:
            self.frames[f] = video.read(f).astype(np.int16)
        return self.frames[f]

    def fingerprint(self) -> dict:
        return {"backend": "oracle", "version": 1}

    def close(self) -> None:
        self.closed = True
        self.frames.clear()
        self.log.append(("close-backend",))


class OracleSession(Session):
    def __init__(self, backend: OracleBackend, video: VideoSource, objects: Sequence[SessionObject]) -> None:
        self.backend = backend
        self.video = video
        self.objects = tuple(objects)
        self.colours: dict[str, dict[int, list[np.ndarray]]] = {o.name: {} for o in objects}
        self.dropped_detections = 0
        self.closed = False

    def _add_colours(self, name: str, frame: int, cols: list[np.ndarray]) -> None:
        self.colours[name].setdefault(frame, []).extend(cols)

    def add_prompt(self, prompt: FramePrompt) -> None:
        img = self.backend.frame(self.video, prompt.frame)
        cols = []
        for (x, y), lab in zip(prompt.points, prompt.labels):
            if lab == 1:
                cols.append(img[int(round(y)), int(round(x))])
        for x0, y0, x1, y1 in prompt.boxes:
            cols.append(img[int((y0 + y1) / 2), int((x0 + x1) / 2)])
        if prompt.mask is not None and prompt.mask.any():
            cols.append(np.median(img[prompt.mask], axis=0).astype(np.int16))
        self._add_colours(prompt.object, prompt.frame, cols)

    def add_text(self, prompt: TextPrompt) -> None:
        img = self.backend.frame(self.video, prompt.frame)
        words = [w for w in prompt.text.lower().replace(",", " ").split() if w in COLOURS]
        dets, cols = [], {}
        for i, w in enumerate(words):
            c = np.asarray(COLOURS[w], np.int16)
            area = int(self._match(img, [c]).sum())
            dets.append(Detection(backend_id=i, score=area / img[..., 0].size, area=area))
            cols[i] = c
        mapping = assign_detections(dets, self.objects)
        self.dropped_detections = len(dets) - len(mapping)
        for bid, name in mapping.items():
            self._add_colours(name, prompt.frame, [cols[bid]])

    def _match(self, img: np.ndarray, cols: list[np.ndarray]) -> np.ndarray:
        m = np.zeros(img.shape[:2], bool)
        for c in cols:
            m |= np.abs(img - c).max(axis=-1) <= self.backend.tolerance
        return m

    def propagate(
        self, start_frame: int, *, reverse: bool = False
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        assert not self.closed
        self.backend.log.append(("propagate", start_frame, reverse))
        step = -1 if reverse else 1
        stop = -1 if reverse else self.video.num_frames
        for f in range(start_frame, stop, step):
            img = self.backend.frame(self.video, f)
            out = {}
            for o in self.objects:
                seen = [
                    p
                    for p in self.colours[o.name]
                    if (f <= p <= start_frame if reverse else start_frame <= p <= f)
                ]
                if not seen:
                    out[o.name] = np.zeros(img.shape[:2], bool)
                    continue
                p = min(seen) if reverse else max(seen)
                m = self._match(img, self.colours[o.name][p])
                d = abs(f - p) * self.backend.drift
                if d:
                    m = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=d).astype(bool)
                out[o.name] = m
            if self.backend.delay:
                time.sleep(self.backend.delay)
            yield f, out

    def close(self) -> None:
        self.closed = True
        self.colours.clear()
        self.backend.open_sessions -= 1
        self.backend.log.append(("close",))


def square_position(t: int, k: int) -> tuple[int, int]:
    """Top-left (x, y) of square k on frame t."""
    return 6 + t + 20 * k, 8 + (t % 5) + (k % 2) * 16


def make_colour_video(
    folder: Path,
    *,
    frames: int = 16,
    size: tuple[int, int] = (56, 96),
    squares: Sequence[tuple[str, str, int, int]] = (
        ("red", "red", 99, 14),
        ("blue", "blue", 99, 10),
        ("cham", "green", 7, 12),
    ),
) -> Path:
    """PNG frames: squares (name, colour, switch frame, side) moving right; at frame >= switch a square turns yellow."""
    h, w = size
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        img = np.zeros((h, w, 3), np.uint8)
        img[:] = BACKGROUND
        for k, (_name, colour, switch, side) in enumerate(squares):
            x, y = square_position(t, k)
            img[y : y + side, x : x + side] = COLOURS["yellow" if t >= switch else colour]
        cv2.imwrite(str(folder / f"{t:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return folder


def point_on(t: int, k: int, side: int) -> list[float]:
    """A pixel inside square k on frame t, as [x, y]."""
    x, y = square_position(t, k)
    return [float(x + side // 2), float(y + side // 2)]


# --------------------------------------------------------------------------- jobs on the colour video

SQUARES = {"red": (0, 14), "blue": (1, 10), "cham": (2, 12)}  # name -> (square index, side)


def kf(name: str, frame: int, *, label: int = 1) -> dict:
    """A keyframe clicking the centre of square ``name`` on ``frame``."""
    k, side = SQUARES[name]
    return {"frame": frame, "points": [point_on(frame, k, side)], "labels": [label]}


def square_mask(name: str, frame: int, size: tuple[int, int] = (56, 96)) -> np.ndarray:
    k, side = SQUARES[name]
    x, y = square_position(frame, k)
    m = np.zeros(size, bool)
    m[y : y + side, x : x + side] = True
    return m


def write_job(
    folder: Path,
    sessions: list[dict],
    objects: dict[str, list[dict]] | None = None,
    *,
    video: str = "frames",
    output: str = "out",
) -> Path:
    """Write prompts.json (objects: name -> keyframes, ids 1..N) and job.yaml; returns the config path."""
    import json

    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    doc: dict = {"video": video, "output": output, "sessions": sessions}
    if objects is not None:
        pf = {
            "format": "masktrack.prompts",
            "version": 1,
            "objects": [
                {"name": n, "id": i + 1, "keyframes": kfs} for i, (n, kfs) in enumerate(objects.items())
            ],
        }
        (folder / "prompts.json").write_text(json.dumps(pf, indent=1))
        doc["prompts"] = "prompts.json"
    p = folder / "job.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p

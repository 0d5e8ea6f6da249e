"""``classic``: the weight-free default backend (OpenCV only: GrabCut + DIS optical flow).

How a session segments a video:

1. **Keyframes.** Each object's prompts on a frame (clicks, boxes, a mask)
   are turned into a mask with GrabCut seeded by them
   (:func:`~masktrack.segment.classic_ops.segment_keyframe`).
2. **Propagation.** From frame to frame the previous masks are pulled along
   dense optical flow (OpenCV DIS, computed once per frame pair and shared by
   all objects), then each object is re-segmented with GrabCut in a band
   around its warped boundary, so colour and edges pull the mask back onto
   the object instead of letting flow errors accumulate.  GrabCut's
   smoothness shaves thin parts a little every frame; a keyframe-anchored
   colour model of the object, combined with the warped location (less
   certain where forward and backward flow disagree), gives those pixels
   back, so masks do not shrink away.
3. **Recovery.** An occluder crossing the object (a pole, an arm) cuts
   pieces off that flow never brings back; when the area falls well below
   its running value, the object is re-detected with GrabCut seeded by its
   colour model in its last good box, moved with it.
4. **Re-anchoring.** A frame with prompts for an object replaces the
   propagated mask with the keyframe mask, in either direction.
5. **One owner per pixel.** Where objects overlap, the pixel goes to the
   object whose warped mask was most confident there (a prompted keyframe
   beats propagation).

All work happens at a working resolution (longest side ``max_side``) and
masks are upscaled back; a mask prompt is returned exactly on its own frame.
Text prompts are refused with the list of backends that take them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import Field

from masktrack.errors import BackendError, PromptError
from masktrack.io.video import VideoSource
from masktrack.plugins import options_from_dataclass
from masktrack.segment.base import Backend, FrameMasks, FramePrompt, Session, SessionObject

VERSION = 3


@dataclass(frozen=True)
class ClassicOptions:
    """Options of the classic backend (config ``options:``)."""

    flow: str = "medium"
    """DIS optical-flow preset: ``ultrafast``, ``fast`` or ``medium`` (best; ~20 ms per pair at 480x270)."""
    max_side: int = 480
    """Working resolution: frames are downscaled so the longer side is at most this (0 = full size)."""
    refine: bool = True
    """Re-segment every frame around the warped mask (False: flow warping only)."""
    band: float = 0.1
    """Width of the GrabCut band around the warped boundary, as a fraction of the object's equivalent radius."""
    iterations: int = 2
    """GrabCut iterations per propagated frame."""
    sigma: float = 2.0
    """Uncertainty of the warped boundary in working-resolution pixels, for the location term of the colour posterior."""
    colour_weight: float = 1.0
    """Weight of the colour log-odds against location in that posterior."""
    rescue: float = 1.0
    """Warped pixels GrabCut dropped are kept where the posterior's log-odds exceed this (0 = off)."""
    fb_check: bool = True
    """Forward-backward flow check: where the two flows disagree (occlusions), the warped boundary is less certain."""
    recover: float = 0.75
    """Re-detect an object whose area falls below this fraction of its running area (0 = off)."""
    keyframe_iterations: int = 5
    """GrabCut iterations on a prompted frame."""


# The config's `options:` as a typed model (masktrack.plugins): same names and defaults, bounds here.
CLASSIC_OPTIONS = options_from_dataclass(
    ClassicOptions,
    "ClassicOptionsModel",
    flow=Literal["ultrafast", "fast", "medium"],
    max_side=Field(ge=0),
    band=Field(gt=0, le=1),
    iterations=Field(ge=0),
    sigma=Field(gt=0),
    colour_weight=Field(gt=0),
    rescue=Field(ge=0),
    recover=Field(ge=0, lt=1),
    keyframe_iterations=Field(ge=0),
)


class ClassicBackend(Backend):
    """GrabCut on keyframes + DIS optical flow with GrabCut re-segmentation in between. No weights, CPU only."""

    name = "classic"
    supports_text = False
    supports_points = True
    Options = CLASSIC_OPTIONS

    def __init__(self, **options: object) -> None:
        try:
            self.options = ClassicOptions(**options)  # type: ignore[arg-type]
        except TypeError as e:
            raise BackendError(f"bad option for backend 'classic': {e}", field="options") from None
        from masktrack.segment.classic_ops import FLOW_PRESETS

        o = self.options
        if o.flow not in FLOW_PRESETS:
            raise BackendError(
                f"flow must be one of {', '.join(FLOW_PRESETS)}, got {o.flow!r}", field="options.flow"
            )
        if not isinstance(o.max_side, int) or o.max_side < 0:
            raise BackendError(
                f"max_side must be an integer >= 0, got {o.max_side!r}", field="options.max_side"
            )
        if not 0 < float(o.band) <= 1:
            raise BackendError(f"band must be in (0, 1], got {o.band!r}", field="options.band")
        for k in ("sigma", "colour_weight"):
            v = getattr(o, k)
            if not isinstance(v, (int, float)) or not v > 0:
                raise BackendError(f"{k} must be a number > 0, got {v!r}", field=f"options.{k}")
        if not isinstance(o.rescue, (int, float)) or o.rescue < 0:
            raise BackendError(f"rescue must be a number >= 0, got {o.rescue!r}", field="options.rescue")
        if not isinstance(o.recover, (int, float)) or not 0 <= o.recover < 1:
            raise BackendError(f"recover must be in [0, 1), got {o.recover!r}", field="options.recover")
        for k in ("iterations", "keyframe_iterations"):
            v = getattr(o, k)
            if not isinstance(v, int) or v < 0:
                raise BackendError(f"{k} must be an integer >= 0, got {v!r}", field=f"options.{k}")

    def open_session(self, video: VideoSource, objects: Sequence[SessionObject]) -> ClassicSession:
        return ClassicSession(video, objects, self.options)

    def fingerprint(self) -> dict:
        from dataclasses import asdict

        return {"backend": self.name, "version": VERSION, **asdict(self.options)}


def mask_taken_as_given(prompt: FramePrompt) -> bool:
    """A mask without clicks: the prompted frame's mask is exactly this mask (boxes beside it are not used)."""
    return prompt.mask is not None and len(prompt.points) == 0


_V = TypeVar("_V")


def recent(store: dict[Any, _V], key: Any, make: Callable[[], _V], keep: int) -> _V:
    """``store[key]``, made once; only the ``keep`` most recently made entries stay (a session's per-frame
    caches: propagation visits frames in order and looks back one or two frames)."""
    if key not in store:
        store[key] = make()
        while len(store) > keep:
            store.pop(next(iter(store)))
    return store[key]


class ClassicSession(Session):
    """Per-session state: the prompts, keyframe masks and a small cache of working-resolution frames."""

    def __init__(self, video: VideoSource, objects: Sequence[SessionObject], options: ClassicOptions) -> None:
        import cv2

        from masktrack.segment.classic_ops import FLOW_PRESETS, working_size

        self.video = video
        self.objects = tuple(objects)
        self.options = options
        self._names = [o.name for o in self.objects]
        self._size = working_size(video.height, video.width, options.max_side)
        self._scale = (self._size[1] / video.width, self._size[0] / video.height)
        self._prompts: dict[tuple[int, str], FramePrompt] = {}
        self._keymasks: dict[tuple[int, str], np.ndarray] = {}
        self._keymasks_fine: dict[tuple[int, str], np.ndarray] = {}
        self._frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._appearance: dict[str, Any] = {}
        self._track: dict[str, dict] = {}
        self._dis = cv2.DISOpticalFlow_create(FLOW_PRESETS[options.flow])

    # -- prompts ----------------------------------------------------------
    def add_prompt(self, prompt: FramePrompt) -> None:
        """Add clicks/boxes/mask; a second prompt for the same object and frame adds to the first."""
        if prompt.object not in self._names:
            raise PromptError(
                f"unknown object {prompt.object!r} (session objects: {', '.join(self._names)})",
                field="object",
            )
        if not 0 <= prompt.frame < self.video.num_frames:
            raise PromptError(
                f"frame {prompt.frame} out of range [0, {self.video.num_frames - 1}]", field="frame"
            )
        if prompt.mask is not None and prompt.mask.shape != self.video.size:
            raise PromptError(
                f"mask of {prompt.mask.shape[1]}x{prompt.mask.shape[0]} does not match the video's "
                f"{self.video.width}x{self.video.height}",
                field="mask",
            )
        if len(prompt.points) != len(prompt.labels):
            raise PromptError(f"{len(prompt.points)} points but {len(prompt.labels)} labels", field="labels")
        key = (prompt.frame, prompt.object)
        old = self._prompts.get(key)
        if old is not None:
            mask = prompt.mask if prompt.mask is not None else old.mask
            if prompt.mask is not None and old.mask is not None:
                mask = old.mask | prompt.mask
            prompt = FramePrompt(
                frame=prompt.frame,
                object=prompt.object,
                points=np.concatenate([old.points, prompt.points]),
                labels=np.concatenate([old.labels, prompt.labels]),
                boxes=np.concatenate([old.boxes, prompt.boxes]),
                mask=mask,
            )
        self._prompts[key] = prompt
        self._keymasks.pop(key, None)
        self._keymasks_fine.pop(key, None)

    def _keyframes(self, name: str) -> list[int]:
        return sorted(f for f, n in self._prompts if n == name)

    def _keyframe_size(self) -> tuple[int, int]:
        """(h, w) at which a prompted frame is segmented from clicks/boxes: the working resolution here."""
        return self._size

    def _keymask(self, frame: int, name: str) -> np.ndarray:
        """Working-resolution mask of a prompted frame (computed once)."""
        from masktrack.segment.classic_ops import resize_mask

        key = (frame, name)
        if key not in self._keymasks:
            self._keymasks[key] = resize_mask(self._keymask_fine(frame, name), self._size)
        return self._keymasks[key]

    def _keymask_fine(self, frame: int, name: str) -> np.ndarray:
        """A prompted frame's mask at :meth:`_keyframe_size` (computed once).

        Clicks are segmented at the resolution the user gave them at where a
        backend allows it: a click on a thin part (a kite line, a finger) must
        not be averaged away before GrabCut sees it.
        """
        import cv2

        from masktrack.segment.classic_ops import KeyPrompt, resize_mask, segment_keyframe

        key = (frame, name)
        if key not in self._keymasks_fine:
            p = self._prompts[key]
            h, w = self._keyframe_size()
            sx, sy = w / self.video.width, h / self.video.height
            pts = np.asarray(p.points, np.float32).reshape(-1, 2)
            pts = (pts + 0.5) * np.array([sx, sy], np.float32) - 0.5
            boxes = np.asarray(p.boxes, np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)
            mask = resize_mask(p.mask, (h, w)) if p.mask is not None else None
            motion = self._keyframe_motion(frame, (h, w)) if mask is None else None
            kp = KeyPrompt(
                points=pts, labels=np.asarray(p.labels).reshape(-1), boxes=boxes, mask=mask, motion=motion
            )
            if (h, w) == self._size:
                bgr = self._frame(frame)[0]
            else:
                rgb = self.video[frame]
                if rgb.shape[:2] != (h, w):
                    rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
                bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            self._keymasks_fine[key] = segment_keyframe(bgr, kp, iterations=self.options.keyframe_iterations)
        return self._keymasks_fine[key]

    def _keyframe_motion(self, frame: int, size: tuple[int, int]) -> np.ndarray | None:
        """Residual motion on a prompted frame at ``size`` (None: classic segments keyframes from colour alone)."""
        return None

    # -- frames -----------------------------------------------------------
    def _frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(BGR, gray) at working resolution; keeps only the last few frames."""
        import cv2

        def decode() -> tuple[np.ndarray, np.ndarray]:
            rgb = self.video[index]
            h, w = self._size
            if rgb.shape[:2] != (h, w):
                rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            return bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)

        return recent(self._frames, index, decode, keep=3)

    # -- propagation ------------------------------------------------------
    def propagate(self, start_frame: int, *, reverse: bool = False) -> Iterator[tuple[int, FrameMasks]]:
        """Yield every frame from ``start_frame`` to the end (or to 0 with ``reverse``).

        An object whose nearest keyframe lies *behind* ``start_frame`` (in the
        direction of travel) is first propagated silently from that keyframe,
        so the result does not depend on where propagation starts.  Objects
        with no keyframe behind them are empty until their first keyframe.
        """
        n = self.video.num_frames
        if not 0 <= start_frame < n:
            raise PromptError(f"start frame {start_frame} out of range [0, {n - 1}]", field="start_frame")
        step = -1 if reverse else 1
        begin = start_frame
        for name in self._names:
            behind = [
                f for f in self._keyframes(name) if (f <= start_frame if step > 0 else f >= start_frame)
            ]
            if behind:
                nearest = max(behind) if step > 0 else min(behind)
                begin = min(begin, nearest) if step > 0 else max(begin, nearest)
        end = n if step > 0 else -1
        state: dict[str, np.ndarray | None] = {name: None for name in self._names}
        prev: int | None = None
        for t in range(begin, end, step):
            state = self._step(t, prev, state)
            prev = t
            if (t >= start_frame) if step > 0 else (t <= start_frame):
                yield t, self._output(t, state)

    def _step(
        self, t: int, prev: int | None, state: dict[str, np.ndarray | None]
    ) -> dict[str, np.ndarray | None]:
        """Masks of frame ``t`` at working resolution from those of frame ``prev``."""
        from masktrack.segment.classic_ops import (
            Appearance,
            colour_index,
            dense_flow,
            flow_error,
            refine_mask,
            resolve_overlaps,
            update_appearance,
            warp_mask,
        )

        o = self.options
        bgr, gray = self._frame(t)
        index = colour_index(bgr)
        flow = err = None
        if prev is not None and any(m is not None and m.any() for m in state.values()):
            gray_prev = self._frame(prev)[1]
            flow = dense_flow(self._dis, gray, gray_prev)  # once per frame pair, for all objects
            if o.fb_check and o.refine and o.rescue > 0:
                err = flow_error(flow, dense_flow(self._dis, gray_prev, gray))
        masks, conf = [], []
        for name in self._names:
            if (t, name) in self._prompts:
                m = self._keymask(t, name)
                self._appearance[name] = Appearance.from_mask(
                    index, m
                )  # a keyframe restarts the colour model
                self._track.pop(name, None)
                masks.append(m)
                conf.append(np.full(m.shape, 2.0, np.float32))  # prompts beat propagation
                continue
            m_prev = state[name]
            if m_prev is None or flow is None or not m_prev.any():
                masks.append(np.zeros(self._size, bool))
                conf.append(np.zeros(self._size, np.float32))
                continue
            warped = warp_mask(m_prev, flow)
            app = self._appearance.get(name)
            m = refine_mask(
                bgr,
                index,
                warped,
                app,
                flow_error=err,
                band_fraction=o.band,
                iterations=o.iterations,
                sigma=o.sigma,
                colour_weight=o.colour_weight,
                rescue=o.rescue,
                refine=o.refine,
            )
            if o.refine and o.recover > 0:
                m = self._check_collapse(name, bgr, index, m, warped, flow)
            update_appearance(app, index, m)
            masks.append(m)
            conf.append(warped)
        return dict(zip(self._names, resolve_overlaps(masks, conf)))

    def _check_collapse(
        self,
        name: str,
        bgr: np.ndarray,
        index: np.ndarray,
        m: np.ndarray,
        warped: np.ndarray,
        flow: np.ndarray,
    ) -> np.ndarray:
        """Keep a running area and box of the object; when the mask suddenly shrinks, try to re-detect it.

        Occluders crossing an object (a pole, a hand) cut pieces off the mask
        that flow never brings back, because the uncovered pixels had no
        object pixels to come from.  Colour knows what the object looks like:
        GrabCut seeded by it, in the last good box moved with the object,
        gets those pieces back; the result is kept only if its area is closer
        to the running area.
        """
        from masktrack.segment.classic_ops import mask_box, recover_mask

        area = int(m.sum())
        tr = self._track.get(name)
        if tr is None:
            self._track[name] = tr = {"area": float(area), "box": mask_box(m)}
            return m
        thr = float(self.options.recover)
        if area < thr * tr["area"] and tr["box"] is not None:
            tr["tries"] = tr.get("tries", 0) + 1
            if tr["tries"] > 10:  # gone for good (left the view, fully hidden): stop paying for GrabCut
                return m
            x0, y0, x1, y1 = tr["box"]
            sel = warped > 0.5
            d = np.median(-flow[sel], axis=0) if sel.any() else np.zeros(2)  # backward flow: minus the motion
            pad = 0.15  # the object may have turned or stretched a little since
            bw, bh = (x1 - x0), (y1 - y0)
            box = (
                int(x0 + d[0] - pad * bw),
                int(y0 + d[1] - pad * bh),
                int(x1 + d[0] + pad * bw),
                int(y1 + d[1] + pad * bh),
            )
            tr["box"] = box
            cand = recover_mask(bgr, index, m, self._appearance.get(name), box)
            if cand is not None and thr * tr["area"] <= cand.sum() <= tr["area"] / thr:
                tr["box"], tr["tries"] = mask_box(cand), 0
                return cand  # recovered: the running area stays that of unaided frames
            return m  # still collapsed: keep the running estimates
        tr["area"] = 0.8 * tr["area"] + 0.2 * area
        tr["box"], tr["tries"] = mask_box(m), 0
        return m

    def _output(self, t: int, state: dict[str, np.ndarray | None]) -> FrameMasks:
        """Full-resolution masks; a mask prompt comes back exactly on its own frame."""
        from masktrack.segment.classic_ops import resize_mask

        size = self.video.size
        out: FrameMasks = {}
        exact: list[str] = []
        for name in self._names:
            p = self._prompts.get((t, name))
            if p is not None and p.mask is not None and mask_taken_as_given(p):
                out[name] = p.mask.astype(bool, copy=True)
                exact.append(name)
            else:
                m = state[name]
                out[name] = resize_mask(m, size) if m is not None else np.zeros(size, bool)
        self._fine_keyframes(t, out)
        for name in exact:  # exact masks own their pixels; earlier exact masks win among themselves
            for other in self._names:
                if other != name and (
                    other not in exact or self._names.index(other) > self._names.index(name)
                ):
                    out[other] &= ~out[name]
        return out

    def _fine_keyframes(self, t: int, out: FrameMasks) -> None:
        """On a frame prompted with clicks/boxes, the mask segmented at the finer keyframe resolution.

        Where two objects' fine masks claim the same pixel, the working-resolution
        result (already resolved by confidence) decides, so objects stay disjoint.
        """
        from masktrack.segment.classic_ops import resize_mask

        if self._keyframe_size() == self._size:
            return
        fine = {}
        for name in self._names:
            p = self._prompts.get((t, name))
            if p is not None and (len(p.points) or len(p.boxes)):
                fine[name] = resize_mask(self._keymask_fine(t, name), self.video.size)
        if not fine:
            return
        coarse = {name: out[name] for name in fine}
        for name, m in fine.items():
            out[name] = m
        claims = np.sum([out[name] for name in self._names], axis=0)
        contested = claims > 1
        for name in fine:  # the coarse masks are disjoint: so is the result
            out[name][contested] = coarse[name][contested]

    def close(self) -> None:
        self._frames.clear()
        self._keymasks.clear()
        self._keymasks_fine.clear()
        self._appearance.clear()

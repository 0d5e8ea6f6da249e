"""Drive one segmentation session from its config into the mask store.

Object resolution
    Each name in ``session.objects`` is looked up in the session's prompt file
    (``session.prompts`` or the config's top-level ``prompts``): it brings its
    id, colour and keyframes.  A name the prompt file does not have is a
    *text-only* object when the session has a text prompt (the backend's
    detections are mapped onto it, see ``assign_detections``), otherwise an
    error.  Inline objects (``{name, id?, color?, keyframes?}``) bring their
    own.  Objects without an id get, in listing order, the smallest id >= 1
    not used by the session's other objects; without a colour, the palette
    colour of their id.  Ids are per session only.

Prompted frames
    P(o), the prompted frames of object o, are its keyframes plus the text
    prompt's frame (a text prompt prompts every object of the session).

Bidirectional propagation (``direction: both``)
    The forward pass runs from the earliest prompted frame to the last frame,
    the backward pass from the latest prompted frame to frame 0, so every
    frame gets a mask even when the only prompt is mid-video.  For a frame f
    reached by both passes, each object takes the mask of the pass whose
    nearest prompted frame *behind f in its direction of travel* is closer::

        d_fwd(o, f) = f - max{p in P(o) : p <= f}     (infinite if none)
        d_bwd(o, f) = min{p in P(o) : p >= f} - f     (infinite if none)
        backward wins iff d_bwd < d_fwd; ties go to forward.

    (The notebook helper this replaces ran backward from the *earliest*
    prompted frame and let backward overwrite forward everywhere.)
    ``direction: forward`` runs only the forward pass (frames before the
    earliest prompted frame are stored empty), ``backward`` only the backward
    pass (frames after the latest prompted frame are stored empty).

Streaming
    Frames go to the store as the forward pass yields them; the backward pass
    writes frames only it reaches and read-modify-writes frames where it wins
    for some object.  Only per-frame "non-empty" flags stay in memory.

Manifest key
    ``hash_json`` of: store format version, video content hash, the session's
    resolved objects and prompts (mask files by content hash), text prompt,
    backend fingerprint, options and direction.  A session is reused when the
    store's trust rule holds for that key (see ``masktrack.masks.store``).

Output checks
    Every object of the session is prompted, so each must be non-empty on some
    frame; otherwise :class:`EmptyObjectError` names the object and session
    and the store stays incomplete (the next run recomputes it).  Empty-mask
    frames are counted per object and reported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.config import InlineObject, PipelineConfig, SessionConfig
from masktrack.errors import BackendError, ConfigError, Problem, PromptError
from masktrack.io.atomic import hash_file, hash_json
from masktrack.io.manifest import Status, is_complete
from masktrack.io.video import VideoSource, open_video
from masktrack.masks.store import MaskStore, SessionManifest, SessionStore, StoredObject
from masktrack.prompts.model import Keyframe, ObjectPrompts, PromptFile, default_color, load_prompts
from masktrack.segment.base import Backend, FramePrompt, Session, SessionObject, TextPrompt

STORE_FORMAT_VERSION = 1
ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: frames processed so far in this session (both passes counted)."""


class EmptyObjectError(BackendError):
    """A prompted object has no mask on any frame."""


@dataclass
class SessionReport:
    """What one session run produced (the currency between runner, CLI, demo and batch)."""

    session: str
    objects: list[str]
    frames: int
    seconds: float
    status: Status  # computed | reused | repaired (recomputed because stored frames failed verification)
    empty_frames: dict[str, int] = field(default_factory=dict)
    dropped_detections: int = 0
    store: Path | None = None
    repaired_frames: list[int] = field(default_factory=list)  # the damaged frames that caused a repair


@dataclass
class ResolvedSession:
    """A session with its objects, prompts and manifest-key inputs fully resolved."""

    config: SessionConfig
    index: int
    objects: tuple[SessionObject, ...]
    prompts: list[FramePrompt]
    text: TextPrompt | None
    prompted: dict[str, list[int]]
    key_inputs: dict[str, Any]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objects]

    def prompted_frames(self) -> list[int]:
        return sorted({f for fs in self.prompted.values() for f in fs})


# --------------------------------------------------------------------------- resolution


def _field(index: int, s: SessionConfig, rest: str = "") -> str:
    return f"sessions[{index}:{s.name}]{rest}"


def _load_mask(path: Path, size: tuple[int, int], *, prompt_path: Path | None, loc: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("L"))
    except FileNotFoundError:
        raise PromptError(f"mask file not found: {path}", path=prompt_path, field=loc) from None
    except OSError as e:
        raise PromptError(
            f"unreadable or truncated mask file {path} ({e})", path=prompt_path, field=loc
        ) from None
    if arr.shape != size:
        raise PromptError(
            f"mask {path} is {arr.shape[1]}x{arr.shape[0]}, the video is {size[1]}x{size[0]}",
            path=prompt_path,
            field=loc,
        )
    return arr > 0


def _keyframe_prompts(
    name: str, keyframes: Sequence[Keyframe], size: tuple[int, int], *, src: Path | None, loc: str
) -> tuple[list[FramePrompt], list[dict[str, Any]]]:
    """FramePrompts of one object plus their JSON form for the key (masks by content hash)."""
    prompts, key = [], []
    for ki, k in enumerate(keyframes):
        if k.is_empty():
            continue
        mask = None
        mask_hash = None
        if k.mask is not None:
            mask = _load_mask(Path(k.mask), size, prompt_path=src, loc=f"{loc}.keyframes[{ki}].mask")
            mask_hash = hash_file(k.mask)
        prompts.append(
            FramePrompt(
                frame=k.frame,
                object=name,
                points=np.asarray(k.points, np.float32).reshape(-1, 2),
                labels=np.asarray(k.labels, np.int32).reshape(-1),
                boxes=np.asarray(k.boxes, np.float32).reshape(-1, 4),
                mask=mask,
            )
        )
        key.append(
            {"frame": k.frame, "points": k.points, "labels": k.labels, "boxes": k.boxes, "mask": mask_hash}
        )
    return prompts, key


def _validate_inline(cfg: PipelineConfig, index: int, s: SessionConfig, video: VideoSource) -> None:
    probs: list[Problem] = []
    for oi, o in enumerate(s.objects):
        if not isinstance(o, InlineObject) or not o.keyframes:
            continue
        pf = PromptFile(
            objects=[ObjectPrompts(name=o.name, id=o.id or 1, color=o.color, keyframes=o.keyframes)]
        )
        for p in pf.problems(num_frames=video.num_frames, size=video.size):
            loc = p.location.replace(f"objects[0:{o.name}]", _field(index, s, f".objects[{oi}:{o.name}]"), 1)
            probs.append(Problem(loc, p.message))
    if probs:
        raise ConfigError(f"{len(probs)} problem(s)", path=cfg.source, problems=probs)


def load_session_prompts(cfg: PipelineConfig, s: SessionConfig, video: VideoSource) -> PromptFile | None:
    """The session's prompt file, validated against the video and merged (None if it has none)."""
    path = cfg.prompts_for(s)
    if path is None:
        return None
    return load_prompts(path, size=video.size, num_frames=video.num_frames).validate_for(
        num_frames=video.num_frames, size=video.size, path=path
    )


def resolve_session(
    cfg: PipelineConfig,
    s: SessionConfig,
    video: VideoSource,
    *,
    index: int | None = None,
    prompt_file: PromptFile | None = None,
) -> ResolvedSession:
    """Resolve objects, ids, colours and prompts of one session (all user errors raised here, before any write)."""
    index = cfg.sessions.index(s) if index is None else index
    src = cfg.prompts_for(s)
    pf = prompt_file if prompt_file is not None else load_session_prompts(cfg, s, video)
    _validate_inline(cfg, index, s, video)
    size = video.size

    text = None
    if s.text is not None:
        if not 0 <= s.text.frame < video.num_frames:
            raise ConfigError(
                f"text prompt frame {s.text.frame} out of range [0, {video.num_frames - 1}]",
                path=cfg.source,
                field=_field(index, s, ".text.frame"),
            )
        text = TextPrompt(frame=s.text.frame, text=s.text.text)

    # names, explicit ids and colours
    entries: list[tuple[str, int | None, tuple[int, int, int] | None, list[Keyframe], Path | None]] = []
    names_seen: set[str] = set()
    for oi, o in enumerate(s.objects):
        loc = _field(index, s, f".objects[{oi}]")
        if isinstance(o, InlineObject):
            entry = (o.name, o.id, o.color, list(o.keyframes), cfg.source)
        elif pf is not None and o in pf.names():
            po = pf.object(o)
            entry = (po.name, po.id, po.color, list(po.keyframes), src)
        elif text is not None:
            entry = (o, None, None, [], None)
        else:
            where = (
                f"not in prompt file {src} (objects: {', '.join(pf.names()) or 'none'})"
                if pf is not None
                else "and the session has no prompt file"
            )
            raise ConfigError(
                f"unknown object {o!r} in session {s.name!r}: {where}, and the session has no text prompt",
                path=cfg.source,
                field=loc,
            )
        if entry[0] in names_seen:
            raise ConfigError(
                f"object {entry[0]!r} listed twice in session {s.name!r}", path=cfg.source, field=loc
            )
        names_seen.add(entry[0])
        entries.append(entry)

    explicit: dict[int, str] = {}
    for oi, (name, oid, *_rest) in enumerate(entries):
        if oid is None:
            continue
        if oid < 1:
            raise ConfigError(
                f"object ids are integers >= 1, got {oid}",
                path=cfg.source,
                field=_field(index, s, f".objects[{oi}].id"),
            )
        if oid in explicit:
            raise ConfigError(
                f"objects {explicit[oid]!r} and {name!r} share id {oid} in session {s.name!r}",
                path=cfg.source,
                field=_field(index, s, f".objects[{oi}].id"),
            )
        explicit[oid] = name
    used = set(explicit)
    objects: list[SessionObject] = []
    prompts: list[FramePrompt] = []
    prompted: dict[str, list[int]] = {}
    key_objects = []
    for oi, (name, oid, color, keyframes, ksrc) in enumerate(entries):
        if oid is None:
            oid = next(i for i in range(1, len(entries) + len(used) + 2) if i not in used)
            used.add(oid)
        rgb = tuple(int(c) for c in color) if color is not None else default_color(oid)
        objects.append(SessionObject(name=name, id=oid, color=rgb))  # type: ignore[arg-type]
        fps, key = _keyframe_prompts(
            name, keyframes, size, src=ksrc, loc=_field(index, s, f".objects[{oi}:{name}]")
        )
        prompts.extend(fps)
        frames = {p.frame for p in fps}
        if text is not None:
            frames.add(text.frame)
        if not frames:
            raise ConfigError(
                f"object {name!r} has no prompts in session {s.name!r} (no keyframes and no text prompt)",
                path=cfg.source,
                field=_field(index, s, f".objects[{oi}]"),
            )
        prompted[name] = sorted(frames)
        key_objects.append({"name": name, "id": oid, "color": list(rgb), "keyframes": key})
    prompts.sort(key=lambda p: (p.frame, p.object))

    key_inputs = {
        "format": STORE_FORMAT_VERSION,
        "objects": key_objects,
        "text": {"text": text.text, "frame": text.frame} if text else None,
        "options": s.options,
        "direction": s.direction,
    }
    return ResolvedSession(s, index, tuple(objects), prompts, text, prompted, key_inputs)


def check_backend(cfg: PipelineConfig, rs: ResolvedSession) -> None:
    """Unknown backend or text on a backend without text: one-line errors before anything is written."""
    from masktrack.segment.registry import backend_class, text_backends

    s, loc = rs.config, _field(rs.index, rs.config)
    try:
        cls = backend_class(s.backend)
    except BackendError as e:
        raise BackendError(e.message, path=cfg.source, field=f"{loc}.backend") from None
    if rs.text is not None and not cls.supports_text:
        raise BackendError(
            f"backend {s.backend!r} does not take text prompts; use one of: {', '.join(text_backends()) or 'none installed'}",
            path=cfg.source,
            field=f"{loc}.text",
        )
    if rs.prompts and not cls.supports_points:
        raise BackendError(
            f"backend {s.backend!r} takes no point/box/mask prompts", path=cfg.source, field=f"{loc}.objects"
        )


# --------------------------------------------------------------------------- merge rule


def pass_starts(prompted: Sequence[int], direction: str) -> tuple[int | None, int | None]:
    """(forward start, backward start); None for a pass that does not run."""
    fwd = min(prompted) if direction in ("both", "forward") else None
    bwd = max(prompted) if direction in ("both", "backward") else None
    return fwd, bwd


def prompt_distances(prompted: Sequence[int], num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(d_fwd, d_bwd) float [T]: distance to the nearest prompted frame behind each frame in each direction."""
    p = np.asarray(sorted(prompted), np.int64)
    f = np.arange(num_frames)
    d_fwd = np.full(num_frames, math.inf)
    d_bwd = np.full(num_frames, math.inf)
    if p.size:
        i = np.searchsorted(p, f, side="right") - 1  # last p <= f
        ok = i >= 0
        d_fwd[ok] = f[ok] - p[i[ok]]
        j = np.searchsorted(p, f, side="left")  # first p >= f
        ok = j < p.size
        d_bwd[ok] = p[j[ok]] - f[ok]
    return d_fwd, d_bwd


def backward_wins(prompted: Mapping[str, Sequence[int]], names: Sequence[str], num_frames: int) -> np.ndarray:
    """bool [N, T]: for frames reached by both passes, whether the backward mask wins (ties: forward)."""
    out = np.zeros((len(names), num_frames), bool)
    for i, n in enumerate(names):
        d_fwd, d_bwd = prompt_distances(prompted[n], num_frames)
        out[i] = d_bwd < d_fwd
    return out


# --------------------------------------------------------------------------- running


def session_key(rs: ResolvedSession, video: VideoSource, backend: Backend) -> str:
    return hash_json({**rs.key_inputs, "video": video.content_hash(), "backend": backend.fingerprint()})


def _stack(
    masks: dict[str, np.ndarray], names: Sequence[str], size: tuple[int, int], where: str
) -> np.ndarray:
    out = np.zeros((len(names), *size), bool)
    for i, n in enumerate(names):
        m = masks.get(n)
        if m is None:
            continue
        m = np.asarray(m)
        if m.shape != size:
            raise RuntimeError(f"{where}: backend returned a {m.shape} mask for {n!r}, expected {size}")
        out[i] = m
    return out


def reused_report(rs: ResolvedSession, manifest: SessionManifest, path: Path) -> SessionReport:
    st = manifest.stats
    return SessionReport(
        session=rs.name,
        objects=manifest.names,
        frames=manifest.num_frames,
        seconds=0.0,
        status=Status.REUSED,
        empty_frames=dict(st.get("empty_frames", {})),
        dropped_detections=int(st.get("dropped_detections", 0)),
        store=path,
    )


@dataclass
class _PassOutput:
    """Where a pass writes: the store, and which frames/objects have masks so far."""

    session: str
    store: SessionStore
    manifest: SessionManifest
    names: Sequence[str]
    size: tuple[int, int]
    nonempty: np.ndarray  # bool [N, T]: object has pixels on frame
    written: np.ndarray  # bool [T]: frame already stored by an earlier pass
    tick: Callable[[], None]


def run_pass(
    session: Session, start: int, *, reverse: bool, out: _PassOutput, wins: np.ndarray | None
) -> None:
    """One propagation pass from ``start`` to the end of the video in one direction.

    A frame no earlier pass stored is written whole; a frame the forward pass already stored
    takes this pass's masks only for the objects in ``wins[:, f]`` (the backward pass wins
    before an object's earliest prompt, see :func:`backward_wins`).  Frames must come one by
    one in order; anything else is a backend bug and raises.
    """
    direction = "backward" if reverse else "forward"
    step, end = (-1, -1) if reverse else (1, len(out.written))
    expected = start
    for f, masks in session.propagate(start, reverse=reverse):
        if f != expected:
            raise RuntimeError(
                f"session {out.session!r}: {direction} pass yielded frame {f}, expected {expected}"
            )
        stack = _stack(masks, out.names, out.size, f"session {out.session!r} frame {f}")
        if not out.written[f]:
            out.store.write_stack(f, stack)
            out.nonempty[:, f] = stack.any(axis=(1, 2))
            out.written[f] = True
        elif wins is not None and wins[:, f].any():
            win = wins[:, f]
            merged = out.store.read_stack(f, out.manifest)
            merged[win] = stack[win]
            out.store.write_stack(f, merged)
            out.nonempty[win, f] = stack[win].any(axis=(1, 2))
        expected += step
        out.tick()
    if expected != end:
        video_has = "" if reverse else f", video has {end}"
        raise RuntimeError(
            f"session {out.session!r}: {direction} pass stopped at frame {expected}{video_has}"
        )


def run_resolved(
    cfg: PipelineConfig,
    rs: ResolvedSession,
    *,
    backend: Backend,
    video: VideoSource,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> SessionReport:
    """Run (or reuse) one resolved session; see the module docstring for the rules."""
    store = MaskStore(cfg.output).session(rs.name)
    key = session_key(rs, video, backend)
    damaged: list[int] = []
    old = None if force else store.manifest()
    if old is not None and is_complete(old) and old.key == key:
        damaged = store.verify(old)
        if not damaged:
            return reused_report(rs, old, store.path)
        # A frame failed its size/hash check: the session is one propagation, so it is redone whole.

    t0 = time.perf_counter()
    T, size, names = video.num_frames, video.size, rs.names
    manifest = SessionManifest(
        session=rs.name,
        key=key,
        backend=rs.config.backend,
        options=rs.config.options,
        video=str(cfg.video),
        video_hash=video.content_hash(),
        prompts_hash=hash_json({"objects": rs.key_inputs["objects"], "text": rs.key_inputs["text"]}),
        num_frames=T,
        height=size[0],
        width=size[1],
        objects=[StoredObject(name=o.name, id=o.id, color=o.color) for o in rs.objects],
    )
    store.begin(manifest)

    fwd_start, bwd_start = pass_starts(rs.prompted_frames(), rs.config.direction)
    bwd_wins = backward_wins(rs.prompted, names, T)
    total = (T - fwd_start if fwd_start is not None else 0) + (bwd_start + 1 if bwd_start is not None else 0)
    nonempty = np.zeros((len(names), T), bool)
    written = np.zeros(T, bool)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    out = _PassOutput(rs.name, store, manifest, names, size, nonempty, written, tick)
    with backend.open_session(video, rs.objects) as session:
        for p in rs.prompts:
            session.add_prompt(p)
        if rs.text is not None:
            session.add_text(rs.text)
        if fwd_start is not None:
            run_pass(session, fwd_start, reverse=False, out=out, wins=None)
        if bwd_start is not None:
            run_pass(session, bwd_start, reverse=True, out=out, wins=bwd_wins)
        dropped = int(getattr(session, "dropped_detections", 0) or 0)

    empty_stack = np.zeros((len(names), *size), bool)
    for unwritten in np.flatnonzero(~written):
        store.write_stack(int(unwritten), empty_stack)  # frames outside a one-directional run

    missing = [n for i, n in enumerate(names) if not nonempty[i].any()]
    if missing and not getattr(backend, "allows_empty", False):  # kinematic: a part this camera never sees
        raise EmptyObjectError(
            f"session {rs.name!r}: prompted object(s) {', '.join(map(repr, missing))} are empty on every frame "
            "(check their prompts); the session's masks stay incomplete",
            path=cfg.source,
            field=_field(rs.index, rs.config, ".objects"),
        )
    empty = {n: int(T - nonempty[i].sum()) for i, n in enumerate(names)}
    seconds = time.perf_counter() - t0
    stats = {
        "empty_frames": empty,
        "dropped_detections": dropped,
        "seconds": round(seconds, 3),
        "forward_start": fwd_start,
        "backward_start": bwd_start,
        "direction": rs.config.direction,
    }
    store.finish(manifest, stats)
    return SessionReport(
        session=rs.name,
        objects=list(names),
        frames=T,
        seconds=seconds,
        status=Status.REPAIRED if damaged else Status.COMPUTED,
        repaired_frames=damaged,
        empty_frames=empty,
        dropped_detections=dropped,
        store=store.path,
    )


def run_session(
    cfg: PipelineConfig,
    session_cfg: SessionConfig,
    *,
    backend: Backend,
    force: bool = False,
    progress: ProgressFn | None = None,
    video: VideoSource | None = None,
) -> SessionReport:
    """Run one session with an already loaded backend (opens the video unless given one)."""
    own = video is None
    v = open_video(cfg.video) if own else video
    assert v is not None
    try:
        rs = resolve_session(cfg, session_cfg, v)
        check_backend(cfg, rs)
        return run_resolved(cfg, rs, backend=backend, video=v, force=force, progress=progress)
    finally:
        if own:
            v.close()

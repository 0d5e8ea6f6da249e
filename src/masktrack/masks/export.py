"""Run composition expressions over the mask store and export PNG folders for inpainting.

Layout under the pipeline's output folder::

    composed/<name>/00000.png        0/255 8-bit grayscale, one per frame (only PNGs:
                                     ProPainter lists this folder and opens every file)
    composed/<name>.json             manifest: key, expression, inputs, complete, stats
    composed/<name>.packed/00000.npz optional bit-packed copy (``packed: true`` / ``--packed``)
    composed/summary.json            per-output statistics of all outputs

Trust rule (as for sessions): the key is a hash of the canonical expression
and the input sessions' manifest keys.  A run whose key differs first writes a
manifest with no key, then deletes the old frames, then writes the manifest
with the new key - so frames on disk always belong to the key in the
manifest, and a resumed run (same key) keeps every frame that is present and
decodes.  Each frame is written to a temp file and renamed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.config import ComposeOutput, PipelineConfig
from masktrack.errors import ConfigError, StoreError
from masktrack.io.atomic import atomic_write_bytes, atomic_write_json, clean_temp_files, hash_json
from masktrack.io.lock import output_lock
from masktrack.io.manifest import (
    MANIFEST_FORMAT,
    TOOL_VERSION,
    Manifest,
    OutputEntry,
    Status,
    begin,
    begin_fields,
    damaged_outputs,
    entry_for,
    entry_for_bytes,
    finish,
    is_complete,
    legacy_layout,
    read_manifest,
)
from masktrack.io.progress import Progress, ProgressEvent, as_progress
from masktrack.masks.compose import (
    Expression,
    ExpressionError,
    MaskValue,
    Ref,
    Window,
    compile_expression,
    evaluate,
)
from masktrack.masks.store import MaskStore, SessionManifest, SessionStore, encode_frame, read_packed

COMPOSE_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def png_params() -> list[int]:
    """Level 1, no row filter, RLE: ~5x faster than libpng's defaults on binary masks, files of a few kB."""
    import cv2

    return [
        cv2.IMWRITE_PNG_COMPRESSION, 1,
        cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
        cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
    ]  # fmt: skip


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------
@dataclass
class OutputReport:
    """What one composed output holds and what this run did."""

    name: str
    expr: str
    folder: Path
    key: str
    num_frames: int
    written: int
    skipped: int
    empty_frames: list[int]
    pixels: list[int] = field(repr=False)
    seconds: float
    status: Status = Status.COMPUTED
    repaired: list[int] = field(default_factory=list)  # frames whose files failed verification

    @property
    def mean_pixels(self) -> float:
        return float(np.mean(self.pixels)) if self.pixels else 0.0

    def summary(self) -> dict[str, Any]:
        px = np.asarray(self.pixels, dtype=np.int64)
        return {
            "expr": self.expr,
            "folder": str(self.folder),
            "key": self.key,
            "num_frames": self.num_frames,
            "empty_frames": self.empty_frames,
            "num_empty_frames": len(self.empty_frames),
            "pixels_mean": float(px.mean()) if px.size else 0.0,
            "pixels_min": int(px.min()) if px.size else 0,
            "pixels_max": int(px.max()) if px.size else 0,
            "pixels": px.tolist(),
            "status": str(self.status),
            "repaired_frames": self.repaired,
        }


@dataclass
class ComposeReport:
    outputs: list[OutputReport]
    summary_path: Path

    def __getitem__(self, name: str) -> OutputReport:
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(name)


# --------------------------------------------------------------------------
# The composed-output store
# --------------------------------------------------------------------------
class ComposedStore:
    """One composed output: its PNG folder, optional packed folder and manifest."""

    def __init__(self, output: str | Path, name: str) -> None:
        self.name = name
        self.root = Path(output) / "composed"
        self.folder = self.root / name
        self.packed_dir = self.root / f"{name}.packed"
        self.manifest_path = self.root / f"{name}.json"

    def png_path(self, frame: int) -> Path:
        return self.folder / f"{frame:05d}.png"

    def packed_path(self, frame: int) -> Path:
        return self.packed_dir / f"{frame:05d}.npz"

    def manifest(self) -> dict[str, Any] | None:
        try:
            m = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return m if isinstance(m, dict) else None

    def require_manifest(self) -> dict[str, Any]:
        m = self.manifest()
        if m is None:
            raise StoreError(
                f"no composed output {self.name!r} (run `masktrack compose` first)", path=self.manifest_path
            )
        if not is_complete(m):
            raise StoreError(
                f"composed output {self.name!r} is incomplete (interrupted run); rerun `masktrack compose`",
                path=self.manifest_path,
            )
        return m

    def read_frame(self, frame: int, manifest: dict[str, Any] | None = None) -> np.ndarray:
        """bool [H, W] of one frame (from the packed copy when there is one)."""
        import cv2

        m = manifest or self.require_manifest()
        if not 0 <= frame < m["num_frames"]:
            raise IndexError(f"frame {frame} out of range [0, {m['num_frames']})")
        pk = self.packed_path(frame)
        if pk.exists():
            from masktrack.masks.store import decode_frame

            return decode_frame(pk, m["width"])[0]
        p = self.png_path(frame)
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise StoreError(
                f"frame {frame} of composed output {self.name!r} is missing or unreadable; rerun `masktrack compose`",
                path=p,
            )
        return img > 0


def load_composed(output: str | Path, name: str, frames: Sequence[int] | None = None) -> np.ndarray:
    """bool [T, H, W] of a composed output (all frames, or ``frames``)."""
    store = ComposedStore(output, name)
    m = store.require_manifest()
    idx = list(range(m["num_frames"])) if frames is None else list(frames)
    out = np.zeros((len(idx), m["height"], m["width"]), bool)
    for i, f in enumerate(idx):
        out[i] = store.read_frame(f, m)
    return out


def composed_outputs(output: str | Path) -> list[str]:
    """Names of complete composed outputs under ``output``."""
    root = Path(output) / "composed"
    if not root.is_dir():
        return []
    names = []
    for p in sorted(root.glob("*.json")):
        if p.name == "summary.json":
            continue
        m = ComposedStore(output, p.stem).manifest()
        if is_complete(m):
            names.append(p.stem)
    return names


# --------------------------------------------------------------------------
# Reading leaves from the mask store without unpacking whole frames
# --------------------------------------------------------------------------
def packed_window(packed: np.ndarray, width: int) -> MaskValue:
    """Unpack only the bounding box (at byte granularity) of a packed [H, ceil(W/8)] mask."""
    import cv2

    bx, y0, bw, bh = cv2.boundingRect(packed)  # non-zero bytes; SIMD, no temporaries
    if bw == 0 or bh == 0:
        return None
    bits = np.unpackbits(packed[y0 : y0 + bh, bx : bx + bw], axis=1)
    # Tighten x to the bit: only the first and last byte columns can hold leading/trailing zeros.
    lead = int(np.argmax(bits[:, :8].any(axis=0)))
    last = np.asarray(bits[:, -8:].any(axis=0))
    trail = int(np.argmax(last[::-1]))
    x0 = 8 * bx + lead
    x1 = min(width, 8 * (bx + bw) - trail)
    return Window(y0, x0, bits[:, lead : x1 - 8 * bx], True)


class _FrameInputs:
    """Per-frame reader: each input session's file is read once per frame."""

    def __init__(self, stores: dict[str, SessionStore], manifests: dict[str, SessionManifest]) -> None:
        self.stores = stores
        self.manifests = manifests

    def leaf_fn(self, frame: int):
        cache: dict[str, np.ndarray] = {}
        values: dict[tuple[str, tuple[str, ...]], MaskValue] = {}

        def leaf(r: Ref) -> MaskValue:
            assert r.session is not None
            k = (r.session, r.objects)
            if k not in values:
                values[k] = packed_window(self.packed_union(frame, r, cache), self.manifests[r.session].width)
            return values[k]

        return leaf

    def packed_union(self, frame: int, r: Ref, cache: dict[str, np.ndarray] | None = None) -> np.ndarray:
        s = r.session
        assert s is not None
        m = self.manifests[s]
        if cache is not None and s in cache:
            packed = cache[s]
        else:
            packed = read_packed(self.stores[s], frame, m)
            if cache is not None:
                cache[s] = packed
        idx = [m.names.index(o) for o in r.objects]
        out = packed[idx[0]]
        for i in idx[1:]:
            out = np.bitwise_or(out, packed[i])
        return out


# --------------------------------------------------------------------------
# Running outputs
# --------------------------------------------------------------------------
def _session_objects(cfg: PipelineConfig, store: MaskStore) -> dict[str, list[str]]:
    """{session: objects} for name resolution: the stored manifest's objects when there is one."""
    out = {}
    for s in cfg.sessions:
        m = store.session(s.name).manifest()
        out[s.name] = m.names if m is not None else s.object_names()
    return out


def _location(cfg: PipelineConfig, name: str, origin: str | None) -> dict[str, Any]:
    """Where errors about output ``name`` point: its ``origin`` (e.g. an option) or the config's field."""
    if origin is not None:
        return {"path": None, "field": origin}
    return {"path": cfg.source, "field": f"compose.{name}.expr"}


def _check_nonempty(expr: Expression, inputs: _FrameInputs, num_frames: int, loc: dict[str, Any]) -> None:
    """A non-optional reference empty in every frame is an error (usually wrong object ids).

    Stops scanning as soon as every reference has been seen non-empty, so a
    healthy video costs one frame read.
    """
    pending: dict[tuple[str, tuple[str, ...]], Ref] = {}
    for r in expr.refs:
        if not r.optional:
            pending.setdefault((r.session, r.objects), r)  # type: ignore[arg-type]
    f = 0
    while pending and f < num_frames:
        cache: dict[str, np.ndarray] = {}
        for k, r in list(pending.items()):
            if inputs.packed_union(f, r, cache).any():
                del pending[k]
        f += 1
    if pending:
        r = next(iter(pending.values()))
        whole_session = r.second == "*" or (
            r.second is None and r.first == r.session and r.objects != (r.first,)
        )
        what = (
            f"session {r.session!r} (all its objects)"
            if whole_session
            else f"object {r.objects[0]!r} of session {r.session!r}"
        )
        raise ExpressionError(
            f"{what} (term {r.text!r}) is empty in all {num_frames} frames - wrong object ids? "
            f"Write {r.text}? if it may be empty",
            expr.text,
            r.pos,
            r.length,
        ).located(**loc)


def _compose_key(expr: Expression, manifests: dict[str, SessionManifest]) -> str:
    return hash_json(
        {
            "version": COMPOSE_VERSION,
            "expr": expr.canonical,
            "inputs": {s: manifests[s].key for s in expr.sessions},
            "format": "png-L8-0-255",
        }
    )


def default_workers() -> int:
    """One thread per usable core (affinity-aware), at most 4: encoding and inflating release the GIL."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        n = os.cpu_count() or 1
    return max(1, min(4, n))


@contextlib.contextmanager
def _single_threaded_cv2(enable: bool):
    """Our frames are the parallel unit; OpenCV's own thread pool on top only oversubscribes the cores."""
    import cv2

    if not enable:
        yield
        return
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _start(cs: ComposedStore, base: dict[str, Any], force: bool) -> bool:
    """Prepare the folder for ``base['key']``; True if existing frames may be kept."""
    old = cs.manifest()
    if not force and old is not None and old.get("key") == base["key"]:
        begin_fields(cs.manifest_path, {**old, **base})  # verified below, then claimed
        return True
    # Invalidate first, delete second, claim third: frames on disk always match the manifest's key.
    begin(cs.manifest_path, Manifest.model_validate({**base, "key": None}))
    for d in (cs.folder, cs.packed_dir):
        if d.exists():
            shutil.rmtree(d)
    begin(cs.manifest_path, Manifest.model_validate(base))
    return False


def _existing_count(cs: ComposedStore, frame: int, shape: tuple[int, int], packed: bool) -> int | None:
    """Pixel count of a frame already on disk and readable, or None if it must be (re)written."""
    import cv2

    if packed and not cs.packed_path(frame).exists():
        return None
    img = cv2.imread(str(cs.png_path(frame)), cv2.IMREAD_GRAYSCALE)
    if img is None or img.shape != shape:
        return None
    return int(cv2.countNonZero(img))


def _frame_names(cs: ComposedStore, frame: int, packed: bool) -> list[str]:
    """The manifest's names (relative to ``composed/``) of one frame's files."""
    names = [f"{cs.name}/{frame:05d}.png"]
    if packed:
        names.append(f"{cs.name}.packed/{frame:05d}.npz")
    return names


def _write_frame(
    cs: ComposedStore, frame: int, value: MaskValue, shape: tuple[int, int], packed: bool, params: list[int]
) -> tuple[int, dict[str, OutputEntry]]:
    """Encode and write one frame; returns its pixel count and its files' manifest entries."""
    import cv2

    full = np.zeros(shape, np.uint8) if value is None else value.to_full(shape, 255)
    ok, buf = cv2.imencode(".png", full, params)
    if not ok:  # pragma: no cover - cv2 only fails on bad input
        raise RuntimeError("PNG encoding failed")
    png = buf.tobytes()
    atomic_write_bytes(cs.png_path(frame), png, fsync=False)
    names = _frame_names(cs, frame, packed)
    entries = {names[0]: entry_for_bytes(png)}
    if packed:
        npz = encode_frame(full[None] > 0)
        atomic_write_bytes(cs.packed_path(frame), npz, fsync=False)
        entries[names[1]] = entry_for_bytes(npz)
    return (0 if value is None else value.count()), entries


def compose_output(
    cfg: PipelineConfig,
    name: str,
    spec: ComposeOutput,
    *,
    force: bool = False,
    packed: bool | None = None,
    workers: int | None = None,
    progress: Progress | bool | None = None,
    origin: str | None = None,
) -> OutputReport:
    """Compute one named output (see the module docstring for the layout and trust rule)."""
    t0 = time.perf_counter()
    store = MaskStore(cfg.output)
    loc = _location(cfg, name, origin)
    try:
        expr = compile_expression(spec.expr, _session_objects(cfg, store))
    except ExpressionError as e:
        raise e.located(**loc) from None
    manifests = {s: store.session(s).require_manifest() for s in expr.sessions}
    first = manifests[expr.sessions[0]]
    for s, m in manifests.items():
        if (m.num_frames, m.height, m.width) != (first.num_frames, first.height, first.width):
            raise ConfigError(
                f"sessions {first.session!r} ({first.num_frames} frames of {first.width}x{first.height}) and {s!r} "
                f"({m.num_frames} frames of {m.width}x{m.height}) do not match",
                **loc,
            )
    T, shape = first.num_frames, (first.height, first.width)
    inputs = _FrameInputs({s: store.session(s) for s in expr.sessions}, manifests)
    _check_nonempty(expr, inputs, T, loc)

    packed = spec.packed if packed is None else packed
    cs = ComposedStore(cfg.output, name)
    key = _compose_key(expr, manifests)
    base = {
        "format": MANIFEST_FORMAT,
        "stage": "compose",
        "tool_version": TOOL_VERSION,
        "version": COMPOSE_VERSION,
        "name": name,
        "key": key,
        "expr": spec.expr,
        "canonical": expr.canonical,
        "inputs": {s: manifests[s].key for s in expr.sessions},
        "num_frames": T,
        "height": shape[0],
        "width": shape[1],
        "packed": packed,
    }
    old = read_manifest(cs.manifest_path, "compose")
    # A complete output of the previous layout (no hashes) is read the way an interrupted run is:
    # every frame is decoded (PNG chunk CRCs, zlib) and kept if it decodes at the right size, the
    # rest rewritten; the new manifest then records every frame's size and hash.
    legacy_read = False
    if old is None and not force and legacy_layout(cs.manifest_path):
        legacy = cs.manifest() or {}
        legacy_read = legacy.get("key") == key and is_complete(legacy)
    # Frames of a complete manifest with our key: trusted only if their size and hash verify.
    known: dict[int, tuple[int, dict[str, OutputEntry]]] = {}
    repaired: list[int] = []
    if (
        not force
        and old is not None
        and old.key == key
        and is_complete(old)
        and (getattr(old, "packed", False) or not packed)
    ):
        px = (getattr(old, "stats", None) or {}).get("pixels", [])
        if len(px) == T:
            for f in range(T):
                names = _frame_names(cs, f, packed)
                ents = {n: old.outputs[n] for n in names if n in old.outputs}
                if len(ents) == len(names) and not damaged_outputs(cs.root, old, names):
                    known[f] = (int(px[f]), ents)
                else:
                    repaired.append(f)
            if not repaired:
                empty = [f for f, n in enumerate(px) if n == 0]
                return OutputReport(
                    name,
                    spec.expr,
                    cs.folder,
                    key,
                    T,
                    0,
                    T,
                    empty,
                    px,
                    time.perf_counter() - t0,
                    Status.REUSED,
                )
    resume = _start(cs, base, force)
    cs.folder.mkdir(parents=True, exist_ok=True)
    if packed:
        cs.packed_dir.mkdir(parents=True, exist_ok=True)
    clean_temp_files(cs.folder)
    clean_temp_files(cs.packed_dir)

    params = png_params()
    pixels = [0] * T
    outputs: dict[str, OutputEntry] = {}
    counts = {"written": 0, "skipped": 0}

    def job(f: int) -> tuple[int, int, dict[str, OutputEntry], bool]:
        if f in known:  # verified against the complete manifest
            return f, known[f][0], known[f][1], False
        if resume and not known and not repaired:  # an interrupted run: its frames were written atomically
            n = _existing_count(cs, f, shape, packed)
            if n is not None:
                return f, n, {nm: entry_for(cs.root / nm) for nm in _frame_names(cs, f, packed)}, False
        value = evaluate(expr.root, inputs.leaf_fn(f), shape)
        n, ents = _write_frame(cs, f, value, shape, packed, params)
        return f, n, ents, True

    workers = workers or default_workers()
    on_event = as_progress(progress)
    task = f"compose {name}"
    if on_event is not None:
        on_event(ProgressEvent(task, 0, T))
    with (
        _single_threaded_cv2(workers > 1),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compose") as pool,
    ):
        futures = [pool.submit(job, f) for f in range(T)]
        try:
            for fut in as_completed(futures):
                f, n, ents, wrote = fut.result()
                pixels[f] = n
                outputs.update(ents)
                if wrote and legacy_read:
                    repaired.append(f)
                counts["written" if wrote else "skipped"] += 1
                if on_event is not None:
                    on_event(ProgressEvent(task, counts["written"] + counts["skipped"], T))
        except BaseException:
            for fu in futures:
                fu.cancel()
            raise
    clean_temp_files(cs.folder)
    repaired.sort()
    if legacy_read and not repaired:
        status = Status.REUSED  # every frame of the old layout decoded; only the manifest was upgraded
    else:
        status = Status.REPAIRED if repaired else Status.COMPUTED
    empty = [f for f, n in enumerate(pixels) if n == 0]
    report = OutputReport(
        name,
        spec.expr,
        cs.folder,
        key,
        T,
        counts["written"],
        counts["skipped"],
        empty,
        pixels,
        time.perf_counter() - t0,
        status,
        repaired,
    )
    outputs = {n: outputs[n] for n in sorted(outputs)}
    finish(cs.manifest_path, Manifest.model_validate(base), outputs, stats=report.summary())
    return report


def _update_summary(output: Path, reports: Iterable[OutputReport]) -> Path:
    path = output / "composed" / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(summary, dict):
            summary = {}
    except (FileNotFoundError, ValueError):
        summary = {}
    for r in reports:
        summary[r.name] = r.summary()
    atomic_write_json(path, summary)
    return path


def run_compose(
    cfg: PipelineConfig,
    *,
    names: Sequence[str] | None = None,
    force: bool = False,
    progress: Progress | bool | None = None,
    packed: bool | None = None,
    workers: int | None = None,
    origins: Mapping[str, str] | None = None,
) -> ComposeReport:
    """Compute the config's composed outputs (all, or ``names``), resumably.

    ``packed`` overrides each output's ``packed`` flag; ``origins`` names
    where outputs not from the config file came from (``{"arm_only": "--expr arm_only"}``):
    errors then name that, not the file.
    ``progress`` is called with each output's frame count as it advances.
    """
    origins = dict(origins or {})
    if not cfg.compose:
        raise ConfigError(
            "no compose outputs: add a `compose:` section or pass --expr NAME=EXPR",
            path=cfg.source,
            field="compose",
        )
    selected = list(cfg.compose) if not names else list(names)
    for n in selected:
        if n not in cfg.compose:
            raise ConfigError(
                f"no compose output named {n!r} (outputs: {', '.join(cfg.compose)})",
                path=cfg.source,
                field="compose",
            )
        if not _NAME.fullmatch(n) or n == "summary":
            loc = _location(cfg, n, origins.get(n))
            raise ConfigError(
                "output names use letters, digits, '_' and '-' only (and not 'summary'): they name folders",
                path=loc["path"],
                field=loc["field"].removesuffix(".expr"),
            )
    objects = _session_objects(cfg, MaskStore(cfg.output))
    for n in selected:  # every expression checked before the output folder is locked (created)
        try:
            compile_expression(cfg.compose[n].expr, objects)
        except ExpressionError as e:
            raise e.located(**_location(cfg, n, origins.get(n))) from None
    with output_lock(cfg.output, "compose"):
        clean_temp_files(Path(cfg.output) / "composed")  # a killed run's temp files (we hold the lock)
        reports: list[OutputReport] = []
        for n in selected:
            reports.append(
                compose_output(
                    cfg,
                    n,
                    cfg.compose[n],
                    force=force,
                    packed=packed,
                    workers=workers,
                    progress=progress,
                    origin=origins.get(n),
                )
            )
        summary = _update_summary(Path(cfg.output), reports)
    return ComposeReport(reports, summary)


__all__ = [
    "ComposeReport",
    "ComposedStore",
    "OutputReport",
    "composed_outputs",
    "compose_output",
    "load_composed",
    "run_compose",
]

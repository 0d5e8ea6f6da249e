"""The annotation web app: one video, one prompt file, a local FastAPI server.

What the browser may do is deliberately narrow: read frames of *this* video by
integer index, read and write *this* prompt file, and ask the configured
backend for a one-frame preview mask.  No path ever comes from the client
(mask paths in a loaded file are echoed back only as the opaque strings the
server sent), static files come from a fixed list in the package, and the
server answers only to localhost host names (DNS rebinding) and only to JSON
writes (a cross-site form cannot post ``application/json`` without a CORS
preflight, which this server never grants).

Concurrency: every read of the prompt file carries its *revision* (sha256 of
the bytes on disk).  A save names the revision it started from; when the file
changed since (another tab, another tool), the save is refused with 409 and
the page asks the user whether to reload or overwrite explicitly.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.middleware.trustedhost import TrustedHostMiddleware

from masktrack.annotate.checks import side_warnings
from masktrack.config import PipelineConfig, load_config
from masktrack.errors import MasktrackError, Problem, PromptError, pydantic_problems
from masktrack.io.atomic import atomic_write_bytes
from masktrack.io.lock import FolderLockedError, output_lock
from masktrack.io.video import VideoSource, open_video
from masktrack.prompts.legacy import is_legacy
from masktrack.prompts.model import (
    PALETTE,
    ObjectPrompts,
    PromptFile,
    default_color,
    parse_prompts,
    save_prompts,
)

log = logging.getLogger("masktrack.annotate")

LOCAL_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
MAX_BODY = 8 << 20  # a prompt file of 8 MiB is ~100k clicks; anything larger is not from the page
FRAME_CACHE = 48
MAX_DEPTH = 32  # prompt documents nest 6 levels; anything deeper is not from the page
ABSENT = "absent"
# the page loads nothing from elsewhere and cannot be framed by another site
CSP = "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
STATIC_SUFFIXES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


def _static_files() -> dict[str, tuple[bytes, str]]:
    """The package's static files, read once: name -> (bytes, media type)."""
    root = resources.files("masktrack.annotate") / "static"
    out: dict[str, tuple[bytes, str]] = {}
    for entry in root.iterdir():
        suffix = Path(entry.name).suffix
        if entry.is_file() and suffix in STATIC_SUFFIXES:
            out[entry.name] = (entry.read_bytes(), STATIC_SUFFIXES[suffix])
    return out


def _error(status: int, detail: str, problems: Sequence[Problem] = (), **extra: Any) -> JSONResponse:
    body = {
        "detail": detail,
        "problems": [{"location": p.location, "message": p.message} for p in problems],
        **extra,
    }
    return JSONResponse(body, status_code=status)


def _revision(data: bytes | None) -> str:
    return ABSENT if data is None else hashlib.sha256(data).hexdigest()[:20]


def _names_from_config(config: PipelineConfig) -> list[tuple[str, int | None, tuple[int, int, int] | None]]:
    out: list[tuple[str, int | None, tuple[int, int, int] | None]] = []
    for s in config.sessions:
        for o in s.objects:
            if isinstance(o, str):
                out.append((o, None, None))
            else:
                out.append((o.name, o.id, o.color))
    return out


class PromptStore:
    """The prompt file on disk, its revision, and the objects the page should offer even before any click."""

    def __init__(self, path: Path, video: VideoSource, wanted: Sequence[tuple[str, int | None, Any]]) -> None:
        self.path = path
        self.video = video
        self.wanted = list(wanted)
        self.lock = threading.Lock()
        self.known_masks: set[str] = set()

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:  # a folder, no permission...
            raise PromptError(f"cannot read the prompt file ({e.strerror or e})", path=self.path) from None

    def _parse(self, data: bytes | None) -> tuple[PromptFile, str]:
        """(prompts, source format). Raises PromptError for a file that does not parse."""
        if data is None:
            return PromptFile(), "new"
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PromptError(f"not valid JSON ({e})", path=self.path) from None
        pf = parse_prompts(doc, path=self.path, size=self.video.size)  # size: legacy 'rel' coordinates
        return pf, ("legacy" if is_legacy(doc) else "v1")

    def check_readable(self) -> None:
        """Fail early (CLI exit 2) when the given prompt file cannot be loaded."""
        self._parse(self._read())

    def _with_wanted(self, pf: PromptFile) -> PromptFile:
        """Add objects named by --objects/the config that the file does not have yet (not written until saved)."""
        pf = pf.model_copy(deep=True)
        names = set(pf.names())
        missing = []
        for name, oid, color in self.wanted:
            if name not in names:
                names.add(name)
                missing.append((name, oid, color))
        used = {o.id for o in pf.objects}
        # explicit ids (config InlineObject) first, so an unnumbered object cannot take them
        keep = {name: oid for name, oid, _ in missing if oid is not None and oid >= 1 and oid not in used}
        used |= set(keep.values())
        for name, _, color in missing:
            oid = keep.get(name)
            if oid is None:
                oid = max(used, default=0) + 1
                used.add(oid)
            pf.objects.append(ObjectPrompts(name=name, id=oid, color=color))
        return pf

    def default_video_field(self) -> str:
        try:
            return os.path.relpath(self.video.path.resolve(), self.path.resolve().parent)
        except ValueError:  # different drives on Windows
            return str(self.video.path.resolve())

    def state(self) -> dict[str, Any]:
        """What the page loads: prompts, revision, warnings; a file that does not parse is reported, not raised."""
        rev, load_error = "unreadable", []
        try:
            with self.lock:
                data = self._read()
            rev = _revision(data)
            pf, fmt = self._parse(data)
        except MasktrackError as e:
            pf, fmt, load_error = PromptFile(), "unreadable", e.lines()
        self.known_masks = {k.mask for o in pf.objects for k in o.keyframes if k.mask}
        pf = self._with_wanted(pf)
        problems = pf.problems(num_frames=self.video.num_frames, size=self.video.size)
        return {
            "revision": rev,
            "path": str(self.path),
            "source_format": fmt,
            "load_error": load_error,
            "prompts": pf.model_dump(mode="json", exclude_none=True),
            "colors": {o.name: list(o.rgb) for o in pf.objects},
            "problems": [{"location": p.location, "message": p.message} for p in problems],
            "warnings": [str(p) for p in side_warnings(pf, self.video.width)],
        }

    def save(self, pf: PromptFile, revision: str, force: bool) -> tuple[str | None, str]:
        """Write ``pf`` if the file is still at ``revision`` (or ``force``). Returns (new revision or None, current)."""
        with self.lock:
            data = self._read()
            current = _revision(data)
            if current != revision and not force:
                return None, current
            if pf.video is None:
                try:
                    old, _ = self._parse(data)
                    pf.video = old.video
                except MasktrackError:
                    pass
            if pf.video is None:
                pf.video = self.default_video_field()
            with output_lock(self.path.parent, "annotate"):
                if data is not None and self._is_legacy_bytes(data):
                    self._keep_legacy(data)
                save_prompts(pf, self.path)
            new = _revision(self._read())
            self.known_masks = {k.mask for o in pf.objects for k in o.keyframes if k.mask}
            return new, new

    def _keep_legacy(self, data: bytes) -> Path:
        """Keep the legacy original beside the file (``NAME.legacy.json``, ``NAME.legacy-2.json``...) before v1 replaces it."""
        n = 1
        while True:
            tag = ".legacy" if n == 1 else f".legacy-{n}"
            backup = self.path.with_name(self.path.stem + tag + self.path.suffix)
            if not backup.exists():
                atomic_write_bytes(backup, data)
                return backup
            if backup.read_bytes() == data:
                return backup
            n += 1

    @staticmethod
    def _is_legacy_bytes(data: bytes) -> bool:
        try:
            return is_legacy(json.loads(data.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return False


class FrameServer:
    """Encoded frames by index, read under a lock (video decoders are not thread-safe), with a small LRU cache."""

    def __init__(self, video: VideoSource) -> None:
        self.video = video
        self.lock = threading.Lock()
        self.cache: OrderedDict[int, bytes] = OrderedDict()

    def frame(self, index: int) -> np.ndarray:
        with self.lock:
            return self.video.read(index)

    def jpeg(self, index: int) -> bytes:
        import cv2

        with self.lock:
            if index in self.cache:
                self.cache.move_to_end(index)
                return self.cache[index]
            rgb = self.video.read(index)
            ok, buf = cv2.imencode(
                ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
            )
            if not ok:  # pragma: no cover - cv2 encodes any uint8 image
                raise RuntimeError("JPEG encoding failed")
            data = buf.tobytes()
            self.cache[index] = data
            while len(self.cache) > FRAME_CACHE:
                self.cache.popitem(last=False)
            return data


class PreviewRequest(BaseModel):
    """The current object's clicks on the current frame."""

    model_config = ConfigDict(extra="forbid")
    object: str
    frame: int
    points: list[tuple[float, float]] = []
    labels: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []


class Previewer:
    """One-frame masks from the configured backend; the backend instance is loaded once and reused."""

    def __init__(self, video: VideoSource, config: PipelineConfig | None) -> None:
        self.video = video
        self.config = config
        self.lock = threading.Lock()
        self.backends: dict[str, Any] = {}

    def backend_for(self, obj: str) -> tuple[str, dict[str, Any]]:
        """The backend (name, options) of the session that holds ``obj``; else the config's first; else the default."""
        from masktrack.segment.registry import DEFAULT_BACKEND

        if self.config is None:
            return DEFAULT_BACKEND, {}
        for s in self.config.sessions:
            if obj in s.object_names():
                return s.backend, dict(s.options)
        s = self.config.sessions[0]
        return s.backend, dict(s.options)

    def mask(self, req: PreviewRequest, color: tuple[int, int, int]) -> tuple[np.ndarray, str]:
        from masktrack.segment.base import FramePrompt, SessionObject
        from masktrack.segment.registry import load_backend

        name, options = self.backend_for(req.object)
        key = name + json.dumps(options, sort_keys=True, default=str)
        with self.lock:
            backend = self.backends.get(key)
            if backend is None:
                backend = load_backend(name, **options)
                self.backends[key] = backend
            prompt = FramePrompt(
                frame=req.frame,
                object=req.object,
                points=np.asarray(req.points, np.float32).reshape(-1, 2),
                labels=np.asarray(req.labels, np.int32).reshape(-1),
                boxes=np.asarray(req.boxes, np.float32).reshape(-1, 4),
            )
            session = backend.open_session(self.video, [SessionObject(req.object, 1, color)])
            try:
                session.add_prompt(prompt)
                gen = session.propagate(req.frame)
                try:
                    _, masks = next(gen)
                finally:
                    gen.close()  # type: ignore[union-attr]
            finally:
                session.close()
        m = np.asarray(masks[req.object], bool)
        if m.shape != self.video.size:
            raise RuntimeError(f"backend {name!r} returned a {m.shape} mask for a {self.video.size} video")
        return m, name

    def close(self) -> None:
        for b in self.backends.values():
            try:
                b.close()
            except Exception:
                log.exception("closing backend failed")
        self.backends.clear()


def _mask_png(mask: np.ndarray) -> bytes:
    """White RGBA PNG, opaque where the mask is set: the page tints it with the object's colour."""
    from PIL import Image

    h, w = mask.shape
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[mask] = 255
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


async def _json_body(request: Request) -> Any | JSONResponse:
    """The request's JSON document, or the 4xx response explaining why not."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        return _error(415, "send the body as application/json")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        return _error(413, f"body larger than {MAX_BODY} bytes")
    # counted while streaming: a chunked upload without Content-Length stops at the limit, not after it
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        parts.append(chunk)
    body = b"".join(parts)
    try:
        doc = json.loads(body.decode("utf-8"))
    except RecursionError:
        return _error(400, f"JSON nested deeper than {MAX_DEPTH} levels")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return _error(400, f"malformed JSON: {e}")
    if _depth_exceeds(doc, MAX_DEPTH):
        return _error(400, f"JSON nested deeper than {MAX_DEPTH} levels")
    return doc


def _depth_exceeds(doc: Any, limit: int) -> bool:
    """True when ``doc`` nests lists/objects deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def _save_allowed(request: Request, save_token: str) -> bool:
    """A save comes from this app's own page (browsers always send Origin on PUT) or names the run's token.

    The Host check already stops DNS rebinding; this stops other local
    programs and cross-site forms from writing the prompt file.
    """
    if secrets.compare_digest(request.headers.get("x-masktrack-token", ""), save_token):
        return True
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    return origin is not None and host is not None and origin in (f"http://{host}", f"https://{host}")


def create_app(
    video: str | os.PathLike[str] | VideoSource,
    prompts_path: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str] | PipelineConfig | None = None,
    objects: Sequence[str] | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The app for one video and one prompt file.

    ``objects`` (and the config's session objects) are offered in the page
    even when the file has no clicks for them yet.  ``allowed_hosts`` are the
    Host header values accepted (localhost names by default; ``["*"]`` when
    serving on another interface on purpose).  Raises :class:`PromptError`
    when an existing prompt file cannot be loaded, so the CLI fails before a
    browser opens.
    """
    src = video if isinstance(video, VideoSource) else open_video(Path(video))
    cfg = load_config(Path(config)) if isinstance(config, (str, os.PathLike)) else config
    wanted: list[tuple[str, int | None, Any]] = _names_from_config(cfg) if cfg is not None else []
    wanted += [(n, None, None) for n in (objects or [])]
    bad = [n for n, _, _ in wanted if not n or not n.replace("_", "a").replace("-", "a").isalnum()]
    if bad:
        raise PromptError(
            f"object names use letters, digits, '_' and '-' only, got {bad[0]!r}", field="objects"
        )
    store = PromptStore(Path(prompts_path), src, wanted)
    store.check_readable()
    frames = FrameServer(src)
    previewer = Previewer(src, cfg)
    static = _static_files()
    # frames are cached by the browser; the token in their URLs keeps another video served later
    # on the same port from showing this one's cached frames
    token = secrets.token_hex(8)
    # non-browser clients save with this header (the CLI prints it); the page is recognised by its Origin
    save_token = secrets.token_urlsafe(16)

    app = FastAPI(title="masktrack annotate", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts or LOCAL_HOSTS))
    app.state.store = store
    app.state.save_token = save_token
    app.state.previewer = previewer
    app.router.add_event_handler("shutdown", previewer.close)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        probs = [
            Problem(".".join(str(p) for p in e.get("loc", ())), str(e.get("msg", ""))) for e in exc.errors()
        ]
        return _error(422, "invalid request", probs)

    @app.middleware("http")
    async def _no_store(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/api/prompts"):
            response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/", response_class=HTMLResponse)
    def index() -> Response:
        data, media = static["index.html"]
        return Response(data, media_type=media, headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        if name not in static:
            return _error(404, "no such static file")
        data, media = static[name]
        return Response(data, media_type=media, headers={"Cache-Control": "no-cache"})

    @app.get("/api/video")
    def video_info() -> dict[str, Any]:
        return {
            "name": src.path.name,
            "num_frames": src.num_frames,
            "width": src.width,
            "height": src.height,
            "palette": [list(c) for c in PALETTE],
            "token": token,
        }

    @app.get("/api/frame/{index}")
    def frame(index: int) -> Response:
        if not 0 <= index < src.num_frames:
            return _error(404, f"frame {index} out of range [0, {src.num_frames - 1}]")
        try:
            data = frames.jpeg(index)
        except MasktrackError as e:
            return _error(500, str(e))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"})

    @app.get("/api/prompts")
    def get_prompts() -> dict[str, Any]:
        return store.state()

    @app.put("/api/prompts")
    async def put_prompts(request: Request) -> Response:
        if not _save_allowed(request, save_token):
            return _error(
                403, "saves come from the annotation page (Origin) or carry the X-Masktrack-Token header"
            )
        doc = await _json_body(request)
        if isinstance(doc, JSONResponse):
            return doc
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("revision"), str)
            or not isinstance(doc.get("prompts"), dict)
        ):
            return _error(422, "expected {revision: str, prompts: {...}, force?: bool}")
        force = doc.get("force", False)
        if not isinstance(force, bool):
            return _error(422, "force must be true or false")
        body = dict(doc["prompts"])
        body.setdefault("format", "masktrack.prompts")
        try:
            pf = PromptFile.model_validate(body)
        except ValidationError as e:
            return _error(422, "invalid prompts", pydantic_problems(e))
        probs = pf.problems(num_frames=src.num_frames, size=src.size)
        foreign = [
            Problem(
                f"objects[{o.name}].keyframes[frame {k.frame}].mask",
                "mask paths can only be kept from the loaded file",
            )
            for o in pf.objects
            for k in o.keyframes
            if k.mask is not None and k.mask not in store.known_masks
        ]
        if probs or foreign:
            return _error(
                422, f"{len(probs) + len(foreign)} problem(s); nothing was written", [*probs, *foreign]
            )
        pf = pf.merged()
        for o in pf.objects:
            o.keyframes = [k for k in o.keyframes if not k.is_empty()]
        pf.video = None  # the server decides what the file says about its video
        try:
            new, current = store.save(pf, doc["revision"], force)
        except FolderLockedError as e:
            return _error(423, str(e))
        except (
            MasktrackError,
            OSError,
        ) as e:  # disk full, no permission: the page says so, nothing half-written
            log.warning("saving %s failed: %s", store.path, e)
            return _error(500, f"could not write {store.path}: {e}")
        if new is None:
            return _error(
                409,
                "the prompt file changed on disk since this page loaded it (another tab or tool saved)",
                current_revision=current,
            )
        return JSONResponse({"revision": new, "warnings": [str(p) for p in side_warnings(pf, src.width)]})

    @app.post("/api/preview")
    async def preview(request: Request) -> Response:
        doc = await _json_body(request)
        if isinstance(doc, JSONResponse):
            return doc
        try:
            req = PreviewRequest.model_validate(doc)
        except ValidationError as e:
            return _error(422, "invalid preview request", pydantic_problems(e))
        try:
            kf_obj = ObjectPrompts.model_validate(
                {
                    "name": req.object,
                    "id": 1,
                    "keyframes": [
                        {"frame": req.frame, "points": req.points, "labels": req.labels, "boxes": req.boxes}
                    ],
                }
            )
        except ValidationError as e:
            return _error(422, "invalid preview request", pydantic_problems(e))
        probs = PromptFile(objects=[kf_obj]).problems(num_frames=src.num_frames, size=src.size)
        if probs:
            return _error(422, "invalid prompts", probs)
        if not req.points and not req.boxes:
            return _error(422, "no prompts on this frame for this object")
        color = default_color(1)  # the page tints the mask itself
        t0 = time.perf_counter()
        try:
            mask, backend = await _run_sync(previewer.mask, req, color)
        except MasktrackError as e:
            return _error(503, f"preview unavailable: {e}")
        except Exception as e:
            log.exception("preview failed")
            return _error(503, f"preview failed: {type(e).__name__}: {e}")
        ms = (time.perf_counter() - t0) * 1000
        return Response(
            _mask_png(mask),
            media_type="image/png",
            headers={
                "X-Mask-Area": str(int(mask.sum())),
                "X-Backend": backend,
                "X-Preview-Ms": f"{ms:.0f}",
                "Cache-Control": "no-store",
            },
        )

    return app


async def _run_sync(fn: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)

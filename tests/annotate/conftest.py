"""Fixtures for the annotation app: a deterministic preview backend, a live server, raw ASGI requests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from masktrack.segment.base import Backend, FramePrompt, Session

DISK_RADIUS = 6


class DiskSession(Session):
    """Mask = disks around positive points and filled boxes, minus disks around negative points."""

    def __init__(self, video, objects, backend) -> None:
        self.video = video
        self.objects = tuple(objects)
        self.backend = backend
        self.prompts: list[FramePrompt] = []

    def add_prompt(self, prompt: FramePrompt) -> None:
        self.prompts.append(prompt)

    def _mask(self, p: FramePrompt) -> np.ndarray:
        h, w = self.video.size
        yy, xx = np.mgrid[0:h, 0:w]
        m = np.zeros((h, w), bool)
        for (x, y), lab in zip(p.points, p.labels):
            if lab == 1:
                m |= (xx - x) ** 2 + (yy - y) ** 2 <= DISK_RADIUS**2
        for x0, y0, x1, y1 in p.boxes:
            m |= (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
        for (x, y), lab in zip(p.points, p.labels):
            if lab == 0:
                m &= (xx - x) ** 2 + (yy - y) ** 2 > DISK_RADIUS**2
        return m

    def propagate(self, start_frame, *, reverse=False):
        step = -1 if reverse else 1
        end = -1 if reverse else self.video.num_frames
        for f in range(start_frame, end, step):
            out = {o.name: np.zeros(self.video.size, bool) for o in self.objects}
            for p in self.prompts:
                if p.frame == f:
                    out[p.object] = self._mask(p)
            self.backend.frames_yielded += 1
            yield f, out

    def close(self) -> None:
        self.backend.sessions_closed += 1


class DiskBackend(Backend):
    name = "test_disk"
    instances: list[DiskBackend] = []

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sessions_opened = 0
        self.sessions_closed = 0
        self.frames_yielded = 0
        DiskBackend.instances.append(self)

    def open_session(self, video, objects):
        if self.fail:
            raise RuntimeError("model exploded")
        self.sessions_opened += 1
        return DiskSession(video, objects, self)


@pytest.fixture()
def disk_backend() -> Iterator[type[DiskBackend]]:
    from masktrack.segment.registry import register_backend, unregister_backend

    DiskBackend.instances.clear()
    register_backend("test_disk", DiskBackend)
    yield DiskBackend
    unregister_backend("test_disk")


def disk_config(
    video: Path, backend: str = "test_disk", options: dict | None = None, objects=("gripper_left", "cup")
):
    from masktrack.config import parse_config

    return parse_config(
        {
            "video": str(video),
            "output": str(video.parent / "out"),
            "sessions": [
                {"name": "s", "backend": backend, "options": options or {}, "objects": list(objects)}
            ],
        },
        base=video.parent,
    )


@pytest.fixture()
def make_client():
    """``make_client(app)`` -> a TestClient that talks to the app as 127.0.0.1 (the app refuses other Host names)."""
    from fastapi.testclient import TestClient

    clients = []

    def make(app):
        c = TestClient(app, base_url="http://127.0.0.1", headers={"Origin": "http://127.0.0.1"})
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def raw_request(
    app,
    method: str,
    raw_path: str,
    *,
    host: str = "127.0.0.1",
    body: bytes = b"",
    headers: dict | None = None,
    origin: str | None = "same",
) -> tuple[int, bytes]:
    """Send one request straight to the ASGI app with ``raw_path`` exactly as given (no client-side normalisation).

    ``path`` is percent-decoded like a server would, ``raw_path`` is kept verbatim.
    """
    from urllib.parse import unquote

    path_part, _, query = raw_path.partition("?")
    hdrs = [(b"host", host.encode())] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if origin is not None:  # what a browser sends with the page's PUT/POST ("same": the page's own origin)
        hdrs.append((b"origin", (f"http://{host}" if origin == "same" else origin).encode()))
    if body:
        hdrs.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path_part),
        "raw_path": path_part.encode("latin-1"),
        "query_string": query.encode(),
        "root_path": "",
        "headers": hdrs,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    sent = {"status": None, "body": b""}
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(msg):
        if msg["type"] == "http.response.start":
            sent["status"] = msg["status"]
        elif msg["type"] == "http.response.body":
            sent["body"] += msg.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return sent["status"], sent["body"]


@contextlib.contextmanager
def serve(app) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 and a free port in a background thread; yield its base URL."""
    import uvicorn

    from masktrack.cli.annotate import _bind

    sock = _bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture()
def raw():
    """``raw(app, method, raw_path, ...)`` -> (status, body): see :func:`raw_request`."""
    return raw_request


@pytest.fixture()
def live():
    """``with live(app) as url:`` runs the app on a free localhost port."""
    return serve


@pytest.fixture()
def make_config():
    """``make_config(video, backend=..., options=..., objects=...)`` -> a PipelineConfig with one session."""
    return disk_config

"""The annotation app under hostile clients: streamed body limit, bounded nesting, Origin/token on saves, no temp files."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

pytest.importorskip("fastapi")

from masktrack.annotate.app import MAX_BODY, create_app


@pytest.fixture()
def app_and_prompts(tmp_path, synth_dataset):
    cam = sorted((synth_dataset / "pick_cube/train/scene_0").glob("cam*"))[0]
    shutil.copytree(cam / "color", tmp_path / "frames")
    prompts = tmp_path / "prompts.json"
    return create_app(tmp_path / "frames", prompts, objects=["arm"]), prompts


def _asgi(app, method, path, chunks, headers):
    """Send a request body in ``chunks`` (no Content-Length: chunked upload); returns (status, body, chunks read)."""
    sent = {"status": None, "body": b""}
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    read = {"n": 0}

    async def receive():
        if queue:
            read["n"] += 1
            return queue.pop(0)
        return {"type": "http.disconnect"}

    async def send(msg):
        if msg["type"] == "http.response.start":
            sent["status"] = msg["status"]
        elif msg["type"] == "http.response.body":
            sent["body"] += msg.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *[(k.encode(), v.encode()) for k, v in headers.items()]],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    return sent["status"], sent["body"], read["n"]


PAGE = {"content-type": "application/json", "origin": "http://127.0.0.1"}


def test_chunked_upload_is_cut_at_the_limit_while_streaming(app_and_prompts):
    app, prompts = app_and_prompts
    chunk = b" " * (1 << 20)
    n_chunks = (MAX_BODY >> 20) + 40  # 48 MiB offered, no Content-Length
    status, _, read = _asgi(app, "PUT", "/api/prompts", [chunk] * n_chunks, PAGE)
    assert status == 413
    assert read <= (MAX_BODY >> 20) + 2  # stopped reading at the limit, not after the whole upload
    assert not prompts.exists()


@pytest.mark.parametrize("depth", [40, 100000])
def test_deep_json_is_400_not_500(app_and_prompts, depth):
    app, prompts = app_and_prompts
    body = b'{"revision": "absent", "prompts": ' + b"[" * depth + b"]" * depth + b"}"
    status, resp, _ = _asgi(app, "PUT", "/api/prompts", [body], PAGE)
    assert status == 400 and "nested" in json.loads(resp)["detail"]
    assert not prompts.exists()


def _doc():
    return {
        "revision": "absent",
        "prompts": {
            "objects": [
                {"name": "arm", "id": 1, "keyframes": [{"frame": 0, "points": [[10, 10]], "labels": [1]}]}
            ]
        },
    }


@pytest.mark.parametrize(
    "headers,status",
    [
        ({}, 403),  # a script without the token
        ({"origin": "http://evil.example"}, 403),  # another site
        ({"origin": "null"}, 403),
        ({"x-masktrack-token": "guess"}, 403),
        ({"origin": "http://127.0.0.1"}, 200),  # the page itself
        ({"x-masktrack-token": "<token>"}, 200),  # a script given the run's token
    ],
)
def test_saves_need_the_page_origin_or_the_run_token(app_and_prompts, headers, status):
    app, prompts = app_and_prompts
    headers = {k: (app.state.save_token if v == "<token>" else v) for k, v in headers.items()}
    got, resp, _ = _asgi(
        app,
        "PUT",
        "/api/prompts",
        [json.dumps(_doc()).encode()],
        {"content-type": "application/json", **headers},
    )
    assert got == status, resp
    assert prompts.exists() == (status == 200)


def test_failed_save_leaves_no_temp_file(app_and_prompts, monkeypatch):
    import errno

    from masktrack.io import atomic

    app, prompts = app_and_prompts

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(atomic.os, "replace", full)
    status, _, _ = _asgi(app, "PUT", "/api/prompts", [json.dumps(_doc()).encode()], PAGE)
    assert status == 500
    assert not prompts.exists()
    assert [p.name for p in prompts.parent.iterdir() if ".tmp-" in p.name] == []

"""Annotation app latency: what a click or a frame step costs, through a real localhost HTTP server.

    python bench/annotate.py [--frames 60] [--width 1280] [--height 720] [--json PATH]

Measures, against uvicorn on 127.0.0.1 (one client, sequential requests):
  * frame step: ``GET /api/frame/i`` for frames never asked before (decode + JPEG encode)
    and again (served from the server's small LRU cache);
  * ``GET /api/prompts`` and ``PUT /api/prompts`` (validate + atomic write + fsync) for a
    prompt file of 4 objects x 50 keyframes x 5 points;
  * one live-preview mask with the default backend (``classic``) when it is installed.
Reports medians and 95th percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "annotate"))

from conftest import serve


def make_frames(folder: Path, n: int, w: int, h: int) -> None:
    import cv2

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    for i in range(n):
        img = np.roll(base, 8 * i, axis=1)
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])


class Reply:
    def __init__(self, resp) -> None:
        self.status_code = resp.status
        self.headers = dict(resp.getheaders())
        self.body = resp.read()

    def json(self):
        return json.loads(self.body)


class Client:
    """Keep-alive HTTP/1.1 like a browser (httpx adds a ~40 ms delayed-ACK stall per request on Linux here)."""

    def __init__(self, url: str) -> None:
        import http.client
        from urllib.parse import urlparse

        u = urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)

    def request(self, method: str, path: str, body=None) -> Reply:
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json"}
        self.conn.request(method, path, body=data, headers=headers)
        return Reply(self.conn.getresponse())

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def put(self, path: str, json=None) -> Reply:
        return self.request("PUT", path, json)

    def post(self, path: str, json=None) -> Reply:
        return self.request("POST", path, json)


def stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from masktrack.annotate.app import create_app

    result: dict = {"video": f"{args.frames} JPEG frames {args.width}x{args.height}"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_frames(root / "frames", args.frames, args.width, args.height)
        app = create_app(
            root / "frames", root / "prompts.json", objects=["arm", "gripper_left", "gripper_right", "cup"]
        )
        with serve(app) as url:
            c = Client(url)

            def timed(fn):
                t = time.perf_counter()
                r = fn()
                assert r.status_code < 300, (r.status_code, r.body[:200])
                return (time.perf_counter() - t) * 1000, r

            order = list(range(args.frames))
            cold = [timed(lambda i=i: c.get(f"/api/frame/{i}"))[0] for i in order]
            warm_idx = order[-32:]  # within the LRU cache
            warm = [timed(lambda i=i: c.get(f"/api/frame/{i}"))[0] for i in warm_idx]
            result["frame_uncached"] = stats(cold)
            result["frame_cached"] = stats(warm)

            rng = np.random.default_rng(1)
            objs = []
            for oid, name in enumerate(["arm", "gripper_left", "gripper_right", "cup"], start=1):
                kfs = []
                for f in range(0, min(args.frames, 50)):
                    pts = (
                        np.c_[rng.uniform(0, args.width - 1, 5), rng.uniform(0, args.height - 1, 5)]
                        .round(2)
                        .tolist()
                    )
                    kfs.append({"frame": f, "points": pts, "labels": [1, 1, 1, 0, 0], "boxes": []})
                objs.append({"name": name, "id": oid, "keyframes": kfs})
            gets, puts = [], []
            for _ in range(20):
                ms, r = timed(lambda: c.get("/api/prompts"))
                gets.append(ms)
                rev = r.json()["revision"]
                ms, _ = timed(
                    lambda rev=rev: c.put(
                        "/api/prompts", json={"revision": rev, "prompts": {"objects": objs}}
                    )
                )
                puts.append(ms)
            result["prompts_get"] = stats(gets)
            result["prompts_save"] = stats(puts)
            result["prompt_file"] = (
                f"4 objects x {min(args.frames, 50)} keyframes x 5 points, {(root / 'prompts.json').stat().st_size} bytes"
            )

            req = {"object": "cup", "frame": 5, "points": [[args.width / 2, args.height / 2]], "labels": [1]}
            r = c.post("/api/preview", json=req)
            if r.status_code == 200:
                first = float(r.headers["X-Preview-Ms"])
                again = [float(c.post("/api/preview", json=req).headers["X-Preview-Ms"]) for _ in range(5)]
                result["preview_classic"] = {"first_ms": first, **stats(again)}
            else:
                result["preview_classic"] = {"unavailable": r.json()["detail"]}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""``masktrack view --web``: the printed URL shows the recording in a real browser; ports; clean-up.

The browser test drives Debian's Chromium (CI installs it) through Playwright with Rerun's WebGL
renderer on SwiftShader, and tells the recording from Rerun's welcome page by the screenshot: the
recording's camera images and points are colourful, the welcome page is grey text on white.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"


def _sibling(path: Path):
    """A sibling test module by path (tests are no package; --import-mode=importlib)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_mt_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_e2e = _sibling(TESTS / "annotate" / "test_e2e.py")
ARGS, CHROMIUM, artifacts_dir = _e2e.ARGS, _e2e.CHROMIUM, _e2e.artifacts_dir
write = _sibling(TESTS / "viz" / "test_rerun.py").write


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _start_view(folder: Path, port: int, grpc: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "masktrack", "view", str(folder), "--web", "--port", str(port)]
        + ["--grpc-port", str(grpc)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()  # printed once the server listens
    return proc, url


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=40)  # the server gets 5 s for SIGTERM, then SIGKILL; a loaded CI box is slow
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(
                f"`masktrack view --web` did not exit on signal {sig}; stderr: {err[-2000:]}"
            ) from None


def _colourful(png: bytes) -> float:
    """Fraction of clearly coloured pixels (HSV saturation > 0.35, value > 0.2)."""
    import io

    from PIL import Image

    hsv = np.asarray(Image.open(io.BytesIO(png)).convert("RGB").convert("HSV"), np.float32) / 255.0
    return float(((hsv[..., 1] > 0.35) & (hsv[..., 2] > 0.2)).mean())


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_printed_url_shows_the_recording_in_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    write(tmp_path)
    port, grpc = _free_port(), _free_port()
    proc, url = _start_view(tmp_path / "out", port, grpc)
    try:
        assert url.startswith(
            f"http://127.0.0.1:{port}/?url=rerun%2Bhttp%3A%2F%2F127.0.0.1%3A{grpc}%2Fproxy"
        ), (
            url,
            proc.stderr.read() if proc.poll() is not None and proc.stderr else "",
        )
        with sync_api.sync_playwright() as p:
            b = p.chromium.launch(
                executable_path=CHROMIUM,
                args=[a for a in ARGS if a != "--disable-gpu"]
                + ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"],
            )
            try:
                page = b.new_page(viewport={"width": 1024, "height": 640})

                def settle(u: str, want_colour: bool) -> tuple[float, bytes]:
                    page.goto(u, timeout=120_000)
                    page.wait_for_selector("canvas", timeout=120_000)
                    frac, shot = 0.0, b""
                    end = time.monotonic() + 90  # the wasm viewer loads, then streams the recording in
                    time.sleep(3.0)
                    while time.monotonic() < end:
                        shot = page.screenshot(timeout=120_000)  # software GL on a busy 2-core box is slow
                        frac = _colourful(shot)
                        if frac > 0.03 or not want_colour:
                            break
                        time.sleep(2.0)
                    return frac, shot

                rec, shot = settle(url + "&renderer=webgl", True)
                (artifacts_dir() / "view_web.png").write_bytes(shot)
                # the bare address (what `view --web` used to print) is Rerun's empty welcome page
                time.sleep(5.0)
                welcome, _ = settle(f"http://127.0.0.1:{port}/?renderer=webgl", False)
            finally:
                b.close()
        assert welcome < 0.01, welcome
        assert rec > 0.03, f"the recording did not appear ({rec:.4f} of the page coloured)"
    finally:
        _stop(proc)
    assert proc.returncode == 0
    for _ in range(50):
        if not (_listening(port) or _listening(grpc)):
            break
        time.sleep(0.1)
    assert not _listening(port) and not _listening(grpc), "SIGTERM left the Rerun server running"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_the_server_dies_with_the_command(tmp_path: Path, sig: int) -> None:
    if sig == signal.SIGKILL and not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux only")
    write(tmp_path)
    port, grpc = _free_port(), _free_port()
    proc, url = _start_view(tmp_path / "out", port, grpc)
    try:
        assert "?url=rerun" in url and _listening(port) and _listening(grpc)
    finally:
        _stop(proc, sig)
    for _ in range(100):
        if not (_listening(port) or _listening(grpc)):
            break
        time.sleep(0.1)
    assert not _listening(port) and not _listening(grpc), f"signal {sig} left the Rerun server running"


def test_a_named_port_that_is_taken_is_exit_2_and_no_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from masktrack.cli.main import main

    write(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert main(["view", str(tmp_path / "out"), "--web", "--port", str(taken)]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert f"--port {taken}: port is taken" in cap.err


def test_a_default_port_that_is_taken_is_replaced_by_a_free_one() -> None:
    from masktrack.cli.view import choose_ports, port_free

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        free = _free_port()
        port, grpc = choose_ports(taken, free, explicit_port=False, explicit_grpc=True)
        assert port != taken and port != grpc and port_free(port)
        assert grpc == free


def test_open_opens_the_recording_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import webbrowser

    from masktrack.cli.main import main

    write(tmp_path)
    port, grpc = _free_port(), _free_port()
    opened: list[str] = []

    def fake_open(url: str, *a, **k) -> bool:
        opened.append(url)
        os.kill(os.getpid(), signal.SIGTERM)  # then stop, as a user's Ctrl-C / kill would
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    rc = main(
        ["view", str(tmp_path / "out"), "--web", "--open", "--port", str(port), "--grpc-port", str(grpc)]
    )
    assert rc == 0
    out = capsys.readouterr().out.strip()
    assert opened == [out] and out.startswith(f"http://127.0.0.1:{port}/?url=rerun%2Bhttp")
    for _ in range(50):
        if not (_listening(port) or _listening(grpc)):
            break
        time.sleep(0.1)
    assert not _listening(port) and not _listening(grpc)

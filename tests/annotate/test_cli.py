"""``masktrack annotate``: argument handling, exit-2 errors, and a real server started from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from masktrack.cli.annotate import default_prompts_path
from masktrack.cli.main import main


def test_help_lists_the_options(capsys):
    assert main(["annotate", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--prompts", "--config", "--objects", "--host", "--port", "--no-browser"):
        assert opt in out


def test_default_prompts_path(tmp_path):
    (tmp_path / "cam0").mkdir()
    (tmp_path / "clip.mp4").write_bytes(b"")
    assert default_prompts_path(tmp_path / "cam0") == tmp_path / "cam0.prompts.json"
    assert default_prompts_path(tmp_path / "clip.mp4") == tmp_path / "clip.prompts.json"


def test_missing_video_is_exit_2(tmp_path, capsys):
    assert main(["annotate", str(tmp_path / "nope"), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert "masktrack: error:" in err and "nope" in err


def test_no_video_and_no_config_is_a_usage_error(capsys):
    assert main(["annotate", "--no-browser"]) == 2
    assert "VIDEO or --config" in capsys.readouterr().err


def test_bad_prompt_file_is_exit_2_before_serving(square_video, tmp_path, capsys):
    bad = tmp_path / "p.json"
    bad.write_text(
        json.dumps({"format": "masktrack.prompts", "version": 1, "objects": [{"name": "a b", "id": 1}]})
    )
    assert main(["annotate", str(square_video[0]), "--prompts", str(bad), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "objects[0].name" in err


def test_bad_object_names_are_exit_2(square_video, capsys):
    assert main(["annotate", str(square_video[0]), "--objects", "ok,not ok", "--no-browser"]) == 2
    assert "object names" in capsys.readouterr().err


@pytest.mark.slow
def test_serves_on_localhost_with_a_free_port(square_video, tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        f"video: {square_video[0]}\noutput: out\nprompts: p.json\nsessions:\n  - name: s\n    objects: [arm, gripper_left]\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "masktrack",
            "annotate",
            "--config",
            str(cfg),
            "--objects",
            "cup",
            "--no-browser",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("open http://127.0.0.1:"):
                url = line.split()[1]
        assert url, proc.stderr.read() if proc.poll() is not None else "no address printed"
        st = json.load(urllib.request.urlopen(url + "api/prompts", timeout=10))
        assert st["path"] == str(tmp_path / "p.json")  # the config's prompt file
        assert [o["name"] for o in st["prompts"]["objects"]] == ["arm", "gripper_left", "cup"]
        info = json.load(urllib.request.urlopen(url + "api/video", timeout=10))
        assert info["num_frames"] == 12
    finally:
        proc.terminate()
        proc.wait(10)


def test_listening_socket_is_tcp_nodelay():
    """asyncio sets TCP_NODELAY on accepted sockets only when the socket says proto=TCP; without it every
    keep-alive response waits ~40 ms for a delayed ACK (measured: 44 ms -> 4 ms per frame step)."""
    import socket

    from masktrack.cli.annotate import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert sock.getsockname()[0] == "127.0.0.1" and sock.getsockname()[1] > 0
    finally:
        sock.close()

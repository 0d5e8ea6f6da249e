"""Every user error looks the same: ``masktrack: error: ...`` on stderr, exit code 2, no traceback."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "args, words",
    [
        (["segment"], "Missing argument 'CONFIG'"),  # click usage error
        (["view", "--nope", "."], "No such option '--nope'"),
        (["prompts", "validate", "p.json", "--video"], "requires an argument"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
    ],
)
def test_click_errors_use_the_masktrack_error_style(cli, args, words):
    rc, out, err = cli(*args)
    assert rc == 2
    assert any(line.startswith("masktrack: error: ") and words in line for line in err), err
    assert not any(line.startswith("Error:") for line in err)
    assert not any("Traceback" in line for line in err)


def test_click_exception_is_exit_2_too(cli, tmp_path, monkeypatch):
    # `view` without a display raises a plain ClickException (was `Error: ...`, exit 1)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    (tmp_path / "r.rrd").write_bytes(b"")
    rc, out, err = cli("view", tmp_path / "r.rrd")
    assert rc == 2 and err and err[-1].startswith("masktrack: error: no display")

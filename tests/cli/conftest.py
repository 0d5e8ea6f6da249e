"""CLI tests run ``masktrack`` in-process; the oracle backend fixtures live in tests/conftest.py."""

from __future__ import annotations

import pytest


@pytest.fixture()
def cli(capsys):
    """Run ``masktrack ARGS`` in-process; returns (exit code, stdout, stderr lines)."""
    from masktrack.cli.main import main

    def run(*args: str):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, [line for line in err.splitlines() if line.strip()]

    return run

"""CLI tests reuse the oracle backend and colour video of tests/segment (loaded by path)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SEGMENT_TESTS = Path(__file__).resolve().parents[1] / "segment"


def _oracle_module():
    name = "masktrack_oracle"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SEGMENT_TESTS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture()
def oracle_mod():
    return _oracle_module()


@pytest.fixture()
def oracle(oracle_mod):
    from masktrack.segment.registry import register_backend, unregister_backend

    register_backend("oracle", oracle_mod.OracleBackend)
    yield oracle_mod.OracleBackend
    unregister_backend("oracle")
    oracle_mod.OracleBackend.instances.clear()


@pytest.fixture()
def colour_video(tmp_path, oracle_mod) -> Path:
    return oracle_mod.make_colour_video(tmp_path / "frames")


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

"""The deterministic "oracle" test backend (see masktrack_oracle.py) and its colour-square video."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def load_oracle_module():
    """Import tests/segment/masktrack_oracle.py under its own name (pytest uses --import-mode=importlib)."""
    name = "masktrack_oracle"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture()
def oracle_mod():
    return load_oracle_module()


@pytest.fixture()
def oracle(oracle_mod):
    """Register the oracle backend as "oracle" for one test; unregister after."""
    from masktrack.segment.registry import register_backend, unregister_backend

    oracle_mod.OracleBackend.instances.clear()
    register_backend("oracle", oracle_mod.OracleBackend)
    yield oracle_mod.OracleBackend
    unregister_backend("oracle")
    oracle_mod.OracleBackend.instances.clear()


@pytest.fixture()
def colour_video(tmp_path, oracle_mod) -> Path:
    return oracle_mod.make_colour_video(tmp_path / "frames")

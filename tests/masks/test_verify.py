"""Compose and segment re-runs trust only what verifies (issue 18, "Trust only what verifies").

A complete composed output or mask-store session records each file's size and BLAKE2b hash; a
truncated or bit-flipped file is found on the next run, and only the damaged part is redone (one
composed frame; the whole session for the store, whose frames come from one propagation), and the
report says ``repaired``.  Before the manifest layer a truncated composed PNG was reused (only its
existence was checked) and a bit-flipped store frame passed the zip directory check.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from masktrack.io.manifest import Status
from masktrack.masks.export import ComposedStore, load_composed, run_compose
from masktrack.masks.store import MaskStore

from .test_export import T, job, reference  # noqa: F401  (job is a fixture)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x10
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip], ids=["truncated", "bitflip"])
def test_damaged_composed_png_is_rewritten_alone(job, damage):  # noqa: F811
    cfg, m = job
    cfg.compose = {"arm_only": cfg.compose["arm_only"]}
    cs = ComposedStore(cfg.output, "arm_only")
    first = run_compose(cfg, progress=False)["arm_only"]
    assert first.status == Status.COMPUTED and max(first.pixels) > 0
    mtimes = {f: cs.png_path(f).stat().st_mtime_ns for f in range(T)}
    damage(cs.png_path(2))
    res = run_compose(cfg, progress=False)["arm_only"]
    assert res.status == Status.REPAIRED and res.repaired == [2]
    assert (res.written, res.skipped) == (1, T - 1)
    assert all(cs.png_path(f).stat().st_mtime_ns == mtimes[f] for f in range(T) if f != 2)
    np.testing.assert_array_equal(load_composed(cfg.output, "arm_only"), reference(m))
    assert run_compose(cfg, progress=False)["arm_only"].status == Status.REUSED


def test_damaged_packed_copy_is_rewritten(job):  # noqa: F811
    cfg, m = job
    cfg.compose = {"robot": cfg.compose["robot"]}
    cs = ComposedStore(cfg.output, "robot")
    run_compose(cfg, progress=False)
    _flip(cs.packed_path(4))
    res = run_compose(cfg, progress=False)["robot"]
    assert res.status == Status.REPAIRED and res.repaired == [4]
    want = m["arm"] | m["gripper_left"] | m["gripper_right"]
    assert want.any()
    np.testing.assert_array_equal(load_composed(cfg.output, "robot"), want)


def test_composed_output_of_previous_layout_is_read_and_upgraded(job):  # noqa: F811
    """No hashes to check: every frame is decoded; those that decode are kept, the rest rewritten."""
    cfg, m = job
    cfg.compose = {"arm_only": cfg.compose["arm_only"]}
    cs = ComposedStore(cfg.output, "arm_only")
    run_compose(cfg, progress=False)
    meta = json.loads(cs.manifest_path.read_text())
    legacy = {k: v for k, v in meta.items() if k not in ("outputs", "format", "stage", "tool_version")}
    cs.manifest_path.write_text(json.dumps(legacy))
    mtimes = {f: cs.png_path(f).stat().st_mtime_ns for f in range(T)}
    res = run_compose(cfg, progress=False)["arm_only"]
    assert res.status == Status.REUSED and res.written == 0
    assert {f: cs.png_path(f).stat().st_mtime_ns for f in range(T)} == mtimes
    assert len(json.loads(cs.manifest_path.read_text())["outputs"]) == T  # upgraded: hashes recorded
    # an old-layout folder with a truncated frame: that frame is rewritten, and the report says so
    cs.manifest_path.write_text(json.dumps(legacy))
    _truncate(cs.png_path(4))
    res = run_compose(cfg, progress=False)["arm_only"]
    assert res.status == Status.REPAIRED and res.repaired == [4] and res.written == 1
    np.testing.assert_array_equal(load_composed(cfg.output, "arm_only"), reference(m))


def test_bitflipped_store_frame_fails_verification(job):  # noqa: F811
    cfg, _ = job
    st = MaskStore(cfg.output).session("arm")
    m = st.manifest()
    assert m is not None and st.is_complete(m.key) and st.verify() == []
    _flip(st.frame_path(3))
    assert st.verify() == [3] and not st.is_complete(m.key)


def test_store_of_previous_layout_is_read_and_upgraded(job):  # noqa: F811
    cfg, _ = job
    st = MaskStore(cfg.output).session("arm")
    data = json.loads(st.manifest_path.read_text())
    legacy = {k: v for k, v in data.items() if k not in ("outputs", "format", "stage", "tool_version")}
    st.manifest_path.write_text(json.dumps({**legacy, "version": 1}))
    assert st.verify() == []  # every frame decodes (CRC checked) ...
    up = st.manifest()
    assert up is not None and up.version == 2 and len(up.outputs) == T  # ... so hashes are recorded
    _truncate(st.frame_path(1))
    st.manifest_path.write_text(json.dumps({**legacy, "version": 1}))
    assert st.verify() == [1]

"""masktrack.io.manifest: the shared manifest shape, verification and the Status vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

from masktrack.io.manifest import (
    Manifest,
    Status,
    begin,
    damaged_outputs,
    entry_for,
    finish,
    is_current,
    legacy_layout,
    read_manifest,
)


def _write(root: Path) -> dict[str, Path]:
    files = {"a.bin": root / "a.bin", "sub/b.bin": root / "sub" / "b.bin"}
    files["sub/b.bin"].parent.mkdir(parents=True)
    files["a.bin"].write_bytes(b"alpha" * 100)
    files["sub/b.bin"].write_bytes(bytes(range(256)))
    return files


def test_complete_last_and_verified(tmp_path: Path) -> None:
    files = _write(tmp_path)
    mpath = tmp_path / "manifest.json"
    m = begin(mpath, Manifest(stage="demo", key="k1", options={"x": 1}))
    assert read_manifest(mpath, "demo").complete is False  # written before any output
    assert not is_current(tmp_path, read_manifest(mpath, "demo"), "k1")
    m = finish(mpath, m, {n: entry_for(p) for n, p in files.items()}, stats={"n": 2})
    back = read_manifest(mpath, "demo")
    assert back is not None and back.complete and back.outputs == m.outputs
    assert back.model_extra == {"stats": {"n": 2}}
    assert is_current(tmp_path, back, "k1") and not is_current(tmp_path, back, "k2")
    # same size, one bit flipped: caught by the hash; truncation: caught by the size
    data = bytearray(files["sub/b.bin"].read_bytes())
    data[7] ^= 1
    files["sub/b.bin"].write_bytes(bytes(data))
    assert damaged_outputs(tmp_path, back) == ["sub/b.bin"]
    files["a.bin"].write_bytes(b"alpha")
    assert damaged_outputs(tmp_path, back) == ["a.bin", "sub/b.bin"]
    files["a.bin"].unlink()
    assert "a.bin" in damaged_outputs(tmp_path, back)


def test_foreign_unreadable_and_legacy_manifests(tmp_path: Path) -> None:
    mpath = tmp_path / "m.json"
    assert read_manifest(mpath, "x") is None  # absent
    mpath.write_text("{not json")
    assert read_manifest(mpath, "x") is None and not legacy_layout(mpath)
    finish(mpath, Manifest(stage="compose", key="k"), {})
    assert read_manifest(mpath, "track") is None  # another stage's manifest is never taken for ours
    mpath.write_text(json.dumps({"key": "k", "complete": True}))  # the layout before this module
    assert read_manifest(mpath, "compose") is None and legacy_layout(mpath)


def test_status_is_one_vocabulary_of_plain_strings() -> None:
    assert [str(s) for s in Status] == ["computed", "reused", "repaired", "skipped", "failed"]
    assert Status.REUSED == "reused" and json.dumps({"s": Status.REPAIRED}) == '{"s": "repaired"}'

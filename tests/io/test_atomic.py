"""Atomic writes leave the old file or the new one, never a partial one."""

from __future__ import annotations

import json

import pytest

from masktrack.io.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    canonical_json,
    clean_temp_files,
    hash_file,
    hash_files,
    hash_json,
    is_temp_file,
)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "a.json"
    atomic_write_json(p, {"x": 1})
    atomic_write_json(p, {"x": 2})
    assert json.loads(p.read_text()) == {"x": 2}
    assert [q.name for q in p.parent.iterdir()] == ["a.json"]


def test_error_inside_atomic_path_keeps_old_file(tmp_path):
    p = tmp_path / "a.bin"
    atomic_write_bytes(p, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_bytes(b"half")
            assert is_temp_file(tmp) and tmp.suffix == ".bin"
            raise RuntimeError("killed")
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["a.bin"]


def test_clean_temp_files_removes_only_leftovers(tmp_path):
    (tmp_path / ".a.bin.tmp-123-abcd.bin").write_bytes(b"x")
    (tmp_path / "a.bin").write_bytes(b"y")
    (tmp_path / ".hidden").write_bytes(b"z")
    assert clean_temp_files(tmp_path) == 1
    assert sorted(q.name for q in tmp_path.iterdir()) == [".hidden", "a.bin"]


def test_hashes_are_content_hashes(tmp_path):
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert hash_json({"b": 1, "a": 2}) == hash_json({"a": 2, "b": 1})
    assert hash_json({"a": 1}) != hash_json({"a": 2})
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert hash_file(a) == hash_file(b)
    h = hash_files([a, b], root=tmp_path)
    b.write_bytes(b"other")
    assert hash_files([a, b], root=tmp_path) != h

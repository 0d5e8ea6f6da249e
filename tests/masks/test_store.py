"""The resumable mask store: encoding, trust rule, corrupt files."""

from __future__ import annotations

import numpy as np
import pytest

from masktrack.errors import StoreError
from masktrack.masks.store import MaskStore, SessionManifest, StoredObject, decode_frame, encode_frame

H, W = 20, 37  # width not a multiple of 8: exercises packbits padding


def _manifest(n: int = 3, key: str = "k1") -> SessionManifest:
    return SessionManifest(
        session="s",
        key=key,
        backend="b",
        video="v",
        video_hash="vh",
        prompts_hash="ph",
        num_frames=n,
        height=H,
        width=W,
        objects=[
            StoredObject(name="a", id=1, color=(1, 2, 3)),
            StoredObject(name="b", id=2, color=(4, 5, 6)),
        ],
    )


def _masks(t: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(t)
    return {"a": rng.random((H, W)) > 0.5, "b": rng.random((H, W)) > 0.9}


def _write_session(store, n: int = 3, key: str = "k1"):
    s = store.session("s")
    m = _manifest(n, key)
    s.begin(m)
    for t in range(n):
        s.write_frame(t, _masks(t), ["a", "b"])
    s.finish(m, {"empty_frames": {"a": 0, "b": 0}})
    return s


def test_encode_decode_roundtrip():
    stack = np.random.default_rng(0).random((3, H, W)) > 0.5
    assert np.array_equal(decode_frame(encode_frame(stack), W), stack)


def test_roundtrip_and_trust_rule(tmp_path):
    store = MaskStore(tmp_path)
    s = _write_session(store)
    assert store.sessions() == ["s"]
    assert s.is_complete("k1") and not s.is_complete("k2")
    for t in range(3):
        got = s.read_frame(t)
        assert all(np.array_equal(got[k], _masks(t)[k]) for k in "ab")
    assert s.read_object("b").shape == (3, H, W)
    assert store.find_object("b") == ("s", "b")
    with pytest.raises(StoreError, match="no object"):
        s.read_object("c")


def test_missing_frame_or_incomplete_manifest_is_not_trusted(tmp_path):
    store = MaskStore(tmp_path)
    s = _write_session(store)
    s.frame_path(1).unlink()
    assert not s.is_complete("k1") and s.verify() == [1]
    s2 = _write_session(MaskStore(tmp_path / "x"))
    s2.begin(_manifest())  # a run that started and was killed
    assert not s2.is_complete("k1")
    with pytest.raises(StoreError, match="incomplete"):
        s2.read_frame(0)


def test_truncated_frame_file_left_by_a_killed_run(tmp_path):
    store = MaskStore(tmp_path)
    s = _write_session(store)
    p = s.frame_path(2)
    p.write_bytes(p.read_bytes()[:30])
    assert not s.is_complete("k1")  # the next `segment` run redoes the session
    with pytest.raises(StoreError, match="truncated") as e:
        s.read_frame(2)
    assert e.value.path == p


def test_write_stack_matches_write_frame(tmp_path):
    store = MaskStore(tmp_path)
    s = store.session("s")
    m = _manifest(1)
    s.begin(m)
    masks = _masks(0)
    s.write_stack(0, np.stack([masks["a"], masks["b"]]))
    s.finish(m, {})
    assert np.array_equal(s.read_stack(0), np.stack([masks["a"], masks["b"]]))

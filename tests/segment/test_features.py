"""The shared frame/feature cache: byte bound, LRU order, decode-once frame store with read-ahead."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from masktrack.io.video import VideoSource
from masktrack.segment.features import FeatureCache, FrameStore, nbytes, resize_rgb


def test_nbytes_walks_nested_values():
    a = np.zeros((4, 5), np.float32)
    assert nbytes(a) == 80
    assert nbytes({"x": [a, (a, None)], "y": 3}) == 160


def test_lru_is_bounded_by_bytes_and_keeps_recent_entries():
    c = FeatureCache(max_bytes=300)
    blk = lambda: np.zeros(100, np.uint8)  # noqa: E731
    for k in "abc":
        c.put(k, blk())
    assert c.bytes == 300 and len(c) == 3
    assert c.get("a") is not None  # touch: "b" is now the oldest
    c.put("d", blk())
    assert "b" not in c and all(k in c for k in "acd")
    assert c.stats.evictions == 1 and c.bytes == 300
    c.put("huge", np.zeros(1000, np.uint8))  # larger than the bound: returned to the caller, not stored
    assert "huge" not in c and c.bytes == 300
    c.put("a", np.zeros(50, np.uint8))  # replacing an entry re-counts its bytes
    assert c.bytes == 250
    c.drop(lambda k: k in ("c", "d"))
    assert len(c) == 1 and c.bytes == 50
    c.clear()
    assert len(c) == 0 and c.bytes == 0


def test_get_or_compute_computes_once():
    c = FeatureCache(max_bytes=10_000)
    calls = []
    for _ in range(3):
        v = c.get_or_compute(("v", 1), lambda: calls.append(1) or np.ones(8))
    assert len(calls) == 1 and v.sum() == 8
    assert (c.stats.hits, c.stats.misses) == (2, 1)


def test_negative_bound_is_refused():
    with pytest.raises(ValueError):
        FeatureCache(-1)


class CountingVideo(VideoSource):
    """Frames t filled with value t; counts reads (decodes)."""

    def __init__(self, n=6, h=30, w=40):
        self.path, self.num_frames, self.height, self.width = None, n, h, w
        self.reads: list[int] = []
        self.lock = threading.Lock()

    def read(self, index):
        with self.lock:
            self.reads.append(index)
        return np.full((self.height, self.width, 3), index * 10, np.uint8)

    def content_hash(self):
        return "counting"


def test_resize_rgb_to_a_square_channels_first():
    out = resize_rgb(np.zeros((30, 40, 3), np.uint8), 16)
    assert out.shape == (3, 16, 16) and out.dtype == np.uint8


def test_frame_store_decodes_each_frame_once_and_reads_ahead():
    torch = pytest.importorskip("torch")
    video = CountingVideo()
    store = FrameStore(FeatureCache(10**7), torch.device("cpu"))
    first = store.get(video, 16, 2)
    assert first.shape == (3, 16, 16) and int(first[0, 0, 0]) == 20
    assert store.get(video, 16, 2) is first and video.reads == [2]
    store.prefetch(video, 16, range(5, -1, -1))
    frames = [store.get(video, 16, i) for i in range(5, -1, -1)]
    store.stop_prefetch()
    assert [int(f[0, 0, 0]) for f in frames] == [50, 40, 30, 20, 10, 0]
    assert sorted(video.reads) == list(range(6))  # read-ahead and consumer never decode a frame twice
    assert store.get(video, 32, 0).shape == (3, 32, 32)  # another input size is another entry

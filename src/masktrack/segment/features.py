"""Frame and image-feature caches shared by every session of one backend.

Decoded frames and image-encoder features are a pure function of the frame
(and of the model and its input size), so sessions on the same video can
share them: a second session on a video costs only its temporal work (memory
attention, mask decoding), not another decode + image-encoder pass.  What
carries temporal state (memory bank, object pointers, ids) is never stored
here; that stays in each session's own inference state.

:class:`FeatureCache` is a byte-bounded LRU keyed by tuples that start with the
video's content hash, so two videos never collide and a changed video misses.
:class:`FrameStore` decodes, resizes and uploads frames once per (video,
size) and reads ahead in a background thread while the model works.

Nothing here imports torch at import time; tensors are handled by duck typing
(``element_size``/``nelement``) so the module stays importable in the core.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from masktrack.errors import BackendError
from masktrack.io.video import VideoSource

GiB = 1024**3


def nbytes(value: Any) -> int:
    """Bytes held by a tensor/array or a nested tuple/list/dict of them."""
    if value is None:
        return 0
    if hasattr(value, "element_size") and hasattr(value, "nelement"):
        return int(value.element_size() * value.nelement())
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    return 0


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions}


class FeatureCache:
    """A least-recently-used cache bounded by the bytes of what it holds.

    Entries larger than the whole bound are returned to the caller but not
    stored.  Thread-safe (the frame reader fills it from a background thread).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()
        self.stats = CacheStats()

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.stats.misses += 1
                return None
            self._items.move_to_end(key)
            self.stats.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any) -> None:
        size = nbytes(value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, (_, s) = self._items.popitem(last=False)
                self._bytes -= s
                self.stats.evictions += 1

    def report(self) -> dict:
        """Size and hit counts, as backends report them in ``cache_stats()``."""
        return {"bytes": self.bytes, "entries": len(self), **self.stats.as_dict()}

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def drop(self, predicate: Callable[[Hashable], bool]) -> None:
        """Remove every entry whose key matches (e.g. all entries of one video)."""
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                self._bytes -= self._items.pop(key)[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def resize_rgb(frame: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> uint8 [3, size, size] (the square input SAM models take)."""
    import cv2

    h, w = frame.shape[:2]
    interp = cv2.INTER_AREA if (h > size and w > size) else cv2.INTER_LINEAR
    out = cv2.resize(frame, (size, size), interpolation=interp)
    return np.ascontiguousarray(out.transpose(2, 0, 1))


class FrameStore:
    """Resized uint8 frames of videos, decoded once and kept in a :class:`FeatureCache`.

    ``get`` returns a torch uint8 tensor [3, S, S] on ``device``.  ``prefetch``
    decodes frames in a given order on a background thread so the decode cost
    hides behind the model's work; a ``get`` for a frame being decoded waits
    for it instead of decoding twice.
    """

    def __init__(self, cache: FeatureCache, device: Any) -> None:
        self.cache = cache
        self.device = device
        self._lock = threading.Lock()
        self._video_locks: dict[str, threading.Lock] = {}
        self._pending: dict[Hashable, threading.Event] = {}
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()

    @staticmethod
    def key(video: VideoSource, size: int, index: int) -> tuple:
        return (video.content_hash(), "frame", size, index)

    def _video_lock(self, video: VideoSource) -> threading.Lock:
        with self._lock:
            return self._video_locks.setdefault(video.content_hash(), threading.Lock())

    def _load(self, video: VideoSource, size: int, index: int) -> Any:
        import torch

        with self._video_lock(video):  # one decoder per video file is not thread-safe
            rgb = video.read(index)
        arr = torch.from_numpy(resize_rgb(rgb, size))
        return arr.to(self.device, non_blocking=False)

    def get(self, video: VideoSource, size: int, index: int) -> Any:
        key = self.key(video, size, index)
        value = self.cache.get(key)
        if value is not None:
            return value
        with self._lock:
            event = self._pending.get(key)
            mine = event is None
            if mine:
                event = self._pending[key] = threading.Event()
        if not mine:
            assert event is not None
            event.wait()
            value = self.cache.get(key)
            if value is not None:
                return value
            # the reader failed or the bound evicted it: decode here
            return self._load_and_store(video, size, index, key, None)
        return self._load_and_store(video, size, index, key, event)

    def _load_and_store(
        self, video: VideoSource, size: int, index: int, key: Hashable, event: threading.Event | None
    ) -> Any:
        try:
            value = self._load(video, size, index)
            self.cache.put(key, value)
            return value
        finally:
            if event is not None:
                with self._lock:
                    self._pending.pop(key, None)
                event.set()

    def prefetch(
        self, video: VideoSource, size: int, order: Iterable[int], *, budget_bytes: int | None = None
    ) -> None:
        """Decode ``order`` ahead on one background thread (stops at ``budget_bytes`` of new frames)."""
        self.stop_prefetch()
        self._stop = stop = threading.Event()
        frames = list(order)
        budget = self.cache.max_bytes // 2 if budget_bytes is None else budget_bytes

        def run() -> None:
            used = 0
            for index in frames:
                if stop.is_set() or used >= budget:
                    return
                key = self.key(video, size, index)
                if key in self.cache:
                    continue
                with self._lock:
                    if key in self._pending:
                        continue
                    event = self._pending[key] = threading.Event()
                try:
                    value = self._load_and_store(video, size, index, key, event)
                except Exception:  # the consumer decodes again and reports the error
                    return
                used += nbytes(value)

        self._reader = threading.Thread(target=run, name="masktrack-frame-reader", daemon=True)
        self._reader.start()

    def stop_prefetch(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join()
            self._reader = None

    def close(self) -> None:
        self.stop_prefetch()


def weights_id(checkpoint: str | os.PathLike[str] | None, seed: int) -> str:
    """What identifies a model's weights in a manifest: the checkpoint's content hash, or the random-weights seed."""
    if checkpoint is None:
        return f"random-seed-{seed}"
    from masktrack.io.atomic import hash_file

    return hash_file(checkpoint)


def resolve_device(device: str) -> Any:
    """``auto`` -> cuda when available, else cpu; a clear error for a GPU that is not there."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise BackendError(
            f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)", field="options.device"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendError("device 'cuda' asked for but torch sees no CUDA GPU", field="options.device")
    return dev


def autocast_for(device: Any, bf16: bool) -> contextlib.AbstractContextManager:
    import torch

    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class FrameSequence:
    """The frames of one video as a model sees them: normalised float [3, S, S] on the compute device.

    Stands in for the tensor/loader that SAM2's ``init_state`` would build
    from a video path; frames come from the backend's shared :class:`FrameStore`.
    """

    def __init__(
        self,
        store: FrameStore,
        video: VideoSource,
        size: int,
        device: Any,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        import torch

        self.store = store
        self.video = video
        self.size = size
        self.device = device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32, device=device)[:, None, None]
        self.on_serve: Callable[[int, Any], None] | None = None

    def __len__(self) -> int:
        return self.video.num_frames

    def uint8(self, index: int) -> Any:
        return self.store.get(self.video, self.size, index)

    def __getitem__(self, index: int) -> Any:
        u8 = self.uint8(index).to(self.device, non_blocking=True)
        image = (u8.float() / 255.0 - self.mean) / self.std
        if self.on_serve is not None:
            self.on_serve(index, image)
        return image

    def to(self, *args: Any, **kwargs: Any) -> FrameSequence:
        """Frames are moved on access; model code that moves its inputs gets the sequence back."""
        return self


def default_cache_bytes(device: Any, requested_gb: float | None) -> int:
    """The feature-cache bound: the user's ``feature_cache_gb``, else a share of the device's memory."""
    if requested_gb is not None:
        return int(float(requested_gb) * GiB)
    dev = str(device)
    if dev.startswith("cuda"):
        import torch

        total = torch.cuda.get_device_properties(torch.device(dev)).total_memory
        return int(min(24 * GiB, 0.3 * total))
    return 2 * GiB

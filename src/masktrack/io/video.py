"""Video sources: a frame folder or a video file, read lazily.

Frame count and size are known as soon as a source is opened (a frame folder
reads only image headers; a video file asks the container and, if it does not
know, counts packets).  Frames are RGB ``uint8 [H, W, 3]``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import numpy as np

from masktrack.errors import VideoError
from masktrack.io.atomic import hash_file, hash_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
_NUMERIC = re.compile(r"^\d+$")


class VideoSource(ABC):
    """A sequence of RGB frames of one size."""

    path: Path
    num_frames: int
    height: int
    width: int

    @abstractmethod
    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8 [H, W, 3]."""

    @abstractmethod
    def content_hash(self) -> str:
        """Hash of the frames' content, for manifests (cached)."""

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: int) -> np.ndarray:
        if index < 0:
            index += self.num_frames
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} out of range [0, {self.num_frames})")
        return self.read(index)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.num_frames):
            yield self.read(i)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles."""

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, frames={self.num_frames}, size={self.width}x{self.height})"


class FrameFolder(VideoSource):
    """A folder of numbered JPEG/PNG frames (``00000.jpg``, ``12.png``...), in numeric order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise VideoError("not a folder of frames", path=self.path)
        files = [
            p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and _NUMERIC.match(p.stem)
        ]
        if not files:
            raise VideoError("no numbered .jpg/.png frames in folder", path=self.path)
        files.sort(key=lambda p: int(p.stem))
        numbers = [int(p.stem) for p in files]
        if len(set(numbers)) != len(numbers):
            dup = next(n for n in numbers if numbers.count(n) > 1)
            raise VideoError(f"two files for frame number {dup}", path=self.path)
        self.files = files
        self.num_frames = len(files)
        self.height, self.width = self._check_sizes()

    def _check_sizes(self) -> tuple[int, int]:
        from PIL import Image, UnidentifiedImageError

        size = None
        for i, p in enumerate(self.files):
            try:
                with Image.open(p) as im:
                    wh = im.size
                    if im.format == "PNG":
                        im.verify()  # chunk CRCs, no decoding: catches truncated/corrupt PNGs up front
                    elif im.format == "JPEG" and not _jpeg_complete(p):
                        # libjpeg decodes a cut-off JPEG without an error (grey bottom rows)
                        raise VideoError(
                            f"truncated JPEG: frame {i} has no end-of-image marker; re-export or remove it",
                            path=p,
                        )
            except (UnidentifiedImageError, OSError, SyntaxError) as e:
                raise VideoError(
                    f"unreadable frame {i} ({e.__class__.__name__}: {e}); re-export or remove it",
                    path=p,
                ) from None
            if size is None:
                size = wh
            elif wh != size:
                raise VideoError(
                    f"frame size {wh[0]}x{wh[1]} differs from {size[0]}x{size[1]} of {self.files[0].name} (mixed frame sizes)",
                    path=p,
                )
        assert size is not None
        return size[1], size[0]

    def read(self, index: int) -> np.ndarray:
        import cv2

        p = self.files[index]
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoError(f"unreadable frame {index} (decoder failed); re-export or remove it", path=p)
        if img.shape[:2] != (self.height, self.width):
            raise VideoError(
                f"frame size {img.shape[1]}x{img.shape[0]} differs from {self.width}x{self.height}", path=p
            )
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    @cached_property
    def _hash(self) -> str:
        return hash_json([[p.name, hash_file(p)] for p in self.files])

    def content_hash(self) -> str:
        return self._hash


def _jpeg_complete(path: Path) -> bool:
    """A JPEG ends with its end-of-image marker (FF D9), give or take trailing padding."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 256))
        tail = f.read().rstrip(b"\x00\r\n\t ")
    return tail.endswith(b"\xff\xd9")


class VideoFile(VideoSource):
    """A video file decoded with PyAV.

    Sequential reads decode once; a backward jump seeks to the nearest
    keyframe before the target and decodes forward.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError("video file not found", path=self.path)
        try:
            import av
        except ImportError as e:  # pragma: no cover - av is a core dependency
            raise VideoError("PyAV is not installed (pip install av)", path=self.path) from e
        try:
            self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError, OSError) as e:
            raise VideoError(f"cannot open video ({e})", path=self.path) from None
        self._stream = stream
        self.width = int(stream.codec_context.width)
        self.height = int(stream.codec_context.height)
        self._pts: list[int] = self._scan_pts()
        self.num_frames = len(self._pts)
        if self.num_frames == 0:
            raise VideoError("video has no frames", path=self.path)
        claimed = int(stream.frames or 0)
        if claimed > self.num_frames:
            # a file cut short keeps its header: the container promises frames that are not there
            raise VideoError(
                f"truncated video: the container says {claimed} frames but only {self.num_frames} are in the file; "
                "copy or export it again",
                path=self.path,
            )
        self._next = 0
        self._decoder: Iterator | None = None

    def _scan_pts(self) -> list[int]:
        """Presentation timestamps of all frames, from packets (no decoding)."""
        import av

        pts = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.pts is not None and packet.size > 0:
                    pts.append(int(packet.pts))
        except av.error.FFmpegError as e:
            raise VideoError(f"corrupt video stream ({e})", path=self.path) from None
        pts.sort()
        self._container.seek(0, stream=self._stream)
        return pts

    def _restart(self, index: int) -> None:
        self._container.seek(self._pts[index], stream=self._stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(self._stream)
        self._next = -1  # unknown until the first decoded frame

    def read(self, index: int) -> np.ndarray:
        import av

        if self._decoder is None or index < self._next or index > self._next + 64 or self._next < 0:
            self._restart(index)
        target = self._pts[index]
        assert self._decoder is not None  # _restart opened it
        try:
            for frame in self._decoder:
                if frame.pts is None:
                    continue
                if frame.pts < target:
                    continue
                self._next = self._pts.index(frame.pts) + 1 if frame.pts in self._pts else index + 1
                arr = frame.to_ndarray(format="rgb24")
                if arr.shape[:2] != (self.height, self.width):
                    raise VideoError(f"frame {index} has size {arr.shape[1]}x{arr.shape[0]}", path=self.path)
                return arr
        except av.error.FFmpegError as e:
            raise VideoError(f"cannot decode frame {index} ({e})", path=self.path) from None
        raise VideoError(f"cannot decode frame {index} (stream ended)", path=self.path)

    def __iter__(self) -> Iterator[np.ndarray]:
        self._restart(0)
        for i in range(self.num_frames):
            yield self.read(i)

    def content_hash(self) -> str:
        if not hasattr(self, "_hash"):
            self._hash = hash_file(self.path)
        return self._hash

    def close(self) -> None:
        self._container.close()


def open_video(path: str | Path) -> VideoSource:
    """Open a frame folder or a video file, with a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise VideoError("a single image is not a video; pass its folder", path=path)
        return VideoFile(path)
    raise VideoError("no such file or folder", path=path)

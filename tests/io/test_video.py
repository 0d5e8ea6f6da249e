"""Video sources: frame folders and PyAV video files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from masktrack.errors import VideoError
from masktrack.io.video import FrameFolder, VideoFile, open_video


def _write(folder: Path, name: str, img: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    assert cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return p


def _img(value: int, h: int = 24, w: int = 32) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = value
    img[..., 1] = np.arange(w, dtype=np.uint8)[None, :]
    return img


def test_frame_folder_numeric_order_and_size(tmp_path):
    for n in (2, 12, 1):
        _write(tmp_path, f"{n}.png", _img(n * 10))
    (tmp_path / "notes.txt").write_text("ignored")
    v = open_video(tmp_path)
    assert isinstance(v, FrameFolder)
    assert (len(v), v.size) == (3, (24, 32))
    assert [f[0, 0, 0] for f in v] == [10, 20, 120]
    assert np.array_equal(v[-1], _img(120))
    with pytest.raises(IndexError):
        v[3]
    assert len(v.content_hash()) == 64


def test_content_hash_changes_with_a_frame(tmp_path):
    for n in range(3):
        _write(tmp_path, f"{n:05d}.png", _img(n))
    h1 = FrameFolder(tmp_path).content_hash()
    _write(tmp_path, "00001.png", _img(99))
    assert FrameFolder(tmp_path).content_hash() != h1


def test_empty_folder(tmp_path):
    with pytest.raises(VideoError, match="no numbered") as e:
        open_video(tmp_path)
    assert e.value.path == tmp_path


def test_unreadable_frame_names_the_file(tmp_path):
    _write(tmp_path, "00000.png", _img(1))
    bad = tmp_path / "00001.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(VideoError, match="unreadable frame") as e:
        open_video(tmp_path)
    assert e.value.path == bad


def test_truncated_png_is_caught_at_open(tmp_path):
    _write(tmp_path, "00000.png", _img(1))
    p = _write(tmp_path, "00001.png", np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8))
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(VideoError, match="unreadable frame") as e:
        open_video(tmp_path)
    assert e.value.path == p


def test_mixed_frame_sizes(tmp_path):
    _write(tmp_path, "00000.png", _img(1))
    p = _write(tmp_path, "00001.png", _img(1, h=30))
    with pytest.raises(VideoError, match="mixed frame sizes") as e:
        open_video(tmp_path)
    assert e.value.path == p


def test_missing_path_and_single_image(tmp_path):
    with pytest.raises(VideoError, match="no such"):
        open_video(tmp_path / "nope")
    p = _write(tmp_path, "00000.png", _img(1))
    with pytest.raises(VideoError, match="single image"):
        open_video(p)


def _write_mp4(path: Path, frames: list[np.ndarray]) -> None:
    import av

    with av.open(str(path), "w") as out:
        try:
            stream = out.add_stream("libx264", rate=10)
            stream.options = {
                "g": "5",
                "bf": "2",
                "crf": "18",
            }  # short GOPs + B-frames: seeks and pts reordering
        except Exception:  # pragma: no cover - PyAV wheel without x264
            stream = out.add_stream("mpeg4", rate=10)
            stream.gop_size = 5
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_video_file_random_access_equals_sequential(tmp_path):
    rng = np.random.default_rng(0)
    frames = []
    for t in range(23):
        img = np.full((48, 64, 3), 40, np.uint8)
        img[8:24, 2 + 2 * t : 18 + 2 * t] = (220, 30, 30)
        img += rng.integers(0, 20, img.shape, dtype=np.uint8)
        frames.append(img)
    path = tmp_path / "clip.mp4"
    _write_mp4(path, frames)

    v = open_video(path)
    assert isinstance(v, VideoFile)
    assert (len(v), v.size) == (23, (48, 64))
    seq = list(v)
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in seq)
    # decoded frames resemble what was written (lossy codec), in the right order
    assert all(np.abs(s.astype(int) - f.astype(int)).mean() < 12 for s, f in zip(seq, frames))
    order = [22, 0, 11, 12, 5, 21, 3, 3, 17, 1]
    for i in order:
        assert np.array_equal(v[i], seq[i]), f"frame {i} differs between random and sequential access"
    v.close()
    # a fresh reader going backwards frame by frame
    with VideoFile(path) as v2:
        for i in reversed(range(23)):
            assert np.array_equal(v2.read(i), seq[i])


def test_corrupt_video_file(tmp_path):
    p = tmp_path / "broken.mp4"
    p.write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoError) as e:
        open_video(p)
    assert e.value.path == p

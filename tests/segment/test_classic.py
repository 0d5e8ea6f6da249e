"""The weight-free ``classic`` backend on synthetic clips and (when present) one DAVIS sequence."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from masktrack.errors import BackendError, PromptError
from masktrack.eval.davis import jaccard
from masktrack.io.video import FrameFolder
from masktrack.segment.base import FramePrompt, SessionObject, TextPrompt
from masktrack.segment.registry import load_backend


def make_textured_clip(folder: Path, *, frames: int = 12, size: tuple[int, int] = (96, 128), seed: int = 0):
    """A textured square moving over a textured background; returns (folder, gt bool [T, H, W]).

    Like ``tests/conftest.py::make_moving_square_video`` but with a spatially
    coherent texture (blurred noise, as real surfaces have): i.i.d. per-pixel
    noise has no structure optical flow can lock onto at this size, and its
    every-pixel edges leave GrabCut's smoothness term nothing to work with.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    bg = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    tex = cv2.GaussianBlur(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), (0, 0), 1.5)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
    tex[..., 0] = np.clip(tex[..., 0].astype(int) + 100, 0, 255)
    folder.mkdir(parents=True, exist_ok=True)
    gt = np.zeros((frames, h, w), bool)
    for t in range(frames):
        img = bg.copy()
        x0, y0 = 10 + 4 * t, 20 + 2 * t
        img[y0 : y0 + 32, x0 : x0 + 32] = tex
        gt[t, y0 : y0 + 32, x0 : x0 + 32] = True
        cv2.imwrite(str(folder / f"{t:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return folder, gt


OBJ = SessionObject("square", 1, (255, 0, 0))


def clicks(gt: np.ndarray, seed: int = 0, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ys, xs = np.nonzero(gt)
    i = rng.choice(len(ys), n, replace=False)
    yn, xn = np.nonzero(~gt)
    k = rng.choice(len(yn), n, replace=False)
    pts = np.concatenate([np.stack([xs[i], ys[i]], 1), np.stack([xn[k], yn[k]], 1)]).astype(np.float32)
    return pts, np.array([1] * n + [0] * n, np.int32)


def run(video, prompts, start, reverse=False, objects=(OBJ,), **options) -> dict[int, dict[str, np.ndarray]]:
    backend = load_backend("classic", **options)
    with backend.open_session(video, list(objects)) as s:
        for p in prompts:
            s.add_prompt(p)
        return dict(s.propagate(start, reverse=reverse))


@pytest.fixture()
def clip(tmp_path: Path):
    folder, gt = make_textured_clip(tmp_path / "frames")
    return FrameFolder(folder), gt


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind", ["points", "mask"])
def test_moving_square_every_frame(clip, kind: str, reverse: bool) -> None:
    video, gt = clip
    key = video.num_frames - 1 if reverse else 0
    if kind == "mask":
        prompt = FramePrompt(frame=key, object="square", mask=gt[key])
    else:
        pts, labels = clicks(gt[key])
        prompt = FramePrompt(frame=key, object="square", points=pts, labels=labels)
    out = run(video, [prompt], key, reverse=reverse)
    expected = range(key, -1, -1) if reverse else range(key, video.num_frames)
    assert list(out) == list(expected)  # every frame, in order
    ious = [jaccard(out[t]["square"], gt[t]) for t in expected]
    assert min(ious) >= 0.8, ious
    if kind == "mask":
        assert np.array_equal(out[key]["square"], gt[key])  # a mask prompt comes back exactly


def test_box_prompt_and_working_resolution(clip) -> None:
    video, gt = clip
    ys, xs = np.nonzero(gt[0])
    box = np.array([[xs.min() - 2, ys.min() - 2, xs.max() + 2, ys.max() + 2]], np.float32)
    out = run(video, [FramePrompt(frame=0, object="square", boxes=box)], 0, max_side=64)
    assert all(out[t]["square"].shape == gt[t].shape for t in out)
    assert min(jaccard(out[t]["square"], gt[t]) for t in out) >= 0.7


def test_keyframe_reanchors_and_start_between_keyframes(clip) -> None:
    video, gt = clip
    pts, labels = clicks(gt[0])
    later = gt[6].copy()
    later[:, :] = False
    later[5:15, 5:15] = True  # a deliberately different mask on frame 6
    prompts = [
        FramePrompt(frame=0, object="square", points=pts, labels=labels),
        FramePrompt(frame=6, object="square", mask=later),
    ]
    out = run(video, prompts, 0)
    assert np.array_equal(out[6]["square"], later)
    assert jaccard(out[5]["square"], gt[5]) >= 0.8
    # starting at frame 3 first propagates silently from frame 0: same masks as the full pass
    out3 = run(video, prompts, 3)
    assert list(out3) == list(range(3, video.num_frames))
    assert all(np.array_equal(out3[t]["square"], out[t]["square"]) for t in out3)
    # an object with no keyframe behind the start is empty until its keyframe
    only_late = run(video, [prompts[1]], 2)
    assert not only_late[2]["square"].any() and np.array_equal(only_late[6]["square"], later)


def make_two_objects(folder: Path, frames: int = 10) -> tuple[Path, np.ndarray, np.ndarray]:
    """Two textured squares (red-ish, blue-ish) that slide into each other; the blue one is in front."""
    rng = np.random.default_rng(1)
    h, w = 80, 120
    bg = cv2.GaussianBlur(rng.integers(60, 200, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    folder.mkdir(parents=True)
    a = np.zeros((frames, h, w), bool)
    b = np.zeros((frames, h, w), bool)
    for t in range(frames):
        img = bg.copy()
        ya, xa = 20, 15 + 2 * t
        yb, xb = 30, 70 - 2 * t
        img[ya : ya + 24, xa : xa + 24] = (230, 40, 40) + rng.integers(0, 20, (24, 24, 3))
        img[yb : yb + 24, xb : xb + 24] = (40, 40, 230) + rng.integers(0, 20, (24, 24, 3))
        a[t, ya : ya + 24, xa : xa + 24] = True
        b[t, yb : yb + 24, xb : xb + 24] = True
        cv2.imwrite(str(folder / f"{t:05d}.png"), cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR))
    a &= ~b
    return folder, a, b


def test_two_objects_never_share_a_pixel(tmp_path: Path) -> None:
    folder, a, b = make_two_objects(tmp_path / "two")
    video = FrameFolder(folder)
    objs = (SessionObject("red", 1, (255, 0, 0)), SessionObject("blue", 2, (0, 0, 255)))
    out = run(
        video,
        [FramePrompt(frame=0, object="red", mask=a[0]), FramePrompt(frame=0, object="blue", mask=b[0])],
        0,
        objects=objs,
    )
    for t, masks in out.items():
        assert set(masks) == {"red", "blue"}
        assert not (masks["red"] & masks["blue"]).any(), t
        assert jaccard(masks["blue"], b[t]) >= 0.8 and jaccard(masks["red"], a[t]) >= 0.7, t


def test_text_prompt_names_text_backends(clip) -> None:
    video, _ = clip
    with load_backend("classic").open_session(video, [OBJ]) as s, pytest.raises(BackendError) as e:
        s.add_text(TextPrompt(frame=0, text="red square"))
    assert "sam3" in str(e.value) and e.value.field == "text"


def test_bad_options_and_prompts(clip) -> None:
    video, gt = clip
    with pytest.raises(BackendError, match="flow"):
        load_backend("classic", flow="turbo")
    with pytest.raises(BackendError, match="options"):
        load_backend("classic", colour=3)
    with pytest.raises(BackendError, match="recover"):
        load_backend("classic", recover=1.5)
    with pytest.raises(BackendError, match="sigma"):
        load_backend("classic", sigma=0)
    with load_backend("classic").open_session(video, [OBJ]) as s:
        with pytest.raises(PromptError, match="unknown object"):
            s.add_prompt(FramePrompt(frame=0, object="cube", mask=gt[0]))
        with pytest.raises(PromptError, match="does not match"):
            s.add_prompt(FramePrompt(frame=0, object="square", mask=gt[0, :10]))
    fp = load_backend("classic", max_side=320).fingerprint()
    assert fp["backend"] == "classic" and fp["max_side"] == 320


def test_davis_points_mode(davis_root: Path, tmp_path: Path) -> None:
    """5 positive / 5 negative clicks on frame 0 of a real sequence, first 20 frames: J >= 0.5."""
    from masktrack.eval.masks_io import read_png_folder

    seq = sorted(p.name for p in (davis_root / "Annotations" / "480p").iterdir())[0]
    frames = tmp_path / seq
    frames.mkdir()
    for p in sorted((davis_root / "JPEGImages" / "480p" / seq).glob("*.jpg"))[:20]:
        (frames / p.name).symlink_to(p)
    gt = read_png_folder(davis_root / "Annotations" / "480p" / seq)[:20]
    video = FrameFolder(frames)
    pts, labels = clicks(gt[0])
    out = run(video, [FramePrompt(frame=0, object="square", points=pts, labels=labels)], 0)
    j = np.mean([jaccard(out[t]["square"], gt[t]) for t in range(1, 20)])
    assert j >= 0.5, j
    print(f"DAVIS {seq} points J over frames 1-19: {j:.3f}")


def make_occluded_clip(folder: Path, frames: int = 16, h: int = 120, w: int = 160) -> tuple[Path, np.ndarray]:
    """A textured square moving right while a grey bar sweeps left across it (a pole in front of a dog)."""
    rng = np.random.default_rng(3)
    bg = cv2.GaussianBlur(rng.integers(0, 120, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    bg[..., 1] = np.clip(bg[..., 1].astype(int) + 60, 0, 255)
    folder.mkdir(parents=True)
    gt = np.zeros((frames, h, w), bool)
    for t in range(frames):
        img = bg.copy()
        x0 = 30 + 3 * t
        tex = cv2.GaussianBlur(rng.integers(150, 255, (30, 30, 3), dtype=np.uint8), (0, 0), 1)
        tex[..., 0] = 60
        img[40:70, x0 : x0 + 30] = tex
        gt[t, 40:70, x0 : x0 + 30] = True
        px = 120 - 9 * t
        img[:, max(0, px) : max(0, px + 8)] = (200, 200, 200)
        gt[t, :, max(0, px) : max(0, px + 8)] = False
        cv2.imwrite(str(folder / f"{t:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return folder, gt


def test_recovers_after_an_occluder_sweeps_across(tmp_path: Path) -> None:
    """Flow alone never brings back what the bar uncovers; re-detection by colour does."""
    folder, gt = make_occluded_clip(tmp_path / "occ")
    video = FrameFolder(folder)
    prompt = FramePrompt(frame=0, object="square", mask=gt[0])
    last = video.num_frames - 1
    out = run(video, [prompt], 0)
    assert jaccard(out[last]["square"], gt[last]) >= 0.8
    without = run(video, [prompt], 0, recover=0)
    assert jaccard(without[last]["square"], gt[last]) < 0.5  # the mechanism is what makes the difference

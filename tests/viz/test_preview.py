"""Previews: pure drawing functions, contact sheet geometry, overlay MP4, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masktrack.cli.main import main
from masktrack.config import parse_config
from masktrack.errors import StoreError
from masktrack.masks.export import run_compose
from masktrack.masks.store import MaskStore, SessionManifest, StoredObject
from masktrack.viz.preview import (
    contact_sheet,
    legend_bar,
    overlay,
    pick_frames,
    preview_composed,
    preview_session,
    tile,
)

T, H, W = 12, 96, 128  # the conftest square video


def fill_session(
    output: Path, session: str, masks: dict[str, np.ndarray], colors: list[tuple[int, int, int]]
) -> None:
    names = list(masks)
    m = SessionManifest(
        session=session, key="k", backend="test", video="v", video_hash="h", prompts_hash="p",
        num_frames=T, height=H, width=W,
        objects=[StoredObject(name=n, id=i + 1, color=c) for i, (n, c) in enumerate(zip(names, colors))],
    )  # fmt: skip
    st = MaskStore(output).session(session)
    st.begin(m)
    for f in range(T):
        st.write_frame(f, {n: masks[n][f] for n in names}, names)
    st.finish(m, {})


@pytest.fixture()
def job(square_video, tmp_path):
    folder, gt = square_video
    out = tmp_path / "out"
    half = gt.copy()
    half[:, :, 64:] = False
    fill_session(out, "cube", {"cube": gt, "left_half": half}, [(255, 0, 0), (0, 255, 0)])
    cfg = parse_config(
        {
            "video": str(folder),
            "output": str(out),
            "sessions": [{"name": "cube", "objects": ["cube", "left_half"]}],
            "compose": {"hole": "dilate(cube.cube, 2)"},
        },
        path=tmp_path / "job.yaml",
    )
    return cfg, gt


def test_overlay_tints_only_masked_pixels_and_is_pure():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    before = frame.copy()
    m = np.zeros((40, 50), bool)
    m[10:30, 10:30] = True
    out = overlay(frame, [m], [(255, 0, 0)], 0.5, outline=0)
    np.testing.assert_array_equal(frame, before)
    np.testing.assert_array_equal(out[~m], frame[~m])
    expect = np.round(0.5 * frame[m].astype(float) + 0.5 * np.array([255, 0, 0]))
    assert np.abs(out[m].astype(float) - expect).max() <= 1
    with_outline = overlay(frame, [m], [(0, 0, 255)], 0.5, outline=2)
    assert (with_outline[10, 10:30] == (0, 0, 255)).all()  # the edge is drawn in the object's colour


def test_pick_frames():
    assert pick_frames(100, 10, 20) == list(range(0, 100, 10))
    assert pick_frames(100, 1, 4) == [0, 33, 66, 99]
    assert pick_frames(100, None, 4) == [0, 25, 50, 75]
    assert pick_frames(3, None, 12) == [0, 1, 2]
    assert pick_frames(0, 5, 3) == []


def test_contact_sheet_geometry():
    frame = np.zeros((H, W, 3), np.uint8)
    m = np.zeros((H, W), bool)
    tiles = [tile(frame, [m], [(255, 0, 0)], i, width=100) for i in range(5)]
    th, tw = tiles[0].shape[:2]
    assert (th, tw) == (75, 204)  # 96x128 scaled to width 100, two halves and a 4 px gap
    sheet = contact_sheet(tiles, ["a"], [(255, 0, 0)], title="t", columns=2)
    bar = legend_bar(["a"], [(255, 0, 0)], 2 * tw + 3 * 16, title="t", scale=0.8)
    assert sheet.shape == (bar.shape[0] + 3 * th + 4 * 16, 2 * tw + 3 * 16, 3)


def test_preview_session_sheet_and_video(job, tmp_path):
    import av

    cfg, gt = job
    p = preview_session(cfg, "cube", every=2, max_tiles=4, tile_width=100, columns=2)
    assert p.tiles == pick_frames(T, 2, 4)
    with Image.open(p.sheet) as im:
        assert im.mode == "RGB"
        w, h = im.size
        sheet = np.asarray(im)
    th, tw = 75, 204
    assert w == 2 * tw + 3 * 16
    assert h > 2 * th + 3 * 16  # two rows of tiles under the legend
    assert p.video is not None and p.video.exists()
    with av.open(str(p.video)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(frames) == T
    assert frames[0].shape == (H, W, 3)
    assert sheet.std() > 10


def test_preview_composed_and_cli(job, tmp_path, capsys):
    import yaml

    cfg, gt = job
    run_compose(cfg, progress=False)
    p = preview_composed(cfg, "hole", max_tiles=3, video=False, tile_width=64)
    assert len(p.tiles) == 3 and p.video is None
    with Image.open(p.sheet) as im:
        assert im.size[0] == 3 * (2 * 64 + 4) + 4 * 16
    path = tmp_path / "job.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "video": str(cfg.video),
                "output": str(cfg.output),
                "sessions": [{"name": "cube", "objects": ["cube", "left_half"]}],
            }
        )
    )
    out = tmp_path / "pv"
    assert main(["preview", str(path), "--no-video", "--max-tiles", "2", "--out", str(out)]) == 0
    assert sorted(q.name for q in out.iterdir()) == ["composed_hole.png", "session_cube.png"]
    assert main(["preview", str(path), "--session", "nope", "--no-video"]) == 2
    assert "no session named 'nope'" in capsys.readouterr().err


def test_preview_refuses_video_of_another_length(job, tmp_path):
    import cv2

    cfg, gt = job
    short = tmp_path / "short"
    short.mkdir()
    for f in range(5):
        cv2.imwrite(str(short / f"{f:05d}.png"), np.zeros((H, W, 3), np.uint8))
    cfg.video = short
    with pytest.raises(StoreError, match="video has 5 frames"):
        preview_session(cfg, "cube", video=False)


def test_preview_reports_progress(job, tmp_path, capsys):
    cfg, gt = job
    seen: list[tuple[int, int]] = []
    preview_session(cfg, "cube", max_tiles=4, tile_width=64, progress=lambda d, t: seen.append((d, t)))
    total = 4 + T  # sheet tiles, then every video frame
    assert seen[-1] == (total, total) and [d for d, _ in seen] == list(range(1, total + 1))
    import yaml

    path = tmp_path / "job.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "video": str(cfg.video),
                "output": str(cfg.output),
                "sessions": [{"name": "cube", "objects": ["cube"]}],
            }
        )
    )
    assert main(["preview", str(path), "--session", "cube", "--no-video", "--max-tiles", "2"]) == 0
    err = capsys.readouterr().err
    assert "session cube" in err and "2/2" in err  # the bar on stderr
    assert main(["preview", str(path), "--session", "cube", "--no-video", "--no-progress"]) == 0
    assert "2/2" not in capsys.readouterr().err

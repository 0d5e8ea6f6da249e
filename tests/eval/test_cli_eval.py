"""`masktrack eval masks` on PNG folders (0/255 and palette) and on the mask store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from masktrack.cli.main import main
from masktrack.masks.store import MaskStore, SessionManifest, StoredObject


def square(t: int, shift: int = 0) -> np.ndarray:
    m = np.zeros((40, 50), bool)
    m[10:20, 5 + 2 * t + shift : 15 + 2 * t + shift] = True
    return m


def write_pngs(folder: Path, masks: list[np.ndarray], palette: bool = False) -> Path:
    folder.mkdir(parents=True)
    for i, m in enumerate(masks):
        if palette:
            im = Image.fromarray(m.astype(np.uint8) * 3, mode="P")  # palette index 3 = object
            im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
        else:
            im = Image.fromarray(m.astype(np.uint8) * 255)
        im.save(folder / f"{i:05d}.png")
    return folder


def test_png_folders_and_json(tmp_path: Path, capsys) -> None:
    gt = write_pngs(tmp_path / "gt", [square(t) for t in range(4)], palette=True)
    pred = write_pngs(tmp_path / "pred", [square(t, shift=1 if t == 2 else 0) for t in range(4)])
    out = tmp_path / "scores.json"
    assert main(["eval", "masks", str(pred), str(gt), "--json", str(out)]) == 0
    assert "J&F" in capsys.readouterr().out
    data = json.loads(out.read_text())
    seq = data["sequences"][0]
    assert seq["j"] == [1.0, 1.0, 90 / 110, 1.0]
    assert data["mean"]["j_mean"] == (3 + 90 / 110) / 4


def test_mismatch_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    gt = write_pngs(tmp_path / "gt", [square(t) for t in range(4)])
    pred = write_pngs(tmp_path / "pred", [square(t) for t in range(3)])
    assert main(["eval", "masks", str(pred), str(gt)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"masktrack: error: {pred}") and "3 frames" in err


def test_mask_store_prediction(tmp_path: Path) -> None:
    gt = write_pngs(tmp_path / "gt", [square(t) for t in range(3)])
    store = MaskStore(tmp_path / "out")
    ss = store.session("arms")
    man = SessionManifest(
        session="arms",
        key="k",
        backend="classic",
        video="v",
        video_hash="h",
        prompts_hash="p",
        num_frames=3,
        height=40,
        width=50,
        objects=[
            StoredObject(name="cube", id=1, color=(255, 0, 0)),
            StoredObject(name="bowl", id=2, color=(0, 255, 0)),
        ],
    )
    ss.begin(man)
    for t in range(3):
        ss.write_frame(t, {"cube": square(t), "bowl": ~square(t)}, man.names)
    ss.finish(man, {})
    out = tmp_path / "s.json"
    for pred in (tmp_path / "out", ss.path):
        assert main(["eval", "masks", str(pred), str(gt), "--object", "cube", "--json", str(out)]) == 0
        assert json.loads(out.read_text())["mean"]["j_mean"] == 1.0
    assert (
        main(["eval", "masks", str(tmp_path / "out"), str(gt), "--object", "arms.bowl", "--json", str(out)])
        == 0
    )
    assert json.loads(out.read_text())["mean"]["j_mean"] == 0.0
    assert main(["eval", "masks", str(tmp_path / "out"), str(gt)]) == 2  # two objects, none picked

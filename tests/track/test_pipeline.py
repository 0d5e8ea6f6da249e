import json
from pathlib import Path

import numpy as np
import pytest

from masktrack.cli.main import main
from masktrack.track.base import Tracks
from masktrack.track.pipeline import run_tracking
from masktrack.track.queries import QueryOptions

QO = QueryOptions(window="frame", frame=0, voxel=0.03, max_queries=80)


def test_run_tracking_writes_per_instance_outputs_and_resumes(cube_scene, tmp_path: Path) -> None:
    scene, _ = cube_scene
    out = tmp_path / "tracks"
    rep = run_tracking(scene, out, instances="cube", query_options=QO, progress=False)
    assert rep.tracked == ["cube"]
    folder = out / "cube"
    assert sorted(p.name for p in folder.iterdir()) == ["instance.json", "queries.npy", "tracks.npz"]
    meta = json.loads((folder / "instance.json").read_text())
    assert (
        meta["complete"] and meta["tracker"]["tracker"] == "flow" and meta["query_options"]["voxel"] == 0.03
    )
    assert meta["scene"] == str(Path(scene).resolve())  # refers to the scene, copies nothing
    tr = Tracks.load(folder / "tracks.npz")
    q = np.load(folder / "queries.npy", allow_pickle=False)
    assert (
        np.array_equal(tr.queries, q)
        and tr.instance == "cube"
        and tr.provenance["tracker"]["tracker"] == "flow"
    )
    mtime = (folder / "tracks.npz").stat().st_mtime_ns
    # same inputs: skipped; changed query options: redone
    assert run_tracking(scene, out, instances="cube", query_options=QO, progress=False).skipped == ["cube"]
    assert (folder / "tracks.npz").stat().st_mtime_ns == mtime
    qo2 = QueryOptions(window="frame", frame=0, voxel=0.03, max_queries=40)
    assert run_tracking(scene, out, instances="cube", query_options=qo2, progress=False).tracked == ["cube"]
    assert len(np.load(folder / "queries.npy")) == 40
    # an interrupted run (manifest marked incomplete) is never trusted
    meta = json.loads((folder / "instance.json").read_text())
    (folder / "instance.json").write_text(json.dumps({**meta, "complete": False}))
    assert run_tracking(scene, out, instances="cube", query_options=qo2, progress=False).tracked == ["cube"]
    # a corrupt tracks file is redone too
    (folder / "tracks.npz").write_bytes(b"garbage")
    assert run_tracking(scene, out, instances="cube", query_options=qo2, progress=False).tracked == ["cube"]


def test_cli_track_and_instances(cube_scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene, _ = cube_scene
    assert main(["instances", "list", str(scene)]) == 0
    assert "cube" in capsys.readouterr().out
    assert main(["instances", "verify", str(scene)]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")
    assert main(["scene", "info", str(scene), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_cameras"] == 3
    out = tmp_path / "o"
    args = [
        "track",
        str(scene),
        "--out",
        str(out),
        "--instances",
        "cube",
        "--window",
        "frame",
        "--voxel",
        "0.03",
        "--max-queries",
        "50",
        "--quiet",
    ]
    assert main(args) == 0
    assert (out / "cube" / "tracks.npz").exists()
    assert main(args) == 0
    assert "up to date 1" in capsys.readouterr().out
    assert main(["track", str(scene), "--out", str(out), "--instances", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["track", str(scene), "--out", str(out), "--tracker", "nope"]) == 2
    assert main(["track", str(scene), "--out", str(out), "-o", "bogus=1"]) == 2


def test_verify_flags_empty_instances(cube_scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from masktrack.track.instances import save_instance

    scene = tmp_path / "scene"
    shutil.copytree(cube_scene[0], scene)
    save_instance(scene, "ghost", np.zeros((3, 12, 112, 112), bool), id=9, color=(1, 1, 1))
    assert main(["instances", "verify", str(scene)]) == 2
    assert "ghost" in capsys.readouterr().err


def test_rerun_recordings(cube_scene, tmp_path: Path) -> None:
    pytest.importorskip("masktrack.viz.rerun")
    scene, _ = cube_scene
    from masktrack.viz.recordings import record_tracking

    rep = run_tracking(scene, tmp_path / "o", instances="cube", query_options=QO, progress=False)
    rec = record_tracking(scene, tmp_path / "o", [r.name for r in rep.instances])
    assert rec.exists() and rec.stat().st_size > 0

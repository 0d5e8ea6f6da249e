"""Track re-runs trust only what verifies (issue 18, "Trust only what verifies").

Each case damages a stored output after a complete run; the next `run_tracking` must notice (size +
hash in instance.json), track that instance again, report it ``repaired`` and never crash.
Before the shared manifest layer a truncated tracks.npz crashed with BadZipFile and a changed
queries.npy was trusted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from masktrack.io.manifest import Status
from masktrack.track.base import Tracks
from masktrack.track.pipeline import run_tracking
from masktrack.track.queries import QueryOptions

QO = QueryOptions(window="frame", frame=0, voxel=0.03, max_queries=80)


def _first_run(scene: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    rep = run_tracking(scene, out, instances="cube", query_options=QO, progress=False)
    assert [r.status for r in rep.instances] == [Status.COMPUTED]
    tr = Tracks.load(out / "cube" / "tracks.npz")
    assert (
        tr.num_points > 0 and np.isfinite(tr.tracks).any() and np.ptp(tr.tracks[np.isfinite(tr.tracks)]) > 0
    )
    return tr.tracks.copy(), np.load(out / "cube" / "queries.npy")


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip_last_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x01
    p.write_bytes(bytes(data))


def _edit_queries(p: Path) -> None:
    q = np.load(p)
    q[0, 1] += 0.05  # a plausible, loadable edit: same shape, one point moved
    np.save(p, q)


@pytest.mark.parametrize(
    "damage, file",
    [
        (_truncate, "tracks.npz"),
        (_flip_last_byte, "tracks.npz"),
        (_edit_queries, "queries.npy"),
        (lambda p: p.unlink(), "queries.npy"),
    ],
    ids=["truncated-tracks", "bitflip-tracks", "edited-queries", "missing-queries"],
)
def test_damaged_outputs_are_tracked_again(cube_scene, tmp_path: Path, damage, file) -> None:
    scene, _ = cube_scene
    out = tmp_path / "tracks"
    tracks, queries = _first_run(scene, out)
    damage(out / "cube" / file)
    rep = run_tracking(scene, out, instances="cube", query_options=QO, progress=False)
    assert [r.status for r in rep.instances] == [Status.REPAIRED]
    np.testing.assert_array_equal(Tracks.load(out / "cube" / "tracks.npz").tracks, tracks)
    np.testing.assert_array_equal(np.load(out / "cube" / "queries.npy"), queries)
    again = run_tracking(scene, out, instances="cube", query_options=QO, progress=False)
    assert [r.status for r in again.instances] == [Status.REUSED]


def test_previous_layout_is_read_and_upgraded(cube_scene, tmp_path: Path) -> None:
    """An instance.json without ``outputs`` (written before the manifest layer) is verified by loading."""
    scene, _ = cube_scene
    out = tmp_path / "tracks"
    _first_run(scene, out)
    meta_path = out / "cube" / "instance.json"
    meta = json.loads(meta_path.read_text())
    legacy = {k: v for k, v in meta.items() if k not in ("outputs", "format", "stage", "tool_version")}
    meta_path.write_text(json.dumps(legacy))
    mtime = (out / "cube" / "tracks.npz").stat().st_mtime_ns
    rep = run_tracking(scene, out, instances="cube", query_options=QO, progress=False)
    assert [r.status for r in rep.instances] == [Status.REUSED]
    assert (out / "cube" / "tracks.npz").stat().st_mtime_ns == mtime
    assert set(json.loads(meta_path.read_text())["outputs"]) == {"queries.npy", "tracks.npz"}
    # and a damaged legacy folder is redone, not a crash
    meta_path.write_text(json.dumps(legacy))
    _truncate(out / "cube" / "tracks.npz")
    rep = run_tracking(scene, out, instances="cube", query_options=QO, progress=False)
    assert [r.status for r in rep.instances] == [Status.REPAIRED]

"""Damaged outputs are repaired by the next run, through the CLI (the manifest layer, io/manifest.py).

Each case runs a stage, damages one output the way a crash or a bad disk
would, re-runs the same command and checks: exit 0, no traceback, the run
says ``repaired``, and the outputs are byte-identical to the undisturbed ones
(which are checked to be non-trivial first).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from .conftest import make_workspace, run_cli


@pytest.fixture()
def done(tmp_path, synth_dataset) -> dict[str, Path]:
    """A workspace after segment + compose + track, all exit 0."""
    ws = {**make_workspace(tmp_path, synth_dataset), "tracks": tmp_path / "tracks"}
    for args in _commands(ws).values():
        rc, _, err = run_cli(*args, cwd=tmp_path)
        assert rc == 0, err
    return ws


def _commands(ws) -> dict[str, list[str]]:
    return {
        "segment": ["segment", "--no-progress", str(ws["cfg"])],
        "compose": ["compose", "--no-progress", str(ws["cfg"])],
        "track": [
            "track",
            str(ws["scene"]),
            "--out",
            str(ws["tracks"]),
            "--instances",
            "gt_arm",
            "--max-queries",
            "16",
        ],
    }


def _content(ws) -> dict[str, bytes]:
    root = ws["root"]
    files = [
        *sorted((root / "out" / "sessions" / "arm" / "frames").glob("*")),
        *sorted((root / "out" / "composed" / "wide").glob("*.png")),
        root / "tracks" / "gt_arm" / "tracks.npz",
        root / "tracks" / "gt_arm" / "queries.npy",
    ]
    out = {str(p.relative_to(root)): p.read_bytes() for p in files}
    tr = np.load(
        root / "tracks" / "gt_arm" / "tracks.npz"
    )  # its provenance records run times: compare arrays
    out["tracks/gt_arm/tracks.npz"] = b"".join(
        np.nan_to_num(tr[k], nan=-1).tobytes() for k in ("tracks", "visibility", "queries")
    )
    return out


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x10
    p.write_bytes(bytes(data))


def _queries_changed(p: Path) -> None:
    q = np.load(p)
    q[:, 1:] += 0.25
    np.save(p, q)


CASES = {
    "truncated_composed_png": ("compose", "out/composed/wide/00002.png", _truncate),
    "bit_flipped_mask_store_frame": ("segment", "out/sessions/arm/frames/00003.npz", _flip),
    "truncated_tracks_npz": ("track", "tracks/gt_arm/tracks.npz", _truncate),
    "changed_queries_npy": ("track", "tracks/gt_arm/queries.npy", _queries_changed),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_damaged_output_is_repaired_by_the_next_run(done, name):
    stage, rel, damage = CASES[name]
    want = _content(done)
    assert any(np.frombuffer(v, np.uint8).any() for k, v in want.items() if k.endswith(".png"))
    target = done["root"] / rel
    assert target.exists(), rel
    before = target.read_bytes()
    damage(target)
    assert target.read_bytes() != before
    others = {k: (done["root"] / k).stat().st_mtime_ns for k in want if k != rel}
    rc, out, err = run_cli(*_commands(done)[stage], cwd=done["root"])
    assert rc == 0 and "Traceback" not in err, err
    said = (out + err).lower()
    # the run says what it redid (each stage in its own words)
    assert "repaired" in said or "fail verification" in said or re.search(r"wide\W+6\W+1\W+5", said), said
    assert _content(done) == want
    if (
        stage == "compose"
    ):  # only the damaged frame was rewritten (a session or a track instance is redone whole)
        assert {
            k: (done["root"] / k).stat().st_mtime_ns for k in others if k.startswith(rel.rsplit("/", 1)[0])
        } == {k: v for k, v in others.items() if k.startswith(rel.rsplit("/", 1)[0])}

"""The session runner: bidirectional propagation, merge rule, isolation, resume, output checks."""

from __future__ import annotations

import numpy as np
import pytest

from masktrack.config import load_config
from masktrack.masks.store import MaskStore
from masktrack.segment.pipeline import run_segment
from masktrack.segment.runner import EmptyObjectError, backward_wins, prompt_distances, run_session


def _run(cfg_path, **kw):
    return run_segment(load_config(cfg_path), progress=False, **kw)


def _obj(out, session, name):
    return MaskStore(out).session(session).read_object(name)


def test_distances_and_merge_rule_table():
    d_fwd, d_bwd = prompt_distances([3, 11], 16)
    assert d_fwd.tolist()[:4] == [np.inf, np.inf, np.inf, 0] and d_fwd[7] == 4 and d_fwd[15] == 4
    assert d_bwd[0] == 3 and d_bwd[7] == 4 and d_bwd[12] == np.inf
    wins = backward_wins({"a": [3, 11]}, ["a"], 16)[0]
    # frames 0-2: only backward is near; 7 is a tie -> forward; 8-10 backward; 11+ forward
    assert np.flatnonzero(wins).tolist() == [0, 1, 2, 8, 9, 10]


def test_mid_video_prompt_covers_every_frame(tmp_path, colour_video, oracle, oracle_mod):
    cfg = oracle_mod.write_job(
        tmp_path, [{"name": "s", "backend": "oracle", "objects": ["red"]}], {"red": [oracle_mod.kf("red", 8)]}
    )
    (r,) = _run(cfg)
    assert (r.status, r.frames, r.empty_frames) == ("computed", 16, {"red": 0})
    masks = _obj(tmp_path / "out", "s", "red")
    for t in range(16):
        assert np.array_equal(masks[t], oracle_mod.square_mask("red", t)), t
    assert ("propagate", 8, False) in oracle.instances[0].log and ("propagate", 8, True) in oracle.instances[
        0
    ].log


def test_merge_rule_for_frames_reached_by_both_passes(tmp_path, colour_video, oracle, oracle_mod):
    """cham is green before frame 7 and yellow from 7; prompts on 3 (green) and 11 (yellow).

    The oracle erodes by drift*distance to the prompt it used, so each frame's
    area tells which pass (and which prompt) won: on frame 7 both passes are
    4 frames from their prompt - the tie goes to forward, whose green prompt
    finds nothing on the yellow frame.
    """
    sessions = [{"name": "s", "backend": "oracle", "options": {"drift": 1}, "objects": ["cham"]}]
    cfg = oracle_mod.write_job(
        tmp_path, sessions, {"cham": [oracle_mod.kf("cham", 3), oracle_mod.kf("cham", 11)]}
    )
    (r,) = _run(cfg)
    areas = _obj(tmp_path / "out", "s", "cham").sum(axis=(1, 2)).tolist()
    side = lambda d: (12 - 2 * d) ** 2  # noqa: E731
    expected = [
        side(3),
        side(2),
        side(1),
        side(0),
        side(1),
        side(2),
        side(3),
        0,
        side(3),
        side(2),
        side(1),
        side(0),
        side(1),
        side(2),
        side(3),
        side(4),
    ]
    assert areas == expected
    assert r.empty_frames == {"cham": 1}
    # the notebook rule (backward overwrites forward everywhere) would have filled frame 7
    assert oracle.instances[0].log[1:3] == [("propagate", 3, False), ("propagate", 11, True)]


@pytest.mark.parametrize(
    ("direction", "empty", "calls"),
    [
        ("forward", range(0, 5), [("propagate", 5, False)]),
        ("backward", range(6, 16), [("propagate", 5, True)]),
    ],
)
def test_direction_restricts(tmp_path, colour_video, oracle, oracle_mod, direction, empty, calls):
    sessions = [{"name": "s", "backend": "oracle", "objects": ["red"], "direction": direction}]
    cfg = oracle_mod.write_job(tmp_path, sessions, {"red": [oracle_mod.kf("red", 5)]})
    (r,) = _run(cfg)
    areas = _obj(tmp_path / "out", "s", "red").sum(axis=(1, 2))
    assert np.flatnonzero(areas == 0).tolist() == list(empty)
    assert r.empty_frames == {"red": len(empty)}
    assert [c for c in oracle.instances[0].log if c[0] == "propagate"] == calls


def test_text_prompt_ids_and_dropped_detections(tmp_path, colour_video, oracle, oracle_mod):
    # red (196 px) > green (144) > blue (100): x <- red, y <- green, blue dropped
    sessions = [
        {
            "name": "t",
            "backend": "oracle",
            "text": {"text": "blue, red and green", "frame": 2},
            "objects": ["x", {"name": "y", "id": 1}],
        }
    ]
    cfg = oracle_mod.write_job(tmp_path, sessions)
    (r,) = _run(cfg)
    assert r.dropped_detections == 1
    m = MaskStore(tmp_path / "out").session("t").manifest()
    assert [(o.name, o.id) for o in m.objects] == [
        ("x", 2),
        ("y", 1),
    ]  # explicit id kept, x gets the smallest free id
    x = _obj(tmp_path / "out", "t", "x")
    assert all(np.array_equal(x[t], oracle_mod.square_mask("red", t)) for t in range(16))
    assert r.empty_frames == {"x": 0, "y": 9}  # cham is green only on frames 0-6


def test_prompted_object_missing_from_output_is_an_error(tmp_path, colour_video, oracle, oracle_mod):
    sessions = [{"name": "g", "backend": "oracle", "objects": ["red", "blue"]}]
    cfg = oracle_mod.write_job(
        tmp_path, sessions, {"red": [oracle_mod.kf("red", 0)], "blue": [oracle_mod.kf("blue", 4, label=0)]}
    )
    with pytest.raises(
        EmptyObjectError, match="session 'g': prompted object\\(s\\) 'blue' are empty on every frame"
    ) as e:
        _run(cfg)
    assert e.value.path == cfg and "sessions[0:g].objects" in str(e.value)
    st = MaskStore(tmp_path / "out").session("g")
    assert st.manifest() is not None and not st.manifest().complete  # never trusted
    assert oracle.instances[0].closed  # backend closed on error too


def _two_sessions(oracle_mod, tmp_path, **kw):
    sessions = [
        {"name": "a", "backend": "oracle", "objects": ["red", "blue"]},
        {"name": "b", "backend": "oracle", "objects": ["cham"]},
    ]
    objects = {
        "red": [oracle_mod.kf("red", 0)],
        "blue": [oracle_mod.kf("blue", 15)],
        "cham": [oracle_mod.kf("cham", 2), oracle_mod.kf("cham", 9)],
    }
    return oracle_mod.write_job(tmp_path, sessions, objects, **kw)


def test_session_isolation(tmp_path, colour_video, oracle, oracle_mod, mask_checks):
    cfg = _two_sessions(oracle_mod, tmp_path, output="out_alone")
    (alone,) = _run(cfg, only=["b"])
    cfg2 = _two_sessions(oracle_mod, tmp_path, output="out_after")
    after = _run(cfg2)
    assert [r.session for r in after] == ["a", "b"] and [r.status for r in after] == ["computed", "computed"]
    b1, b2 = MaskStore(tmp_path / "out_alone").session("b"), MaskStore(tmp_path / "out_after").session("b")
    mask_checks.assert_same_masks(
        [b1.read_stack(t) for t in range(16)], [b2.read_stack(t) for t in range(16)]
    )
    assert b1.manifest().key == b2.manifest().key
    # one backend per (name, options), shared by both sessions; one session open at a time
    assert len(oracle.instances) == 2  # one per run_segment call
    log = oracle.instances[1].log
    assert [c[0] for c in log if c[0] in ("open", "close")] == ["open", "close", "open", "close"]
    assert log[-1] == ("close-backend",)


def test_backends_per_name_and_options(tmp_path, colour_video, oracle, oracle_mod):
    sessions = [
        {"name": "a", "backend": "oracle", "objects": ["red"]},
        {"name": "b", "backend": "oracle", "options": {"tolerance": 30}, "objects": ["blue"]},
        {"name": "c", "backend": "oracle", "objects": ["cham"]},
    ]
    objects = {
        "red": [oracle_mod.kf("red", 0)],
        "blue": [oracle_mod.kf("blue", 0)],
        "cham": [oracle_mod.kf("cham", 0)],
    }
    _run(oracle_mod.write_job(tmp_path, sessions, objects))
    assert len(oracle.instances) == 2 and all(b.closed for b in oracle.instances)
    assert [c[1] for c in oracle.instances[0].log if c[0] == "open"] == [("red",), ("cham",)]


def test_resume_and_invalidation_of_only_the_changed_session(tmp_path, colour_video, oracle, oracle_mod):
    cfg = _two_sessions(oracle_mod, tmp_path)
    first = _run(cfg)
    out = tmp_path / "out"
    mtimes = {
        s: [p.stat().st_mtime_ns for p in sorted((out / "sessions" / s / "frames").iterdir())] for s in "ab"
    }
    assert [r.status for r in _run(cfg)] == ["reused", "reused"]
    reused = _run(cfg)[0]
    assert reused.empty_frames == first[0].empty_frames and reused.store == first[0].store

    # change session b's prompts only -> only b is redone
    import json

    pf = json.loads((tmp_path / "prompts.json").read_text())
    pf["objects"][2]["keyframes"][1] = oracle_mod.kf("cham", 5)
    (tmp_path / "prompts.json").write_text(json.dumps(pf))
    assert [r.status for r in _run(cfg)] == ["reused", "computed"]
    assert [p.stat().st_mtime_ns for p in sorted((out / "sessions" / "a" / "frames").iterdir())] == mtimes[
        "a"
    ]

    # options of a -> only a; --force -> both; --only -> just that one
    text = cfg.read_text().replace("objects:\n  - red", "options:\n    tolerance: 41\n  objects:\n  - red", 1)
    cfg.write_text(text)
    assert [r.status for r in _run(cfg)] == ["computed", "reused"]
    assert [r.status for r in _run(cfg, force=True)] == ["computed", "computed"]
    assert [(r.session, r.status) for r in _run(cfg, only=["b"], force=True)] == [("b", "computed")]


def test_a_changed_frame_invalidates_every_session(tmp_path, colour_video, oracle, oracle_mod):
    import cv2

    cfg = _two_sessions(oracle_mod, tmp_path)
    _run(cfg)
    img = cv2.imread(str(colour_video / "00010.png"))
    img[0, 0] = (0, 0, 0)
    cv2.imwrite(str(colour_video / "00010.png"), img)
    assert [r.status for r in _run(cfg)] == ["computed", "computed"]


def test_truncated_store_frame_is_recomputed(tmp_path, colour_video, oracle, oracle_mod, mask_checks):
    cfg = _two_sessions(oracle_mod, tmp_path)
    _run(cfg)
    st = MaskStore(tmp_path / "out").session("b")
    before = [st.read_stack(t) for t in range(16)]
    p = st.frame_path(6)
    p.write_bytes(p.read_bytes()[:25])
    reports = _run(cfg)
    assert [r.status for r in reports] == ["reused", "repaired"]  # redone, and the report says why
    assert reports[1].repaired_frames == [6]
    mask_checks.assert_same_masks(before, [st.read_stack(t) for t in range(16)])


def test_run_session_api(tmp_path, colour_video, oracle, oracle_mod):
    cfg = load_config(_two_sessions(oracle_mod, tmp_path))
    seen = []
    with oracle() as backend:
        r = run_session(
            cfg, cfg.session("b"), backend=backend, progress=lambda done, total: seen.append((done, total))
        )
        again = run_session(cfg, cfg.session("b"), backend=backend)
    assert r.status == "computed" and again.status == "reused" and r.objects == ["cham"]
    # forward 2..15 (14 frames) + backward 9..0 (10 frames)
    assert seen[0] == (0, 24) and seen[-1] == (24, 24)

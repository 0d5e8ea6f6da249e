"""`masktrack compose`: PNG folders for inpainting, resume, empty-term errors, summary, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from masktrack.cli.main import main
from masktrack.config import ComposeOutput, parse_config
from masktrack.errors import ConfigError, StoreError
from masktrack.masks.compose import ExpressionError
from masktrack.masks.export import ComposedStore, composed_outputs, load_composed, run_compose
from masktrack.masks.store import MaskStore, SessionManifest, StoredObject

T, H, W = 6, 48, 70
R = 3


def fill_session(output: Path, session: str, masks: dict[str, np.ndarray], key: str = "k") -> None:
    """Write bool [T, H, W] masks per object into the store as a complete session."""
    names = list(masks)
    t, h, w = next(iter(masks.values())).shape
    m = SessionManifest(
        session=session, key=f"{key}-{session}", backend="test", video="v", video_hash="h", prompts_hash="p",
        num_frames=t, height=h, width=w,
        objects=[StoredObject(name=n, id=i + 1, color=(255, 80 * i % 256, 0)) for i, n in enumerate(names)],
    )  # fmt: skip
    st = MaskStore(output).session(session)
    st.begin(m)
    for f in range(t):
        st.write_frame(f, {n: masks[n][f] for n in names}, names)
    st.finish(m, {})


def robot(t: int = T) -> dict[str, np.ndarray]:
    arm = np.zeros((t, H, W), bool)
    gl = np.zeros((t, H, W), bool)
    gr = np.zeros((t, H, W), bool)
    for f in range(t):
        arm[f, 20 + f : H, 10 + 2 * f : 30 + 2 * f] = True  # from the bottom edge
        gl[f, 12 + f : 20 + f, 8 + 2 * f : 14 + 2 * f] = True
        gr[f, 12 + f : 20 + f, 26 + 2 * f : 32 + 2 * f] = True
    arm[3] = False  # one frame where the arm is lost
    return {"arm": arm, "gripper_left": gl, "gripper_right": gr}


def reference(m: dict[str, np.ndarray], r: int = R) -> np.ndarray:
    k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    out = []
    for f in range(m["arm"].shape[0]):
        a = cv2.dilate(m["arm"][f].astype(np.uint8), k) > 0
        g = cv2.dilate((m["gripper_left"][f] | m["gripper_right"][f]).astype(np.uint8), k) > 0
        out.append(a & ~g)
    return np.stack(out)


@pytest.fixture()
def job(tmp_path: Path):
    m = robot()
    out = tmp_path / "out"
    fill_session(out, "arm", {"arm": m["arm"]})
    fill_session(out, "gripper", {"gripper_left": m["gripper_left"], "gripper_right": m["gripper_right"]})
    cfg = parse_config(
        {
            "video": "v",
            "output": str(out),
            "sessions": [
                {"name": "arm", "objects": ["arm"]},
                {"name": "gripper", "objects": ["gripper_left", "gripper_right"]},
            ],
            "compose": {
                "arm_only": f"dilate(arm, {R}) - dilate(gripper, {R})",
                "robot": {"expr": "arm.* | gripper", "packed": True},
            },
        },
        path=tmp_path / "job.yaml",
    )
    return cfg, m


def test_pngs_are_8bit_0_255_and_match_reference(job):
    cfg, m = job
    rep = run_compose(cfg, progress=False, workers=2)
    folder = rep["arm_only"].folder
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{f:05d}.png" for f in range(T)
    ]  # nothing else for ProPainter to trip on
    ref = reference(m)
    for f in range(T):
        with Image.open(folder / f"{f:05d}.png") as im:
            assert im.mode == "L" and im.size == (W, H)
            a = np.asarray(im)
        assert set(np.unique(a)) <= {0, 255}
        np.testing.assert_array_equal(a == 255, ref[f])
    np.testing.assert_array_equal(load_composed(cfg.output, "arm_only"), ref)
    np.testing.assert_array_equal(
        load_composed(cfg.output, "robot", frames=[4, 1]),
        (m["arm"] | m["gripper_left"] | m["gripper_right"])[[4, 1]],
    )
    assert sorted(composed_outputs(cfg.output)) == ["arm_only", "robot"]
    assert len(list((cfg.output / "composed" / "robot.packed").glob("*.npz"))) == T


def test_summary_has_pixels_and_empty_frames(job):
    cfg, m = job
    run_compose(cfg, progress=False)
    s = json.loads((cfg.output / "composed" / "summary.json").read_text())
    ref = reference(m)
    assert s["arm_only"]["pixels"] == [int(x.sum()) for x in ref]
    assert s["arm_only"]["empty_frames"] == [3]
    assert s["robot"]["empty_frames"] == []
    assert s["arm_only"]["expr"] == cfg.compose["arm_only"].expr


def test_empty_term_is_an_error_unless_optional(job, tmp_path):
    cfg, m = job
    fill_session(
        cfg.output,
        "gripper",
        {"gripper_left": m["gripper_left"], "gripper_right": np.zeros_like(m["arm"])},
        key="k2",
    )
    cfg.compose = {"x": ComposeOutput(expr="dilate(arm, 3) - dilate(gripper_left | gripper_right, 3)")}
    with pytest.raises(ExpressionError) as ei:
        run_compose(cfg, progress=False)
    msg = str(ei.value)
    first = msg.splitlines()[0]
    assert "gripper_right" in first and "session 'gripper'" in first and f"all {T} frames" in first
    assert first.startswith(f"{tmp_path / 'job.yaml'}: compose.x.expr: ")
    assert msg.splitlines()[2].strip() == "^" * len("gripper_right")
    assert not (cfg.output / "composed" / "x").exists()  # nothing half-written
    cfg.compose = {"x": ComposeOutput(expr="dilate(arm, 3) - dilate(gripper_left | gripper_right?, 3)")}
    rep = run_compose(cfg, progress=False)
    assert rep["x"].written == T
    cfg.compose = {"y": ComposeOutput(expr="arm | optional(gripper_right)")}
    assert run_compose(cfg, progress=False)["y"].written == T


def test_resume_skips_finished_frames(job):
    cfg, m = job
    cfg.compose = {"arm_only": cfg.compose["arm_only"]}
    cs = ComposedStore(cfg.output, "arm_only")
    first = run_compose(cfg, progress=False)["arm_only"]
    assert (first.written, first.skipped) == (T, 0)
    # Unchanged: nothing is rewritten.
    mtimes = {p.name: p.stat().st_mtime_ns for p in cs.folder.iterdir()}
    again = run_compose(cfg, progress=False)["arm_only"]
    assert (again.written, again.skipped) == (0, T)
    assert {p.name: p.stat().st_mtime_ns for p in cs.folder.iterdir()} == mtimes
    # Simulate a kill mid-run: manifest incomplete, two frames missing, one truncated, a temp file left.
    man = json.loads(cs.manifest_path.read_text())
    cs.manifest_path.write_text(json.dumps({**man, "complete": False}))
    cs.png_path(1).unlink()
    cs.png_path(4).unlink()
    cs.png_path(2).write_bytes(cs.png_path(2).read_bytes()[:20])
    (cs.folder / ".00005.png.tmp-1-abcd.png").write_bytes(b"junk")
    keep = {n: t for n, t in mtimes.items() if n in ("00000.png", "00003.png", "00005.png")}
    res = run_compose(cfg, progress=False)["arm_only"]
    assert (res.written, res.skipped) == (3, T - 3)
    assert {n: cs.folder.joinpath(n).stat().st_mtime_ns for n in keep} == keep
    assert sorted(p.name for p in cs.folder.iterdir()) == [f"{f:05d}.png" for f in range(T)]
    np.testing.assert_array_equal(load_composed(cfg.output, "arm_only"), reference(m))
    assert json.loads(cs.manifest_path.read_text())["complete"] is True


def test_changed_inputs_or_expression_recompute(job):
    cfg, m = job
    cfg.compose = {"arm_only": cfg.compose["arm_only"]}
    run_compose(cfg, progress=False)
    cfg.compose = {"arm_only": ComposeOutput(expr="dilate(arm, 1) - gripper")}
    assert run_compose(cfg, progress=False)["arm_only"].written == T
    fill_session(cfg.output, "arm", {"arm": m["arm"]}, key="new")  # re-segmented: new manifest key
    assert run_compose(cfg, progress=False)["arm_only"].written == T
    assert run_compose(cfg, progress=False, force=True)["arm_only"].written == T


def test_mismatched_sessions_and_missing_masks(job, tmp_path):
    cfg, m = job
    fill_session(
        cfg.output,
        "gripper",
        {"gripper_left": m["gripper_left"][:4], "gripper_right": m["gripper_right"][:4]},
    )
    with pytest.raises(ConfigError, match="do not match"):
        run_compose(cfg, progress=False, names=["arm_only"])
    cfg2 = parse_config(
        {
            "video": "v",
            "output": str(tmp_path / "empty"),
            "sessions": [{"name": "arm", "objects": ["arm"]}],
            "compose": {"a": "arm"},
        }
    )
    with pytest.raises(StoreError, match="run `masktrack segment` first"):
        run_compose(cfg2, progress=False)
    with pytest.raises(ConfigError, match="no compose output named 'zzz'"):
        run_compose(cfg, progress=False, names=["zzz"])
    for bad in ("../escape", "summary"):
        cfg.compose = {bad: ComposeOutput(expr="arm")}
        with pytest.raises(ConfigError, match="they name folders"):
            run_compose(cfg, progress=False)
    assert not (cfg.output / "escape").exists()


def _write_yaml(tmp_path: Path, cfg) -> Path:
    import yaml

    p = tmp_path / "job.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "video": "v",
                "output": str(cfg.output),
                "sessions": [{"name": s.name, "objects": s.object_names()} for s in cfg.sessions],
                "compose": {k: v.expr for k, v in cfg.compose.items()},
            }
        )
    )
    return p


def test_cli_compose_and_errors(job, tmp_path, capsys):
    cfg, m = job
    path = _write_yaml(tmp_path, cfg)
    assert main(["compose", str(path), "--no-progress", "--only", "arm_only"]) == 0
    assert ComposedStore(cfg.output, "arm_only").manifest()["complete"]
    assert not ComposedStore(cfg.output, "robot").manifest_path.exists()
    assert (
        main(["compose", str(path), "--no-progress", "--expr", "g=gripper_left | gripper_right", "--packed"])
        == 0
    )
    np.testing.assert_array_equal(load_composed(cfg.output, "g"), m["gripper_left"] | m["gripper_right"])
    assert (cfg.output / "composed" / "g.packed" / "00000.npz").exists()
    capsys.readouterr()
    assert main(["compose", str(path), "--no-progress", "--expr", "bad=dilate(arm, 3) | gripr"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("masktrack: error: --expr bad: no session or object named 'gripr'")
    assert err[2].endswith(" " * len("dilate(arm, 3) | ") + "^^^^^")


def test_fast_frame_reader_matches_np_load_and_rejects_corruption(job):
    from masktrack.masks.export import read_packed
    from masktrack.masks.store import decode_frame

    cfg, m = job
    st = MaskStore(cfg.output).session("gripper")
    man = st.require_manifest()
    for f in range(T):
        packed = read_packed(st, f, man)
        np.testing.assert_array_equal(
            np.unpackbits(packed, axis=-1, count=W).astype(bool), decode_frame(st.frame_path(f), W)
        )
    data = bytearray(st.frame_path(2).read_bytes())
    data[len(data) // 2] ^= 0xFF
    st.frame_path(2).write_bytes(bytes(data))
    st.frame_path(3).write_bytes(st.frame_path(3).read_bytes()[:40])
    for f in (2, 3):
        with pytest.raises(StoreError, match="corrupt or truncated"):
            read_packed(st, f, man)

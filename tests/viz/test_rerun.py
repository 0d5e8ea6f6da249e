"""Rerun recordings read back with rerun's own reader (rerun.chunk.RrdReader).

A tiny tracked scene (2 cameras x 5 frames x 32x40, two instances) is built in each test."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

C, T, H, W = 2, 5, 32, 40


def make_tracked_scene(folder: Path, seed: int = 0):
    from masktrack.io.scene import Scene, load_scene, save_scene
    from masktrack.track.base import Tracks
    from masktrack.track.instances import save_instance

    rng = np.random.default_rng(seed)
    rgbs = np.zeros((C, T, H, W, 3), np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    for c in range(C):
        for t in range(T):
            rgbs[c, t] = np.stack(
                [(xx * 6 + 10 * t) % 256, (yy * 7 + 40 * c) % 256, np.full_like(xx, 120)], -1
            )
    depths = (1.0 + 0.01 * xx + 0.02 * yy)[None, None].repeat(C, 0).repeat(T, 1).astype(np.float32)
    depths[:, :, 0, 0] = 0.0  # invalid pixel
    k = np.array([[50.0, 0, 20], [0, 50.0, 16], [0, 0, 1]], np.float32)
    extrs = np.zeros((C, T, 3, 4), np.float32)
    extrs[..., :3] = np.eye(3)
    extrs[0, :, :, 3] = [0.1, 0.0, 1.0]  # camera 0 static
    extrs[1, :, :, 3] = np.stack([0.05 * np.arange(T), np.zeros(T), np.full(T, 2.0)], -1)  # camera 1 moves
    scene = Scene(
        rgbs=rgbs,
        depths=depths,
        intrs=np.broadcast_to(k, (C, T, 3, 3)).copy(),
        extrs=extrs,
        camera_ids=["left", "right"],
    )
    save_scene(scene, folder)
    scene = load_scene(folder)

    m_arm = np.zeros((C, T, H, W), bool)
    m_arm[:, :, 2:12, 3:15] = True
    m_cube = np.zeros((C, T, H, W), bool)
    m_cube[:, :, 20:30, 25:38] = True
    instances = {
        "arm": save_instance(folder, "arm", m_arm, id=1, color=(220, 60, 40)),
        "cube": save_instance(folder, "cube", m_cube, id=2, color=(40, 80, 220)),
    }
    tracks = {}
    for name, n in (("arm", 6), ("cube", 3)):
        x = rng.normal(size=(T, n, 3)).astype(np.float32)
        vis = rng.random((T, n)) > 0.3
        x[:2, 0] = np.nan  # track 0 queried at frame 2
        vis[:2, 0] = False
        q = np.zeros((n, 4), np.float32)
        q[0, 0] = 2
        tracks[name] = Tracks(tracks=x, visibility=vis, queries=q, instance=name)
    return scene, instances, tracks


@pytest.fixture()
def tracked_scene(tmp_path: Path):
    return make_tracked_scene(tmp_path / "scene")


def read_rrd(path: Path) -> dict[str, Any]:
    """Everything tests need from an .rrd, read with rerun's own reader.

    Returns ``recordings`` [(app id, recording id)], ``blueprints`` (count), ``static``
    {entity: {component: value}}, ``temporal`` {entity: {component: {frame: value}}}.
    """
    from rerun.chunk import RrdReader

    reader = RrdReader(path)
    out: dict[str, Any] = {
        "recordings": [(e.application_id, e.recording_id) for e in reader.recordings()],
        "blueprints": len(reader.blueprints()),
        "static": defaultdict(dict),
        "temporal": defaultdict(lambda: defaultdict(dict)),
    }
    for chunk in reader.store().stream():
        rb = chunk.to_record_batch()
        ent = chunk.entity_path
        comps = [n for n in rb.schema.names if ":" in n]
        if chunk.is_static:
            for n in comps:
                out["static"][ent][n] = rb.column(n).to_pylist()[-1]
        else:
            frames = rb.column("frame").to_pylist()
            for n in comps:
                for f, v in zip(frames, rb.column(n).to_pylist()):
                    out["temporal"][ent][n][f] = v
    return out


def blueprint_rows(path: Path) -> list[dict[str, Any]]:
    """The blueprint store's components as {entity, component: value} rows."""
    from rerun.chunk import RrdReader

    reader = RrdReader(path)
    rows = []
    for bp in reader.blueprints():
        for chunk in reader.store(store=bp).stream():
            rb = chunk.to_record_batch()
            for n in rb.schema.names:
                if ":" in n:
                    rows.append(
                        {"entity": chunk.entity_path, "component": n, "value": rb.column(n).to_pylist()}
                    )
    return rows


def write(tmp_path: Path, **kw):
    from masktrack.viz.rerun import write_recordings

    scene, instances, tracks = make_tracked_scene(tmp_path / "scene")
    paths = write_recordings(scene, tracks, tmp_path / "out", instances=instances, **kw)
    return scene, instances, tracks, paths


def assert_same_positions(got: list, want: np.ndarray) -> None:
    got = np.asarray([[np.nan if c is None else c for c in p] for p in got], np.float32)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=0, atol=1e-6)


def test_instance_recordings_hold_one_points_entity_per_instance(tmp_path: Path) -> None:
    from masktrack.viz.rerun import APPLICATION_ID

    scene, instances, tracks, paths = write(tmp_path)
    scene_ids = read_rrd(paths.scene)["recordings"]
    assert len(scene_ids) == 1 and scene_ids[0][0] == APPLICATION_ID
    assert set(paths.instances) == {"arm", "cube"}
    for name, path in paths.instances.items():
        r = read_rrd(path)
        assert r["recordings"] == scene_ids  # same application AND recording id: the files merge
        assert r["blueprints"] == 1
        ents = set(r["temporal"])
        assert ents == {
            f"/world/instances/{name}/points",
            f"/world/instances/{name}/trails",
            *(f"/world/cameras/{c}/instances/{name}" for c in ("left", "right")),
        }
        pts = r["temporal"][f"/world/instances/{name}/points"]
        tr = tracks[name]
        assert sorted(pts["Points3D:positions"]) == list(range(T))
        for t in range(T):
            # all N tracks every frame, instance index = track index
            assert len(pts["Points3D:positions"][t]) == tr.num_points
            assert_same_positions(pts["Points3D:positions"][t], tr.tracks[t])
            rgba = np.array(pts["Points3D:colors"][t], np.uint32)
            r_, g_, b_, a_ = (rgba >> 24) & 255, (rgba >> 16) & 255, (rgba >> 8) & 255, rgba & 255
            assert (np.stack([r_, g_, b_], -1) == np.array(instances[name].color)).all()
            assert ((a_ == 255) == tr.visibility[t]).all()  # occluded points dimmed, visible opaque


def test_trail_segments_join_consecutive_positions(tmp_path: Path) -> None:
    scene, instances, tracks, paths = write(tmp_path)
    r = read_rrd(paths.instances["arm"])
    trails = r["temporal"]["/world/instances/arm/trails"]["LineStrips3D:strips"]
    x = tracks["arm"].tracks
    assert 0 not in trails  # no segment into frame 0
    for t in range(1, T):
        live = np.isfinite(x[t]).all(-1) & np.isfinite(x[t - 1]).all(-1)
        want = np.stack([x[t - 1][live], x[t][live]], axis=1)
        got = np.asarray(trails[t], np.float32)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert (
        len(trails[1]) == x.shape[1] - 1 and len(trails[2]) == x.shape[1] - 1 and len(trails[3]) == x.shape[1]
    )


def test_scene_recording_cameras_images_masks(tmp_path: Path) -> None:
    import cv2

    scene, instances, tracks, paths = write(tmp_path)
    r = read_rrd(paths.scene)
    st, tm = r["static"], r["temporal"]
    assert not any(e.startswith("/world/instances") for e in [*st, *tm])  # the scene holds no tracks
    assert "ViewCoordinates:xyz" in st["/world"]
    ctx = st["/world"]["AnnotationContext:context"][0]
    info = {c["class_id"]: c["class_description"]["info"] for c in ctx}
    for name, inst in instances.items():  # one context: instance id -> name, mask colour
        r_, g_, b_ = inst.color
        assert (
            info[inst.id]["label"] == name
            and info[inst.id]["color"] == (r_ << 24) | (g_ << 16) | (b_ << 8) | 255
        )
    # static camera: one static transform; moving camera: one per frame, world-to-camera as child-from-parent
    left, right = st["/world/cameras/left"], tm["/world/cameras/right"]
    np.testing.assert_allclose(left["Transform3D:translation"][0], [0.1, 0.0, 1.0], atol=1e-6)
    assert left["Transform3D:relation"] == [2]  # TransformRelation.ChildFromParent
    assert "/world/cameras/left" not in tm or "Transform3D:translation" not in tm["/world/cameras/left"]
    assert sorted(right["Transform3D:translation"]) == list(range(T))
    for t in range(T):
        np.testing.assert_allclose(right["Transform3D:translation"][t][0], scene.extrs[1, t, :, 3], atol=1e-6)
    k = np.asarray(left["Pinhole:image_from_camera"][0], np.float32).reshape(3, 3).T  # stored column-major
    np.testing.assert_allclose(k, scene.intrs[0, 0])
    for c, cam in enumerate(scene.camera_ids):
        ent = f"/world/cameras/{cam}"
        assert st[f"{ent}/rgb"]["EncodedImage:media_type"] == ["image/jpeg"]
        assert st[f"{ent}/depth"]["EncodedDepthImage:meter"] == [1000.0]
        for t in range(T):
            jpg = cv2.imdecode(
                np.frombuffer(bytes(tm[f"{ent}/rgb"]["EncodedImage:blob"][t][0]), np.uint8), cv2.IMREAD_COLOR
            )
            assert jpg.shape == (H, W, 3)
            assert np.abs(cv2.cvtColor(jpg, cv2.COLOR_BGR2RGB).astype(int) - scene.rgbs[c, t]).mean() < 12
            png = cv2.imdecode(
                np.frombuffer(bytes(tm[f"{ent}/depth"]["EncodedDepthImage:blob"][t][0]), np.uint8),
                cv2.IMREAD_UNCHANGED,
            )
            assert png.dtype == np.uint16
            np.testing.assert_array_equal(png, np.rint(scene.depths[c, t] * 1000).astype(np.uint16))
            seg = np.frombuffer(
                bytes(tm[f"{ent}/masks"]["SegmentationImage:buffer"][t][0]), np.uint8
            ).reshape(H, W)
            want = np.zeros((H, W), np.uint8)
            want[instances["arm"].masks(c, t)] = 1
            want[instances["cube"].masks(c, t)] = 2
            np.testing.assert_array_equal(seg, want)


def test_combined_is_one_recording_with_scene_and_every_instance(tmp_path: Path) -> None:
    scene, instances, tracks, paths = write(tmp_path)
    parts = [read_rrd(p) for p in [paths.scene, *paths.instances.values()]]
    comb = read_rrd(paths.combined)
    assert len(comb["recordings"]) == 1 and comb["recordings"] == parts[0]["recordings"]
    assert comb["blueprints"] == 1
    want_ents = set().union(*[set(p["temporal"]) for p in parts])
    assert set(comb["temporal"]) == want_ents
    assert {
        "/world/instances/arm/points",
        "/world/instances/cube/points",
        "/world/cameras/left/rgb",
    } <= want_ents
    for name, tr in tracks.items():
        pts = comb["temporal"][f"/world/instances/{name}/points"]["Points3D:positions"]
        for t in range(T):
            assert_same_positions(pts[t], tr.tracks[t])
    assert comb["temporal"]["/world/cameras/right/rgb"]["EncodedImage:blob"].keys() == set(range(T))


def test_blueprint_has_3d_view_camera_grid_and_trail_ranges(tmp_path: Path) -> None:
    scene, instances, tracks, paths = write(tmp_path, trail=7)
    rows = blueprint_rows(paths.combined)
    kinds = [(r["value"][0][0]) for r in rows if r["component"] == "ViewBlueprint:class_identifier"]
    origins = {r["value"][0][0] for r in rows if r["component"] == "ViewBlueprint:space_origin"}
    assert sorted(kinds) == ["2D", "2D", "3D"]
    assert origins == {"world", "world/cameras/left", "world/cameras/right"}
    ranges = {r["entity"]: r["value"][0][0] for r in rows if r["component"] == "VisibleTimeRanges:ranges"}
    trail_ents = {e.split("/overrides/")[1].rsplit("/visualizers", 1)[0] for e in ranges}
    assert trail_ents == {"world/instances/arm/trails", "world/instances/cube/trails"}
    assert all(v["timeline"] == "frame" and v["range"] == {"start": -7, "end": 0} for v in ranges.values())


def test_rerun_skips_current_files_and_redoes_only_changed(tmp_path: Path) -> None:
    from masktrack.viz.rerun import write_recordings

    scene, instances, tracks, paths = write(tmp_path)
    files = [paths.scene, *paths.instances.values(), paths.combined]
    before = {p: p.stat().st_mtime_ns for p in files}
    again = write_recordings(scene, tracks, tmp_path / "out", instances=instances)
    assert again == paths
    assert {p: p.stat().st_mtime_ns for p in files} == before  # nothing rewritten
    tracks["cube"].tracks = tracks["cube"].tracks + 1.0
    write_recordings(scene, tracks, tmp_path / "out", instances=instances)
    after = {p: p.stat().st_mtime_ns for p in files}
    assert (
        after[paths.scene] == before[paths.scene]
        and after[paths.instances["arm"]] == before[paths.instances["arm"]]
    )
    assert (
        after[paths.instances["cube"]] != before[paths.instances["cube"]]
        and after[paths.combined] != before[paths.combined]
    )
    pts = read_rrd(paths.combined)["temporal"]["/world/instances/cube/points"]["Points3D:positions"]
    assert_same_positions(pts[3], tracks["cube"].tracks[3])
    # a corrupted file is not trusted even though the manifest key matches
    paths.instances["arm"].write_bytes(b"garbage")
    write_recordings(scene, tracks, tmp_path / "out", instances=instances)
    assert read_rrd(paths.instances["arm"])["temporal"]["/world/instances/arm/points"]


def test_failed_write_leaves_no_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import masktrack.viz.rerun as mod

    scene, instances, tracks = make_tracked_scene(tmp_path / "scene")

    def boom(*a, **k):
        raise RuntimeError("killed")

    monkeypatch.setattr(mod, "log_instance_tracks", boom)
    with pytest.raises(RuntimeError):
        mod.write_recordings(scene, tracks, tmp_path / "out", instances=instances)
    root = tmp_path / "out" / "rerun"
    assert [p.name for p in (root / "instances").iterdir()] == []
    assert not (root / "combined.rrd").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    assert read_rrd(root / "scene.rrd")["temporal"][
        "/world/cameras/left/rgb"
    ]  # the finished part is kept and valid


def test_recording_id_is_per_output_folder(tmp_path: Path) -> None:
    from masktrack.viz.rerun import recording_id

    scene, _, _ = make_tracked_scene(tmp_path / "scene")
    assert recording_id(scene, tmp_path / "a") == recording_id(scene, tmp_path / "a")
    assert recording_id(scene, tmp_path / "a") != recording_id(scene, tmp_path / "b")


def test_merge_refuses_a_foreign_recording(tmp_path: Path) -> None:
    import rerun as rr

    from masktrack.errors import StoreError
    from masktrack.viz.rerun import merge_recordings, scene_blueprint

    foreign = tmp_path / "foreign.rrd"
    rec = rr.RecordingStream("masktrack", recording_id="other")
    rec.save(foreign)
    rec.log("x", rr.Points3D([[0, 0, 0]]))
    rec.flush()
    rec.disconnect()
    with pytest.raises(StoreError, match="cannot merge"):
        merge_recordings(
            [foreign], tmp_path / "m.rrd", recording_id="mine", blueprint=scene_blueprint([], [])
        )
    assert not (tmp_path / "m.rrd").exists()


def test_view_print_path_accepts_folders_and_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from masktrack.cli.main import main

    scene, instances, tracks, paths = write(tmp_path)
    assert main(["view", str(tmp_path / "out"), "--print-path"]) == 0
    assert capsys.readouterr().out.split() == [str(paths.combined)]
    assert main(["view", str(paths.combined.parent / "instances"), "--print-path"]) == 0
    assert capsys.readouterr().out.split() == [str(paths.instances["arm"]), str(paths.instances["cube"])]
    assert main(["view", str(paths.instances["cube"]), "--print-path"]) == 0
    assert capsys.readouterr().out.split() == [str(paths.instances["cube"])]
    (tmp_path / "empty").mkdir()
    assert main(["view", str(tmp_path / "empty")]) == 2
    assert "no Rerun recording here" in capsys.readouterr().err


def test_view_web_command_binds_localhost(tmp_path: Path) -> None:
    from masktrack.cli.view import viewer_command

    cmd = viewer_command([tmp_path / "c.rrd"], web=True, port=9123, grpc_port=9124)
    # the bundled binary itself, not `python -m rerun` (a wrapper process whose death leaves the server)
    assert Path(cmd[0]).name.startswith("rerun") and "--web-viewer" in cmd
    assert cmd[cmd.index("--bind") + 1] == "127.0.0.1" and cmd[cmd.index("--web-viewer-port") + 1] == "9123"
    assert cmd[-1].endswith("c.rrd")


def test_tracks_of_another_length_are_refused_before_writing(tmp_path: Path) -> None:
    from masktrack.errors import SceneError
    from masktrack.viz.rerun import write_recordings

    scene, instances, tracks = make_tracked_scene(tmp_path / "scene")
    tracks["arm"].tracks = tracks["arm"].tracks[:3]
    with pytest.raises(SceneError, match="tracks have 3 frames"):
        write_recordings(scene, tracks, tmp_path / "out", instances=instances)
    assert not (tmp_path / "out" / "rerun" / "scene.rrd").exists()


def test_camera_views_show_only_points_in_front_of_the_camera_and_near_the_image(tmp_path: Path) -> None:
    from masktrack.track.base import Tracks
    from masktrack.viz.rerun import write_recordings

    scene, instances, _ = make_tracked_scene(tmp_path / "scene")
    # camera "left": R = I, t = (0.1, 0, 1), fx = fy = 50, c = (20, 16), image 40x32
    pts = np.array(
        [
            [0.0, 0.0, 0.0],  # in front, inside: (25, 16)
            [-0.1, 0.0, -2.0],  # behind (z = -1): a naive projection lands inside, at (20, 16)
            [5.0, 0.0, 0.0],  # in front, far right of the image (u = 275)
            [0.3, 0.0, 0.0],  # in front, just outside the right edge (u = 40): within the margin
            [np.nan, np.nan, np.nan],  # not yet queried
        ],
        np.float32,
    )
    x = np.broadcast_to(pts, (T, len(pts), 3)).copy()
    tracks = {
        "arm": Tracks(tracks=x, visibility=np.ones(x.shape[:2], bool), queries=np.zeros((5, 4), np.float32))
    }
    paths = write_recordings(scene, tracks, tmp_path / "out", instances={"arm": instances["arm"]})
    rec = read_rrd(paths.instances["arm"])
    got = rec["temporal"]["/world/cameras/left/instances/arm"]["Points2D:positions"]
    assert sorted(got) == list(range(T))
    for f in range(T):
        uv = np.asarray([[np.nan if c is None else c for c in p] for p in got[f]], np.float32)
        assert uv.shape == (5, 2)  # index i stays track i
        np.testing.assert_allclose(uv[0], [25.0, 16.0], atol=1e-4)
        np.testing.assert_allclose(uv[3], [40.0, 16.0], atol=1e-4)
        assert np.isnan(uv[[1, 2, 4]]).all()
    # no 3D entity is projected into the 2D views any more, and each view keeps to its image
    rows = blueprint_rows(paths.combined)
    contents = [
        r["value"] for r in rows if "ViewContents" in r["component"] or "QueryExpression" in r["component"]
    ]
    assert not any("/world/instances/**" in str(v) and "cameras" not in str(v) for v in contents), contents
    bounds = [r["value"] for r in rows if "VisualBounds2D" in r["component"]]
    assert len(bounds) == 2, rows
    for b in bounds:
        assert str(b).count("-0.5") == 2 and "39.5" in str(b) and "31.5" in str(b), b

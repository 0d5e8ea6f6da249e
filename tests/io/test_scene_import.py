import json
from pathlib import Path

import numpy as np
import pytest

from masktrack.cli.main import main
from masktrack.errors import SceneError
from masktrack.io.scene import load_scene
from masktrack.io.scene_import import import_npz
from masktrack.masks.instances import instances_from_outputs
from masktrack.track.instances import list_instances, load_instance


def _users_npz(
    path: Path, *, pickled_masks: bool = True, object_ids: bool = True, mask_hw: tuple[int, int] = (16, 20)
) -> dict:
    rng = np.random.default_rng(0)
    C, T, H, W = 2, 3, 16, 20
    extr = np.zeros((C, T, 3, 4), np.float32)
    extr[..., :3, :3] = np.eye(3)
    extr[..., 2, 3] = 1.0
    K = np.array([[20.0, 0, 9.5], [0, 20.0, 7.5], [0, 0, 1]], np.float32)
    m = np.zeros((C, T, *mask_hw), bool)
    m[:, :, 2 : mask_hw[0] // 2, 3 : mask_hw[1] // 2] = True
    d = {
        "rgbs": rng.integers(0, 255, (C, T, 3, H, W), dtype=np.uint8),
        "depths": rng.uniform(0.5, 2, (C, T, 1, H, W)).astype(np.float32),
        "intrs": np.broadcast_to(K, (C, T, 3, 3)).copy(),
        "extrs": extr,
        "camera_ids": np.array(["left", "right"], dtype=object if object_ids else str),
        "timestamps": np.arange(T, dtype=np.float64),
    }
    if pickled_masks:
        d["sam2_masks"] = np.array({"instance_0": m, "instance_1": ~m}, dtype=object)
    d["gt_masks_arm"] = m
    np.savez(path, **d)
    return d


def test_pickled_masks_are_refused_without_the_flag(tmp_path: Path) -> None:
    npz = tmp_path / "ep.npz"
    _users_npz(npz, object_ids=False)
    with pytest.raises(SceneError) as e:
        import_npz(npz, tmp_path / "scene", mask_key="sam2_masks")
    assert e.value.field == "sam2_masks" and "pickle" in str(e.value) and "--allow-pickle" in str(e.value)
    assert not (tmp_path / "scene" / "scene.json").exists()  # nothing half-written
    sc = import_npz(npz, tmp_path / "scene", mask_key="sam2_masks", allow_pickle=True)
    assert list_instances(tmp_path / "scene") == ["instance_0", "instance_1"]
    assert load_instance(tmp_path / "scene", "instance_0").masks().sum() > 0
    assert sc.rgbs.shape == (2, 3, 16, 20, 3) and sc.depths.shape == (2, 3, 16, 20)
    assert sc.timestamps.shape == (2, 3)


def test_cli_refusal_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npz = tmp_path / "ep.npz"
    _users_npz(npz, object_ids=False)
    rc = main(["scene", "import", str(npz), str(tmp_path / "s"), "--mask-key", "sam2_masks"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "sam2_masks" in err[0] and str(npz) in err[0]
    assert (
        main(["scene", "import", str(npz), str(tmp_path / "s"), "--mask-key", "sam2_masks", "--allow-pickle"])
        == 0
    )


def test_object_camera_ids_explained_or_overridden(tmp_path: Path) -> None:
    npz = tmp_path / "ep.npz"
    _users_npz(npz, pickled_masks=False, object_ids=True)
    with pytest.raises(SceneError) as e:
        import_npz(npz, tmp_path / "scene")
    assert e.value.field == "camera_ids" and "--camera-ids" in str(e.value)
    sc = import_npz(npz, tmp_path / "scene", camera_ids=["a", "b"])
    assert sc.camera_ids == ["a", "b"]
    assert import_npz(npz, tmp_path / "scene2", allow_pickle=True).camera_ids == ["left", "right"]


def test_plain_mask_array_renamed_and_rescaled(tmp_path: Path) -> None:
    npz = tmp_path / "ep.npz"
    d = _users_npz(npz, pickled_masks=False, object_ids=False, mask_hw=(8, 10))  # half resolution
    import_npz(npz, tmp_path / "scene", mask_key="gt_masks_arm=arm")
    inst = load_instance(tmp_path / "scene", "arm")
    m = inst.masks()
    assert m.shape == (2, 3, 16, 20)
    # nearest-neighbour: pixel (v, u) takes the low-res pixel (v // 2, u // 2)
    assert np.array_equal(m, np.repeat(np.repeat(d["gt_masks_arm"], 2, axis=2), 2, axis=3))
    _users_npz(tmp_path / "bad.npz", pickled_masks=False, object_ids=False, mask_hw=(8, 20))
    with pytest.raises(SceneError, match="aspect"):
        import_npz(tmp_path / "bad.npz", tmp_path / "scene3", mask_key="gt_masks_arm=arm")


def test_instance_files_hold_no_rgb_or_depth(tmp_path: Path) -> None:
    npz = tmp_path / "ep.npz"
    _users_npz(npz, object_ids=False)
    import_npz(npz, tmp_path / "scene", mask_key="sam2_masks", allow_pickle=True)
    sc = load_scene(tmp_path / "scene")
    folder = tmp_path / "scene" / "instances" / "instance_0"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["instance.json", "masks.npy"]
    masks = np.load(folder / "masks.npy", allow_pickle=False)
    assert masks.dtype == np.uint8 and masks.shape == (2, 3, 16, 3)  # bit-packed bool masks only
    assert masks.nbytes < np.asarray(sc.depths).nbytes / 20
    meta = json.loads((folder / "instance.json").read_text())
    assert set(meta) == {"name", "id", "color", "shape", "source"}


def test_instances_from_masktrack_outputs(tmp_path: Path) -> None:
    from masktrack.masks.store import MaskStore, SessionManifest, StoredObject

    npz = tmp_path / "ep.npz"
    _users_npz(npz, pickled_masks=False, object_ids=False)
    import_npz(npz, tmp_path / "scene")
    outs = {}
    for cam, shift in (("left", 0), ("right", 3)):
        out = tmp_path / f"out_{cam}"
        s = MaskStore(out).session("grippers")
        man = SessionManifest(
            session="grippers",
            key="k",
            backend="x",
            video="v",
            video_hash="h",
            prompts_hash="p",
            num_frames=3,
            height=8,
            width=10,
            objects=[StoredObject(name="gripper", id=1, color=(1, 2, 3))],
        )
        s.begin(man)
        for f in range(3):
            m = np.zeros((8, 10), bool)
            m[1:4, shift + f : shift + f + 3] = True
            s.write_frame(f, {"gripper": m}, ["gripper"])
        s.finish(man, {})
        outs[cam] = out
    (made,) = instances_from_outputs(tmp_path / "scene", outs, {"gripper": "grippers.gripper"})
    m = made.masks()
    assert m.shape == (2, 3, 16, 20) and m[1, 2, 2:8, 10:16].all() and not m[0, 0, :, 8:].any()
    # a re-run (as a batch unit re-runs) keeps the instance's id and colour: only new names get new ones
    (again,) = instances_from_outputs(tmp_path / "scene", outs, {"gripper": "grippers.gripper"})
    assert (again.id, again.color) == (made.id, made.color)
    with pytest.raises(SceneError, match="unknown camera"):
        instances_from_outputs(tmp_path / "scene", {"nope": outs["left"]}, {"g": "grippers.gripper"})
    # composition outputs: PNG folder fallback layout <output>/composed/<name>/%05d.png
    import cv2

    comp = tmp_path / "out_left" / "composed" / "arm_only"
    comp.mkdir(parents=True)
    for f in range(3):
        cv2.imwrite(str(comp / f"{f:05d}.png"), np.full((16, 20), 255 * (f % 2), np.uint8))
    # the composition store trusts a folder only with a complete manifest
    with pytest.raises(Exception, match="compose"):
        instances_from_outputs(tmp_path / "scene", {"left": outs["left"]}, {"arm_only": "composed:arm_only"})
    (comp.parent / "arm_only.json").write_text(
        json.dumps({"complete": True, "num_frames": 3, "height": 16, "width": 20})
    )
    (arm,) = instances_from_outputs(
        tmp_path / "scene", {"left": outs["left"]}, {"arm_only": "composed:arm_only"}
    )
    assert arm.masks()[0, 1].all() and not arm.masks()[0, 0].any()


# ---- all problems at once; what mvtracker's files carry besides the arrays ------------------------


def test_every_problem_of_a_file_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npz = tmp_path / "ep.npz"
    d = _users_npz(npz, pickled_masks=True, object_ids=True)  # pickled camera_ids AND pickled sam2_masks
    d["intrs"] = d["intrs"][:, :, :2]  # and a third mistake
    np.savez(npz, **d)
    with pytest.raises(SceneError) as e:
        import_npz(npz, tmp_path / "scene", mask_key="sam2_masks")
    fields = [p.location for p in e.value.problems]
    assert fields == ["intrs", "camera_ids", "sam2_masks"], e.value.lines()
    assert not (tmp_path / "scene" / "scene.json").exists()
    rc = main(["scene", "import", str(npz), str(tmp_path / "s"), "--mask-key", "sam2_masks"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 3 and all(str(npz) in line for line in err)
    assert "Traceback" not in "\n".join(err)


def _mvtracker_npz(path: Path, *, channels_last: bool = False, static: bool = False) -> dict:
    """mvtracker's per-mask NPZ: arrays plus query_points, per_camera_timestamps, sam2_contact_frames."""
    d = _users_npz(path, pickled_masks=False, object_ids=False)
    C, T = 2, 3
    if channels_last:
        d["rgbs"] = np.ascontiguousarray(d["rgbs"].transpose(0, 1, 3, 4, 2))
    if static:
        e4 = np.zeros((C, 4, 4), np.float32)
        e4[:, :3] = d["extrs"][:, 0]
        e4[:, 3, 3] = 1
        d["extrs"] = e4
        d["intrs"] = d["intrs"][:, 0].copy()
    d["query_points"] = np.array([[2, 0.1, 0.0, 1.2], [0, -0.1, 0.05, 1.5], [1, 0, 0, 1.0]], np.float32)
    d["per_camera_timestamps"] = (
        1_733_000_000_000_000_000 + np.arange(C * T).reshape(C, T) * 33_333_333
    ).astype(np.int64)
    d["sam2_contact_frames"] = np.array([1, -1], np.int64)
    np.savez(path, **d)
    return d


def test_query_points_timestamps_and_contact_frames_are_kept(tmp_path: Path) -> None:
    from masktrack.track.queries import QueryOptions, sample_queries

    npz = tmp_path / "mask0.npz"
    d = _mvtracker_npz(npz)
    sc = import_npz(npz, tmp_path / "scene", mask_key="gt_masks_arm=arm")
    # per-camera timestamps: the scene's, bit-exact int64 nanoseconds
    assert sc.timestamps.dtype == np.int64
    np.testing.assert_array_equal(np.asarray(sc.timestamps), d["per_camera_timestamps"])
    assert sc.meta["contact_frames"] == {"left": 1}  # -1 = no contact in that camera
    inst = load_instance(tmp_path / "scene", "arm")
    q = sample_queries(sc, inst, QueryOptions(window="given"))
    np.testing.assert_array_equal(q.points, d["query_points"])  # t kept: 2, 0, 1
    # the imported contact frame is the default of the contact windows
    after = sample_queries(sc, inst, QueryOptions(window="after_contact", voxel=0))
    assert len(after) > 0 and set(after.points[:, 0].tolist()) == {1.0}
    assert set(after.camera.tolist()) == {0}  # camera "right" has no contact


def test_channels_last_rgb_and_static_extrinsics_are_broadcast(tmp_path: Path) -> None:
    a, b = tmp_path / "first.npz", tmp_path / "last.npz"
    _mvtracker_npz(a)
    _mvtracker_npz(b, channels_last=True, static=True)
    sa = import_npz(a, tmp_path / "sa")
    sb = import_npz(b, tmp_path / "sb")
    assert np.asarray(sa.rgbs).std() > 0
    for name in ("rgbs", "depths", "intrs", "extrs"):
        np.testing.assert_array_equal(
            np.asarray(getattr(sa, name)), np.asarray(getattr(sb, name)), err_msg=name
        )


def test_export_mvtracker_round_trips_through_the_importer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    npz = tmp_path / "mask0.npz"
    d = _mvtracker_npz(npz)
    assert d["rgbs"].std() > 0 and d["gt_masks_arm"].any() and not d["gt_masks_arm"].all()
    import_npz(npz, tmp_path / "scene", mask_key="gt_masks_arm=arm")
    assert (
        main(["instances", "export", str(tmp_path / "scene"), str(tmp_path / "mvt"), "--format", "mvtracker"])
        == 0
    )
    assert "3 query points (given)" in capsys.readouterr().out
    out = tmp_path / "mvt" / "arm.npz"
    with np.load(out, allow_pickle=False) as z:  # no pickle anywhere
        got = {k: z[k] for k in z.files}
    assert got["rgbs"].dtype == np.uint8 and got["rgbs"].shape == (2, 3, 3, 16, 20)
    assert got["depths"].shape == (2, 3, 1, 16, 20) and got["extrs"].shape == (2, 3, 3, 4)
    assert got["camera_ids"].dtype.kind == "U"
    for k in ("rgbs", "depths", "intrs", "extrs", "query_points", "per_camera_timestamps"):
        np.testing.assert_array_equal(got[k], d[k], err_msg=k)
    np.testing.assert_array_equal(got["masks"], d["gt_masks_arm"])
    np.testing.assert_array_equal(got["sam2_contact_frames"], [1, -1])
    assert list(got["camera_ids"]) == ["left", "right"]
    manifest = json.loads((tmp_path / "mvt" / "manifest.json").read_text())
    assert manifest["instances"]["arm"]["queries"] == "given"
    # and back in: the same scene
    a = load_scene(tmp_path / "scene")
    b = import_npz(out, tmp_path / "scene2", mask_key="masks=arm")
    for k in ("rgbs", "depths", "intrs", "extrs", "timestamps"):
        np.testing.assert_array_equal(np.asarray(getattr(a, k)), np.asarray(getattr(b, k)), err_msg=k)
    assert b.meta["contact_frames"] == a.meta["contact_frames"]
    np.testing.assert_array_equal(load_instance(tmp_path / "scene2", "arm").masks(), d["gt_masks_arm"])
    np.testing.assert_array_equal(
        np.load(tmp_path / "scene2" / "instances" / "arm" / "queries.npy"), d["query_points"]
    )

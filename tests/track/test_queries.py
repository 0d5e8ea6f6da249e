import numpy as np
import pytest

from masktrack.errors import SceneError
from masktrack.io.scene import load_scene
from masktrack.track.geometry import project
from masktrack.track.instances import load_instance, save_instance
from masktrack.track.queries import (
    QueryOptions,
    farthest_point_sample,
    sample_queries,
    voxel_dedup,
    window_frames,
)


def _on_instance_at(scene, inst, q) -> bool:
    """True if world point q (t, x, y, z) lands on the instance with matching depth in some camera at frame t."""
    t = int(q[0])
    for c in range(scene.num_cameras):
        uv, z = project(q[None, 1:4], scene.intrs[c, t], scene.extrs[c, t])
        u, v = np.rint(uv[0]).astype(int)
        if (
            0 <= u < scene.size[1]
            and 0 <= v < scene.size[0]
            and inst.masks(c, t)[v, u]
            and abs(scene.depths[c, t, v, u] - z[0]) < 1e-3
        ):
            return True
    return False


def test_queries_carry_their_true_frame(cube_scene, tmp_path) -> None:
    path, _ = cube_scene
    scene = load_scene(path)
    inst = load_instance(path, "cube")
    # the same masks, but the instance only appears from frame 5 in camera 0 and frame 7 elsewhere
    m = inst.masks().copy()
    m[0, :5] = False
    m[1:, :7] = False
    late = save_instance(path, "late_cube", m, id=2, color=(0, 255, 0))
    q = sample_queries(scene, late, QueryOptions(window="first", voxel=0.0, max_queries=0, erode=0))
    assert set(np.unique(q.points[:, 0]).astype(int)) == {5, 7}
    assert set(np.unique(q.points[q.camera == 0, 0]).astype(int)) == {5}
    rng = np.random.default_rng(0)
    for row in q.points[rng.choice(len(q), 40, replace=False)]:
        assert _on_instance_at(scene, late, row)
    # "all": points from many frames, each on the moving cube at its own frame (not frame 0)
    qa = sample_queries(scene, inst, QueryOptions(window="all", stride=3, voxel=0.01, max_queries=300))
    assert len(np.unique(qa.points[:, 0])) > 1
    moved = qa.points[qa.points[:, 0] >= 6]
    assert len(moved) > 0
    for row in moved[:30]:
        assert _on_instance_at(scene, inst, row)


def test_voxel_dedup_keeps_one_point_per_voxel_earliest_first() -> None:
    pts = np.array(
        [[0, 0.001, 0.001, 0.001], [3, 0.002, 0.002, 0.002], [1, 0.011, 0.0, 0.0], [2, 0.0101, 0.001, 0.0]],
        np.float64,
    )
    keep = voxel_dedup(pts, 0.01)
    assert keep.tolist() == [0, 2]
    assert voxel_dedup(pts, 0.0).tolist() == [0, 1, 2, 3]


def test_dedup_across_cameras_and_cap_with_even_spread(cube_scene) -> None:
    path, _ = cube_scene
    scene = load_scene(path)
    inst = load_instance(path, "cube")
    raw = sample_queries(scene, inst, QueryOptions(window="frame", frame=0, voxel=0.0, max_queries=0))
    ded = sample_queries(scene, inst, QueryOptions(window="frame", frame=0, voxel=0.01, max_queries=0))
    assert len(np.unique(raw.camera)) == 3  # every camera contributes before de-duplication
    assert len(ded) < len(raw)
    keys = np.floor(ded.points[:, 1:].astype(np.float64) / 0.01).astype(int)
    assert len(np.unique(keys, axis=0)) == len(ded)  # one point per voxel across all cameras
    cap = sample_queries(
        scene, inst, QueryOptions(window="frame", frame=0, voxel=0.0, max_queries=100, seed=3)
    )
    cap2 = sample_queries(
        scene, inst, QueryOptions(window="frame", frame=0, voxel=0.0, max_queries=100, seed=3)
    )
    assert len(cap) == 100 and np.array_equal(cap.points, cap2.points)  # fixed seed: deterministic
    # even spread: the capped set covers the cube (bounding box close to the full set's)
    ext_full = np.ptp(raw.points[:, 1:], axis=0)
    ext_cap = np.ptp(cap.points[:, 1:], axis=0)
    assert (ext_cap > 0.85 * ext_full).all()
    rnd = np.random.default_rng(0).choice(len(raw), 100, replace=False)
    from scipy.spatial import cKDTree

    def coverage(sel: np.ndarray) -> float:  # worst distance from any point to the subset
        return float(cKDTree(raw.points[sel, 1:]).query(raw.points[:, 1:])[0].max())

    fps = farthest_point_sample(raw.points[:, 1:], 100, seed=3)
    assert coverage(fps) < coverage(rnd)


def test_windows() -> None:
    vis = np.array([False, False, True, True, True, True, True, True])
    assert window_frames(QueryOptions(window="first", span=2), vis, "a") == [2, 3]
    assert window_frames(QueryOptions(window="frame", frame=4), vis, "a") == [4]
    assert window_frames(QueryOptions(window="all", stride=3), vis, "a") == [0, 3, 6]
    assert window_frames(QueryOptions(window="before_contact", contact={"a": 5}, span=2), vis, "a") == [3, 4]
    assert window_frames(QueryOptions(window="after_contact", contact={"a": 5}, span=2), vis, "a") == [5, 6]
    assert window_frames(QueryOptions(window="after_contact", contact={"a": 5}), vis, "b") == []
    with pytest.raises(SceneError):
        window_frames(QueryOptions(window="before_contact"), vis, "a")
    with pytest.raises(SceneError):
        window_frames(QueryOptions(window="frame", frame=99), vis, "a")

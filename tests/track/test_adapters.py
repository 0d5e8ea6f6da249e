"""Input/output conversion of the model adapters, with fake models that follow the real call signatures."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from masktrack.io.scene import load_scene  # noqa: E402
from masktrack.track.cotracker import CoTracker3Tracker  # noqa: E402
from masktrack.track.geometry import project  # noqa: E402
from masktrack.track.instances import load_instance  # noqa: E402
from masktrack.track.monocular import best_cameras  # noqa: E402
from masktrack.track.mvtracker import MVTrackerTracker  # noqa: E402
from masktrack.track.queries import QueryOptions, sample_queries  # noqa: E402
from masktrack.track.registry import get_tracker  # noqa: E402
from masktrack.track.spatialtracker import SpatialTrackerV2Tracker, camera_to_world  # noqa: E402


def _gt(poses: np.ndarray, q: np.ndarray) -> np.ndarray:
    t = q[:, 0].astype(int)
    p = np.concatenate([q[:, 1:4].astype(np.float64), np.ones((len(q), 1))], axis=1)
    return np.einsum("tij,njk,nk->tni", poses, np.linalg.inv(poses[t]), p)[..., :3]


@pytest.fixture()
def setup(cube_scene):
    path, poses = cube_scene
    scene = load_scene(path)
    q = sample_queries(
        scene, load_instance(path, "cube"), QueryOptions(window="all", stride=5, voxel=0.03, max_queries=60)
    )
    assert len(np.unique(q.points[:, 0])) > 1
    return scene, poses, q.points


def _camera_of(scene, video_thwc: np.ndarray) -> int:
    return next(c for c in range(scene.num_cameras) if np.array_equal(np.asarray(scene.rgbs[c]), video_thwc))


def _oracle_2d(scene, poses, c: int, q2d: np.ndarray, world_queries: np.ndarray) -> np.ndarray:
    """GT pixel tracks of the queries in camera c: the 'perfect 2D tracker'."""
    gt = _gt(poses, world_queries)
    return np.stack(
        [project(gt[f], scene.intrs[c, f], scene.extrs[c, f])[0] for f in range(scene.num_frames)]
    )


def test_cotracker_conversion_with_an_oracle_model(setup) -> None:
    scene, poses, q = setup
    cams, uv = best_cameras(scene, q.astype(np.float64))
    calls = []

    class FakeCoTrackerPredictor(torch.nn.Module):  # forward(video, queries=...) like CoTrackerPredictor
        def forward(self, video, queries=None):
            assert (
                video.dtype == torch.float32
                and video.ndim == 5
                and video.shape[:3] == (1, scene.num_frames, 3)
            )
            assert float(video.max()) > 1.5  # 0..255, not 0..1
            frames = video[0].permute(0, 2, 3, 1).round().to(torch.uint8).numpy()
            c = _camera_of(scene, frames)
            qs = queries[0].numpy()
            assert qs.shape[1] == 3
            sel = np.flatnonzero(cams == c)
            assert np.allclose(qs[:, 0], q[sel, 0]) and np.allclose(
                qs[:, 1:], uv[sel], atol=1e-3
            )  # (t, x, y) pixel centres
            calls.append(c)
            tr = _oracle_2d(scene, poses, c, qs, q[sel])
            return torch.from_numpy(tr[None]).float(), torch.ones(
                (1, scene.num_frames, len(qs)), dtype=torch.bool
            )

    tr = CoTracker3Tracker(model=FakeCoTrackerPredictor()).track(scene, q)
    assert sorted(calls) == sorted(set(cams[cams >= 0].tolist()))
    t = q[:, 0].astype(int)
    before = np.arange(scene.num_frames)[:, None] < t[None]
    assert np.isnan(tr.tracks[before]).all() and not tr.visibility[before].any()
    err = np.linalg.norm(tr.tracks - _gt(poses, q), axis=2)[~before]
    assert np.median(err) < 0.005  # lifting the perfect 2D tracks with depth lands on the true 3D points


def test_mvtracker_conversion(setup) -> None:
    scene, poses, q = setup

    def fake_mvtracker(
        *, rgbs, depths, intrs, extrs, query_points_3d
    ):  # EvaluationPredictor.forward keywords
        V, T = scene.num_cameras, scene.num_frames
        H, W = scene.size
        assert rgbs.shape == (1, V, T, 3, H, W) and float(rgbs.max()) <= 1.0
        assert (
            depths.shape == (1, V, T, 1, H, W)
            and intrs.shape == (1, V, T, 3, 3)
            and extrs.shape == (1, V, T, 3, 4)
        )
        assert torch.allclose(
            extrs[0], torch.from_numpy(np.asarray(scene.extrs))
        )  # world-to-camera, as stored
        assert torch.allclose(query_points_3d[0], torch.from_numpy(q))
        gt = _gt(poses, q)
        return {"traj_e": torch.from_numpy(gt[None]).float(), "vis_e": torch.full((1, T, len(q)), 0.9)}

    tr = MVTrackerTracker(model=fake_mvtracker).track(scene, q)
    t = q[:, 0].astype(int)
    before = np.arange(scene.num_frames)[:, None] < t[None]
    assert np.isnan(tr.tracks[before]).all() and tr.visibility[~before].all()
    assert np.allclose(tr.tracks[~before], _gt(poses, q)[~before], atol=1e-5)


def test_spatialtracker_conversion(setup) -> None:
    scene, poses, q = setup

    class FakeSpaTrackPredictor:
        def forward(self, video, depth, intrs, extrs, queries, **kw):
            assert video.shape[1] == 3 and video.ndim == 4 and kw["fixed_cam"] is True
            c = _camera_of(scene, video.permute(0, 2, 3, 1).round().to(torch.uint8).numpy())
            assert np.allclose(extrs, camera_to_world(scene.extrs[c]), atol=1e-5)  # camera-to-world 4x4
            assert np.allclose(depth, scene.depths[c]) and queries.shape[1] == 3
            cams, _ = best_cameras(scene, q.astype(np.float64))
            tr2 = _oracle_2d(scene, poses, c, queries, q[cams == c])
            T, n = tr2.shape[:2]
            vis = torch.ones((T, n, 1))
            return (None, intrs, None, None, None, torch.from_numpy(tr2).float(), vis, None, video)

    tr = SpatialTrackerV2Tracker(model=FakeSpaTrackPredictor()).track(scene, q)
    before = np.arange(scene.num_frames)[:, None] < q[:, 0].astype(int)[None]
    assert np.median(np.linalg.norm(tr.tracks - _gt(poses, q), axis=2)[~before]) < 0.005


def test_spatialtracker_keeps_every_query_in_order_and_takes_a_single_query(setup) -> None:
    """SpatialTrackerV2 swaps low-confidence queries for others unless full_point=True, and fails on one query."""
    scene, poses, q = setup
    calls = []

    class StrictPredictor:  # the real model's two traps, as seen running its code
        def forward(self, video, depth, intrs, extrs, queries, **kw):
            assert kw["full_point"] is True, "full_point=False reorders low-confidence queries"
            assert len(queries) > 1, "a single query makes the real model's query filter fail"
            calls.append(len(queries))
            c = _camera_of(scene, video.permute(0, 2, 3, 1).round().to(torch.uint8).numpy())
            tr2 = _oracle_2d(scene, poses, c, queries, one)
            tr2 = np.concatenate([tr2, tr2[:, :1] + 50.0], axis=1)[:, : len(queries)]  # the copy goes astray
            vis = torch.ones((tr2.shape[0], tr2.shape[1], 1))
            return (None, intrs, None, None, None, torch.from_numpy(tr2).float(), vis, None, video)

    one = q[:1]
    tr = SpatialTrackerV2Tracker(model=StrictPredictor()).track(scene, one)
    assert calls == [2] and tr.tracks.shape == (scene.num_frames, 1, 3)
    after = np.arange(scene.num_frames) >= int(one[0, 0])
    err = np.linalg.norm(tr.tracks[after, 0] - _gt(poses, one)[after, 0], axis=1)
    assert err.size and np.median(err) < 0.005


def _forget_clone_modules() -> None:
    import sys

    for k in [k for k in sys.modules if k == "models" or k.startswith("models.")]:
        del sys.modules[k]


@pytest.fixture
def spatialtracker_clone(tmp_path):
    """A fake SpaTrackerV2 clone: ``write(predictor_source)`` (re)writes its ``models/SpaTrackV2/models/
    predictor.py`` and forgets any imported copy; the clone's modules and path entry are removed afterwards."""
    import sys

    clone = tmp_path / "clone"
    pkg = clone / "models" / "SpaTrackV2" / "models"
    pkg.mkdir(parents=True)
    for d in (pkg.parents[1], pkg.parent, pkg):
        (d / "__init__.py").write_text("")
    saved = {k: v for k, v in sys.modules.items() if k == "models" or k.startswith("models.")}

    def write(source: str):
        _forget_clone_modules()
        (pkg / "predictor.py").write_text(source)
        return clone

    yield write
    _forget_clone_modules()
    sys.modules.update(saved)
    while str(clone) in sys.path:
        sys.path.remove(str(clone))


def test_spatialtracker_builds_random_weights_from_the_clones_config(spatialtracker_clone) -> None:
    """pretrained=false: Predictor(args=<config/magic_infer_offline.yaml model section>); its to() returns None."""
    clone = spatialtracker_clone(
        "class Predictor:\n"
        "    def __init__(self, args=None):\n"
        "        self.args, self.spatrack, self.device, self.training = args, type('S', (), {})(), None, True\n"
        "    @classmethod\n"
        "    def from_pretrained(cls, name):\n"
        "        raise AssertionError('pretrained=false must not load weights')\n"
        "    def to(self, device):\n"
        "        self.device = device\n"
        "    def eval(self):\n"
        "        self.training = False\n"
        "        return self\n"
    )
    (clone / "config").mkdir()
    (clone / "config" / "magic_infer_offline.yaml").write_text(
        "seed: 0\nmodel:\n  resolution: 336\n  Track_cfg: {s_wind: 500, overlap: 4}\n"
    )
    m = SpatialTrackerV2Tracker(code=str(clone), pretrained=False, device="cpu", track_num=9)
    model = m.model()
    assert model.args == {"resolution": 336, "Track_cfg": {"s_wind": 500, "overlap": 4}}
    assert model.device == "cpu" and model.training is False and model.spatrack.track_num == 9
    assert m.fingerprint()["weights"] == "random"


def test_spatialtracker_imports_on_a_torchvision_without_write_video(
    spatialtracker_clone, monkeypatch
) -> None:
    """SpatialTrackerV2's TrackRefiner does ``from torchvision.io import write_video`` at import time; newer
    torchvision has no video writer (seen on the GPU machine). The adapter supplies a stand-in; a clone that
    fails to import for another reason is reported as failing, not as missing."""
    import sys
    import types

    from masktrack.errors import BackendError

    tv, tio = types.ModuleType("torchvision"), types.ModuleType("torchvision.io")
    tv.io = tio  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.io", tio)
    clone = spatialtracker_clone(
        "from torchvision.io import write_video\n"
        "class Predictor:\n"
        "    writer = write_video\n"
        "    @classmethod\n"
        "    def from_pretrained(cls, name):\n"
        "        p = cls()\n"
        "        p.spatrack = type('S', (), {})()\n"
        "        return p\n"
        "    def to(self, device):\n"
        "        pass\n"
        "    def eval(self):\n"
        "        return self\n"
    )
    model = SpatialTrackerV2Tracker(code=str(clone), device="cpu").model()
    with pytest.raises(RuntimeError, match="write_video is not in this torchvision"):
        type(model).writer()
    spatialtracker_clone("from torchvision.io import read_everything\n")
    with pytest.raises(BackendError, match="failed to import: cannot import name 'read_everything'"):
        SpatialTrackerV2Tracker(code=str(clone), device="cpu").model()


def test_camera_to_world_inverts_extrinsics() -> None:
    rng = np.random.default_rng(0)
    qm, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    E = np.concatenate([qm, rng.normal(size=(3, 1))], axis=1)[None]
    M = np.vstack([E[0], [0, 0, 0, 1]])
    assert np.allclose(camera_to_world(E)[0] @ M, np.eye(4))


def test_registry_is_lazy_and_reports_missing_code() -> None:
    from masktrack.errors import BackendError

    assert get_tracker("flow").name == "flow"
    with pytest.raises(BackendError, match="SpaTrackerV2"):
        SpatialTrackerV2Tracker(code="/nonexistent").model()


@pytest.mark.slow
def test_real_cotracker3_code_with_random_weights(setup) -> None:
    """Runs CoTracker3's own predictor (random weights) when a local clone is named by MASKTRACK_COTRACKER_REPO."""
    import os

    repo = os.environ.get("MASKTRACK_COTRACKER_REPO")
    if not repo:
        pytest.skip("set MASKTRACK_COTRACKER_REPO to a co-tracker clone to run its real code path")
    scene, _, q = setup
    tr = get_tracker("cotracker", repo=repo, source="local", pretrained=False, device="cpu").track(
        scene, q[:10]
    )
    assert tr.tracks.shape == (scene.num_frames, 10, 3)
    before = np.arange(scene.num_frames)[:, None] < q[:10, 0].astype(int)[None]
    assert np.isfinite(tr.tracks[~before]).all() and np.isnan(tr.tracks[before]).all()

"""Batched geometry (several cameras per call) agrees with the one-camera functions."""

import numpy as np

from masktrack.track.geometry import bilinear, lift, project, project_cameras, sample_depth


def _cameras(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    Ks, Es = [], []
    for _ in range(n):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q[:, 0] *= np.sign(np.linalg.det(q))
        Es.append(np.concatenate([q, rng.normal(size=(3, 1))], axis=1))
        f = rng.uniform(80, 800)
        Ks.append(
            [[f, rng.uniform(-1, 1), rng.uniform(40, 300)], [0, f * 1.05, rng.uniform(40, 300)], [0, 0, 1]]
        )
    return np.array(Ks), np.array(Es)


def test_project_cameras_matches_project_per_camera() -> None:
    rng = np.random.default_rng(0)
    K, E = _cameras(rng, 4)
    X = rng.normal(size=(50, 3)) * 2
    uv, z = project_cameras(X, K, E)
    for c in range(4):
        u1, z1 = project(X, K[c], E[c])
        assert np.allclose(z[c], z1) and np.array_equal(np.isnan(uv[c]), np.isnan(u1))
        assert np.allclose(uv[c][np.isfinite(u1)], u1[np.isfinite(u1)])


def test_per_pixel_cameras_in_lift_depth_and_bilinear() -> None:
    rng = np.random.default_rng(1)
    K, E = _cameras(rng, 3)
    cam = rng.integers(0, 3, 40)
    uv = rng.uniform(0, 30, (40, 2))
    z = rng.uniform(0.2, 3, 40)
    X = lift(uv, z, K[cam], E[cam])
    for i in range(40):
        assert np.allclose(X[i], lift(uv[i : i + 1], z[i : i + 1], K[cam[i]], E[cam[i]])[0])
    depth = rng.uniform(0.5, 0.6, (3, 32, 32)).astype(np.float32)
    depth[1, :, 16:] = 2.0  # a discontinuity in camera 1
    got = sample_depth(depth, uv, cam=cam)
    img = rng.normal(size=(3, 32, 32))
    bil = bilinear(img, uv, cam=cam)
    for i in range(40):
        assert got[i] == sample_depth(depth[cam[i]], uv[i : i + 1])[0]
        assert np.isclose(bil[i], bilinear(img[cam[i]], uv[i : i + 1])[0])

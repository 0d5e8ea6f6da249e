import numpy as np

from masktrack.track.geometry import bilinear, camera_center, in_image, lift, project, sample_depth


def _random_camera(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    E = np.concatenate([q, rng.normal(size=(3, 1))], axis=1)
    f = rng.uniform(80, 1500)
    K = np.array(
        [
            [f, rng.uniform(-2, 2), rng.uniform(40, 900)],
            [0, f * rng.uniform(0.9, 1.1), rng.uniform(40, 700)],
            [0, 0, 1],
        ]
    )
    return K, E


def test_lift_then_project_round_trips_to_the_pixel() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        K, E = _random_camera(rng)
        uv = rng.uniform(0, 1000, size=(200, 2))
        z = rng.uniform(0.05, 20.0, size=200)
        X = lift(uv, z, K, E)
        uv2, z2 = project(X, K, E)
        assert np.abs(uv2 - uv).max() < 1e-4
        assert np.allclose(z2, z, rtol=1e-9, atol=1e-9)


def test_float32_camera_round_trip() -> None:
    rng = np.random.default_rng(1)
    K, E = _random_camera(rng)
    K, E = K.astype(np.float32), E.astype(np.float32)
    uv = rng.uniform(0, 640, size=(100, 2))
    X = lift(uv, rng.uniform(0.2, 5, 100), K, E)
    assert np.abs(project(X, K, E)[0] - uv).max() < 1e-4


def test_pixel_centre_convention() -> None:
    K = np.array([[100.0, 0, 2.0], [0, 100.0, 3.0], [0, 0, 1]])
    E = np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1)
    # integer pixel (u, v) = (2, 3) is the principal point: straight ahead
    assert np.allclose(lift(np.array([[2.0, 3.0]]), np.array([1.5]), K, E), [[0, 0, 1.5]])
    assert np.allclose(
        camera_center(np.concatenate([np.eye(3), [[1.0], [2.0], [3.0]]], axis=1)), [-1, -2, -3]
    )
    assert in_image(np.array([[-0.4, 0.0], [-0.6, 0.0], [9.4, 4.4]]), (5, 10)).tolist() == [True, False, True]


def test_sample_depth_never_blends_across_a_discontinuity() -> None:
    d = np.ones((4, 4), np.float32)
    d[:, 2:] = 3.0
    out = sample_depth(d, np.array([[0.5, 1.0], [1.4, 1.0], [1.6, 1.0]]))
    assert out[0] == 1.0  # smooth region: bilinear
    assert out[1] == 1.0 and out[2] == 3.0  # across the edge: nearest pixel, never 2.0
    assert np.allclose(bilinear(np.arange(4.0)[None].repeat(2, 0), np.array([[1.25, 0.5]])), [1.25])

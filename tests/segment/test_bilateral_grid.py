"""The bilateral grid stores only the cells a splat reaches; sliced anywhere, it must say exactly what a
whole-frame grid says (a reference written here with plain NumPy), and nothing outside what it covers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import convolve1d

from masktrack.segment.bilateral_ops import (
    CELL,
    CELLS_ACROSS,
    cell_size,
    grid_shape,
    slice_logit,
    splat,
)


def _reference_logit(ycc, mask, region, balance, yq, xs, ys):
    """Whole-frame grid, splatted and blurred, sliced as nearest cell (the pre-crop implementation)."""
    h, w = mask.shape
    gy_, gx_, nl, nc, _ = shape = grid_shape(h, w)
    cell = cell_size(h, w)

    def index(c, x, y):
        cy = np.clip((y / cell + 0.5).astype(np.int32), 0, gy_ - 1)
        cx = np.clip((x / cell + 0.5).astype(np.int32), 0, gx_ - 1)
        lum = (c[:, 0].astype(np.int32) * nl) >> 8
        cr = (c[:, 1].astype(np.int32) * nc) >> 8
        cb = (c[:, 2].astype(np.int32) * nc) >> 8
        return (((cy * gx_ + cx) * nl + lum) * nc + cr) * nc + cb

    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    idx = index(ycc[region].reshape(-1, 3), gx[region].ravel(), gy[region].ravel())
    m = mask[region].ravel()
    size = int(np.prod(shape))
    fg = np.bincount(idx[m], minlength=size).astype(np.float32)
    bg = np.bincount(idx[~m], minlength=size).astype(np.float32)
    r = (float(bg.sum()) / float(fg.sum())) ** (0.5 * balance)
    fg, bg = (fg * r).reshape(shape), (bg / r).reshape(shape)
    k = np.array([1.0, 2.0, 1.0], np.float32) / 4.0
    for ax in range(5):
        fg = convolve1d(fg, k, axis=ax, mode="constant")
        bg = convolve1d(bg, k, axis=ax, mode="constant")
    j = index(yq.reshape(-1, 3), xs.ravel(), ys.ravel())
    f, b = fg.ravel()[j], bg.ravel()[j]
    return np.clip(np.log((f + 1.0) / (b + 1.0)), -4.0, 4.0).reshape(yq.shape[:2]).astype(np.float32)


@pytest.mark.parametrize("size", [(128, 128), (270, 480), (360, 640)])
def test_cropped_grid_slices_exactly_like_the_whole_frame_grid(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    h, w = size
    mask = np.zeros((h, w), bool)
    mask[h // 3 : h // 2, w // 4 : w // 2] = True

    def frame() -> np.ndarray:  # the object darker than the background: the grid has something to say
        f = rng.integers(120, 180, (h, w, 3), dtype=np.uint8)
        f[mask] = rng.integers(30, 90, (int(mask.sum()), 3), dtype=np.uint8)
        return f

    ycc = frame()
    region = (slice(h // 5, 2 * h // 3), slice(w // 8, 2 * w // 3))
    grid = splat(ycc, mask, region, balance=0.15)
    assert grid.shape[0] * grid.shape[1] < np.prod(grid_shape(h, w)[:2])  # it is cropped
    # sliced at every pixel of a new frame, displaced by a flow that takes some far outside the grid
    yq = frame()
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    xs, ys = gx + rng.normal(0, 20, (h, w)), gy + rng.normal(0, 20, (h, w))
    got = slice_logit(grid, yq, xs, ys)
    want = _reference_logit(ycc, mask, region, 0.15, yq, xs, ys)
    assert got.std() > 0.1 and (got[mask] > 0).mean() > 0.5  # not trivial: it knows the object
    np.testing.assert_array_equal(got, want)
    far = np.zeros((h, w), bool)
    far[-2:, -2:] = True  # the corner the region does not reach: no evidence either way
    assert (got[far & (gx > region[1].stop + 2 * grid.cell)] == 0).all()


def test_cells_grow_with_the_working_resolution_above_480_only() -> None:
    assert cell_size(128, 128) == cell_size(270, 480) == CELL
    assert cell_size(360, 640) == pytest.approx(640 / CELLS_ACROSS)
    assert grid_shape(360, 640)[:2] == grid_shape(270, 480)[:2]

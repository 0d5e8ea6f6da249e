"""DAVIS J and F against values worked out by hand on tiny masks."""

from __future__ import annotations

import numpy as np
import pytest

from masktrack.eval.davis import (
    bound_pixels,
    evaluate_sequence,
    f_measure,
    jaccard,
    mean_recall_decay,
    seg2bmap,
)


def cols(upto: list[int] | int, size: int = 10) -> np.ndarray:
    """Mask of a size x size image where row r is set in columns 0..upto[r]."""
    upto = [upto] * size if isinstance(upto, int) else upto
    m = np.zeros((size, size), bool)
    for r, c in enumerate(upto):
        m[r, : c + 1] = True
    return m


def test_jaccard_hand_values() -> None:
    gt = np.zeros((4, 4), bool)
    gt[0, :4] = True  # 4 px
    pred = np.zeros((4, 4), bool)
    pred[0, 2:] = True
    pred[1, 2:] = True  # 4 px, 2 shared
    assert jaccard(pred, gt) == pytest.approx(2 / 6)
    assert jaccard(gt, gt) == 1.0


def test_empty_masks() -> None:
    z = np.zeros((10, 10), bool)
    gt = cols(4)
    assert jaccard(z, z) == 1.0 and f_measure(z, z) == 1.0  # both empty: perfect
    assert jaccard(z, gt) == 0.0 and f_measure(z, gt) == 0.0  # empty prediction
    assert jaccard(gt, z) == 0.0 and f_measure(gt, z) == 0.0  # spurious prediction


def test_boundary_map_follows_davis_convention() -> None:
    # left half set: the boundary is the object's last column (pixels differing from their east neighbour)
    b = seg2bmap(cols(4))
    assert b.sum() == 10 and b[:, 4].all()


def test_one_pixel_shift() -> None:
    gt, pred = cols(4), cols(5)
    assert bound_pixels(gt.shape) == 1  # ceil(0.008 * 14.14)
    assert jaccard(pred, gt) == pytest.approx(50 / 60)
    assert f_measure(pred, gt) == 1.0  # within the 1-px tolerance
    assert f_measure(cols(6), gt) == 0.0  # 2 px away: no boundary pixel matches


def test_partial_boundary_match() -> None:
    gt = cols(4)
    pred = cols([4] * 5 + [6] * 5)
    # pred boundary: col 4 rows 0-4, (4,5), (4,6), col 6 rows 5-9 = 12 px; 6 within 1 px of gt -> P = 0.5
    # gt boundary: col 4, 10 px; rows 0-5 within 1 px (cross) of pred's boundary -> R = 0.6
    assert f_measure(pred, gt) == pytest.approx(2 * 0.5 * 0.6 / 1.1)


def test_statistics_and_sequence() -> None:
    mean, recall, decay = mean_recall_decay(np.array([1, 1, 1, 1, 0, 0, 0, 0.0]))
    assert (mean, recall, decay) == (0.5, 0.5, 1.0)  # bins [0:3] and [5:8] as in the DAVIS code
    gt = np.stack([cols(4)] * 4)
    pred = np.stack([cols(4), cols(5), cols(6), np.zeros((10, 10), bool)])
    s = evaluate_sequence(pred, gt)
    assert s.frames == [0, 1, 2, 3]
    assert s.j == pytest.approx([1, 50 / 60, 50 / 70, 0])
    assert s.f == [1.0, 1.0, 0.0, 0.0]
    assert s.j_mean == pytest.approx(np.mean(s.j)) and s.f_recall == 0.5
    assert s.jf_mean == pytest.approx((s.j_mean + s.f_mean) / 2)
    s2 = evaluate_sequence(pred, gt, skip_first_last=True)
    assert s2.frames == [1, 2] and s2.j_mean == pytest.approx((50 / 60 + 50 / 70) / 2)
    with pytest.raises(ValueError):
        evaluate_sequence(pred[:3], gt)

"""The mask comparison helpers fail on empty inputs: an equivalence check over nothing must not pass."""

from __future__ import annotations

import numpy as np
import pytest


def _masks(on: bool) -> dict:
    m = np.zeros((4, 6), bool)
    if on:
        m[1:3, 2:5] = True
    return {0: {"a": m, "b": np.zeros_like(m)}, 1: {"a": m.copy(), "b": m.copy()}}


def test_identical_all_empty_masks_fail(mask_checks):
    empty = _masks(False)
    with pytest.raises(AssertionError, match="all 4 masks are empty"):
        mask_checks.assert_same_masks(empty, _masks(False))
    with pytest.raises(AssertionError, match="empty"):
        mask_checks.assert_masks_close(empty, empty, 0.5)
    with pytest.raises(AssertionError, match="nothing to compare"):
        mask_checks.assert_same_masks({}, {})
    with pytest.raises(AssertionError, match="empty"):
        mask_checks.assert_same_masks(np.zeros((3, 5, 5), bool), np.zeros((3, 5, 5), bool))


def test_identical_masks_pass_and_differences_fail(mask_checks):
    a = _masks(True)
    assert mask_checks.assert_same_masks(a, _masks(True)) == 18
    b = _masks(True)
    b[1]["b"][0, 0] = True
    with pytest.raises(AssertionError, match="1 of 96 pixels differ"):
        mask_checks.assert_same_masks(a, b)
    assert mask_checks.assert_masks_close(a, b, 0.05) == (1, 96)
    with pytest.raises(AssertionError, match="masks are empty"):  # frame 0's "b" is empty
        mask_checks.assert_same_masks(a, a, each=True)
    with pytest.raises(AssertionError, match="different masks"):
        mask_checks.assert_same_masks(a, {0: a[0]})


def test_float_comparison_needs_varying_values_and_tolerance(mask_checks):
    x = {0: {"a": np.array([1.0, -2.0, 3.0])}}
    assert mask_checks.assert_floats_close(
        x, {0: {"a": np.array([1.01, -2.0, 3.0])}}, atol=0.02
    ) == pytest.approx(0.01)
    with pytest.raises(AssertionError, match="differ by up to"):
        mask_checks.assert_floats_close(x, {0: {"a": np.array([1.5, -2.0, 3.0])}}, atol=0.02)
    with pytest.raises(AssertionError, match="constant"):
        zeros = {0: {"a": np.zeros(3)}}
        mask_checks.assert_floats_close(zeros, zeros, atol=0.0)

"""Mask comparisons that cannot pass vacuously (the ``mask_checks`` fixture in conftest.py).

Two empty masks are equal, so "the masks are identical" proves nothing when a
backend produced nothing.  Every comparison here first asserts that the
reference has pixels on (anywhere, or on each frame/object it is told must
be non-empty), then compares.

Masks may be given as one array, a sequence of arrays, or nested dicts
(``{frame: {object: mask}}``, ``{frame: stack}``); both sides must have the
same structure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def _leaves(masks: Any, key: tuple = ()) -> Iterable[tuple[tuple, np.ndarray]]:
    if isinstance(masks, Mapping):
        for k in masks:
            yield from _leaves(masks[k], (*key, k))
    elif isinstance(masks, (list, tuple)):
        for i, m in enumerate(masks):
            yield from _leaves(m, (*key, i))
    else:
        yield key, np.asarray(masks)


def flat(masks: Any) -> dict[tuple, np.ndarray]:
    return dict(_leaves(masks))


def pixels_on(masks: Any) -> int:
    return sum(int(np.count_nonzero(m)) for m in flat(masks).values())


def assert_not_empty(masks: Any, what: str = "masks", *, each: bool = False) -> int:
    """Fail when ``masks`` has no pixel on (``each``: when any single mask is empty); returns the pixels on."""
    leaves = flat(masks)
    assert leaves, f"{what}: nothing to compare (no masks at all)"
    if each:
        empty = [k for k, m in leaves.items() if not np.count_nonzero(m)]
        assert not empty, f"{what}: {len(empty)} of {len(leaves)} masks are empty, e.g. {empty[:3]}"
    on = pixels_on(masks)
    assert on > 0, f"{what}: all {len(leaves)} masks are empty: comparing them would prove nothing"
    return on


def count_differing(a: Any, b: Any) -> tuple[int, int]:
    """(pixels that differ, pixels compared); the structures must match."""
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys(), f"different masks: {sorted(fa.keys() ^ fb.keys(), key=str)[:5]}"
    differ = total = 0
    for k, m in fa.items():
        n = fb[k]
        assert m.shape == n.shape, (k, m.shape, n.shape)
        differ += int(np.count_nonzero(m.astype(bool) != n.astype(bool)))
        total += m.size
    return differ, total


def assert_same_masks(a: Any, b: Any, what: str = "masks", *, each: bool = False) -> int:
    """``a`` and ``b`` are identical and ``a`` is not all empty (``each``: no single mask empty)."""
    on = assert_not_empty(a, what, each=each)
    differ, total = count_differing(a, b)
    assert differ == 0, f"{what}: {differ} of {total} pixels differ ({on} on in the reference)"
    return on


def assert_masks_close(a: Any, b: Any, max_fraction: float, what: str = "masks") -> tuple[int, int]:
    """At most ``max_fraction`` of the pixels differ, and ``a`` is not all empty; returns (differ, total)."""
    assert_not_empty(a, what)
    differ, total = count_differing(a, b)
    assert differ <= max_fraction * total, f"{what}: {differ} of {total} pixels differ"
    return differ, total


def assert_floats_close(a: Any, b: Any, atol: float, rtol: float = 0.0, what: str = "logits") -> float:
    """Float outputs (logits, scores) agree within ``atol + rtol * |a|``; they must not be constant.

    Returns the largest absolute difference.
    """
    fa, fb = flat(a), flat(b)
    assert fa, f"{what}: nothing to compare"
    assert fa.keys() == fb.keys(), f"{what}: different entries {sorted(fa.keys() ^ fb.keys(), key=str)[:5]}"
    worst = 0.0
    values = np.concatenate([np.ravel(v).astype(np.float64) for v in fa.values()])
    assert np.ptp(values) > 0, f"{what}: constant values ({values[0]}): comparing them would prove nothing"
    for k, x in fa.items():
        x = np.asarray(x, np.float64)
        y = np.asarray(fb[k], np.float64)
        assert x.shape == y.shape, (k, x.shape, y.shape)
        diff = np.abs(x - y)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        bad = diff > atol + rtol * np.abs(x)
        assert not bad.any(), f"{what} {k}: {int(bad.sum())} values differ by up to {diff.max():.4g}"
    return worst

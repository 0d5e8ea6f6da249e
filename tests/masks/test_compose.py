"""Composition expressions: parsing, error carets, and every operator against NumPy/SciPy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from masktrack.masks.compose import (
    ExpressionError,
    Window,
    compile_expression,
    evaluate,
    evaluate_full,
    parse,
    refs,
)

SESSIONS = {"arm": ["arm", "arm_2"], "gripper": ["gripper_left", "gripper_right"], "cup": ["cup"]}


def _square(r: int) -> np.ndarray:
    return np.ones((2 * r + 1, 2 * r + 1), bool)


def _disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


def _blobs(rng: np.random.Generator, shape=(60, 80), n=4, border=False) -> np.ndarray:
    """Random rectangles and discs; some with holes, some touching the border."""
    h, w = shape
    m = np.zeros(shape, bool)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(n):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(2, 12)
        if rng.random() < 0.5:
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            m[max(0, cy - r) : cy + r, max(0, cx - r) : cx + 2 * r] = True
        if rng.random() < 0.5:  # punch a hole
            m[cy : cy + 2, cx : cx + 2] = False
    if border:
        m[: rng.integers(1, 6), 10:30] = True
        m[20:40, w - rng.integers(1, 6) :] = True
    m |= rng.random(shape) < 0.005  # specks for remove_small
    return m


@pytest.fixture(params=[0, 1, 2])
def masks(request) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(request.param)
    return {
        "s.a": _blobs(rng, border=True),
        "s.b": _blobs(rng),
        "s.c": _blobs(rng, n=2, border=True),
        "s.e": np.zeros((60, 80), bool),
    }


# -- parsing -----------------------------------------------------------------
def test_precedence_follows_python_set_operators():
    assert str(parse("a | b - c & d")) == "(a | ((b - c) & d))"
    assert str(parse("(a | b) - c")) == "((a | b) - c)"
    assert str(parse("a - b - c")) == "((a - b) - c)"


def test_functions_and_shapes_parse():
    assert str(parse("dilate(x, 15)")) == "dilate(x, 15, square)"
    assert str(parse("erode(x, 3, disk)")) == "erode(x, 3, disk)"
    assert str(parse("dilate(x,3,shape=disk)")) == "dilate(x, 3, disk)"
    assert str(parse("remove_small(fill_holes(s.a), 40)")) == "remove_small(fill_holes(s.a), 40)"
    assert str(parse("`my-session`.obj")) == "`my-session`.obj"


def test_optional_marker_reaches_every_reference_inside():
    node = parse("a | optional(b | c.d) | e?")
    assert [(r.text, r.optional) for r in refs(node)] == [
        ("a", False),
        ("b", True),
        ("c.d", True),
        ("e", True),
    ]


def test_resolution_of_bare_names_and_sessions():
    e = compile_expression("arm.* | gripper | gripper_left | cup", SESSIONS)
    got = [(r.session, r.objects) for r in e.refs]
    assert got == [
        ("arm", ("arm", "arm_2")),
        ("gripper", ("gripper_left", "gripper_right")),
        ("gripper", ("gripper_left",)),
        ("cup", ("cup",)),
    ]
    assert e.sessions == ["arm", "cup", "gripper"]
    # Same meaning, same canonical form (it is what the resume key hashes).
    assert (
        compile_expression("gripper.gripper_left|cup.cup", SESSIONS).canonical
        == compile_expression("gripper_left | cup", SESSIONS).canonical
    )


@pytest.mark.parametrize(
    "expr, message, caret",
    [
        ("dilate(arm.arm 15)", "expected ',' or ')'", "15"),
        ("arm.arm + cup", "unexpected character '+'", "+"),
        ("dilate(cup, big)", "expected a radius", "big"),
        ("cup |", "ends too early", None),
        ("gripr | cup", "no session or object named 'gripr'", "gripr"),
        ("arm.arm_3 | cup", "has no object 'arm_3'", "arm.arm_3"),
        ("blur(cup, 3)", "unknown function 'blur'", "blur"),
        ("erode(cup, 2, circle)", "unknown shape 'circle'", "circle"),
        ("cup gripper", "expected an operator", "gripper"),
        ("cup & ~gripper", "complement", "~"),
        ("arm", "both an object of session 'arm' and a session", "arm"),
        ("", "empty expression", None),
    ],
)
def test_errors_point_at_the_offending_token(expr, message, caret):
    with pytest.raises(ExpressionError) as ei:
        compile_expression(expr, SESSIONS)
    e = ei.value
    lines = str(e).splitlines()
    assert message in lines[0]
    assert f"column {e.pos + 1}" in lines[0]
    assert lines[1] == "    " + expr
    marks = lines[2][4:]
    start = len(marks) - len(marks.lstrip())
    assert start == e.pos and set(marks.strip()) == {"^"}
    if caret is not None:
        assert expr[start : start + len(caret)] == caret
        assert len(marks.strip()) == len(caret)


def test_error_keeps_file_and_field_when_located():
    try:
        compile_expression("nope", SESSIONS)
    except ExpressionError as e:
        located = e.located(path="job.yaml", field="compose.x.expr")
    assert (
        str(located).splitlines()[0].startswith("job.yaml: compose.x.expr: no session or object named 'nope'")
    )


# -- operators against references ------------------------------------------
def test_boolean_operators(masks):
    a, b, c = masks["s.a"], masks["s.b"], masks["s.c"]
    np.testing.assert_array_equal(evaluate_full("s.a | s.b", masks), a | b)
    np.testing.assert_array_equal(evaluate_full("s.a & s.b", masks), a & b)
    np.testing.assert_array_equal(evaluate_full("s.a - s.b", masks), a & ~b)
    np.testing.assert_array_equal(evaluate_full("s.a | s.b - s.c & s.a", masks), a | ((b & ~c) & a))
    np.testing.assert_array_equal(evaluate_full("(s.a | s.e) & s.e", masks), np.zeros_like(a))
    np.testing.assert_array_equal(evaluate_full("s", masks), a | b | c)


@pytest.mark.parametrize("r", [0, 1, 4, 15])
def test_dilate_erode_square(masks, r):
    a = masks["s.a"]
    ref_d = ndi.binary_dilation(a, _square(r)) if r else a
    ref_e = ndi.binary_erosion(a, _square(r), border_value=1) if r else a
    np.testing.assert_array_equal(evaluate_full(f"dilate(s.a, {r})", masks), ref_d)
    np.testing.assert_array_equal(evaluate_full(f"erode(s.a, {r})", masks), ref_e)


@pytest.mark.parametrize("r", [1, 3, 7])
def test_dilate_erode_disk(masks, r):
    a = masks["s.a"]
    np.testing.assert_array_equal(
        evaluate_full(f"dilate(s.a, {r}, disk)", masks), ndi.binary_dilation(a, _disk(r))
    )
    np.testing.assert_array_equal(
        evaluate_full(f"erode(s.a, {r}, shape=disk)", masks), ndi.binary_erosion(a, _disk(r), border_value=1)
    )


def test_fill_holes(masks):
    for k in ("s.a", "s.b", "s.c"):
        np.testing.assert_array_equal(
            evaluate_full(f"fill_holes({k})", masks), ndi.binary_fill_holes(masks[k])
        )
    ring = np.zeros((30, 30), bool)
    ring[5:20, 5:20] = True
    ring[8:12, 8:12] = False
    assert evaluate_full("fill_holes(s.r)", {"s.r": ring})[8:12, 8:12].all()


@pytest.mark.parametrize("n", [1, 2, 5, 60])
def test_remove_small(masks, n):
    a = masks["s.a"]
    lab, k = ndi.label(a, structure=np.ones((3, 3)))
    sizes = np.bincount(lab.ravel())
    keep = sizes >= n
    keep[0] = False
    np.testing.assert_array_equal(evaluate_full(f"remove_small(s.a, {n})", masks), keep[lab])


def test_empty_inputs_stay_empty(masks):
    for e in (
        "dilate(s.e, 5)",
        "erode(s.e, 2)",
        "fill_holes(s.e)",
        "remove_small(s.e, 3)",
        "s.e & s.a",
        "s.e - s.a",
    ):
        assert not evaluate_full(e, masks).any(), e


def test_arm_gripper_example_is_exactly_notebook_formula():
    """dilate(arm) - dilate(grippers) == dilate(arm) & ~dilate(gripper_left | gripper_right), pixel for pixel."""
    import cv2

    rng = np.random.default_rng(7)
    h, w, r = 120, 160, 15
    arm = np.zeros((h, w), np.uint8)
    cv2.line(arm, (40, h - 1), (110, 40), 1, 18)  # enters from the bottom edge
    gl = np.zeros((h, w), bool)
    gl[25:45, 100:112] = True
    gr = np.zeros((h, w), bool)
    gr[30:50, 118:130] = True
    masks = {
        "arm.arm": arm > 0,
        "gripper.gripper_left": gl,
        "gripper.gripper_right": gr | (rng.random((h, w)) < 0.001),
    }
    got = evaluate_full(f"dilate(arm, {r}) - dilate(gripper_left | gripper_right, {r})", masks)
    kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    arm_d = cv2.dilate(arm, kernel) > 0
    grip_d = (
        cv2.dilate((masks["gripper.gripper_left"] | masks["gripper.gripper_right"]).astype(np.uint8), kernel)
        > 0
    )
    np.testing.assert_array_equal(got, arm_d & ~grip_d)
    assert got.any() and (arm_d & grip_d).any()  # the subtraction actually removed something


def test_windows_never_leave_the_frame():
    m = np.zeros((20, 30), bool)
    m[0, 0] = m[19, 29] = True
    e = compile_expression("dilate(s.a, 50)", {"s": ["a"]})
    w = evaluate(e.root, lambda r: Window.from_full(m), (20, 30))
    assert (w.y0, w.x0, w.y1, w.x1) == (0, 0, 20, 30) and w.data.all()

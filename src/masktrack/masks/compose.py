"""Composition expressions: combine session masks without ``eval``.

Grammar (precedence from loose to tight, all binary operators left-assoc,
the same order as Python's set operators)::

    expr    := diff_or ( '|' diff_or )*          union
    diff_or := inter ( '&' inter )*              intersection
    inter   := unary ( '-' unary )*              difference
    unary   := primary '?'*                      '?' = may be empty over the whole video
    primary := '(' expr ')'
             | NAME '(' args ')'                 dilate, erode, fill_holes, remove_small, optional
             | ref
    ref     := NAME ( '.' ( NAME | '*' ) )?      session.object | session.* | object | session

So ``a | b - c`` is ``a | (b - c)``; write parentheses when in doubt.  Names
are ``[A-Za-z_][A-Za-z0-9_]*`` or any text in backticks (`` `my-session`.arm ``).

Functions::

    dilate(x, r[, shape])     grow by radius r (pixels)
    erode(x, r[, shape])      shrink by radius r
    fill_holes(x)             fill background regions not connected to the frame border
    remove_small(x, min_area) drop 8-connected components with fewer than min_area pixels
    optional(x)               same as x?  (every reference inside x may be empty)

The structuring element is a **square** of side 2r+1 by default (what the
notebook this replaces used, so results are pixel-identical to it); pass
``shape=disk`` (or a third argument ``disk``) for the Euclidean disk
x²+y² <= r².  Outside the frame counts as neither: dilation does not grow in
from the border and erosion does not eat in from it (OpenCV's convention).

Evaluation is per frame on *windows* (a bounding box plus a crop), so a
gripper covering 1% of a 720p frame costs 1% of a full-frame operation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from masktrack.errors import ConfigError

Shape = Literal["square", "disk"]
FUNCTIONS: dict[str, tuple[int, int]] = {  # name -> (min args, max args)
    "dilate": (2, 3),
    "erode": (2, 3),
    "fill_holes": (1, 1),
    "remove_small": (2, 2),
    "optional": (1, 1),
}
SHAPES = ("square", "disk")


class ExpressionError(ConfigError):
    """A composition expression that does not parse or names something unknown.

    The first line is complete on its own; the next two show the expression
    with a caret under the offending token.
    """

    def __init__(self, message: str, expr: str, pos: int, length: int = 1, **kw: Any) -> None:
        self.reason = message
        self.expr = expr
        self.pos = pos
        self.length = max(1, length)
        caret = " " * pos + "^" * self.length
        super().__init__(f"{message} (column {pos + 1})\n    {expr}\n    {caret}", **kw)

    def located(self, *, path: Any = None, field: str | None = None) -> ExpressionError:
        """The same error, naming the config file and field it came from."""
        return ExpressionError(self.reason, self.expr, self.pos, self.length, path=path, field=field)


# --------------------------------------------------------------------------
# AST
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    pos: int = field(compare=False, repr=False)
    length: int = field(compare=False, repr=False)


@dataclass(frozen=True)
class Ref(Node):
    """``session.object``, ``object`` or ``session``; ``objects`` is filled by :func:`resolve`."""

    first: str = ""
    second: str | None = None
    session: str | None = None
    objects: tuple[str, ...] = ()
    optional: bool = False

    @property
    def text(self) -> str:
        return self.first if self.second is None else f"{self.first}.{self.second}"

    def __str__(self) -> str:
        if self.session is None:
            base = _quote(self.first) + ("" if self.second is None else "." + _quote(self.second))
        else:
            base = _quote(self.session) + "." + "+".join(_quote(o) for o in self.objects)
        return base + ("?" if self.optional else "")


@dataclass(frozen=True)
class BinOp(Node):
    op: str = "|"
    left: Node | None = None
    right: Node | None = None

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True)
class Call(Node):
    fn: str = ""
    arg: Node | None = None
    value: int = 0
    shape: Shape = "square"

    def __str__(self) -> str:
        if self.fn in ("dilate", "erode"):
            return f"{self.fn}({self.arg}, {self.value}, {self.shape})"
        if self.fn == "remove_small":
            return f"remove_small({self.arg}, {self.value})"
        return f"{self.fn}({self.arg})"


def _quote(name: str) -> str:
    return name if name == "*" or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f"`{name}`"


# --------------------------------------------------------------------------
# Tokenizer + recursive-descent parser
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: str  # NAME NUMBER OP END
    text: str
    pos: int
    length: int


_TOKEN = re.compile(
    r"(?P<ws>\s+)|(?P<NAME>[A-Za-z_][A-Za-z0-9_]*)|(?P<QNAME>`[^`]*`)|(?P<NUMBER>\d+(?:\.\d*)?)|(?P<OP>[|&\-(),.?=~*])"
)


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(expr):
        m = _TOKEN.match(expr, i)
        if m is None:
            bad = expr[i]
            hint = " (use '|', '&' or '-')" if bad in "+*^!/" else ""
            if bad == "`":
                raise ExpressionError("unterminated backtick name", expr, i)
            raise ExpressionError(f"unexpected character {bad!r}{hint}", expr, i)
        kind = m.lastgroup
        text = m.group()
        if kind == "QNAME":
            if len(text) == 2:
                raise ExpressionError("empty name", expr, i, 2)
            tokens.append(Token("NAME", text[1:-1], i, len(text)))
        elif kind != "ws":
            tokens.append(Token(kind, text, i, len(text)))  # type: ignore[arg-type]
        i = m.end()
    tokens.append(Token("END", "", len(expr), 1))
    return tokens


MAX_TOKENS = 600
MAX_DEPTH = 32
MAX_RADIUS = 4096


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens = tokenize(expr)
        self.i = 0
        self.depth = 0
        if len(self.tokens) > MAX_TOKENS:  # evaluation recurses along the tree: keep it far from the limit
            raise self.error(f"expression longer than {MAX_TOKENS} tokens; split it into named outputs")

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, msg: str, tok: Token | None = None) -> ExpressionError:
        tok = tok or self.tok
        return ExpressionError(msg, self.expr, tok.pos, tok.length)

    def take(self) -> Token:
        t = self.tok
        if t.kind != "END":  # END stays current: an expression cut short is an error, not an IndexError
            self.i += 1
        return t

    def expect(self, text: str, what: str) -> Token:
        if self.tok.kind == "OP" and self.tok.text == text:
            return self.take()
        got = "end of expression" if self.tok.kind == "END" else repr(self.tok.text)
        raise self.error(f"expected {what}, got {got}")

    def at(self, text: str) -> bool:
        return self.tok.kind == "OP" and self.tok.text == text

    def parse(self) -> Node:
        if self.tok.kind == "END":
            raise self.error("empty expression")
        node = self.union()
        if self.tok.kind != "END":
            if self.tok.kind in ("NAME", "NUMBER") or self.at("("):
                raise self.error(f"expected an operator ('|', '&', '-') before {self.tok.text!r}")
            raise self.error(f"unexpected {self.tok.text!r}")
        return node

    def _binary(self, op: str, sub: Callable[[], Node]) -> Node:
        left = sub()
        while self.at(op):
            t = self.take()
            right = sub()
            left = BinOp(t.pos, t.length, op, left, right)
        return left

    def union(self) -> Node:
        return self._binary("|", self.inter)

    def inter(self) -> Node:
        return self._binary("&", self.diff)

    def diff(self) -> Node:
        return self._binary("-", self.unary)

    def unary(self) -> Node:
        if self.at("~"):
            raise self.error("'~' (complement) is not supported: write 'a - b' instead of 'a & ~b'")
        node = self.primary()
        while self.at("?"):
            self.take()
            node = _mark_optional(node)
        return node

    def primary(self) -> Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self.error(f"parentheses and calls nested deeper than {MAX_DEPTH} levels")
            return self._primary()
        finally:
            self.depth -= 1

    def _primary(self) -> Node:
        t = self.tok
        if self.at("("):
            self.take()
            node = self.union()
            self.expect(")", "')'")
            return node
        if t.kind == "NAME":
            self.take()
            if self.at("("):
                return self.call(t)
            if self.at("."):
                self.take()
                t2 = self.tok
                if t2.kind != "NAME" and not self.at("*"):
                    raise self.error("expected an object name or '*' after '.'")
                self.take()
                return Ref(t.pos, t2.pos + t2.length - t.pos, t.text, t2.text)
            return Ref(t.pos, t.length, t.text)
        if t.kind == "END":
            raise self.error("expression ends too early: expected a mask")
        if t.kind == "NUMBER":
            raise self.error(f"expected a mask, got the number {t.text}")
        raise self.error(f"expected a mask, got {t.text!r}")

    def call(self, name: Token) -> Node:
        fn = name.text
        if fn not in FUNCTIONS:
            raise self.error(f"unknown function {fn!r} (functions: {', '.join(FUNCTIONS)})", name)
        lo, hi = FUNCTIONS[fn]
        self.expect("(", "'('")
        arg = self.union()
        extra: list[Token] = []
        kwargs: dict[str, Token] = {}
        while self.at(","):
            self.take()
            t = self.take()
            if t.kind == "NAME" and self.at("="):
                self.take()
                v = self.take()
                if t.text != "shape" or fn not in ("dilate", "erode"):
                    raise self.error(f"{fn}() has no option {t.text!r}", t)
                kwargs["shape"] = v
            elif t.kind in ("NUMBER", "NAME"):
                extra.append(t)
            else:
                raise self.error(f"expected an argument of {fn}(), got {t.text or 'end of expression'!r}", t)
        close = self.tok
        self.expect(")", f"',' or ')' in {fn}()")
        n = 1 + len(extra) + len(kwargs)
        if not lo <= n <= hi:
            want = f"{lo}" if lo == hi else f"{lo} or {hi}"
            raise self.error(
                f"{fn}() takes {want} arguments, got {n}", extra[-1] if extra and n > hi else close
            )
        span = close.pos + 1 - name.pos
        if fn == "optional":
            return _mark_optional(arg)
        if fn == "fill_holes":
            return Call(name.pos, span, fn, arg)
        value = self._int(extra[0], "a radius" if fn != "remove_small" else "a minimum area")
        if fn in ("dilate", "erode") and value > MAX_RADIUS:
            raise self.error(
                f"radius {value} is larger than any frame (at most {MAX_RADIUS} pixels)", extra[0]
            )
        shape: Shape = "square"
        shape_tok = kwargs.get("shape") or (extra[1] if len(extra) > 1 else None)
        if shape_tok is not None:
            if shape_tok.text not in SHAPES:
                raise self.error(f"unknown shape {shape_tok.text!r} (shapes: square, disk)", shape_tok)
            shape = shape_tok.text  # type: ignore[assignment]
        return Call(name.pos, span, fn, arg, value, shape)

    def _int(self, t: Token, what: str) -> int:
        if t.kind != "NUMBER" or "." in t.text:
            raise self.error(f"expected {what} (a whole number of pixels), got {t.text!r}", t)
        return int(t.text)


def _mark_optional(node: Node) -> Node:
    """Mark every reference inside ``node`` optional."""
    if isinstance(node, Ref):
        return Ref(node.pos, node.length, node.first, node.second, node.session, node.objects, True)
    if isinstance(node, BinOp):
        assert node.left is not None and node.right is not None  # the parser builds both sides
        return BinOp(node.pos, node.length, node.op, _mark_optional(node.left), _mark_optional(node.right))
    if isinstance(node, Call):
        return Call(node.pos, node.length, node.fn, _mark_optional(node.arg), node.value, node.shape)  # type: ignore[arg-type]
    raise TypeError(node)


def parse(expr: str) -> Node:
    """Parse an expression into an AST (raises :class:`ExpressionError` with a caret)."""
    return _Parser(expr).parse()


def refs(node: Node) -> list[Ref]:
    """References in evaluation order."""
    if isinstance(node, Ref):
        return [node]
    if isinstance(node, BinOp):
        return refs(node.left) + refs(node.right)  # type: ignore[arg-type]
    if isinstance(node, Call):
        return refs(node.arg)  # type: ignore[arg-type]
    raise TypeError(node)


def resolve(node: Node, sessions: Mapping[str, Sequence[str]], expr: str) -> Node:
    """Bind each reference to (session, objects) given ``{session: [objects]}``.

    ``a.b`` is session a's object b and ``a.*`` all of session a's objects; a
    bare name is an object if exactly one session has it, else a session (the
    union of its objects).  Unknown or ambiguous names raise with a caret
    under them.
    """
    if isinstance(node, BinOp):
        assert node.left is not None and node.right is not None  # the parser builds both sides
        return BinOp(
            node.pos,
            node.length,
            node.op,
            resolve(node.left, sessions, expr),
            resolve(node.right, sessions, expr),
        )
    if isinstance(node, Call):
        return Call(node.pos, node.length, node.fn, resolve(node.arg, sessions, expr), node.value, node.shape)  # type: ignore[arg-type]
    assert isinstance(node, Ref)
    avail = ", ".join(sorted(sessions)) or "none"
    if node.second is not None:
        if node.first not in sessions:
            raise ExpressionError(
                f"unknown session {node.first!r} (sessions with masks: {avail})",
                expr,
                node.pos,
                len(node.first),
            )
        objs = tuple(sessions[node.first])
        if node.second == "*":
            return Ref(node.pos, node.length, node.first, "*", node.first, objs, node.optional)
        if node.second not in objs:
            raise ExpressionError(
                f"session {node.first!r} has no object {node.second!r} (objects: {', '.join(objs)})",
                expr,
                node.pos,
                node.length,
            )
        return Ref(node.pos, node.length, node.first, node.second, node.first, (node.second,), node.optional)
    name = node.first
    owners = [s for s, objs in sessions.items() if name in objs]
    if len(owners) > 1:
        raise ExpressionError(
            f"object {name!r} is in several sessions ({', '.join(owners)}); write session.object",
            expr,
            node.pos,
            node.length,
        )
    if owners and name in sessions and tuple(sessions[name]) != (name,):
        raise ExpressionError(
            f"{name!r} is both an object of session {owners[0]!r} and a session; write {owners[0]}.{name} or {name}.*",
            expr,
            node.pos,
            node.length,
        )
    if owners:
        return Ref(node.pos, node.length, name, None, owners[0], (name,), node.optional)
    if name in sessions:
        return Ref(node.pos, node.length, name, None, name, tuple(sessions[name]), node.optional)
    raise ExpressionError(
        f"no session or object named {name!r} (sessions with masks: {avail})", expr, node.pos, node.length
    )


@dataclass(frozen=True)
class Expression:
    """A parsed, resolved expression: what :func:`evaluate` runs."""

    text: str
    root: Node

    @property
    def canonical(self) -> str:
        """Fully parenthesised, references spelled ``session.object``: the hash input."""
        return str(self.root)

    @property
    def refs(self) -> list[Ref]:
        return refs(self.root)

    @property
    def sessions(self) -> list[str]:
        return sorted({r.session for r in self.refs if r.session})


def compile_expression(expr: str, sessions: Mapping[str, Sequence[str]]) -> Expression:
    """Parse and resolve; see :func:`resolve` for name rules."""
    return Expression(expr, resolve(parse(expr), sessions, expr))


# --------------------------------------------------------------------------
# Windows: a crop of the frame plus its offset; None is an empty mask.
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """uint8 0/1 ``data`` placed at rows y0.., columns x0.. of an (H, W) frame."""

    y0: int
    x0: int
    data: np.ndarray
    tight: bool = False  # data's bounding box is known to be the box of its set pixels

    @property
    def y1(self) -> int:
        return self.y0 + self.data.shape[0]

    @property
    def x1(self) -> int:
        return self.x0 + self.data.shape[1]

    @staticmethod
    def from_full(mask: np.ndarray) -> Window | None:
        return tighten(Window(0, 0, np.ascontiguousarray(mask, dtype=np.uint8)))

    def to_full(self, shape: tuple[int, int], on: int = 1) -> np.ndarray:
        out = np.zeros(shape, np.uint8)
        np.multiply(self.data, on, out=out[self.y0 : self.y1, self.x0 : self.x1], casting="unsafe")
        return out

    def count(self) -> int:
        import cv2

        return int(cv2.countNonZero(self.data))


MaskValue = Window | None


def tighten(w: MaskValue) -> MaskValue:
    """Shrink a window to the bounding box of its set pixels (None if none)."""
    import cv2

    if w is None or w.tight:
        return w
    if w.data.size == 0:
        return None
    x, y, bw, bh = cv2.boundingRect(w.data)
    if bw == 0 or bh == 0:
        return None
    return Window(w.y0 + y, w.x0 + x, w.data[y : y + bh, x : x + bw], True)


def _union(a: MaskValue, b: MaskValue) -> MaskValue:
    if a is None:
        return b
    if b is None:
        return a
    y0, x0, y1, x1 = min(a.y0, b.y0), min(a.x0, b.x0), max(a.y1, b.y1), max(a.x1, b.x1)
    out = np.zeros((y1 - y0, x1 - x0), np.uint8)
    out[a.y0 - y0 : a.y1 - y0, a.x0 - x0 : a.x1 - x0] = a.data
    sub = out[b.y0 - y0 : b.y1 - y0, b.x0 - x0 : b.x1 - x0]
    np.bitwise_or(sub, b.data, out=sub)
    return Window(y0, x0, out, a.tight and b.tight)


def _overlap(a: Window, b: Window) -> tuple[int, int, int, int] | None:
    y0, x0, y1, x1 = max(a.y0, b.y0), max(a.x0, b.x0), min(a.y1, b.y1), min(a.x1, b.x1)
    return (y0, x0, y1, x1) if y0 < y1 and x0 < x1 else None


def _inter(a: MaskValue, b: MaskValue) -> MaskValue:
    if a is None or b is None:
        return None
    ov = _overlap(a, b)
    if ov is None:
        return None
    y0, x0, y1, x1 = ov
    da = a.data[y0 - a.y0 : y1 - a.y0, x0 - a.x0 : x1 - a.x0]
    db = b.data[y0 - b.y0 : y1 - b.y0, x0 - b.x0 : x1 - b.x0]
    return Window(y0, x0, np.bitwise_and(da, db))


def _diff(a: MaskValue, b: MaskValue) -> MaskValue:
    if a is None or b is None:
        return a
    ov = _overlap(a, b)
    if ov is None:
        return a
    y0, x0, y1, x1 = ov
    out = a.data.copy()
    sub = out[y0 - a.y0 : y1 - a.y0, x0 - a.x0 : x1 - a.x0]
    db = b.data[y0 - b.y0 : y1 - b.y0, x0 - b.x0 : x1 - b.x0]
    np.bitwise_and(sub, np.invert(db), out=sub)  # data is 0/1, so ~1 = 254 clears bit 0 and ~0 keeps it
    return Window(a.y0, a.x0, out)


def _pad(w: Window, r: int, frame: tuple[int, int]) -> Window:
    """The same mask in a window grown by r on each side (clipped to the frame)."""
    h, wd = frame
    y0, x0 = max(0, w.y0 - r), max(0, w.x0 - r)
    y1, x1 = min(h, w.y1 + r), min(wd, w.x1 + r)
    out = np.zeros((y1 - y0, x1 - x0), np.uint8)
    out[w.y0 - y0 : w.y1 - y0, w.x0 - x0 : w.x1 - x0] = w.data
    return Window(y0, x0, out)


def _kernel(r: int) -> np.ndarray:
    return np.ones((2 * r + 1, 2 * r + 1), np.uint8)


def _morph(a: MaskValue, r: int, shape: Shape, frame: tuple[int, int], grow: bool) -> MaskValue:
    """Dilate (grow) or erode on the mask's bounding box padded by r.

    Padding by r is enough for both: dilation cannot reach further, and for
    erosion every set pixel keeps its whole neighbourhood inside the crop, so
    the crop's edges (treated as 'set' by OpenCV, like the frame border) never
    change the result.
    """
    import cv2

    a = tighten(a)
    if a is None or r == 0:
        return a
    p = _pad(a, r, frame)
    if shape == "square":
        if grow:  # a non-empty tight box grows by exactly r on each side (within the frame)
            return Window(p.y0, p.x0, cv2.dilate(p.data, _kernel(r)), True)
        return Window(p.y0, p.x0, cv2.erode(p.data, _kernel(r)))
    # Disk via the exact Euclidean distance transform: cost independent of r.
    if grow:
        dist = cv2.distanceTransform(np.uint8(1) - p.data, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        return Window(p.y0, p.x0, (dist <= r).view(np.uint8), True)
    else:
        if cv2.countNonZero(p.data) == p.data.size:  # no background anywhere: nothing to erode from
            return p
        dist = cv2.distanceTransform(p.data, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        out = (dist > r).view(np.uint8)
    return Window(p.y0, p.x0, out)


def _fill_holes(a: MaskValue, frame: tuple[int, int]) -> MaskValue:
    """Background not 4-connected to the border of the bounding box becomes foreground.

    A component touching the box's edge touches the (empty) rest of the frame
    or the frame border, so it is not a hole: same result as full-frame.
    """
    import cv2

    a = tighten(a)
    if a is None:
        return None
    h, w = a.data.shape
    work = np.zeros((h + 2, w + 2), np.uint8)
    work[1:-1, 1:-1] = a.data
    cv2.floodFill(work, None, (0, 0), 2, flags=4)
    return Window(a.y0, a.x0, (work[1:-1, 1:-1] != 2).view(np.uint8))


def _remove_small(a: MaskValue, min_area: int) -> MaskValue:
    """Drop 8-connected components with fewer than ``min_area`` pixels."""
    import cv2

    a = tighten(a)
    if a is None or min_area <= 1:
        return a
    n, labels, stats, _ = cv2.connectedComponentsWithStats(a.data, connectivity=8)
    keep = (stats[:, cv2.CC_STAT_AREA] >= min_area).astype(np.uint8)
    keep[0] = 0
    if keep[1:].all():
        return a
    return tighten(Window(a.y0, a.x0, keep[labels]))


def evaluate(
    node: Node, leaves: Mapping[Ref, MaskValue] | Callable[[Ref], MaskValue], frame: tuple[int, int]
) -> MaskValue:
    """Evaluate a resolved AST for one frame.

    ``leaves`` gives each reference's mask as a :class:`Window` (or None when
    empty); ``frame`` is (H, W).  Returns a window (possibly with no set pixel) or None.
    """
    get = leaves if callable(leaves) else leaves.__getitem__
    if isinstance(node, Ref):
        return get(node)
    if isinstance(node, BinOp):
        a = evaluate(node.left, leaves, frame)  # type: ignore[arg-type]
        if node.op == "&" and a is None:
            return None
        b = evaluate(node.right, leaves, frame)  # type: ignore[arg-type]
        if node.op == "|":
            return _union(a, b)
        if node.op == "&":
            return _inter(a, b)
        return _diff(a, b)
    assert isinstance(node, Call)
    x = evaluate(node.arg, leaves, frame)  # type: ignore[arg-type]
    if node.fn == "dilate":
        return _morph(x, node.value, node.shape, frame, True)
    if node.fn == "erode":
        return _morph(x, node.value, node.shape, frame, False)
    if node.fn == "fill_holes":
        return _fill_holes(x, frame)
    if node.fn == "remove_small":
        return _remove_small(x, node.value)
    raise AssertionError(node.fn)


def evaluate_full(expr: Expression | str, masks: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate on full-frame bool masks ``{"session.object": [H, W]}``: a convenience for tests and notebooks.

    ``expr`` may be a string; sessions and objects are then taken from the keys.
    """
    if isinstance(expr, str):
        sessions: dict[str, list[str]] = {}
        for key in masks:
            s, o = key.split(".", 1)
            sessions.setdefault(s, []).append(o)
        expr = compile_expression(expr, sessions)
    first = next(iter(masks.values()))
    frame = first.shape[:2]
    cache: dict[tuple[str | None, tuple[str, ...]], MaskValue] = {}

    def leaf(r: Ref) -> MaskValue:
        k = (r.session, r.objects)
        if k not in cache:
            u = np.zeros(frame, bool)
            for o in r.objects:
                u |= masks[f"{r.session}.{o}"]
            cache[k] = Window.from_full(u)
        return cache[k]

    w = evaluate(expr.root, leaf, frame)
    return np.zeros(frame, bool) if w is None else w.to_full(frame).astype(bool)

"""The import-layer contract: data flows one way, and the imports say so.

Layers, lowest first (a module may import its own layer and any lower one, never a higher one)::

    errors < io < robot < prompts < config < segment, masks < track < synth, viz, eval
           < batch, demo, annotate < cli   (plugins sits with config)

Every ``import``/``from ... import`` of a ``masktrack`` module counts, also the lazy ones inside
functions (they couple the code just the same); only imports under ``if TYPE_CHECKING:`` are
exempt.  A package that is not in the table fails the test, so a new package gets a place on
purpose.  ``rich`` (terminal rendering) may be imported only under ``cli/``: core functions take a
progress callback and return reports.

Why a test and not import-linter: it needs nothing installed, runs in a second, and its message
names the file, line and both layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "masktrack"

LAYERS: list[set[str]] = [
    {"errors", "__init__"},
    {"io"},
    {"robot"},  # robot state/kinematics: above the scene format, below everything that uses prompts
    {"prompts"},
    {"config", "plugins"},  # plugins: the registry + typed options shared by backends and trackers
    {"segment", "masks"},
    {"track"},
    {"synth", "viz", "eval"},
    {"batch", "demo", "annotate"},
    {"cli", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _package(path: Path, root: Path) -> str:
    return path.relative_to(root).parts[0].removesuffix(".py")


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    for sub in ast.walk(child):
                        if hasattr(sub, "lineno"):
                            lines.add(sub.lineno)
    return lines


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` outside ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    here = ["masktrack", *path.relative_to(root).with_suffix("").parts]
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            if mod == "masktrack":  # from masktrack import io
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def layer_problems(root: Path = SRC) -> list[str]:
    """One line per import against the layer order under ``root`` (a ``masktrack`` package folder)."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        src = _package(path, root)
        if src not in RANK:
            problems.append(
                f"{path.relative_to(root.parent)}: package {src!r} has no layer in tests/test_layers.py"
            )
            continue
        for line, mod in _imports(path, root):
            parts = mod.split(".")
            if parts[0] != "masktrack" or len(parts) < 2 or parts[1] not in RANK:
                continue
            dst = parts[1]
            if RANK[dst] > RANK[src]:
                problems.append(
                    f"{path.relative_to(root.parent)}:{line}: {src} (layer {RANK[src]}) imports {mod} "
                    f"(layer {RANK[dst]})"
                )
    return problems


def test_imports_follow_the_layers():
    problems = layer_problems()
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_rich_only_under_cli():
    problems = [
        f"{path.relative_to(SRC.parent)}:{line}: imports {mod}"
        for path in sorted(SRC.rglob("*.py"))
        if _package(path, SRC) != "cli"
        for line, mod in _imports(path, SRC)
        if mod == "rich" or mod.startswith("rich.")
    ]
    assert not problems, "rich outside cli/ (return reports, render them in cli/):\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "code, ok",
    [
        ("from masktrack.track.base import Tracks", False),  # io importing track: caught
        ("import masktrack.errors", True),
        ("def f():\n    from masktrack.cli import main", False),  # lazy imports count too
        ("from ..segment import base", False),  # relative imports too
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from masktrack.track import base", True),
    ],
)
def test_the_checker_catches_violations(tmp_path, code, ok):
    """The contract can fail: a planted upward import in ``io`` is reported, allowed ones are not."""
    root = tmp_path / "masktrack"
    (root / "io").mkdir(parents=True)
    (root / "io" / "planted.py").write_text(code + "\n")
    problems = layer_problems(root)
    assert (problems == []) == ok, problems
    if not ok:
        assert "io/planted.py" in problems[0]


def test_unknown_packages_need_a_layer(tmp_path):
    root = tmp_path / "masktrack"
    (root / "newpkg").mkdir(parents=True)
    (root / "newpkg" / "x.py").write_text("import masktrack.errors\n")
    assert any("has no layer" in p for p in layer_problems(root))

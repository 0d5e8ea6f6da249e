"""The public API in ``masktrack/__init__.py``: every name resolves, and importing the package is light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import masktrack


@pytest.mark.parametrize("name", sorted(masktrack.__all__))
def test_every_public_name_resolves(name):
    obj = getattr(masktrack, name)
    assert obj is not None
    if callable(obj) and not isinstance(obj, type):
        assert obj.__doc__, f"masktrack.{name} has no docstring"


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        masktrack.nope  # noqa: B018


def test_import_masktrack_loads_nothing_heavy():
    code = (
        "import sys, masktrack\n"
        "heavy = [m for m in ('numpy', 'pydantic', 'torch', 'cv2', 'rich', 'rerun') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == ""
    # and the lazy names really import on first use
    code2 = "import sys, masktrack\nmasktrack.load_config\nprint('pydantic' in sys.modules)\n"
    out2 = subprocess.run([sys.executable, "-c", code2], check=True, capture_output=True, text=True).stdout
    assert out2.strip() == "True"

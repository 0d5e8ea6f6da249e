"""Segmentation backends by name, imported lazily (see :mod:`masktrack.plugins` for the idiom).

Built-in backends are listed as ``"module:Class"`` strings, so importing
masktrack never imports torch, sam2 or sam3.  Third-party backends register
through the ``masktrack.backends`` entry-point group or :func:`register_backend`
(tests use the latter for deterministic backends).

Plugins without packaging: ``MASKTRACK_PLUGINS=mod1,mod2`` names modules
(importable from ``sys.path``/``PYTHONPATH``) that are imported before any
backend lookup; they call :func:`register_backend` at import.  Handy for a
lab's in-house backend, and how the test suite's subprocesses find theirs.

A backend's ``Options`` model (a :class:`masktrack.plugins.PluginOptions`) is
validated by :func:`load_backend` before the backend is built.
"""

from __future__ import annotations

from typing import Any

from masktrack.plugins import PLUGINS_ENV, Registry, load_plugins
from masktrack.segment.base import Backend

REGISTRY: Registry[Backend] = Registry(
    "backend",
    "masktrack.backends",
    {
        "classic": "masktrack.segment.classic:ClassicBackend",
        "bilateral": "masktrack.segment.bilateral:BilateralBackend",
        "sam2": "masktrack.segment.sam2:Sam2Backend",
        "sam3": "masktrack.segment.sam3:Sam3Backend",
        "kinematic": "masktrack.segment.kinematic:KinematicBackend",
    },
    field="backend",
    extras={"sam2": "sam2", "sam3": "sam3"},
)
_BUILTIN = REGISTRY.builtin
_REGISTERED = REGISTRY.registered
# What each built-in needs installed (import names), checked without importing it; and how to get it.
_REQUIRES: dict[str, tuple[tuple[str, ...], str]] = {
    "classic": ((), ""),
    "sam2": (("torch", "sam2"), "pip install 'masktrack[sam2]' (and a checkpoint: options.checkpoint)"),
    "sam3": (("torch", "sam3"), "pip install 'masktrack[sam3]' (and access to the SAM3 weights)"),
}
# Which built-ins take text prompts, known without importing them.
_TEXT: set[str] = {"sam3"}

DEFAULT_BACKEND = "bilateral"  # weight-free, CPU; `classic` stays available by name

__all__ = [
    "DEFAULT_BACKEND",
    "PLUGINS_ENV",
    "REGISTRY",
    "available_backends",
    "backend_class",
    "is_known",
    "load_backend",
    "load_plugins",
    "register_backend",
    "text_backends",
    "unregister_backend",
]


def register_backend(name: str, backend: type[Backend] | str, *, text: bool | None = None) -> None:
    """Register a backend class (or ``"module:Class"``) under ``name``."""
    REGISTRY.register(name, backend)
    if text or (text is None and not isinstance(backend, str) and backend.supports_text):
        _TEXT.add(name)


def unregister_backend(name: str) -> None:
    REGISTRY.unregister(name)
    _TEXT.discard(name)


def _entry_point_targets() -> dict[str, str]:
    return REGISTRY.entry_points()


def available_backends() -> list[str]:
    return REGISTRY.names()


def missing_requirements(name: str) -> tuple[list[str], str]:
    """(modules ``name`` needs that are not installed, how to install them), without importing anything."""
    import importlib.util

    load_plugins()
    if name in _BUILTIN:
        mods, how = _REQUIRES.get(name, ((), ""))
    elif name in _REGISTERED:
        return [], ""
    else:
        target = _entry_point_targets().get(name, "")
        mods, how = (target.split(":")[0].split(".")[0],), f"install the package that provides {target}"
    missing = []
    for m in mods:
        try:
            if importlib.util.find_spec(m) is None:
                missing.append(m)
        except (ImportError, ValueError):
            missing.append(m)
    return missing, (how if missing else "")


def text_backends() -> list[str]:
    load_plugins()
    return sorted(_TEXT)


def is_known(name: str) -> bool:
    return REGISTRY.is_known(name)


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class for ``name``."""
    return REGISTRY.get_class(name)


def load_backend(name: str, **options: Any) -> Backend:
    """Instantiate backend ``name`` with its options (one problem per bad option, named)."""
    return REGISTRY.create(name, options)

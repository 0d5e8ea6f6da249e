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
        "sam2": "masktrack.segment.sam2:Sam2Backend",
        "sam3": "masktrack.segment.sam3:Sam3Backend",
    },
    field="backend",
    extras={"sam2": "sam2", "sam3": "sam3"},
)
_BUILTIN = REGISTRY.builtin
_REGISTERED = REGISTRY.registered
# Which built-ins take text prompts, known without importing them.
_TEXT: set[str] = {"sam3"}

DEFAULT_BACKEND = "classic"

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

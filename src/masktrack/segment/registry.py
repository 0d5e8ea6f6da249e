"""Backends registered by name and imported lazily.

Built-in backends are listed as ``"module:Class"`` strings, so importing
masktrack never imports torch, sam2 or sam3.  Third-party backends register
through the ``masktrack.backends`` entry-point group or :func:`register_backend`
(tests use the latter for deterministic backends).

Plugins without packaging: ``MASKTRACK_PLUGINS=mod1,mod2`` names modules
(importable from ``sys.path``/``PYTHONPATH``) that are imported before any
backend lookup; they call :func:`register_backend` at import.  Handy for a
lab's in-house backend, and how the test suite's subprocesses find theirs.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Any

from masktrack.errors import BackendError
from masktrack.segment.base import Backend

_BUILTIN: dict[str, str] = {
    "classic": "masktrack.segment.classic:ClassicBackend",
    "sam2": "masktrack.segment.sam2:Sam2Backend",
    "sam3": "masktrack.segment.sam3:Sam3Backend",
}
# Which built-ins take text prompts, known without importing them.
_TEXT: set[str] = {"sam3"}
_REGISTERED: dict[str, type[Backend] | str] = {}

DEFAULT_BACKEND = "classic"


def register_backend(name: str, backend: type[Backend] | str, *, text: bool | None = None) -> None:
    """Register a backend class (or ``"module:Class"``) under ``name``."""
    _REGISTERED[name] = backend
    if text or (text is None and not isinstance(backend, str) and backend.supports_text):
        _TEXT.add(name)


def unregister_backend(name: str) -> None:
    _REGISTERED.pop(name, None)
    _TEXT.discard(name)


PLUGINS_ENV = "MASKTRACK_PLUGINS"
_PLUGINS_LOADED: set[str] = set()


def load_plugins() -> list[str]:
    """Import the modules named in ``$MASKTRACK_PLUGINS`` (comma-separated), once each."""
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for n in names:
        if n in _PLUGINS_LOADED:
            continue
        try:
            importlib.import_module(n)
        except ImportError as e:
            raise BackendError(f"cannot import plugin module {n!r}: {e}", field=PLUGINS_ENV) from None
        _PLUGINS_LOADED.add(n)
    return names


def _entry_point_targets() -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in entry_points(group="masktrack.backends")}
    except Exception:  # pragma: no cover - broken metadata should not break the CLI
        return {}


def available_backends() -> list[str]:
    load_plugins()
    return sorted({*_BUILTIN, *_REGISTERED, *_entry_point_targets()})


def text_backends() -> list[str]:
    load_plugins()
    return sorted(_TEXT)


def is_known(name: str) -> bool:
    load_plugins()
    return name in _REGISTERED or name in _BUILTIN or name in _entry_point_targets()


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class for ``name``."""
    load_plugins()
    target: type[Backend] | str | None = (
        _REGISTERED.get(name) or _BUILTIN.get(name) or _entry_point_targets().get(name)
    )
    if target is None:
        raise BackendError(
            f"unknown backend {name!r}; available: {', '.join(available_backends())}", field="backend"
        )
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        extra = name if name in ("sam2", "sam3") else None
        hint = f" (pip install 'masktrack[{extra}]')" if extra else ""
        raise BackendError(f"backend {name!r} cannot be imported: {e}{hint}", field="backend") from None
    return getattr(module, attr)


def load_backend(name: str, **options: Any) -> Backend:
    """Instantiate backend ``name`` with its options (errors name the bad option)."""
    cls = backend_class(name)
    try:
        return cls(**options)
    except TypeError as e:
        raise BackendError(f"bad options for backend {name!r}: {e}", field="options") from None

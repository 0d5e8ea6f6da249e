"""One plug-in idiom for segmentation backends and trackers: a registry by name, and typed options.

**Registry.**  A :class:`Registry` knows built-ins as ``"module:Class"`` strings (so listing them
imports no model library), classes registered at run time (:meth:`Registry.register`), packaged
plug-ins through an entry-point group (``masktrack.backends``, ``masktrack.trackers``), and modules
named in ``MASKTRACK_PLUGINS=mod1,mod2`` (imported once, before any lookup; they call
``register``).  Backends and trackers use the same class, so a lab's in-house tracker plugs in the
way an in-house backend does.

**Typed options.**  A backend or tracker declares its options as a class attribute ``Options``: a
pydantic model deriving from :class:`PluginOptions` (unknown options rejected, no NaN/inf, and the
:data:`Int`/:data:`Float`/:data:`Bool` field types refuse ``true`` for a number, ``"3"`` for an
int).  :meth:`Registry.create` validates the config's ``options:`` against it before the class is
built and raises one :class:`~masktrack.errors.Problem` per bad option, located
``options.<name>`` (the pipeline prefixes the session: ``sessions[0:arm].options.band``).  The
class still receives the options exactly as written, so validation never changes what a
backend computes or its fingerprint.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import types
import typing
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Strict, ValidationError, create_model
from pydantic.fields import FieldInfo

from masktrack.errors import BackendError, ConfigError, Problem, pydantic_problems

PLUGINS_ENV = "MASKTRACK_PLUGINS"
_PLUGINS_LOADED: set[str] = set()

Int = Annotated[int, Strict()]
"""An integer option: ``true``, ``2.0`` and ``"2"`` are rejected."""
Float = Annotated[float, Strict()]
"""A number option: ints are fine, ``true`` and ``"0.1"`` are not (NaN/inf: see PluginOptions)."""
Bool = Annotated[bool, Strict()]
"""A flag: only ``true``/``false`` (not ``1`` or ``"yes"``)."""


class PluginOptions(BaseModel):
    """Base of every backend's and tracker's ``Options`` model."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


_STRICT: dict[Any, Any] = {int: Int, float: Float, bool: Bool}


def _strict(hint: Any) -> Any:
    """``int``/``float``/``bool`` (also inside ``X | None``, ``list[X]``) as their strict option types."""
    if hint in _STRICT:
        return _STRICT[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union) and args:
        return typing.Union[tuple(_strict(a) for a in args)]  # noqa: UP007 - built at run time
    if origin in (list, tuple) and args:
        return origin[tuple(_strict(a) for a in args)] if origin is tuple else list[_strict(args[0])]  # type: ignore[misc]
    return hint


def parse_option_values(items: typing.Iterable[str], field: str = "--option") -> dict[str, Any]:
    """``KEY=VALUE`` command-line options as a dict, each value read as JSON where it parses, else a string.

    ``-o iters=4`` is the int 4, ``-o device=cuda`` the string ``"cuda"``, ``-o pretrained=false``
    the bool: what a config file's ``options:`` would hold.  A malformed item is a :class:`ConfigError`
    on ``field``.
    """
    import json

    out: dict[str, Any] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}", field=field)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def options_model(
    name: str, fields: Mapping[str, tuple[Any, Any]], constraints: Mapping[str, Any]
) -> type[PluginOptions]:
    """A :class:`PluginOptions` model of ``fields`` ({name: (type hint, default)}).

    ``constraints`` maps a field to a ``pydantic.Field(...)`` (bounds: ``ge``, ``gt``, ``le``...)
    or to a type that replaces its hint (e.g. ``Literal["lk", "dis"]``).  A constraint naming no
    field is ignored here (a test checks each model's constraints against its fields).
    """
    spec: dict[str, Any] = {}
    for fname, (hint, default) in fields.items():
        c = constraints.get(fname)
        t = _strict(hint)
        if isinstance(c, FieldInfo):
            t = Annotated[t, c]
        elif c is not None:
            t = c
        spec[fname] = (t, default)
    model = create_model(name, __base__=PluginOptions, **spec)
    model.__constraints__ = tuple(constraints)  # type: ignore[attr-defined]
    return model


def options_from_dataclass(dc: type, name: str | None = None, **constraints: Any) -> type[PluginOptions]:
    """The options model of an options dataclass (same names and defaults, strict types)."""
    hints = typing.get_type_hints(dc)
    fields = {}
    for f in dataclasses.fields(dc):
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        fields[f.name] = (hints[f.name], ... if default is dataclasses.MISSING else default)
    return options_model(name or f"{dc.__name__}Model", fields, constraints)


def options_from_signature(fn: Any, name: str, **constraints: Any) -> type[PluginOptions]:
    """The options model of a constructor's keyword arguments (``self`` and ``**kw`` left out)."""
    hints = typing.get_type_hints(fn)
    fields = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        fields[p.name] = (hints.get(p.name, Any), ... if p.default is p.empty else p.default)
    return options_model(name, fields, constraints)


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


def option_problems(options_model: type[BaseModel], options: Mapping[str, Any]) -> list[Problem]:
    """One problem per bad option (location ``options.<name>``); empty when they validate."""
    try:
        options_model.model_validate(dict(options))
    except ValidationError as e:
        known = ", ".join(options_model.model_fields)

        def message(err: dict[str, Any]) -> str:
            if err["type"] == "extra_forbidden":
                return f"unknown option (options: {known})"
            return f"{err['msg'][0].lower()}{err['msg'][1:]}, got {err.get('input')!r}"

        return pydantic_problems(e, "options", message)
    return []


def declared_options(cls: type) -> type[BaseModel] | None:
    """``cls.Options`` if it describes ``cls``'s constructor, else None.

    A subclass that overrides ``__init__`` (say, adding a ``delay`` option) without declaring its
    own ``Options`` is not held to its parent's model: its constructor checks its own arguments.
    """
    model = getattr(cls, "Options", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    owner = next(c for c in cls.__mro__ if "Options" in c.__dict__)
    init_owner = next(c for c in cls.__mro__ if "__init__" in c.__dict__)
    return model if issubclass(owner, init_owner) else None


T = TypeVar("T")


class Registry(Generic[T]):
    """Plug-ins of one kind (``backend``, ``tracker``) by name; classes are imported on first use."""

    def __init__(
        self, kind: str, group: str, builtin: Mapping[str, str], *, field: str, extras: Mapping[str, str] = {}
    ) -> None:
        self.kind = kind
        self.group = group
        self.builtin = dict(builtin)
        self.field = field
        self.extras = dict(extras)  # name -> pip extra that installs it, for the error message
        self.registered: dict[str, type[T] | str] = {}

    def register(self, name: str, target: type[T] | str) -> None:
        """Register a class (or ``"module:Class"``) under ``name`` (overrides a built-in)."""
        self.registered[name] = target

    def unregister(self, name: str) -> None:
        self.registered.pop(name, None)

    def entry_points(self) -> dict[str, str]:
        try:
            return {ep.name: ep.value for ep in entry_points(group=self.group)}
        except Exception:  # pragma: no cover - broken metadata should not break the CLI
            return {}

    def names(self) -> list[str]:
        load_plugins()
        return sorted({*self.builtin, *self.registered, *self.entry_points()})

    def is_known(self, name: str) -> bool:
        load_plugins()
        return name in self.registered or name in self.builtin or name in self.entry_points()

    def target(self, name: str) -> type[T] | str | None:
        load_plugins()
        return self.registered.get(name) or self.builtin.get(name) or self.entry_points().get(name)

    def get_class(self, name: str) -> type[T]:
        """Import and return the class registered as ``name`` (BackendError if unknown/not importable)."""
        target = self.target(name)
        if target is None:
            raise BackendError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}", field=self.field
            )
        if not isinstance(target, str):
            return target
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            extra = self.extras.get(name)
            hint = f" (pip install 'masktrack[{extra}]')" if extra else ""
            raise BackendError(
                f"{self.kind} {name!r} cannot be imported: {e}{hint}", field=self.field
            ) from None
        return getattr(module, attr)

    def create(self, name: str, options: Mapping[str, Any] | None = None) -> T:
        """Validate ``options`` against the class's ``Options`` model, then instantiate it."""
        cls = self.get_class(name)
        options = dict(options or {})
        model = declared_options(cls)
        if model is not None:
            problems = option_problems(model, options)
            if problems:
                raise BackendError(f"bad options for {self.kind} {name!r}", problems=problems)
        try:
            return cls(**options)
        except TypeError as e:
            raise BackendError(f"bad options for {self.kind} {name!r}: {e}", field="options") from None

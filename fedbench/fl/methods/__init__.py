"""Registry of FL methods: built-in ones (every module of this package), and installed
packages' `fedbench.methods` entry points (each names a `Method` subclass), loaded once on
first use. A new method is one file here (or one entry point elsewhere); config validation,
the DAG's method check, figure styles, tables, `fedbench fl --list-methods` and the contract
tests (tests/fl/test_method_contract.py) all read this registry."""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points

from fedbench.fl.methods.base import Method, NoOptions, shared_compressor_options

__all__ = [
    "ENTRY_POINT_GROUP",
    "Method",
    "NoOptions",
    "get_method",
    "method_names",
    "methods",
    "register_method",
    "shared_compressor_options",
]

ENTRY_POINT_GROUP = "fedbench.methods"
_REGISTRY: dict[str, type[Method]] = {}
_loaded = False


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator adding a Method subclass to the registry under `cls.name`."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"register_method: {cls!r} is not a Method subclass")
    if not cls.name:
        raise TypeError(f"register_method: {cls.__name__} has no name")
    old = _REGISTRY.get(cls.name)
    if old is not None and old is not cls:
        raise ValueError(
            f"method {cls.name!r} registered twice ({old.__module__}, {cls.__module__})"
        )
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    """Import the built-in methods and the installed entry points (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    # Every module of this package is a built-in method file: adding one needs no edit here.
    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base"):
        import_module(f"fedbench.fl.methods.{mod}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"entry point {ep.name} = {ep.value}: not a fedbench Method subclass")
        if not cls.name:
            cls.name = ep.name
        if _REGISTRY.get(cls.name) is not cls:
            register_method(cls)


def reload_entry_points() -> None:
    """Look at the installed entry points again (after a pip install in the same process)."""
    global _loaded
    _loaded = False
    _load()


def methods() -> dict[str, type[Method]]:
    """Every registered method, in figure order."""
    _load()
    return dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))


def method_names() -> tuple[str, ...]:
    """Names of every registered method, in figure order."""
    return tuple(methods())


def get_method(name: str, on_error: Callable[[str], Exception] = KeyError) -> type[Method]:
    """The registered method `name`."""
    table = methods()
    if name not in table:
        raise on_error(f"method.name: invalid value {name!r}; allowed: {', '.join(table)}")
    return table[name]

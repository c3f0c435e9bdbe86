"""Name -> eraser class registry: ``@register``, ``build``, ``available`` and entry-point discovery.

Built-ins register themselves when ``plugins`` is imported. Third-party packages ship
erasers through the entry-point group ``erasebench.erasers``; those are loaded lazily, on
the first ``build``/``available``/``get``, and a plugin that fails to load is reported as
a warning (naming the entry point and its package) instead of taking the built-ins down.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import re
import warnings

from plugins.base import Eraser

__all__ = ["ENTRY_POINT_GROUP", "available", "build", "get", "register", "unregister"]

ENTRY_POINT_GROUP = "erasebench.erasers"

_REGISTRY: dict[str, type[Eraser]] = {}
_entry_points_loaded = False
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(name: str):
    """Class decorator: make an :class:`Eraser` subclass buildable as ``build(name)``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"register: name must be lower_snake_case (letters, digits, '_'), got {name!r}"
        )

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Eraser)):
            raise TypeError(f"register({name!r}): {cls!r} is not a subclass of plugins.Eraser")
        existing = _REGISTRY.get(name)
        # The same module.qualname again is the same definition re-executed (importlib.reload,
        # a re-run notebook cell): replace it. Any other class under a taken name is a clash.
        if existing is not None and _qualname(existing) != _qualname(cls):
            raise ValueError(
                f"eraser name {name!r} is already registered by {_qualname(existing)}; "
                f"cannot register {_qualname(cls)} under the same name"
            )
        _REGISTRY[name] = cls
        return cls

    return decorator


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (tests and interactive sessions)."""
    if name not in _REGISTRY:
        raise ValueError(f"unregister: no eraser named {name!r}")
    del _REGISTRY[name]


def _dist_name(entry_point) -> str:
    dist = getattr(entry_point, "dist", None)
    return getattr(dist, "name", None) or "unknown package"


def _load_entry_points() -> None:
    """Import third-party erasers once; warn about (and skip) any that fail."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    # Set first: a plugin module that calls available() while importing must not recurse.
    _entry_points_loaded = True
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = entry_point.load()
            # The value may name a module (its @register decorators ran on import) or an
            # Eraser class (registered under the entry point's name unless already there).
            if isinstance(obj, type) and obj not in _REGISTRY.values():
                register(entry_point.name)(obj)
        except Exception as error:  # noqa: BLE001 - any plugin failure becomes a warning
            warnings.warn(
                f"erasebench: skipped eraser plugin {entry_point.name!r} "
                f"({entry_point.value}) from package {_dist_name(entry_point)!r}: "
                f"{type(error).__name__}: {error}",
                RuntimeWarning,
                stacklevel=3,
            )


def available() -> list[str]:
    """Sorted names of all registered erasers, built-in and third-party."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get(name: str) -> type[Eraser]:
    """The eraser class registered as ``name`` (e.g. to read ``needs_cam`` before building)."""
    _load_entry_points()
    if name not in _REGISTRY:
        names = sorted(_REGISTRY)
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown eraser {name!r}{hint} (available: {', '.join(names)}); "
                         "an eraser of your own must be imported first: `imports: "
                         "[my_erasers.py]` in the suite, or `--import my_erasers.py` on the "
                         "command line")
    return _REGISTRY[name]


def build(name: str, **params) -> Eraser:
    """Instantiate the eraser ``name`` with hyperparameters ``params`` (defaults otherwise)."""
    cls = get(name)
    signature = inspect.signature(cls)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    if not accepts_any:
        accepted = sorted(
            key for key, p in signature.parameters.items() if p.kind is not p.VAR_POSITIONAL
        )
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ValueError(
                f"eraser {name!r} got unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"accepted: {', '.join(accepted) or '(none)'}"
            )
    return cls(**params)

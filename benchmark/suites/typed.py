"""A parsed YAML mapping -> a typed dataclass of benchmark.suites.vocabulary, each wrong key or
value a one-line `ConfigError` naming the file and the key (an unknown key with its closest
match, a missing required key with why it is needed). Torch-free: it imports only the standard
library and the vocabulary."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing

from benchmark.suites.vocabulary import ConfigError, SuiteConfig


def closest(key: str, allowed) -> str:
    match = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _check_type(value, tp, where: str, src: str):
    """Check (and lightly coerce: int -> float) a YAML value against a dataclass annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for a in options:
            try:
                return _check_type(value, a, where, src)
            except ConfigError as e:
                last = e
        if len(options) == 1 and type(None) not in args:
            raise last
        names = [_type_name(a) for a in options] + (["null"] if type(None) in args else [])
        raise ConfigError(f"{src}: key {where!r} must be {' or '.join(names)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{src}: key {where!r} must be a list, got {value!r}")
        (item,) = typing.get_args(tp) or (typing.Any,)
        return [_check_type(v, item, f"{where}[{i}]", src) for i, v in enumerate(value)]
    if tp is typing.Any:
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{src}: key {where!r} must be a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{src}: key {where!r} must be an integer, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, src)
    if not isinstance(value, tp):
        raise ConfigError(f"{src}: key {where!r} must be {_type_name(tp)}, got {value!r}")
    return value


def _type_name(tp) -> str:
    """How a suite file's reader names a type: a string, an integer, a number, a list, ..."""
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             dict: "a mapping", list: "a list"}
    origin = typing.get_origin(tp) or tp
    return names.get(origin, f"a mapping of {tp.__name__} keys"
                     if dataclasses.is_dataclass(tp) else getattr(tp, "__name__", str(tp)))


def from_dict(cls, data, where: str, src: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: key {where or '<top>'!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)
             if not (cls is SuiteConfig and f.name == "file")]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"{src}: key {path!r} is unknown{closest(str(key), names)}; "
                              f"allowed: {', '.join(names)}")
        kwargs[key] = _check_type(value, hints[key], path, src)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        key = f"{where}.{missing[0]}" if where else missing[0]
        what = f"; {_REQUIRED[key]}" if key in _REQUIRED else ""
        raise ConfigError(f"{src}: key {key!r} is missing (required){what}")
    return cls(**kwargs)


_REQUIRED = {"name": "it names the results folder: a plain file name, e.g. name: my_suite"}

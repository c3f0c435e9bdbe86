"""Where erasers come from: import the user's modules or files, and name each eraser's source.

A suite's `imports: [my_erasers, path/to/file.py]` (or `--import`) runs the user's
`@register` decorators before the suite is validated, so an eraser written in one file is
usable in a suite. `provenance(name)` says which package and version, or which file and
content hash, provided an eraser: records and leaderboards store it, so a result can be
traced to the code that made it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

from plugins.registry import get

__all__ = ["import_sources", "provenance"]


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _import_file(path: Path):
    name = f"erasebench_user_{path.stem}_{_file_hash(path)[:8]}"
    if name in sys.modules:  # the same file (same content) imported again: already registered
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def import_sources(sources: list[str], base: str | Path | None = None) -> None:
    """Import each module name or .py file (relative paths: against `base`, then the working
    directory). A missing source is a one-line ValueError naming it and where it was looked for."""
    base = Path(base) if base is not None else Path.cwd()
    for source in sources:
        if source.endswith(".py") or "/" in source or "\\" in source:
            candidates = [Path(source)] if Path(source).is_absolute() else \
                [base / source, Path.cwd() / source]
            path = next((c for c in candidates if c.is_file()), None)
            if path is None:
                where = dict.fromkeys(str(c.parent.resolve()) for c in candidates)
                raise ValueError(f"import {source!r}: no such file (looked in "
                                 f"{', '.join(where)})")
            _import_file(path.resolve())
            continue
        for folder in (str(base), str(Path.cwd())):  # a module beside the suite, or here
            if folder not in sys.path:
                sys.path.append(folder)
        try:
            importlib.import_module(source)
        except ModuleNotFoundError as e:
            if e.name != source.split(".")[0] and e.name != source:
                raise  # the module exists but itself imports something missing
            raise ValueError(f"import {source!r}: no such module (not installed, and not found "
                             f"beside the suite in {base} or in {Path.cwd()})") from None


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """Top-level module -> distributions providing it. Scanning every installed package's
    metadata takes seconds, so it is done once per process."""
    return importlib.metadata.packages_distributions()


def provenance(name: str) -> dict:
    """{"module", "package", "version"} for an installed eraser, {"module", "file", "sha256"}
    for one imported from a file."""
    cls = get(name)
    module = sys.modules.get(cls.__module__)
    out = {"module": cls.__module__}
    path = Path(getattr(module, "__file__", "") or "")
    top = cls.__module__.split(".")[0]
    dists = ["erasebench"] if top == "plugins" else _distributions().get(top, [])
    if dists:
        try:
            out.update(package=dists[0], version=importlib.metadata.version(dists[0]))
            return out
        except importlib.metadata.PackageNotFoundError:
            pass
    if path.is_file():
        out.update(file=str(path), sha256=_file_hash(path))
    return out

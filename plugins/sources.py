"""Where erasers come from: import the user's modules or files, and name each eraser's source.

A suite's `imports: [my_erasers, path/to/file.py]` (or `--import`) runs the user's
`@register` decorators before the suite is validated, so an eraser written in one file is
usable in a suite. `provenance(name)` says which package and version, or which file and
content hash, provided an eraser: records and leaderboards store it, so a result can be
traced to the code that made it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import sys
import sysconfig
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
    """Import each module name or .py file (relative paths: against `base`, the suite's
    folder, then the working directory). One-line ValueErrors name the source: a missing one
    (and where it was looked for), or one whose import raised (with that error)."""
    suite = base is not None
    base = Path(base) if base is not None else Path.cwd()
    for source in sources:
        try:
            _import_source(source, base, suite)
        except ValueError as e:
            if str(e).startswith(f"import {source!r}: "):
                raise
            raise ValueError(f"import {source!r}: importing it raised ValueError: {e}") from None
        except Exception as e:  # noqa: BLE001 - the user's module raised while importing
            raise ValueError(f"import {source!r}: importing it raised {type(e).__name__}: "
                             f"{e}") from None


def _import_source(source: str, base: Path, suite: bool) -> None:
    if source.endswith(".py") or "/" in source or "\\" in source:
        candidates = [Path(source)] if Path(source).is_absolute() else \
            [base / source, Path.cwd() / source]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            where = dict.fromkeys(str(c.parent.resolve()) for c in candidates)
            raise ValueError(f"import {source!r}: no such file (looked in "
                             f"{', '.join(where)})")
        _import_file(path.resolve())
        return
    for folder in (str(base), str(Path.cwd())):  # a module beside the suite, or here
        if folder not in sys.path:
            sys.path.append(folder)
    try:
        importlib.import_module(source)
    except ModuleNotFoundError as e:
        if e.name != source.split(".")[0] and e.name != source:
            raise  # the module exists but itself imports something missing
        here = str(Path.cwd().resolve())
        folders = [f"beside the suite in {base.resolve()}"] if suite else []
        if not suite or str(base.resolve()) != here:
            folders.append(f"in the working directory {here}")
        raise ValueError(f"import {source!r}: no such module (not installed, and not found "
                         f"{' or '.join(folders)})") from None


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """Top-level module -> distributions providing it. Scanning every installed package's
    metadata takes seconds, so it is done once per process."""
    return importlib.metadata.packages_distributions()


def _installed_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    return [Path(paths[k]).resolve() for k in ("purelib", "platlib", "stdlib") if k in paths]


def _module_file(name: str, package: str | None) -> Path | None:
    """The .py file of module `name` (relative to `package` when it starts with dots), from
    sys.modules or, if not imported yet, from the import system; None if there is none."""
    try:
        full = importlib.util.resolve_name(name, package) if name.startswith(".") else name
        module = sys.modules.get(full)
        origin = getattr(module, "__file__", None) if module is not None else None
        if origin is None and module is None:
            if full.rpartition(".")[0] and full.rpartition(".")[0] not in sys.modules:
                return None  # find_spec would import (run) the parent package
            spec = importlib.util.find_spec(full)
            origin = spec.origin if spec is not None else None
    except (ImportError, ValueError, AttributeError):
        return None
    path = Path(origin) if origin else None
    return path.resolve() if path is not None and path.suffix == ".py" and path.is_file() \
        else None


def _imported_files(path: Path, package: str | None) -> list[Path]:
    """The user files `path` imports, directly or through each other: the .py files its
    `import` / `from ... import` statements name that lie in `path`'s folder or below it
    (installed packages and the standard library are left out: their version names them)."""
    root, installed = path.parent, _installed_dirs()
    seen, todo = {path}, [(path, package)]
    while todo:
        current, pkg = todo.pop()
        try:
            tree = ast.parse(current.read_bytes(), filename=str(current))
        except (SyntaxError, ValueError, OSError):
            continue
        names = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                names.append(base)
                names += [f"{base}{'' if base.endswith('.') else '.'}{a.name}"
                          for a in node.names if a.name != "*"]
        for name in names:
            found = _module_file(name, pkg)
            if (found is None or found in seen or not found.is_relative_to(root)
                    or any(found.is_relative_to(d) for d in installed)):
                continue
            seen.add(found)
            mod = next((m for m in list(sys.modules.values())
                        if getattr(m, "__file__", None) and Path(m.__file__).resolve() == found),
                       None)
            todo.append((found, getattr(mod, "__package__", None)))
    return sorted(seen - {path})


def _source_hash(path: Path, package: str | None) -> str:
    """16 hex digits identifying the code in `path` and the user files it imports
    (`_imported_files`): the file's own sha256 when it imports none (as records made before
    imports were hashed hold), else the sha256 of the files' hashes in a fixed order."""
    files = _imported_files(path, package)
    if not files:
        return _file_hash(path)
    parts = [_file_hash(path)] + [f"{f.relative_to(path.parent)}:{_file_hash(f)}" for f in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _editable(dist: str) -> bool:
    """Whether distribution `dist` is an editable install (`pip install -e`): its code can change
    without its version changing (PEP 610 direct_url.json, `dir_info.editable`)."""
    try:
        text = importlib.metadata.distribution(dist).read_text("direct_url.json")
        return bool(json.loads(text or "{}").get("dir_info", {}).get("editable"))
    except (importlib.metadata.PackageNotFoundError, ValueError, AttributeError):
        return False


def provenance(name: str) -> dict:
    """{"module", "package", "version"} for an installed eraser, {"module", "file", "sha256"}
    for one imported from a file. The sha256 covers the defining file and the user files it
    imports from its folder or below (`_source_hash`: a helper module beside it counts); an
    editable install (`pip install -e`) gets the sha256 of its module file too, since its code
    can change while its version stays."""
    cls = get(name)
    module = sys.modules.get(cls.__module__)
    out = {"module": cls.__module__}
    path = Path(getattr(module, "__file__", "") or "")
    package = getattr(module, "__package__", None)
    top = cls.__module__.split(".")[0]
    dists = ["erasebench"] if top == "plugins" else _distributions().get(top, [])
    if dists:
        try:
            out.update(package=dists[0], version=importlib.metadata.version(dists[0]))
            if dists[0] != "erasebench" and path.is_file() and _editable(dists[0]):
                out.update(file=str(path), sha256=_source_hash(path.resolve(), package))
            return out
        except importlib.metadata.PackageNotFoundError:
            pass
    if path.is_file():
        out.update(file=str(path), sha256=_source_hash(path.resolve(), package))
    return out

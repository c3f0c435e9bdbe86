"""Preflight: every check that can fail before training (the output folder, the models, the
warm-ups, the data), each failure one line; the runner exits 2 with them."""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.suites.expand import RunSpec


def check_out(out: Path, what: str | None = None) -> str | None:
    """--out must be a folder we can write: checked before any training, not at the first save.
    `what` names the folder in the line (default: `--out <out>`), e.g. the results folder that
    `erasebench evaluate` rewrites records in; the folder is made if absent (as its writer
    would)."""
    what = what or f"--out {out}"
    if out.exists() and not out.is_dir():
        return f"{what}: is a file, not a folder"
    probe = out / f".erasebench-write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        return f"{what}: not writable ({e.strerror or e})"
    return None


def preflight(args, suite, runs: list[RunSpec], results_dir: Path) -> list[str]:
    """Every check that can fail before training, each failure one line (exit 2); a dry run
    makes the same checks (it only writes nothing and fetches nothing)."""
    from benchmark import models

    problems = [] if args.dry_run else [p for p in [check_out(Path(args.out))] if p]
    for name in suite.models:
        try:
            models.check(name)
        except ValueError as e:
            problems.append(f"{suite.file}: key 'models': {e}")
    rescaled = "" if args.epochs is None else (
        f" (values rescaled by --epochs {args.epochs} in proportion to the file's train.epochs; "
        "give a larger --epochs)")
    problems += [p + rescaled for p in check_warmups(suite)]
    problems += check_data(suite, dry_run=args.dry_run)
    return problems


def check_warmups(suite) -> list[str]:
    """A method whose warm-up lasts the whole run would train plainly under its eraser's name."""
    from benchmark.suites.config import expand_method
    from benchmark.suites.expand import resolve_method

    epochs, out = suite.train.epochs, []
    for i, m in enumerate(suite.methods):
        for v, _ in expand_method(m, src=suite.file, where=f"methods[{i}]"):
            r = resolve_method(v, epochs)
            if not r.is_plain and r.warmup_epochs >= epochs:
                out.append(f"{suite.file}: key 'methods[{i}].warmup_epochs' is {r.warmup_epochs} "
                           f"for {r.label}, but train.epochs is {epochs}: its eraser would never "
                           f"run; allowed: 0..{epochs - 1}")
    return out


def check_data(suite, dry_run: bool = False) -> list[str]:
    """Load both splits (into the cache the runs read) and check them: options, files, labels
    (`data.check_splits`) and the batch size against the training split. A dry run of CIFAR that
    is not downloaded yet plans with a one-line warning (its sizes are known)."""
    from benchmark import data
    from benchmark.fileio import DamagedFileError, warn

    d, problems = suite.data, []
    download = d.download and not dry_run  # a dry run fetches nothing
    try:
        data.check(d.name, d.root, download=download, **d.options)
        train, _ = data.load_checked(d.name, d.root, download=download, **d.options)
    except FileNotFoundError as e:
        if dry_run and d.name in data.FILE_DATASETS:
            warn(f"{suite.file}: key 'data': {e} (planned with {d.name}'s known sizes; the run "
                 "itself needs it)")
        else:
            problems.append(f"{suite.file}: key 'data': {e}")
        return problems
    except (ValueError, DamagedFileError, data.DataUnavailableError) as e:
        from benchmark.suites.yaml_text import with_number_hint  # 'n_train' is '1e3': say why

        return [with_number_hint(f"{suite.file}: key 'data': {e}", d.options)]
    if suite.train.batch_size > len(train):
        problems.append(f"{suite.file}: key 'train.batch_size' is {suite.train.batch_size}, but "
                        f"the training split of {d.name} has {len(train)} images; allowed: "
                        f"1..{len(train)}")
    return problems


def data_identity(suite) -> dict | None:
    """The identity of the suite's data if preflight loaded it in this process, else None."""
    from benchmark import data

    d = suite.data
    return data.identity(d.name, d.root, download=d.download, load=False, **d.options)

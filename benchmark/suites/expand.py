"""Expand a suite into independent runs: model x method (x sweep) x seed, plus the plain runs
that a CAM-after-training method needs as its frozen CAM model."""

from __future__ import annotations

import dataclasses
from collections import Counter

from benchmark.fileio import slug
from benchmark.suites.config import (
    MAX_SEEDS,
    PLAIN,
    ConfigError,
    DataConfig,
    MethodConfig,
    RunSpec,  # defined in the torch-free config leaf; imported from here by older code
    SuiteConfig,
    expand_method,
    to_dict,
)

__all__ = ["RunSpec", "apply_overrides", "assign_forks", "expand", "parse_seeds",
           "resolve_method", "run_id"]


def run_id(model: str, label: str, seed: int) -> str:
    return f"{slug(model)}__{slug(label)}__s{seed}"


def resolve_method(m: MethodConfig, epochs: int) -> MethodConfig:
    """Fill the defaults that depend on the eraser: mode and warm-up (the thesis's two-phase
    schedule), and the fill (``paste`` for a mixing eraser, else ``zero``)."""
    m = dataclasses.replace(m, params=dict(m.params), cam=dataclasses.replace(m.cam))
    if m.is_plain:
        m.mode, m.warmup_epochs = None, 0
        m.fill = m.fill or "zero"
        m.label = m.label or PLAIN
        return m
    if m.fill is None:  # a mixing eraser pastes its partner's region; the others fill zero
        import plugins
        from plugins.mixing import PASTE, is_mixing

        m.fill = PASTE if is_mixing(plugins.get(m.name)) else "zero"
    needs_cam = m.needs_cam
    if m.mode is None:
        m.mode = "append" if needs_cam else "replace"
    if m.warmup_epochs is None:
        # Thesis: the CAM method trains plainly for half the epochs (CAM is meaningless on an
        # untrained model); the baselines erase from the first epoch.
        m.warmup_epochs = epochs // 2 if needs_cam else 0
    m.label = m.label or m.name
    return m


def expand(suite: SuiteConfig) -> list[RunSpec]:
    """The suite's runs in a stable order; dependencies (plain runs for CAM 'after') come first."""
    methods = [(resolve_method(v, suite.train.epochs), ablation)
               for m in suite.methods for v, ablation in expand_method(m, src=suite.file)]
    labels = [m.label for m, _ in methods]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise ConfigError(f"{suite.file}: key 'methods': labels {sorted(dup)} appear twice; "
                          "give the variants distinct 'label's or use 'sweep'")
    slugs: dict[str, str] = {}
    for label in labels:  # run ids are file names: two labels must not make the same one, also
        # on a case-insensitive filesystem (macOS, Windows, many shares): `x` and `X` are one file
        other = slugs.setdefault(slug(label).casefold(), label)
        if other != label:
            same = "the same run id" if slug(other) == slug(label) else \
                "run ids that differ only in case (one file on macOS and Windows)"
            raise ConfigError(f"{suite.file}: key 'methods': labels {other!r} and {label!r} make "
                              f"{same} ({slug(label)!r}); rename one")
    for key, values in (("models", [slug(m).casefold() for m in suite.models]),
                        ("seeds", suite.seeds)):
        twice = sorted({v for v in values if values.count(v) > 1}, key=str)
        if twice:
            raise ConfigError(f"{suite.file}: key {key!r} lists {', '.join(map(str, twice))} more "
                              "than once")
    runs: list[RunSpec] = []
    for model in suite.models:
        for m, ablation in methods:
            for seed in suite.seeds:
                runs.append(RunSpec(suite.name, run_id(model, m.label, seed), model, seed, m,
                                    suite.data, suite.train, ablation))
    ids = {r.run_id for r in runs}
    extra = []
    for r in runs:
        if r.method.needs_cam and r.method.cam.source == "after":
            dep = run_id(r.model, PLAIN, r.seed)
            r.frozen_from = dep
            if dep not in ids:  # the suite did not list plain: train it as a dependency
                ids.add(dep)
                extra.append(RunSpec(suite.name, dep, r.model, r.seed,
                                     resolve_method(MethodConfig(), suite.train.epochs),
                                     suite.data, suite.train))
    runs = extra + runs
    if suite.train.share_warmup:
        assign_forks(runs)
    return runs


def _warmup_key(r: RunSpec) -> tuple:
    return (r.model, r.seed, repr(to_dict(r.data)), repr(to_dict(r.train)))


def assign_forks(runs: list[RunSpec]) -> None:
    """Shared warm-up: a run with a plain warm-up (warmup_epochs > 0) starts from the state of the
    suite's plain run with the same model, seed, data and schedule at that epoch; without one,
    from the first run of the suite with the same warm-up, which trains it (the provider)."""
    plain = {_warmup_key(r): r for r in runs if r.method.is_plain}
    first: dict[tuple, RunSpec] = {}
    for r in runs:
        w = r.method.warmup_epochs
        if r.method.is_plain or not 0 < w < r.train.epochs:
            continue
        key = _warmup_key(r)
        provider = plain.get(key) or first.setdefault((key, w), r)
        if provider is r:
            continue
        r.fork_from = provider.run_id
        if w not in provider.fork_epochs:
            provider.fork_epochs.append(w)


def apply_overrides(suite: SuiteConfig, *, epochs=None, seeds=None, models=None, methods=None,
                    data=None, root=None) -> SuiteConfig:
    """CLI overrides. --epochs rescales the LR milestones and explicit warm-ups in proportion."""
    s = dataclasses.replace(suite, train=dataclasses.replace(suite.train),
                            data=dataclasses.replace(suite.data, options=dict(suite.data.options)))
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {epochs}")
        old = s.train.epochs
        s.train.epochs = epochs
        s.train.milestones = sorted({max(1, round(mi * epochs / old)) for mi in s.train.milestones})
        s.methods = [dataclasses.replace(m, warmup_epochs=None if m.warmup_epochs is None
                                         else round(m.warmup_epochs * epochs / old))
                     for m in s.methods]
        s.train.checkpoint_every = min(s.train.checkpoint_every, max(1, epochs // 4)) \
            if s.train.checkpoint_every else 0
    if seeds is not None:
        s.seeds = list(seeds)
    if models is not None:
        s.models = list(models)
    if methods is not None:
        wanted = set(methods)
        known = {m.name for m in s.methods} | {m.label for m in s.methods if m.label}
        unknown = wanted - known
        if unknown:
            raise ConfigError(f"--erasers: {sorted(unknown)} not in suite {s.name!r}; "
                              f"it has: {', '.join(sorted(known))}")
        s.methods = [m for m in s.methods if m.name in wanted or m.label in wanted]
    if data is not None and data != s.data.name:
        s.data = DataConfig(name=data, root=s.data.root, download=s.data.download)
    if root is not None:
        s.data.root = root
    return s


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (inclusive) or a mix: '0-2,7'. An empty list, an empty range (3-1), a
    seed named twice or more than MAX_SEEDS seeds is a one-line ConfigError: a run list that
    trains nothing (or a million runs) is a typo."""
    usage = "expected a list like 0,1,2 or a range like 0-4 (start <= end)"
    seeds: list[int] = []
    for part in text.split(","):
        try:
            if "-" in part.strip()[1:]:
                a, b = map(int, part.split("-", 1))
            else:
                a = b = int(part)
        except ValueError:
            raise ConfigError(f"--seeds {text!r}: {usage}") from None
        if a > b:
            raise ConfigError(f"--seeds {text!r}: the range {part.strip()} is empty; {usage}")
        if len(seeds) + b - a + 1 > MAX_SEEDS:
            raise ConfigError(f"--seeds {text!r}: {len(seeds) + b - a + 1} seeds, more than "
                              f"{MAX_SEEDS} (one run per seed and method: a typo?); {usage}")
        seeds.extend(range(a, b + 1))
    counts = Counter(seeds)
    twice = sorted(x for x, n in counts.items() if n > 1)
    if twice:
        raise ConfigError(f"--seeds {text!r}: names seed {', '.join(map(str, twice))} more than "
                          f"once; {usage}")
    return seeds



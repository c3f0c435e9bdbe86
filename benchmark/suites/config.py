"""Suite YAML -> typed dataclasses. A typo is an error naming the file, the key and what is allowed.

A suite file is the documentation of an experiment: the keys below are the whole vocabulary.

    name: thesis
    description: free text
    data:    {name: cifar10, root: null, download: false, options: {}}
    train:   {epochs: 300, batch_size: 128, lr: 0.1, momentum: 0.9, weight_decay: 5.0e-4,
              milestones: [150, 225], gamma: 0.1, ...}
    models:  [resnet20, resnet32, resnet44]
    seeds:   [0, 1, 2, 3, 4]
    methods:
      - plain                                   # no erasing
      - random_erasing                          # a registry name, its defaults
      - {name: cam_erasing, params: {b_h: 2}, cam: {source: during}}
      - {name: cam_erasing, sweep: {b_h: [0, 1, 2]}}   # one method per value
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import yaml

from benchmark.suites.renamed import (  # noqa: F401 - RENAMED_KEYS named here too
    RENAMED_KEYS,
    RENAMED_VALUES,
    note_once,
    renamed_keys,
)
from benchmark.suites.typed import closest, from_dict
from benchmark.suites.vocabulary import (  # noqa: F401 - the vocabulary, named here too
    APPEND_BN,
    CAM_SOURCES,
    CAM_TARGETS,
    CONFIG_DIR,
    FILL_MODES,
    GRAPHS,
    MODES,
    PASTE,
    PLAIN,
    PRECISIONS,
    STEP_KINDS,
    CamConfig,
    ConfigError,
    DataConfig,
    MethodConfig,
    RunSpec,
    SuiteConfig,
    TrainConfig,
    to_dict,
)
from benchmark.suites.yaml_text import safe_load, with_number_hint, yaml_error  # noqa: F401

MAX_SEEDS = 1000  # seeds in one suite (YAML or --seeds): more is a typo (0-100000), not a study

# ----------------------------------------------------------------------------- parsing



def _method(entry, i: int, src: str) -> MethodConfig:
    if isinstance(entry, str):
        entry = {"name": entry}
    cam = entry.get("cam") if isinstance(entry, dict) else None
    if isinstance(cam, dict) and isinstance(cam.get("target"), str) \
            and cam["target"] in RENAMED_VALUES["cam.target"]:
        old = cam["target"]
        new = RENAMED_VALUES["cam.target"][old]
        entry = {**entry, "cam": {**cam, "target": new}}
        note_once(f"cam.target={old}", f"note: {src}: key 'methods[{i}].cam.target': {old!r} "
                   f"is now called {new!r}; the old name is still read")
    return from_dict(MethodConfig, entry, f"methods[{i}]", src)


def parse_suite(data: dict, source: str = "<dict>",
                extra_imports: list[str] | None = None) -> SuiteConfig:
    """Build and validate a SuiteConfig from a parsed YAML mapping. A ConfigError that quotes a
    number PyYAML left a string (`alpha: 1.0e9`) says so and how to write it (`1.0e+9`)."""
    raw = copy.deepcopy(data)
    try:
        return _parse_suite(data, source, extra_imports)
    except ConfigError as e:
        message = with_number_hint(str(e), raw)
        if message == str(e):
            raise
        raise ConfigError(message) from None


def _parse_suite(data: dict, source: str, extra_imports: list[str] | None) -> SuiteConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a suite is a mapping with keys name, data, train, models, "
                          "seeds, methods")
    data = renamed_keys(data, source)
    methods = data.pop("methods", None)
    suite = from_dict(SuiteConfig, data, "", source)
    check_suite_name(suite.name, f"{source}: key 'name'")  # before any of its imports run
    if methods is not None:
        if not isinstance(methods, list) or not methods:
            raise ConfigError(f"{source}: key 'methods' must be a non-empty list")
        suite.methods = [_method(m, i, source) for i, m in enumerate(methods)]
    suite.file = source
    import_user_erasers(suite, extra_imports)
    train = data.get("train")
    given = isinstance(train, dict) and "milestones" in train
    validate(suite, milestones_in_range=given or suite.train.epochs >= max(
        TrainConfig().milestones))
    return suite


def import_user_erasers(suite: SuiteConfig, extra: list[str] | None = None) -> None:
    """Import the suite's `imports` (and --import's) before validation, so their erasers exist."""
    from plugins.sources import import_sources

    suite.imports = list(dict.fromkeys([*suite.imports, *(extra or [])]))
    base = Path(suite.file).parent if suite.file != "<dict>" else None
    try:
        import_sources(suite.imports, base)
    except ValueError as e:
        raise ConfigError(f"{suite.file}: key 'imports': {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's module raised while importing
        raise ConfigError(f"{suite.file}: key 'imports': importing it raised "
                          f"{type(e).__name__}: {e}") from None


def _choice(src: str, key: str, value, allowed) -> None:
    if value not in allowed:
        shown = ", ".join(str(a) for a in allowed if a is not None)
        raise ConfigError(f"{src}: key {key!r} is {value!r}; allowed: {shown}")


def _validate_train(src: str, t: TrainConfig, milestones_in_range: bool = True) -> None:
    import math

    for key in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(t, key) < 1:
            raise ConfigError(f"{src}: key 'train.{key}' must be >= 1, got {getattr(t, key)}")
    for key in ("lr", "momentum", "weight_decay", "gamma"):
        if not math.isfinite(getattr(t, key)):
            raise ConfigError(f"{src}: key 'train.{key}' must be a finite number, got "
                              f"{getattr(t, key)}")
    if t.lr <= 0:
        raise ConfigError(f"{src}: key 'train.lr' must be > 0, got {t.lr}")
    if not 0 <= t.momentum < 1:
        raise ConfigError(f"{src}: key 'train.momentum' is {t.momentum}; allowed: 0 <= momentum "
                          "< 1 (0: plain SGD)")
    if t.nesterov and t.momentum == 0:
        raise ConfigError(f"{src}: key 'train.nesterov' is true but 'train.momentum' is 0; "
                          "Nesterov needs a momentum > 0")
    for key in ("weight_decay", "pad", "checkpoint_every"):
        if getattr(t, key) < 0:
            raise ConfigError(f"{src}: key 'train.{key}' must be >= 0, got {getattr(t, key)}")
    if t.gamma <= 0:
        raise ConfigError(f"{src}: key 'train.gamma' is {t.gamma}; allowed: a factor > 0 (the LR "
                          "is multiplied by it at each milestone; 0.1 in the thesis)")
    ms = t.milestones
    top = t.epochs if milestones_in_range else None
    if any(m < 1 or (top is not None and m > top) for m in ms) or ms != sorted(set(ms)):
        allowed = f"1..{top}, the last epoch" if top is not None else ">= 1"
        raise ConfigError(f"{src}: key 'train.milestones' is {ms}; allowed: strictly increasing "
                          f"epochs in {allowed} (the LR is multiplied by train.gamma after each)")
    _choice(src, "train.graphs", t.graphs, GRAPHS)
    if not (t.pack in ("auto", "off") or (isinstance(t.pack, int) and t.pack >= 1)):
        raise ConfigError(f"{src}: key 'train.pack' is {t.pack!r}; allowed: auto, off, "
                          "or a pack size >= 1")


def _check_settings(src: str, where: str, m: MethodConfig) -> None:
    """The method's settings against their allowed values (`where` names the key: the method's
    own, or `...sweep.KEY` for one point of its sweep)."""
    def key(name):
        return f"{where}.{name}" if where.endswith("]") else where

    _choice(src, key("mode"), m.mode, (None, *MODES))
    _choice(src, key("fill"), m.fill, (None, *FILL_MODES, PASTE))
    _choice(src, key("append_bn"), m.append_bn, APPEND_BN)
    _choice(src, key("cam.source"), m.cam.source, CAM_SOURCES)
    _choice(src, key("cam.target"), m.cam.target, CAM_TARGETS)
    w = m.warmup_epochs
    if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 0):
        raise ConfigError(f"{src}: key '{key('warmup_epochs')}' is {w!r}; allowed: an integer "
                          ">= 0 (epochs of plain training first)")


def _validate_method(src: str, where: str, m: MethodConfig) -> None:
    import plugins

    _check_settings(src, where, m)
    for key, values in m.sweep.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{src}: key '{where}.sweep.{key}' must be a non-empty list")
    if m.is_plain:
        if m.params or m.sweep:
            raise ConfigError(f"{src}: key '{where}': 'plain' takes no params or sweep")
        return
    try:
        plugins.get(m.name)  # the registry's own message: available names, closest match
    except ValueError as e:
        raise ConfigError(f"{src}: key '{where}.name': {e}") from None
    for variant, _ in expand_method(m, src=src, where=where):
        for k in (k for k in m.sweep if k in SWEEP_FIELDS):  # checked like the method's own
            point = dataclasses.replace(m, cam=dataclasses.replace(m.cam))
            if k.startswith("cam."):
                setattr(point.cam, k[4:], getattr(variant.cam, k[4:]))
            else:
                setattr(point, k, getattr(variant, k))
            _check_settings(src, f"{where}.sweep.{k}", point)
        try:
            plugins.build(variant.name, **variant.params)
        except Exception as e:  # noqa: BLE001 - the eraser's own one-line message
            raise ConfigError(f"{src}: key '{where}.params': {e}") from None
        if variant.fill is not None:
            from plugins.mixing import check_mixing_fill

            try:
                check_mixing_fill(f"{src}: key '{where}.fill'", plugins.get(variant.name),
                                  variant.fill)
            except ValueError as e:
                raise ConfigError(str(e)) from None


SUITE_NAME = "letters, digits, '_', '-' and '.' (not first), at most 100 characters"


def check_suite_name(name, where: str) -> None:
    """A suite name becomes results/<name>/ and leaderboards/<name>.md under --out, so it must
    be a plain file name (no '/', no '..', no leading '.'); else one ConfigError line: `where`
    names the file and key (or the option) it came from."""
    import re

    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name)):
        raise ConfigError(f"{where} is {name!r}; a suite name is a plain file name: "
                          f"{SUITE_NAME}")


def _validate_data(src: str, d: DataConfig) -> None:
    if d.name.startswith("hf:") and "trust_remote_code" in d.options:
        raise ConfigError(f"{src}: key 'data.options.trust_remote_code' is refused: a dataset's "
                          "loading script is code from a download, and erasebench never runs "
                          "it; use a dataset stored as parquet, csv or image files")


def validate(suite: SuiteConfig, *, milestones_in_range: bool = True) -> None:
    """Value checks that the types cannot express; erasers are built once so a bad param fails
    now. `milestones_in_range=False` skips the check that train.milestones fall in 1..epochs
    (the default milestones, [150, 225], are allowed beyond a shorter schedule's end, and
    --epochs rescales them in proportion)."""
    src = suite.file
    check_suite_name(suite.name, f"{src}: key 'name'")
    _validate_train(src, suite.train, milestones_in_range)
    _validate_data(src, suite.data)
    if not suite.models:
        raise ConfigError(f"{src}: key 'models' must list at least one model")
    for i, m in enumerate(suite.models):
        if not m.strip():
            raise ConfigError(f"{src}: key 'models[{i}]' is {m!r}; allowed: a model name such as "
                              "resnet20 or timm/resnet18")
    if not suite.seeds:
        raise ConfigError(f"{src}: key 'seeds' must list at least one seed")
    if len(suite.seeds) > MAX_SEEDS:
        raise ConfigError(f"{src}: key 'seeds' lists {len(suite.seeds)} seeds; allowed: at most "
                          f"{MAX_SEEDS}")
    for i, m in enumerate(suite.methods):
        _validate_method(src, f"methods[{i}]", m)


SWEEP_FIELDS = ("mode", "fill", "warmup_epochs", "append_bn", "cam.source", "cam.layer",
                "cam.target")


def _fmt(v) -> str:
    return str(v) if not isinstance(v, float) else f"{v:g}"


def expand_method(m: MethodConfig, *, src: str = "<dict>",
                  where: str = "method") -> list[tuple[MethodConfig, dict]]:
    """One (MethodConfig, ablation) per point of its sweep grid; ablation = the swept values."""
    import itertools

    if not m.sweep:
        return [(m, {})]
    keys = list(m.sweep)
    out = []
    for values in itertools.product(*(m.sweep[k] for k in keys)):
        v = dataclasses.replace(m, params=dict(m.params), cam=dataclasses.replace(m.cam), sweep={})
        for key, value in zip(keys, values, strict=True):
            if key.startswith("cam."):
                attr = key.split(".", 1)[1]
                if attr not in ("source", "layer", "target"):
                    raise ConfigError(f"{src}: key '{where}.sweep.{key}' is unknown; allowed: "
                                      f"an eraser parameter or {', '.join(SWEEP_FIELDS)}")
                if attr == "target" and value in RENAMED_VALUES["cam.target"]:
                    new = RENAMED_VALUES["cam.target"][value]
                    note_once(f"cam.target={value}", f"note: {src}: key '{where}.sweep.{key}': "
                              f"{value!r} is now called {new!r}; the old name is still read")
                    value = new
                setattr(v.cam, attr, value)
            elif key in ("mode", "fill", "warmup_epochs", "append_bn"):
                setattr(v, key, value)
            else:
                v.params[key] = value
        if m.label is None:
            v.label = f"{m.name}(" + ",".join(f"{k.replace('cam.', 'cam_')}={_fmt(x)}"
                                               for k, x in zip(keys, values, strict=True)) + ")"
        else:
            v.label = m.label + "(" + ",".join(_fmt(x) for x in values) + ")"
        out.append((v, {k.replace("cam.", "cam_"): x for k, x in zip(keys, values, strict=True)}))
    return out


def resolve_suite_path(name_or_path: str) -> Path:
    """A suite name in configs/ or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"{p}: no such suite file")
        return p
    p = CONFIG_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        names = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"suite {name_or_path!r} is not in "
                          f"{CONFIG_DIR}{closest(name_or_path, names)}; "
                          f"available: {', '.join(names)}; or pass a path to a YAML file")
    return p


def load_suite(name_or_path: str, extra_imports: list[str] | None = None) -> SuiteConfig:
    path = resolve_suite_path(name_or_path)
    try:
        data = safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: {yaml_error(e)}") from None
    return parse_suite(data, source=str(path), extra_imports=extra_imports)

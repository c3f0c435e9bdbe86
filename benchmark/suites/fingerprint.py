"""A run's fingerprint: everything that determines its result, so a record belongs to its config.

Model, seed, method (eraser, mode, warm-up, fill, append batch, CAM), the eraser's resolved
parameters and, for an eraser that does not ship with erasebench, its source (`eraser_source`:
the sha256 of the file that defines it, or its package and version), the training recipe, the
data (name and options) and the precision. Speed options (graphs, packing, shared warm-up,
memory format, checkpoint and eval batch sizes) and where the data live are left out: they
change how fast a run trains, not what it computes.

The built-in erasers (`plugins/`) are part of erasebench, like the training loop: their code is
not fingerprinted (a record names the erasebench version and git commit that made it), so
records made before `eraser_source` existed keep matching their config. A record also stores
the identity of the data it was trained on (`data_identity`, see `benchmark.data.identity`);
`diff_record` compares it where both sides know it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# Train keys that change speed or bookkeeping, never the result.
SPEED_KEYS = ("graphs", "pack", "share_warmup", "checkpoint_every", "eval_batch_size",
              "channels_last")
METHOD_KEYS = ("name", "mode", "warmup_epochs", "fill", "append_bn")


def of_config(config: dict, eraser_params: dict | None, precision: str | None) -> dict:
    """The fingerprint of a run from its resolved config (a RunSpec as a dict, as records store
    it)."""
    m = config.get("method", {})
    cam = m.get("cam") if m.get("name") != "plain" else None
    return {
        "model": config.get("model"),
        "seed": config.get("seed"),
        "method": {**{k: m.get(k) for k in METHOD_KEYS}, "cam": cam},
        "eraser_params": dict(eraser_params or {}),
        "train": {k: v for k, v in config.get("train", {}).items() if k not in SPEED_KEYS},
        "data": {"name": config.get("data", {}).get("name"),
                 "options": config.get("data", {}).get("options", {})},
        "precision": precision or "no",
    }


_SOURCES: dict = {}  # eraser class -> its source identity, taken once per process


def eraser_source(name: str) -> dict | None:
    """What identifies the code of eraser `name`: None for a built-in (part of erasebench),
    {"sha256": 16 hex digits} of the file defining it (a suite's `imports:` file or a module
    found beside the suite), or {"package", "version"} of the installed distribution providing
    it. Taken once per process, the first time it is asked (at the suite's validation, right
    after the import), so a file edited while a suite trains does not relabel the code that is
    running."""
    import plugins
    from plugins.sources import provenance

    cls = plugins.get(name)
    if cls not in _SOURCES:
        _SOURCES[cls] = _identity(provenance(name))
    return _SOURCES[cls]


def _identity(prov: dict | None) -> dict | None:
    """A provenance dict (plugins.sources.provenance, as records store it) -> the part that
    identifies the code; None for erasebench's own erasers or when nothing is known."""
    if not isinstance(prov, dict) or prov.get("package") == "erasebench":
        return None
    if prov.get("sha256"):
        return {"sha256": prov["sha256"]}
    if prov.get("package"):
        return {"package": prov["package"], "version": prov.get("version")}
    return None


def of_run(spec, precision: str) -> dict:
    """The fingerprint of a planned run (its eraser built once to resolve its parameters)."""
    import plugins

    m = spec.method
    params = {} if m.is_plain else plugins.build(m.name, **m.params).params()
    fp = of_config(spec.to_dict(), params, precision)
    if not m.needs_cam:
        fp["method"]["cam"] = None  # CAM settings of an eraser without a CAM change nothing
    source = None if m.is_plain else eraser_source(m.name)
    if source is not None:
        fp["eraser_source"] = source
    return fp


def of_warmup(spec, precision: str) -> dict:
    """What a plain warm-up depends on: a fork file holds it, a forked run must match it."""
    fp = of_config(spec.to_dict(), {}, precision)
    return {k: fp[k] for k in ("model", "seed", "train", "data", "precision")}


def of_record(rec: dict) -> dict:
    """A record's fingerprint: stored since schema 2, derived from its config before."""
    if isinstance(rec.get("fingerprint"), dict):
        fp = dict(rec["fingerprint"])
    else:
        fp = of_config(rec.get("config", {}), rec.get("eraser_params"), rec.get("precision"))
        if rec.get("cam") is None:
            fp["method"]["cam"] = None
    # Records written before the fingerprint held the eraser's source still name it (top-level
    # `eraser_source`): compare that, so an edited eraser file counts as a change for them too.
    if "eraser_source" not in fp and rec.get("eraser"):
        source = _identity(rec.get("eraser_source"))
        if source is not None:
            fp["eraser_source"] = source
    return fp


class ConfigChanged(Exception):
    """A record or resume checkpoint in the results folder was made by another config: the
    one-line message (`refusal`) says which keys differ and what to do."""


def diff_record(rec: dict, spec, precision: str,
                data_identity: dict | None = None) -> list[tuple[str, object, object]]:
    """The keys in which a record differs from the planned run `spec`: its fingerprint, and the
    identity of the data it was trained on where both the record and `data_identity` know it."""
    out = diff(of_record(rec), of_run(spec, precision))
    old = rec.get("data_identity")
    if isinstance(old, dict) and data_identity:
        out += diff(old, data_identity, "data_identity.")
    return out


def diff_resume(path: Path, spec, precision: str) -> list[tuple[str, object, object]]:
    """The keys in which the resume checkpoint `path` differs from the planned run `spec` (none
    when there is no such file or it cannot be read: training sets a damaged one aside). Reads
    only; moves nothing."""
    from benchmark.fileio import DamagedFileError
    from benchmark.training import checkpoint

    if not Path(path).is_file():
        return []
    try:
        state = checkpoint.read(path, required=("fingerprint",), what="resume checkpoint")
    except (DamagedFileError, OSError):
        return []
    old = state.get("fingerprint")
    return diff(old, of_run(spec, precision)) if isinstance(old, dict) else []


def refusal(results_dir, n_changed: int, keys: dict) -> str:
    """The one line that stops a suite whose results folder holds `n_changed` records (or resume
    checkpoints) of another config; `keys`: dotted key -> (old, new)."""
    what = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(keys.items())[:4])
    more = f" (and {len(keys) - 4} more keys)" if len(keys) > 4 else ""
    return (f"{results_dir}: {n_changed} of its records were made by another config ({what}"
            f"{more}); use another --out for this one, or --rerun-changed to retrain those runs")


def digest(fp: dict) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()[:16]


def diff(old: dict, new: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, old value, new value) for every leaf that differs."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff(a, b, path + ".")
        elif a != b:
            out.append((path, a, b))
    return out

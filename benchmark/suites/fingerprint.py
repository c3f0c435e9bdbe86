"""A run's fingerprint: everything that determines its result, so a record belongs to its config.

Model, seed, method (eraser, mode, warm-up, fill, append batch, CAM), the eraser's resolved
parameters, the training recipe, the data (name and options) and the precision. Speed options
(graphs, packing, shared warm-up, memory format, checkpoint and eval batch sizes) and where the
data live are left out: they change how fast a run trains, not what it computes.
"""

from __future__ import annotations

import hashlib
import json

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


def of_run(spec, precision: str) -> dict:
    """The fingerprint of a planned run (its eraser built once to resolve its parameters)."""
    import plugins

    m = spec.method
    params = {} if m.is_plain else plugins.build(m.name, **m.params).params()
    fp = of_config(spec.to_dict(), params, precision)
    if not m.needs_cam:
        fp["method"]["cam"] = None  # CAM settings of an eraser without a CAM change nothing
    return fp


def of_warmup(spec, precision: str) -> dict:
    """What a plain warm-up depends on: a fork file holds it, a forked run must match it."""
    fp = of_config(spec.to_dict(), {}, precision)
    return {k: fp[k] for k in ("model", "seed", "train", "data", "precision")}


def of_record(rec: dict) -> dict:
    """A record's fingerprint: stored since schema 2, derived from its config before."""
    if isinstance(rec.get("fingerprint"), dict):
        return rec["fingerprint"]
    fp = of_config(rec.get("config", {}), rec.get("eraser_params"), rec.get("precision"))
    if rec.get("cam") is None:
        fp["method"]["cam"] = None
    return fp


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

"""Old names that are still read: a suite key or value under its old name is read under its new
one, with a one-line note once per process (torch-free, like the rest of `benchmark.suites`)."""

from __future__ import annotations

import sys

from benchmark.suites.vocabulary import ConfigError

# A suite key's old name -> its name now (dotted: section.key). The old name is still read, with
# a one-line note once per process and key; giving both is an error.
RENAMED_KEYS = {"data.data_dir": "data.root"}
# A value's old name -> its name now, per key (the CAM target 'pred' became 'predicted').
RENAMED_VALUES = {"cam.target": {"pred": "predicted"}}
_noted: set[str] = set()


def note_once(what: str, line: str) -> None:
    if what not in _noted:
        _noted.add(what)
        print(line, file=sys.stderr, flush=True)


def renamed_keys(data: dict, source: str) -> dict:
    """A copy of a suite mapping with every old key name in RENAMED_KEYS under its new name."""
    data = dict(data)
    for old, new in RENAMED_KEYS.items():
        section, old_key = old.split(".")
        new_key = new.split(".")[1]
        part = data.get(section)
        if not isinstance(part, dict) or old_key not in part:
            continue
        if new_key in part:
            raise ConfigError(f"{source}: keys {old!r} and {new!r} are one key ({old!r} is its "
                              f"old name); give {new!r} only")
        data[section] = {(new_key if k == old_key else k): v for k, v in part.items()}
        note_once(old, f"note: {source}: key {old!r} is now called {new!r}; the old name is "
                   "still read")
    return data

"""`erasebench compare`: rank methods across models and suites, matching methods by what they
do (eraser, resolved parameters, mode, fill, append step, CAM, warm-up), never by label."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.fileio import atomic_write, warn
from benchmark.report.grid import Method, build_grid
from benchmark.report.leaderboard import DATA_TAG, READABLE_DATA_SCHEMAS, block_problem, summary
from benchmark.report.markdown import fmt_stats, md_table, shown_path
from benchmark.report.stats import mean
from benchmark.results import load_records


class NotALeaderboard(ValueError):
    """An input that exists but holds no data block `compare` can read: skipped with a warning."""


def read_summary(source: str) -> dict:
    """A leaderboard .md (its data block), a results folder, or a suite name (its records in
    runs/results/<name>/, where `erasebench run` writes them by default)."""
    p = Path(source)
    if p.suffix == ".md":
        if not p.is_file():
            raise ValueError(f"{p}: no such leaderboard file")
        m = re.search(rf"<!-- {DATA_TAG} (.*?) -->", p.read_text(), re.S)
        if not m:
            raise NotALeaderboard(f"{p}: no '{DATA_TAG}' data block (not a rendered "
                                  "leaderboard)")
        try:
            data = json.loads(m.group(1))
        except json.JSONDecodeError as e:
            raise NotALeaderboard(f"{p}: its '{DATA_TAG}' data block is not valid JSON ({e})") \
                from None
        if not isinstance(data, dict) or data.get("schema") not in READABLE_DATA_SCHEMAS:
            schema = data.get("schema") if isinstance(data, dict) else None
            raise NotALeaderboard(f"{p}: data block key 'schema' is {schema!r}; this erasebench "
                                  f"reads schema {', '.join(map(str, READABLE_DATA_SCHEMAS))}")
        for key in ("suite", "models", "groups"):
            if key not in data:
                raise NotALeaderboard(f"{p}: data block key {key!r} is missing")
        problem = block_problem(data)
        if problem:
            raise NotALeaderboard(f"{p}: data block {problem}")
        return data
    if p.is_file():
        raise NotALeaderboard(f"{p}: not a leaderboard .md file")
    folder = p if p.is_dir() else Path("runs", "results", source)
    if not folder.is_dir():
        raise ValueError(f"{source}: neither a leaderboard .md, a results folder, nor a suite "
                         f"with records in {folder}/")
    suites = sorted({str(r.get("suite") or folder.name) for r in load_records(folder)})
    if len(suites) > 1 and folder.name not in suites:
        raise ValueError(f"{folder}: holds records of {len(suites)} suites ({', '.join(suites)}); "
                         "compare a folder of one suite, or their leaderboard .md files")
    suite = folder.name if folder.name in suites or not suites else suites[0]
    return summary(build_grid(load_records(folder, suite=suite), suite=suite))


def _canon(v):
    """A parameter value compared by value: 1.0 and 1 are one setting; dicts in key order."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, dict):
        return {str(k): _canon(x) for k, x in sorted(v.items())}
    if isinstance(v, list | tuple):
        return [_canon(x) for x in v]
    return v


def _warmup_share(warmup: int, epochs: int, cam: bool) -> float:
    """The warm-up as a share of the run's epochs, so the default schedule (half the epochs for a
    CAM eraser, epochs // 2) is one setting whatever a suite's length."""
    return 0.5 if cam and warmup == epochs // 2 else round(warmup / epochs, 3)


def method_identity(group: dict) -> tuple[dict, bool]:
    """(what a method does, complete?) from a data-block group: eraser, resolved parameters, CAM
    and mode, fill, append_bn (append mode only), warm-up; never the label. Incomplete (an older
    block or records): the identity without the settings that are not recorded."""
    if "eraser" not in group:  # nothing recorded but the label
        return {}, False
    eraser = group["eraser"]
    if eraser is None:  # plain training: no other setting changes what it does
        return {"eraser": "plain"}, True
    cam = group.get("cam")
    ident = {"eraser": eraser, "params": _canon(group.get("eraser_params") or {}),
             "cam": {k: cam.get(k) for k in ("source", "layer", "target")} if cam else None}
    mode, fill, warmup, epochs = (group.get(k) for k in ("mode", "fill", "warmup_epochs", "epochs"))
    append_bn = group.get("append_bn") if mode == "append" else None
    if (mode is None or fill is None or not isinstance(warmup, int) or not isinstance(epochs, int)
            or epochs < 1 or (mode == "append" and append_bn is None)):
        return ident, False
    return {**ident, "mode": mode, "fill": fill, "append_bn": append_bn,
            "warmup": _warmup_share(warmup, epochs, cam is not None)}, True


def _settings(ident: dict) -> dict[str, str]:
    """An identity as flat `key=value` settings, to tell apart methods that share a label."""
    out = {"eraser": str(ident["eraser"])} if "eraser" in ident else {}
    out.update({k: str(v) for k, v in (ident.get("params") or {}).items()})
    for k, v in (ident.get("cam") or {}).items():
        out[f"cam.{k}"] = str(v)
    for k in ("mode", "fill", "append_bn"):
        if ident.get(k) is not None:
            out[k] = str(ident[k])
    if "warmup" in ident:
        out["warmup"] = f"{100 * ident['warmup']:g}% of epochs"
    return out


@dataclass
class _Row:
    """One compared method: its identity, every label it has, and its group per column."""

    ident: dict
    by_label: bool  # matched by label: its settings are not all recorded
    labels: list[str] = field(default_factory=list)
    suites: list[str] = field(default_factory=list)
    cells: dict[int, dict] = field(default_factory=dict)
    name: str = ""

    def add(self, column: int, suite: str, group: dict) -> None:
        self.cells[column] = group
        if group["method"] not in self.labels:
            self.labels.append(group["method"])
        if suite not in self.suites:
            self.suites.append(suite)

    def sort_key(self):
        g = self.cells[min(self.cells)]
        return Method(self.labels[0], g.get("eraser"), dict(g.get("eraser_params") or {}),
                      g.get("cam")).sort_key()


def _match(columns: list[tuple[str, str, list[dict]]]) -> list[_Row]:
    """Methods matched across columns by identity; groups without a complete one by label (and
    eraser, parameters, CAM), joined to the one complete method with that label if there is one.
    Two groups of one column never share a row (a suite may run one configuration twice)."""
    full: dict[tuple[str, int], _Row] = {}
    partial: dict[tuple[str, str, int], _Row] = {}
    for i, (suite, _, groups) in enumerate(columns):
        for gr in groups:
            ident, complete = method_identity(gr)
            key = json.dumps(ident, sort_keys=True)
            rows, base = (full, (key,)) if complete else (partial, (gr["method"], key))
            n = 0
            while (*base, n) in rows and i in rows[(*base, n)].cells:
                n += 1
            rows.setdefault((*base, n), _Row(ident, not complete)).add(i, suite, gr)
    out = list(full.values())
    for row in partial.values():
        same = [r for r in full.values() if row.labels[0] in r.labels
                and {k: r.ident.get(k) for k in row.ident} == row.ident
                and not set(r.cells) & set(row.cells)]
        if len(same) == 1:
            same[0].by_label = True
            for i, gr in sorted(row.cells.items()):
                same[0].add(i, columns[i][0], gr)
        else:
            out.append(row)
    for r in out:
        r.name = " / ".join(r.labels)
    for rows in _sharing_a_label(out):  # one label, different methods: say what sets them apart
        settings = [_settings(r.ident) for r in rows]
        keys = [k for k in settings[0] if all(k in s for s in settings)
                and len({s[k] for s in settings}) > 1]
        for r, s in zip(rows, settings, strict=True):
            r.name += f" [{', '.join(f'{k}={s[k]}' for k in keys) or ', '.join(r.suites)}]"
    for r in out:
        r.name += " †" if r.by_label else ""
    return out


def _sharing_a_label(rows: list[_Row]) -> list[list[_Row]]:
    """The groups (of two or more) of rows linked by a label they share, in row order."""
    group = list(range(len(rows)))  # union-find over row indices

    def find(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        for label in r.labels:
            group[find(i)] = find(first.setdefault(label, i))
    out: dict[int, list[_Row]] = {}
    for i, r in enumerate(rows):
        out.setdefault(find(i), []).append(r)
    return [g for g in out.values() if len(g) > 1]


def _column_names(summaries: list[dict], columns) -> list[str]:
    """'model (suite)'; where two columns would read the same (a suite compared with another
    copy of itself: yours beside the committed one), 'model (suite, where it was read from)';
    where even that is the same (one file given twice), '... [input i]', i its place in the
    command line."""
    names = [f"{mo} ({suite})" for suite, mo, _ in columns]
    origin = [(s.get("input", i + 1), s.get("source", "?")) for i, s in enumerate(summaries)
              for mo in s["models"]
              if any(gr["model"] == mo and gr["final"] for gr in s["groups"])]
    names = [f"{mo} ({suite}, {shown_path(src)})" if names.count(n) > 1 else n
             for n, (_, src), (suite, mo, _) in zip(names, origin, columns, strict=True)]
    return [f"{n} [input {i}]" if names.count(n) > 1 else n
            for n, (i, _) in zip(names, origin, strict=True)]


def _columns(summaries: list[dict]) -> list[tuple[str, str, list[dict]]]:
    """(suite, model, groups with finished runs) for every model of every suite."""
    columns = []
    for s in summaries:
        for mo in s["models"]:
            groups = [gr for gr in s["groups"] if gr["model"] == mo and gr["final"]]
            if groups:
                columns.append((s["suite"], mo, groups))
    return columns


def _ranks(rows: list[_Row], n_columns: int) -> dict[tuple[int, int], int]:
    """(row, column) -> the row's rank in that column by mean final error (ties: better rank)."""
    ranks = {}
    for i in range(n_columns):
        means = {j: mean(r.cells[i]["final"]) for j, r in enumerate(rows) if i in r.cells}
        for j, mu in means.items():
            ranks[(j, i)] = 1 + sum(other < mu for other in means.values())
    return ranks


def _intro(summaries, names: list[str], shared: list[int]) -> list[str]:
    out = ["# Comparison: " + ", ".join(s["suite"] for s in summaries), "",
           "Final-epoch test error (%) per (model, suite) column: mean ± sample std over the "
           "finished runs (n; `n=j of k`: j of the k planned runs finished; failed runs never "
           "enter) and `#r`, the method's rank in that column (1 = lowest; ties share the better "
           "rank). A row is one method, matched across suites by what it does (eraser and its "
           "resolved parameters, mode, fill, append_bn, CAM source, layer and target, warm-up as "
           "a share of the epochs), never by its label; it shows every label the method has. "
           "`—`: not run there.", ""]
    if shared:
        return out + [f"Mean rank over {len(shared)} of {len(names)} columns (the columns every "
                      f"method ran in): {', '.join(names[i] for i in shared)}.", ""]
    return out + [f"No column of the {len(names)} has every method, so there is no mean rank; "
                  "rows are in the leaderboards' method order.", ""]


def compare(summaries: list[dict]) -> str:
    """One table: methods (matched by what they do, shown with their labels) x (model, suite)
    columns of mean ± std (n) final error with the rank in that column, and the mean rank over
    the columns every method ran in, saying how many those are."""
    columns = _columns(summaries)
    rows = _match(columns)
    ranks = _ranks(rows, len(columns))
    shared = [i for i in range(len(columns)) if all(i in r.cells for r in rows)]
    mean_rank = {j: mean([ranks[(j, i)] for i in shared]) for j in range(len(rows))} \
        if shared else {}
    order = sorted(range(len(rows)), key=lambda j: (mean_rank.get(j, 0), rows[j].sort_key()))
    names = _column_names(summaries, columns)
    header = ["method"] + names + ([f"mean rank ({len(shared)} of {len(columns)})"]
                                   if shared else [])
    body = []
    for j in order:
        cells = ["—" if (gr := rows[j].cells.get(i)) is None else
                 f"{fmt_stats(gr['final'], gr.get('expected', 0), gr.get('failed', 0))} "
                 f"#{ranks[(j, i)]}" for i in range(len(columns))]
        body.append([rows[j].name] + cells + ([f"{mean_rank[j]:.2f}"] if shared else []))
    out = _intro(summaries, names, shared) + md_table(header, body)
    legacy = dict.fromkeys(columns[i][0] for r in rows for i, g in sorted(r.cells.items())
                           if not method_identity(g)[1])
    if legacy:
        out += ["", f"†: matched by label, eraser, parameters and CAM: "
                f"{', '.join(legacy)} do not record every method setting (mode, "
                "fill, append_bn, warm-up: a data block older than schema 2, or older records); "
                "re-render with `erasebench leaderboard` to match by settings."]
    return "\n".join(out) + "\n"


def _compare_inputs(args) -> int:
    summaries = []
    for position, source in enumerate(args.inputs, 1):
        try:
            s = read_summary(source)
        except NotALeaderboard as e:
            warn(f"{e}; skipped")
            continue
        if not any(gr["final"] for gr in s["groups"]):
            warn(f"{source}: no finished runs; skipped")
            continue
        where = source if Path(source).suffix == ".md" or Path(source).is_dir() \
            else str(Path("runs", "results", source))
        # named in a column that would otherwise read the same as another
        summaries.append({**s, "source": where, "input": position})
    if not summaries:
        raise ValueError(f"nothing to compare: none of the {len(args.inputs)} input(s) is a "
                         "leaderboard or results folder with finished runs")
    text = compare(summaries)
    if args.out:
        atomic_write(Path(args.out), text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None, prog: str = "erasebench compare") -> int:
    """`erasebench compare A.md B.md ...`: rank methods across suites and models."""
    p = argparse.ArgumentParser(prog=prog, description=main.__doc__.split(": ", 1)[1])
    p.add_argument("inputs", nargs="+",
                   help="leaderboard .md files, results folders or suite names")
    p.add_argument("--out", help="write the table here instead of stdout")
    args = p.parse_args(argv)
    try:
        return _compare_inputs(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

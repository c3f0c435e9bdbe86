"""The leaderboard's Cost section: device-hours per run and training throughput, per cell.

One clock and one statistic per cell: the cell's median run (the two middle runs' sums for an
even count), whose hours and images give both columns (throughput = images / seconds of the
same runs, never a mean of per-run rates), so one run slowed by a loaded machine neither moves
the cell nor makes its two columns disagree. A run far slower than the other runs of its cell
is listed by name below the table. The total is the device time the records account for, with
each warm-up that forked runs share counted once (in the run that trained it)."""

from __future__ import annotations

from statistics import median

from benchmark.report.grid import Grid
from benchmark.report.markdown import fmt_hours, md_table

# a run is listed as slow when its hours exceed this many times the median of its cell's others
SLOW_FACTOR = 3.0

_BASIS = {"cpu": ("CPU-h", " per CPU-s", "CPU-hours"),
          "wall": ("h wall-clock", " per s wall-clock", "hours wall-clock"),
          "gpu": ("GPU-h", " per GPU-s", "GPU-hours")}

_COST_CAPTION = (
    "Device-hours of the cell's median run (the mean of the two middle runs for an even count) "
    "and the training images per device-second of that same run (images / seconds of the same "
    "runs), so a run slowed by a loaded machine moves neither column; a run that took over "
    f"{SLOW_FACTOR:g}x the median of its cell's other runs is listed below the table. "
    "On a CPU: CPU-h, the "
    "CPU time the run's training consumed (the record's `cpu_time_s`: the process's CPU "
    "time in its training epochs, every thread, evaluation and checkpoints not counted), "
    "which other jobs competing for the cores barely change where wall-clock time grows "
    "with them (a run on one torch thread costs the same on a busy machine; on several, "
    "threads spin-waiting for a descheduled sibling count too, so heavy contention "
    "still adds some). On a GPU: GPU-h, "
    "the record's `wall_time_s`, the wall-clock time of the sessions that trained the "
    "run, evaluation and checkpoints included. A CPU cell with a record from before "
    "`cpu_time_s` existed (or whose `cpu_time_s` is implausible against its training "
    "time) shows wall-clock time instead, marked `wall-clock` (load inflates it: compare "
    "such cells with care). A resumed run counts every session "
    "(wall-clock records written before sessions were summed, the last one only). A run "
    "forked from a shared warm-up (its record's `forked_from`) counts the warm-up's training "
    "it inherits, in its hours and its images: what training that run alone costs. "
    "When K runs were stacked in one network on one device (a pack of K; the `pack` column "
    "where records say), each run is charged 1/K of the pack's time, so the hours add "
    "up to the device time used. Throughput: training images (erased copies included) "
    "per second of the same clock as the cell's hours: per CPU-second of training on a "
    "CPU; per wall-clock second of the whole run, evaluation included, on a GPU and in "
    "`wall-clock` cells. For a pack it is the whole pack's throughput. "
)


def _is_gpu(device: str) -> bool:
    return not str(device).lower().startswith("cpu")


def _pack_sizes(recs: list[dict]) -> str:
    sizes = sorted({r["pack_size"] for r in recs if isinstance(r.get("pack_size"), int)})
    return ", ".join(map(str, sizes)) or "—"


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def cost_basis(recs: list[dict]) -> str:
    """How a cell's runs are charged: "cpu" (all on a CPU, each with the CPU time its training
    consumed: what other jobs on the machine barely change), "wall" (CPU records from before
    `cpu_time_s` existed: wall-clock time, which load inflates) or "gpu" (wall-clock GPU time;
    any GPU record in the cell)."""
    if any(_is_gpu(r.get("device", "cpu")) for r in recs):
        return "gpu"
    if all(_number(r.get("cpu_time_s")) and r["cpu_time_s"] > 0 for r in recs):
        return "cpu"
    return "wall"


def run_cost(r: dict, basis: str) -> tuple[float, float]:
    """(seconds, training images) of one record on `basis` (cost_basis): seconds of
    `cpu_time_s` on "cpu", of `wall_time_s` (the whole run, evaluation included) otherwise; the
    images are `images_per_s` x `train_time_s` (0 when either is absent)."""
    seconds = r["cpu_time_s"] if basis == "cpu" else r["wall_time_s"]
    rate, train = r.get("images_per_s"), r.get("train_time_s")
    return float(seconds), float(rate * train) if _number(rate) and _number(train) else 0.0


def median_run(costs: list[tuple[float, float]]) -> tuple[float, float | None]:
    """(hours, images per second) of the median run of `costs` ((seconds, images) pairs): the
    middle run by seconds, or the two middle runs together for an even count (mean hours, their
    images over their seconds). Images per second is None when those runs' images are unknown."""
    ordered = sorted(costs)
    mid = len(ordered) // 2
    middle = ordered[mid:mid + 1] if len(ordered) % 2 else ordered[mid - 1:mid + 1]
    seconds, images = sum(s for s, _ in middle), sum(i for _, i in middle)
    rate = images / seconds if images and seconds > 0 else None
    return seconds / len(middle) / 3600, rate


def slow_runs(recs: list[dict], seconds: list[float]) -> list[tuple[dict, float, float]]:
    """(record, its seconds, the median seconds of the cell's other runs) for each run that took
    over SLOW_FACTOR times its siblings' median: a machine under load, or a warm-up inherited from
    such a run. A cell of one run has no siblings and flags nothing."""
    out = []
    for i, (r, s) in enumerate(zip(recs, seconds, strict=True)):
        others = seconds[:i] + seconds[i + 1:]
        if others and s > SLOW_FACTOR * median(others):
            out.append((r, s, median(others)))
    return out


def inherited_seconds(r: dict, basis: str, by_id: dict[str, dict]) -> tuple[float, bool] | None:
    """(seconds of warm-up training a forked run inherited, on `basis`'s clock; whether that is an
    estimate), None for a run that was not forked or whose warm-up's run has no record here.
    Exact when the record's `forked_from` keeps it (`train_time_s`, `cpu_time_s`); records from
    before that: the warm-up run's own seconds on the same clock x fork epoch / its epochs (pro
    rata by epochs, so load that varied across its epochs makes it rough), at most the fork's."""
    fork = r.get("forked_from") or {}
    provider = by_id.get(str(fork.get("run_id")))
    if provider is None:
        return None
    key = "cpu_time_s" if basis == "cpu" else "train_time_s"
    if _number(fork.get(key)):
        return float(fork[key]), False
    total, epoch, epochs = provider.get(key), fork.get("epoch"), provider.get("epochs")
    if not (_number(total) and _number(epoch) and _number(epochs) and epochs > 0):
        return None
    own = r["cpu_time_s"] if basis == "cpu" else r["wall_time_s"]
    return min(float(total) * epoch / epochs, float(own)), True


def _total(g: Grid, cells: list[tuple[list[dict], str, list[float]]]) -> str:
    """The caption's total: per clock, every run's seconds summed less what forks inherited from
    a run counted here (so each shared warm-up counts once), and how that was known."""
    by_id = {r["run_id"]: r for r in g.records if r.get("run_id")}
    totals, shared, forks, estimated = {b: 0.0 for b in _BASIS}, 0.0, 0, 0
    for recs, basis, seconds in cells:
        totals[basis] += sum(seconds)
        for r in recs:
            got = inherited_seconds(r, basis, by_id)
            if got is not None:
                totals[basis] -= got[0]
                shared, forks, estimated = shared + got[0], forks + 1, estimated + got[1]
    text = "; ".join(f"{fmt_hours(s / 3600)} {_BASIS[b][2]}" for b, s in totals.items() if s > 0)
    text = (f"Total: {text}, the device time of every run in the table with each shared warm-up "
            "counted once (every run's hours summed")
    if not forks:
        return text + ")."
    how = ("as the forked records keep it" if not estimated else
           f"{'' if estimated == forks else f'{estimated} of them '}estimated pro rata by epochs "
           "from the warm-up runs' records, which keep no time per epoch: rough where a warm-up "
           "run's epochs ran under uneven load")
    return (text + f", less {fmt_hours(shared / 3600)} h of warm-up that {forks} forked runs "
            f"inherited from runs counted here; {how}).")


def cost(g: Grid) -> list[str]:
    """Device-hours of each cell's median run and its throughput on one clock (module doc), the
    pack size where records have one, the runs far slower than their cell, and the total."""
    packed = any(isinstance(r.get("pack_size"), int) for r in g.records)
    rows, cells, slow = [], [], []
    for mo in g.models:
        for m in g.methods:
            recs = [r for r in g.cell(mo, m).records if _number(r.get("wall_time_s"))]
            if not recs:
                continue
            basis = cost_basis(recs)
            costs = [run_cost(r, basis) for r in recs]
            seconds = [s for s, _ in costs]
            cells.append((recs, basis, seconds))
            hours, rate = median_run(costs)
            unit, per, _ = _BASIS[basis]
            slow += [(r, s, o, unit) for r, s, o in slow_runs(recs, seconds)]
            rows.append([mo, m.label, str(len(recs)),
                         ", ".join(sorted({str(r.get("device", "?")) for r in recs})),
                         *([_pack_sizes(recs)] if packed else []),
                         f"{fmt_hours(hours)} {unit}", f"{rate:,.0f}{per}" if rate else "n/a"])
    if not rows:
        return []
    header = ["model", "method", "runs", "device", *(["pack"] if packed else []),
              "device-h, median run", "training images per device-s, same run"]
    return ["## Cost: device-hours per run", "", _COST_CAPTION + _total(g, cells), "",
            *md_table(header, rows), "", *_slow_lines(slow)]


def _slow_lines(slow: list[tuple[dict, float, float, str]]) -> list[str]:
    if not slow:
        return []
    lines = [f"Runs that took over {SLOW_FACTOR:g}x the median of their cell's other runs (in "
             "the total; the cell shows its median run; a forked run inherits a slow warm-up):",
             ""]
    for r, s, others, unit in slow:
        fork = (r.get("forked_from") or {}).get("run_id")
        lines.append(f"- `{r.get('run_id')}`: {fmt_hours(s / 3600)} {unit}, "
                     f"{s / others:.1f}x the others' median, {fmt_hours(others / 3600)} {unit}"
                     + (f"; forked from `{fork}`" if fork else ""))
    return lines + [""]

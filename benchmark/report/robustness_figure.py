"""The robustness figure of a leaderboard: test error vs occluded fraction, a line per method
(mean over the evaluated seeds), one panel per placement of the occluder (benchmark/robustness.py);
one PNG per model, from the records only."""

from __future__ import annotations

from pathlib import Path

from benchmark.fileio import save_figure
from benchmark.report.grid import Grid
from benchmark.report.robustness_table import ROBUSTNESS_PLACEMENTS, evaluated_errors
from benchmark.report.stats import mean


def series(g: Grid, model: str) -> dict[str, dict[str, tuple[list[float], list[float], int]]]:
    """{placement: {method label: (fractions, mean test error %, runs)}} of one model; f = 0 is
    the clean final error. Placements and methods without an evaluated run are left out."""
    out: dict[str, dict] = {}
    for placement in ROBUSTNESS_PLACEMENTS:
        for m in g.methods:
            if (model, m.label) not in g.cells:
                continue
            errs = evaluated_errors(g.cell(model, m).records, placement)
            if not errs:
                continue
            fractions = sorted(set.intersection(*(set(e) for _, e in errs)))
            xs = [0.0, *fractions]
            ys = [mean([r["final_test_error"] for r, _ in errs]),
                  *[mean([e[f] for _, e in errs]) for f in fractions]]
            out.setdefault(placement, {})[m.label] = (xs, ys, len(errs))
    return out


def plot(panels: dict[str, dict[str, tuple[list[float], list[float], int]]], out_path, *,
         title: str) -> Path:
    """Write one panel per placement (`series`' output), a line per method; returns out_path."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2), dpi=100, sharey=True, squeeze=False)
    for ax, (placement, lines) in zip(axes[0], panels.items(), strict=False):
        for label, (xs, ys, runs) in lines.items():
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=f"{label} (n={runs})")
        ax.set_title(f"occluder {ROBUSTNESS_PLACEMENTS[placement]}", fontsize=9)
        ax.set_xlabel("occluded fraction of the image")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("test error (%), mean over seeds")
    if panels:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)
    return out

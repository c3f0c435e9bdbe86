"""Test-error curves per method (mean over seeds), one PNG per model, for the leaderboards."""

from __future__ import annotations

from pathlib import Path

from benchmark.fileio import save_figure


def mean_curve(records: list[dict], key: str = "test_error") -> tuple[list, list[float]]:
    """(epochs, mean over records) of one curve, cut to the shortest record so every point has
    all seeds."""
    series = [r["curves"][key] for r in records if isinstance(r.get("curves"), dict)
              and r["curves"].get(key) and all(_is_number(x) for x in r["curves"][key])]
    if not series:
        return [], []
    n = min(len(s) for s in series)
    epochs = next(r["curves"].get("epoch") for r in records
                  if r.get("curves") and r["curves"].get(key))
    epochs = list(epochs[:n]) if epochs else list(range(1, n + 1))
    return epochs, [sum(s[i] for s in series) / len(series) for i in range(n)]


def _is_number(x) -> bool:
    """A plottable point: a number, not None (a non-finite value in a strict-JSON record)."""
    return isinstance(x, int | float) and not isinstance(x, bool)


def plot_curves(curves: dict[str, tuple[list, list[float], int]], out_path, *, title: str) -> Path:
    """Write one line per method: curves maps label -> (epochs, mean test error %, number of
    seeds)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, (epochs, values, n) in curves.items():
        ax.plot(epochs, values, label=f"{label} (n={n})", linewidth=1.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%), mean over seeds")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)
    return out

"""Figures of the benchmark, as an argparse CLI with one subcommand per figure.

    python -m benchmark.figures erased-fraction [--draws 2500000] [--out leaderboards]

Adding a figure: write ``my_figure(args)`` and ``_register_my_figure(sub)`` (which adds
the subparser and ``set_defaults(func=my_figure)``), and append the latter to SUBCOMMANDS.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.fileio import atomic_write

__all__ = ["count_true", "erased_fraction", "erased_fraction_stats", "main", "synthetic_cam"]


# --- erased-fraction (thesis Figures 10-12) -------------------------------------------------


def synthetic_cam(batch: int, size: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """A Gaussian blob per image, float (B, size, size): centre uniform, sigma in [2, size/4] px.

    Built as an outer product of two 1-D Gaussians, so a million maps stay cheap.
    """
    centre = torch.rand(batch, 2, generator=generator) * size
    sigma = 2 + (size / 4 - 2) * torch.rand(batch, 1, generator=generator)
    grid = torch.arange(size, dtype=torch.float32)
    gy = torch.exp(-((grid - centre[:, :1]) ** 2) / (2 * sigma**2))
    gx = torch.exp(-((grid - centre[:, 1:]) ** 2) / (2 * sigma**2))
    return gy[:, :, None] * gx[:, None, :]


def count_true(mask: torch.Tensor) -> torch.Tensor:
    """Number of True pixels per mask (B, ...) as long (B,).

    Trick: a contiguous bool mask is bytes of 0/1; read 8 of them as one int64 and add the
    words, so each byte lane accumulates at most n_words ones (no carry while n_words < 256),
    then add the 8 lanes. About 50x faster than ``mask.sum`` on the CPU for 32x32 masks.
    """
    flat = mask.reshape(mask.shape[0], -1)
    n = flat.shape[1]
    if n % 8 or n // 8 > 255 or not flat.is_contiguous():
        return flat.sum(1)
    words = flat.view(torch.uint8).view(torch.int64).sum(1)
    return words.view(torch.uint8).view(-1, 8).sum(1)


def erased_fraction_stats(counts: np.ndarray, pixels: int) -> dict:
    """Summary of a histogram ``counts[k]`` = draws with k erased pixels (exact quantiles)."""
    draws = int(counts.sum())
    fraction = np.arange(len(counts)) / pixels
    cumulative = np.cumsum(counts)

    def quantile(q: float) -> float:
        return float(fraction[np.searchsorted(cumulative, q * draws)])

    return {
        "draws": draws,
        "mean": float((counts * fraction).sum() / draws),
        "q1": quantile(0.25),
        "median": quantile(0.5),
        "q3": quantile(0.75),
        "p_no_erase": float(counts[0] / draws),
    }


def _plot_erased_fraction(name: str, counts: np.ndarray, pixels: int, stats: dict, path: Path, params: str):
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    bins = 64
    # Right-closed bins (k-1)/64 < f <= k/64 on exact pixel counts; the zero bin is left out
    # of the bars (P(no erase) would dwarf them) and written on the plot instead.
    edges = np.arange(1, bins + 1) * pixels / bins
    index = np.minimum(np.ceil(np.arange(1, pixels + 1) / (pixels / bins)).astype(int) - 1, bins - 1)
    per_bin = np.bincount(index, weights=counts[1:], minlength=bins)
    share = 100 * per_bin / stats["draws"]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.bar((edges - pixels / bins / 2) / pixels, share, width=1 / bins, color="#4c72b0", edgecolor="white", linewidth=0.3)
    ax.set_xlim(0, 1)
    ax.set_xlabel("erased fraction of the image")
    ax.set_ylabel("share of draws (%)")
    ax.set_title(f"{name}: {stats['draws']:,} draws", fontsize=10)
    ax.text(
        0.98, 0.95,
        f"P(no erase) = {stats['p_no_erase']:.3f}\nmean = {stats['mean']:.3f}\nmedian = {stats['median']:.3f}",
        transform=ax.transAxes, ha="right", va="top", fontsize=9,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
    )
    fig.text(0.01, 0.01, params, fontsize=6, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def erased_fraction(args) -> list[dict]:
    """`erased-fraction`: histogram of the erased fraction for every registered eraser.

    Draws ``--draws`` masks per eraser (default parameters; erasers that need a CAM get a
    synthetic Gaussian-blob CAM), in chunks, and writes figures/erased_fraction_<name>.png
    and erased_fraction.md under ``--out``. New plugins appear without code changes.
    """
    from tqdm import tqdm

    import plugins

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    size, pixels = args.size, args.size * args.size
    names = args.erasers or plugins.available()
    images = torch.zeros(1, 3, size, size).expand(args.chunk, 3, size, size)  # content unused
    rows = []
    with tqdm(total=args.draws * len(names), unit="mask", unit_scale=True, desc="erased-fraction") as bar:
        for name in names:
            eraser = plugins.build(name)
            generator = torch.Generator().manual_seed(args.seed)
            counts = np.zeros(pixels + 1, dtype=np.int64)
            start = time.perf_counter()
            for done in range(0, args.draws, args.chunk):
                n = min(args.chunk, args.draws - done)
                cam = synthetic_cam(n, size, generator=generator) if eraser.needs_cam else None
                mask = eraser(images[:n], cam=cam, generator=generator)
                counts += np.bincount(count_true(mask).numpy(), minlength=pixels + 1)
                bar.update(n)
            seconds = time.perf_counter() - start
            stats = erased_fraction_stats(counts, pixels)
            params = ", ".join(f"{k}={v}" for k, v in eraser.params().items())
            _plot_erased_fraction(name, counts, pixels, stats, out / "figures" / f"erased_fraction_{name}.png", params)
            rows.append({"eraser": name, "params": params, "seconds": seconds, **stats})
    table = _erased_fraction_table(rows, size, args.seed)
    atomic_write(out / "erased_fraction.md", table)  # a leaderboard file: atomic, mode 0644
    print(table)
    return rows


def _erased_fraction_table(rows: list[dict], size: int, seed: int) -> str:
    lines = [
        "# Erased fraction per eraser",
        "",
        f"`python -m benchmark.figures erased-fraction`: {size}x{size} images, default parameters,",
        f"seed {seed}; CAM erasing on a synthetic Gaussian-blob CAM. Thesis Figures 10-12;",
        "histograms in `figures/erased_fraction_<eraser>.png`. Fractions of the whole image,",
        "over all draws (P(no erase) included); seconds = mask drawing on the CPU.",
        "",
        "| eraser | mean | Q1 | median | Q3 | P(no erase) | draws | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['eraser']} | {r['mean']:.4f} | {r['q1']:.4f} | {r['median']:.4f} | {r['q3']:.4f} "
            f"| {r['p_no_erase']:.4f} | {r['draws']:,} | {r['seconds']:.1f} |"
        )
    lines += ["", "Parameters:", ""] + [f"- `{r['eraser']}`: {r['params']}" for r in rows]
    return "\n".join(lines) + "\n"


def _register_erased_fraction(sub) -> None:
    p = sub.add_parser("erased-fraction", help="erased-fraction histograms of every eraser (thesis Figs. 10-12)")
    p.add_argument("--draws", type=int, default=2_500_000, help="masks per eraser (thesis: 2,500,000)")
    p.add_argument("--out", default="leaderboards", help="writes OUT/figures/*.png and OUT/erased_fraction.md")
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--chunk", type=int, default=50_000, help="masks drawn per batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--erasers", nargs="+", default=None, help="default: every registered eraser")
    # One thread by default: the chunks are memory-bound, and on a small shared machine
    # OpenMP threads that wait on each other made this 2x slower (measured on 2 busy cores).
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=erased_fraction)


# --- cam -------------------------------------------------------------------------------

def cam_examples(model, images, labels, mean, std, out, *, boxes=None, n: int = 8,
                 layer: str | None = None, target: str = "label", threshold: float = 0.4,
                 seed: int = 0):
    """CAM figure (thesis Figs. 7, 9) for any model: one row per image; columns image, CAM
    overlay, CAM box (pixels >= threshold x max, green dashed: ground truth), CAM-erased image.

    images: uint8 (N, 3, H, W); the model sees them normalised with mean/std. Returns the path.
    """
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt
    import torch

    import plugins
    from benchmark import augment
    from benchmark import cam as cams

    device = next(model.parameters()).device
    images, labels = images[:n], labels[:n]
    x = augment.normalize(images.to(device), mean, std)
    cam = cams.LiveCam(model, layer=layer, target=target, input_size=tuple(images.shape[-2:]))(
        x, labels.to(device))
    was_training = model.training
    with torch.no_grad():
        predicted = model.eval()(x).argmax(1).cpu()
    model.train(was_training)
    box = cams.cam_boxes(cam, threshold).cpu()
    peak = cams.peaks(cam).cpu()
    shown = images.float() / 255                                     # display space [0, 1]
    eraser = plugins.build("cam_erasing", b_h=2)
    g = torch.Generator(device=device).manual_seed(seed)
    mask = eraser(shown.to(device), cam=cam, generator=g)
    erased = plugins.fill(shown.to(device), mask, "zero").cpu()
    cam = (cam / cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]).cpu()

    def rect(ax, b, color, style):
        x0, y0, x1, y1 = (float(v) for v in b)
        ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor=color, linewidth=1.5, linestyle=style))

    rows = images.shape[0]
    fig, axes = plt.subplots(rows, 4, figsize=(6.4, 1.7 * rows), dpi=120, squeeze=False)
    titles = ("image", f"Grad-CAM ({target})", f"CAM >= {threshold:g} max (red), truth (green)",
              "cam_erasing (b_h=2)")
    for i in range(rows):
        img = shown[i].permute(1, 2, 0).numpy()
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=7)
        axes[i, 0].imshow(img, interpolation="nearest")
        axes[i, 0].set_ylabel(f"y={int(labels[i])} p={int(predicted[i])}", fontsize=7)
        axes[i, 1].imshow(img, interpolation="nearest")
        axes[i, 1].imshow(cam[i].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[i, 1].plot(float(peak[i, 1]), float(peak[i, 0]), "w+", markersize=6)
        axes[i, 2].imshow(img, interpolation="nearest")
        rect(axes[i, 2], box[i], "red", "-")
        if boxes is not None:
            rect(axes[i, 2], boxes[i], "lime", "--")
        axes[i, 3].imshow(erased[i].permute(1, 2, 0).numpy(), interpolation="nearest")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def cam(args):
    """`cam`: the CAM figure for a checkpoint on a dataset's test split (see cam_examples)."""
    import torch

    from benchmark import checkpoint, data

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.checkpoint:
        model, ckpt = checkpoint.load(args.checkpoint, device)
    else:
        model, ckpt = _fresh_smoke_model(device)
    ds = data.load(args.data, "test")
    boxes = getattr(ds, "boxes", None)
    out = cam_examples(model, ds.images, torch.as_tensor(ds.labels), ckpt["mean"], ckpt["std"],
                       args.out, boxes=None if boxes is None else boxes[:args.n], n=args.n,
                       layer=args.layer, target=args.target)
    print(f"wrote {out}")
    return out


def _fresh_smoke_model(device):
    """No checkpoint given: train the smoke suite's plain ResNet20 (about a minute on 2 CPU cores)."""
    import tempfile

    from benchmark import checkpoint
    from benchmark.config import load_suite
    from benchmark.suite import expand
    from benchmark.train import train_run

    spec = next(r for r in expand(load_suite("smoke")) if r.method.is_plain)
    print(f"no --checkpoint: training {spec.run_id} of the smoke suite ({spec.train.epochs} epochs) ...")
    with tempfile.TemporaryDirectory() as tmp:
        out = train_run(spec, device=device, work_dir=Path(tmp))
        print(f"trained: test error {out['final_test_error']:.2f}%")
        return checkpoint.load(out["checkpoint"], device)


def cam_for_suite(runs, work_dir, out, *, n: int = 8):
    """The CAM figure of a finished suite: the first CAM-erasing run's final model (else the
    first plain run's) on its dataset's test split; written beside the suite's leaderboard."""
    import torch

    from benchmark import checkpoint, data

    order = sorted(runs, key=lambda r: (r.method.is_plain, r.method.mode != "append"))
    for r in order:
        path = Path(work_dir) / f"{r.run_id}.final.pt"
        if path.is_file() and (r.method.mode == "append" or r.method.is_plain):
            break
    else:
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, ckpt = checkpoint.load(path, device)
    ds = data.load(r.data.name, "test", root=r.data.data_dir, **r.data.options)
    return cam_examples(model, ds.images, torch.as_tensor(ds.labels), ckpt["mean"], ckpt["std"], out,
                        boxes=None if ds.boxes is None else ds.boxes[:n], n=n, layer=r.method.cam.layer)


def _register_cam(sub) -> None:
    p = sub.add_parser("cam", help="CAM examples: image, overlay, CAM box, CAM-erased image (PNG)")
    p.add_argument("--checkpoint", help="a checkpoint written by benchmark.checkpoint.save, e.g. "
                   "results/<suite>/checkpoints/<run_id>.final.pt (default: train the smoke suite's plain model)")
    p.add_argument("--data", default="synthetic", help="dataset whose test split is shown")
    p.add_argument("--n", type=int, default=8, help="rows (examples)")
    p.add_argument("--layer", default=None, help="CAM layer (default: the model's cam_layers[0])")
    p.add_argument("--target", default="label", choices=["label", "predicted"])
    p.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    p.add_argument("--out", default="leaderboards/figures/cam_examples.png")
    p.set_defaults(func=cam)


# --- the CLI -----------------------------------------------------------------------------

SUBCOMMANDS = [_register_erased_fraction, _register_cam]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.figures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for register in SUBCOMMANDS:
        register(sub)
    args = parser.parse_args(argv)
    if getattr(args, "draws", 1) < 1 or getattr(args, "chunk", 1) < 1:
        parser.error("--draws and --chunk must be >= 1")
    args.func(args)


if __name__ == "__main__":
    main()

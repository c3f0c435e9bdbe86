"""`python -m benchmark.cam_figures cam`: CAM examples like the thesis's Figures 7 and 9 (PNG).

Stands alone until benchmark/figures.py exists; then `cam` and its registration move there.
"""

from __future__ import annotations

import argparse


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
    model, ckpt = checkpoint.load(args.checkpoint, device)
    ds = data.load(args.data, "test")
    boxes = getattr(ds, "boxes", None)
    out = cam_examples(model, ds.images, torch.as_tensor(ds.labels), ckpt["mean"], ckpt["std"],
                       args.out, boxes=None if boxes is None else boxes[:args.n], n=args.n,
                       layer=args.layer, target=args.target)
    print(f"wrote {out}")
    return out


def _register_cam(sub) -> None:
    p = sub.add_parser("cam", help="CAM examples: image, overlay, CAM box, CAM-erased image (PNG)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by benchmark.checkpoint.save")
    p.add_argument("--data", default="synthetic", help="dataset whose test split is shown")
    p.add_argument("--n", type=int, default=8, help="rows (examples)")
    p.add_argument("--layer", default=None, help="CAM layer (default: the model's cam_layers[0])")
    p.add_argument("--target", default="label", choices=["label", "predicted"])
    p.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    p.add_argument("--out", default="leaderboards/figures/cam_examples.png")
    p.set_defaults(func=cam)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.cam_figures", description=__doc__)
    _register_cam(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

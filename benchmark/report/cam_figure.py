"""The CAM figure (the thesis's Figs. 7 and 9): image, CAM overlay with its peak, the CAM box beside
the true box, and the CAM-erased image; for a checkpoint, or for a finished suite."""

from __future__ import annotations

from pathlib import Path

import torch

import plugins
from benchmark import cam as cams
from benchmark import data
from benchmark.data import augment
from benchmark.fileio import save_figure
from benchmark.models import eval_mode
from benchmark.training import checkpoint

DEFAULT_ERASER = "cam_erasing:b_h=2"


def panels(model, images, labels, mean, std, *, layer=None, target="label", threshold=0.4,
           seed: int = 0, eraser=None, logits=None) -> dict:
    """What the figure shows, computed on the model's device, returned on the CPU.

    eraser: a built `plugins.Eraser` for the last column (default cam_erasing, b_h=2); one
    that needs no CAM is drawn without it. logits: see `benchmark.cam.select_logits`."""
    device = next(model.parameters()).device
    x = augment.normalize(images.to(device), mean, std)
    cam = cams.LiveCam(model, layer=layer, target=target, input_size=tuple(images.shape[-2:]),
                       logits=logits)(x, labels.to(device))
    with cams.plain_context(x), torch.no_grad(), eval_mode(model):
        predicted = cams.select_logits(model(x), x.shape[0], logits).argmax(1).cpu()
    shown = images.float() / 255                                     # display space [0, 1]
    g = torch.Generator(device=device).manual_seed(seed)
    eraser = plugins.build("cam_erasing", b_h=2) if eraser is None else eraser
    mask = eraser(shown.to(device), cam=cam if eraser.needs_cam else None, generator=g)
    return {"shown": shown, "predicted": predicted, "box": cams.cam_boxes(cam, threshold).cpu(),
            "peak": cams.peaks(cam).cpu(),
            "erased": plugins.fill(shown.to(device), mask, "zero").cpu(),
            "cam": (cam / cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]).cpu()}


def _rect(ax, b, color, style):
    import matplotlib.pyplot as plt

    x1, y1, x2, y2 = (float(v) for v in b)  # x2/y2 exclusive, as every box in erasebench
    ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                               edgecolor=color, linewidth=1.5, linestyle=style))


def class_name(index: int, classes=None) -> str:
    """The class's name from `classes` (the dataset's names) when known, else its index."""
    if classes is not None and 0 <= index < len(classes) and str(classes[index]).strip():
        return str(classes[index])
    return str(index)


def _rgb(image):
    """(C, H, W) in [0, 1] -> (H, W, 3) for imshow: a grey image (C = 1) is shown grey, not
    through matplotlib's default colour map."""
    return image.expand(3, -1, -1).permute(1, 2, 0).numpy()


def _draw_row(axes, i: int, p: dict, label: int, truth, classes=None) -> None:
    img = _rgb(p["shown"][i])
    axes[0].imshow(img, interpolation="nearest")
    predicted = int(p["predicted"][i])
    mark = "" if predicted == label else " (wrong)"
    axes[0].set_ylabel(f"true: {class_name(label, classes)}\npredicted: "
                       f"{class_name(predicted, classes)}{mark}", fontsize=6)
    axes[1].imshow(img, interpolation="nearest")
    axes[1].imshow(p["cam"][i].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    axes[1].plot(float(p["peak"][i, 1]), float(p["peak"][i, 0]), "w+", markersize=6)
    axes[2].imshow(img, interpolation="nearest")
    _rect(axes[2], p["box"][i], "red", "-")
    if truth is not None:
        _rect(axes[2], truth, "lime", "--")
    axes[3].imshow(_rgb(p["erased"][i]), interpolation="nearest")


def column_titles(target: str, threshold: float, has_truth: bool, eraser_label: str) -> tuple:
    """The four column titles; the truth box (green) is named only for data with boxes."""
    return ("image", f"Grad-CAM ({target})",
            f"CAM >= {threshold:g} max (red)" + (", truth (green)" if has_truth else ""),
            eraser_label)


def cam_examples(model, images, labels, mean, std, out, *, boxes=None, n: int = 8,
                 layer: str | None = None, target: str = "label", threshold: float = 0.4,
                 seed: int = 0, eraser=None, eraser_label: str | None = None,
                 source: str | None = None, classes=None, logits=None):
    """CAM figure (thesis Figs. 7, 9) for any model: one row per image; columns image, CAM
    overlay, CAM box (pixels >= threshold x max; green dashed: the ground truth box, only
    where `boxes` is given), erased image.

    images: uint8 (N, 3, H, W); the model sees them normalised with mean/std. eraser: a built
    eraser for the last column (default cam_erasing, b_h=2), titled `eraser_label`. source:
    what the figure was drawn from (a checkpoint file, a run id), named in its title.
    classes: the dataset's class names, shown for each row's true and predicted class (the
    index where unknown). Returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    images, labels = images[:n], labels[:n]
    p = panels(model, images, labels, mean, std, layer=layer, target=target,
               threshold=threshold, seed=seed, eraser=eraser, logits=logits)
    rows = images.shape[0]
    fig, axes = plt.subplots(rows, 4, figsize=(6.4, 1.7 * rows), dpi=120, squeeze=False)
    titles = column_titles(target, threshold, boxes is not None,
                           eraser_label or ("cam_erasing (b_h=2)" if eraser is None
                                            else type(eraser).__name__))
    for i in range(rows):
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=7)
        _draw_row(axes[i], i, p, int(labels[i]), None if boxes is None else boxes[i], classes)
    if source:
        fig.suptitle(f"drawn from {source}", fontsize=7)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out)
    plt.close(fig)
    return out


def cam(args):
    """`cam`: the CAM figure for a checkpoint on a dataset's test split (see cam_examples)."""
    from benchmark.eraser_cli import resolve

    if args.checkpoint is None:  # no figure code trains a model: say which command makes one
        raise ValueError("figures cam: --checkpoint PATH is required (a final model checkpoint); "
                         "`erasebench run --suite smoke` writes "
                         "runs/results/smoke/checkpoints/resnet20__plain__s0.final.pt")
    (spec,) = resolve([args.eraser], args.imports)   # one line, exit 2, before any work
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, ckpt = checkpoint.load(args.checkpoint, device)
    ds = data.load(args.data, "test")
    boxes = getattr(ds, "boxes", None)
    out = cam_examples(model, ds.images, torch.as_tensor(ds.labels), ckpt["mean"], ckpt["std"],
                       args.out, boxes=None if boxes is None else boxes[:args.n], n=args.n,
                       layer=args.layer, target=args.target, eraser=spec.eraser,
                       eraser_label=spec.label, source=f"checkpoint {args.checkpoint}",
                       classes=getattr(ds, "classes", None))
    print(f"wrote {out}")
    return out


def cam_for_suite(runs, work_dir, out, *, n: int = 8):
    """The CAM figure of a finished suite: the first CAM-erasing run's final model (else the
    first plain run's) on its dataset's test split; written beside the suite's leaderboard.

    The title names the run and checkpoint file it was drawn from (and says when no CAM run
    had a final model, so the plain model's CAM is shown); the last column shows that run's
    own eraser with its parameters (cam_erasing, b_h=2 for a plain run)."""

    order = sorted(runs, key=lambda r: (r.method.is_plain, r.method.mode != "append"))
    for r in order:
        path = Path(work_dir) / f"{r.run_id}.final.pt"
        if path.is_file() and (r.method.mode == "append" or r.method.is_plain):
            break
    else:
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, ckpt = checkpoint.load(path, device)
    ds = data.load(r.data.name, "test", root=r.data.root, **r.data.options)
    eraser, label = None, "cam_erasing (b_h=2)"
    if not r.method.is_plain:
        eraser = plugins.build(r.method.name, **r.method.params)
        if callable(getattr(eraser, "at_epoch", None)):  # e.g. GridMask's ramp: as it erased
            eraser = eraser.at_epoch(r.train.epochs - 1)  # in the final model's last epoch
        label = r.label
    source = f"run {r.run_id} ({path.name})"
    if r.method.is_plain:
        source += "\nno CAM-erasing run has a final model, so this is the plain model's CAM"
    return cam_examples(model, ds.images, torch.as_tensor(ds.labels), ckpt["mean"], ckpt["std"],
                        out, boxes=None if ds.boxes is None else ds.boxes[:n], n=n,
                        layer=r.method.cam.layer, eraser=eraser, eraser_label=label,
                        source=source, classes=getattr(ds, "classes", None))


def register(sub) -> None:
    from benchmark.eraser_cli import (
        add_import_option,
        device_arg,
        one_line_errors,
        positive_int,
    )

    p = sub.add_parser("cam", help="CAM examples: image, overlay, CAM box, erased image (PNG)")
    p.add_argument("--checkpoint", default=None,
                   help="a model checkpoint, e.g. "
                   "runs/results/smoke/checkpoints/resnet20__plain__s0.final.pt "
                   "(`erasebench run --suite smoke` writes one)")
    p.add_argument("--data", default="synthetic", help="dataset whose test split is shown")
    p.add_argument("--n", type=positive_int, default=8, help="rows (examples)")
    p.add_argument("--layer", default=None, help="CAM layer (default: the model's cam_layers[0])")
    p.add_argument("--target", default="label", choices=["label", "predicted"])
    p.add_argument("--device", type=device_arg, default=None,
                   help="default: cuda when present, else cpu")
    p.add_argument("--eraser", default=DEFAULT_ERASER, metavar="NAME[:key=value,...]",
                   help="the eraser of the last column, with optional parameters (default: "
                   f"{DEFAULT_ERASER})")
    add_import_option(p)
    one_line_errors(p)
    p.add_argument("--out", default="runs/figures/cam_examples.png",
                   help="the PNG to write (default: runs/figures/cam_examples.png, untracked)")
    p.set_defaults(func=cam)

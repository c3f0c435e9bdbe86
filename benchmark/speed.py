"""Throughput benchmarks, as an argparse CLI with one subcommand per measurement.

    python -m benchmark.speed erasers [--batch 512] [--repeats 7]
    python -m benchmark.speed cam [--models resnet20 timm/resnet18]
    python -m benchmark.speed train [--models resnet20 resnet44] [--steps 10]

Adding a benchmark: write ``my_bench(args)`` and ``_register_my_bench(sub)`` (which adds
the subparser and ``set_defaults(func=my_bench)``), and append the latter to SUBCOMMANDS.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["erasers", "main", "median_seconds"]


def median_seconds(fn: Callable[[], object], device: torch.device, *, warmup: int, repeats: int,
                   min_time: float = 0.05) -> float:
    """Median wall time of one ``fn()`` call after ``warmup`` calls.

    Each repeat runs ``fn`` enough times to last about ``min_time`` seconds (calibrated on
    the first call), so sub-millisecond calls are not timed at clock resolution. On CUDA
    the device is synchronised before each clock read.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    inner = max(1, int(min_time / max(time.perf_counter() - start, 1e-9)))
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def erasers(args) -> list[dict]:
    """`erasers`: a batch of 3x32x32 images; every registered eraser (mask, and mask + zero
    fill) beside torchvision's v2.RandomErasing applied image by image and timm's
    RandomErasing on the batch, all in the same run; ratios against the torchvision loop."""
    from timm.data.random_erasing import RandomErasing as TimmRandomErasing
    from torchvision.transforms import v2

    import plugins

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if args.device:
        devices = [torch.device(args.device)]
    rows = []
    for device in devices:
        g = torch.Generator(device=device).manual_seed(0)
        images = torch.randn(args.batch, 3, 32, 32, generator=g, device=device)
        cam = torch.rand(args.batch, 32, 32, generator=g, device=device)

        def timed(fn, repeats=args.repeats, device=device):
            return median_seconds(fn, device, warmup=args.warmup, repeats=repeats)

        # The classic pipeline: one transform call per image (p 0.5, thesis scale and ratio).
        tv = v2.RandomErasing(p=0.5, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=0)
        baseline = timed(lambda tv=tv, images=images: [tv(image) for image in images],
                         repeats=args.baseline_repeats)
        rows.append({"device": device.type, "eraser": "torchvision v2.RandomErasing, per-image loop",
                     "mask": None, "erase": baseline})
        timm_re = TimmRandomErasing(probability=0.5, min_area=0.02, max_area=0.4, min_aspect=0.3,
                                    mode="const", device=device.type)
        # timm erases the batch in place, image by image; erasing zeros again costs the same.
        work = images.clone()
        rows.append({"device": device.type, "eraser": "timm RandomErasing (const), batch",
                     "mask": None, "erase": timed(lambda t=timm_re, work=work: t(work),
                                                  repeats=args.baseline_repeats)})
        for name in plugins.available():
            eraser = plugins.build(name)
            mask_s = timed(lambda e=eraser, images=images, cam=cam, g=g: e(images, cam=cam, generator=g))
            erase_s = timed(lambda e=eraser, images=images, cam=cam, g=g:
                            plugins.fill(images, e(images, cam=cam, generator=g)))
            rows.append({"device": device.type, "eraser": name, "mask": mask_s, "erase": erase_s})
        for row in rows:
            if row["device"] == device.type:
                row["x_torchvision"] = baseline / row["erase"]
                row["x_torchvision_mask"] = None if row["mask"] is None else baseline / row["mask"]
    _print_erasers_table(rows, args.batch)
    return rows


def _print_erasers_table(rows: list[dict], batch: int) -> None:
    print(f"\nbatch {batch} x 3x32x32, torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
          "median of repeats; erase = mask + zero fill (the baselines erase)")
    print("| device | eraser | mask ms | masks/s | x torchvision (mask) | erase ms | x torchvision (erase) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["mask"] is None:
            mask = rate = x_mask = "-"
        else:
            mask, rate = f"{1000 * r['mask']:.3f}", f"{batch / r['mask']:,.0f}"
            x_mask = f"{r['x_torchvision_mask']:.1f}x"
        print(f"| {r['device']} | {r['eraser']} | {mask} | {rate} | {x_mask} "
              f"| {1000 * r['erase']:.3f} | {r['x_torchvision']:.1f}x |")


def _register_erasers(sub) -> None:
    p = sub.add_parser("erasers", help="masks/s of every eraser vs torchvision's per-image loop and timm")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--repeats", type=int, default=7, help="timed repeats for the batched erasers")
    p.add_argument("--baseline-repeats", type=int, default=5, help="timed repeats for the baselines")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default=None, help="one device only (default: cpu, and cuda when present)")
    # 0 keeps torch's default. On a small shared machine, OpenMP threads of batched ops that
    # wait on each other can cost more than they bring; compare with --threads 1.
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.set_defaults(func=erasers)


# --- cam -------------------------------------------------------------------------------

def cam(args) -> list[dict]:
    """`cam`: CAM of a 128-image batch: fast path, forward + fast, generic Grad-CAM, naive per-image loop.

    The naive reference is the tutorial recipe: a Python loop over the images, a forward hook
    and `loss.backward()` on a model copy. Warm-up, then the median of repeats; CUDA synchronised.
    """
    import copy
    import statistics
    import time

    import torch
    import torch.nn.functional as F

    from benchmark import cam as cams
    from benchmark import models

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def median_s(fn, repeats):
        for _ in range(args.warmup):
            fn()
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def measure(name: str) -> list[dict]:
        """One model's four timings (a function, so the timed closures bind its locals)."""
        torch.manual_seed(0)
        model = models.create(name).to(device).eval()
        x = torch.randn(args.batch, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (args.batch,), device=device)
        weight = model.get_classifier().weight
        layer = model.cam_layers[0]
        with torch.no_grad():
            feats = model.forward_features(x)

        def fast():
            return cams.cam_from_features(feats, weight, y, size=(32, 32))

        def forward_fast():
            with torch.no_grad():
                return cams.cam_from_features(model.forward_features(x), weight, y, size=(32, 32))

        def generic():
            return cams.grad_cam(model, x, y)

        ref = copy.deepcopy(model)
        store = {}
        ref.get_submodule(layer).register_forward_hook(lambda _m, _i, out: store.update(out=out))

        def naive():
            maps = []
            for i in range(x.shape[0]):
                ref.zero_grad()
                logits = ref(x[i:i + 1])
                store["out"].retain_grad()
                logits[0, y[i]].backward()
                feat = store["out"]
                w = feat.grad[0].mean(dim=(1, 2))
                m = F.relu((w[:, None, None] * feat[0]).sum(0)).detach()
                maps.append(F.interpolate(m[None, None], size=(32, 32), mode="bilinear",
                                          align_corners=False)[0, 0])
            return torch.stack(maps)

        # The paths agree before they are timed (each map scaled by its max).
        def unit(m):
            return m / m.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]

        agree = max((unit(fast()) - unit(p())).abs().max().item() for p in (generic, naive))
        t_naive = median_s(naive, args.naive_repeats)
        rows = []
        for label, fn in (("fast (from features)", fast), ("forward + fast", forward_fast),
                          ("generic grad_cam", generic), ("naive per-image loop", naive)):
            t = t_naive if fn is naive else median_s(fn, args.repeats)
            rows.append({"model": name, "path": label, "ms": 1e3 * t, "x_naive": t_naive / t,
                         "images_per_s": args.batch / t, "max_diff": agree})
        return rows

    rows = [row for name in args.models for row in measure(name)]
    print(f"CAM of a batch of {args.batch} 3x32x32 images on {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}; "
          f"median of {args.repeats} (naive: {args.naive_repeats}) after {args.warmup} warm-up")
    print("| model | path | ms / batch | images/s | speed-up vs naive |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['path']} | {r['ms']:.3f} | {r['images_per_s']:,.0f} | {r['x_naive']:.1f}x |")
    print("max |difference| of max-normalised maps, fast vs generic / naive: "
          + ", ".join(f"{n}: {d:.1e}" for n, d in dict((r["model"], r["max_diff"]) for r in rows).items()))
    return rows


def _register_cam(sub) -> None:
    p = sub.add_parser("cam", help="CAM cost: fast path vs generic Grad-CAM vs the per-image loop")
    p.add_argument("--models", nargs="+", default=["resnet20", "timm/resnet18"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--naive-repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    p.set_defaults(func=cam)


# --- train ------------------------------------------------------------------------------

TRAIN_KINDS = {"plain": "plain", "cam-append": "cam_erasing"}


class _ClassicSet(torch.utils.data.Dataset):
    """CIFAR-shaped images as PIL, through per-image torchvision transforms (the classic input)."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def _classic_seconds(model_name: str, kind: str, device, args) -> float:
    """(a): a torchvision Dataset with per-image PIL transforms and per-image RandomErasing, a
    DataLoader with workers, an eager fp32 step. The CAM-append row feeds the same loader's
    batches to the eager append step (the CAM needs the model, so it cannot be per-image)."""
    import numpy as np
    import torch.nn.functional as F
    from torchvision import transforms as T

    import plugins
    from benchmark import cam, models

    steps = args.warmup + args.steps
    rng = np.random.default_rng(0)
    n = args.batch * (steps + 1)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    tf = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
          T.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))]
    if kind == "plain":
        tf.append(T.RandomErasing(p=0.5, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=0))
    loader = torch.utils.data.DataLoader(
        _ClassicSet(images, labels, T.Compose(tf)), batch_size=args.batch, shuffle=True,
        num_workers=args.workers, drop_last=True, pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0)
    torch.manual_seed(0)
    model = models.create(model_name).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    eraser = plugins.build("cam_erasing")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = None
    for i, (x, y) in enumerate(loader):
        if i == args.warmup:
            sync()
            t0 = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if kind == "plain":
            loss = F.cross_entropy(model(x), y)
        else:
            with torch.no_grad():
                feats = model.forward_features(x)
            cmap = cam.cam_from_features(feats, model.fc.weight, y, size=(32, 32))
            xe = plugins.fill(x, eraser(x, cam=cmap))
            loss = F.cross_entropy(model(torch.cat([x, xe])), torch.cat([y, y]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    return (time.perf_counter() - t0) / args.steps


def _pack_seconds(model_name: str, kind: str, k: int, graphs: str, device, args) -> float:
    """Seconds per step of a pack of k runs of one step kind, via the runner's own trainer."""
    from benchmark import cost
    from benchmark.config import parse_suite
    from benchmark.suite import expand

    method = TRAIN_KINDS[kind]
    entry = method if method == "plain" else {"name": method, "warmup_epochs": 0}
    suite = parse_suite({"name": "speed", "data": {"name": "cifar10"},
                         "train": {"epochs": 1, "batch_size": args.batch, "milestones": [1],
                                   "graphs": graphs},
                         "models": [model_name], "seeds": list(range(k)), "methods": [entry]})
    specs = expand(suite)
    precision = "bf16" if device.type == "cuda" else "no"
    rates = cost.calibrate(specs, device, (50_000, 10_000, 10, False), precision,
                           steps_only=True, timed_steps=args.steps)
    if graphs == "on" and not rates["graphs"]:
        raise RuntimeError(f"{model_name} {kind}: the step was not captured")
    return rates["plain" if kind == "plain" else "append"]


def train(args) -> list[dict]:
    """`train`: images/s of one training step along the paths (a) to (d), for resnet20/44 and
    the plain and CAM-append steps, as ratios to (a), all in this one process."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    args.steps = args.steps or (20 if cuda else 3)
    rows = []
    for model_name in args.models:
        for kind in ("plain", "cam-append"):
            images = args.batch * (1 if kind == "plain" else 2)
            base = _classic_seconds(model_name, kind, device, args)
            paths = [("(a) classic DataLoader, per-image transforms, fp32", 1, base),
                     ("(b) eager, on the device", 1, _pack_seconds(model_name, kind, 1, "off",
                                                                   device, args))]
            if cuda:
                paths.append(("(c) graphed", 1, _pack_seconds(model_name, kind, 1, "on", device,
                                                              args)))
                for k in args.stack:
                    paths.append((f"(d) graphed + stacked, K = {k}", k,
                                  _pack_seconds(model_name, kind, k, "on", device, args)))
            else:
                paths += [("(c) graphed", 1, None)] + [
                    (f"(d) graphed + stacked, K = {k}", k, None) for k in args.stack]
            for path, k, sec in paths:
                rows.append({"model": model_name, "step": kind, "path": path, "k": k,
                             "ms_per_step": None if sec is None else 1e3 * sec,
                             "images_per_s": None if sec is None else k * images / sec,
                             "x_classic": None if sec is None else k * base / sec})
            print(f"measured {model_name} {kind}", flush=True)
    text = _train_table(rows, device, args)
    print(text)
    if args.out:
        from benchmark.fileio import atomic_write

        atomic_write(args.out, text)
        print(f"wrote {args.out}")
    return rows


def _train_table(rows, device, args) -> str:
    import platform
    import shlex
    import sys

    import torchvision

    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    out = ["# Training-step speed", "",
           f"Generated by `{shlex.join(['python', '-m', 'benchmark.speed', *sys.argv[1:]])}`; "
           "do not edit by hand.", "",
           f"Device: {name} · torch {torch.__version__} · torchvision {torchvision.__version__} "
           f"· Python {platform.python_version()} · batch {args.batch} · "
           f"{'bf16 autocast for (b)-(d)' if cuda else 'fp32'} · the mean of "
           f"{args.steps} timed steps after warm-up (and, for (c) and (d), the capture).", "",
           "(a) is the classic pipeline: a torchvision Dataset with per-image PIL transforms "
           "(crop, flip, normalise; per-image RandomErasing for the plain step), a DataLoader "
           f"with {args.workers} workers, eager fp32. (b) is the runner's eager step with the "
           "data on the device. (c) captures the whole step in one CUDA graph. (d) stacks K "
           "runs in one grouped network, graphed; its images/s are the K runs' total. The "
           "CAM-append step trains 128 originals + 128 CAM-erased copies.", "",
           "| model | step | path | ms / step | images/s | x (a) |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r["ms_per_step"] is None:
            out.append(f"| {r['model']} | {r['step']} | {r['path']} | — | — | — |")
        else:
            out.append(f"| {r['model']} | {r['step']} | {r['path']} | {r['ms_per_step']:.2f} "
                       f"| {r['images_per_s']:,.0f} | {r['x_classic']:.1f}x |")
    if not cuda:
        out += ["", "Paths (c) and (d) are empty: CUDA graphs need a GPU, and this device is a "
                "CPU (where stacking gains nothing either)."]
    out += ["", *_targets(rows)]
    return "\n".join(out) + "\n"


def _targets(rows) -> list[str]:
    """The issue's targets, checked against this table (where the paths were measured)."""
    def ms(model, step, prefix):
        for r in rows:
            if r["model"] == model and r["step"] == step and r["path"].startswith(prefix):
                return r
        return None

    lines = ["## Targets (ResNet20, batch 128)", ""]
    g = ms("resnet20", "plain", "(c)")
    s16 = ms("resnet20", "plain", "(d) graphed + stacked, K = 16")
    if g and g["ms_per_step"] is not None:
        lines.append(f"- graphed vs (a): {g['x_classic']:.1f}x (target: at least 5x)")
        if s16 and s16["ms_per_step"] is not None:
            lines.append(f"- stacked K = 16 vs one graphed run: "
                         f"{s16['images_per_s'] / g['images_per_s']:.2f}x (target: at least 2.5x)")
        path = "(c)"
    else:
        lines.append("- graphed and stacked targets: not measured (no CUDA device)")
        path = "(b)"
    p, a = ms("resnet20", "plain", path), ms("resnet20", "cam-append", path)
    if p and a and p["ms_per_step"] and a["ms_per_step"]:
        lines.append(f"- a CAM-append step costs {a['ms_per_step'] / p['ms_per_step']:.2f}x a plain "
                     f"step on path {path} (target: at most 2.3x)")
    return lines


def _register_train(sub) -> None:
    p = sub.add_parser("train", help="training-step images/s: classic vs eager vs graphed vs stacked")
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet44"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per path (default: 20 on CUDA, 3 on the CPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of path (a)")
    p.add_argument("--stack", type=int, nargs="+", default=[4, 8, 16], help="K of path (d)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="DataLoader workers of path (a)")
    p.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default="leaderboards/speed.md", help="the markdown table ('' : none)")
    p.set_defaults(func=train)


# --- the CLI -----------------------------------------------------------------------------

SUBCOMMANDS = [_register_erasers, _register_cam, _register_train]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for register in SUBCOMMANDS:
        register(sub)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

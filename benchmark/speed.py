"""Throughput benchmarks, as an argparse CLI with one subcommand per measurement.

    python -m benchmark.speed erasers [--batch 512] [--repeats 7]

Adding a benchmark: write ``my_bench(args)`` and ``_register_my_bench(sub)`` (which adds
the subparser and ``set_defaults(func=my_bench)``), and append the latter to SUBCOMMANDS.
"""

from __future__ import annotations

import argparse
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


# --- the CLI -----------------------------------------------------------------------------

SUBCOMMANDS = [_register_erasers, _register_cam]


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

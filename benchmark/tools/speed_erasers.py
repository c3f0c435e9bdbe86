"""`erasebench speed erasers`: masks/s of every registered eraser beside torchvision's per-image
v2.RandomErasing loop and timm's batch RandomErasing, all in one process, as ratios."""

from __future__ import annotations

import torch

from benchmark.eraser_cli import add_eraser_options, device_arg, nonnegative_int, positive_int
from benchmark.timing import per_call


def _baselines(images, device, timed) -> list[dict]:
    """torchvision one image at a time (thesis scale and ratio, p 0.5), timm on the batch."""
    from timm.data.random_erasing import RandomErasing as TimmRandomErasing
    from torchvision.transforms import v2

    tv = v2.RandomErasing(p=0.5, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=0)
    timm_re = TimmRandomErasing(probability=0.5, min_area=0.02, max_area=0.4, min_aspect=0.3,
                                mode="const", device=device.type)
    work = images.clone()  # timm erases in place; erasing zeros again costs the same
    return [{"device": device.type, "eraser": "torchvision v2.RandomErasing, per-image loop",
             "mask": None, "erase": timed(lambda: [tv(image) for image in images], True)},
            {"device": device.type, "eraser": "timm RandomErasing (const), batch",
             "mask": None, "erase": timed(lambda: timm_re(work), True)}]


def _on(device, args, specs) -> list[dict]:
    import plugins

    g = torch.Generator(device=device).manual_seed(0)
    images = torch.randn(args.batch, 3, 32, 32, generator=g, device=device)
    cam = torch.rand(args.batch, 32, 32, generator=g, device=device)

    def timed(fn, baseline=False):
        return per_call(fn, device, warmup=args.warmup, min_time=0.05,
                        repeats=args.baseline_repeats if baseline else args.repeats)

    rows = _baselines(images, device, timed)
    for spec in specs:
        e = spec.eraser  # built and checked by `resolve`, a ramp's eraser as at its end
        rows.append({"device": device.type, "eraser": spec.label,
                     "mask": timed(lambda e=e: e(images, cam=cam, generator=g)),
                     "erase": timed(lambda e=e: plugins.fill(images, e(images, cam=cam,
                                                                      generator=g)))})
    base = rows[0]["erase"]
    for row in rows:
        row["x_torchvision"] = base / row["erase"]
        row["x_torchvision_mask"] = None if row["mask"] is None else base / row["mask"]
    return rows


def erasers(args) -> list[dict]:
    """`speed erasers`: the named erasers (`--erasers NAME[:key=value,...]`, default every
    registered one; `--import FILE.py` adds your own), all checked before any timing."""
    from benchmark.eraser_cli import resolve

    specs = resolve(args.erasers, args.imports)   # one line, exit 2, before any work
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = [r for d in ([torch.device(args.device)] if args.device else devices)
            for r in _on(d, args, specs)]
    print(f"\nbatch {args.batch} x 3x32x32, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads; median of repeats; erase = mask + zero fill "
          "(the baselines erase)")
    print("| device | eraser | mask ms | masks/s | x torchvision (mask) | erase ms | "
          "x torchvision (erase) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mask = rate = x_mask = "-"
        if r["mask"] is not None:
            mask, rate = f"{1000 * r['mask']:.3f}", f"{args.batch / r['mask']:,.0f}"
            x_mask = f"{r['x_torchvision_mask']:.1f}x"
        print(f"| {r['device']} | {r['eraser']} | {mask} | {rate} | {x_mask} "
              f"| {1000 * r['erase']:.3f} | {r['x_torchvision']:.1f}x |")
    return rows


def register(sub) -> None:
    p = sub.add_parser("erasers", help="masks/s of every eraser vs torchvision's per-image loop "
                       "and timm")
    p.add_argument("--batch", type=positive_int, default=512)
    p.add_argument("--repeats", type=positive_int, default=7,
                   help="timed repeats for the batched erasers")
    p.add_argument("--baseline-repeats", type=positive_int, default=5,
                   help="timed repeats, baselines")
    p.add_argument("--warmup", type=nonnegative_int, default=3)
    p.add_argument("--device", type=device_arg, default=None,
                   help="one device only (default: cpu, and cuda)")
    # 0 keeps torch's default. On a small shared machine, OpenMP threads of batched ops that
    # wait on each other can cost more than they bring; compare with --threads 1.
    add_eraser_options(p, threads=0, threads_help="torch CPU threads (0: torch's default)")
    p.set_defaults(func=erasers)

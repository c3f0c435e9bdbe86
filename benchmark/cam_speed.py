"""`python -m benchmark.cam_speed`: what a CAM costs, fast path vs generic Grad-CAM vs the per-image loop.

Stands alone until benchmark/speed.py exists; then `cam` and its registration move there.
"""

from __future__ import annotations

import argparse


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.cam_speed", description=__doc__)
    _register_cam(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

"""`erasebench speed cam`: the CAM of one batch along four paths: the free path from features the
training forward already has, a forward plus that, generic Grad-CAM, and the tutorial's naive
per-image loop (a forward hook and `backward()` on a model copy, one image at a time)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from benchmark import cam as cams
from benchmark import models
from benchmark.eraser_cli import device_arg, one_line_errors
from benchmark.timing import per_call


def naive_loop(model, layer: str):
    """The per-image reference: returns f(x, y) -> (B, H, W) CAMs."""
    ref = copy.deepcopy(model)
    store = {}
    ref.get_submodule(layer).register_forward_hook(lambda _m, _i, out: store.update(out=out))

    def run(x, y):
        maps = []
        for i in range(x.shape[0]):
            ref.zero_grad()
            logits = ref(x[i:i + 1])
            store["out"].retain_grad()
            logits[0, y[i]].backward()
            feat = store["out"]
            m = F.relu((feat.grad[0].mean(dim=(1, 2))[:, None, None] * feat[0]).sum(0)).detach()
            maps.append(F.interpolate(m[None, None], size=x.shape[-2:], mode="bilinear",
                                      align_corners=False)[0, 0])
        return torch.stack(maps)
    return run


def _paths(model, x, y) -> dict:
    weight = model.get_classifier().weight
    with torch.no_grad():
        feats = model.forward_features(x)

    def forward_fast():
        with torch.no_grad():
            return cams.cam_from_features(model.forward_features(x), weight, y, size=(32, 32))

    naive = naive_loop(model, model.cam_layers[0])
    return {"fast (from features)": lambda: cams.cam_from_features(feats, weight, y, size=(32, 32)),
            "forward + fast": forward_fast, "generic grad_cam": lambda: cams.grad_cam(model, x, y),
            "naive per-image loop": lambda: naive(x, y)}


def measure(name: str, device, args) -> list[dict]:
    """One model's four timings, after checking that the paths agree (maps scaled by their max)."""
    torch.manual_seed(0)
    model = models.create(name).to(device).eval()
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    paths = _paths(model, x, y)

    def unit(m):
        return m / m.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]

    fast = unit(paths["fast (from features)"]())
    agree = max((fast - unit(paths[p]())).abs().max().item()
                for p in ("generic grad_cam", "naive per-image loop"))
    times = {label: per_call(fn, device, warmup=args.warmup, repeats=args.naive_repeats
                             if label.startswith("naive") else args.repeats)
             for label, fn in paths.items()}
    naive = times["naive per-image loop"]
    return [{"model": name, "path": label, "ms": 1e3 * t, "x_naive": naive / t,
             "images_per_s": args.batch / t, "max_diff": agree} for label, t in times.items()]


def cam(args) -> list[dict]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = [row for name in args.models for row in measure(name, device, args)]
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"CAM of a batch of {args.batch} 3x32x32 images on {device}{gpu}; median of "
          f"{args.repeats} (naive: {args.naive_repeats}) after {args.warmup} warm-up")
    print("| model | path | ms / batch | images/s | speed-up vs naive |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['path']} | {r['ms']:.3f} | {r['images_per_s']:,.0f} "
              f"| {r['x_naive']:.1f}x |")
    diffs = {r["model"]: r["max_diff"] for r in rows}
    print("max |difference| of max-normalised maps, fast vs generic / naive: "
          + ", ".join(f"{n}: {d:.1e}" for n, d in diffs.items()))
    return rows


def register(sub) -> None:
    p = sub.add_parser("cam", help="CAM cost: fast path vs generic Grad-CAM vs the per-image loop")
    p.add_argument("--models", nargs="+", default=["resnet20", "timm/resnet18"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--naive-repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", type=device_arg, default=None,
                   help="cpu, cuda, cuda:N or mps (default: cuda when present, else cpu)")
    one_line_errors(p)  # a bad --device or number: one line, exit 2, before any timing
    p.set_defaults(func=cam)

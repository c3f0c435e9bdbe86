"""Cost estimates for --dry-run: images each run processes, times seconds per image measured here."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

# Train-set sizes of the named datasets, so a dry run needs no files.
KNOWN_SIZES = {"cifar10": (50_000, 10_000, 10), "cifar100": (50_000, 10_000, 100)}


def dataset_sizes(spec) -> tuple[int, int, int]:
    """(n_train, n_test, num_classes) of a run's dataset, loading it only when it is not known."""
    if spec.data.name in KNOWN_SIZES:
        return KNOWN_SIZES[spec.data.name]
    from benchmark import data

    if spec.data.name == "synthetic":  # sizes are options; read the loader's defaults, generate nothing
        import inspect

        from benchmark import synthetic

        defaults = {k: p.default for k, p in inspect.signature(data._load_synthetic).parameters.items()}
        opts = {**defaults, **spec.data.options}
        return opts["n_train"], opts["n_test"], len(synthetic.CLASSES)

    kw = dict(data_dir=spec.data.data_dir, **spec.data.options)
    tr, te = data.load(spec.data.name, "train", **kw), data.load(spec.data.name, "test", **kw)
    return len(tr.labels), len(te.labels), len(tr.classes)


def seconds_per_image(model_name: str, num_classes: int, batch: int, device, steps: int = 3) -> float:
    """Median time of a plain SGD step divided by the batch size (one warm-up step first)."""
    from benchmark import models

    model = models.create(model_name, num_classes=num_classes).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    times = []
    for _ in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2] / batch


def estimate(runs, device) -> dict[str, dict]:
    """{run_id: {"images": n, "seconds": s}}; eval is counted as a third of a training pass."""
    from benchmark.train import image_passes

    per_image: dict = {}
    out = {}
    for r in runs:
        n_train, n_test, k = dataset_sizes(r)
        key = (r.model, k, r.train.batch_size)
        if key not in per_image:
            per_image[key] = seconds_per_image(r.model, k, r.train.batch_size, torch.device(device))
        images = image_passes(r, n_train)
        seconds = per_image[key] * (images + n_test * r.train.epochs / 3)
        out[r.run_id] = {"images": images, "seconds": seconds}
    return out


def fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.1f}h"

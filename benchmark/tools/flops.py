"""A dry-run's GPU projection off CUDA: the training FLOPs of a plan counted with torch's
FlopCounterMode, and the floor they set on named GPUs at their stated bf16 peak (a projection,
never a measurement of this code)."""

from __future__ import annotations

import torch

from benchmark.tools.data_facts import dataset_facts

# Stated dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from NVIDIA's datasheets: a
# projection's ceiling, not a measurement of this code.
STATED_BF16_TFLOPS = {"H100 SXM": 989.0, "H200 SXM": 989.0, "A100 SXM": 312.0}
_flops_cache: dict = {}


def forward_flops_per_image(model_name: str, num_classes: int,
                            shape: tuple[int, int, int] = (3, 32, 32)) -> int:
    """FLOPs of one image's forward pass (`shape`: channels, height, width), counted by torch's
    FlopCounterMode (matmuls and convolutions; a multiply-add is 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    from benchmark import models

    key = (model_name, num_classes, tuple(shape))
    if key not in _flops_cache:
        model = models.create(model_name, num_classes=num_classes, in_chans=shape[0]).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, *shape))
        _flops_cache[key] = int(counter.get_total_flops())
    return _flops_cache[key]


def counted_flops(runs, est: dict) -> float:
    """Training FLOPs of the runs still to train: 3 forward passes' worth per trained image
    (forward, and a backward of about twice that) plus one per test image per epoch."""
    total = 0.0
    for r in runs:
        e = est[r.run_id]
        if e.get("done"):
            continue
        facts = dataset_facts(r)
        start = r.method.warmup_epochs if r.fork_from else 0
        f = forward_flops_per_image(r.model, facts.classes, facts.shape)
        n_test = facts.n_test
        total += f * (3 * e["images"] + n_test * (r.train.epochs - start))
    return total


def projection(flops: float) -> str:
    """One line: the counted FLOPs and the floor they set on each GPU of STATED_BF16_TFLOPS."""
    from benchmark.tools.cost import fmt_seconds

    def secs(s):
        return f"{s:.2g}s" if s < 10 else fmt_seconds(s)

    floors = ", ".join(f"{name} {secs(flops / (tf * 1e12))}"
                       for name, tf in STATED_BF16_TFLOPS.items())
    return (f"projection (not measured): {flops / 1e12:,.3g} TFLOP counted (FlopCounterMode); "
            f"at the stated bf16 peak that is at least {floors}; small ResNets reach a fraction "
            "of the peak, so expect several times longer: measure with `erasebench speed train` "
            "on that GPU")

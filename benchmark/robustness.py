"""Robustness to occlusion: a trained model's test error on occluded copies of its test set.

The measurement that motivated Random Erasing: Zhong et al. 2017 ("Random Erasing Data
Augmentation", the occlusion experiment on CIFAR-10, their Fig. 5) occlude a random part of each
test image and plot the test error against the occluded share. Here the occluder is one square
per image of area fraction f of the image (f in `FRACTIONS`), side round(sqrt(f H W)) pixels
(at most min(H, W): a larger square is clipped to the image's shorter side), filled like the
run's erasers fill (`plugins.fill`, in normalised space, where "zero" is the dataset's mean
colour; a mixing eraser's "paste" fill has no colour and occludes with "zero", see
`occluder_fill`) and placed three ways:

- ``random``: uniformly at random with the whole square inside the image (Zhong et al.);
- ``box``: centred on the object box (data with boxes only, e.g. the synthetic set; absent,
  not zero, on data without boxes such as CIFAR);
- ``cam_peak``: centred at the model's own CAM peak (`plugins.geometry.peaks`) for the true
  class, from the layer the run's CAM uses (the free fast path where it applies, else Grad-CAM;
  `benchmark.cam.LiveCam`): the most discriminative part, as the model itself sees it.

A centred square that would stick out of the image is moved inside it (its top-left clamped to
[0, H - side] x [0, W - side]), so every occluder covers exactly side^2 pixels and the three
placements differ only in where they are. The random positions (and the noise of a "random" or
"channel" fill) come from `SEED`, fixed and independent of the run's seed: every method and
seed sees the same randomly (and box-) occluded test set (the noise: on the same device type and
evaluation batch size). ``cam_peak`` depends on the model by definition.

Everything is whole-batch tensor ops in eval mode under no_grad (the CAM enables grads only
where Grad-CAM needs them); no per-image Python loop.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Sequence

import torch

from benchmark import cam as cams
from benchmark.data import augment
from benchmark.results.schema import ROBUSTNESS_FRACTIONS, ROBUSTNESS_PLACEMENTS, ROBUSTNESS_SEED
from plugins.fill import fill as fill_images
from plugins.geometry import box_mask, peaks

__all__ = ["FRACTIONS", "PLACEMENTS", "SEED", "side", "squares", "measure", "for_run",
           "for_pack_run"]

# the occluded fractions, the placements and the occluders' seed (the same for every run,
# whatever its own seed): what a record's `robustness` must hold (results.robustness_problem)
FRACTIONS, PLACEMENTS, SEED = ROBUSTNESS_FRACTIONS, ROBUSTNESS_PLACEMENTS, ROBUSTNESS_SEED


def side(fraction: float, size: tuple[int, int]) -> int:
    """The occluder's side in pixels: round(sqrt(fraction H W)), clipped to min(H, W).
    fraction in [0, 1] (ValueError otherwise); 0 gives 0 (no occluder)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r}: the occluded share of the image must be in "
                         "[0, 1]")
    h, w = size
    return min(round(math.sqrt(fraction * h * w)), h, w)


def _clamp_square(top: torch.Tensor, left: torch.Tensor, s: int,
                  size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = size
    return top.clamp(0, h - s), left.clamp(0, w - s)


def squares(placement: str, fraction: float, size: tuple[int, int], *,
            uniform: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
            peak: torch.Tensor | None = None) -> torch.Tensor:
    """Bool (B, 1, H, W) masks of one square per image, side `side(fraction, size)`.

    placement "random": `uniform` float (B, 2) in [0, 1) picks (top, left) uniformly among the
    positions that keep the square inside; "box": centred on `boxes` long (B, 4) (x1, y1, x2, y2,
    x2/y2 exclusive); "cam_peak": centred on the pixel `peak` long (B, 2) (row, col). Centred
    squares are moved inside the image where they would stick out."""
    h, w = size
    s = side(fraction, size)
    if placement == "random":
        if uniform is None:
            raise ValueError("placement 'random' needs uniform=(B, 2) draws in [0, 1)")
        top = (uniform[:, 0] * (h - s + 1)).long().clamp(max=h - s)
        left = (uniform[:, 1] * (w - s + 1)).long().clamp(max=w - s)
    elif placement == "box":
        if boxes is None:
            raise ValueError("placement 'box' needs boxes=(B, 4) (x1, y1, x2, y2)")
        b = boxes.long()
        # centre (y1 + y2) / 2 in continuous coordinates: top = floor(centre - s / 2)
        top, left = (b[:, 1] + b[:, 3] - s).div(2, rounding_mode="floor"), \
            (b[:, 0] + b[:, 2] - s).div(2, rounding_mode="floor")
        top, left = _clamp_square(top, left, s, size)
    elif placement == "cam_peak":
        if peak is None:
            raise ValueError("placement 'cam_peak' needs peak=(B, 2) (row, col)")
        p = peak.long()
        # the peak pixel's centre is (row + 0.5, col + 0.5)
        top, left = (2 * p[:, 0] + 1 - s).div(2, rounding_mode="floor"), \
            (2 * p[:, 1] + 1 - s).div(2, rounding_mode="floor")
        top, left = _clamp_square(top, left, s, size)
    else:
        raise ValueError(f"placement={placement!r}: allowed {', '.join(PLACEMENTS)}")
    n = top.shape[0]
    full = torch.full((n,), s, dtype=torch.long, device=top.device)
    return box_mask(top, left, full, full, size)


@torch.no_grad()
def measure(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
            boxes: torch.Tensor | None = None, *, mean: Sequence[float], std: Sequence[float],
            fill: str = "zero", fractions: Sequence[float] = FRACTIONS, seed: int = SEED,
            batch_size: int = 1000, cam_layer: str | None = None, dtype=torch.float32,
            autocast=contextlib.nullcontext, progress=None) -> dict:
    """Test error (%) of `model` on occluded copies of a test set, per placement and fraction.

    images: uint8 (N, C, H, W) (any device; batches are moved to the model's device), labels
    long (N,), boxes long (N, 4) or None (then no "box" placement); mean/std: the per-channel
    statistics the model was trained with (images are normalised, then occluded, as in
    training). fill: a `plugins.fill` mode, applied in normalised space ("mean" is 0 there).
    progress: an optional callable(done_images) after each batch. The model is put in eval mode.

    Returns {"fractions": [...], "random": [err % per fraction], "box": [...] (only with boxes),
    "cam_peak": [...], "seed", "n_test", "fill", "cam_target": "label", "cam_layer"}.
    """
    model.eval()
    device = next(model.parameters()).device
    n, _, h, w = images.shape
    size = (h, w)
    fractions = [float(f) for f in fractions]
    for f in fractions:
        side(f, size)  # one-line error for a fraction outside [0, 1]
    placements = ["random", "cam_peak"] if boxes is None else ["random", "box", "cam_peak"]
    # Positions for the whole test set at once, on the CPU: independent of device and batch size.
    cpu = torch.Generator().manual_seed(seed)
    uniform = torch.rand(len(fractions), n, 2, generator=cpu)
    noise = torch.Generator(device=device).manual_seed(seed)
    live = cams.LiveCam(model, layer=cam_layer, target="label", input_size=size)
    wrong = {p: torch.zeros(len(fractions), dtype=torch.long, device=device) for p in placements}
    start = 0
    for x, y in augment.eval_batches(images, labels, batch_size=batch_size, mean=mean, std=std,
                                     device=device):
        x, b = x.to(dtype), len(y)
        box = None if boxes is None else boxes[start:start + b].to(device)
        _count_wrong(model, x, y, wrong, fractions, uniform=uniform[:, start:start + b].to(device),
                     boxes=box, peak=peaks(live(x, y)), fill=fill, noise=noise, autocast=autocast)
        start += b
        if progress is not None:
            progress(b)
    out = {"fractions": fractions, **{p: [100.0 * c / n for c in wrong[p].tolist()]
                                      for p in placements}}
    out.update(seed=int(seed), n_test=int(n), fill=fill, cam_target="label", cam_layer=cam_layer)
    return out


def _count_wrong(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 wrong: dict[str, torch.Tensor], fractions: list[float], *, uniform: torch.Tensor,
                 boxes: torch.Tensor | None, peak: torch.Tensor, fill: str,
                 noise: torch.Generator, autocast) -> None:
    """Add to wrong[placement][i] the misclassified images of one normalised batch x (B, C, H, W)
    (labels y (B,)) occluded at fractions[i], for each placement in `wrong`. uniform: float
    (len(fractions), B, 2), the batch's random positions; boxes long (B, 4) or None; peak long
    (B, 2), the CAM peaks. Occluders are filled in the order fraction, then placement."""
    size = (x.shape[-2], x.shape[-1])
    zero = torch.zeros(x.shape[1], device=x.device, dtype=x.dtype)
    for i, f in enumerate(fractions):
        for p in wrong:
            mask = squares(p, f, size, uniform=uniform[i], boxes=boxes, peak=peak)
            occluded = fill_images(x, mask, fill, mean=zero, generator=noise)
            with autocast():
                logits = model(occluded)
            wrong[p][i] += (logits.argmax(1) != y).sum()


def occluder_fill(fill: str | None) -> str:
    """The occluders' fill for a run whose erasers fill with `fill`: the same mode, except that a
    mixing eraser's "paste" (and no fill at all) occlude with "zero"."""
    from plugins.mixing import PASTE

    return "zero" if fill in (None, PASTE) else fill


def for_run(spec, model: torch.nn.Module, rd, *, dtype=torch.float32,
            autocast=contextlib.nullcontext) -> dict | None:
    """The robustness of a finished run's final `model` on its test set (`rd`: the run's
    `training.pack.RunData`), for its record; None, with a one-line warning, when it cannot be
    measured (the run's result is kept and `erasebench evaluate` can add it later from the final
    checkpoint). A mixing eraser's fill ("paste") has no occluder colour: its runs are
    occluded with "zero" (the dataset's mean colour), as plain runs are by default."""
    try:
        return measure(model, rd.test_images, rd.test_labels, rd.test_boxes, mean=rd.mean,
                       std=rd.std, fill=occluder_fill(spec.method.fill),
                       batch_size=spec.train.eval_batch_size,
                       cam_layer=spec.method.cam.layer, dtype=dtype, autocast=autocast)
    except Exception as e:  # noqa: BLE001 - a measurement must never cost a trained run
        print(f"warning: {spec.run_id}: robustness to occlusion not measured "
              f"({type(e).__name__}: {e}); run `erasebench evaluate --suite {spec.suite}` to add "
              "it", file=sys.stderr)
        return None


def for_pack_run(trainer, k: int) -> dict | None:
    """`for_run` of run k of a trained pack (`training.pack.PackTrainer`)."""
    return for_run(trainer.specs[k], trainer.single_model(k), trainer.rd, dtype=trainer.dtype,
                   autocast=trainer.autocast)

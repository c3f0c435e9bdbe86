"""KeepAugment's Cutout (Gong et al. 2021): Cutout that refuses boxes over the salient region."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plugins.base import (
    Eraser,
    apply_coin,
    check_choice,
    check_int,
    check_number,
    check_probability,
)
from plugins.cutout import draw_cutout_boxes
from plugins.geometry import box_mask
from plugins.registry import register

__all__ = ["KeepCutout", "normalised_saliency"]

FALLBACKS = ("none", "least_salient")


def normalised_saliency(cam: torch.Tensor) -> torch.Tensor:
    """Per-image min-max normalisation of a (B, H, W) map to [0, 1], as KeepAugment does
    (``slc -= min; slc /= max``). A constant map (no evidence) becomes all zeros instead of
    the 0 / 0 = NaN of the public code (with which its loop never ends)."""
    flat = cam.flatten(1)
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    out = torch.where(span > 0, (flat - low) / span.clamp(min=torch.finfo(cam.dtype).tiny), 0.0)
    return out.view_as(cam)


@register("keep_cutout")
class KeepCutout(Eraser):
    """A Cutout square (``size``, centre uniform, clipped at the border, exactly ``cutout``)
    that is only accepted where the mean normalised saliency inside it is below ``threshold``.

    Paper: Gong et al. 2021, "KeepAugment" (CVPR), selective cut. Code: no official release;
    the public re-implementation cjf8899/KeepAugment_Pytorch ``util/keep_cutout.py`` draws a
    Cutout box, computes the mean of the min-max-normalised saliency inside it and redraws
    while it is not ``< 0.6``, without bound. Readings chosen here:

    - Saliency is the run's own CAM (``cam``, float (B, H, W), the free path the runner
      already has), min-max normalised per image (:func:`normalised_saliency`). The paper's
      saliency is the input gradient of the top logit (|d score / d x| maxed over
      channels); that would be a later option (it needs a backward pass per step).
    - Accept when mean < ``threshold`` (strict, as the public code; default 0.6). An empty
      box (``size`` 1) has no mean and is never accepted (numpy's mean is NaN there).
    - The unbounded loop becomes ``max_attempts`` candidate boxes drawn at once per image;
      the first accepted one is kept. When none is accepted: ``fallback="none"`` (default)
      leaves the image unerased, so a salient box is never erased;
      ``"least_salient"`` erases the candidate with the lowest mean saliency.
    - ``p`` (default 1.0, as Cutout) is a per-image coin before everything else.

    Returns bool (B, 1, H, W), True = erase. No host sync: box means come from an integral
    image of the saliency (four gathers per candidate).
    """

    needs_cam = True

    def __init__(
        self,
        size: int = 16,
        threshold: float = 0.6,
        max_attempts: int = 10,
        fallback: str = "none",
        p: float = 1.0,
    ):
        owner = type(self).__name__
        self.size = check_int(owner, "size", size, 1)
        self.threshold = check_number(owner, "threshold", threshold, 0.0, 1.0)
        self.max_attempts = check_int(owner, "max_attempts", max_attempts, 1)
        self.fallback = check_choice(owner, "fallback", fallback, FALLBACKS)
        self.p = check_probability(owner, "p", p)

    def forward(self, images, *, cam=None, generator=None):
        batch, _, height, width = images.shape
        device = images.device
        apply = apply_coin(self.p, batch, device, generator=generator)
        y1, y2, x1, x2 = draw_cutout_boxes((batch, self.max_attempts), self.size, height,
                                           width, device=device, generator=generator)
        # Integral image (B, H + 1, W + 1) in float64 so box sums stay exact enough on 1e3 px.
        saliency = normalised_saliency(cam.float()).to(torch.float64)
        integral = F.pad(saliency.cumsum(1).cumsum(2), (1, 0, 1, 0)).flatten(1)
        stride = width + 1

        def at(r, c):
            return integral.gather(1, r * stride + c)

        total = at(y2, x2) - at(y1, x2) - at(y2, x1) + at(y1, x1)  # (B, attempts)
        area = ((y2 - y1) * (x2 - x1)).to(torch.float64)
        mean = torch.where(area > 0, total / area.clamp(min=1.0), float("inf"))
        ok = mean < self.threshold
        if self.fallback == "least_salient":
            pick = torch.where(ok.any(dim=1, keepdim=True),
                               ok.to(torch.uint8).argmax(dim=1, keepdim=True),
                               mean.argmin(dim=1, keepdim=True))
            keep = apply & (area.gather(1, pick).squeeze(1) > 0)
        else:
            pick = ok.to(torch.uint8).argmax(dim=1, keepdim=True)
            keep = apply & ok.gather(1, pick).squeeze(1)

        def first(t):
            return t.gather(1, pick).squeeze(1)

        top, left = first(y1), first(x1)
        return box_mask(top, left, first(y2) - top, first(x2) - left, (height, width), keep=keep)

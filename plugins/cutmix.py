"""CutMix (Yun et al. 2019): paste a box of another image of the batch, labels mixed by area."""

from __future__ import annotations

from plugins.base import Eraser, apply_coin, check_number, check_probability
from plugins.mixing import cutmix_box_masks, sample_beta, uniform_centres
from plugins.registry import register

__all__ = ["CutMix"]


@register("cutmix")
class CutMix(Eraser):
    """Mask of the box where the partner image is pasted, per image with probability ``p``.

    Official code (clovaai/CutMix-PyTorch ``train.py``, ``rand_bbox``): lam ~ Beta(alpha,
    alpha), cut_rat = sqrt(1 - lam), cut side int(H cut_rat) x int(W cut_rat), centre
    uniform over the pixels, rows clip(cy - cut_h // 2, 0, H) .. clip(cy + cut_h // 2, 0, H)
    (columns likewise): a box near the border is clipped, an odd cut side loses a pixel.
    The label weight is recomputed from the clipped box, lam = 1 - box area / (H W)
    (:func:`plugins.mixing.lam_from_mask`). CIFAR defaults of the official commands:
    alpha (``--beta``) 1.0, p (``--cutmix_prob``) 0.5.

    Reading chosen: the official code draws ONE coin, ONE lam and ONE box per batch (all
    images mixed with the same box, or none); here every image draws its own coin, lam and
    centre (the project's per-image contract, as Random Erasing and Cutout are per image).
    The per-image erased fraction has the same distribution; only the correlation across
    the batch differs. lam is drawn from Beta with the run's ``generator``
    (:func:`plugins.mixing.sample_beta`).

    Shapes: ``images`` float (B, C, H, W) -> bool (B, 1, H, W), True = pasted from the
    partner. ``mixes = True``: the caller draws the partner permutation, pastes and mixes the
    loss (see :mod:`plugins.mixing`).
    """

    mixes = True

    def __init__(self, alpha: float = 1.0, p: float = 0.5):
        owner = type(self).__name__
        self.alpha = check_number(owner, "alpha", alpha, 0.0, 1e6, low_open=True)
        self.p = check_probability(owner, "p", p)

    def forward(self, images, *, cam=None, generator=None):
        batch, _, height, width = images.shape
        device = images.device
        apply = apply_coin(self.p, batch, device, generator=generator)
        lam = sample_beta(self.alpha, (batch,), device=device, generator=generator)
        row, col = self.centres(images, cam, generator)
        return cutmix_box_masks(lam, row, col, (height, width), keep=apply)

    def centres(self, images, cam, generator):
        """The box centres (row, col), long (B,) each: uniform over the pixels (subclasses
        place them elsewhere, e.g. cam_cutmix at the CAM peak)."""
        batch, _, height, width = images.shape
        return uniform_centres(batch, (height, width), images.device, generator=generator)

"""Cutout (DeVries & Taylor 2017): square holes centred anywhere in the image, clipped at the
border."""

from __future__ import annotations

import torch

from plugins.base import (
    Eraser,
    apply_coin,
    check_int,
    check_probability,
    randint_inclusive,
)
from plugins.geometry import outer_and
from plugins.registry import register

__all__ = ["Cutout", "draw_cutout_boxes"]


def draw_cutout_boxes(
    shape: tuple[int, int], size: int, height: int, width: int, *, device, generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cutout's squares, as the official code draws them: long ``shape`` tensors
    ``(y1, y2, x1, x2)``, rows [y1, y2) and columns [x1, x2), for centres (y, x) uniform over
    all pixels (y drawn first, then x, from ``generator``), y1 = clip(y - size//2, 0, H),
    y2 = clip(y + size//2, 0, H), and the same for columns."""
    y = randint_inclusive(torch.full(shape, height - 1, device=device), generator=generator)
    x = randint_inclusive(torch.full(shape, width - 1, device=device), generator=generator)
    half = size // 2
    y1, y2 = (y - half).clamp(0, height), (y + half).clamp(0, height)
    x1, x2 = (x - half).clamp(0, width), (x + half).clamp(0, width)
    return y1, y2, x1, x2


@register("cutout")
class Cutout(Eraser):
    """``holes`` squares of side ``size`` per image, applied with probability ``p``.

    As in the official code (uoguelph-mlrg/Cutout): the centre (y, x) is uniform over all
    pixels, rows y1 = clip(y - size//2, 0, H) to y2 = clip(y + size//2, 0, H) (same for
    columns), so a square near the border is clipped and the erased area varies. Fidelity
    kept on purpose: an odd ``size`` erases (size - 1) x (size - 1) at most, and size 1
    erases nothing. Holes are drawn independently and may overlap. Thesis: size 16, p 1.0.
    """

    def __init__(self, size: int = 16, holes: int = 1, p: float = 1.0):
        owner = type(self).__name__
        self.size = check_int(owner, "size", size, 1)
        self.holes = check_int(owner, "holes", holes, 1)
        self.p = check_probability(owner, "p", p)

    def forward(self, images, *, cam=None, generator=None):
        batch, _, height, width = images.shape
        device = images.device
        apply = apply_coin(self.p, batch, device, generator=generator)
        y1, y2, x1, x2 = draw_cutout_boxes((batch, self.holes), self.size, height, width,
                                           device=device, generator=generator)
        rows = torch.arange(height, device=device)
        cols = torch.arange(width, device=device)
        in_rows = (
            (rows >= y1[..., None]) & (rows < y2[..., None]) & apply[:, None, None]
        )  # (B, holes, H)
        in_cols = (cols >= x1[..., None]) & (cols < x2[..., None])  # (B, holes, W)
        return outer_and(in_rows, in_cols).any(dim=1, keepdim=True)  # union of the holes

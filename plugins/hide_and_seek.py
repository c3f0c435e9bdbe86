"""Hide-and-Seek (Singh & Lee 2017): hide each cell of a fixed grid independently."""

from __future__ import annotations

import torch

from plugins.base import Eraser, apply_coin, check_int, check_probability
from plugins.registry import register

__all__ = ["HideAndSeek"]


@register("hide_and_seek")
class HideAndSeek(Eraser):
    """Grid of ``grid_size``-pixel cells, each hidden with probability ``hide_prob``.

    The image itself is chosen with probability ``p`` (thesis: 8-pixel cells, i.e. a 4x4
    grid on 32x32, hide_prob 0.5, p 0.5). The grid is anchored at (0, 0); when H or W is
    not a multiple of ``grid_size`` the last partial cell is a cell too (as the official
    code's ``min(H, y + grid_size)``).
    """

    def __init__(self, grid_size: int = 8, hide_prob: float = 0.5, p: float = 0.5):
        owner = type(self).__name__
        self.grid_size = check_int(owner, "grid_size", grid_size, 1)
        self.hide_prob = check_probability(owner, "hide_prob", hide_prob)
        self.p = check_probability(owner, "p", p)

    def forward(self, images, *, cam=None, generator=None):
        batch, _, height, width = images.shape
        device = images.device
        apply = apply_coin(self.p, batch, device, generator=generator)
        cells_y = -(-height // self.grid_size)  # ceil division: a partial cell counts
        cells_x = -(-width // self.grid_size)
        hidden = (
            torch.rand(batch, cells_y, cells_x, device=device, generator=generator)
            < self.hide_prob
        )
        hidden &= apply[:, None, None]
        # Blow each cell up to grid_size x grid_size pixels, then cut the partial cells.
        g = self.grid_size
        cells = hidden[:, :, None, :, None].expand(batch, cells_y, g, cells_x, g)
        return cells.reshape(batch, 1, cells_y * g, cells_x * g)[:, :, :height, :width]

"""GridMask (Chen et al. 2020): a regular grid of erased squares with random unit, offset and
rotation per image."""

from __future__ import annotations

import math

import torch

from plugins.base import (
    Eraser,
    apply_coin,
    check_int,
    check_number,
    check_probability,
    randint_inclusive,
)
from plugins.geometry import outer_and
from plugins.registry import register

__all__ = ["GridMask", "grid_masks"]


@register("gridmask")
class GridMask(Eraser):
    """GridMask as the official code draws it (dvlab-research/GridMask
    ``imagenet_grid/utils/grid.py``, class ``Grid``), per image:

    - with probability ``p`` (``prob``): unit d ~ randint(d1, d2), i.e. uniform in
      {d1, ..., d2 - 1} (numpy's ``randint`` excludes d2); band width
      l = ceil(d * ratio) (the official ``self.l = math.ceil(d*self.ratio)``, not round or
      floor: ratio 0.4, d 8 gives l = 4, not 3);
    - offsets st_h, st_w ~ randint(0, d) each; on a square of side hh = ceil(sqrt(H^2 + W^2))
      the rows with (row - st_h) mod d < l and the columns with (col - st_w) mod d < l are
      the bands;
    - angle r ~ randint(0, ``rotate``) whole degrees (``rotate=1``, the default, means no
      rotation; 360 any whole degree); the square is rotated r degrees counter-clockwise
      about its centre as PIL's ``Image.rotate`` (nearest neighbour, pixel centres, outside
      the square = 0), here by inverse-rotating each pixel's coordinates with tensor math;
    - the centre H x W crop of the square is the mask. ``mode=1`` (the paper's GridMask, the
      official default): the bands are KEPT and the squares of side d - l between them are
      erased, so r = l / d is the kept edge ratio and the kept fraction is
      1 - (1 - l/d)^2 (the paper's k = 1 - (1 - r)^2). ``mode=0`` (the code's "revised
      GridMask"): the bands are erased instead.

    ``ratio`` (r = l / d) must leave both a band and a square in every unit: 0 < ratio and
    ceil(d * ratio) < d for every d in [d1, d2) (ratio <= 1 - 1/d1); ratio 0 (no band: mode 1
    erases the whole image) and a band as wide as the unit are each a one-line ``ValueError``.

    Defaults, the paper's CIFAR-10 setting as we read it: d in [24, 33), ratio 0.4, mode 1,
    no rotation, p 0.8. (The official repository's snapshot holds only the ImageNet code:
    d1 96, d2 224, rotate 360, ratio 0.6, mode 1, prob 0.8.)

    Probability ramp (the official ``set_prob(epoch, max_epoch)``: prob = p * min(1, epoch /
    max_epoch), called at the start of every epoch, ImageNet max_epoch 240 of 300):
    ``ramp_epochs=E`` turns it on. ``forward`` stays a pure function of its tensors and the
    generator, so the runner must call ``eraser.at_epoch(epoch)`` (0-based epoch) at the
    start of every epoch and use the eraser it returns for that epoch's steps (a graphed
    step captures it anew when the probability changed); ``prob_at(epoch)`` gives the
    probability alone. Calling an eraser with ``ramp_epochs`` set directly raises.

    Returns bool (B, 1, H, W), True = erase.
    """

    def __init__(
        self,
        d1: int = 24,
        d2: int = 33,
        ratio: float = 0.4,
        rotate: int = 1,
        mode: int = 1,
        p: float = 0.8,
        ramp_epochs: int | None = None,
    ):
        owner = type(self).__name__
        self.d1 = check_int(owner, "d1", d1, 1)
        self.d2 = check_int(owner, "d2", d2, 2)
        if self.d2 <= self.d1:
            raise ValueError(f"{owner}: d2 must be > d1 (d is drawn from [d1, d2)), "
                             f"got d1={d1}, d2={d2}")
        self.ratio = check_number(owner, "ratio", ratio, 0.0, 1.0)
        if self.ratio in (0.0, 1.0):
            what = ("no band: mode 1 erases the whole image, mode 0 nothing" if self.ratio == 0
                    else "the band fills the unit: mode 1 erases nothing, mode 0 the whole image")
            raise ValueError(f"{owner}: ratio must be in (0.0, 1.0), the band's share l / d of a "
                             f"unit (l = ceil(d * ratio)), got {ratio!r} ({what})")
        # Every unit must keep a band and erase a square (the official code draws l =
        # ceil(d * ratio) and does not check): ratio 0 leaves no band (mode 1 erases the whole
        # image), l >= d no square (mode 1 erases nothing, mode 0 the whole image).
        # l < d <=> ratio <= 1 - 1/d, strictest at d1.
        for d in (self.d1, self.d2 - 1):
            if math.ceil(d * self.ratio) >= d:
                most = 1 - 1 / self.d1
                allowed = (f"allowed with d1 {self.d1}: 0 < ratio <= 1 - 1/{self.d1} = {most:.4g}"
                           if self.d1 > 1 else "a unit of d 1 pixel has no room for both: "
                           "use d1 >= 2")
                raise ValueError(
                    f"{owner}: ratio {ratio!r} with d {d} gives a band l = ceil({d} * {ratio!r}) "
                    f"= {math.ceil(d * self.ratio)} >= d, so no square is left between the bands "
                    f"(mode 1 would erase nothing, mode 0 the whole image); {allowed}")
        self.rotate = check_int(owner, "rotate", rotate, 1, 360)
        self.mode = check_int(owner, "mode", mode, 0, 1)
        self.p = check_probability(owner, "p", p)
        self.ramp_epochs = (None if ramp_epochs is None
                            else check_int(owner, "ramp_epochs", ramp_epochs, 1))

    @property
    def depends_on_epoch(self) -> bool:
        """True with a ramp: erase only through ``at_epoch(epoch)``'s eraser."""
        return self.ramp_epochs is not None

    def prob_at(self, epoch: int) -> float:
        """The official ramp: p * min(1, epoch / ramp_epochs); p when there is no ramp."""
        epoch = check_int(type(self).__name__, "epoch", epoch, 0)
        if self.ramp_epochs is None:
            return self.p
        return self.p * min(1.0, epoch / self.ramp_epochs)

    def at_epoch(self, epoch: int) -> GridMask:
        """The eraser to use during ``epoch`` (0-based): the same one with p = prob_at(epoch)
        and no ramp. The runner calls it at the start of every epoch."""
        return type(self)(**{**self.params(), "p": self.prob_at(epoch), "ramp_epochs": None})

    def forward(self, images, *, cam=None, generator=None):
        if self.ramp_epochs is not None:
            raise RuntimeError(
                f"GridMask(ramp_epochs={self.ramp_epochs}): the probability depends on the "
                "epoch; call eraser.at_epoch(epoch) at the start of each epoch and erase with "
                "the eraser it returns"
            )
        batch, _, height, width = images.shape
        device = images.device
        apply = apply_coin(self.p, batch, device, generator=generator)
        span = torch.full((batch,), self.d2 - 1 - self.d1, device=device)
        d = self.d1 + randint_inclusive(span, generator=generator)  # (B,)
        # l = ceil(d * ratio) in float64: the same IEEE product as Python's math.ceil(d*ratio).
        band = torch.ceil(d.to(torch.float64) * self.ratio).to(torch.long)
        start = randint_inclusive(torch.stack((d, d), dim=1) - 1, generator=generator)  # (B, 2)
        angle = None
        if self.rotate > 1:
            angle = randint_inclusive(torch.full((batch,), self.rotate - 1, device=device),
                                      generator=generator)
        return grid_masks(d, band, start, angle, (height, width), mode=self.mode, keep=apply)


def grid_masks(
    d: torch.Tensor,
    band: torch.Tensor,
    start: torch.Tensor,
    angle: torch.Tensor | None,
    size: tuple[int, int],
    *,
    mode: int,
    keep: torch.Tensor,
) -> torch.Tensor:
    """GridMask's mask from its drawn parameters: bool (B, 1, H, W), True = erase.

    ``d``, ``band`` (l) long (B,); ``start`` long (B, 2) = (st_h, st_w); ``angle`` long (B,)
    whole degrees counter-clockwise, or None (no rotation); ``keep`` bool (B,) (False: empty
    mask). The official mask is 1 off the bands, 0 on them and outside the rotated square;
    mode 1 erases where it is 1, mode 0 where it is 0 (see :class:`GridMask`).
    """
    height, width = size
    device = d.device
    hh = math.ceil(math.sqrt(height * height + width * width))
    oy, ox = (hh - height) // 2, (hh - width) // 2
    rows = torch.arange(height, device=device) + oy
    cols = torch.arange(width, device=device) + ox
    d_, band_ = d[:, None], band[:, None]
    if angle is None:
        in_row = torch.remainder(rows - start[:, :1], d_) < band_  # (B, H)
        in_col = torch.remainder(cols - start[:, 1:], d_) < band_  # (B, W)
        if mode == 1:  # erase the squares between the bands
            erase = outer_and(~in_row & keep[:, None], ~in_col)
        else:  # erase the bands
            erase = ~outer_and(~in_row, ~in_col) & keep[:, None, None]
        return erase[:, None]
    # PIL's Image.rotate(r): output pixel centre (x + 0.5, y + 0.5) samples the input at
    # R(-r) about the centre hh / 2, nearest neighbour = floor; outside the square -> 0.
    theta = -torch.deg2rad(angle.to(torch.float32))[:, None, None]
    cos, sin = torch.cos(theta), torch.sin(theta)
    centre = hh / 2.0
    ys = (rows.to(torch.float32) + 0.5 - centre)[None, :, None]
    xs = (cols.to(torch.float32) + 0.5 - centre)[None, None, :]
    col_in = torch.floor(cos * xs + sin * ys + centre).to(torch.long)  # (B, H, W)
    row_in = torch.floor(-sin * xs + cos * ys + centre).to(torch.long)
    inside = (row_in >= 0) & (row_in < hh) & (col_in >= 0) & (col_in < hh)
    d3, band3 = d_[:, :, None], band_[:, :, None]
    in_row = torch.remainder(row_in - start[:, 0, None, None], d3) < band3
    in_col = torch.remainder(col_in - start[:, 1, None, None], d3) < band3
    one = inside & ~in_row & ~in_col  # where the rotated official mask is 1
    erase = one if mode == 1 else ~one
    return (erase & keep[:, None, None])[:, None]

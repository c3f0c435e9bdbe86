"""Random Erasing (Zhong et al. 2017): one rectangle of random area and aspect per image.

The rectangle-size sampler here is shared with CAM erasing, which sizes its rectangle
exactly as Random Erasing does and only places it differently.
"""

from __future__ import annotations

import math

import torch

from plugins.base import (
    Eraser,
    apply_coin,
    check_choice,
    check_int,
    check_number,
    check_probability,
    randint_inclusive,
)
from plugins.geometry import box_mask
from plugins.registry import register

__all__ = ["RandomErasing", "check_rectangle_args", "draw_rectangles", "sample_rectangle_sizes"]

ASPECTS = ("uniform", "log")
_DEFAULT_ATTEMPTS = {"uniform": 100, "log": 10}


def check_rectangle_args(
    owner: str, sl, sh, r1, aspect: str, max_attempts: int | None
) -> tuple[float, float, float, str, int]:
    """Validate the size hyperparameters; returns them resolved (max_attempts filled in)."""
    sl = check_number(owner, "sl", sl, 0.0, 1.0)
    sh = check_number(owner, "sh", sh, 0.0, 1.0)
    if sl > sh:
        raise ValueError(f"{owner}: sl must be <= sh, got sl={sl} > sh={sh}")
    r1 = check_number(owner, "r1", r1, 0.0, 1.0, low_open=True)
    aspect = check_choice(owner, "aspect", aspect, ASPECTS)
    if max_attempts is None:
        max_attempts = _DEFAULT_ATTEMPTS[aspect]
    max_attempts = check_int(owner, "max_attempts", max_attempts, 1)
    return sl, sh, r1, aspect, max_attempts


def _aspect_ratio(u: torch.Tensor, r1: float, aspect: str) -> torch.Tensor:
    """U(0, 1) draws `u` turned, in place, into aspect ratios r_e in [r1, 1/r1]: uniform
    (``aspect="uniform"``) or log-uniform (``"log"``)."""
    if aspect == "uniform":
        return u.mul_(1.0 / r1 - r1).add_(r1)
    low, high = math.log(r1), math.log(1.0 / r1)
    return u.mul_(high - low).add_(low).exp_()


def sample_rectangle_sizes(
    batch: int,
    size: tuple[int, int],
    *,
    sl: float,
    sh: float,
    r1: float,
    aspect: str,
    max_attempts: int,
    device: torch.device,
    generator: torch.Generator | None,
    area_divisor: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random Erasing's rectangle size per image: (h, w, found), long (B,), long (B,), bool (B,).

    Literal official algorithm, vectorised: attempt k draws S_e ~ U(sl, sh) * H * W and an
    aspect r_e ~ U(r1, 1/r1) (``aspect="uniform"``, the Random Erasing code) or log-uniform
    on the same range (``"log"``, torchvision/timm); h = round(sqrt(S_e r_e)),
    w = round(sqrt(S_e / r_e)); accepted only if h < H and w < W (strict). All
    ``max_attempts`` attempts are drawn at once and each image keeps its first accepted
    one; ``found`` is False where none was accepted (the image is then not erased).
    ``area_divisor`` (float (B,), optional) divides each target area S_e, as timm does for
    several rectangles per image; it draws no random numbers.
    """
    height, width = size
    pixels = height * width
    # One draw for both quantities, transformed in place: the RNG and allocations dominate
    # the cost at training batch sizes.
    u = torch.rand(2, batch, max_attempts, device=device, generator=generator)
    area = u[0].mul_(pixels * (sh - sl)).add_(pixels * sl)  # S_e ~ U(sl, sh) * H * W
    if area_divisor is not None:
        area = area.div_(area_divisor[:, None])
    ratio = _aspect_ratio(u[1], r1, aspect)
    # Accept test without the per-attempt sqrt/round: round(sqrt(x)) < H <=> x < (H - 1/2)^2
    # (up to the measure-zero tie x = (H - 1/2)^2 exactly, where round-half-even may differ).
    tall = area * ratio
    wide = area.div_(ratio)
    ok = (tall < (height - 0.5) ** 2) & (wide < (width - 0.5) ** 2)
    # argmax on a 0/1 tensor returns the first maximum: the first accepted attempt, and the
    # value there says whether any attempt was accepted.
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)
    found = ok.gather(1, first).squeeze(1)
    # torch.round, like Python's round(), rounds halves to even.
    h = torch.round(torch.sqrt(tall.gather(1, first).squeeze(1))).to(torch.long)
    w = torch.round(torch.sqrt(wide.gather(1, first).squeeze(1))).to(torch.long)
    # The re-check keeps "the box fits strictly" exact even where float rounding of the
    # squared test and of sqrt disagree in the last bit.
    return h, w, found & (h < height) & (w < width)


def draw_rectangles(eraser, images: torch.Tensor, generator: torch.Generator | None):
    """The per-image coin (p), then Random Erasing's sizes, with the eraser's own sl, sh, r1,
    aspect and max_attempts: (apply, h, w, found). Shared by random_erasing and cam_erasing."""
    batch, _, height, width = images.shape
    apply = apply_coin(eraser.p, batch, images.device, generator=generator)
    h, w, found = sample_rectangle_sizes(
        batch, (height, width), sl=eraser.sl, sh=eraser.sh, r1=eraser.r1, aspect=eraser.aspect,
        max_attempts=eraser.max_attempts, device=images.device, generator=generator,
    )
    return apply, h, w, found


@register("random_erasing")
class RandomErasing(Eraser):
    """One rectangle per image with probability ``p`` (thesis: p 0.5, sl 0.02, sh 0.4, r1 0.3).

    The default ``aspect="uniform"`` with 100 attempts is the official code
    (zhunzhong07/Random-Erasing); ``aspect="log"`` (10 attempts unless ``max_attempts``
    says otherwise) is torchvision's and timm's sampler. The top-left corner is uniform
    over the positions where the box fits: top ~ randint(0, H - h), left ~ randint(0, W - w).

    ``min_count`` / ``max_count`` are timm's: an erased image gets a count uniform in
    {min_count, ..., max_count} of rectangles, each sized with the target area divided by
    the count and placed independently (they may overlap; one with no accepted size is
    skipped). With the defaults (1, 1) the draws are exactly the one-rectangle ones.
    """

    def __init__(
        self,
        p: float = 0.5,
        sl: float = 0.02,
        sh: float = 0.4,
        r1: float = 0.3,
        aspect: str = "uniform",
        max_attempts: int | None = None,
        min_count: int = 1,
        max_count: int = 1,
    ):
        owner = type(self).__name__
        self.p = check_probability(owner, "p", p)
        self.sl, self.sh, self.r1, self.aspect, self.max_attempts = check_rectangle_args(
            owner, sl, sh, r1, aspect, max_attempts
        )
        self.min_count = check_int(owner, "min_count", min_count, 1)
        self.max_count = check_int(owner, "max_count", max_count, 1)
        if self.min_count > self.max_count:
            raise ValueError(
                f"{owner}: min_count must be <= max_count, got min_count={min_count} > "
                f"max_count={max_count}"
            )

    def forward(self, images, *, cam=None, generator=None):
        if self.max_count > 1:
            return self._several(images, generator)
        _, _, height, width = images.shape
        apply, h, w, found = draw_rectangles(self, images, generator)
        # Where no size was found h may be >= H; clamp so the position draw stays defined.
        top = randint_inclusive((height - h).clamp(min=0), generator=generator)
        left = randint_inclusive((width - w).clamp(min=0), generator=generator)
        return box_mask(top, left, h, w, (height, width), keep=apply & found)

    def _several(self, images, generator):
        """timm's several rectangles: sizes and positions for all max_count slots at once,
        slots past the image's count switched off, the union of the rest."""
        batch, _, height, width = images.shape
        device, slots = images.device, self.max_count
        apply = apply_coin(self.p, batch, device, generator=generator)
        count = torch.full((batch,), self.min_count, device=device)
        if self.max_count > self.min_count:
            count = count + randint_inclusive(
                torch.full((batch,), self.max_count - self.min_count, device=device),
                generator=generator,
            )
        h, w, found = sample_rectangle_sizes(
            batch * slots, (height, width), sl=self.sl, sh=self.sh, r1=self.r1,
            aspect=self.aspect, max_attempts=self.max_attempts, device=device,
            generator=generator, area_divisor=count.repeat_interleave(slots).float(),
        )
        h, w, found = h.view(batch, slots), w.view(batch, slots), found.view(batch, slots)
        top = randint_inclusive((height - h).clamp(min=0), generator=generator)
        left = randint_inclusive((width - w).clamp(min=0), generator=generator)
        used = torch.arange(slots, device=device) < count[:, None]
        keep = found & used & apply[:, None]
        mask = box_mask(top[:, 0], left[:, 0], h[:, 0], w[:, 0], (height, width), keep=keep[:, 0])
        for k in range(1, slots):  # a loop over the rectangles, never over the images
            mask = mask | box_mask(
                top[:, k], left[:, k], h[:, k], w[:, k], (height, width), keep=keep[:, k]
            )
        return mask

"""What mixing erasers (CutMix and CAM-guided CutMix) share: the partner permutation, the label
weight of a mask, a Beta sampler that takes a ``generator``, and CutMix's box.

A mixing eraser is an ordinary mask eraser (``forward(images, *, cam, generator)`` returns a
bool ``(B, 1, H, W)`` mask) with the class attribute ``mixes = True``. Its mask marks where the
PARTNER image is pasted: image i becomes ``where(mask[i], images[partner[i]], images[i])``, and
its loss is ``lam[i] * CE(logits[i], y[i]) + (1 - lam[i]) * CE(logits[i], y[partner[i]])`` with
``lam = lam_from_mask(mask)`` (one minus the pasted fraction: the clipped box's area, as the
official CutMix code recomputes it). The caller (training step, ``plugins.Erase``,
``cam.erase_with_model``) owns the permutation: it draws ``partner = partner_permutation(B, device,
generator=...)`` itself, and for an eraser that also ``needs_cam`` it passes the PARTNER's
saliency, ``cam=cam[partner]``, because the pasted box is placed on the image it comes from.
So the eraser contract, and every mask-only eraser, stays exactly as it is.
"""

from __future__ import annotations

import math
import numbers

import torch

from plugins.base import randint_inclusive
from plugins.fill import keep_layout
from plugins.geometry import box_mask

__all__ = [
    "PASTE",
    "check_mixing_fill",
    "check_num_classes",
    "cutmix_box_masks",
    "default_fill",
    "is_mixing",
    "lam_from_mask",
    "mixed_cross_entropy",
    "partner_permutation",
    "paste",
    "sample_beta",
    "sample_log_gamma",
    "uniform_centres",
]

# Marsaglia-Tsang accepts a candidate with probability >= 0.95 for shape >= 1 (shapes below 1
# are boosted to shape + 1): 8 candidates all rejected has probability < 0.049 ** 8 ~ 3e-11.
GAMMA_CANDIDATES = 8

# The fill of a mixing eraser: its mask's pixels come from the partner image's same region.
# Not a mode of plugins.fill (a fill writes values that need no other image); the callers
# (training step, plugins.Erase, benchmark.cam.erase_with_model) paste with :func:`paste` instead.
PASTE = "paste"


def check_num_classes(owner: str, num_classes) -> int | None:
    """``num_classes`` as given if it is None or an int >= 1 (a bool is refused), else a
    one-line ``ValueError`` naming it and what is allowed."""
    if num_classes is None:
        return None
    if (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
            or num_classes < 1):
        raise ValueError(f"{owner}: num_classes must be an integer >= 1 (the number of classes "
                         f"of the labels) or None (labels already (B, num_classes)), got "
                         f"{num_classes!r}")
    return int(num_classes)


def is_mixing(eraser) -> bool:
    """True for an eraser (instance or class) whose class sets ``mixes = True``."""
    cls = eraser if isinstance(eraser, type) else type(eraser)
    return bool(getattr(cls, "mixes", False))


def check_mixing_fill(owner: str, eraser, fill: str) -> None:
    """One-line ``ValueError``: a mixing eraser with a fill other than ``paste``, or ``paste``
    with a mask-only eraser. ``owner`` starts the message (e.g. a file and key)."""
    name = getattr(eraser, "__name__", type(eraser).__name__)
    if is_mixing(eraser) and fill != PASTE:
        raise ValueError(f"{owner}: {name} is a mixing eraser (it pastes the partner image's "
                         f"region and mixes the labels); its fill must be {PASTE!r} (or left "
                         f"out), got {fill!r}")
    if not is_mixing(eraser) and fill == PASTE:
        raise ValueError(f"{owner}: fill {PASTE!r} needs a mixing eraser (mixes = True, e.g. "
                         f"cutmix, cam_cutmix); {name} only masks: use zero, mean, random or "
                         "channel")


def default_fill(owner: str, eraser, fill: str | None) -> str:
    """The fill an eraser gets: ``fill``, or by default ``paste`` for a mixing eraser and
    ``zero`` for a mask eraser; a mixing eraser with another fill, or ``paste`` with a mask
    eraser, is :func:`check_mixing_fill`'s one-line ``ValueError``."""
    mixes = is_mixing(eraser)
    fill = fill if fill is not None else (PASTE if mixes else "zero")
    if mixes or fill == PASTE:
        check_mixing_fill(owner, eraser, fill)
    return fill


def paste(images: torch.Tensor, mask: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """``where(mask, images[partner], images)``: image i gets image ``partner[i]``'s pixels
    inside its mask (the same coordinates). ``images`` (B, C, H, W) any dtype, ``mask`` bool
    (B, 1, H, W), ``partner`` long (B,); a new tensor in the images' memory format."""
    return keep_layout(torch.where(mask, images[partner], images), images)


def mixed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, partner_labels: torch.Tensor,
                        lam: torch.Tensor) -> torch.Tensor:
    """Per-image ``lam * CE(logits, labels) + (1 - lam) * CE(logits, partner_labels)``.

    ``logits`` (N, classes) or (N, classes, K); labels long (N,) or (N, K); ``lam`` float of
    the labels' shape, in the logits' dtype. Returns the per-image loss (the labels' shape);
    the caller takes the mean.
    """
    own = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    other = torch.nn.functional.cross_entropy(logits, partner_labels, reduction="none")
    return lam * own + (1.0 - lam) * other


def partner_permutation(
    batch: int, device: torch.device | str, *, generator: torch.Generator | None
) -> torch.Tensor:
    """A uniformly random permutation of ``range(batch)``: long ``(batch,)`` on ``device``.

    ``argsort`` of ``batch`` uniform draws from ``generator``: the same kind of draw as every
    eraser's, so it needs no host sync and captures in a CUDA graph like them (ties among the
    float32 keys, about batch^2 / 2^25 per call, resolve by index). Image i's partner is
    ``images[partner[i]]``. As in the official ``torch.randperm``, an image may be its own
    partner (then it is pasted onto itself and its lam does not matter: both labels agree).
    """
    keys = torch.rand(batch, device=device, generator=generator)
    return keys.argsort()


def lam_from_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-image label weight of the image's OWN label: ``(B,)`` of ``dtype`` = 1 - pasted
    fraction.

    ``mask`` is the bool ``(B, 1, H, W)`` paste mask; an empty mask (image not mixed) gives 1.
    """
    return 1.0 - mask.flatten(1).to(dtype).mean(dim=1)


def sample_log_gamma(
    alpha: float,
    shape: tuple[int, ...],
    *,
    device: torch.device | str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """log of Gamma(alpha, 1) draws, float64 ``shape``, drawn only from ``generator``.

    ``torch.distributions`` and ``torch._standard_gamma`` take no generator, so this is
    Marsaglia & Tsang (2000): with a = max(alpha, alpha + 1 if alpha < 1), d = a - 1/3,
    c = 1 / sqrt(9 d), x ~ N(0, 1), u ~ U(0, 1), v = (1 + c x)^3, accept when v > 0 and
    log u < x^2 / 2 + d - d v + d log v; the draw is d v. ``GAMMA_CANDIDATES`` candidates are
    drawn at once and the first accepted one is kept; if none is (probability < 3e-11) the
    draw is d, the value at x = 0. For alpha < 1 the boost Gamma(alpha) = Gamma(alpha + 1)
    U^(1/alpha) is applied in log space (log G + log U / alpha), so tiny alpha cannot
    underflow to 0. Returning the log keeps Beta = sigmoid(log X - log Y) finite too.
    """
    boost = alpha < 1.0
    a = alpha + 1.0 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    size = (*shape, GAMMA_CANDIDATES)
    x = torch.randn(size, device=device, dtype=torch.float64, generator=generator)
    u = torch.rand(size, device=device, dtype=torch.float64, generator=generator)
    v = (1.0 + c * x) ** 3
    log_v = torch.log(v.clamp(min=1e-30))
    ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * log_v)
    first = ok.to(torch.uint8).argmax(dim=-1, keepdim=True)
    found = ok.gather(-1, first).squeeze(-1)
    log_g = torch.where(found, math.log(d) + log_v.gather(-1, first).squeeze(-1), math.log(d))
    if boost:
        # U in (0, 1]: 1 - rand avoids log(0).
        u_boost = 1.0 - torch.rand(shape, device=device, dtype=torch.float64, generator=generator)
        log_g = log_g + torch.log(u_boost) / alpha
    return log_g


def sample_beta(
    alpha: float,
    shape: tuple[int, ...],
    *,
    device: torch.device | str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Beta(alpha, alpha) draws in [0, 1], float64 ``shape``, from ``generator`` only.

    X / (X + Y) for X, Y ~ Gamma(alpha), computed as sigmoid(log X - log Y)
    (:func:`sample_log_gamma`). Checked against ``scipy.stats.beta`` by a KS test. float64
    as numpy's: in float32 every draw within 6e-8 of 1 rounds to 1, about 2% of the draws
    for alpha = 0.2.
    """
    log_x = sample_log_gamma(alpha, shape, device=device, generator=generator)
    log_y = sample_log_gamma(alpha, shape, device=device, generator=generator)
    return torch.sigmoid(log_x - log_y)


def cutmix_box_masks(
    lam: torch.Tensor,
    centre_row: torch.Tensor,
    centre_col: torch.Tensor,
    size: tuple[int, int],
    *,
    keep: torch.Tensor,
) -> torch.Tensor:
    """CutMix's ``rand_bbox`` box around a given centre, as a bool ``(B, 1, H, W)`` mask.

    Official code (clovaai/CutMix-PyTorch ``rand_bbox``), per image: cut_rat = sqrt(1 - lam),
    cut_h = int(H cut_rat), cut_w = int(W cut_rat) (truncation), rows
    clip(cy - cut_h // 2, 0, H) to clip(cy + cut_h // 2, 0, H), columns likewise; so an odd
    cut side loses a pixel and a box near the border is clipped. ``lam`` float ``(B,)``,
    centres long ``(B,)``, ``keep`` bool ``(B,)`` (False: empty mask).
    """
    height, width = size
    cut_rat = torch.sqrt((1.0 - lam).clamp(min=0.0))
    cut_h = torch.floor(height * cut_rat).to(torch.long)
    cut_w = torch.floor(width * cut_rat).to(torch.long)
    top = (centre_row - cut_h // 2).clamp(0, height)
    bottom = (centre_row + cut_h // 2).clamp(0, height)
    left = (centre_col - cut_w // 2).clamp(0, width)
    right = (centre_col + cut_w // 2).clamp(0, width)
    return box_mask(top, left, bottom - top, right - left, size, keep=keep)


def uniform_centres(
    batch: int, size: tuple[int, int], device, *, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Box centres uniform over the pixels (``np.random.randint(H)``, ``randint(W)``)."""
    height, width = size
    row = randint_inclusive(torch.full((batch,), height - 1, device=device), generator=generator)
    col = randint_inclusive(torch.full((batch,), width - 1, device=device), generator=generator)
    return row, col

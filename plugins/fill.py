"""The one shared fill: write a value into the erased pixels of a batch (returns a new tensor).

The runner erases *after* normalisation, as the official Cutout and Random Erasing code
do, so ``"zero"`` there means the dataset-mean colour in pixel space (the thesis default).
Values are in the images' own units: float images take any value (random fills draw N(0, 1),
meant for normalised images); uint8 images (torchvision's dtype after decoding) take integers
in [0, 255] and random fills draw uniform integers in [0, 255].
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

__all__ = ["FILL_MODES", "fill", "check_fill_dtype"]

FILL_MODES = ("zero", "mean", "random", "channel")

_ALLOWED_DTYPES = "uint8 (values 0-255) or a floating dtype (float16, bfloat16, float32, float64)"


def check_fill_dtype(owner: str, dtype: torch.dtype) -> None:
    """One-line error for an image dtype the fills cannot write (not uint8, not floating)."""
    if dtype != torch.uint8 and not dtype.is_floating_point:
        raise TypeError(f"{owner}: images of dtype {dtype} are not supported; allowed: "
                        f"{_ALLOWED_DTYPES}")


def _check(images, mask, mode: str) -> None:
    """One-line errors for a bad mode, a non-image or a mask that does not match the images."""
    if mode not in FILL_MODES:
        raise ValueError(
            f"fill: mode must be one of {', '.join(map(repr, FILL_MODES))}, got {mode!r}"
        )
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("fill: images must be a (B, C, H, W) tensor")
    check_fill_dtype("fill", images.dtype)
    batch, _, height, width = images.shape
    if (
        not isinstance(mask, torch.Tensor)
        or mask.dtype != torch.bool
        or tuple(mask.shape) != (batch, 1, height, width)
    ):
        got = (
            f"{mask.dtype} {tuple(mask.shape)}"
            if isinstance(mask, torch.Tensor)
            else type(mask).__name__
        )
        raise ValueError(f"fill: mask must be bool of shape {(batch, 1, height, width)}, got {got}")


def _check_uint8_values(mean) -> None:
    """uint8 images hold integers 0-255: a fractional or out-of-range value would be truncated
    or wrapped silently, so refuse it. A tensor ``mean`` is read on the host (uint8 only)."""
    if isinstance(mean, torch.Tensor):
        values = mean.detach().reshape(-1).cpu().tolist()
    elif isinstance(mean, numbers.Real):
        values = [mean]
    else:
        values = list(mean)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Real)
           or v != int(v) or not 0 <= v <= 255]
    if bad:
        raise ValueError(
            f"fill: mean for uint8 images must be integers in [0, 255] (the images' units), "
            f"got {bad[0]!r}; e.g. 0.5 of the range is 128, or convert first with "
            "v2.ToDtype(torch.float32, scale=True)"
        )


def _keep_layout(out: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``out`` in the memory format of ``images`` (e.g. channels_last); metadata-only check,
    a copy only when the strides differ."""
    if out.stride() == images.stride() or (images.is_contiguous() and out.is_contiguous()):
        return out
    return torch.empty_like(images).copy_(out)


def fill(
    images: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "zero",
    *,
    mean: torch.Tensor | Sequence[float] | float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Copy of ``images`` (B, C, H, W) with pixels where ``mask`` (B, 1, H, W) is True replaced.

    ``mode``: ``"zero"`` (0 in every channel), ``"mean"`` (``mean``: one value for every
    channel, or C per-channel values, in the space the images are in, e.g. zeros after
    normalisation, the dataset mean before), ``"random"`` (per pixel: Random Erasing's RE-R and
    timm's ``mode="pixel"``) or ``"channel"`` (one value per image and channel, a random flat
    colour: timm's ``mode="rand"``, which draws one per rectangle). Random values are N(0, 1)
    for float images and uniform integers in [0, 255] for uint8 images.

    ``images``: uint8 or any floating dtype, any memory format (kept: a channels_last batch
    comes back channels_last); other dtypes raise ``TypeError``. For uint8, ``mean`` must hold
    integers in [0, 255] (``ValueError`` otherwise). Random values are drawn on the images'
    device, so ``generator`` must live there. The input is never modified. In a CUDA-graph-
    captured step pass ``mean`` as a tensor already on the device: a Python list is copied
    host to device on every call.
    """
    _check(images, mask, mode)
    batch, channels = images.shape[:2]
    integer = images.dtype == torch.uint8
    if mode == "zero":
        return _keep_layout(images.masked_fill(mask, 0), images)
    if mode == "mean":
        if mean is None:
            raise ValueError(
                "fill: mode='mean' needs mean=<one value, or C per-channel values, in the "
                "images' space>"
            )
        if integer:
            _check_uint8_values(mean)
        value = torch.as_tensor(mean, dtype=images.dtype, device=images.device).reshape(-1)
        if value.numel() not in (1, channels):
            allowed = ("1 value (1 channel)" if channels == 1
                       else f"1 value (all channels) or {channels} (one per channel)")
            raise ValueError(f"fill: mean must have {allowed}, got {value.numel()} values")
        out = torch.where(mask, value.view(1, value.numel(), 1, 1), images)
        return _keep_layout(out, images)
    # "random": a value per pixel; "channel": one per image and channel, broadcast over H, W.
    shape = images.shape if mode == "random" else (batch, channels, 1, 1)
    if integer:
        noise = torch.randint(0, 256, shape, dtype=images.dtype, device=images.device,
                              generator=generator)
    else:
        noise = torch.randn(shape, dtype=images.dtype, device=images.device, generator=generator)
    return _keep_layout(torch.where(mask, noise, images), images)

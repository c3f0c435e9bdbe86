"""The one shared fill: write a value into the erased pixels of a batch (returns a new tensor).

The runner erases *after* normalisation, as the official Cutout and Random Erasing code
do, so ``"zero"`` there means the dataset-mean colour in pixel space (the thesis default).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["FILL_MODES", "fill"]

FILL_MODES = ("zero", "mean", "random", "channel")


def _check(images, mask, mode: str) -> None:
    """One-line errors for a bad mode, a non-image or a mask that does not match the images."""
    if mode not in FILL_MODES:
        raise ValueError(
            f"fill: mode must be one of {', '.join(map(repr, FILL_MODES))}, got {mode!r}"
        )
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("fill: images must be a (B, C, H, W) tensor")
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


def fill(
    images: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "zero",
    *,
    mean: torch.Tensor | Sequence[float] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Copy of ``images`` (B, C, H, W) with pixels where ``mask`` (B, 1, H, W) is True replaced.

    ``mode``: ``"zero"`` (0 in every channel), ``"mean"`` (``mean``: C per-channel values, in
    the space the images are in, e.g. zeros after normalisation, the dataset mean before) or
    ``"random"`` (per-pixel N(0, 1), Random Erasing's RE-R and timm's ``mode="pixel"``) or
    ``"channel"`` (one N(0, 1) value per image and channel, a random flat colour: timm's
    ``mode="rand"``, which draws one per rectangle). Random values are drawn on the images'
    device, so ``generator`` must live there. The input is never modified. In a CUDA-graph-captured
    step pass ``mean`` as a tensor already on the device: a Python list is copied host to
    device on every call.
    """
    _check(images, mask, mode)
    batch, channels = images.shape[:2]
    if mode == "zero":
        return images.masked_fill(mask, 0)
    if mode == "mean":
        if mean is None:
            raise ValueError(
                "fill: mode='mean' needs mean=<C per-channel values in the images' space>"
            )
        value = torch.as_tensor(mean, dtype=images.dtype, device=images.device).reshape(-1)
        if value.numel() != channels:
            raise ValueError(
                f"fill: mean must have {channels} values (one per channel), got {value.numel()}"
            )
        return torch.where(mask, value.view(1, channels, 1, 1), images)
    # "random": a value per pixel; "channel": one per image and channel, broadcast over H, W.
    shape = images.shape if mode == "random" else (batch, channels, 1, 1)
    noise = torch.randn(shape, dtype=images.dtype, device=images.device, generator=generator)
    return torch.where(mask, noise, images)

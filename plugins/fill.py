"""The one shared fill: write a value into the erased pixels of a batch (returns a new tensor).

The runner erases *after* normalisation, as the official Cutout and Random Erasing code
do, so ``"zero"`` there means the dataset-mean colour in pixel space (the thesis default).
Values are in the images' own units: float images take any value (random fills draw N(0, 1),
meant for normalised images); uint8 images (torchvision's dtype after decoding) take integers
in [0, 255] and random fills draw uniform integers in [0, 255].
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence

import torch

__all__ = ["FILL_MODES", "check_fill_dtype", "fill", "keep_layout"]

FILL_MODES = ("zero", "mean", "random", "channel")

_ALLOWED_DTYPES = "uint8 (values 0-255) or a floating dtype (float16, bfloat16, float32, float64)"


def check_fill_dtype(owner: str, dtype: torch.dtype) -> None:
    """One-line error for an image dtype the fills cannot write (not uint8, not floating)."""
    if dtype != torch.uint8 and not dtype.is_floating_point:
        raise TypeError(f"{owner}: images of dtype {dtype} are not supported; allowed: "
                        f"{_ALLOWED_DTYPES}")


def _check(images, mask, fill: str) -> None:
    """One-line errors for a bad fill, a non-image or a mask that does not match the images."""
    if fill not in FILL_MODES:
        raise ValueError(
            f"fill: the fill must be one of {', '.join(map(repr, FILL_MODES))}, got {fill!r}"
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


def _check_mean(mean, images: torch.Tensor) -> None:
    """One-line ValueError unless ``mean`` is one finite real number, or 1 or C of them (a
    sequence or a real tensor), and for uint8 images integers in [0, 255]. Checked whatever the
    mode, as torchvision checks ``value``: a ``mean`` the fill does not use must still be a
    valid one. A tensor is checked by its metadata only (no host sync), except for uint8 images,
    where its values are read on the host to refuse ones uint8 would truncate or wrap."""
    channels = images.shape[1]
    integer = images.dtype == torch.uint8
    allowed = ("one finite number" if channels == 1
               else f"one finite number (all channels) or {channels} (one per channel)")
    if isinstance(mean, torch.Tensor):
        if mean.dtype == torch.bool or mean.is_complex():
            raise ValueError(f"fill: mean must be {allowed}, got a {mean.dtype} tensor")
        count = mean.numel()
        values = mean.detach().reshape(-1).cpu().tolist() if integer else []
    else:
        if isinstance(mean, numbers.Real) and not isinstance(mean, bool):
            values = [mean]
        elif isinstance(mean, Sequence) and not isinstance(mean, (str, bytes)) or (
                hasattr(mean, "__array__") and not isinstance(mean, (str, bytes))):
            values = list(mean) if getattr(mean, "ndim", 1) else [mean.item()]
        else:
            raise ValueError(f"fill: mean must be {allowed}, got {type(mean).__name__} "
                             f"{mean!r}")
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Real)
               or not math.isfinite(v)]
        if bad:
            raise ValueError(f"fill: mean must be {allowed}, got {bad[0]!r}")
        count = len(values)
    if count not in (1, channels):
        have = ("1 value (1 channel)" if channels == 1
                else f"1 value (all channels) or {channels} (one per channel)")
        raise ValueError(f"fill: mean must have {have}, got {count} values")
    bad = [v for v in values if isinstance(v, bool) or not math.isfinite(v)
           or v != int(v) or not 0 <= v <= 255] if integer else []
    if bad:
        raise ValueError(
            f"fill: mean for uint8 images must be integers in [0, 255] (the images' units), "
            f"got {bad[0]!r}; e.g. 0.5 of the range is 128, or convert first with "
            "v2.ToDtype(torch.float32, scale=True)"
        )


def check_mean(owner: str, mean) -> None:
    """The checks of ``mean`` that need no image (``Erase``'s constructor): one finite real
    number, a sequence of them, or a real tensor; a one-line ``ValueError`` naming ``owner``
    otherwise. The count per channel and uint8's range are checked on the images."""
    if isinstance(mean, torch.Tensor):
        ok = mean.dtype != torch.bool and not mean.is_complex()
        values = []
    elif isinstance(mean, numbers.Real):
        ok, values = True, [mean]
    elif not isinstance(mean, (str, bytes)) and (isinstance(mean, Sequence)
                                                 or hasattr(mean, "__array__")):
        values = list(mean) if getattr(mean, "ndim", 1) else [mean.item()]  # numpy as well
        ok = bool(values)
    else:
        ok, values = False, []
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Real)
           or not math.isfinite(v)]
    if not ok or bad:
        got = repr(bad[0]) if bad else f"{type(mean).__name__} {mean!r}"
        raise ValueError(f"{owner}: mean must be a finite number, a sequence of them (one per "
                         f"channel) or a real tensor, got {got}")


def _check_generator(generator, images: torch.Tensor, *, device: bool = True) -> None:
    """One-line errors for a ``generator`` that is not a torch.Generator on the images' device."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"fill: generator must be a torch.Generator (on the images' device, "
                        f"{images.device.type}) or None, got {type(generator).__name__}")
    if device and generator.device.type != images.device.type:
        raise ValueError(f"fill: generator is on {generator.device.type} but the images are on "
                         f"{images.device.type}; make it with torch.Generator(device=...)")


def keep_layout(out: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``out`` in the memory format of ``images`` (e.g. channels_last); metadata-only check,
    a copy only when the strides differ."""
    if out.stride() == images.stride() or (images.is_contiguous() and out.is_contiguous()):
        return out
    return torch.empty_like(images).copy_(out)


def fill(
    images: torch.Tensor,
    mask: torch.Tensor,
    fill: str = "zero",
    *,
    mean: torch.Tensor | Sequence[float] | float | None = None,
    generator: torch.Generator | None = None,
    mode: str | None = None,
) -> torch.Tensor:
    """Copy of ``images`` (B, C, H, W) with pixels where ``mask`` (B, 1, H, W) is True replaced.

    ``fill`` (one of :data:`FILL_MODES`, the suite key ``fill``): ``"zero"`` (0 in every
    channel), ``"mean"`` (``mean``: one value for every channel, or C per-channel values, in
    the space the images are in, e.g. zeros after normalisation, the dataset mean before),
    ``"random"`` (per pixel: Random Erasing's RE-R and timm's ``mode="pixel"``) or
    ``"channel"`` (one value per image and channel, a random flat colour: timm's
    ``mode="rand"``, which draws one per rectangle). Random values are N(0, 1) for float
    images and uniform integers in [0, 255] for uint8 images. ``mode=`` is the old keyword
    for ``fill`` (a DeprecationWarning).

    ``images``: uint8 or any floating dtype, any memory format (kept: a channels_last batch
    comes back channels_last); other dtypes raise ``TypeError``. For uint8, ``mean`` must hold
    integers in [0, 255]. ``mean``, when given, is checked whatever the fill (as torchvision
    checks ``value``): a non-finite, non-numeric or wrong-length one is a one-line
    ``ValueError``; a ``generator`` that is not a ``torch.Generator`` a one-line ``TypeError``.
    Random values are drawn on the images' device, so ``generator`` must live there. The input
    is never modified. In a CUDA-graph-captured step pass ``mean`` as a tensor already on the
    device: a Python list is copied host to device on every call.
    """
    if mode is not None:
        warnings.warn("plugins.fill(..., mode=) is now plugins.fill(..., fill=)",
                      DeprecationWarning, stacklevel=2)
        fill = mode
    _check(images, mask, fill)
    if mean is not None:
        _check_mean(mean, images)
    _check_generator(generator, images, device=False)
    if fill == "zero":
        return keep_layout(images.masked_fill(mask, 0), images)
    if fill == "mean":
        return keep_layout(_mean_filled(images, mask, mean), images)
    _check_generator(generator, images)
    return keep_layout(torch.where(mask, _noise(images, fill, generator), images), images)


def _mean_filled(images: torch.Tensor, mask: torch.Tensor, mean) -> torch.Tensor:
    """``mean`` (one value or one per channel) where ``mask`` is True."""
    if mean is None:
        raise ValueError(
            "fill: fill='mean' needs mean=<one value, or C per-channel values, in the "
            "images' space>"
        )
    value = torch.as_tensor(mean, dtype=images.dtype, device=images.device).reshape(-1)
    return torch.where(mask, value.view(1, value.numel(), 1, 1), images)


def _noise(images: torch.Tensor, fill: str, generator: torch.Generator | None) -> torch.Tensor:
    """Random values in the images' dtype: one per pixel (``"random"``) or one per image and
    channel, broadcast over H, W (``"channel"``); N(0, 1), or integers in [0, 255] for uint8."""
    batch, channels = images.shape[:2]
    shape = images.shape if fill == "random" else (batch, channels, 1, 1)
    if images.dtype == torch.uint8:
        return torch.randint(0, 256, shape, dtype=images.dtype, device=images.device,
                             generator=generator)
    return torch.randn(shape, dtype=images.dtype, device=images.device, generator=generator)

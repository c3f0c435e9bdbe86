"""Any eraser as a function on images: the functional core of ``plugins.Erase``, in the style
of torchvision's ``transforms.v2.functional``.

:func:`apply_eraser` (images -> erased copy: :func:`draw_mask`, then :func:`fill_mask`) takes
(H, W), (C, H, W), any (..., C, H, W) batch or (..., T, C, H, W) videos, uint8 or floating;
:func:`mix` runs a mixing eraser (cutmix, cam_cutmix) on a batch with its labels, as
torchvision's ``v2.CutMix``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.transforms.v2 import functional as F

from plugins.base import Eraser, check_channels_first
from plugins.fill import check_fill_dtype, keep_layout
from plugins.fill import fill as fill_pixels
from plugins.mixing import (
    check_num_classes,
    is_mixing,
    lam_from_mask,
    partner_permutation,
    paste,
)

__all__ = ["apply_eraser", "check_erase_input", "draw_key", "draw_mask", "fill_mask", "mix",
           "mix_draw"]


def check_erase_input(images, video: bool) -> None:
    """One-line errors for what `apply_eraser` cannot take: not a tensor, too few dims, a dtype the
    fills cannot write, channels last."""
    owner = "Erase"
    if not isinstance(images, torch.Tensor) or images.ndim < (4 if video else 2):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        want = "(..., T, C, H, W) video" if video else "(H, W), (C, H, W) or (..., C, H, W) tensor"
        raise ValueError(f"{owner}: images must be a {want}, got {got}")
    check_fill_dtype(owner, images.dtype)
    check_channels_first(owner, images.shape)


def draw_key(images: torch.Tensor, video: bool) -> tuple[int, int, int]:
    """(N, H, W): N masks of H x W are drawn for these images (one per image, one per video)."""
    lead = images.shape[:-4] if video else images.shape[:-3]
    return math.prod(lead), images.shape[-2], images.shape[-1]


def _check_cam(cam, images: torch.Tensor, video: bool) -> None:
    lead = images.shape[:-4] if video else images.shape[:-3]
    want = (*lead, *images.shape[-2:])
    if not isinstance(cam, torch.Tensor) or tuple(cam.shape) != want:
        got = tuple(cam.shape) if isinstance(cam, torch.Tensor) else type(cam).__name__
        raise ValueError(f"Erase: cam must have shape {want}, got {got}")


def draw_mask(
    images: torch.Tensor,
    eraser: Eraser,
    *,
    generator: torch.Generator | None = None,
    cam: torch.Tensor | None = None,
    video: bool = False,
) -> torch.Tensor:
    """The eraser's bool mask (N, 1, H, W) for ``images`` (..., C, H, W), or (..., T, C, H, W)
    with ``video`` (one mask per video, from its first frame); N = the leading dims' product.
    Integer images are shown to the eraser as float32 in [0, 1] (``v2.ToDtype(scale=True)``).
    """
    check_erase_input(images, video)
    if images.ndim == 2:
        images = images[None]
    channels, height, width = images.shape[-3:]
    if cam is not None:
        _check_cam(cam, images, video)
    flat_cam = None if cam is None else cam.reshape(-1, height, width)
    flat = images.reshape(-1, channels, height, width)
    if video:
        flat = images.reshape(-1, images.shape[-4], channels, height, width)[:, 0]
    if not flat.is_floating_point():
        flat = F.to_dtype(flat, torch.float32, scale=True)
    return eraser(flat, cam=flat_cam, generator=generator)


def fill_mask(
    images: torch.Tensor,
    mask: torch.Tensor,
    fill: str = "zero",
    *,
    mean: torch.Tensor | Sequence[float] | float | None = None,
    generator: torch.Generator | None = None,
    video: bool = False,
) -> torch.Tensor:
    """Filled copy of ``images`` (any shape `apply_eraser` takes) where ``mask`` (N, 1, H, W)
    is True; shape, dtype, device and memory format kept."""
    check_erase_input(images, video)
    shape = images.shape
    source = images[None] if images.ndim == 2 else images
    channels, height, width = source.shape[-3:]
    if not video:
        flat = source.reshape(-1, channels, height, width)
        out = fill_pixels(flat, mask, fill, mean=mean, generator=generator)
        return keep_layout(out.reshape(shape), images)
    frames = shape[-4]
    clips = source.reshape(-1, frames, channels, height, width)
    # Frames stacked along H, (N, C, T*H, W): one fill call, and "channel" draws one colour
    # per clip and channel.
    n = clips.shape[0]
    tall = clips.transpose(1, 2).reshape(n, channels, frames * height, width)
    tall_mask = mask[:, :, None].expand(n, 1, frames, height, width)
    out = fill_pixels(tall, tall_mask.reshape(n, 1, frames * height, width), fill, mean=mean,
               generator=generator)
    out = out.reshape(n, channels, frames, height, width).transpose(1, 2).reshape(shape)
    return keep_layout(out, images)


def apply_eraser(
    images: torch.Tensor,
    eraser: Eraser,
    fill: str = "zero",
    *,
    mean: torch.Tensor | Sequence[float] | float | None = None,
    generator: torch.Generator | None = None,
    cam: torch.Tensor | None = None,
    video: bool = False,
) -> torch.Tensor:
    """Erased copy of ``images``: one mask per image (:func:`draw_mask`), then ``fill``
    (:func:`fill_mask`; one of ``FILL_MODES`` in ``plugins/fill.py``).

    ``images``: (H, W) (one channel, as torchvision reads it), (C, H, W), a batch
    (B, C, H, W) or any (..., C, H, W), whose leading dimensions are one batch for the eraser;
    uint8 (fill values in 0-255) or any floating dtype. Shape, dtype, device and memory
    format are kept and the input is never modified. ``video=True`` reads (..., T, C, H, W)
    and draws one mask per video, shared by its T frames (torchvision erases the same region
    in every frame); "channel" fill then gives each video one colour. ``cam`` has the images'
    leading shape (without T) followed by (H, W). Errors: ``ValueError`` for a shape,
    ``TypeError`` for a dtype (one line each).
    """
    if is_mixing(eraser):
        raise ValueError(
            f"apply_eraser: {type(eraser).__name__} is a mixing eraser (it pastes another image of "
            "the batch and mixes the labels); use plugins.functional.mix(images, labels, eraser, "
            "num_classes=...) or Erase(...)(images, labels)"
        )
    mask = draw_mask(images, eraser, generator=generator, cam=cam, video=video)
    return fill_mask(images, mask, fill, mean=mean, generator=generator, video=video)


def _soft_labels(labels, num_classes: int | None, owner: str) -> torch.Tensor:
    """(B,) class indices -> one-hot float (B, num_classes); (B, classes) -> float, as
    torchvision's v2 CutMix/MixUp take them."""
    if not isinstance(labels, torch.Tensor) or labels.ndim not in (1, 2):
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{owner}: labels must be class indices (B,) or probabilities "
                         f"(B, num_classes), got {got}")
    if labels.ndim == 1:
        if num_classes is None:
            raise ValueError(f"{owner}: num_classes must be given for class-index labels (B,), "
                             "as torchvision's v2.CutMix(num_classes=...)")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"{owner}: class-index labels (B,) must be integers, got "
                             f"{labels.dtype}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"{owner}: class-index labels must be in [0, {num_classes - 1}] "
                             f"(num_classes {num_classes}), got {int(labels.min())}.."
                             f"{int(labels.max())}")
        return torch.nn.functional.one_hot(labels, num_classes=num_classes).float()
    if num_classes is not None and labels.shape[-1] != num_classes:
        raise ValueError(f"{owner}: labels have {labels.shape[-1]} classes in their last "
                         f"dimension, num_classes is {num_classes}")
    return labels if labels.is_floating_point() else labels.float()


def mix(
    images: torch.Tensor,
    labels: torch.Tensor,
    eraser: Eraser,
    *,
    num_classes: int | None = None,
    generator: torch.Generator | None = None,
    cam: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A mixing eraser (``mixes = True``: cutmix, cam_cutmix) on a batch, in the style of
    torchvision's ``v2.CutMix``: ``(mixed images, soft labels)``.

    ``images`` (B, C, H, W), uint8 or floating; ``labels`` class indices (B,) (then
    ``num_classes`` is required) or probabilities (B, num_classes). A partner permutation is
    drawn from ``generator`` first (:func:`plugins.mixing.partner_permutation`), then the mask
    (a CAM eraser gets ``cam[partner]``: ``cam`` is the batch's own saliency (B, H, W)); image
    i gets image ``partner[i]``'s pixels inside its mask, and its label becomes
    ``lam * labels[i] + (1 - lam) * labels[partner[i]]`` with lam = 1 - the pasted fraction
    (float32 (B, num_classes), rows sum to 1 for one-hot labels). Errors (``ValueError``, one
    line): a single image (no batch dimension), labels of the wrong shape, an eraser that does
    not mix.
    """
    mixed, soft, _, _ = mix_draw(images, labels, eraser, num_classes=num_classes,
                                 generator=generator, cam=cam)
    return mixed, soft


def mix_draw(
    images: torch.Tensor,
    labels: torch.Tensor,
    eraser: Eraser,
    *,
    num_classes: int | None = None,
    generator: torch.Generator | None = None,
    cam: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`mix` and its draw: ``(mixed images, soft labels, mask bool (B, 1, H, W),
    partner long (B,))``, so further images of the same sample can be pasted alike
    (:func:`plugins.mixing.paste`). Same arguments and errors as :func:`mix`."""
    owner = "Erase"
    num_classes = check_num_classes(owner, num_classes)
    if not is_mixing(eraser):
        raise ValueError(f"{owner}: mix needs a mixing eraser (mixes = True); "
                         f"{type(eraser).__name__} only masks: use apply_eraser")
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{owner}: {type(eraser).__name__} mixes the images of a batch: call it "
                         f"on a batch (B, C, H, W) with its labels, Erase(...)(images, labels); "
                         f"got {got}")
    check_erase_input(images, False)
    soft = _soft_labels(labels, num_classes, owner)
    if soft.shape[0] != images.shape[0]:
        raise ValueError(f"{owner}: {images.shape[0]} images but {soft.shape[0]} labels")
    partner = partner_permutation(images.shape[0], images.device, generator=generator)
    if eraser.needs_cam and cam is None:
        raise ValueError(f"{owner}: {type(eraser).__name__} needs a CAM: pass cam= (B, H, W) or "
                         "use benchmark.cam.erase_with_model(model, images, labels)")
    if cam is not None:
        _check_cam(cam, images, False)
        cam = cam[partner]
    mask = draw_mask(images, eraser, generator=generator, cam=cam)
    lam = lam_from_mask(mask).to(soft.device)[:, None]
    return paste(images, mask, partner), lam * soft + (1.0 - lam) * soft[partner], mask, partner

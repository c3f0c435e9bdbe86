"""Erasing in your own training loop: `erase_with_model(model, images, labels, eraser)` computes
the model's CAM where the eraser needs one, draws the mask and fills it (or pastes the partner
image, for a mixing eraser: then it returns a `Mixed`)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

import plugins
from benchmark.cam.context import LogitsSelector, check_images
from benchmark.cam.fast_path import fast_path_cached
from benchmark.cam.sources import LiveCam, check_target
from plugins.mixing import default_fill, is_mixing, lam_from_mask, partner_permutation, paste

__all__ = ["Mixed", "erase_with_model"]


class Mixed(NamedTuple):
    """What :func:`erase_with_model` returns for a mixing eraser (cutmix, cam_cutmix).

    ``images`` (B, C, H, W): image i with image ``partner[i]``'s pixels inside its mask;
    ``partner_labels`` long (B,) = ``labels[partner]``; ``lam`` float32 (B,): the weight of
    the image's own label, 1 - the pasted fraction. The loss is
    ``plugins.mixing.mixed_cross_entropy(logits, labels, partner_labels, lam).mean()``.
    """

    images: torch.Tensor
    partner_labels: torch.Tensor
    lam: torch.Tensor


def erase_with_model(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                     eraser="cam_erasing", *, fill: str | None = None, mean=None,
                     generator: torch.Generator | None = None, layer: str | None = None,
                     target: str = "label", logits: LogitsSelector = None,
                     **params) -> torch.Tensor | Mixed:
    """CAM erasing in your own training loop: the erased copy of `images` (B, C, H, W).

    The CAM of `model` (Grad-CAM of `layer`, default its first `cam_layers`; for the label, or
    the predicted class with `target="predicted"`) goes to `eraser` (a registry name built
    with `params`, or a built `plugins.Eraser`), then `plugins.fill` with `fill`/`mean`
    (default `zero`). An eraser that needs no CAM is applied without one.

    A mixing eraser (`mixes = True`: cutmix, cam_cutmix) returns a `Mixed` (images,
    partner_labels, lam) instead: a partner permutation is drawn from `generator` first, a CAM
    eraser gets the partner's CAM (`cam[partner]`, its box lands on the pasted image's peak),
    the partner's pixels are pasted inside the mask (fill `paste`, the default for it; any
    other fill is a ValueError) and lam = 1 - the pasted fraction. `labels` (B,) are required.

    Same shape, dtype and device; `images` and the model (parameters, .grad, BN statistics,
    train/eval flags) are left untouched; works under `torch.no_grad()`. The CAM comes from a
    separate eval-mode pass; the runner's free path (features of the training forward) needs
    `LiveCam(model)(images, labels, features=...)` instead. The CAM is computed in float32
    whatever the caller's autocast, grad mode or inference mode. `logits`: for a model whose
    forward returns more than the logits (B, classes), e.g. `logits=0` for
    `(logits, features)`; see `select_logits`.

    Whether the GAP + linear fast path applies is probed once per (model, layer, image size)
    and cached in `FAST_PATH_CACHE` (`fast_path_cached`). The answer goes stale only if the
    model's structure changes afterwards (e.g. `reset_classifier` to a non-linear head, a
    replaced `forward`): then `FAST_PATH_CACHE.pop(model, None)`. Training the weights never
    changes it.
    """
    eraser = _built(eraser, params)
    check_images(images)
    fill = default_fill("erase_with_model", eraser, fill)
    mixes = is_mixing(eraser)
    if mixes and labels is None:
        raise ValueError(f"{type(eraser).__name__} mixes labels: erase_with_model(model, images, "
                         "labels, ...) needs the labels (B,)")
    cam = (_model_cam(model, images, labels, layer=layer, target=target, logits=logits)
           if eraser.needs_cam else None)
    if mixes:
        partner = partner_permutation(images.shape[0], images.device, generator=generator)
        mask = eraser(images, cam=None if cam is None else cam[partner], generator=generator)
        return Mixed(paste(images, mask, partner), labels[partner], lam_from_mask(mask))
    mask = eraser(images, cam=cam, generator=generator)
    return plugins.fill(images, mask, fill, mean=mean, generator=generator)


def _built(eraser, params: dict) -> plugins.Eraser:
    """``eraser`` itself when built (then no ``params``), else ``plugins.build(eraser,
    **params)``."""
    if isinstance(eraser, plugins.Eraser):
        if params:
            raise ValueError(f"params {sorted(params)} given with a built eraser; pass a registry "
                             "name to build one with them")
        return eraser
    return plugins.build(eraser, **params)


def _model_cam(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None, *,
               layer: str | None, target: str, logits: LogitsSelector) -> torch.Tensor:
    """float32 (B, H, W): the CAM of ``model`` for ``images`` from a separate eval-mode pass
    (the free path when the cached probe says it applies, else Grad-CAM)."""
    check_target(target)
    fast = fast_path_cached(model, layer, tuple(images.shape[-2:]), logits)
    return LiveCam(model, layer=layer, target=target, fast=fast, logits=logits)(images, labels)

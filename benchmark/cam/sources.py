"""CAM sources for erasing: "during" (`LiveCam`, the model being trained: the free path from
the training forward's features where it applies, else Grad-CAM) and "after" (`FrozenCam`, a
frozen model loaded from a checkpoint with `torch.load(..., weights_only=True)`), and
`cam_source`, the runner's one entry."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.cam.context import LogitsSelector, check_images, plain_context
from benchmark.cam.fast_path import fast_path_applies
from benchmark.cam.kernels import cam_from_features, grad_cam
from benchmark.cam.layers import as_model_input
from benchmark.models import eval_mode
from benchmark.suites.vocabulary import CAM_SOURCES as SOURCES
from benchmark.suites.vocabulary import CAM_TARGETS as TARGETS

__all__ = ["FrozenCam", "LiveCam", "cam_source", "check_target", "frozen_cam_fn"]


def check_target(target: str) -> None:
    """One-line ValueError unless ``target`` is a CAM target (`CAM_TARGETS`)."""
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: expected one of {TARGETS}")


def _targets_for(target: str, labels: torch.Tensor | None) -> torch.Tensor | None:
    if target == "label":
        if labels is None:
            raise ValueError("labels=None: target='label' needs the ground-truth labels")
        return labels
    return None


class LiveCam:
    """Source "during": CAMs of the model being trained.

    Call `cam = source(images, labels, features=F)` with the (B, C, h, w) features the
    training forward already computed (`model.forward_features`) to get the free fast path
    when it applies; without features, or when it does not apply (a non-GAP head, an earlier
    layer), it runs `grad_cam` on the live model (eval-mode BN for that call). Either way
    the model, its `.grad` and its BN statistics are untouched. Returns float32 (B, H, W) >= 0,
    the same map under any ambient autocast, grad mode or inference mode (see the module's
    docstring). `logits`: see `select_logits` (for a model whose forward returns more than
    the logits).
    """

    def __init__(self, model: nn.Module, *, layer: str | None = None, target: str = "label",
                 input_size: tuple[int, int] = (32, 32), fast: bool | None = None,
                 logits: LogitsSelector = None):
        """`fast`: whether the fast path applies, if already known (None: probe the model)."""
        check_target(target)
        self.model, self.layer, self.target, self.logits = model, layer, target, logits
        self.fast = (fast_path_applies(model, layer, input_size=input_size, logits=logits)
                     if fast is None else fast)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        check_images(images)
        targets = _targets_for(self.target, labels)
        if not self.fast:
            return grad_cam(self.model, images, targets, layer=self.layer, logits=self.logits)
        with plain_context(images), torch.no_grad():
            if features is None:   # one no-grad eval forward: still cheaper than a backward
                with eval_mode(self.model):
                    features = self.model.forward_features(as_model_input(self.model, images))
            head = self.model.get_classifier()
            if targets is None:     # predicted class from the same features, GAP + linear
                pooled = features.detach().mean(dim=(2, 3)).to(head.weight.dtype)
                targets = head(pooled).argmax(1)
        return cam_from_features(features, head.weight, targets, size=images.shape[-2:])


class FrozenCam(LiveCam):
    """Source "after": CAMs of a frozen model (trained first, without erasing).

    The model is put in eval mode and its parameters stop requiring grad; calls run under
    no_grad on the fast path (or grad_cam otherwise), on the same augmented batch the
    trainee sees. `images` must be normalised as this model expects (`self.mean/std`).
    """

    def __init__(self, model: nn.Module, *, layer: str | None = None, target: str = "label",
                 input_size: tuple[int, int] = (32, 32), mean=None, std=None,
                 logits: LogitsSelector = None):
        model.eval().requires_grad_(False)
        super().__init__(model, layer=layer, target=target, input_size=input_size,
                         logits=logits)
        self.mean, self.std = mean, std

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        """`features` is ignored: the trainee's features are not this model's; it runs its own."""
        return super().__call__(images, labels)


def frozen_cam_fn(checkpoint_path, device: str | torch.device = "cpu", layer: str | None = None,
                  target: str = "label") -> FrozenCam:
    """Load a checkpoint (`benchmark.training.checkpoint.load`, which reads it with
    `torch.load(..., weights_only=True)`: a checkpoint never runs code) as a source "after":
    `fn(images, labels) -> cam`."""
    from benchmark.training import checkpoint

    model, ckpt = checkpoint.load(checkpoint_path, device)
    return FrozenCam(model, layer=layer, target=target, mean=ckpt.get("mean"), std=ckpt.get("std"))


def cam_source(source: str, *, model: nn.Module | None = None, checkpoint: str | None = None,
               device: str | torch.device = "cpu", layer: str | None = None,
               target: str = "label") -> LiveCam:
    """The runner's one entry: "during" wraps the live `model`, "after" loads `checkpoint`."""
    if source == "during":
        if model is None:
            raise ValueError("model=None: source='during' needs the model being trained")
        return LiveCam(model, layer=layer, target=target)
    if source == "after":
        if checkpoint is None:
            raise ValueError("checkpoint=None: source='after' needs the frozen model's "
                             "checkpoint path")
        return frozen_cam_fn(checkpoint, device, layer=layer, target=target)
    raise ValueError(f"source={source!r}: expected one of {SOURCES}")



"""The two CAM kernels: Grad-CAM of any CNN layer (`grad_cam`) and the free GAP + linear path
straight from the features (`cam_from_features`), with the bilinear `resize` both use."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.cam.context import (
    LogitsSelector,
    check_images,
    check_targets,
    normal,
    plain_context,
    select_logits,
)
from benchmark.cam.layers import as_model_input, default_layer, layer_choices, layer_module
from benchmark.models import eval_mode

__all__ = ["cam_from_features", "grad_cam", "resize"]


def resize(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of (B, h, w) maps to (B, *size); keeps >= 0.

    In the maps' dtype (float32 from this module), with the caller's autocast off."""
    with plain_context(cam):
        return F.interpolate(cam[:, None], size=tuple(size), mode="bilinear",
                             align_corners=False)[:, 0]


def grad_cam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None = None, *,
             layer: str | None = None, upsample: bool = True,
             logits: LogitsSelector = None) -> torch.Tensor:
    """Grad-CAM of a whole batch for any CNN: float32 (B, H, W) >= 0, or (B, h, w) if not upsample.

    targets: class per image (B,) (the ground-truth label), or None for the predicted class.
    logits: how to find the logits (B, classes) in the model's output when it is not the
    logits itself (see `select_logits`); otherwise a one-line ValueError.
    Ambient context: the map is the same float32 map under any caller's autocast (switched
    off here), grad mode, `torch.inference_mode` and model train/eval mode.
    images: floating point (B, C, H, W), fed to the forward in the dtype of the model's
    parameters (float32 images into a bfloat16 model work, as in `fast_path_applies`); the
    CAM math is float32. A non-float image or a non-integer target is a one-line ValueError
    naming the refused dtype. The model is never changed (no attribute is added to it).
    layer: a named module with a 4-D output (default: `default_layer`). The forward runs
    in eval mode (`eval_mode`) with the parameters swapped for detached aliases
    (`torch.func.functional_call`), and the layer's output is re-rooted as a fresh leaf:
    autograd then records only the part of the net after the layer and never reaches a
    parameter, so `.grad` of a training step stays as it was. `torch.autograd.grad`, never
    `.backward()`. Works inside `torch.no_grad()` and for inputs that do not require grad.
    A module called several times in one forward contributes its last call.
    """
    check_images(images)
    if targets is not None:
        targets = check_targets(targets, images.shape[0])
    name = layer if layer is not None else default_layer(model, images)
    features, grads = _layer_gradients(model, images, targets, name, logits)
    with plain_context(images), torch.no_grad():
        weights = grads.float().mean(dim=(2, 3))                       # (B, C): w_k^c
        cam = torch.einsum("bc,bchw->bhw", weights, features.detach().float()).relu_()
        return resize(cam, images.shape[-2:]) if upsample else cam


def _rerooting_hook(model: nn.Module, name: str, captured: list[torch.Tensor]):
    """A forward hook that re-roots the layer's 4-D output as a fresh leaf (kept in
    ``captured``), so autograd records only the part of the net after the layer."""

    def reroot(_m, _inp, out):
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            got = f"{out.dim()}-D" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"layer={name!r}: gives a {got} output; CAM needs a 4-D feature map; "
                             f"CAM layers of this model: {layer_choices(model)}")
        leaf = out.detach().requires_grad_(True)
        captured.append(leaf)
        # A clone, not the leaf itself: a later in-place op (ReLU(inplace)) may modify it.
        return leaf.clone()

    return reroot


def _layer_gradients(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None,
                     name: str, logits: LogitsSelector) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, d score / d features) of layer ``name``, both (B, C, h, w): one eval-mode
    forward with detached parameters, one `torch.autograd.grad` of the target scores' sum
    (the predicted class when ``targets`` is None)."""
    captured: list[torch.Tensor] = []
    handle = layer_module(model, name).register_forward_hook(
        _rerooting_hook(model, name, captured))
    try:
        with plain_context(images), torch.enable_grad(), eval_mode(model):
            detached = {n: normal(p.detach()) for n, p in model.named_parameters()}
            x = as_model_input(model, normal(images.detach()))
            out = torch.func.functional_call(model, detached, (x,))
            if not captured:
                raise ValueError(f"layer={name!r}: the module is not called in the model's forward")
            scores = select_logits(out, images.shape[0], logits)
            features = captured[-1]
            cls = scores.argmax(1) if targets is None else targets
            score = scores.gather(1, cls[:, None]).sum()
            (grads,) = torch.autograd.grad(score, features, allow_unused=True)
    finally:
        handle.remove()
    if grads is None:
        raise ValueError(f"layer={name!r}: the logits do not depend on its output")
    return features, grads


def cam_from_features(features: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                      size: tuple[int, int] | None = None) -> torch.Tensor:
    """Grad-CAM of a GAP + linear head straight from its input features: no backward, no forward.

    For logits = W @ mean_ij(F) + b, d s^c / d F^k_ij = W[c, k] / (h w), so Grad-CAM is
    ReLU(sum_k W[c, k] F^k) / (h w): the original CAM up to that scale. features (B, C, h, w)
    (detached here, so the CAM never enters the training graph), weight (classes, C),
    targets (B,). Returns float32 (B, h, w), or (B, *size) bilinearly upsampled.
    Computed in float32 with the caller's autocast off: the same map from the same features
    under any autocast, grad mode or `torch.inference_mode`.
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        raise ValueError("features: expected a (B, C, h, w) tensor, "
                         f"got {getattr(features, 'shape', features)}")
    if (not isinstance(weight, torch.Tensor) or weight.dim() != 2
            or weight.shape[1] != features.shape[1]):
        raise ValueError(f"weight: expected (classes, {features.shape[1]}) to match the features' "
                         f"channels, got {getattr(weight, 'shape', weight)}")
    targets = check_targets(targets, features.shape[0])
    h, w = features.shape[-2:]
    with plain_context(features), torch.no_grad():
        rows = weight.detach().float()[targets] / (h * w)               # (B, C)
        cam = torch.einsum("bc,bchw->bhw", rows, features.detach().float()).relu_()
        return cam if size is None else resize(cam, size)

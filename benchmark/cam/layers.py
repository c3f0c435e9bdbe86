"""Which module a CAM reads: the default layer (declared `cam_layers`, else a probe for the
last module with a 4-D output), the lookup of a named layer with a one-line error listing the
usable ones, and the model's input dtype."""

from __future__ import annotations

import weakref

import torch
from torch import nn

from benchmark.models import eval_mode

__all__ = ["as_model_input", "default_layer", "layer_choices", "layer_module"]


def layer_module(model: nn.Module, layer: str) -> nn.Module:
    """`model.get_submodule(layer)` with a one-line error that lists the usable layers."""
    try:
        return model.get_submodule(layer)
    except AttributeError:
        raise ValueError(f"layer={layer!r}: no such module; CAM layers of this model: "
                         f"{layer_choices(model)}") from None


def layer_choices(model: nn.Module) -> list[str]:
    """The model's declared `cam_layers`, else the named modules seen to give 4-D outputs."""
    if getattr(model, "cam_layers", None):
        return list(model.cam_layers)
    return list(_PROBED.get(model, [])) or ["(run a CAM once to list them)"]


# The 4-D modules a probe found, per model, for error messages (last first). Kept here, not on
# the model: computing a CAM never changes the user's module.
_PROBED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating parameter (or buffer), None if it has none."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def as_model_input(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``images`` in the dtype the model's forward runs in (its parameters' dtype), as
    `fast_path_applies` probes it: float32 images into a bfloat16 model work."""
    dtype = _model_dtype(model)
    return images if dtype is None or images.dtype == dtype else images.to(dtype)


def _probe_4d_modules(model: nn.Module, images: torch.Tensor) -> list[str]:
    """Named modules whose output is (B, C, h, w) with h*w > 1, in the order they finish.

    One eval-mode, no-grad forward of a single image; used only for models that do not
    declare `cam_layers`. A 1x1 output (a global pool kept 4-D) is no feature map.
    """
    seen: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_m, _inp, out, name=name):
            if (isinstance(out, torch.Tensor) and out.dim() == 4
                    and out.shape[-1] * out.shape[-2] > 1):
                if name in seen:
                    seen.remove(name)
                seen.append(name)

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad(), eval_mode(model):
            model(as_model_input(model, images[:1].detach()))
    finally:
        for h in handles:
            h.remove()
    _PROBED[model] = list(reversed(seen))  # for error messages: last first
    return seen


def default_layer(model: nn.Module, images: torch.Tensor | None = None) -> str:
    """The default CAM layer: `model.cam_layers[0]`, else the last module with a 4-D output.

    "Last" means the last to finish its forward, so for a timm ResNet without `cam_layers`
    it is `layer4` (which finishes after its blocks). `images` is needed only for the probe.
    """
    layers = getattr(model, "cam_layers", None)
    if layers:
        return layers[0]
    if images is None:
        raise ValueError("images=None: the model has no cam_layers, so a probe input is needed")
    found = _probe_4d_modules(model, images)
    if not found:
        raise ValueError("model: no module gives a 4-D feature map with more than one position")
    return found[-1]


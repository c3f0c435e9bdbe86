"""The free path's probe: whether a layer feeds a GAP + linear head, so `cam_from_features`
is exact for it (`fast_path_applies`), and the per-model cache of that answer."""

from __future__ import annotations

import weakref

import torch
from torch import nn

from benchmark.cam.context import LogitsSelector, plain_context, select_logits
from benchmark.cam.layers import default_layer, layer_module
from benchmark.models import eval_mode, in_channels

__all__ = ["FAST_PATH_CACHE", "fast_path_applies", "fast_path_cached"]

# model -> {(layer, (H, W)): fast path applies}. Weak keys: a model that is deleted leaves it.
FAST_PATH_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fast_path_applies(model: nn.Module, layer: str | None = None, *,
                      input_size: tuple[int, int] = (32, 32),
                      logits: LogitsSelector = None) -> bool:
    """True when `layer` feeds the head and the head is GAP + linear, so `cam_from_features` is
    exact; False for any other head (e.g. timm's MobileNetV3: a 1x1 conv after the pool, whose
    classifier takes another width than the features), never an error about the head's shapes.

    Checked on the model itself rather than by class name: one eval-mode, no-grad probe of
    two random images (seeded, global RNG untouched) verifies that (1) `forward_features`
    returns the layer's output, (2) `forward_head(F)` equals `get_classifier()(mean_ij F)`
    and (3) `forward(x)` equals `forward_head(forward_features(x))`. Call it once at setup.
    The probe runs in float32 with autocast off, so the answer does not depend on the caller's
    context. A forward that does not return logits (B, classes) raises `select_logits`' error.
    """
    needed = ("forward_features", "forward_head", "get_classifier")
    if (not all(hasattr(model, a) for a in needed)
            or not isinstance(model.get_classifier(), nn.Linear)):
        return False
    try:
        param = next(model.parameters())
    except StopIteration:
        return False
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, in_channels(model), *input_size, generator=gen).to(device=param.device,
                                                                         dtype=param.dtype)
    name = layer if layer is not None else default_layer(model, x)
    module = layer_module(model, name)
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out.clone()))
    try:
        with plain_context(x), torch.no_grad(), eval_mode(model):
            feats = model.forward_features(x)
            scores = select_logits(model(x), x.shape[0], logits)
            if not captured or not isinstance(feats, torch.Tensor) or feats.dim() != 4:
                return False
            if captured[-1].shape != feats.shape or not torch.equal(captured[-1], feats):
                return False
            if model.get_classifier().in_features != feats.shape[1]:
                return False  # a layer between the pool and the classifier (a conv head)
            # Random non-negative features: a max pool or any non-mean head would differ.
            probe = torch.rand(feats.shape, generator=gen).to(feats)
            via_gap = model.get_classifier()(probe.mean(dim=(2, 3)))
            head_ok = torch.allclose(model.forward_head(probe), via_gap, rtol=1e-4, atol=1e-5)
            head = model.forward_head(feats)
            fwd_ok = (isinstance(head, torch.Tensor) and head.shape == scores.shape
                      and torch.allclose(scores, head, rtol=1e-4, atol=1e-5))
    finally:
        handle.remove()
    return bool(head_ok and fwd_ok)


def fast_path_cached(model: nn.Module, layer: str | None, size: tuple[int, int],
                     logits: LogitsSelector = None) -> bool:
    """`fast_path_applies` for (model, layer, image size), probed once and kept in
    `FAST_PATH_CACHE`. The answer goes stale only if the model's structure changes afterwards
    (e.g. `reset_classifier` to a non-linear head): then `FAST_PATH_CACHE.pop(model, None)`."""
    known = FAST_PATH_CACHE.setdefault(model, {})
    key = (layer, tuple(size))
    if key not in known:
        known[key] = fast_path_applies(model, layer, input_size=tuple(size), logits=logits)
    return known[key]

"""Batched Grad-CAM / CAM on the device: the generic path, the free GAP+FC path, peaks, sources.

Everything here works on whole batches with tensor ops and no host synchronisation, so a
training step that asks for a CAM can still be captured in one CUDA graph. Computing a CAM
never changes the model: not its parameters, their `.grad`, BatchNorm buffers or train/eval
mode (see `eval_mode` and `grad_cam` for how).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

import plugins
from benchmark.models import eval_mode
from benchmark.suites.config import CAM_SOURCES as SOURCES
from benchmark.suites.config import CAM_TARGETS as TARGETS
from plugins.geometry import mask_box, peaks

__all__ = ["SOURCES", "TARGETS", "FAST_PATH_CACHE", "FrozenCam", "LiveCam", "cam_boxes",
           "cam_from_features", "cam_source", "erase", "fast_path_applies", "frozen_cam_fn",
           "grad_cam", "peaks", "resize"]  # peaks: the plugins' one rule, re-exported


# --------------------------------------------------------------------------- helpers

def _module(model: nn.Module, layer: str) -> nn.Module:
    """`model.get_submodule(layer)` with a one-line error that lists the usable layers."""
    try:
        return model.get_submodule(layer)
    except AttributeError:
        raise ValueError(f"layer={layer!r}: no such module; CAM layers of this model: "
                         f"{_layer_choices(model)}") from None


def _layer_choices(model: nn.Module) -> list[str]:
    """The model's declared `cam_layers`, else the named modules seen to give 4-D outputs."""
    if getattr(model, "cam_layers", None):
        return list(model.cam_layers)
    return list(getattr(model, "_cam_probe_names", [])) or ["(run a CAM once to list them)"]


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
            model(images[:1].detach())
    finally:
        for h in handles:
            h.remove()
    model._cam_probe_names = list(reversed(seen))  # for error messages: last first
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


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images: expected a float tensor (B, C, H, W), got {shape}")


def _check_targets(targets: torch.Tensor, batch: int) -> torch.Tensor:
    if (not isinstance(targets, torch.Tensor) or targets.shape != (batch,)
            or targets.is_floating_point()):
        shape = (tuple(targets.shape) if isinstance(targets, torch.Tensor)
                 else type(targets).__name__)
        raise ValueError(f"targets: expected an integer tensor of shape ({batch},), got {shape}")
    return targets.long()


def resize(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of (B, h, w) maps to (B, *size); keeps >= 0."""
    return F.interpolate(cam[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


# --------------------------------------------------------------------------- generic Grad-CAM

def grad_cam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None = None, *,
             layer: str | None = None, upsample: bool = True) -> torch.Tensor:
    """Grad-CAM of a whole batch for any CNN: float32 (B, H, W) >= 0, or (B, h, w) if not upsample.

    targets: class per image (B,) (the ground-truth label), or None for the predicted class.
    layer: a named module with a 4-D output (default: `default_layer`). The forward runs
    in eval mode (`eval_mode`) with the parameters swapped for detached aliases
    (`torch.func.functional_call`), and the layer's output is re-rooted as a fresh leaf:
    autograd then records only the part of the net after the layer and never reaches a
    parameter, so `.grad` of a training step stays as it was. `torch.autograd.grad`, never
    `.backward()`. Works inside `torch.no_grad()` and for inputs that do not require grad.
    A module called several times in one forward contributes its last call.
    """
    _check_images(images)
    if targets is not None:
        targets = _check_targets(targets, images.shape[0])
    name = layer if layer is not None else default_layer(model, images)
    module = _module(model, name)

    captured: list[torch.Tensor] = []

    def reroot(_m, _inp, out):
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            got = f"{out.dim()}-D" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"layer={name!r}: gives a {got} output; CAM needs a 4-D feature map; "
                             f"CAM layers of this model: {_layer_choices(model)}")
        leaf = out.detach().requires_grad_(True)
        captured.append(leaf)
        # A clone, not the leaf itself: a later in-place op (ReLU(inplace)) may modify it.
        return leaf.clone()

    detached = {n: p.detach() for n, p in model.named_parameters()}
    handle = module.register_forward_hook(reroot)
    try:
        with torch.enable_grad(), eval_mode(model):
            logits = torch.func.functional_call(model, detached, (images.detach(),))
            if not captured:
                raise ValueError(f"layer={name!r}: the module is not called in the model's forward")
            features = captured[-1]
            cls = logits.argmax(1) if targets is None else targets
            score = logits.gather(1, cls[:, None]).sum()
            (grads,) = torch.autograd.grad(score, features, allow_unused=True)
    finally:
        handle.remove()
    if grads is None:
        raise ValueError(f"layer={name!r}: the logits do not depend on its output")

    weights = grads.float().mean(dim=(2, 3))                       # (B, C): w_k^c
    cam = torch.einsum("bc,bchw->bhw", weights, features.detach().float()).relu_()
    return resize(cam, images.shape[-2:]) if upsample else cam


# --------------------------------------------------------------------------- the fast path

def cam_from_features(features: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                      size: tuple[int, int] | None = None) -> torch.Tensor:
    """Grad-CAM of a GAP + linear head straight from its input features: no backward, no forward.

    For logits = W @ mean_ij(F) + b, d s^c / d F^k_ij = W[c, k] / (h w), so Grad-CAM is
    ReLU(sum_k W[c, k] F^k) / (h w): the original CAM up to that scale. features (B, C, h, w)
    (detached here, so the CAM never enters the training graph), weight (classes, C),
    targets (B,). Returns float32 (B, h, w), or (B, *size) bilinearly upsampled.
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        raise ValueError("features: expected a (B, C, h, w) tensor, "
                         f"got {getattr(features, 'shape', features)}")
    if (not isinstance(weight, torch.Tensor) or weight.dim() != 2
            or weight.shape[1] != features.shape[1]):
        raise ValueError(f"weight: expected (classes, {features.shape[1]}) to match the features' "
                         f"channels, got {getattr(weight, 'shape', weight)}")
    targets = _check_targets(targets, features.shape[0])
    h, w = features.shape[-2:]
    rows = weight.detach().float()[targets] / (h * w)               # (B, C)
    cam = torch.einsum("bc,bchw->bhw", rows, features.detach().float()).relu_()
    return cam if size is None else resize(cam, size)


def fast_path_applies(model: nn.Module, layer: str | None = None, *,
                      input_size: tuple[int, int] = (32, 32)) -> bool:
    """True when `layer` feeds the head and the head is GAP + linear, so `cam_from_features` is
    exact.

    Checked on the model itself rather than by class name: one eval-mode, no-grad probe of
    two random images (seeded, global RNG untouched) verifies that (1) `forward_features`
    returns the layer's output, (2) `forward_head(F)` equals `get_classifier()(mean_ij F)`
    and (3) `forward(x)` equals `forward_head(forward_features(x))`. Call it once at setup.
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
    x = torch.randn(2, 3, *input_size, generator=gen).to(device=param.device, dtype=param.dtype)
    name = layer if layer is not None else default_layer(model, x)
    module = _module(model, name)
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out.clone()))
    try:
        with torch.no_grad(), eval_mode(model):
            feats = model.forward_features(x)
            logits = model(x)
            if not captured or not isinstance(feats, torch.Tensor) or feats.dim() != 4:
                return False
            if captured[-1].shape != feats.shape or not torch.equal(captured[-1], feats):
                return False
            # Random non-negative features: a max pool or any non-mean head would differ.
            probe = torch.rand(feats.shape, generator=gen).to(feats)
            via_gap = model.get_classifier()(probe.mean(dim=(2, 3)))
            head_ok = torch.allclose(model.forward_head(probe), via_gap, rtol=1e-4, atol=1e-5)
            fwd_ok = torch.allclose(logits, model.forward_head(feats), rtol=1e-4, atol=1e-5)
    finally:
        handle.remove()
    return bool(head_ok and fwd_ok)


# --------------------------------------------------------------------------- peaks and boxes

def cam_boxes(cam: torch.Tensor, threshold: float = 0.4) -> torch.Tensor:
    """Bounding box of the pixels >= threshold * max of each map: LongTensor (B, 4)
    (x0, y0, x1, y1).

    The simple reading of the thesis' CAM box (no connected components): all pixels above
    the threshold, inclusive-exclusive corners like the data's boxes. A map whose max is 0
    (or below: never after ReLU) selects every pixel, i.e. the whole image.
    """
    if not isinstance(cam, torch.Tensor) or cam.dim() != 3:
        raise ValueError(f"cam: expected a (B, H, W) tensor, got {getattr(cam, 'shape', cam)}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: expected a fraction of the max in [0, 1], got {threshold}")
    top = cam.flatten(1).amax(dim=1)[:, None, None]
    return mask_box(cam >= threshold * top)


# --------------------------------------------------------------------------- sources

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
    the model, its `.grad` and its BN statistics are untouched. Returns (B, H, W) >= 0.
    """

    def __init__(self, model: nn.Module, *, layer: str | None = None, target: str = "label",
                 input_size: tuple[int, int] = (32, 32), fast: bool | None = None):
        """`fast`: whether the fast path applies, if already known (None: probe the model)."""
        if target not in TARGETS:
            raise ValueError(f"target={target!r}: expected one of {TARGETS}")
        self.model, self.layer, self.target = model, layer, target
        self.fast = fast_path_applies(model, layer, input_size=input_size) if fast is None else fast

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        _check_images(images)
        targets = _targets_for(self.target, labels)
        if not self.fast:
            return grad_cam(self.model, images, targets, layer=self.layer)
        if features is None:   # one no-grad eval forward: still cheaper than a backward
            with torch.no_grad(), eval_mode(self.model):
                features = self.model.forward_features(images)
        head = self.model.get_classifier()
        if targets is None:     # predicted class from the same features, GAP + linear
            with torch.no_grad():
                targets = head(features.detach().mean(dim=(2, 3)).to(head.weight.dtype)).argmax(1)
        return cam_from_features(features, head.weight, targets, size=images.shape[-2:])


class FrozenCam(LiveCam):
    """Source "after": CAMs of a frozen model (trained first, without erasing).

    The model is put in eval mode and its parameters stop requiring grad; calls run under
    no_grad on the fast path (or grad_cam otherwise), on the same augmented batch the
    trainee sees. `images` must be normalised as this model expects (`self.mean/std`).
    """

    def __init__(self, model: nn.Module, *, layer: str | None = None, target: str = "label",
                 input_size: tuple[int, int] = (32, 32), mean=None, std=None):
        model.eval().requires_grad_(False)
        super().__init__(model, layer=layer, target=target, input_size=input_size)
        self.mean, self.std = mean, std

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        """`features` is ignored: the trainee's features are not this model's; it runs its own."""
        return super().__call__(images, labels)


def frozen_cam_fn(checkpoint_path, device: str | torch.device = "cpu", layer: str | None = None,
                  target: str = "label") -> FrozenCam:
    """Load a checkpoint (`benchmark.training.checkpoint.load`) as a source "after":
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


# --------------------------------------------------------------------------- erasing in your loop

# model -> {(layer, (H, W)): fast path applies}. Weak keys: a model that is deleted leaves it.
FAST_PATH_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def erase(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
          eraser="cam_erasing", *, fill: str = "zero", mean=None,
          generator: torch.Generator | None = None, layer: str | None = None,
          target: str = "label", **params) -> torch.Tensor:
    """CAM erasing in your own training loop: the erased copy of `images` (B, C, H, W).

    The CAM of `model` (Grad-CAM of `layer`, default its first `cam_layers`; for the label, or
    the predicted class with `target="predicted"`) goes to `eraser` (a registry name built
    with `params`, or a built `plugins.Eraser`), then `plugins.fill` with `fill`/`mean`. An
    eraser that needs no CAM is applied without one. Same shape, dtype and device; `images`
    and the model (parameters, .grad, BN statistics, train/eval flags) are left untouched;
    works under `torch.no_grad()`. The CAM comes from a separate eval-mode pass; the runner's
    free path (features of the training forward) needs `LiveCam(model)(images, labels,
    features=...)` instead.

    Whether the GAP + linear fast path applies is probed once per (model, layer, image size)
    and cached in `FAST_PATH_CACHE`. The answer goes stale only if the model's structure
    changes afterwards (e.g. `reset_classifier` to a non-linear head, a replaced `forward`):
    then `FAST_PATH_CACHE.pop(model, None)`. Training the weights never changes it.
    """
    if isinstance(eraser, plugins.Eraser):
        if params:
            raise ValueError(f"params {sorted(params)} given with a built eraser; pass a registry "
                             "name to build one with them")
    else:
        eraser = plugins.build(eraser, **params)
    _check_images(images)
    cam = None
    if eraser.needs_cam:
        if target not in TARGETS:
            raise ValueError(f"target={target!r}: expected one of {TARGETS}")
        size = tuple(images.shape[-2:])
        known = FAST_PATH_CACHE.setdefault(model, {})
        key = (layer, size)
        if key not in known:
            known[key] = fast_path_applies(model, layer, input_size=size)
        source = LiveCam(model, layer=layer, target=target, fast=known[key])
        cam = source(images, labels)
    mask = eraser(images, cam=cam, generator=generator)
    return plugins.fill(images, mask, fill, mean=mean, generator=generator)

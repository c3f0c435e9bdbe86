"""Batched Grad-CAM / CAM on the device: the generic path, the free GAP+FC path, peaks, sources.

Everything here works on whole batches with tensor ops and no host synchronisation, so a
training step that asks for a CAM can still be captured in one CUDA graph. Computing a CAM
never changes the model: not its parameters, their `.grad`, BatchNorm buffers or train/eval
mode (see `eval_mode` and `grad_cam` for how).

The caller's ambient torch context never changes a map: every public CAM function
(`grad_cam`, `cam_from_features`, `resize`, `cam_boxes`, `fast_path_applies`, `LiveCam`,
`FrozenCam`, `erase`) computes in float32 with autocast switched off (a bf16/fp16 autocast
region of a mixed-precision training step gives the float32 map, not a half-precision
one), the same under `torch.no_grad()`, `torch.enable_grad()` and `torch.inference_mode()`,
and the same whether the model is in train or eval mode (the model's own forward runs in
the dtype of its parameters).

Models whose forward returns something other than the logits (a `(logits, features)`
tuple, a dict) are refused in one line naming what came back; pass `logits=` (an index,
a key, or a function of the output) to select them.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

import plugins
from benchmark.models import eval_mode, in_channels
from benchmark.suites.config import CAM_SOURCES as SOURCES
from benchmark.suites.config import CAM_TARGETS as TARGETS
from plugins.geometry import mask_box, peaks
from plugins.mixing import (
    PASTE,
    check_mixing_fill,
    is_mixing,
    lam_from_mask,
    partner_permutation,
    paste,
)

__all__ = ["SOURCES", "TARGETS", "FAST_PATH_CACHE", "FrozenCam", "LiveCam", "cam_boxes",
           "cam_from_features", "cam_source", "erase", "fast_path_applies", "frozen_cam_fn",
           "grad_cam", "peaks", "plain_context", "resize", "select_logits"]
# peaks: the plugins' one rule, re-exported


# --------------------------------------------------------------------------- helpers

@contextlib.contextmanager
def plain_context(*tensors: torch.Tensor) -> Iterator[None]:
    """The context every CAM computation runs in, whatever the caller's: autocast off (on the
    CPU and on each given tensor's device type), outside `torch.inference_mode`. Grad mode is
    set by each function itself (`enable_grad` for Grad-CAM's backward, else no_grad)."""
    kinds = dict.fromkeys(["cpu", *(t.device.type for t in tensors
                                    if isinstance(t, torch.Tensor))])
    if torch.cuda.is_available():
        kinds["cuda"] = None
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        for kind in kinds:
            try:
                stack.enter_context(torch.autocast(device_type=kind, enabled=False))
            except RuntimeError:  # a device type without autocast: nothing to switch off
                pass
        yield


def _normal(t: torch.Tensor) -> torch.Tensor:
    """An inference tensor (made under `torch.inference_mode`) as a normal one autograd can use;
    call inside `plain_context`."""
    return t.clone() if t.is_inference() else t


LogitsSelector = int | str | Callable[[Any], torch.Tensor] | None


def _describe(out) -> str:
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {tuple(out.shape)}"
    if isinstance(out, (tuple, list)):
        parts = ", ".join(_describe(o) if isinstance(o, torch.Tensor) else type(o).__name__
                          for o in out[:4])
        return f"a {type(out).__name__} of {len(out)} ({parts}{', ...' if len(out) > 4 else ''})"
    if isinstance(out, dict):
        return f"a {type(out).__name__} with keys {list(out)[:6]}"
    return f"a {type(out).__name__}"


def select_logits(out, batch: int, logits: LogitsSelector = None) -> torch.Tensor:
    """The logits (B, classes) from a model's output: the output itself (logits=None), its
    item `logits` (an int index of a tuple/list or a str key of a dict) or `logits(out)`.

    Raises a one-line ValueError naming what the model returned and how to select the logits
    when the selection fails (whatever the index, key or function raised) or its result is not
    a (batch, classes) tensor."""
    try:
        picked = (out if logits is None else logits(out) if callable(logits)
                  else out[logits])
    except Exception as e:  # noqa: BLE001 - any error of the index, key or user's selector
        raise ValueError(f"logits={logits!r}: cannot select it from the model's output, "
                         f"{_describe(out)} ({type(e).__name__}: {e})") from None
    if isinstance(picked, torch.Tensor) and picked.dim() == 2 and picked.shape[0] == batch:
        return picked
    how = ("pass logits= an index (logits=0), a dict key (logits='logits') or a function of "
           "the output, or wrap the model so its forward returns the logits")
    given = "the model" if logits is None else f"logits={logits!r}"
    raise ValueError(f"model output: CAMs need logits of shape ({batch}, classes), but {given} "
                     f"gave {_describe(picked)}; {how}")


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


def _as_model_input(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
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
            model(_as_model_input(model, images[:1].detach()))
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


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = (f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor)
               else type(images).__name__)
        raise ValueError(f"images: expected a floating-point tensor (B, C, H, W), got {got}")


def _check_targets(targets: torch.Tensor, batch: int) -> torch.Tensor:
    if (not isinstance(targets, torch.Tensor) or targets.shape != (batch,)
            or targets.is_floating_point()):
        got = (f"{targets.dtype} {tuple(targets.shape)}" if isinstance(targets, torch.Tensor)
               else type(targets).__name__)
        raise ValueError(f"targets: expected an integer tensor of shape ({batch},) (class "
                         f"indices), got {got}")
    return targets.long()


def resize(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of (B, h, w) maps to (B, *size); keeps >= 0.

    In the maps' dtype (float32 from this module), with the caller's autocast off."""
    with plain_context(cam):
        return F.interpolate(cam[:, None], size=tuple(size), mode="bilinear",
                             align_corners=False)[:, 0]


# --------------------------------------------------------------------------- generic Grad-CAM

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

    handle = module.register_forward_hook(reroot)
    try:
        with plain_context(images), torch.enable_grad(), eval_mode(model):
            detached = {n: _normal(p.detach()) for n, p in model.named_parameters()}
            x = _as_model_input(model, _normal(images.detach()))
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

    with plain_context(images), torch.no_grad():
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
    targets = _check_targets(targets, features.shape[0])
    h, w = features.shape[-2:]
    with plain_context(features), torch.no_grad():
        rows = weight.detach().float()[targets] / (h * w)               # (B, C)
        cam = torch.einsum("bc,bchw->bhw", rows, features.detach().float()).relu_()
        return cam if size is None else resize(cam, size)


def fast_path_applies(model: nn.Module, layer: str | None = None, *,
                      input_size: tuple[int, int] = (32, 32),
                      logits: LogitsSelector = None) -> bool:
    """True when `layer` feeds the head and the head is GAP + linear, so `cam_from_features` is
    exact.

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
    module = _module(model, name)
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
    with plain_context(cam):
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
    the model, its `.grad` and its BN statistics are untouched. Returns float32 (B, H, W) >= 0,
    the same map under any ambient autocast, grad mode or inference mode (see the module's
    docstring). `logits`: see `select_logits` (for a model whose forward returns more than
    the logits).
    """

    def __init__(self, model: nn.Module, *, layer: str | None = None, target: str = "label",
                 input_size: tuple[int, int] = (32, 32), fast: bool | None = None,
                 logits: LogitsSelector = None):
        """`fast`: whether the fast path applies, if already known (None: probe the model)."""
        if target not in TARGETS:
            raise ValueError(f"target={target!r}: expected one of {TARGETS}")
        self.model, self.layer, self.target, self.logits = model, layer, target, logits
        self.fast = (fast_path_applies(model, layer, input_size=input_size, logits=logits)
                     if fast is None else fast)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                 features: torch.Tensor | None = None) -> torch.Tensor:
        _check_images(images)
        targets = _targets_for(self.target, labels)
        if not self.fast:
            return grad_cam(self.model, images, targets, layer=self.layer, logits=self.logits)
        with plain_context(images), torch.no_grad():
            if features is None:   # one no-grad eval forward: still cheaper than a backward
                with eval_mode(self.model):
                    features = self.model.forward_features(_as_model_input(self.model, images))
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


class Mixed(NamedTuple):
    """What :func:`erase` returns for a mixing eraser (cutmix, cam_cutmix).

    ``images`` (B, C, H, W): image i with image ``partner[i]``'s pixels inside its mask;
    ``partner_labels`` long (B,) = ``labels[partner]``; ``lam`` float32 (B,): the weight of
    the image's own label, 1 - the pasted fraction. The loss is
    ``plugins.mixing.mixed_cross_entropy(logits, labels, partner_labels, lam).mean()``.
    """

    images: torch.Tensor
    partner_labels: torch.Tensor
    lam: torch.Tensor


def erase(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
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

    Same shape, dtype and device; `images`
    and the model (parameters, .grad, BN statistics, train/eval flags) are left untouched;
    works under `torch.no_grad()`. The CAM comes from a separate eval-mode pass; the runner's
    free path (features of the training forward) needs `LiveCam(model)(images, labels,
    features=...)` instead. The CAM is computed in float32 whatever the caller's autocast,
    grad mode or inference mode. `logits`: for a model whose forward returns more than the
    logits (B, classes), e.g. `logits=0` for `(logits, features)`; see `select_logits`.

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
    mixes = is_mixing(eraser)
    fill = fill if fill is not None else (PASTE if mixes else "zero")
    if mixes or fill == PASTE:
        check_mixing_fill("erase", eraser, fill)
    if mixes and labels is None:
        raise ValueError(f"{type(eraser).__name__} mixes labels: erase(model, images, labels, ...) "
                         "needs the labels (B,)")
    cam = None
    if eraser.needs_cam:
        if target not in TARGETS:
            raise ValueError(f"target={target!r}: expected one of {TARGETS}")
        size = tuple(images.shape[-2:])
        known = FAST_PATH_CACHE.setdefault(model, {})
        key = (layer, size)
        if key not in known:
            known[key] = fast_path_applies(model, layer, input_size=size, logits=logits)
        source = LiveCam(model, layer=layer, target=target, fast=known[key], logits=logits)
        cam = source(images, labels)
    if mixes:
        partner = partner_permutation(images.shape[0], images.device, generator=generator)
        mask = eraser(images, cam=None if cam is None else cam[partner], generator=generator)
        return Mixed(paste(images, mask, partner), labels[partner], lam_from_mask(mask))
    mask = eraser(images, cam=cam, generator=generator)
    return plugins.fill(images, mask, fill, mean=mean, generator=generator)

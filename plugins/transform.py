"""Any eraser as a torchvision v2 transform: ``plugins.Erase(name_or_eraser, fill, **params)``.

A functional core, :func:`erase` (images -> erased copy), and a thin class, :class:`Erase`
(a ``torchvision.transforms.v2.Transform``, hence an ``nn.Module``), in the style of
torchvision's transforms v2. As ``v2.RandomErasing``, one call makes one draw that is applied
to every image of the sample (an image and its depth map, two views, get the same region);
unlike it, a batch tensor gets one mask per image, drawn by the batched eraser without host
synchronisation.

>>> from torchvision.transforms import v2
>>> transform = v2.Compose([v2.PILToTensor(), plugins.Erase("random_erasing", "random")])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import PIL.Image
import torch
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from plugins.base import Eraser, check_channels_first, check_choice
from plugins.fill import FILL_MODES, _keep_layout, check_fill_dtype, fill
from plugins.mixing import (
    PASTE,
    check_mixing_fill,
    is_mixing,
    lam_from_mask,
    partner_permutation,
    paste,
)
from plugins.registry import build

__all__ = ["Erase", "erase", "mix"]

# What torchvision's RandomErasing warns about and passes through unchanged.
_NOT_ERASED = tuple(
    getattr(tv_tensors, name) for name in ("BoundingBoxes", "KeyPoints", "Mask")
    if hasattr(tv_tensors, name)
)


def _check_images(images, video: bool) -> None:
    """One-line errors for what `erase` cannot take: not a tensor, too few dims, a dtype the
    fills cannot write, channels last."""
    owner = "Erase"
    if not isinstance(images, torch.Tensor) or images.ndim < (4 if video else 2):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        want = "(..., T, C, H, W) video" if video else "(H, W), (C, H, W) or (..., C, H, W) tensor"
        raise ValueError(f"{owner}: images must be a {want}, got {got}")
    check_fill_dtype(owner, images.dtype)
    check_channels_first(owner, images.shape)


def _draw_key(images: torch.Tensor, video: bool) -> tuple[int, int, int]:
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
    _check_images(images, video)
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
    fill_mode: str = "zero",
    *,
    mean: torch.Tensor | Sequence[float] | float | None = None,
    generator: torch.Generator | None = None,
    video: bool = False,
) -> torch.Tensor:
    """Filled copy of ``images`` (any shape `erase` takes) where ``mask`` (N, 1, H, W) is True;
    shape, dtype, device and memory format kept."""
    _check_images(images, video)
    shape = images.shape
    source = images[None] if images.ndim == 2 else images
    channels, height, width = source.shape[-3:]
    if not video:
        flat = source.reshape(-1, channels, height, width)
        out = fill(flat, mask, fill_mode, mean=mean, generator=generator)
        return _keep_layout(out.reshape(shape), images)
    frames = shape[-4]
    clips = source.reshape(-1, frames, channels, height, width)
    # Frames stacked along H, (N, C, T*H, W): one fill call, and "channel" draws one colour
    # per clip and channel.
    n = clips.shape[0]
    tall = clips.transpose(1, 2).reshape(n, channels, frames * height, width)
    tall_mask = mask[:, :, None].expand(n, 1, frames, height, width)
    out = fill(tall, tall_mask.reshape(n, 1, frames * height, width), fill_mode, mean=mean,
               generator=generator)
    out = out.reshape(n, channels, frames, height, width).transpose(1, 2).reshape(shape)
    return _keep_layout(out, images)


def erase(
    images: torch.Tensor,
    eraser: Eraser,
    fill_mode: str = "zero",
    *,
    mean: torch.Tensor | Sequence[float] | float | None = None,
    generator: torch.Generator | None = None,
    cam: torch.Tensor | None = None,
    video: bool = False,
) -> torch.Tensor:
    """Erased copy of ``images``: one mask per image, then ``fill``.

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
            f"erase: {type(eraser).__name__} is a mixing eraser (it pastes another image of the "
            "batch and mixes the labels); use plugins.transform.mix(images, labels, eraser, "
            "num_classes=...) or Erase(...)(images, labels)"
        )
    mask = draw_mask(images, eraser, generator=generator, cam=cam, video=video)
    return fill_mask(images, mask, fill_mode, mean=mean, generator=generator, video=video)


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
    owner = "Erase"
    if not is_mixing(eraser):
        raise ValueError(f"{owner}: mix needs a mixing eraser (mixes = True); "
                         f"{type(eraser).__name__} only masks: use erase")
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{owner}: {type(eraser).__name__} mixes the images of a batch: call it "
                         f"on a batch (B, C, H, W) with its labels, Erase(...)(images, labels); "
                         f"got {got}")
    _check_images(images, False)
    soft = _soft_labels(labels, num_classes, owner)
    if soft.shape[0] != images.shape[0]:
        raise ValueError(f"{owner}: {images.shape[0]} images but {soft.shape[0]} labels")
    partner = partner_permutation(images.shape[0], images.device, generator=generator)
    if eraser.needs_cam and cam is None:
        raise ValueError(f"{owner}: {type(eraser).__name__} needs a CAM: pass cam= (B, H, W) or "
                         "use benchmark.cam.erase(model, images, labels)")
    if cam is not None:
        _check_cam(cam, images, False)
        cam = cam[partner]
    mask = draw_mask(images, eraser, generator=generator, cam=cam)
    lam = lam_from_mask(mask).to(soft.device)[:, None]
    return paste(images, mask, partner), lam * soft + (1.0 - lam) * soft[partner]


def _is_plain_tensor(inpt: Any) -> bool:
    return isinstance(inpt, torch.Tensor) and not isinstance(inpt, tv_tensors.TVTensor)


def _mix(worker_seed: int, seed: int) -> int:
    """A 64-bit seed from a DataLoader worker's seed and the generator's own seed."""
    return (worker_seed * 0x9E3779B97F4A7C15 + seed) % 2**64


class Erase(v2.Transform):
    """Erase the image(s) of a sample with a registered eraser; identity in ``eval()`` mode.

    ``Erase("cutout", size=8)`` builds the eraser by name (``plugins.build``), ``Erase(eraser)``
    takes a built one. Inputs, as torchvision's v2 transforms read them: a tensor (H, W),
    (C, H, W) or (..., C, H, W), a ``tv_tensors.Image`` or ``tv_tensors.Video`` (one mask per
    video), or a v2 sample (tuple/dict). One call makes one draw, applied to every image-like
    entry of the sample (every Image/Video; a plain tensor only when the sample has none, and
    then only the first, v2's rule); a batch tensor keeps one mask per image. Entries that
    share a draw must have the same leading shape and (H, W) (channel counts may differ).
    Labels pass through; boxes, key points and masks pass through with torchvision's warning
    that they are not erased. Dtypes: uint8 (fill values in 0-255; ``random`` draws integers in
    [0, 255]) or any floating dtype. The output has the input's type, shape, dtype, device and
    memory format; the input is never modified. With ``p=0`` (and in ``eval()``) the input
    object itself is returned.

    Mixing erasers (``mixes = True``: ``cutmix``, ``cam_cutmix``) work as torchvision's
    ``v2.CutMix``: on a batch with its labels, ``Erase("cutmix", num_classes=10)(images,
    labels)`` returns ``(mixed images, soft labels float32 (B, num_classes))`` (see
    :func:`mix`; ``num_classes`` may be left out when the labels are already (B, num_classes));
    a single image or a call without labels is a one-line ``ValueError``. Their fill is
    ``paste`` (the default for them; any other fill is refused). In ``eval()`` the sample is
    returned unchanged (labels stay as given).

    ``fill``: ``zero`` (the default for mask erasers), ``mean`` (``mean``: one value for any
    channel count, or one per channel), ``random``, ``channel`` (see ``plugins.fill``), ``paste``
    (mixing erasers only). ``generator`` (on the images'
    device) makes the draws reproducible; in a DataLoader worker it is re-seeded from the
    worker's seed (``torch.utils.data.get_worker_info().seed`` mixed with the generator's own
    seed), so workers and epochs draw differently while a seeded run stays reproducible.
    CAM erasers need ``cam=`` in the call, shaped like the draw ((..., H, W));
    ``benchmark.cam.erase`` computes the CAM from a model.
    """

    _transformed_types = (_is_plain_tensor, tv_tensors.Image, tv_tensors.Video)

    def __init__(
        self,
        name_or_eraser: str | Eraser,
        fill: str | None = None,
        *,
        mean: torch.Tensor | Sequence[float] | float | None = None,
        generator: torch.Generator | None = None,
        num_classes: int | None = None,
        **params,
    ):
        super().__init__()
        if isinstance(name_or_eraser, Eraser):
            if params:
                raise ValueError(
                    f"Erase: got an eraser instance and parameters {', '.join(sorted(params))}; "
                    "pass parameters with a registry name, Erase(name, **params)"
                )
            self.eraser = name_or_eraser
        elif isinstance(name_or_eraser, str):
            self.eraser = build(name_or_eraser, **params)
        else:
            raise TypeError(
                "Erase: name_or_eraser must be a registry name or a plugins.Eraser, "
                f"got {type(name_or_eraser).__name__}"
            )
        self.mixes = is_mixing(self.eraser)
        if fill is None:
            fill = PASTE if self.mixes else "zero"
        if fill == PASTE or self.mixes:
            check_mixing_fill("Erase", self.eraser, fill)
            self.fill = fill
        else:
            self.fill = check_choice("Erase", "fill", fill, FILL_MODES)
        self.num_classes = num_classes
        if fill == "mean" and mean is None:
            raise ValueError(
                "Erase: fill='mean' needs mean=<one value, or one per channel, in the images' "
                "units>"
            )
        self.mean = mean
        self.generator = generator
        self._worker_seed = None  # the DataLoader worker seed the generator was re-seeded from

    def check_inputs(self, flat_inputs: list[Any]) -> None:
        if any(isinstance(inpt, PIL.Image.Image) for inpt in flat_inputs):
            raise TypeError(
                "Erase() does not support PIL images; apply v2.ToImage() first (or "
                "v2.PILToTensor())"
            )

    def _reseed_in_worker(self) -> None:
        """In a DataLoader worker, re-seed the (copied) generator once per worker seed."""
        if self.generator is None:
            return
        info = torch.utils.data.get_worker_info()
        if info is None or info.seed == self._worker_seed:
            return
        # A worker holds a fresh copy of the transform (per epoch unless persistent_workers),
        # so initial_seed() is still the seed the user gave the generator.
        self._worker_seed = info.seed
        self.generator.manual_seed(_mix(info.seed, self.generator.initial_seed()))

    def forward(self, *inputs: Any, cam: torch.Tensor | None = None) -> Any:
        """Erase the image(s) in ``inputs`` (training mode); return them unchanged in eval."""
        sample = inputs if len(inputs) > 1 else inputs[0]
        if not self.training:
            return sample
        if self.mixes:
            return self._mix(sample, cam)
        if getattr(self.eraser, "p", None) == 0:
            return sample
        if cam is None and self.eraser.needs_cam:
            raise ValueError(
                f"Erase: {type(self.eraser).__name__} needs a CAM: call Erase(...)(images, "
                "cam=cam) or use benchmark.cam.erase(model, images, labels)"
            )
        flat_inputs, spec = tree_flatten(sample)
        self.check_inputs(flat_inputs)
        needs = self._needs_transform_list(flat_inputs)
        images = [inpt for inpt, need in zip(flat_inputs, needs, strict=True) if need]
        for inpt in flat_inputs:
            if isinstance(inpt, _NOT_ERASED):
                warnings.warn(
                    f"Erase() is currently passing through inputs of type "
                    f"tv_tensors.{type(inpt).__name__}. This will likely change in the future.",
                    stacklevel=2,
                )
        if not images:
            if cam is not None:
                raise ValueError("Erase: cam= given but the sample holds no image to erase")
            return sample
        self._reseed_in_worker()
        params = self.make_params(images, cam)
        flat_outputs = [self.transform(inpt, params) if need else inpt
                        for inpt, need in zip(flat_inputs, needs, strict=True)]
        return tree_unflatten(flat_outputs, spec)

    def _mix(self, sample: Any, cam: torch.Tensor | None) -> Any:
        """A mixing eraser: ``(images, labels)`` -> ``(mixed images, soft labels)``."""
        if not (isinstance(sample, (tuple, list)) and len(sample) == 2
                and isinstance(sample[1], torch.Tensor)):
            raise ValueError(
                f"Erase: {type(self.eraser).__name__} mixes the images of a batch and their "
                "labels: call Erase(...)(images, labels) on a batch (B, C, H, W) with labels (B,) "
                "or (B, num_classes), as torchvision's v2.CutMix"
            )
        images, labels = sample
        if isinstance(images, PIL.Image.Image):
            self.check_inputs([images])
        if isinstance(images, tv_tensors.Video):
            raise ValueError("Erase: mixing erasers take image batches (B, C, H, W), not videos")
        self._reseed_in_worker()
        mixed, soft = mix(images.as_subclass(torch.Tensor), labels, self.eraser,
                          num_classes=self.num_classes, generator=self.generator, cam=cam)
        if isinstance(images, tv_tensors.TVTensor):
            mixed = tv_tensors.wrap(mixed, like=images)
        return type(sample)((mixed, soft))

    def make_params(self, flat_inputs: list[Any], cam: torch.Tensor | None = None
                    ) -> dict[str, Any]:
        """One draw for the call: the mask (N, 1, H, W) of the first image-like entry, checked
        against every other one."""
        first = flat_inputs[0]
        keys = []
        for inpt in flat_inputs:
            video = isinstance(inpt, tv_tensors.Video)
            _check_images(inpt, video)
            keys.append(_draw_key(inpt, video))
        if len(set(keys)) > 1:
            shapes = ", ".join(str(tuple(inpt.shape)) for inpt in flat_inputs)
            raise ValueError(
                f"Erase: the images of one sample share one draw, so they need the same leading "
                f"shape and (H, W); got {shapes}"
            )
        mask = draw_mask(first.as_subclass(torch.Tensor), self.eraser, generator=self.generator,
                         cam=cam, video=isinstance(first, tv_tensors.Video))
        return {"mask": mask}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = fill_mask(inpt.as_subclass(torch.Tensor), params["mask"], self.fill,
                        mean=self.mean, generator=self.generator,
                        video=isinstance(inpt, tv_tensors.Video))
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out

    def extra_repr(self) -> str:
        mean = "" if self.mean is None else f", mean={self.mean!r}"
        return f"{self.eraser!r}, fill={self.fill!r}{mean}"

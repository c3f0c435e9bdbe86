"""Any eraser as a torchvision v2 transform: ``plugins.Erase(name_or_eraser, fill, **params)``.

A thin class, :class:`Erase` (a ``torchvision.transforms.v2.Transform``, hence an
``nn.Module``), over the functional core in ``plugins/functional.py`` (:func:`apply_eraser`:
images -> erased copy; :func:`mix`), in the style of torchvision's transforms v2. As
``v2.RandomErasing``, one call makes one draw that is applied to every image of the sample
(an image and its depth map, two views, get the same region); unlike it, a batch tensor gets
one mask per image, drawn by the batched eraser without host synchronisation.

>>> from torchvision.transforms import v2
from torchvision.transforms.v2._utils import _parse_labels_getter
>>> transform = v2.Compose([v2.PILToTensor(), plugins.Erase("random_erasing", "random")])
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import PIL.Image
import torch
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2._utils import _parse_labels_getter  # v2.CutMix's labels_getter

from plugins.base import Eraser, check_choice
from plugins.fill import FILL_MODES, check_mean
from plugins.functional import (
    apply_eraser,
    check_erase_input,
    draw_key,
    draw_mask,
    fill_mask,
    mix,
    mix_draw,
)
from plugins.mixing import check_num_classes, default_fill, is_mixing, paste
from plugins.registry import build

__all__ = ["Erase", "apply_eraser", "draw_mask", "erase", "fill_mask", "mix"]

# What torchvision's RandomErasing warns about and passes through unchanged.
_NOT_ERASED = tuple(
    getattr(tv_tensors, name) for name in ("BoundingBoxes", "KeyPoints", "Mask")
    if hasattr(tv_tensors, name)
)


def erase(*args, **kwargs) -> torch.Tensor:
    """Deprecated name of :func:`plugins.functional.apply_eraser` (same arguments)."""
    warnings.warn("plugins.transform.erase is now plugins.functional.apply_eraser",
                  DeprecationWarning, stacklevel=2)
    if "fill_mode" in kwargs:  # the old keyword, read as the new one
        if "fill" in kwargs:
            raise TypeError("erase: give fill= (fill_mode= is its old name), not both")
        kwargs["fill"] = kwargs.pop("fill_mode")
    return apply_eraser(*args, **kwargs)


def _is_plain_tensor(inpt: Any) -> bool:
    return isinstance(inpt, torch.Tensor) and not isinstance(inpt, tv_tensors.TVTensor)


def _worker_seed(worker_seed: int, seed: int) -> int:
    """A 64-bit seed from a DataLoader worker's seed and the generator's own seed."""
    return (worker_seed * 0x9E3779B97F4A7C15 + seed) % 2**64


def _eraser_of(name_or_eraser, params: dict) -> Eraser:
    """Erase's eraser: the instance given (then no params), or the registry name built with
    `params`; one that depends on the epoch is refused (a transform has no epoch)."""
    if isinstance(name_or_eraser, Eraser):
        if params:
            raise ValueError(
                f"Erase: got an eraser instance and parameters {', '.join(sorted(params))}; "
                "pass parameters with a registry name, Erase(name, **params)"
            )
        eraser = name_or_eraser
    elif isinstance(name_or_eraser, str):
        eraser = build(name_or_eraser, **params)
    else:
        raise TypeError(
            "Erase: name_or_eraser must be a registry name or a plugins.Eraser, "
            f"got {type(name_or_eraser).__name__}"
        )
    if getattr(eraser, "depends_on_epoch", False):  # e.g. GridMask's ramp_epochs
        raise ValueError(
            f"Erase: {eraser!r} depends on the epoch (its probability ramps); a "
            "transform has no epoch: build Erase(eraser.at_epoch(epoch)) for each epoch, or "
            "leave the ramp out"
        )
    return eraser


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
    ``benchmark.cam.erase_with_model`` computes the CAM from a model.
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
        labels_getter: Any = "default",
        **params,
    ):
        super().__init__()
        self.eraser = _eraser_of(name_or_eraser, params)
        self.mixes = is_mixing(self.eraser)
        fill = default_fill("Erase", self.eraser, fill)
        self.fill = fill if self.mixes else check_choice("Erase", "fill", fill, FILL_MODES)
        # Every argument is checked here, in one line, as torchvision's transforms check theirs.
        self.num_classes = check_num_classes("Erase", num_classes)
        name = type(self.eraser).__name__
        if num_classes is not None and not self.mixes:
            raise ValueError(f"Erase: num_classes is for mixing erasers (cutmix, cam_cutmix), "
                             f"which mix labels; {name} only masks: leave it out")
        if not self.mixes and labels_getter != "default":
            raise ValueError(f"Erase: labels_getter is for mixing erasers (cutmix, cam_cutmix), "
                             f"which mix labels; {name} only masks: leave it out")
        try:
            self._labels_getter = _parse_labels_getter(labels_getter)
        except ValueError as e:
            raise ValueError(f"Erase: {e}") from None
        if fill == "mean" and mean is None:
            raise ValueError(
                "Erase: fill='mean' needs mean=<one value, or one per channel, in the images' "
                "units>"
            )
        if mean is not None:
            check_mean("Erase", mean)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"Erase: generator must be a torch.Generator (on the images' device) "
                            f"or None, got {type(generator).__name__}")
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
        self.generator.manual_seed(_worker_seed(info.seed, self.generator.initial_seed()))

    def forward(self, *inputs: Any, cam: torch.Tensor | None = None) -> Any:
        """Erase the image(s) in ``inputs`` (training mode); return them unchanged in eval."""
        sample = inputs if len(inputs) > 1 else inputs[0]
        if not self.training:
            return sample
        if self.mixes:
            return self._mix_batch(sample, cam)
        if getattr(self.eraser, "p", None) == 0:
            return sample
        if cam is None and self.eraser.needs_cam:
            raise ValueError(
                f"Erase: {type(self.eraser).__name__} needs a CAM: call Erase(...)(images, "
                "cam=cam) or use benchmark.cam.erase_with_model(model, images, labels)"
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

    def _mix_batch(self, sample: Any, cam: torch.Tensor | None) -> Any:
        """A mixing eraser on a v2 sample, found as torchvision's ``v2.CutMix`` finds them: the
        labels by the labels getter (default: a tuple's second item, or a dict's ``labels``
        key, else the first key containing ``label``; a tuple whose second item is such a
        dict), the images among the rest by v2's rule (every Image; a plain tensor only when
        there is none, then the first). Every image entry gets the same partner and mask; the
        labels become soft labels (B, num_classes); the rest passes through."""
        name = type(self.eraser).__name__
        usage = (f"Erase: {name} mixes the images of a batch and their labels: call "
                 "Erase(...)(images, labels) on a batch (B, C, H, W) with labels (B,) or "
                 "(B, num_classes), or on a dict with 'image' and 'label' entries, as "
                 "torchvision's v2.CutMix")
        flat_inputs, spec = tree_flatten(sample)
        if any(isinstance(inpt, (PIL.Image.Image, *_NOT_ERASED)) for inpt in flat_inputs):
            raise ValueError(f"Erase: {name} mixes image batches; PIL images, boxes, key points "
                             "and masks are not supported (as v2.CutMix)")
        try:
            labels = self._labels_getter(sample)
        except (ValueError, IndexError, KeyError, TypeError):
            raise ValueError(usage) from None
        at = next((i for i, inpt in enumerate(flat_inputs) if inpt is labels), None)
        if not isinstance(labels, torch.Tensor) or at is None:
            raise ValueError(usage)
        where = self._mixed_images(flat_inputs, at, usage)
        first = flat_inputs[where[0]]
        self._reseed_in_worker()
        for i in where[1:]:
            check_erase_input(flat_inputs[i], False)
        mixed, soft, mask, partner = mix_draw(first.as_subclass(torch.Tensor), labels,
                                              self.eraser, num_classes=self.num_classes,
                                              generator=self.generator, cam=cam)
        out = list(flat_inputs)
        for i in where:
            inpt = flat_inputs[i]
            done = mixed if i == where[0] else paste(inpt.as_subclass(torch.Tensor), mask,
                                                     partner)
            out[i] = tv_tensors.wrap(done, like=inpt) if isinstance(
                inpt, tv_tensors.TVTensor) else done
        out[at] = soft
        return tree_unflatten(out, spec)

    def _mixed_images(self, flat_inputs: list[Any], at: int, usage: str) -> list[int]:
        """The positions of a flattened sample's images to mix, by v2's rule, besides the labels
        at `at`: one line when there are none, a video, or images of different batch sizes or
        (H, W) (they share one draw)."""
        rest = [i for i in range(len(flat_inputs)) if i != at]
        needs = self._needs_transform_list([flat_inputs[i] for i in rest])
        where = [i for i, need in zip(rest, needs, strict=True) if need]
        if not where:
            raise ValueError(usage)
        for i in where:
            if isinstance(flat_inputs[i], tv_tensors.Video):
                raise ValueError("Erase: mixing erasers take image batches (B, C, H, W), not "
                                 "videos")
        shapes = {(x.shape[0], *x.shape[-2:]) if x.ndim == 4 else tuple(x.shape)
                  for x in (flat_inputs[i] for i in where)}
        if len(shapes) > 1:
            raise ValueError(f"Erase: the images of one sample share one draw, so they need the "
                             f"same batch size and (H, W); got "
                             f"{', '.join(str(tuple(flat_inputs[i].shape)) for i in where)}")
        return where

    def make_params(self, flat_inputs: list[Any], cam: torch.Tensor | None = None
                    ) -> dict[str, Any]:
        """One draw for the call: the mask (N, 1, H, W) of the first image-like entry, checked
        against every other one."""
        first = flat_inputs[0]
        keys = []
        for inpt in flat_inputs:
            video = isinstance(inpt, tv_tensors.Video)
            check_erase_input(inpt, video)
            keys.append(draw_key(inpt, video))
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

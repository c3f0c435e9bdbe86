"""Any eraser as a torchvision v2 transform: ``plugins.Erase(name_or_eraser, fill, **params)``.

A functional core, :func:`erase` (images -> erased copy), and a thin class, :class:`Erase`
(a ``torchvision.transforms.v2.Transform``, hence an ``nn.Module``), in the style of
torchvision's transforms v2. Unlike torchvision's ``v2.RandomErasing``, which draws one
rectangle per call (so a whole batch gets the same one), every image of a batch gets its
own mask, drawn by the batched eraser without host synchronisation.

>>> from torchvision.transforms import v2
>>> transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
...                         plugins.Erase("random_erasing", p=1.0)])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from plugins.base import Eraser, check_channels_first, check_choice
from plugins.fill import FILL_MODES, fill
from plugins.registry import build

__all__ = ["Erase", "erase"]


def _check_inputs(images, cam, video: bool) -> None:
    """One-line errors for what `erase` cannot take: not a tensor, too few dims, integers,
    channels last, a CAM of the wrong shape."""
    owner = "Erase"
    if not isinstance(images, torch.Tensor) or images.ndim < (4 if video else 3):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        want = "(..., T, C, H, W) video" if video else "(C, H, W) or (..., C, H, W) tensor"
        raise ValueError(f"{owner}: images must be a {want}, got {got}")
    if not images.is_floating_point():
        raise TypeError(
            f"{owner}: images must be floating point, got {images.dtype}; apply "
            "v2.ToDtype(torch.float32, scale=True) first (fills are written in float space)"
        )
    check_channels_first(owner, images.shape)
    lead, (height, width) = images.shape[:-4] if video else images.shape[:-3], images.shape[-2:]
    if cam is not None and (not isinstance(cam, torch.Tensor)
                            or tuple(cam.shape) != (*lead, height, width)):
        got = tuple(cam.shape) if isinstance(cam, torch.Tensor) else type(cam).__name__
        raise ValueError(f"{owner}: cam must have shape {(*lead, height, width)}, got {got}")


def erase(
    images: torch.Tensor,
    eraser: Eraser,
    fill_mode: str = "zero",
    *,
    mean: torch.Tensor | Sequence[float] | None = None,
    generator: torch.Generator | None = None,
    cam: torch.Tensor | None = None,
    video: bool = False,
) -> torch.Tensor:
    """Erased copy of float ``images`` (..., C, H, W): one mask per image, then ``fill``.

    Leading dimensions are flattened into one batch for the eraser, so one image (C, H, W),
    a batch (B, C, H, W) or any (..., C, H, W) works; shape, dtype and device are kept and
    the input is never modified. ``video=True`` reads (..., T, C, H, W) and draws one mask
    per video, shared by its T frames (torchvision erases the same region in every frame);
    "channel" fill then gives each video one colour. ``cam`` has the images' leading shape
    (without T) followed by (H, W).
    """
    _check_inputs(images, cam, video)
    shape = images.shape
    channels, height, width = shape[-3:]
    flat_cam = None if cam is None else cam.reshape(-1, height, width)
    if not video:
        flat = images.reshape(-1, channels, height, width)
        mask = eraser(flat, cam=flat_cam, generator=generator)
        return fill(flat, mask, fill_mode, mean=mean, generator=generator).reshape(shape)
    frames = shape[-4]
    clips = images.reshape(-1, frames, channels, height, width)
    mask = eraser(clips[:, 0], cam=flat_cam, generator=generator)  # (N, 1, H, W), one per clip
    # Frames stacked along H, (N, C, T*H, W): one fill call, and "channel" draws one colour
    # per clip and channel.
    n = clips.shape[0]
    tall = clips.transpose(1, 2).reshape(n, channels, frames * height, width)
    tall_mask = mask[:, :, None].expand(n, 1, frames, height, width)
    out = fill(tall, tall_mask.reshape(n, 1, frames * height, width), fill_mode, mean=mean,
               generator=generator)
    return out.reshape(n, channels, frames, height, width).transpose(1, 2).reshape(shape)


def _is_plain_tensor(inpt: Any) -> bool:
    return isinstance(inpt, torch.Tensor) and not isinstance(inpt, tv_tensors.TVTensor)


def _is_image(inpt: Any) -> bool:
    """What Erase transforms: a plain tensor, a tv_tensors.Image or a tv_tensors.Video."""
    return _is_plain_tensor(inpt) or isinstance(inpt, tv_tensors.Image | tv_tensors.Video)


class Erase(v2.Transform):
    """Erase each image of a batch with a registered eraser; identity in ``eval()`` mode.

    ``Erase("cutout", size=8)`` builds the eraser by name (``plugins.build``), ``Erase(eraser)``
    takes a built one. Inputs: a float tensor (C, H, W) or (..., C, H, W), a
    ``tv_tensors.Image`` or ``tv_tensors.Video`` (one mask per video), or a v2 sample
    (tuple/dict) holding one, whose other entries (labels, boxes, masks) pass through. The
    output has the input's type, shape, dtype and device; the input is never modified. PIL
    images and uint8 tensors are refused with the v2 transforms that fix them.

    ``generator`` (on the images' device) makes the draws reproducible; leave it None in
    DataLoader workers, whose torch RNG is seeded per worker, while a generator is copied
    into every worker with the same state. CAM erasers need ``cam=`` in the call (one
    tensor of images only); ``benchmark.cam.erase`` computes the CAM from a model.
    """

    _transformed_types = (_is_plain_tensor, tv_tensors.Image, tv_tensors.Video)

    def __init__(
        self,
        name_or_eraser: str | Eraser,
        fill: str = "zero",
        *,
        mean: torch.Tensor | Sequence[float] | None = None,
        generator: torch.Generator | None = None,
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
        self.fill = check_choice("Erase", "fill", fill, FILL_MODES)
        if fill == "mean" and mean is None:
            raise ValueError("Erase: fill='mean' needs mean=<C per-channel values>")
        self.mean = mean
        self.generator = generator

    def check_inputs(self, flat_inputs: list[Any]) -> None:
        if any(isinstance(inpt, PIL.Image.Image) for inpt in flat_inputs):
            raise TypeError(
                "Erase() does not support PIL images; apply v2.ToImage() first "
                "(then v2.ToDtype(torch.float32, scale=True))"
            )

    def forward(self, *inputs: Any, cam: torch.Tensor | None = None) -> Any:
        """Erase the image(s) in ``inputs`` (training mode); return them unchanged in eval."""
        if not self.training:
            return inputs if len(inputs) > 1 else inputs[0]
        if cam is None:
            if self.eraser.needs_cam:
                raise ValueError(
                    f"Erase: {type(self.eraser).__name__} needs a CAM: call Erase(...)(images, "
                    "cam=cam) or use benchmark.cam.erase(model, images, labels)"
                )
            return super().forward(*inputs)
        if len(inputs) != 1 or not _is_image(inputs[0]):
            raise ValueError("Erase: with cam=, pass the images alone (one tensor), not a sample")
        return self.transform(inputs[0], {"cam": cam})

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = erase(
            inpt.as_subclass(torch.Tensor), self.eraser, self.fill, mean=self.mean,
            generator=self.generator, cam=params.get("cam"),
            video=isinstance(inpt, tv_tensors.Video),
        )
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out

    def extra_repr(self) -> str:
        mean = "" if self.mean is None else f", mean={self.mean!r}"
        return f"{self.eraser!r}, fill={self.fill!r}{mean}"

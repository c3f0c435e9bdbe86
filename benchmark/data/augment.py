"""The device-resident input pipeline: batched pad-crop / flip / normalise, and the loader.

Everything is whole-batch tensor ops on the data's device with per-sample randomness and
no host synchronisation, so a training step (batch gather + augmentation + model) can be
captured in one CUDA graph. Randomness comes from an explicit generator on the data's
device, or the global RNG when None.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

__all__ = ["normalize", "random_crop_flip", "DeviceLoader", "eval_batches"]


def _channel_tensor(values, like: torch.Tensor, what: str,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if (isinstance(values, torch.Tensor) and values.shape == (1, like.shape[1], 1, 1)
            and values.dtype == dtype and values.device == like.device):
        return values  # already (1, C, 1, 1): no op in a training step
    t = torch.as_tensor(values, dtype=dtype, device=like.device)
    if t.dim() != 1 or t.numel() != like.shape[1]:
        raise ValueError(f"{what}: expected {like.shape[1]} per-channel values, "
                         f"got shape {tuple(t.shape)}")
    return t.view(1, -1, 1, 1)


def normalize(images: torch.Tensor, mean: Sequence[float] | torch.Tensor,
              std: Sequence[float] | torch.Tensor,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images (B,C,H,W) -> float (x/255 - mean) / std, with mean/std in [0,1] units.

    Pass mean/std as tensors already on the device to avoid a host-to-device copy per call.
    `dtype` is float32 for training; float64 lets tests show equalities fp32 noise would hide.
    """
    m = _channel_tensor(mean, images, "mean", dtype)
    s = _channel_tensor(std, images, "std", dtype)
    return (images.to(dtype) * (1 / 255) - m) / s


def random_crop_flip(images: torch.Tensor, boxes: torch.Tensor | None = None, *, pad: int = 4,
                     flip: bool = True, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Zero-pad by `pad`, crop back to H x W at a random offset, flip horizontally with p 0.5.

    Per sample, as two gathers with computed indices (no padded copy, no loop). Boxes
    (B,4) (x1,y1,x2,y2), x2/y2 exclusive, move with the crop and flip and are clipped to
    the image; a box that leaves the crop entirely ends with x2 <= x1 or y2 <= y1.
    """
    if pad < 0:
        raise ValueError(f"pad={pad}: must be >= 0")
    b, c, h, w = images.shape
    dev = images.device
    # offsets of the crop in the original image's coordinates, uniform in [-pad, pad]
    dy = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator) - pad
    dx = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator) - pad
    rows = dy.view(b, 1) + torch.arange(h, device=dev)  # (B,H) source row per output row
    cols = dx.view(b, 1) + torch.arange(w, device=dev)  # (B,W)
    if flip:
        flipped = torch.rand(b, device=dev, generator=generator) < 0.5
        cols = torch.where(flipped.view(b, 1), cols.flip(1), cols)
    # a source row or column outside the image is one the clamp moves: zero there
    rows_in, cols_in = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    outside = (rows_in != rows).view(b, 1, h, 1) | (cols_in != cols).view(b, 1, 1, w)
    out = images.gather(2, rows_in.view(b, 1, h, 1).expand(b, c, h, w))
    out = out.gather(3, cols_in.view(b, 1, 1, w).expand(b, c, h, w))
    out = out.masked_fill(outside, 0)
    if boxes is None:
        return out, None
    shift = torch.stack([dx, dy, dx, dy], dim=1).to(boxes.dtype)
    moved = boxes - shift
    # clip with Python scalars: a tensor built from a list would be a host-to-device copy
    if h == w:
        moved = moved.clamp(0, w)
    else:
        moved = torch.stack([moved[:, 0].clamp(0, w), moved[:, 1].clamp(0, h),
                             moved[:, 2].clamp(0, w), moved[:, 3].clamp(0, h)], dim=1)
    if flip:
        mirrored = torch.stack([w - moved[:, 2], moved[:, 1], w - moved[:, 0], moved[:, 3]], dim=1)
        moved = torch.where(flipped.view(b, 1), mirrored, moved)
    return out, moved


class DeviceLoader:
    """Training batches from a set that lives on the device: fresh permutation per epoch,
    gather, crop/flip, normalise; yields (x float (B,3,H,W), y, boxes or None).

    drop_last=True (default) gives every step the same batch shape, as a captured CUDA
    graph needs: len() = N // batch_size steps per epoch (50,000 / 128 -> 390; the
    remaining 80 images of each permutation are skipped, different ones each epoch).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 boxes: torch.Tensor | None = None,
                 *, batch_size: int = 128, mean, std, pad: int = 4, flip: bool = True,
                 generator: torch.Generator | None = None, drop_last: bool = True,
                 dtype: torch.dtype = torch.float32):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images: expected uint8 (N,C,H,W), "
                             f"got {images.dtype} {tuple(images.shape)}")
        n = images.shape[0]
        if labels.shape[0] != n or (boxes is not None and boxes.shape != (n, 4)):
            raise ValueError(f"labels/boxes: expected {n} labels and ({n}, 4) boxes "
                             "to match the images")
        if batch_size < 1 or (drop_last and batch_size > n):
            raise ValueError(f"batch_size={batch_size}: must be in 1..{n} (the number of images)")
        self.images, self.labels, self.boxes = images, labels.to(images.device), boxes
        if boxes is not None:
            self.boxes = boxes.to(images.device, torch.float32)
        self.batch_size, self.pad, self.flip, self.drop_last = batch_size, pad, flip, drop_last
        self.generator = generator
        # mean/std as device tensors once, so a step makes no host-to-device copy
        self.dtype = dtype
        self.mean = _channel_tensor(mean, images, "mean", dtype).flatten()
        self.std = _channel_tensor(std, images, "std", dtype).flatten()
        self.mean4, self.std4 = self.mean.view(1, -1, 1, 1), self.std.view(1, -1, 1, 1)

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batch(self, index: torch.Tensor):
        """One augmented batch for sample indices `index` (a device tensor); graph-capturable."""
        boxes = self.boxes[index] if self.boxes is not None else None
        x, boxes = random_crop_flip(self.images[index], boxes, pad=self.pad, flip=self.flip,
                                    generator=self.generator)
        return normalize(x, self.mean4, self.std4, self.dtype), self.labels[index], boxes

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        perm = torch.randperm(self.images.shape[0], device=self.images.device,
                              generator=self.generator)
        for step in range(len(self)):
            yield self.batch(perm[step * self.batch_size:(step + 1) * self.batch_size])


def eval_batches(images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1024, mean, std,
                 device: torch.device | str | None = None
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised (x, y) batches in order, for evaluation; on `device` (default: the images')."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    device = torch.device(device) if device is not None else images.device
    m = torch.as_tensor(mean, dtype=torch.float32, device=device)
    s = torch.as_tensor(std, dtype=torch.float32, device=device)
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device, non_blocking=True)
        yield normalize(x, m, s), labels[start:start + batch_size].to(device, non_blocking=True)

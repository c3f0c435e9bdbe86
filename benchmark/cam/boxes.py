"""Boxes and peaks of CAMs: the thesis' CAM box (`cam_boxes`) and the plugins' one peak rule
(`peaks`, re-exported from `plugins.geometry`). Boxes are (x1, y1, x2, y2), x2/y2 exclusive,
the convention of `plugins.geometry` and of the data's boxes."""

from __future__ import annotations

import torch

from benchmark.cam.context import plain_context
from plugins.geometry import mask_box, peaks

__all__ = ["cam_boxes", "peaks"]


def cam_boxes(cam: torch.Tensor, threshold: float = 0.4) -> torch.Tensor:
    """Bounding box of the pixels >= threshold * max of each map: LongTensor (B, 4)
    (x1, y1, x2, y2), x2/y2 exclusive.

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

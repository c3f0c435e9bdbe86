"""Rectangles and peaks on the pixel grid: the one copy of the mask and peak geometry that the
erasers, the runner's occlusion measurements, the CAM and the synthetic data all use.

Two box conventions meet here: erasers draw (top, left, height, width); datasets store
(x1, y1, x2, y2) pixel boxes with x2/y2 exclusive. `box_mask` takes the first, `xyxy_mask`
the second; `mask_box` goes back from a mask to an (x1, y1, x2, y2) box.
"""

from __future__ import annotations

import torch

__all__ = ["box_mask", "mask_box", "outer_and", "peak_in_box", "peaks", "xyxy_mask"]


def box_mask(
    top: torch.Tensor,
    left: torch.Tensor,
    height: torch.Tensor,
    width: torch.Tensor,
    size: tuple[int, int],
    *,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bool (B, 1, H, W) mask of the rectangles rows [top, top+height), cols [left, left+width).

    Rectangles are intersected with the image: parts outside it are dropped (the "clip"
    semantics of slicing with a start inside the image). Inputs are long tensors (B,);
    ``keep`` (bool (B,)) False empties that image's mask.
    """
    rows_n, cols_n = size
    rows = torch.arange(rows_n, device=top.device)
    cols = torch.arange(cols_n, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])
    if keep is not None:
        in_rows = in_rows & keep[:, None]  # on the (B, H) factor: cheaper than on the mask
    return outer_and(in_rows, in_cols)[:, None]


def outer_and(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Bool (..., H, W) = rows[..., :, None] & cols[..., None, :] for bool (..., H), (..., W).

    Computed as a broadcast uint8 product converted to bool: on the CPU a uint8 multiply
    plus the conversion is about 3x faster than a broadcast bool ``&``. ``.bool()``, not a
    ``.view(torch.bool)`` of the product: inductor cannot compile that view on the CPU (C++
    error ``Vectorized<bool>.to<int64_t,2>()``), and the extra pass costs little.
    """
    product = rows.to(torch.uint8)[..., :, None] * cols.to(torch.uint8)[..., None, :]
    return product.bool()


def xyxy_mask(boxes: torch.Tensor, size: tuple[int, int], *,
              grid: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 4) pixel boxes (x1, y1, x2, y2; x2/y2 exclusive; truncated to integers) -> bool
    (B, 1, H, W): `box_mask` of (y1, x1, max(y2 - y1, 0), max(x2 - x1, 0)), made by comparing
    the pixel indices with the four coordinates at once (few ops: the training step's
    accounting). `grid`: those indices made once, long (1, L, 1) with L >= max(H, W)."""
    h, w = size
    if grid is None:
        grid = torch.arange(max(h, w), device=boxes.device).view(1, -1, 1)
    ge = grid >= boxes.to(torch.long).reshape(-1, 1, 4)  # (B, L, 4): >= x1, y1, x2, y2
    inside = ge[..., :2] & ~ge[..., 2:]  # (B, L, 2): in [x1, x2), in [y1, y2)
    cols, rows = inside[:, :w, 0], inside[:, :h, 1]
    return rows.view(-1, 1, h, 1) & cols.view(-1, 1, 1, w)


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    """Tight (x1, y1, x2, y2) boxes, x2/y2 exclusive, of bool masks (B, H, W): long (B, 4);
    an empty mask gives (0, 0, 0, 0)."""
    _, h, w = mask.shape
    cols, rows = mask.any(dim=1), mask.any(dim=2)                  # (B, W), (B, H)
    xs = torch.arange(w, device=mask.device)
    ys = torch.arange(h, device=mask.device)
    box = torch.stack((torch.where(cols, xs, w).amin(dim=1), torch.where(rows, ys, h).amin(dim=1),
                       torch.where(cols, xs + 1, 0).amax(dim=1),
                       torch.where(rows, ys + 1, 0).amax(dim=1)), dim=1)
    return torch.where(cols.any(dim=1, keepdim=True), box, torch.zeros_like(box))


def peaks(cam: torch.Tensor) -> torch.Tensor:
    """Peak p_m of each saliency map: long (B, 2) as (row, col), on the cam's device.

    Ties go to the first maximum in row-major order (``torch.argmax`` on the flattened
    map). A constant map (max == min, e.g. all zeros: no evidence) falls back to the
    image centre (H // 2, W // 2); chosen with ``torch.where``, so no host sync. The CAM
    erasing vertex, the CAM figure and the runner's peak-in-box rate all use this one rule.
    """
    if not isinstance(cam, torch.Tensor) or cam.ndim != 3:
        raise ValueError(f"cam: expected a (B, H, W) tensor, got {getattr(cam, 'shape', cam)}")
    batch, height, width = cam.shape
    flat = cam.reshape(batch, height * width)
    index = flat.argmax(dim=1)
    # max read back at the argmax + one amin pass: cheaper on the CPU than torch.aminmax.
    constant = flat.gather(1, index[:, None]).squeeze(1) == flat.amin(dim=1)
    row = torch.where(constant, height // 2, index // width)
    col = torch.where(constant, width // 2, index % width)
    return torch.stack((row, col), dim=1)


def peak_in_box(peak: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(B, 2) (row, col) peaks inside (B, 4) (x1, y1, x2, y2) boxes -> bool (B,)."""
    r, c = peak[:, 0].to(boxes.dtype), peak[:, 1].to(boxes.dtype)
    return (c >= boxes[:, 0]) & (c < boxes[:, 2]) & (r >= boxes[:, 1]) & (r < boxes[:, 3])

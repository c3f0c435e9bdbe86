"""What every CAM computation shares: the plain context it runs in (float32, autocast off,
outside inference mode), the selection of the logits from a model's output, and the one-line
checks of images and targets."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["LogitsSelector", "check_images", "check_targets", "normal", "plain_context",
           "select_logits"]

LogitsSelector = int | str | Callable[[Any], torch.Tensor] | None


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


def normal(t: torch.Tensor) -> torch.Tensor:
    """An inference tensor (made under `torch.inference_mode`) as a normal one autograd can use;
    call inside `plain_context`."""
    return t.clone() if t.is_inference() else t


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


def check_images(images: torch.Tensor) -> None:
    """One-line ValueError unless ``images`` is a floating-point (B, C, H, W) tensor."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = (f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor)
               else type(images).__name__)
        raise ValueError(f"images: expected a floating-point tensor (B, C, H, W), got {got}")


def check_targets(targets: torch.Tensor, batch: int) -> torch.Tensor:
    """``targets`` as long (B,) class indices; a one-line ValueError for anything else."""
    if (not isinstance(targets, torch.Tensor) or targets.shape != (batch,)
            or targets.is_floating_point()):
        got = (f"{targets.dtype} {tuple(targets.shape)}" if isinstance(targets, torch.Tensor)
               else type(targets).__name__)
        raise ValueError(f"targets: expected an integer tensor of shape ({batch},) (class "
                         f"indices), got {got}")
    return targets.long()

"""The eraser contract: the ``Eraser`` base class, argument checks and batched sampling helpers.

An eraser turns a batch of images into a boolean mask (True = erase); filling is done
separately by :func:`plugins.fill.fill`, so every eraser gets every fill and a mask
can be measured without knowing which eraser made it.

Randomness and devices: every draw is made on the images' device, so a training step on
CUDA stays free of host transfers and can be captured in one CUDA graph. A ``generator``
must therefore live on the images' device (``torch.Generator(device=images.device)``);
one on another device is rejected with an error rather than silently moved. The same
seed gives the same masks on the same device (CPU and CUDA streams differ).

State: ``forward`` depends only on its tensors, the eraser's constructor arguments and the
generator; an eraser keeps no Python state between calls (no counter, no cache of a batch).
A CUDA graph replays the kernels of the one call made at capture, and a stacked pack calls one
eraser for a group of equal runs, so Python state would give other numbers than the same run
trained eagerly alone. The runner's self-check (benchmark/training/selfcheck.py) catches such
an eraser where it shows within the check's trial calls (one or two per step kind) and trains
it eagerly or alone; state that changes the output only later (after N images, over an
epoch) passes the check, and then graphed or stacked numbers differ from the same run trained
eagerly alone, unannounced: keeping ``forward`` free of such state is the author's
responsibility, not the check's. Its trial steps, and the probe that
decides whether equal erasers are called once for several runs, run on deep copies of the
eraser (``copy.deepcopy``), or restore fresh copies from before the trial: a trial never
changes the eraser a run trains with. An eraser that cannot be deep-copied is not tried: it
trains eagerly and alone (slower, same numbers).
"""

from __future__ import annotations

import inspect
import math
import numbers

import torch

__all__ = [
    "Eraser",
    "apply_coin",
    "check_channels_first",
    "check_choice",
    "check_int",
    "check_number",
    "check_probability",
    "randint_inclusive",
]


class Eraser:
    """Base class of all erasers: validates inputs, calls :meth:`forward`, checks the mask.

    Subclasses implement ``forward(images, *, cam, generator) -> bool (B, 1, H, W)`` and
    store each constructor argument under its own name (``self.p = p``) so that
    :meth:`params` and ``repr`` can report the resolved hyperparameters.
    """

    needs_cam: bool = False

    def __call__(
        self,
        images: torch.Tensor,
        *,
        cam: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mask for ``images`` (float (B, C, H, W)); ``cam`` float (B, H, W) or None."""
        name = type(self).__name__
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{name}: images must be a (B, C, H, W) tensor, got {got}")
        if not images.is_floating_point():
            raise TypeError(f"{name}: images must be floating point, got {images.dtype}")
        check_channels_first(name, images.shape)
        batch, _, height, width = images.shape
        self._check_cam(cam, images)
        check_generator(generator, images.device, name)
        mask = self.forward(images, cam=cam, generator=generator)
        # Metadata-only checks (no host sync): catch a plugin that breaks the contract here,
        # not three modules later in the runner.
        if (
            not isinstance(mask, torch.Tensor)
            or mask.dtype != torch.bool
            or tuple(mask.shape) != (batch, 1, height, width)
            or mask.device != images.device
        ):
            got = (
                f"{mask.dtype} {tuple(mask.shape)} on {mask.device}"
                if isinstance(mask, torch.Tensor)
                else type(mask).__name__
            )
            raise TypeError(
                f"{name}.forward must return a bool mask of shape {(batch, 1, height, width)} "
                f"on {images.device}, got {got}"
            )
        return mask

    def _check_cam(self, cam, images: torch.Tensor) -> None:
        """A CAM eraser needs a float (B, H, W) map on the images' device; others may get one."""
        name = type(self).__name__
        batch, _, height, width = images.shape
        if cam is None and self.needs_cam:
            raise ValueError(
                f"{name} needs a saliency map: call it with cam=(B, H, W) float tensor "
                "upsampled to the image size (the runner passes one when needs_cam is True)"
            )
        if cam is None:
            return
        if not isinstance(cam, torch.Tensor) or tuple(cam.shape) != (batch, height, width):
            got = tuple(cam.shape) if isinstance(cam, torch.Tensor) else type(cam).__name__
            raise ValueError(f"{name}: cam must have shape {(batch, height, width)}, got {got}")
        if not cam.is_floating_point():
            raise TypeError(f"{name}: cam must be floating point, got {cam.dtype}")
        if cam.device != images.device:
            raise ValueError(f"{name}: cam is on {cam.device} but images are on {images.device}")

    def forward(
        self,
        images: torch.Tensor,
        *,
        cam: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Compute the mask; inputs are already validated by ``__call__``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def params(self) -> dict:
        """Resolved constructor arguments (what the runner stores in result records)."""
        out = {}
        parameters = list(inspect.signature(type(self).__init__).parameters.values())[1:]
        for parameter in parameters:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if not hasattr(self, parameter.name):
                raise AttributeError(
                    f"{type(self).__name__} must store constructor argument "
                    f"{parameter.name!r} as self.{parameter.name} so params() can report it"
                )
            out[parameter.name] = getattr(self, parameter.name)
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.params().items())
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------------------------------
# Argument checks: one-line errors naming the owner, the argument and the allowed values.


def check_number(
    owner: str,
    name: str,
    value,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as float if it is a real number inside the given interval."""
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"{owner}: {name} must be a number in {interval}, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")
    return float(value)


def check_probability(owner: str, name: str, value) -> float:
    """Return ``value`` as float if it is a probability in [0, 1]."""
    return check_number(owner, name, value, 0.0, 1.0)


def check_int(owner: str, name: str, value, low: int, high: int | None = None) -> int:
    """Return ``value`` if it is an int in [low, high] (high None: unbounded)."""
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}")
    return int(value)


def check_choice(owner: str, name: str, value, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(
            f"{owner}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )
    return value


def check_channels_first(owner: str, shape: tuple[int, ...]) -> None:
    """Refuse an image tensor that can only be read as channels-last: more than 4 "channels"
    (dim -3) while the last dim is 1, 3 or 4 (grey, RGB, RGBA), as in a (B, 32, 32, 3) batch.
    A channels-first image with up to 4 channels is never refused, whatever its size (a
    (4, 16, 3) RGBA image passes). Shape only (no host sync); the error says which permute
    fixes it."""
    if len(shape) < 3 or shape[-3] <= 4 or shape[-1] not in (1, 3, 4):
        return
    fix = {3: "permute(2, 0, 1)", 4: "permute(0, 3, 1, 2)"}.get(len(shape), "movedim(-1, -3)")
    last = "(B, H, W, C)" if len(shape) == 4 else "(..., H, W, C)"
    raise ValueError(
        f"{owner}: images of shape {tuple(shape)} look channels-last {last}: "
        f"{shape[-3]} channels but the last dim is {shape[-1]}; pass channels-first "
        f"images.{fix}"
    )


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (
        b.index if b.index is not None else current
    )


def check_generator(generator: torch.Generator | None, device: torch.device, owner: str) -> None:
    """Reject a generator that lives on another device than the images (see module doc)."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{owner}: generator must be a torch.Generator or None, "
            f"got {type(generator).__name__}"
        )
    if not _same_device(generator.device, device):
        raise ValueError(
            f"{owner}: generator is on {generator.device} but images are on {device}; "
            "draws happen on the images' device, so pass torch.Generator(device=images.device)"
        )


# ---------------------------------------------------------------------------------------
# Batched sampling helpers: whole-batch tensor ops, no host synchronisation.


def randint_inclusive(
    high: torch.Tensor, *, generator: torch.Generator | None
) -> torch.Tensor:
    """Per-element uniform integers in {0, ..., high} (Python ``random.randint(0, high)``).

    ``high`` is a non-negative integer tensor; the result has its shape and device.
    """
    u = torch.rand(high.shape, device=high.device, generator=generator)
    # u * (high + 1) >= 0, so truncation (.to(long)) is the floor; the product is computed in
    # u's dtype (the integer operand promoted), exactly as with an explicit conversion first
    draw = (u * (high + 1)).to(torch.long)
    # u < 1, but u * (high + 1) can round up to high + 1 in float32: clamp that edge back.
    return torch.minimum(draw, high)


def apply_coin(
    p: float, batch: int, device: torch.device, *, generator: torch.Generator | None
) -> torch.Tensor:
    """Per-image Bernoulli(p) decision, bool (B,): True = this image is erased.

    ``rand < p`` with rand in [0, 1) gives exactly never for p = 0 and always for p = 1.
    """
    return torch.rand(batch, device=device, generator=generator) < p

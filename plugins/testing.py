"""The eraser contract as public checks: run them on your own eraser.

>>> import plugins.testing
>>> plugins.testing.check_eraser(MyEraser())          # raises AssertionError naming the check

``check_eraser`` runs every check in :data:`CHECKS` (each also callable on its own, e.g. in a
pytest parametrization over ``CHECKS``); the project's own tests run them over every name in
``plugins.available()`` (``tests/plugins/test_contract.py``). Tiny CPU images, a few seconds
per eraser. An eraser may be deterministic: randomness is only required to come from the
``generator`` argument. Needs torchvision (the transform checks use ``plugins.Erase``).
"""

from __future__ import annotations

import functools
import os
import pickle
import traceback
from collections.abc import Callable

import torch

from plugins.base import Eraser
from plugins.fill import FILL_MODES

__all__ = [
    "CHECKS",
    "DTYPES",
    "check_eraser",
    "check_generator_only_randomness",
    "check_input_unchanged",
    "check_mask",
    "check_no_host_sync",
    "check_p_zero_never_erases",
    "check_params",
    "check_transform",
]

SIZE = 8
BATCH = 4
DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _cam(lead: tuple[int, ...], size: int = SIZE) -> torch.Tensor:
    """A random CAM of shape (*lead, size, size), seeded (its peak at a random pixel)."""
    return torch.rand((*lead, size, size), generator=torch.Generator().manual_seed(1))


def _images(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """Images never equal to 0 (so a zero fill is visible): uint8 in [1, 255], float in
    (0.1, 1]."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(1, 256, shape, dtype=dtype, generator=g)
    return (torch.rand(shape, generator=g) * 0.9 + 0.1).to(dtype)


def _call(eraser: Eraser, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    cam = _cam((images.shape[0],), images.shape[-1]).to(images.device) if eraser.needs_cam \
        else None
    return eraser(images, cam=cam, generator=torch.Generator(images.device).manual_seed(seed))


def _fail(check: str, eraser: Eraser, message: str) -> None:
    raise AssertionError(f"{check}: {type(eraser).__name__}: {message}")


def _rule(function: Callable[[Eraser], None]) -> Callable[[Eraser], None]:
    """Report a contract error the eraser raises inside a check (``Eraser.__call__``'s
    TypeError for a mask of the wrong dtype, shape or device, ``params()``'s AttributeError for
    a constructor argument not stored on self, a ValueError of its own checks) as that check's
    ``AssertionError("check_<rule>: <Class>: <original message>")``."""

    @functools.wraps(function)
    def check(eraser: Eraser) -> None:
        try:
            function(eraser)
        except (TypeError, ValueError, AttributeError) as error:
            _fail(function.__name__, eraser, f"{type(error).__name__}: {error}")

    return check


def _where(error: BaseException) -> str:
    """``file:line: code`` of the last frame of ``error``'s traceback outside torch and this
    module (the eraser's own line that failed), or '' when there is none."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if f"{os.sep}torch{os.sep}" not in f.filename and f.filename != __file__]
    if not frames:
        return ""
    f = frames[-1]
    return f" at {os.path.basename(f.filename)}:{f.lineno}: {(f.line or '').strip()}"


@_rule
def check_mask(eraser: Eraser) -> None:
    """The mask is bool (B, 1, H, W) on the images' device, for 1, 3 and 4 channels."""
    for channels in (1, 3, 4):
        mask = _call(eraser, _images(BATCH, channels, SIZE, SIZE))
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool \
                or tuple(mask.shape) != (BATCH, 1, SIZE, SIZE) or mask.device.type != "cpu":
            _fail("check_mask", eraser, f"expected a bool (B, 1, H, W) mask, got {mask!r:.80}")


@_rule
def check_input_unchanged(eraser: Eraser) -> None:
    """The images are never modified in place (values and ``_version`` unchanged)."""
    x = _images(BATCH, 3, SIZE, SIZE)
    before, version = x.clone(), x._version
    _call(eraser, x)
    if x._version != version or not torch.equal(x, before):
        _fail("check_input_unchanged", eraser, "modified its input images in place")


@_rule
def check_generator_only_randomness(eraser: Eraser) -> None:
    """The same generator seed gives the same mask, and the global torch RNG is not used."""
    x = _images(BATCH, 3, SIZE, SIZE)
    state = torch.get_rng_state()
    first, second = _call(eraser, x, seed=3), _call(eraser, x, seed=3)
    if not torch.equal(torch.get_rng_state(), state):
        _fail("check_generator_only_randomness", eraser,
              "drew from the global torch RNG; draw from the generator argument")
    if not torch.equal(first, second):
        _fail("check_generator_only_randomness", eraser, "the same seed gave different masks")


@_rule
def check_no_host_sync(eraser: Eraser) -> None:
    """The mask is computed from meta tensors: no ``.item()``, ``.tolist()`` or Python branch
    on a tensor value, so the training step can be captured in a CUDA graph."""
    # "meta" tensors carry shapes and dtypes but no data: reading a value fails. They stand in
    # for a GPU here, so the messages below speak of "the images' device", never of meta.
    x = torch.empty(BATCH, 3, SIZE, SIZE, device="meta")
    cam = torch.empty(BATCH, SIZE, SIZE, device="meta")
    try:
        mask = eraser.forward(x, cam=cam if eraser.needs_cam else None, generator=None)
    except (RuntimeError, NotImplementedError) as error:
        _fail("check_no_host_sync", eraser, "needs the data of a tensor (a host sync: .item(), "
              ".tolist(), float(), .nonzero(), .numpy() or a Python branch on a tensor value, "
              f"which waits for the GPU){_where(error)}")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool \
            or tuple(mask.shape) != (BATCH, 1, SIZE, SIZE):
        got = (f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor)
               else type(mask).__name__)
        _fail("check_no_host_sync", eraser,
              f"forward must return a bool mask of shape {(BATCH, 1, SIZE, SIZE)}, got {got}")
    if mask.device.type != x.device.type:
        _fail("check_no_host_sync", eraser,
              f"the mask is made on {mask.device.type}, not on the images' device: create "
              "every tensor with device=images.device (on a GPU this mask would be on the "
              "wrong device)")


@_rule
def check_params(eraser: Eraser) -> None:
    """``params()`` are the resolved constructor arguments and rebuild an equal eraser."""
    params = eraser.params()
    rebuilt = type(eraser)(**params)
    if rebuilt.params() != params:
        _fail("check_params", eraser, f"rebuilt from {params} reports {rebuilt.params()}")
    if not repr(eraser).startswith(type(eraser).__name__ + "("):
        _fail("check_params", eraser, f"repr {eraser!r} does not name the class")


@_rule
def check_p_zero_never_erases(eraser: Eraser) -> None:
    """An eraser with a ``p`` parameter erases nothing at ``p=0`` (skipped without ``p``)."""
    params = eraser.params()
    if "p" not in params:
        return
    mask = _call(type(eraser)(**{**params, "p": 0.0}), _images(32, 3, SIZE, SIZE))
    if mask.any():
        _fail("check_p_zero_never_erases", eraser, "erased with p=0")


def _kinds(dtype: torch.dtype) -> dict[str, Callable[[], object]]:
    from torchvision import tv_tensors

    return {
        "(H, W)": lambda: _images(SIZE, SIZE, dtype=dtype),
        "(C, H, W)": lambda: _images(3, SIZE, SIZE, dtype=dtype),
        "(B, C, H, W)": lambda: _images(BATCH, 3, SIZE, SIZE, dtype=dtype),
        "channels_last (B, C, H, W)": lambda: _images(BATCH, 3, SIZE, SIZE, dtype=dtype).to(
            memory_format=torch.channels_last),
        "Image (C, H, W)": lambda: tv_tensors.Image(_images(3, SIZE, SIZE, dtype=dtype)),
        "Video (T, C, H, W)": lambda: tv_tensors.Video(_images(2, 3, SIZE, SIZE, dtype=dtype)),
        "dict of two Images": lambda: {
            "image": tv_tensors.Image(_images(BATCH, 3, SIZE, SIZE, dtype=dtype)),
            "target": tv_tensors.Image(_images(BATCH, 1, SIZE, SIZE, dtype=dtype, seed=1)),
            "label": 3,
        },
    }


def _tensors(sample) -> list[torch.Tensor]:
    return list(sample.values())[:2] if isinstance(sample, dict) else [sample]


def _draw_lead(x: torch.Tensor) -> tuple[int, ...]:
    from torchvision import tv_tensors

    if isinstance(x, tv_tensors.Video):
        return tuple(x.shape[:-4])
    return tuple(x.shape[:-3]) if x.ndim >= 3 else ()


@_rule
def check_transform(eraser: Eraser) -> None:
    """``plugins.Erase(eraser, fill)`` for every fill and dtype (uint8, float16, bfloat16,
    float32, float64) on (H, W), (C, H, W), (B, C, H, W), channels_last, ``tv_tensors.Image``
    / ``Video`` and a dict of two images: the output keeps type, shape, dtype and memory
    format; the input is not modified (values, ``_version``); the images of a sample share
    one draw; ``eval()`` returns the input itself; a pickled transform draws the same."""
    if "p" in eraser.params():  # erase every image, so the checks see erased pixels
        eraser = type(eraser)(**{**eraser.params(), "p": 1.0})
    if getattr(type(eraser), "mixes", False):
        _check_mixing_transform(eraser)
        return
    for fill in FILL_MODES:
        for dtype in DTYPES:
            for kind, make in _kinds(dtype).items():
                _check_transform_case(eraser, fill, dtype, f"fill={fill!r}, {dtype}, {kind}",
                                      make())


def _check_transform_case(eraser: Eraser, fill: str, dtype: torch.dtype, where: str,
                          sample) -> None:
    """One sample of `check_transform`: ``plugins.Erase(eraser, fill)`` on it, its twin
    unpickled from the same state, and ``eval()``."""
    from plugins.transform import Erase

    mean = (128 if dtype == torch.uint8 else 0.5) if fill == "mean" else None
    inputs = _tensors(sample)
    cam = _cam(_draw_lead(inputs[0])) if eraser.needs_cam else None
    before = [(x.clone(), x._version) for x in inputs]
    t = Erase(eraser, fill, mean=mean, generator=torch.Generator().manual_seed(0))
    twin = _pickled(t, eraser)
    out = t(sample, cam=cam)
    outputs = _tensors(out)
    for x, y, (copy, version) in zip(inputs, outputs, before, strict=True):
        _check_output(eraser, where, x, y, copy, version)
    if isinstance(sample, dict) and out["label"] != 3:
        _fail("check_transform", eraser, f"{where}: a label did not pass through")
    if fill == "zero" and isinstance(sample, dict):
        erased = [(y == 0).all(dim=-3) for y in outputs]
        if not torch.equal(erased[0], erased[1]):
            _fail("check_transform", eraser,
                  f"{where}: the images of one sample got different draws")
    again = twin(sample, cam=cam)
    if not all(torch.equal(a, b) for a, b in zip(outputs, _tensors(again), strict=True)):
        _fail("check_transform", eraser,
              f"{where}: a pickled copy drew differently from the same state")
    _check_eval_identity(eraser, where, t, sample, cam)


def _pickled(t, eraser: Eraser):
    """A copy of the transform ``t`` through pickle (DataLoader workers need one)."""
    try:
        return pickle.loads(pickle.dumps(t))
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        _fail("check_transform", eraser, f"plugins.Erase(eraser) does not pickle "
              f"(DataLoader workers need it): {error}")


def _check_output(eraser: Eraser, where: str, x: torch.Tensor, y: torch.Tensor,
                  copy: torch.Tensor, version: int) -> None:
    """The input ``x`` is unchanged (``copy``, ``version``) and the output ``y`` has its type,
    shape, dtype and strides."""
    if x._version != version or not torch.equal(x, copy):
        _fail("check_transform", eraser, f"{where}: modified its input")
    if type(y) is not type(x) or y.shape != x.shape or y.dtype != x.dtype \
            or y.stride() != x.stride():
        _fail("check_transform", eraser,
              f"{where}: got {type(y).__name__} {tuple(y.shape)} {y.dtype} "
              f"strides {y.stride()} for strides {x.stride()}")


def _check_eval_identity(eraser: Eraser, where: str, t, sample, cam) -> None:
    if t.eval()(sample, cam=cam) is not sample:
        _fail("check_transform", eraser, f"{where}: eval() is not the identity")


def _mixing_kinds(dtype: torch.dtype) -> dict[str, Callable[[], torch.Tensor]]:
    from torchvision import tv_tensors

    return {
        "(B, C, H, W)": lambda: _images(BATCH, 3, SIZE, SIZE, dtype=dtype),
        "channels_last (B, C, H, W)": lambda: _images(
            BATCH, 3, SIZE, SIZE, dtype=dtype).to(memory_format=torch.channels_last),
        "Image (B, C, H, W)": lambda: tv_tensors.Image(_images(BATCH, 3, SIZE, SIZE, dtype=dtype)),
    }


def _check_mixing_transform(eraser: Eraser) -> None:
    """A mixing eraser (``mixes = True``) through ``plugins.Erase(eraser, num_classes=...)`` on
    (B, C, H, W) batches with labels, as torchvision's ``v2.CutMix``: for every dtype, plain,
    channels_last and ``tv_tensors.Image`` batches keep type, shape, dtype and memory format,
    the input is not modified, the labels come back soft (float (B, classes), rows summing to
    1), a pickled transform draws the same, ``eval()`` returns the sample itself."""
    from plugins.transform import Erase

    classes = 10
    labels = torch.arange(BATCH) % classes
    for dtype in DTYPES:
        for kind, make in _mixing_kinds(dtype).items():
            where = f"{dtype}, {kind}"
            x = make()
            cam = _cam((BATCH,)) if eraser.needs_cam else None
            copy, version = x.clone(), x._version
            t = Erase(eraser, num_classes=classes, generator=torch.Generator().manual_seed(0))
            twin = _pickled(t, eraser)
            y, soft = t(x, labels, cam=cam)
            _check_output(eraser, where, x, y, copy, version)
            if soft.shape != (BATCH, classes) or not torch.allclose(soft.sum(1),
                                                                     torch.ones(BATCH)):
                _fail("check_transform", eraser, f"{where}: the labels are not soft labels "
                      f"(B, {classes}) summing to 1")
            y2, soft2 = twin(x, labels, cam=cam)
            if not (torch.equal(y, y2) and torch.equal(soft, soft2)):
                _fail("check_transform", eraser,
                      f"{where}: a pickled copy drew differently from the same state")
            _check_eval_identity(eraser, where, t, (x, labels), cam)


CHECKS: dict[str, Callable[[Eraser], None]] = {
    "mask": check_mask,
    "input_unchanged": check_input_unchanged,
    "generator_only_randomness": check_generator_only_randomness,
    "no_host_sync": check_no_host_sync,
    "params": check_params,
    "p_zero_never_erases": check_p_zero_never_erases,
    "transform": check_transform,
}


def check_eraser(eraser: Eraser) -> None:
    """Run every contract check in :data:`CHECKS` on ``eraser`` (a built instance); raises
    ``AssertionError`` (``"check_<name>: <Class>: <what>"``) at the first failure, ``TypeError``
    if ``eraser`` is not a ``plugins.Eraser``. An eraser that depends on the epoch
    (``depends_on_epoch``, e.g. GridMask with ``ramp_epochs``) is checked through the erasers
    its ``at_epoch`` returns at the start and at the end of its ramp, as training uses it."""
    if not isinstance(eraser, Eraser):
        raise TypeError(f"check_eraser: expected a plugins.Eraser instance, got "
                        f"{type(eraser).__name__}")
    if getattr(eraser, "depends_on_epoch", False):  # e.g. GridMask's ramp: the epochs' erasers
        ends = [0, getattr(eraser, "ramp_epochs", None) or 1]
        erasers = [eraser.at_epoch(epoch) for epoch in ends]
        for epoch, e in zip(ends, erasers, strict=True):
            if not isinstance(e, Eraser) or getattr(e, "depends_on_epoch", False):
                raise AssertionError(f"check_at_epoch: {type(eraser).__name__}: at_epoch({epoch}) "
                                     "must return an eraser that no longer depends on the epoch")
    else:
        erasers = [eraser]
    for e in erasers:
        for check in CHECKS.values():
            check(e)

"""Checks of a suite's methods that need torch (models, erasers on images of the data's size),
run by the runner before any training and on --dry-run: an unknown CAM layer is an error, an
eraser that erases whole images is a warning. `suites/config.py` stays torch-free; these live
here."""

from __future__ import annotations

import torch

from benchmark.suites.config import SuiteConfig, expand_method
from benchmark.suites.expand import RunSpec

# An eraser that leaves nothing of at least this share of images (e.g. a cutout as large as the
# image, a hide-and-seek grid of one cell) is worth a warning: training on blank images.
WHOLE_IMAGE_WARN = 0.10
PROBES = 256  # probe images per eraser


def image_size(suite: SuiteConfig) -> int | None:
    """The side of the suite's images where it is known without reading the data: synthetic
    (its `size` option, default 32), CIFAR and SVHN (32), Fashion-MNIST (28); None for hf:
    datasets (`data.known_shape`)."""
    from benchmark import data

    shape = data.known_shape(suite.data.name, **suite.data.options)
    return None if shape is None else shape[1]


def _where(suite: SuiteConfig) -> dict:
    """A method variant's label -> (index in `methods`, whether its CAM layer was swept)."""
    out = {}
    for i, m in enumerate(suite.methods):
        for v, ablation in expand_method(m, src=suite.file, where=f"methods[{i}]"):
            out[v.label or v.name] = (i, "cam_layer" in ablation)
    return out


def check_methods(suite: SuiteConfig, runs: list[RunSpec]) -> tuple[list[str], list[str]]:
    """(problems, warnings), each one line naming the file and key: a `cam.layer` the model
    does not have (or that cannot give a CAM), checked on the model itself; an eraser that
    erases whole images of the data's size in at least WHOLE_IMAGE_WARN of PROBES draws."""
    from benchmark import cam, models

    src, where = suite.file, _where(suite)
    size = image_size(suite)
    problems, warnings, seen = [], [], set()
    pad_warning = crop_padding_warning(suite.train.pad, size)
    if pad_warning:
        warnings.append(f"{src}: key 'train.pad': {pad_warning}")
    for r in runs:
        m = r.method
        i, swept = where.get(m.label, (None, False))
        key = f"methods[{i}]" if i is not None else f"method {m.label!r}"
        if m.needs_cam and m.cam.layer is not None and (r.model, m.cam.layer) not in seen:
            seen.add((r.model, m.cam.layer))
            side = size or 32
            try:
                model = models.create(r.model).eval()
                cam.grad_cam(model, torch.zeros(2, 3, side, side), torch.zeros(2, dtype=torch.long),
                             layer=m.cam.layer)
            except ValueError as e:
                layer_key = f"{key}.sweep.cam.layer" if swept else f"{key}.cam.layer"
                problems.append(f"{src}: key '{layer_key}': model {r.model}: {e}")
        if m.is_plain or ("erase", m.label) in seen:
            continue
        seen.add(("erase", m.label))
        ramp = ramp_warning(m.name, m.params, r.train.epochs)
        if ramp:
            warnings.append(f"{src}: key '{key}.params.ramp_epochs': {m.label}: {ramp}")
        if size is None:
            continue
        try:
            share = whole_image_share(m.name, m.params, size, epoch=r.train.epochs - 1)
        except Exception:  # noqa: BLE001  a broken eraser: its run is recorded as failed, with why
            continue
        if share >= WHOLE_IMAGE_WARN:
            warnings.append(
                f"{src}: key '{key}.params': {m.label} erases the whole image in {share:.0%} of "
                f"{PROBES} draws on {size}x{size} images (its erased regions cover the image); "
                "those images train on nothing")
    return problems, warnings


def crop_padding_warning(pad, size: int | None) -> str | None:
    """One line when train.pad (zero padding before the random crop, pixels) is at least the
    image side `size`: then a crop can miss the image entirely, and (2*size-1)^2/(2*pad+1)^2 of
    crops hold any image pixel at all. None when the pad is smaller or the size is unknown."""
    if size is None or not isinstance(pad, int) or isinstance(pad, bool) or pad < size:
        return None
    share = 1 - ((2 * size - 1) / (2 * pad + 1)) ** 2
    return (f"pad {pad} on {size}x{size} images: {share:.0%} of random crops hold no image pixel "
            f"(only padding); those images train on nothing; a pad below {size} keeps part of "
            "the image in every crop")


def ramp_warning(name: str, params: dict, epochs: int) -> str | None:
    """One line when the eraser's probability ramp (`ramp_epochs`, GridMask's official
    `set_prob`: p * min(1, epoch / ramp_epochs), `epoch` 0-based) is longer than the run, so its
    probability never reaches its target `p` within `epochs`; None otherwise (no ramp, or one
    that ends by the last epoch, epochs - 1). Not an error: a short run of a long schedule may
    mean it."""
    import plugins

    try:
        eraser = plugins.build(name, **params)
    except Exception:  # noqa: BLE001  a broken eraser: its run is recorded as failed, with why
        return None
    ramp = getattr(eraser, "ramp_epochs", None)
    if ramp is None or not callable(getattr(eraser, "prob_at", None)):
        return None
    last = eraser.prob_at(epochs - 1)
    if last >= eraser.p:
        return None
    fix = (f"a ramp_epochs of at most {epochs - 1} reaches it" if epochs > 1 else
           "a one-epoch run with any ramp erases nothing (p = 0 in epoch 0): leave it out")
    return (f"ramp_epochs {ramp} is longer than the run (train.epochs {epochs}): p = "
            f"{eraser.p:g} x min(1, epoch / {ramp}) only reaches {last:.3g} of its target "
            f"{eraser.p:g} in the last epoch ({epochs - 1}, counted from 0); {fix}")


def whole_image_share(name: str, params: dict, size: int, n: int = PROBES,
                      epoch: int | None = None) -> float:
    """The share of `n` random size x size images (and random CAMs, for a CAM eraser) that the
    eraser `name(**params)` erases entirely; fixed seed, on the CPU. An eraser that depends on
    the epoch (`at_epoch`, e.g. GridMask's ramp) is probed as in `epoch` (default: its
    `at_epoch(0)`)."""
    import plugins

    eraser = plugins.build(name, **params)
    if callable(getattr(eraser, "at_epoch", None)):
        eraser = eraser.at_epoch(epoch or 0)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g)
    cam_map = torch.rand(n, size, size, generator=g) if eraser.needs_cam else None
    mask = eraser(images, cam=cam_map, generator=g)
    return float(mask.flatten(1).all(dim=1).float().mean())

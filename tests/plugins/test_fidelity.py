"""Fidelity of the batched erasers to the papers' own per-image code (two-sample KS tests).

Each reference below is the original algorithm written out literally, one image at a
time with Python's ``random`` / numpy (deliberately slow; only the box geometry is drawn,
not full masks). The batched eraser and its reference each make DRAWS draws with fixed
seeds; the two-sample Kolmogorov-Smirnov statistic of the erased fraction (and of box
height / top row where the geometry allows it) must be below the 0.1% critical value for
the two sample sizes (about 0.0087 for 1e5 vs 1e5 draws; box statistics use only the
erased draws, so their bound is wider). To show the test has power, wrong samplers
(torchvision's log-uniform aspect, another area range, no border clipping, ...) must give a
statistic above their stated floor.

Print the statistics with ``python tests/plugins/test_fidelity.py`` (or ``pytest -s``).
"""

from __future__ import annotations

import functools
import math
import random

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

import plugins

DRAWS = 100_000
SIZE = 32
ALPHA_FACTOR = 1.949  # c(alpha) of the asymptotic two-sample KS test at alpha = 0.001
CHUNK = 10_000


# --- the batched erasers under test ------------------------------------------------------


@functools.cache
def ours(name: str, seed: int = 0, **params) -> dict[str, np.ndarray]:
    """Erased fraction (every draw) and box height / top row (erased draws) from the plugin."""
    eraser = plugins.build(name, **params)
    generator = torch.Generator().manual_seed(seed)
    peaks_g = torch.Generator().manual_seed(seed + 1)
    fraction, height, top = [], [], []
    for start in range(0, DRAWS, CHUNK):
        n = min(CHUNK, DRAWS - start)
        images = torch.zeros(n, 1, SIZE, SIZE)
        cam = None
        if eraser.needs_cam:  # peak uniform over the pixels, as in the reference
            peaks = torch.randint(0, SIZE, (n, 2), generator=peaks_g)
            cam = torch.zeros(n, SIZE, SIZE)
            cam[torch.arange(n), peaks[:, 0], peaks[:, 1]] = 1.0
        mask = eraser(images, cam=cam, generator=generator)[:, 0]
        rows = mask.any(2)
        erased = rows.any(1)
        fraction.append(mask.flatten(1).sum(1).double() / (SIZE * SIZE))
        height.append(rows.sum(1)[erased])
        top.append(rows.int().argmax(1)[erased])
    return {key: torch.cat(value).numpy() for key, value in
            (("fraction", fraction), ("height", height), ("top", top))}


# --- references: the original code, one image at a time ----------------------------------


def _result(fraction, height, top):
    return {"fraction": np.asarray(fraction), "height": np.asarray(height), "top": np.asarray(top)}


@functools.cache
def reference_random_erasing(seed=1, sh=0.4, aspect="uniform", attempts=100, tv_coin=False):
    """zhunzhong07/Random-Erasing transforms.py (aspect="uniform", 100 attempts), or with
    ``aspect="log"``, 10 attempts and ``tv_coin``: torchvision v2.RandomErasing.make_params."""
    rng = random.Random(seed)
    p, sl, r1 = 0.5, 0.02, 0.3
    fraction, height, top = np.zeros(DRAWS), [], []
    for i in range(DRAWS):
        u = rng.uniform(0, 1)
        if (u >= p) if tv_coin else (u > p):  # torchvision: rand >= p skips; RE code: > p
            continue
        for _ in range(attempts):
            area = SIZE * SIZE
            target_area = rng.uniform(sl, sh) * area
            if aspect == "uniform":
                aspect_ratio = rng.uniform(r1, 1 / r1)
            else:
                aspect_ratio = math.exp(rng.uniform(math.log(r1), math.log(1 / r1)))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < SIZE and h < SIZE:
                x1 = rng.randint(0, SIZE - h)
                rng.randint(0, SIZE - w)  # y1: drawn as in the code, not needed here
                fraction[i] = h * w / area
                height.append(h)
                top.append(x1)
                break
    return _result(fraction, height, top)


@functools.cache
def reference_cutout(seed=2, length=16, clip=True):
    """uoguelph-mlrg/Cutout util/cutout.py with n_holes=1; ``clip=False`` is a wrong variant
    that keeps the centre where the whole square fits."""
    rng = np.random.RandomState(seed)
    h = w = SIZE
    fraction, height, top = np.zeros(DRAWS), [], []
    for i in range(DRAWS):
        if clip:
            y, x = rng.randint(h), rng.randint(w)
        else:
            y, x = (rng.randint(length // 2, h - length // 2 + 1),
                    rng.randint(length // 2, w - length // 2 + 1))
        y1, y2 = np.clip(y - length // 2, 0, h), np.clip(y + length // 2, 0, h)
        x1, x2 = np.clip(x - length // 2, 0, w), np.clip(x + length // 2, 0, w)
        fraction[i] = (y2 - y1) * (x2 - x1) / (h * w)
        height.append(y2 - y1)
        top.append(y1)
    return _result(fraction, height, top)


@functools.cache
def reference_hide_and_seek(seed=3, grid_size=8, hide_prob=0.5, p=0.5):
    """kkanshul/Hide-and-Seek hide_patch with a fixed grid size, applied with probability p."""
    rng = random.Random(seed)
    fraction = np.zeros(DRAWS)
    for i in range(DRAWS):
        if rng.random() >= p:
            continue
        hidden = 0
        for x in range(0, SIZE, grid_size):
            for y in range(0, SIZE, grid_size):
                x_end, y_end = min(SIZE, x + grid_size), min(SIZE, y + grid_size)
                if rng.random() <= hide_prob:
                    hidden += (x_end - x) * (y_end - y)
        fraction[i] = hidden / (SIZE * SIZE)
    return _result(fraction, [], [])


@functools.cache
def reference_cam_erasing(seed=4, b_h=2, clip=True):
    """The thesis's method read literally: the Random Erasing code with (x1, y1) replaced by
    the CAM peak + (randint(0, b_h), randint(0, b_h)), the box cut by numpy slicing; the peak
    is uniform over the pixels. ``clip=False`` is the wrong "shift back inside" variant."""
    rng = random.Random(seed)
    sl, sh, r1 = 0.02, 0.4, 0.3
    fraction, height, top = np.zeros(DRAWS), [], []
    rows_of = range(SIZE)
    for i in range(DRAWS):
        px, py = rng.randrange(SIZE), rng.randrange(SIZE)
        for _ in range(100):
            area = SIZE * SIZE
            target_area = rng.uniform(sl, sh) * area
            aspect_ratio = rng.uniform(r1, 1 / r1)
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < SIZE and h < SIZE:
                x1, y1 = px + rng.randint(0, b_h), py + rng.randint(0, b_h)
                if clip:
                    rows, cols = len(rows_of[x1:x1 + h]), len(rows_of[y1:y1 + w])
                else:
                    rows, cols = h, w
                    x1 = min(x1, SIZE - h)
                fraction[i] = rows * cols / area
                if rows * cols:
                    height.append(rows)
                    top.append(x1)
                break
    return _result(fraction, height, top)


# --- the comparisons -----------------------------------------------------------------------

# (label, ours, reference, statistic, expect "same" (KS < critical) or a floor KS must exceed)
COMPARISONS = [
    ("random_erasing vs RE code", lambda: ours("random_erasing"), reference_random_erasing,
     "fraction", "same"),
    ("random_erasing vs RE code", lambda: ours("random_erasing"), reference_random_erasing,
     "height", "same"),
    ("random_erasing vs RE code", lambda: ours("random_erasing"), reference_random_erasing,
     "top", "same"),
    ("random_erasing(aspect=log) vs torchvision", lambda: ours("random_erasing", aspect="log"),
     lambda: reference_random_erasing(aspect="log", attempts=10, tv_coin=True), "fraction", "same"),
    ("random_erasing(aspect=log) vs torchvision", lambda: ours("random_erasing", aspect="log"),
     lambda: reference_random_erasing(aspect="log", attempts=10, tv_coin=True), "height", "same"),
    ("cutout vs Cutout code", lambda: ours("cutout"), reference_cutout, "fraction", "same"),
    ("cutout vs Cutout code", lambda: ours("cutout"), reference_cutout, "top", "same"),
    ("hide_and_seek vs HaS code", lambda: ours("hide_and_seek"), reference_hide_and_seek,
     "fraction", "same"),
    ("cam_erasing vs literal reading", lambda: ours("cam_erasing"), reference_cam_erasing,
     "fraction", "same"),
    ("cam_erasing vs literal reading", lambda: ours("cam_erasing"), reference_cam_erasing,
     "top", "same"),
    # power: a wrong sampler must be caught
    ("WRONG random_erasing vs torchvision log aspect", lambda: ours("random_erasing"),
     lambda: reference_random_erasing(aspect="log", attempts=10, tv_coin=True), "height", 0.05),
    ("WRONG random_erasing vs area range sh=0.33", lambda: ours("random_erasing"),
     lambda: reference_random_erasing(sh=1 / 3), "fraction", 0.03),
    ("WRONG cutout vs no border clipping", lambda: ours("cutout"),
     lambda: reference_cutout(clip=False), "fraction", 0.3),
    ("WRONG hide_and_seek vs hide_prob 0.4", lambda: ours("hide_and_seek"),
     lambda: reference_hide_and_seek(hide_prob=0.4), "fraction", 0.03),
    ("WRONG cam_erasing vs shift instead of clip", lambda: ours("cam_erasing"),
     lambda: reference_cam_erasing(clip=False), "fraction", 0.1),
]


def ks(comparison) -> tuple[float, float]:
    """(KS statistic, critical value at alpha = 0.001 for these two sample sizes)."""
    _, mine, reference, statistic, _ = comparison
    a, b = mine()[statistic], reference()[statistic]
    critical = ALPHA_FACTOR * math.sqrt((len(a) + len(b)) / (len(a) * len(b)))
    return float(ks_2samp(a, b).statistic), critical


@pytest.mark.parametrize(
    "comparison", COMPARISONS, ids=[f"{c[0]}:{c[3]}".replace(" ", "_") for c in COMPARISONS]
)
def test_batched_eraser_matches_the_original_code_and_wrong_samplers_are_caught(comparison):
    label, _, _, statistic, expect = comparison
    value, critical = ks(comparison)
    print(f"\nKS {label} [{statistic}] = {value:.5f} (critical {critical:.5f})")
    if expect == "same":
        assert value < critical, f"{label}: KS {value:.4f} >= {critical:.4f}"
    else:
        assert value > expect, f"{label}: KS {value:.4f} <= {expect}: the test has no power here"


def test_aspect_sampler_barely_moves_the_erased_fraction():
    # Why the log-aspect power check above uses box height: the erased fraction is about
    # S_e whatever the aspect, so uniform vs log-uniform aspect differ only through rejected
    # attempts. Pinned here so the weakness of a fraction-only check stays visible.
    value = float(ks_2samp(ours("random_erasing")["fraction"],
                           reference_random_erasing(aspect="log", attempts=10,
                                                    tv_coin=True)["fraction"]).statistic)
    print(f"\nKS random_erasing vs torchvision log aspect [fraction] = {value:.5f}")
    assert value < 0.02


if __name__ == "__main__":
    print(f"| comparison | statistic | KS ({DRAWS} draws each) | must be |")
    print("|---|---|---|---|")
    for comparison in COMPARISONS:
        value, critical = ks(comparison)
        expect = comparison[4]
        shown = f"< {critical:.5f}" if expect == "same" else f"> {expect}"
        print(f"| {comparison[0]} | {comparison[3]} | {value:.5f} | {shown} |")

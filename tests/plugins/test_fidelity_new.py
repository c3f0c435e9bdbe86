"""Fidelity of gridmask, keep_cutout, cutmix and cam_cutmix to the original per-image code.

As ``test_fidelity.py``: each reference is the original algorithm written out literally, one
image at a time with numpy (and PIL for GridMask's rotation); the batched eraser and its
reference each make DRAWS draws with fixed seeds and the two-sample KS statistic of the
erased fraction, of the top row of the erased region (erased draws only) and, for
keep_cutout, of the mean saliency under the erased box must be below the 0.1% critical
value. Wrong samplers (floor instead of ceil for GridMask's band, no saliency check, another
alpha, a uniform instead of a CAM-peak centre) must give a statistic above a stated floor.
The Beta sampler that takes the run's generator is checked against ``scipy.stats.beta``.

Print the statistics with ``python tests/plugins/test_fidelity_new.py``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import beta as scipy_beta
from scipy.stats import ks_2samp, kstest

import plugins
from plugins.keep_cutout import normalised_saliency
from plugins.mixing import sample_beta

DRAWS = 100_000
SIZE = 32
ALPHA_FACTOR = 1.949  # c(alpha) of the asymptotic two-sample KS test at alpha = 0.001
CHUNK = 10_000
SIGMA = 8.0  # keep_cutout's saliency blob: wide enough that a 16 x 16 box on it is refused
TOP_ROWS = 8  # cam_cutmix's peaks lie in the top 8 rows, so a wrong (uniform) centre shows


# --- saliency maps shared by ours and the references -------------------------------------


def blob(cy, cx, size=SIZE):
    """Gaussian blob exp(-r^2 / (2 SIGMA^2)) at integer centres; torch (n,) or numpy scalars."""
    grid = np.arange(size, dtype=np.float64)
    if isinstance(cy, torch.Tensor):
        g = torch.arange(size, dtype=torch.float64)
        gy = torch.exp(-((g - cy[:, None]) ** 2) / (2 * SIGMA**2))
        gx = torch.exp(-((g - cx[:, None]) ** 2) / (2 * SIGMA**2))
        return (gy[:, :, None] * gx[:, None, :]).float()
    gy = np.exp(-((grid - cy) ** 2) / (2 * SIGMA**2))
    gx = np.exp(-((grid - cx) ** 2) / (2 * SIGMA**2))
    return (gy[:, None] * gx[None, :]).astype(np.float32)


# --- the batched erasers under test ------------------------------------------------------


@functools.cache
def ours(name: str, cams: str = "none", seed: int = 0, **params) -> dict[str, np.ndarray]:
    """Erased fraction (every draw), top row and mean saliency under the mask (erased draws).

    ``cams``: "none"; "blob" (a SIGMA blob at a centre uniform over the pixels); "top" (a
    single maximum at row U{0..TOP_ROWS-1}, column uniform)."""
    eraser = plugins.build(name, **params)
    generator = torch.Generator().manual_seed(seed)
    cam_g = torch.Generator().manual_seed(seed + 1)
    fraction, top, saliency = [], [], []
    for start in range(0, DRAWS, CHUNK):
        n = min(CHUNK, DRAWS - start)
        images = torch.zeros(n, 1, SIZE, SIZE)
        cam = None
        if cams == "blob":
            centre = torch.randint(0, SIZE, (n, 2), generator=cam_g)
            cam = blob(centre[:, 0].double(), centre[:, 1].double())
        elif cams == "top":
            row = torch.randint(0, TOP_ROWS, (n,), generator=cam_g)
            col = torch.randint(0, SIZE, (n,), generator=cam_g)
            cam = torch.zeros(n, SIZE, SIZE)
            cam[torch.arange(n), row, col] = 1.0
        mask = eraser(images, cam=cam, generator=generator)[:, 0]
        rows = mask.any(2)
        erased = rows.any(1)
        fraction.append(mask.flatten(1).sum(1).double() / (SIZE * SIZE))
        top.append(rows.int().argmax(1)[erased])
        if cam is not None:
            slc = normalised_saliency(cam).double()
            inside = (slc * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)
            saliency.append(inside[erased])
    out = {"fraction": torch.cat(fraction).numpy(), "top": torch.cat(top).numpy()}
    if saliency:
        out["saliency"] = torch.cat(saliency).numpy()
    return out


def _result(fraction, top, saliency=()):
    return {"fraction": np.asarray(fraction), "top": np.asarray(top),
            "saliency": np.asarray(saliency)}


# --- references: the original code, one image at a time ----------------------------------


@functools.cache
def reference_gridmask(seed=1, rotate=1, prob=0.8, band=math.ceil):
    """dvlab-research/GridMask imagenet_grid/utils/grid.py ``Grid.__call__`` literally, with
    our defaults (d1 24, d2 33, ratio 0.4, mode 1); ``band=math.floor`` is a wrong variant."""
    rng = np.random.RandomState(seed)
    d1, d2, ratio, mode = 24, 33, 0.4, 1
    h = w = SIZE
    fraction, top = np.zeros(DRAWS), []
    for k in range(DRAWS):
        if rng.rand() > prob:
            continue
        hh = math.ceil(math.sqrt(h * h + w * w))
        d = rng.randint(d1, d2)
        length = band(d * ratio)
        mask = np.ones((hh, hh), np.float32)
        st_h = rng.randint(d)
        st_w = rng.randint(d)
        for i in range(-1, hh // d + 1):
            s = d * i + st_h
            t = s + length
            s = max(min(s, hh), 0)
            t = max(min(t, hh), 0)
            mask[s:t, :] *= 0
        for i in range(-1, hh // d + 1):
            s = d * i + st_w
            t = s + length
            s = max(min(s, hh), 0)
            t = max(min(t, hh), 0)
            mask[:, s:t] *= 0
        r = rng.randint(rotate)
        mask = Image.fromarray(np.uint8(mask))
        mask = mask.rotate(r)
        mask = np.asarray(mask)
        mask = mask[(hh - h) // 2:(hh - h) // 2 + h, (hh - w) // 2:(hh - w) // 2 + w]
        if mode == 1:
            mask = 1 - mask
        erased = mask == 0
        fraction[k] = erased.mean()
        if erased.any():
            top.append(int(np.argmax(erased.any(1))))
    return _result(fraction, top)


@functools.cache
def reference_keep_cutout(seed=2, threshold=0.6):
    """cjf8899/KeepAugment_Pytorch util/keep_cutout.py ``Keep_Cutout`` (length 16) with the
    min-max-normalised blob saliency, its unbounded redraw loop included;
    ``threshold > 1`` accepts every box: plain Cutout, a wrong variant."""
    rng = np.random.RandomState(seed)
    length = 16
    h = w = SIZE
    fraction, top, saliency = np.zeros(DRAWS), [], []
    for k in range(DRAWS):
        slc = blob(rng.randint(SIZE), rng.randint(SIZE))
        slc = slc - slc.min()
        slc = slc / slc.max()
        while True:
            y = rng.randint(h)
            x = rng.randint(w)
            y1 = np.clip(y - length // 2, 0, h)
            y2 = np.clip(y + length // 2, 0, h)
            x1 = np.clip(x - length // 2, 0, w)
            x2 = np.clip(x + length // 2, 0, w)
            if slc[y1:y2, x1:x2].mean() < threshold:
                break
        fraction[k] = (y2 - y1) * (x2 - x1) / (h * w)
        top.append(y1)
        saliency.append(slc[y1:y2, x1:x2].mean())
    return _result(fraction, top, saliency)


def _rand_bbox(rng, lam, cx, cy):
    """clovaai/CutMix-PyTorch train.py ``rand_bbox`` (W = size[2], the rows) from the centre."""
    W = H = SIZE
    cut_rat = np.sqrt(1.0 - lam)
    cut_w = int(W * cut_rat)
    cut_h = int(H * cut_rat)
    bbx1 = np.clip(cx - cut_w // 2, 0, W)
    bby1 = np.clip(cy - cut_h // 2, 0, H)
    bbx2 = np.clip(cx + cut_w // 2, 0, W)
    bby2 = np.clip(cy + cut_h // 2, 0, H)
    return bbx1, bby1, bbx2, bby2


@functools.cache
def reference_cutmix(seed=3, alpha=1.0, cutmix_prob=0.5):
    """CutMix's train.py per image: coin ``r < cutmix_prob``, lam ~ np.random.beta(alpha,
    alpha), ``rand_bbox``; bbx indexes dim 2 (rows), bby dim 3 (columns)."""
    rng = np.random.RandomState(seed)
    fraction, top = np.zeros(DRAWS), []
    for k in range(DRAWS):
        r = rng.rand(1)
        if not r < cutmix_prob:
            continue
        lam = rng.beta(alpha, alpha)
        cx, cy = rng.randint(SIZE), rng.randint(SIZE)
        bbx1, bby1, bbx2, bby2 = _rand_bbox(rng, lam, cx, cy)
        fraction[k] = (bbx2 - bbx1) * (bby2 - bby1) / (SIZE * SIZE)
        if fraction[k] > 0:
            top.append(bbx1)
    return _result(fraction, top)


@functools.cache
def reference_cam_cutmix(seed=4, at_peak=True, salmix_prob=0.5, alpha=1.0):
    """SaliencyMix saliencymix.py per image: coin, lam, ``saliency_bbox`` centred at the
    source's saliency argmax (x = row, y = column), here a peak in the top TOP_ROWS rows;
    ``at_peak=False`` is the wrong, uniformly placed (plain CutMix) box."""
    rng = np.random.RandomState(seed)
    fraction, top = np.zeros(DRAWS), []
    for k in range(DRAWS):
        x, y = rng.randint(TOP_ROWS), rng.randint(SIZE)  # the source's saliency peak
        r = rng.rand(1)
        if not r < salmix_prob:
            continue
        lam = rng.beta(alpha, alpha)
        if not at_peak:
            x, y = rng.randint(SIZE), rng.randint(SIZE)
        bbx1, bby1, bbx2, bby2 = _rand_bbox(rng, lam, x, y)
        fraction[k] = (bbx2 - bbx1) * (bby2 - bby1) / (SIZE * SIZE)
        if fraction[k] > 0:
            top.append(bbx1)
    return _result(fraction, top)


# --- the comparisons -----------------------------------------------------------------------

COMPARISONS = [
    ("gridmask vs GridMask code", lambda: ours("gridmask"), reference_gridmask,
     "fraction", "same"),
    ("gridmask vs GridMask code", lambda: ours("gridmask"), reference_gridmask, "top", "same"),
    ("gridmask(rotate=360) vs GridMask code with PIL rotate",
     lambda: ours("gridmask", rotate=360, p=1.0),
     lambda: reference_gridmask(rotate=360, prob=1.0), "fraction", "same"),
    ("gridmask(rotate=360) vs GridMask code with PIL rotate",
     lambda: ours("gridmask", rotate=360, p=1.0),
     lambda: reference_gridmask(rotate=360, prob=1.0), "top", "same"),
    ("keep_cutout vs KeepAugment re-implementation", lambda: ours("keep_cutout", "blob"),
     reference_keep_cutout, "fraction", "same"),
    ("keep_cutout vs KeepAugment re-implementation", lambda: ours("keep_cutout", "blob"),
     reference_keep_cutout, "saliency", "same"),
    ("cutmix vs CutMix code", lambda: ours("cutmix"), reference_cutmix, "fraction", "same"),
    ("cutmix vs CutMix code", lambda: ours("cutmix"), reference_cutmix, "top", "same"),
    ("cam_cutmix vs SaliencyMix box at the peak", lambda: ours("cam_cutmix", "top"),
     reference_cam_cutmix, "fraction", "same"),
    ("cam_cutmix vs SaliencyMix box at the peak", lambda: ours("cam_cutmix", "top"),
     reference_cam_cutmix, "top", "same"),
    # power: a wrong sampler must be caught
    ("WRONG gridmask vs band floor(d ratio)", lambda: ours("gridmask"),
     lambda: reference_gridmask(band=math.floor), "fraction", 0.1),
    ("WRONG gridmask vs no rotation", lambda: ours("gridmask", rotate=360, p=1.0),
     lambda: reference_gridmask(prob=1.0), "fraction", 0.1),
    ("WRONG keep_cutout vs plain Cutout (no saliency check)", lambda: ours("keep_cutout", "blob"),
     lambda: reference_keep_cutout(threshold=1.01), "saliency", 0.05),
    ("WRONG cutmix vs alpha 0.5", lambda: ours("cutmix"),
     lambda: reference_cutmix(alpha=0.5), "fraction", 0.03),
    ("WRONG cam_cutmix vs uniform centre", lambda: ours("cam_cutmix", "top"),
     lambda: reference_cam_cutmix(at_peak=False), "top", 0.2),
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
def test_new_eraser_matches_the_original_code_and_wrong_samplers_are_caught(comparison):
    label, _, _, statistic, expect = comparison
    value, critical = ks(comparison)
    print(f"\nKS {label} [{statistic}] = {value:.5f} (critical {critical:.5f})")
    if expect == "same":
        assert value < critical, f"{label}: KS {value:.4f} >= {critical:.4f}"
    else:
        assert value > expect, f"{label}: KS {value:.4f} <= {expect}: the test has no power here"


@pytest.mark.parametrize("alpha", [0.2, 0.5, 1.0, 2.0])
def test_beta_drawn_from_the_generator_matches_scipy_beta(alpha):
    draws = sample_beta(alpha, (DRAWS,), device="cpu",
                        generator=torch.Generator().manual_seed(5)).double().numpy()
    result = kstest(draws, scipy_beta(alpha, alpha).cdf)
    critical = ALPHA_FACTOR / math.sqrt(DRAWS)
    print(f"\nKS Beta({alpha}, {alpha}) vs scipy = {result.statistic:.5f} "
          f"(critical {critical:.5f})")
    assert result.statistic < critical
    assert ((draws >= 0) & (draws <= 1)).all()


def test_a_wrong_beta_is_caught_by_the_same_test():
    draws = sample_beta(0.8, (DRAWS,), device="cpu",
                        generator=torch.Generator().manual_seed(5)).double().numpy()
    assert kstest(draws, scipy_beta(1.0, 1.0).cdf).statistic > 0.02


if __name__ == "__main__":
    print(f"| comparison | statistic | KS ({DRAWS} draws each) | must be |")
    print("|---|---|---|---|")
    for comparison in COMPARISONS:
        value, critical = ks(comparison)
        expect = comparison[4]
        shown = f"< {critical:.5f}" if expect == "same" else f"> {expect}"
        print(f"| {comparison[0]} | {comparison[3]} | {value:.5f} | {shown} |")

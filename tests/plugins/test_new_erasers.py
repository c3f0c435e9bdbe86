"""Specification of gridmask, keep_cutout, cutmix, cam_cutmix and the mixing helpers.

The contract every eraser meets (bool (B, 1, H, W), seeds, p, no host sync, params) is
checked for these four by the registry-wide tests in ``test_erasers.py``; this file checks
each one's own geometry and the options those tests do not reach.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import plugins
from plugins.geometry import mask_box
from plugins.gridmask import grid_masks
from plugins.keep_cutout import normalised_saliency
from plugins.mixing import lam_from_mask, partner_permutation, sample_beta

SIZE = 32


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(batch=64, size=SIZE):
    return torch.zeros(batch, 3, size, size)


def blob_cam(batch, size=SIZE, sigma=8.0, seed=0):
    centre = torch.randint(0, size, (batch, 2), generator=gen(seed)).float()
    grid = torch.arange(size, dtype=torch.float32)
    gy = torch.exp(-((grid - centre[:, :1]) ** 2) / (2 * sigma**2))
    gx = torch.exp(-((grid - centre[:, 1:]) ** 2) / (2 * sigma**2))
    return gy[:, :, None] * gx[:, None, :]


def planted_cam(peaks, size=SIZE):
    cam = torch.zeros(len(peaks), size, size)
    cam[torch.arange(len(peaks)), peaks[:, 0], peaks[:, 1]] = 1.0
    return cam


# --- GridMask ------------------------------------------------------------------------------


@pytest.mark.parametrize(("d", "ratio"), [(8, 0.5), (8, 0.4), (16, 0.3)])
def test_gridmask_kept_ratio_matches_r(d, ratio):
    # An image side that is a whole number of units: every image keeps exactly
    # 1 - (1 - l/d)^2 of its pixels (mode 1, the paper's k = 1 - (1 - r)^2 with r = l / d).
    eraser = plugins.build("gridmask", d1=d, d2=d + 1, ratio=ratio, p=1.0)
    kept = 1.0 - eraser(images(16, 4 * d), generator=gen()).float().mean(dim=(1, 2, 3))
    band = math.ceil(d * ratio)
    assert torch.allclose(kept, torch.full((16,), 1 - (1 - band / d) ** 2))


def test_gridmask_band_width_is_the_ceiling_of_d_times_ratio_as_the_official_code():
    # d 8, ratio 0.4: l = ceil(3.2) = 4 kept rows per unit, so 4 erased rows, not 5.
    mask = plugins.build("gridmask", d1=8, d2=9, ratio=0.4, p=1.0)(images(8), generator=gen())
    erased_rows = mask[:, 0].any(dim=2).sum(dim=1)
    assert (erased_rows == 4 * 4).all()


def test_gridmask_mode_zero_erases_the_bands_and_mode_one_the_squares_between_them():
    x = images(8)
    one = plugins.build("gridmask", d1=8, d2=9, ratio=0.25, mode=1, p=1.0)(x, generator=gen())
    zero = plugins.build("gridmask", d1=8, d2=9, ratio=0.25, mode=0, p=1.0)(x, generator=gen())
    assert torch.equal(one, ~zero)  # the same draws: the two modes are complements
    assert torch.allclose(zero.float().mean(), torch.tensor(1 - (1 - 2 / 8) ** 2))


def test_gridmask_unit_is_drawn_from_d1_to_d2_excluding_d2():
    # The erased rows repeat with period d: the distance between the starts of the first two
    # runs of erased rows is d. Every d in {4, 5, 6} appears, never 7 (numpy's randint).
    batch, size = 600, 48
    mask = plugins.build("gridmask", d1=4, d2=7, ratio=0.5, p=1.0)(images(batch, size),
                                                                   generator=gen())
    rows = mask[:, 0].any(dim=2)
    before = torch.cat((torch.zeros(batch, 1, dtype=torch.bool), rows[:, :-1]), dim=1)
    starts = rows & ~before
    starts[:, 0] = False  # a run cut by the top border is not a whole period from the next
    periods = {int(p[1] - p[0]) for p in (torch.nonzero(s).flatten()[:2] for s in starts)}
    assert periods == {4, 5, 6}


def test_gridmask_rotation_turns_the_grid_and_keeps_about_the_same_fraction():
    x = images(256)
    straight = plugins.build("gridmask", p=1.0)(x, generator=gen())
    turned = plugins.build("gridmask", rotate=360, p=1.0)(x, generator=gen())

    def partial_rows(mask):  # rows neither wholly erased nor wholly kept
        rows = mask[:, 0]
        return (rows.any(2) & ~rows.all(2)).float().mean()

    assert abs(turned.float().mean() - straight.float().mean()) < 0.05
    # an axis-aligned mode-1 grid erases whole row segments: some rows are partial either
    # way, but a turned grid has far more of them
    assert partial_rows(turned) > partial_rows(straight)
    assert not torch.equal(straight, turned)


def official_grid_mask(d, length, st_h, st_w, r, h, w, mode):
    """dvlab-research/GridMask ``Grid.__call__`` after its draws, literally: erased = True."""
    hh = math.ceil(math.sqrt(h * h + w * w))
    mask = np.ones((hh, hh), np.float32)
    for i in range(-1, hh // d + 1):
        s = d * i + st_h
        t = s + length
        s, t = max(min(s, hh), 0), max(min(t, hh), 0)
        mask[s:t, :] *= 0
    for i in range(-1, hh // d + 1):
        s = d * i + st_w
        t = s + length
        s, t = max(min(s, hh), 0), max(min(t, hh), 0)
        mask[:, s:t] *= 0
    mask = np.asarray(Image.fromarray(np.uint8(mask)).rotate(r))
    mask = mask[(hh - h) // 2:(hh - h) // 2 + h, (hh - w) // 2:(hh - w) // 2 + w]
    if mode == 1:
        mask = 1 - mask
    return torch.from_numpy(mask == 0)


@pytest.mark.parametrize("size", [(32, 32), (24, 40)])
@pytest.mark.parametrize("mode", [0, 1])
def test_gridmask_masks_equal_the_official_code_with_pil_rotation_pixel_for_pixel(size, mode):
    # Every angle 0..359 (counter-clockwise, as PIL), random units and offsets. Pixels may
    # differ only where a pixel centre lies on a band edge to rounding precision (PIL steps
    # through the image in fixed point, we compute each pixel in float32): a diagonal edge at
    # 45 degrees can flip along its length, so at most one edge (< min(h, w) pixels) per
    # mask, and under 0.1% of all pixels. A wrong direction or centre differs in most masks.
    h, w = size
    g = torch.Generator().manual_seed(mode)
    angle = torch.arange(360)
    d = torch.randint(5, 17, (360,), generator=g)
    band = torch.ceil(d.double() * 0.4).long()
    start = (torch.rand(360, 2, generator=g) * d[:, None]).long()
    ours = grid_masks(d, band, start, angle, size, mode=mode,
                      keep=torch.ones(360, dtype=torch.bool))[:, 0]
    differ = []
    for k in range(360):
        want = official_grid_mask(int(d[k]), int(band[k]), int(start[k, 0]), int(start[k, 1]),
                                  int(angle[k]), h, w, mode)
        differ.append(int((ours[k] != want).sum()))
    assert sum(differ) <= 0.001 * 360 * h * w, differ
    assert max(differ) < min(h, w), differ
    assert sum(n > 0 for n in differ) < 0.1 * 360


def test_gridmask_probability_ramps_linearly_as_the_official_set_prob():
    eraser = plugins.build("gridmask", p=0.8, ramp_epochs=240)
    assert [eraser.prob_at(e) for e in (0, 120, 240, 300)] == [0.0, 0.4, 0.8, 0.8]
    epoch_eraser = eraser.at_epoch(120)
    assert epoch_eraser.p == 0.4 and epoch_eraser.ramp_epochs is None
    assert plugins.build("gridmask", p=0.8).prob_at(0) == 0.8  # no ramp: always p
    assert not eraser.at_epoch(0)(images(64), generator=gen()).any()


def test_gridmask_with_a_ramp_must_be_used_through_at_epoch():
    eraser = plugins.build("gridmask", ramp_epochs=10)
    with pytest.raises(RuntimeError, match=r"call eraser.at_epoch\(epoch\)"):
        eraser(images(2))
    assert eraser.params()["ramp_epochs"] == 10  # the record keeps the ramp


# --- KeepAugment Cutout --------------------------------------------------------------------


def box_mean_saliency(mask, cam):
    slc = normalised_saliency(cam)
    return (slc * mask[:, 0]).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)


def test_keep_cutout_never_erases_a_box_whose_mean_saliency_is_above_the_threshold():
    cam = blob_cam(512)
    for threshold in (0.3, 0.6):
        eraser = plugins.build("keep_cutout", threshold=threshold)
        mask = eraser(images(512), cam=cam, generator=gen())
        erased = mask.flatten(1).any(1)
        assert erased.float().mean() > 0.5
        assert (box_mean_saliency(mask, cam)[erased] < threshold).all()


def test_keep_cutout_erases_cutout_squares_clipped_at_the_border():
    mask = plugins.build("keep_cutout")(images(512), cam=blob_cam(512), generator=gen())
    box = mask_box(mask[:, 0])
    width, height = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    assert (width <= 16).all() and (height <= 16).all()
    assert (mask.flatten(1).sum(1) == width * height).all()  # one rectangle each
    assert ((width == 16) & (height == 16)).any() and (width < 16).any()


def test_keep_cutout_with_no_acceptable_box_erases_nothing_or_the_least_salient_candidate():
    cam = torch.ones(64, SIZE, SIZE)
    cam[:, 0, 0] = 0.0  # normalised: 1 everywhere but one pixel, so every box is refused
    none = plugins.build("keep_cutout", threshold=0.5)(images(64), cam=cam, generator=gen())
    assert not none.any()
    least = plugins.build("keep_cutout", threshold=0.5, fallback="least_salient")(
        images(64), cam=cam, generator=gen())
    assert least.flatten(1).any(1).all()


def test_keep_cutout_least_salient_fallback_picks_the_candidate_with_the_lowest_mean():
    # threshold 0 accepts nothing, so every erased box is the fallback: with more candidates
    # to choose from, the chosen box is less salient.
    cam = blob_cam(512)
    means = []
    for attempts in (1, 50):
        eraser = plugins.build("keep_cutout", threshold=0.0, max_attempts=attempts,
                               fallback="least_salient")
        mask = eraser(images(512), cam=cam, generator=gen())
        assert mask.flatten(1).any(1).all()
        means.append(box_mean_saliency(mask, cam).mean())
    assert means[1] < 0.5 * means[0]


def test_keep_cutout_constant_saliency_is_no_evidence_and_every_box_is_accepted():
    mask = plugins.build("keep_cutout")(images(64), cam=torch.full((64, SIZE, SIZE), 3.0),
                                        generator=gen())
    assert mask.flatten(1).any(1).all()


# --- CutMix and CAM-guided CutMix ------------------------------------------------------------


def test_cutmix_lam_is_one_minus_the_clipped_box_area():
    mask = plugins.build("cutmix", p=1.0)(images(512), generator=gen())
    box = mask_box(mask[:, 0])
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    assert torch.equal(lam_from_mask(mask), 1.0 - area.float() / (SIZE * SIZE))
    assert (mask.flatten(1).sum(1) == area).all()  # the mask is exactly the clipped box
    clipped = (box[:, 0] == 0) | (box[:, 1] == 0) | (box[:, 2] == SIZE) | (box[:, 3] == SIZE)
    assert clipped.any() and (~clipped & (area > 0)).any()


def test_cutmix_unmixed_images_have_an_empty_mask_and_lam_one():
    mask = plugins.build("cutmix", p=0.5)(images(512), generator=gen())
    lam = lam_from_mask(mask)
    unmixed = ~mask.flatten(1).any(1)
    assert 0.4 < unmixed.float().mean() < 0.65  # p = 0.5, plus boxes of side 0 (lam ~ 1)
    assert (lam[unmixed] == 1.0).all()


def test_cutmix_box_sides_are_even_truncations_of_the_side_times_sqrt_one_minus_lam():
    mask = plugins.build("cutmix", p=1.0)(images(512), generator=gen())
    box = mask_box(mask[:, 0])
    width, height = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    inside = (box[:, 0] > 0) & (box[:, 1] > 0) & (box[:, 2] < SIZE) & (box[:, 3] < SIZE)
    # an unclipped box spans centre +- cut // 2: an even, square side
    assert ((width[inside] % 2 == 0) & (width[inside] == height[inside])).all()


def test_cam_cutmix_box_is_centred_on_the_partners_cam_peak():
    batch = 256
    partner = partner_permutation(batch, "cpu", generator=gen(1))
    own_peaks = torch.randint(8, SIZE - 8, (batch, 2), generator=gen(2))
    cam = planted_cam(own_peaks)
    eraser = plugins.build("cam_cutmix", p=1.0)
    mask = eraser(images(batch), cam=cam[partner], generator=gen())  # the partner's CAM
    box = mask_box(mask[:, 0])
    inside = (box[:, 0] > 0) & (box[:, 1] > 0) & (box[:, 2] < SIZE) & (box[:, 3] < SIZE)
    inside &= mask.flatten(1).any(1)
    assert inside.sum() > 50
    centre_row = (box[:, 1] + box[:, 3]) // 2
    centre_col = (box[:, 0] + box[:, 2]) // 2
    source = own_peaks[partner]
    assert torch.equal(centre_row[inside], source[inside, 0])
    assert torch.equal(centre_col[inside], source[inside, 1])
    assert not torch.equal(source[inside], own_peaks[inside])  # not its own peak


def test_cam_cutmix_boxes_have_cutmixs_size_distribution():
    x = images(4096)
    peak = planted_cam(torch.full((4096, 2), SIZE // 2))
    cam_box = plugins.build("cam_cutmix", p=1.0)(x, cam=peak, generator=gen())
    area = cam_box.flatten(1).float().mean(1)
    # centred boxes are never clipped: area = (2 (int(32 sqrt(1 - lam)) // 2))^2 / 1024
    # with lam ~ U(0, 1); its mean is about 1/2 minus the truncation loss
    assert 0.40 < area.mean() < 0.50


@pytest.mark.parametrize("name", ["cutmix", "cam_cutmix"])
def test_mixing_erasers_declare_mixes_and_mask_only_erasers_do_not(name):
    assert plugins.get(name).mixes is True
    for other in ("cutout", "random_erasing", "hide_and_seek", "cam_erasing", "gridmask",
                  "keep_cutout"):
        assert not getattr(plugins.get(other), "mixes", False)


def test_the_documented_mixing_recipe_gives_the_area_weighted_cross_entropy():
    # What the step does with a mixing eraser: paste from the partner, weight the two
    # labels by lam = 1 - pasted fraction. Checked against a per-image loop.
    batch, classes = 16, 10
    x = torch.randn(batch, 3, SIZE, SIZE, generator=gen(3))
    y = torch.randint(0, classes, (batch,), generator=gen(4))
    logits = torch.randn(batch, classes, generator=gen(5))
    g = gen(6)
    partner = partner_permutation(batch, "cpu", generator=g)
    mask = plugins.build("cutmix", p=1.0)(x, generator=g)
    mixed = torch.where(mask, x[partner], x)
    lam = lam_from_mask(mask)
    loss = (lam * F.cross_entropy(logits, y, reduction="none")
            + (1 - lam) * F.cross_entropy(logits, y[partner], reduction="none")).mean()
    by_hand = 0.0
    for i in range(batch):
        box = mask[i, 0]
        assert torch.equal(mixed[i][:, box], x[partner[i]][:, box])
        assert torch.equal(mixed[i][:, ~box], x[i][:, ~box])
        w = 1.0 - box.float().mean()
        by_hand += (w * F.cross_entropy(logits[i:i + 1], y[i:i + 1])
                    + (1 - w) * F.cross_entropy(logits[i:i + 1], y[partner[i]:partner[i] + 1]))
    assert torch.allclose(loss, by_hand / batch)


def test_partner_permutation_is_a_permutation_drawn_only_from_the_generator():
    a = partner_permutation(128, "cpu", generator=gen(9))
    assert torch.equal(a.sort().values, torch.arange(128))
    assert torch.equal(a, partner_permutation(128, "cpu", generator=gen(9)))
    assert not torch.equal(a, partner_permutation(128, "cpu", generator=gen(10)))


def test_beta_draws_stay_finite_for_tiny_alpha():
    lam = sample_beta(0.01, (10_000,), device="cpu", generator=gen())
    assert torch.isfinite(lam).all() and ((lam >= 0) & (lam <= 1)).all()
    assert ((lam < 0.01) | (lam > 0.99)).float().mean() > 0.9  # U-shaped, as Beta(0.01, 0.01)


# --- options the registry-wide tests do not reach: no host sync, one-line errors ----------


@pytest.mark.parametrize(("name", "params"), [
    ("gridmask", {"rotate": 360}),
    ("gridmask", {"mode": 0}),
    ("keep_cutout", {"fallback": "least_salient"}),
    ("cutmix", {"alpha": 0.3}),
    ("cam_cutmix", {"alpha": 2.0}),
])
def test_new_eraser_options_are_computed_without_host_sync(name, params):
    x = torch.empty(16, 3, SIZE, SIZE, device="meta")
    cam = torch.empty(16, SIZE, SIZE, device="meta")
    mask = plugins.build(name, **params)(x, cam=cam)
    assert mask.device.type == "meta" and mask.dtype == torch.bool
    assert partner_permutation(16, "meta", generator=None).device.type == "meta"


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("gridmask", {"d1": 33, "d2": 33}, r"d2 must be > d1 \(d is drawn from \[d1, d2\)\)"),
    ("gridmask", {"ratio": 1.5}, r"ratio must be in \[0.0, 1.0\]"),
    ("gridmask", {"mode": 2}, r"mode must be an integer in \[0, 1\]"),
    ("gridmask", {"rotate": 0}, r"rotate must be an integer in \[1, 360\]"),
    ("gridmask", {"ramp_epochs": 0}, "ramp_epochs must be an integer >= 1"),
    ("keep_cutout", {"threshold": -0.1}, r"threshold must be in \[0.0, 1.0\]"),
    ("keep_cutout", {"fallback": "random"}, "fallback must be one of 'none', 'least_salient'"),
    ("keep_cutout", {"max_attempts": 0}, "max_attempts must be an integer >= 1"),
    ("cutmix", {"alpha": 0.0}, r"alpha must be in \(0.0, 1000000.0\]"),
    ("cam_cutmix", {"alpha": -1}, r"alpha must be in \(0.0, 1000000.0\]"),
])
def test_invalid_hyperparameter_of_a_new_eraser_is_rejected_at_construction(name, kwargs,
                                                                             message):
    with pytest.raises(ValueError, match=message):
        plugins.build(name, **kwargs)


def test_commands_outside_a_run_take_a_ramped_gridmask_as_at_the_end_of_its_ramp():
    """speed erasers and the figures commands (`eraser_cli.resolve`) erase with the eraser of
    the epoch its ramp ends (its full p), not the bare ramped one that refuses to erase."""
    from benchmark.eraser_cli import resolve

    (spec,) = resolve(["gridmask:ramp_epochs=50,p=0.6"])
    assert spec.params == {"ramp_epochs": 50, "p": 0.6}  # the label keeps what was asked
    assert spec.eraser.p == 0.6 and spec.eraser.ramp_epochs is None
    assert spec.eraser(images(4), generator=gen()).shape == (4, 1, SIZE, SIZE)


def test_check_eraser_checks_a_ramped_gridmask_through_its_epochs_erasers():
    plugins.testing.check_eraser(plugins.build("gridmask", ramp_epochs=3))


def test_erase_transform_refuses_a_ramped_eraser_at_construction_in_one_line():
    with pytest.raises(ValueError, match=r"^Erase: GridMask\(.*ramp_epochs=3\) depends on the "
                                         r"epoch .*Erase\(eraser.at_epoch\(epoch\)\)"):
        plugins.Erase("gridmask", ramp_epochs=3)
    assert plugins.Erase(plugins.build("gridmask", ramp_epochs=3).at_epoch(3)).eraser.p == 0.8


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ratio": 0}, r"^GridMask: ratio must be in \(0.0, 1.0\), the band's share l / d of a unit "
                   r"\(l = ceil\(d \* ratio\)\), got 0 \(no band: mode 1 erases the whole "
                   r"image, mode 0 nothing\)$"),
    ({"ratio": 1.0, "mode": 0}, r"got 1.0 \(the band fills the unit: mode 1 erases nothing, mode "
                                r"0 the whole image\)$"),
    ({"ratio": 0.99}, r"^GridMask: ratio 0.99 with d 24 gives a band l = ceil\(24 \* 0.99\) = 24 "
                      r">= d, so no square is left between the bands \(mode 1 would erase "
                      r"nothing, mode 0 the whole image\); allowed with d1 24: 0 < ratio <= 1 - "
                      r"1/24 = 0.9583$"),
    ({"d1": 1, "d2": 4, "ratio": 0.5}, r"a unit of d 1 pixel has no room for both: use d1 >= 2$"),
])
def test_gridmask_refuses_a_ratio_that_leaves_no_band_or_no_square_in_a_unit(kwargs, message):
    """The official code draws l = ceil(d * ratio) unchecked: ratio 0 (no band) erases whole
    images in the paper's mode 1, and l >= d (no square) erases nothing or everything. Each
    unit must keep both: one line naming ratio, d and what is allowed."""
    with pytest.raises(ValueError, match=message):
        plugins.build("gridmask", **kwargs)
    plugins.build("gridmask", ratio=1 - 1 / 24)  # the largest ratio d1 24 allows
    plugins.build("gridmask", ratio=1e-6)  # l = 1: a one-pixel band

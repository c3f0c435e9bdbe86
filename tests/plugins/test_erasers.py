"""Specification of the eraser contract (every registered eraser) and of each built-in's
geometry."""

import pytest
import torch

import plugins
from plugins.geometry import peaks as cam_peak

NAMES = plugins.available()
SIZE = 32


def blob_cam(batch, size=SIZE, seed=0):
    """Synthetic CAM: one Gaussian blob per image at a random centre."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(batch, 2, generator=g) * size
    grid = torch.arange(size, dtype=torch.float32)
    gy = torch.exp(-((grid - centre[:, :1]) ** 2) / 18.0)
    gx = torch.exp(-((grid - centre[:, 1:]) ** 2) / 18.0)
    return gy[:, :, None] * gx[:, None, :]


def run(eraser, images, seed=0, cam=None):
    if eraser.needs_cam and cam is None:
        cam = blob_cam(images.shape[0], images.shape[-1], seed=seed + 100)
    return eraser(images, cam=cam, generator=torch.Generator().manual_seed(seed))


def images(batch=64, size=SIZE):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(7))


def planted_cam(peaks, size=SIZE):
    """CAM with a single maximum at each (row, col) of ``peaks`` (B, 2)."""
    cam = torch.zeros(len(peaks), size, size)
    cam[torch.arange(len(peaks)), peaks[:, 0], peaks[:, 1]] = 1.0
    return cam


def boxes(mask):
    """Bounding box (top, left, height, width) of each mask (B, 1, H, W); rows with no pixel ->
    0."""
    rows, cols = mask[:, 0].any(2), mask[:, 0].any(1)
    return rows.int().argmax(1), cols.int().argmax(1), rows.sum(1), cols.sum(1)


# --- randomness of every registered eraser; the contract itself (mask, input unchanged,
# seeds, no host sync, params, p=0, the transform) is plugins.testing, run over the registry
# in test_contract.py ---


@pytest.mark.parametrize("name", NAMES)
def test_different_seeds_give_different_masks(name):
    eraser, x = plugins.build(name), images()
    cam = blob_cam(64) if eraser.needs_cam else None
    assert not torch.equal(run(eraser, x, seed=1, cam=cam), run(eraser, x, seed=2, cam=cam))


@pytest.mark.parametrize("name", NAMES)
def test_masks_differ_across_the_batch(name):
    eraser = plugins.build(name)
    # Same CAM for every image, so only per-sample randomness can make the masks differ.
    cam = blob_cam(1).expand(64, SIZE, SIZE).contiguous() if eraser.needs_cam else None
    mask = run(eraser, images(), cam=cam)
    distinct = {tuple(m.flatten().tolist()) for m in mask}
    assert len(distinct) > 8


@pytest.mark.parametrize("name", NAMES)
def test_p_outside_unit_interval_is_rejected_with_the_allowed_range(name):
    with pytest.raises(ValueError, match=r"p must be in \[0.0, 1.0\], got 1.5"):
        plugins.build(name, p=1.5)


def test_generator_on_another_device_is_rejected():
    x = torch.empty(4, 3, SIZE, SIZE, device="meta")
    with pytest.raises(ValueError, match="generator is on cpu but images are on meta"):
        plugins.build("cutout")(x, generator=torch.Generator())


def test_images_must_be_a_4d_float_batch():
    eraser = plugins.build("cutout")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        eraser(torch.zeros(3, SIZE, SIZE))
    with pytest.raises(TypeError, match="floating point"):
        eraser(torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(4, SIZE, SIZE, 3), (4, SIZE, SIZE, 1)])
def test_channels_last_batch_is_refused_with_the_permute_that_fixes_it(name, shape):
    eraser = plugins.build(name)
    x = torch.empty(shape, device="meta")  # a shape-only check: no data, no host sync
    cam = torch.empty(4, SIZE, 3, device="meta") if eraser.needs_cam else None
    with pytest.raises(ValueError, match=r"channels-last \(B, H, W, C\).*permute\(0, 3, 1, 2\)"):
        eraser(x, cam=cam)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channels_first_batches_with_any_channel_count_are_accepted(channels):
    mask = plugins.build("cutout")(torch.empty(2, channels, SIZE, SIZE, device="meta"))
    assert mask.shape == (2, 1, SIZE, SIZE)


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_masks_are_drawn_on_cuda_with_a_cuda_generator(name):
    x = images(32).cuda()
    cam = blob_cam(32).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    mask = plugins.build(name)(x, cam=cam, generator=g)
    assert mask.device == x.device and mask.shape == (32, 1, SIZE, SIZE)


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_eraser_and_fill_capture_in_one_cuda_graph(name):
    eraser = plugins.build(name)
    x = images(32).cuda()
    cam = blob_cam(32).cuda()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # warm-up outside the capture, as CUDA graphs require
        plugins.fill(x, eraser(x, cam=cam))
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = plugins.fill(x, eraser(x, cam=cam))
    graph.replay()
    first = out.clone()
    graph.replay()
    torch.cuda.synchronize()
    assert out.shape == x.shape
    assert not torch.equal(first, out)  # each replay draws new random numbers


# --- invalid hyperparameters: one-line errors naming the argument and the allowed values ---


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("random_erasing", {"sl": 0.5, "sh": 0.4}, "sl must be <= sh"),
        ("random_erasing", {"r1": 0.0}, r"r1 must be in \(0.0, 1.0\]"),
        ("random_erasing", {"aspect": "normal"}, "aspect must be one of 'uniform', 'log'"),
        ("random_erasing", {"max_attempts": 0}, "max_attempts must be an integer >= 1"),
        ("cutout", {"size": 0}, "size must be an integer >= 1"),
        ("cutout", {"holes": 1.5}, "holes must be an integer >= 1"),
        ("hide_and_seek", {"grid_size": 0}, "grid_size must be an integer >= 1"),
        ("hide_and_seek", {"hide_prob": -0.1}, r"hide_prob must be in \[0.0, 1.0\]"),
        ("random_erasing", {"min_count": 0}, "min_count must be an integer >= 1"),
        ("random_erasing", {"max_count": 2.5}, "max_count must be an integer >= 1"),
        ("random_erasing", {"min_count": 3, "max_count": 2}, "min_count must be <= max_count"),
        ("cam_erasing", {"b_h": -1}, "b_h must be an integer >= 0"),
        ("cam_erasing", {"vertex": "middle"},
         "vertex must be one of 'top_left', 'random', 'centre'"),
        ("cam_erasing", {"border": "wrap"}, "border must be one of 'clip', 'shift'"),
    ],
)
def test_invalid_hyperparameter_is_rejected_at_construction(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plugins.build(name, **kwargs)


# --- Random Erasing ---


def test_random_erasing_boxes_are_rectangles_that_fit_strictly_inside_the_image():
    mask = run(plugins.build("random_erasing", p=1.0), images(2000))
    top, left, height, width = boxes(mask)
    assert (height < SIZE).all() and (width < SIZE).all()
    rows = torch.arange(SIZE)
    in_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])
    in_cols = (rows >= left[:, None]) & (rows < (left + width)[:, None])
    assert torch.equal(mask[:, 0], in_rows[:, :, None] & in_cols[:, None, :])


def test_random_erasing_erases_about_half_the_images_with_the_thesis_p():
    mask = run(plugins.build("random_erasing"), images(4000))
    assert abs(mask.flatten(1).any(1).float().mean() - 0.5) < 0.04


def test_random_erasing_log_aspect_defaults_to_torchvisions_ten_attempts():
    assert plugins.build("random_erasing", aspect="log").max_attempts == 10
    assert plugins.build("random_erasing").max_attempts == 100
    assert plugins.build("random_erasing", aspect="log", max_attempts=3).max_attempts == 3


def test_random_erasing_with_one_attempt_sometimes_finds_no_box_and_does_not_erase():
    # sh = 1: most areas give h or w >= 32, so a single attempt often fails.
    mask = run(plugins.build("random_erasing", p=1.0, sl=0.9, sh=1.0, max_attempts=1), images(500))
    erased = mask.flatten(1).any(1)
    assert 0 < erased.sum() < 500


def test_random_erasing_with_one_rectangle_draws_exactly_the_masks_it_drew_before_max_count():
    # Checksums of the masks drawn before min_count/max_count existed (same seed, same images):
    # the default path keeps its RNG draw sequence, so the fidelity statistics are unchanged.
    for params, (count, weighted) in [
        ({}, (27862, 137571683)),
        ({"min_count": 1, "max_count": 1}, (27862, 137571683)),
        ({"aspect": "log"}, (30396, 140801897)),
    ]:
        mask = run(plugins.build("random_erasing", **params), images(256), seed=0)
        weights = torch.arange(mask.numel()).remainder(9973).view(mask.shape)
        assert (int(mask.sum()), int((mask * weights).sum())) == (count, weighted)


def test_random_erasing_count_is_uniform_in_min_count_to_max_count_and_splits_the_area():
    # Squares of fixed area: one rectangle of 1/8 of the image is 11 x 11 (round(sqrt(128))),
    # two rectangles of 1/16 each are 8 x 8, and no union of two 8 x 8 squares is an 11 x 11 one.
    eraser = plugins.build("random_erasing", p=1.0, sl=0.125, sh=0.125, r1=1.0,
                           min_count=1, max_count=2)
    mask = run(eraser, images(2000))
    top, left, height, width = boxes(mask)
    one = (height == 11) & (width == 11) & (mask.flatten(1).sum(1) == 121)
    assert abs(one.float().mean() - 0.5) < 0.05
    pixels = mask.flatten(1).sum(1)[~one]
    assert (pixels >= 64).all() and (pixels <= 128).all() and (pixels == 128).float().mean() > 0.5


def test_random_erasing_max_count_matches_timms_erased_fraction_distribution():
    import random

    from scipy.stats import ks_2samp
    from timm.data.random_erasing import RandomErasing as TimmRandomErasing

    n = 20_000
    random.seed(0)  # timm draws with Python's random, one image at a time
    timm_images = torch.ones(n, 1, SIZE, SIZE)
    TimmRandomErasing(probability=1.0, min_area=0.02, max_area=1 / 3, min_aspect=0.3,
                      mode="const", max_count=3, device="cpu")(timm_images)
    theirs = (timm_images == 0).flatten(1).double().mean(1).numpy()
    eraser = plugins.build("random_erasing", p=1.0, sl=0.02, sh=1 / 3, r1=0.3, aspect="log",
                           max_count=3)
    ours = run(eraser, torch.zeros(n, 1, SIZE, SIZE)).flatten(1).double().mean(1).numpy()
    critical = 1.949 * (2 / n) ** 0.5  # two-sample KS at alpha = 0.001
    assert ks_2samp(ours, theirs).statistic < critical
    one = run(plugins.build("random_erasing", p=1.0, sl=0.02, sh=1 / 3, r1=0.3, aspect="log"),
              torch.zeros(n, 1, SIZE, SIZE)).flatten(1).double().mean(1).numpy()
    assert ks_2samp(one, theirs).statistic > 5 * critical  # the test can tell 1 from 1-3


# --- Cutout ---


def test_cutout_never_erases_more_than_256_of_1024_pixels():
    counts = run(plugins.build("cutout"), images(4000)).flatten(1).sum(1)
    assert counts.max() == 256 and counts.min() >= 64


def test_cutout_centre_may_fall_outside_so_area_is_clipped():
    counts = run(plugins.build("cutout"), images(20000)).flatten(1).sum(1)
    # Centre uniform over all 32 rows: the full 16 rows only for y in [8, 24] (17 of 32).
    assert abs((counts == 256).float().mean() - (17 / 32) ** 2) < 0.015
    # A centre in the corner pixel leaves an 8x8 quarter: the smallest possible hole.
    assert counts.min() == 64
    top, left, height, width = boxes(run(plugins.build("cutout"), images(2000)))
    assert ((height >= 8) & (height <= 16) & (width >= 8) & (width <= 16)).all()


def test_cutout_odd_size_erases_size_minus_one_as_the_official_code():
    counts = run(plugins.build("cutout", size=5), images(2000)).flatten(1).sum(1)
    assert counts.max() == 16  # 4 x 4, not 5 x 5


def test_cutout_holes_are_independent_and_may_overlap():
    counts = run(plugins.build("cutout", holes=2), images(2000)).flatten(1).sum(1)
    assert counts.max() <= 512 and (counts > 256).any()
    # Overlapping or clipped holes give fewer than 2 x 256 pixels in some images.
    assert (counts < 512).any()


# --- Hide-and-Seek ---


def test_hide_and_seek_fractions_are_multiples_of_one_sixteenth_on_32x32():
    mask = run(plugins.build("hide_and_seek", p=1.0), images(2000))
    counts = mask.flatten(1).sum(1)
    assert (counts % 64 == 0).all()
    assert len(torch.unique(counts)) > 8


def test_hide_and_seek_cells_are_constant_and_anchored_at_the_origin():
    mask = run(plugins.build("hide_and_seek", p=1.0), images(200, 30))[:, 0]
    for start, stop in [(0, 8), (8, 16), (16, 24), (24, 30)]:  # last cell is partial
        block = mask[:, start:stop, start:stop]
        assert (block == block[:, :1, :1]).all()


def test_hide_and_seek_hides_every_cell_with_hide_prob_one_and_none_with_zero():
    assert run(plugins.build("hide_and_seek", p=1.0, hide_prob=1.0), images(8)).all()
    assert not run(plugins.build("hide_and_seek", p=1.0, hide_prob=0.0), images(8)).any()


# --- CAM erasing ---


def test_cam_erasing_without_a_cam_raises_a_clear_error():
    with pytest.raises(ValueError, match="needs a saliency map"):
        plugins.build("cam_erasing")(images(4))


def test_cam_of_the_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match=r"cam must have shape \(4, 32, 32\)"):
        plugins.build("cam_erasing")(images(4), cam=torch.zeros(4, 8, 8))


def test_cam_peak_is_the_first_maximum_in_row_major_order():
    cam = torch.zeros(2, 5, 7)
    cam[0, 3, 1] = cam[0, 2, 6] = 1.0  # tie: (2, 6) comes first in row-major order
    cam[1, 4, 4] = 2.0
    assert cam_peak(cam).tolist() == [[2, 6], [4, 4]]


def test_cam_peak_of_a_constant_map_is_the_image_centre():
    assert cam_peak(torch.zeros(1, 32, 32)).tolist() == [[16, 16]]
    assert cam_peak(torch.full((1, 5, 7), 3.0)).tolist() == [[2, 3]]


def test_cam_erasing_top_left_vertex_lands_at_peak_plus_offset_within_b_h():
    g = torch.Generator().manual_seed(5)
    peaks = torch.randint(0, 18, (3000, 2), generator=g)  # boxes start inside the image
    mask = run(plugins.build("cam_erasing", b_h=2), images(3000), cam=planted_cam(peaks))
    top, left, _, _ = boxes(mask)
    offset = torch.stack((top, left), 1) - peaks
    assert ((offset >= 0) & (offset <= 2)).all()
    assert set(offset.flatten().tolist()) == {0, 1, 2}  # b_h itself is reachable


def test_cam_erasing_with_b_h_zero_puts_the_vertex_on_the_peak():
    peaks = torch.randint(0, 18, (500, 2), generator=torch.Generator().manual_seed(1))
    mask = run(plugins.build("cam_erasing", b_h=0), images(500), cam=planted_cam(peaks))
    top, left, _, _ = boxes(mask)
    assert torch.equal(torch.stack((top, left), 1), peaks)


def test_cam_erasing_constant_cam_falls_back_to_the_centre():
    mask = run(plugins.build("cam_erasing", b_h=0), images(200), cam=torch.zeros(200, SIZE, SIZE))
    top, left, _, _ = boxes(mask)
    assert (top == 16).all() and (left == 16).all()


def test_cam_erasing_clip_at_the_last_pixel_erases_only_that_pixel():
    peaks = torch.full((200, 2), SIZE - 1)
    mask = run(plugins.build("cam_erasing", b_h=0), images(200), cam=planted_cam(peaks))
    assert (mask.flatten(1).sum(1) == 1).all() and mask[:, 0, -1, -1].all()


def test_cam_erasing_shift_keeps_the_whole_rectangle_inside_the_image():
    peaks = torch.full((500, 2), SIZE - 1)
    eraser = plugins.build("cam_erasing", b_h=2, border="shift")
    mask = run(eraser, images(500), cam=planted_cam(peaks))
    top, left, height, width = boxes(mask)
    assert (top + height == SIZE).all() and (left + width == SIZE).all()
    assert torch.equal(mask.flatten(1).sum(1), height * width)
    assert (height * width > 1).float().mean() > 0.99


def test_cam_erasing_random_vertex_uses_all_four_corners_of_the_rectangle():
    peaks = torch.full((400, 2), 16)
    eraser = plugins.build("cam_erasing", b_h=0, vertex="random", sl=0.02, sh=0.05)
    top, left, height, width = boxes(run(eraser, images(400), cam=planted_cam(peaks)))
    at_top, at_left = top == 16, left == 16
    at_bottom, at_right = top + height - 1 == 16, left + width - 1 == 16
    assert ((at_top | at_bottom) & (at_left | at_right)).all()
    corners = {(bool(a), bool(b))
               for a, b in zip(at_top & ~at_bottom, at_left & ~at_right, strict=True)}
    assert corners == {(True, True), (True, False), (False, True), (False, False)}


def test_cam_erasing_centre_vertex_centres_the_rectangle_on_the_peak():
    peaks = torch.full((300, 2), 16)
    eraser = plugins.build("cam_erasing", b_h=0, vertex="centre", sh=0.1)
    top, left, height, width = boxes(run(eraser, images(300), cam=planted_cam(peaks)))
    assert torch.equal(top, 16 - height // 2) and torch.equal(left, 16 - width // 2)


# --- fill ---


def test_fill_zero_sets_masked_pixels_to_zero_and_keeps_the_rest():
    x = images(4)
    mask = run(plugins.build("cutout"), x)
    out = plugins.fill(x, mask)
    assert (out.masked_select(mask.expand_as(x)) == 0).all()
    assert torch.equal(out.masked_select(~mask.expand_as(x)), x.masked_select(~mask.expand_as(x)))
    assert not torch.equal(out, x) and out.data_ptr() != x.data_ptr()


def test_fill_mean_writes_the_per_channel_values_given_by_the_caller():
    x, mask = images(2), torch.zeros(2, 1, SIZE, SIZE, dtype=torch.bool)
    mask[:, :, :4, :4] = True
    out = plugins.fill(x, mask, "mean", mean=[0.1, 0.2, 0.3])
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.1, 0.2, 0.3]))
    assert torch.equal(out[:, :, 5:], x[:, :, 5:])


def test_fill_mean_without_mean_or_with_the_wrong_length_is_an_error():
    x, mask = images(2), torch.zeros(2, 1, SIZE, SIZE, dtype=torch.bool)
    with pytest.raises(ValueError, match="fill=.mean. needs mean="):
        plugins.fill(x, mask, "mean")
    with pytest.raises(ValueError,
                       match=r"mean must have 1 value \(all channels\) or 3 \(one per channel\)"):
        plugins.fill(x, mask, "mean", mean=[0.0, 0.0])


def test_fill_random_draws_standard_normal_pixels_reproducibly():
    x, mask = images(8), torch.ones(8, 1, SIZE, SIZE, dtype=torch.bool)
    a = plugins.fill(x, mask, "random", generator=torch.Generator().manual_seed(0))
    b = plugins.fill(x, mask, "random", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert abs(a.mean()) < 0.05 and abs(a.std() - 1) < 0.05


def test_fill_channel_draws_one_standard_normal_value_per_image_and_channel():
    x, mask = images(512), torch.zeros(512, 1, SIZE, SIZE, dtype=torch.bool)
    mask[:, :, 2:10, 3:9] = True
    out = plugins.fill(x, mask, "channel", generator=torch.Generator().manual_seed(0))
    again = plugins.fill(x, mask, "channel", generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    region = out[:, :, 2:10, 3:9]
    colour = region[:, :, :1, :1]
    assert (region == colour).all()  # one flat colour per image and channel
    assert torch.equal(out[:, :, 10:], x[:, :, 10:])
    assert abs(colour.mean()) < 0.1 and abs(colour.std() - 1) < 0.1
    assert not torch.equal(colour[:, 0], colour[:, 1])  # channels drawn independently


def test_fill_channel_is_computed_without_host_sync():
    x = torch.empty(4, 3, SIZE, SIZE, device="meta")
    mask = torch.empty(4, 1, SIZE, SIZE, dtype=torch.bool, device="meta")
    assert plugins.fill(x, mask, "channel").device.type == "meta"


def test_fill_rejects_unknown_modes_and_non_bool_masks():
    x = images(2)
    with pytest.raises(ValueError,
                       match="the fill must be one of 'zero', 'mean', 'random', 'channel'"):
        plugins.fill(x, torch.zeros(2, 1, SIZE, SIZE, dtype=torch.bool), "noise")
    with pytest.raises(ValueError, match="mask must be bool"):
        plugins.fill(x, torch.zeros(2, 1, SIZE, SIZE))

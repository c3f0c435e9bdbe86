"""plugins.Erase as a torchvision / timm user expects it: uint8 images, fills in the image's
units for every dtype, one draw per sample, kept memory format, (H, W) images, p=0 identity,
boxes warning, DataLoader workers."""

import warnings

import numpy as np
import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

import plugins

SIZE = 16
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def pil(seed=0):
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(1, 256, (SIZE, SIZE, 3), dtype=np.uint8))


def uint8(*shape, seed=0):
    return torch.randint(1, 256, shape, dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def seeded(name="cutout", fill="zero", seed=0, **kw):
    kw.setdefault("p", 1.0)
    return plugins.Erase(name, fill, generator=torch.Generator().manual_seed(seed), **kw)


def box_mask(batch=2, channels=1):
    mask = torch.zeros(batch, channels, SIZE, SIZE, dtype=torch.bool)
    mask[:, :, 2:10, 3:11] = True
    return mask


# --- uint8: torchvision's dtype after decoding ---


def test_piltotensor_then_erase_erases_uint8_images_with_fills_in_0_to_255():
    out = v2.Compose([v2.PILToTensor(), seeded("random_erasing")])(pil())
    assert type(out) is torch.Tensor and out.dtype == torch.uint8  # PILToTensor: plain
    assert (out == 0).all(dim=0).any()
    red = v2.Compose([v2.PILToTensor(), seeded("cutout", "mean", mean=(255, 0, 0))])(pil())
    erased = (red[1] == 0) & (red[2] == 0)
    assert erased.any() and (red[0][erased] == 255).all()


@pytest.mark.parametrize("mode", ["random", "channel"])
def test_random_fills_on_uint8_draw_integers_over_0_to_255(mode):
    x = uint8(256, 3, SIZE, SIZE)
    out = plugins.fill(x, box_mask(256), mode, generator=torch.Generator().manual_seed(0))
    values = out[:, :, 2:10, 3:11].float()
    assert out.dtype == torch.uint8 and values.min() <= 2 and values.max() >= 253
    assert abs(values.mean() - 127.5) < 10  # 768 colours for 'channel'


def test_a_fractional_or_out_of_range_uint8_fill_value_is_one_line_naming_the_dtype():
    x = uint8(2, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"mean for uint8 images must be integers in \[0, 255\].*"
                                         r"got 0.5"):
        plugins.fill(x, box_mask(), "mean", mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="got 300"):
        plugins.fill(x, box_mask(), "mean", mean=torch.tensor([300, 0, 0]))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.int8, torch.bool])
def test_an_image_dtype_the_fills_cannot_write_is_one_line_naming_it_and_the_allowed(dtype):
    x = torch.zeros(2, 3, SIZE, SIZE, dtype=dtype)
    allowed = r"allowed: uint8 \(values 0-255\) or a floating dtype"
    with pytest.raises(TypeError, match=rf"fill: images of dtype {dtype} .*{allowed}"):
        plugins.fill(x, box_mask(), "zero")
    with pytest.raises(TypeError, match=rf"Erase: images of dtype {dtype} .*{allowed}"):
        plugins.Erase("cutout")(x)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("mode", ["zero", "mean", "random", "channel"])
def test_every_fill_writes_its_values_in_every_float_dtype(mode, dtype):
    x = torch.rand(64, 3, SIZE, SIZE).to(dtype) + 2  # in [2, 3]: fills are told apart
    out = plugins.fill(x, box_mask(64), mode, mean=0.5,
                       generator=torch.Generator().manual_seed(0))
    region = out[:, :, 2:10, 3:11].float()
    assert out.dtype == dtype and torch.equal(out[:, :, 10:], x[:, :, 10:])
    if mode in ("zero", "mean"):
        assert (region == (0.0 if mode == "zero" else 0.5)).all()
    else:  # N(0, 1)
        assert abs(region.mean()) < 0.1 and abs(region.std() - 1) < 0.1


# --- fill values: a scalar for any channel count ---


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_a_scalar_mean_fills_every_channel_of_any_channel_count(channels):
    x = torch.rand(2, channels, SIZE, SIZE) + 1
    out = seeded("cutout", "mean", mean=0.5)(x)
    assert ((out == 0.5).all(dim=1) | (out != 0.5).all(dim=1)).all()
    assert (out == 0.5).any()


def test_per_channel_values_that_do_not_match_the_channels_are_one_line():
    with pytest.raises(ValueError, match=r"mean must have 1 value \(1 channel\), got 3 values"):
        seeded("cutout", "mean", mean=(0.5,) * 3)(torch.rand(1, SIZE, SIZE))


# --- one draw per call, applied to every image of the sample ---


def test_the_images_of_one_sample_get_the_same_draw_and_a_batch_keeps_one_mask_per_image():
    image = tv_tensors.Image(torch.rand(8, 3, SIZE, SIZE) + 0.1)
    depth = tv_tensors.Image(torch.rand(8, 1, SIZE, SIZE) + 0.1)
    out = seeded("random_erasing")({"image": image, "target": depth, "label": 1})
    erased_image, erased_depth = (out["image"] == 0).all(1), out["target"][:, 0] == 0
    assert torch.equal(erased_image, erased_depth) and out["label"] == 1
    assert len({tuple(m.flatten().tolist()) for m in erased_image}) > 1


def test_plain_tensors_in_a_sample_follow_v2s_rule_only_the_first_is_an_image():
    x = torch.rand(3, SIZE, SIZE) + 0.1
    out = seeded()({"image": x, "target": x.clone()})
    assert (out["image"] == 0).any() and torch.equal(out["target"], x)


def test_images_of_one_sample_with_different_sizes_are_one_line():
    sample = (tv_tensors.Image(torch.rand(3, SIZE, SIZE)), tv_tensors.Image(torch.rand(3, 8, 8)))
    with pytest.raises(ValueError, match=r"share one draw.*\(3, 16, 16\), \(3, 8, 8\)"):
        seeded()(sample)


# --- layout, shapes ---


@pytest.mark.parametrize("mode", ["zero", "mean", "random", "channel"])
def test_a_channels_last_batch_comes_back_channels_last_with_every_fill(mode):
    x = torch.rand(4, 3, SIZE, SIZE).to(memory_format=torch.channels_last)
    out = seeded("random_erasing", mode, mean=(0.1, 0.2, 0.3))(x)
    assert out.is_contiguous(memory_format=torch.channels_last) and out.stride() == x.stride()
    filled = plugins.fill(x, box_mask(4), mode, mean=0.0)
    assert filled.stride() == x.stride()


def test_an_hw_tensor_is_one_channel_as_torchvision_reads_it():
    x = torch.rand(SIZE, SIZE) + 0.1
    out = seeded()(x)
    assert out.shape == (SIZE, SIZE) and (out == 0).any()
    assert torch.equal(out, seeded()(x[None])[0])


@pytest.mark.parametrize("shape", [(4, 16, 3), (2, 8, 1), (3, 5, 4), (1, 16, 3)])
def test_a_channels_first_image_with_up_to_4_channels_is_never_refused(shape):
    assert seeded()(torch.rand(shape)).shape == shape


def test_an_image_that_can_only_be_channels_last_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"\(16, 16, 3\) look channels-last.*permute\(2, 0, 1\)"):
        seeded()(torch.rand(SIZE, SIZE, 3))


# --- p=0, boxes ---


def test_p_zero_returns_the_input_object_itself():
    x = torch.rand(3, SIZE, SIZE)
    sample = {"image": tv_tensors.Image(x), "label": 2}
    assert plugins.Erase("random_erasing", p=0.0)(x) is x
    assert plugins.Erase("cutout", p=0.0)(sample) is sample


@pytest.mark.parametrize("kind", ["boxes", "mask"])
def test_boxes_and_masks_pass_through_with_torchvisions_warning_that_they_are_not_erased(kind):
    other = (tv_tensors.BoundingBoxes([[1, 2, 8, 9]], format="XYXY", canvas_size=(SIZE, SIZE))
             if kind == "boxes" else tv_tensors.Mask(torch.zeros(SIZE, SIZE, dtype=torch.uint8)))
    name = type(other).__name__
    with pytest.warns(UserWarning, match=f"passing through inputs of type tv_tensors.{name}"):
        out = seeded()({"image": tv_tensors.Image(torch.rand(3, SIZE, SIZE)), kind: other})
    assert out[kind] is other
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seeded()({"image": tv_tensors.Image(torch.rand(3, SIZE, SIZE)), "label": 1})


# --- the documented pipelines: values in the data's units ---


def test_erasing_uint8_before_todtype_keeps_every_value_in_0_1_and_the_channel_means():
    transform = v2.Compose([v2.PILToTensor(),
                            plugins.Erase("random_erasing", "channel", p=0.5, max_count=2),
                            v2.ToDtype(torch.float32, scale=True)])
    torch.manual_seed(0)
    grey = PIL.Image.new("RGB", (SIZE, SIZE), (128, 128, 128))  # 0.502 everywhere
    out = torch.stack([transform(grey) for _ in range(300)])
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1
    filled = out[out != 128 / 255]
    assert filled.numel() > 1000 and abs(filled.mean() - 0.5) < 0.03  # uniform over [0, 1]
    assert (out.mean(dim=(0, 2, 3)) - 0.5).abs().max() < 0.02


def test_erasing_after_normalize_fills_in_the_normalised_units():
    transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize((0.5,) * 3, (0.25,) * 3),
                            plugins.Erase("random_erasing", "channel", p=0.5, max_count=2)])
    torch.manual_seed(0)
    out = torch.stack([transform(PIL.Image.new("RGB", (SIZE, SIZE), (128, 128, 128)))
                       for _ in range(300)])
    filled = out[(out - (128 / 255 - 0.5) / 0.25).abs() > 1e-4]
    assert abs(filled.mean()) < 0.1 and abs(filled.std() - 1) < 0.1  # N(0, 1): the data's scale


# --- DataLoader workers ---


class Holes(Dataset):
    def __init__(self, transform):
        self.transform = transform

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return self.transform(torch.ones(1, SIZE, SIZE))


def holes(epochs=2, workers=2):
    """Per epoch, the erased masks of 8 images loaded by ``workers`` workers."""
    generator = torch.Generator().manual_seed(1)
    transform = plugins.Erase("cutout", "random", size=4, generator=generator)
    loader = DataLoader(Holes(transform), batch_size=4, num_workers=workers)
    return [torch.cat([(batch != 1) for batch in loader]) for _ in range(epochs)]


def test_a_seeded_generator_draws_differently_in_each_worker_and_epoch_and_reproducibly():
    torch.manual_seed(0)
    first, second = holes()
    masks = {tuple(m.flatten().tolist()) for m in torch.cat([first, second])}
    assert len(masks) == 16  # no worker or epoch repeats another's holes
    torch.manual_seed(0)
    again = holes()
    assert torch.equal(again[0], first) and torch.equal(again[1], second)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float32,
                                   torch.float64])
@pytest.mark.parametrize("mode", ["zero", "mean", "random", "channel"])
@pytest.mark.parametrize("mean, expected", [
    (float("nan"), "mean must be one finite number (all channels) or 3 (one per channel), got nan"),
    (float("inf"), "mean must be one finite number (all channels) or 3 (one per channel), got inf"),
    ("0.5", "mean must be one finite number (all channels) or 3 (one per channel), got str"),
    ((1, 2), "mean must have 1 value (all channels) or 3 (one per channel), got 2 values"),
    ((1, float("nan"), 3), "got nan"),
])
def test_every_fill_refuses_a_non_finite_non_numeric_or_wrong_length_mean_in_one_line(
        dtype, mode, mean, expected):
    images = torch.zeros(2, 3, 8, 8, dtype=dtype)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    with pytest.raises(ValueError) as info:
        plugins.fill(images, mask, mode, mean=mean)
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("mode", ["zero", "mean", "random", "channel"])
def test_every_fill_refuses_a_generator_that_is_not_a_torch_generator_in_one_line(dtype, mode):
    images = torch.zeros(2, 3, 8, 8, dtype=dtype)
    mask = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    with pytest.raises(TypeError, match=r"^fill: generator must be a torch.Generator .* got int$"):
        plugins.fill(images, mask, mode, mean=1, generator=123)


def test_a_mean_given_to_a_fill_that_ignores_it_is_still_checked_as_torchvision_checks_value():
    erase = plugins.Erase("cutout", "zero", mean=(1, 2), p=1.0)
    with pytest.raises(ValueError, match=r"^fill: mean must have 1 value .* got 2 values$"):
        erase(torch.rand(3, 8, 8))
    out = plugins.Erase("cutout", "zero", mean=(1, 2, 3), p=1.0)(torch.ones(3, 8, 8))
    assert out.min() == 0                                  # a valid mean is simply unused

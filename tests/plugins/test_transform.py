"""Specification of plugins.Erase: every registered eraser as a torchvision v2 transform."""

import pickle

import PIL.Image
import pytest
import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

import plugins
from plugins.functional import apply_eraser

# The mask erasers: the mixing ones (cutmix, cam_cutmix) take (images, labels) batches and are
# specified in tests/plugins/test_mixing_transform.py.
NAMES = [n for n in plugins.available() if not getattr(plugins.get(n), "mixes", False)]
SIZE = 16


def data(*shape, seed=0, dtype=torch.float32):
    """Images in (0.1, 1]: never 0, so a 0 in the output is an erased pixel."""
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 0.9 + 0.1).to(dtype)


def cam_for(shape):
    """A random CAM with the images' leading dimensions (its peak at a random pixel)."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(1))


def transform(name, seed=0, **kw):
    """Erase(name) with p 1 (every image erased) and a seeded generator."""
    return plugins.Erase(name, p=1.0, generator=torch.Generator().manual_seed(seed), **kw)


def call(t, x, lead=None):
    """Call the transform, with a CAM of the right shape when its eraser needs one."""
    if not t.eraser.needs_cam:
        return t(x)
    lead = x.shape[:-3] if lead is None else lead
    return t(x, cam=cam_for((*lead, SIZE, SIZE)))


INPUTS = {
    "tensor (C, H, W)": lambda: data(3, SIZE, SIZE),
    "tensor (B, C, H, W)": lambda: data(6, 3, SIZE, SIZE),
    "tensor (A, B, C, H, W)": lambda: data(2, 3, 3, SIZE, SIZE),
    "Image (C, H, W)": lambda: tv_tensors.Image(data(3, SIZE, SIZE)),
    "Image (B, C, H, W)": lambda: tv_tensors.Image(data(6, 3, SIZE, SIZE)),
    "Video (T, C, H, W)": lambda: tv_tensors.Video(data(4, 3, SIZE, SIZE)),
    "Video (B, T, C, H, W)": lambda: tv_tensors.Video(data(2, 4, 3, SIZE, SIZE)),
}


def lead_of(x):
    return x.shape[:-4] if isinstance(x, tv_tensors.Video) else x.shape[:-3]


# --- the check_kernel-style contract, for every registered eraser and input kind ---


@pytest.mark.parametrize("kind", INPUTS)
@pytest.mark.parametrize("name", NAMES)
def test_erase_returns_the_input_type_shape_dtype_and_device_and_erases(name, kind):
    x = INPUTS[kind]()
    out = call(transform(name), x, lead_of(x))
    assert type(out) is type(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert (out == 0).any() and not (x == 0).any()


@pytest.mark.parametrize("name", NAMES)
def test_erase_changes_pixels_only_where_the_zero_fill_wrote_all_channels(name):
    x = data(8, 3, SIZE, SIZE)
    out = call(transform(name), x)
    erased = (out == 0).all(dim=1, keepdim=True)
    assert erased.any()
    assert torch.equal(torch.where(erased, x, out), x)


@pytest.mark.parametrize("name", NAMES)
def test_each_image_of_a_batch_gets_its_own_mask(name):
    # Unlike v2.RandomErasing, which draws one rectangle per call for the whole batch.
    x = data(32, 3, SIZE, SIZE)
    t = transform(name)
    cam = cam_for((1, SIZE, SIZE)).expand(32, SIZE, SIZE)  # the same CAM for every image
    out = t(x, cam=cam) if t.eraser.needs_cam else t(x)
    masks = {tuple((image == 0).all(0).flatten().tolist()) for image in out}
    # One draw per call would give a single mask (p = 1). More than 4: cam_cutmix's box is
    # pinned to the shared CAM peak and only its size varies (at most 9 even sides on 16x16,
    # fewer where the box is clipped); every other built-in gives far more.
    assert len(masks) > 4


@pytest.mark.parametrize("name", NAMES)
def test_one_image_is_erased_like_a_batch_of_one_with_the_same_seed(name):
    # Per-image calls draw in another order than one batched call, so a batch is not the
    # stack of per-image calls; a single image is exactly the batch of one.
    x = data(3, SIZE, SIZE)
    cam = cam_for((SIZE, SIZE))
    single, batch = transform(name, seed=5), transform(name, seed=5)
    if single.eraser.needs_cam:
        one, many = single(x, cam=cam), batch(x[None], cam=cam[None])
    else:
        one, many = single(x), batch(x[None])
    assert torch.equal(one, many[0])


@pytest.mark.parametrize("name", NAMES)
def test_leading_dimensions_are_flattened_into_one_batch(name):
    x = data(2, 3, 3, SIZE, SIZE)
    nested = call(transform(name, seed=2), x)
    flat = call(transform(name, seed=2), x.reshape(6, 3, SIZE, SIZE))
    assert torch.equal(nested, flat.reshape(x.shape))


@pytest.mark.parametrize("name", NAMES)
def test_a_video_gets_one_mask_shared_by_its_frames(name):
    video = tv_tensors.Video(data(3, 5, 3, SIZE, SIZE))
    out = call(transform(name), video, (3,))
    erased = (out == 0).all(dim=2)  # (B, T, H, W)
    assert erased.any()
    assert (erased == erased[:, :1]).all()
    assert not torch.equal(erased[0], erased[1])  # but not across videos


def test_channel_fill_gives_a_video_one_colour_in_every_frame():
    video = tv_tensors.Video(data(2, 4, 3, SIZE, SIZE))
    out = transform("random_erasing", fill="channel")(video)
    changed = (out != video).any(dim=2)  # (B, T, H, W)
    for clip, where in zip(out, changed, strict=True):
        colours = clip.permute(1, 0, 2, 3)[:, where]  # (C, pixels): every erased pixel's colour
        assert colours.numel() and (colours == colours[:, :1]).all()


# --- training and eval, pickling, sample structures ---


def test_erase_is_a_v2_transform_and_an_nn_module():
    t = plugins.Erase("cutout")
    assert isinstance(t, v2.Transform) and isinstance(t, nn.Module)
    assert "Cutout(size=16" in repr(t) and "fill='zero'" in repr(t)


def test_erase_is_identity_in_eval_mode():
    t = transform("cutout")
    x = data(4, 3, SIZE, SIZE)
    assert t.eval()(x) is x
    image = tv_tensors.Image(x)
    out, label = t(image, 3)
    assert out is image and label == 3
    assert not torch.equal(t.train()(x), x)


def test_erase_inside_a_model_erases_in_training_only():
    model = nn.Sequential(transform("cutout", size=8), nn.Flatten())
    x = data(4, 3, SIZE, SIZE)
    assert (model(x) == 0).any()
    model.eval()
    assert torch.equal(model(x), x.flatten(1))


def test_pickled_transform_draws_the_same_masks_for_the_same_generator_seed():
    t = plugins.Erase("random_erasing", fill="channel", p=0.7, max_count=2,
                      generator=torch.Generator().manual_seed(11))
    clone = pickle.loads(pickle.dumps(t))
    x = data(16, 3, SIZE, SIZE)
    assert torch.equal(t(x), clone(x)) and torch.equal(t(x), clone(x))
    assert repr(clone) == repr(t)


def test_in_a_v2_sample_images_are_erased_and_labels_and_boxes_pass_through():
    image = tv_tensors.Image(data(3, SIZE, SIZE))
    boxes = tv_tensors.BoundingBoxes([[1, 2, 8, 9]], format="XYXY", canvas_size=(SIZE, SIZE))
    label = torch.tensor(4)  # a plain tensor next to an Image is not an image (v2's rule)
    with pytest.warns(UserWarning, match="passing through inputs of type tv_tensors.Bounding"):
        out = transform("cutout")({"image": image, "boxes": boxes, "label": label, "id": "a"})
    assert type(out["image"]) is tv_tensors.Image and (out["image"] == 0).any()
    assert out["boxes"] is boxes and out["label"] is label and out["id"] == "a"
    first, second = transform("cutout")((image, 7))
    assert (first == 0).any() and second == 7


def test_v2_compose_pipeline_from_pil_to_erased_float_image():
    pil = PIL.Image.new("RGB", (SIZE, SIZE), (200, 100, 50))
    pipeline = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                           transform("random_erasing")])
    out, label = pipeline(pil, 3)
    assert type(out) is tv_tensors.Image and out.shape == (3, SIZE, SIZE)
    assert (out == 0).any() and label == 3


# --- errors: one line, saying what to do ---


def test_pil_image_is_refused_with_torchvisions_advice():
    pil = PIL.Image.new("RGB", (SIZE, SIZE))
    with pytest.raises(TypeError, match=r"does not support PIL images; apply v2.ToImage\(\) first"):
        plugins.Erase("cutout")(pil)
    with pytest.raises(TypeError, match=r"apply v2.ToImage\(\) first"):
        plugins.Erase("cutout")((pil, 1))


@pytest.mark.parametrize(("shape", "fix"), [((SIZE, SIZE, 3), r"permute\(2, 0, 1\)"),
                                            ((2, SIZE, SIZE, 3), r"permute\(0, 3, 1, 2\)")])
def test_channels_last_images_are_refused_with_the_permute_that_fixes_them(shape, fix):
    with pytest.raises(ValueError, match=f"channels-last.*{fix}"):
        plugins.Erase("cutout")(torch.zeros(shape))


def test_cam_eraser_without_a_cam_points_at_benchmark_cam_erase_with_model():
    with pytest.raises(ValueError,
                       match=r"CamErasing needs a CAM: .*benchmark\.cam\.erase_with_model"):
        plugins.Erase("cam_erasing")(data(2, 3, SIZE, SIZE))


def test_cam_must_match_the_images_leading_shape():
    with pytest.raises(ValueError, match=r"cam must have shape \(2, 16, 16\), got \(16, 16\)"):
        plugins.Erase("cam_erasing")(data(2, 3, SIZE, SIZE), cam=cam_for((SIZE, SIZE)))
    erased, label = plugins.Erase("cam_erasing")((data(2, 3, SIZE, SIZE), 1),
                                                 cam=cam_for((2, SIZE, SIZE)))
    assert (erased == 0).any() and label == 1  # a sample with a CAM: the CAM drives its draw


def test_eraser_instance_is_accepted_and_params_beside_it_are_refused():
    eraser = plugins.build("cutout", size=4)
    assert plugins.Erase(eraser).eraser is eraser
    with pytest.raises(ValueError, match="eraser instance and parameters size"):
        plugins.Erase(eraser, size=8)
    with pytest.raises(ValueError, match="unknown parameter"):
        plugins.Erase("cutout", sizes=8)


def test_unknown_fill_and_mean_fill_without_mean_are_refused():
    with pytest.raises(ValueError, match="fill must be one of 'zero', 'mean', 'random', 'channel'"):
        plugins.Erase("cutout", "noise")
    with pytest.raises(ValueError, match="fill='mean' needs mean="):
        plugins.Erase("cutout", "mean")
    out = plugins.Erase("cutout", "mean", mean=[0.0, -1.0, 2.0])(data(2, 3, SIZE, SIZE))
    assert ((out == -1.0).all(dim=1) == (out == 2.0).all(dim=1)).all()


def test_apply_eraser_is_the_transform_without_the_module():
    x = data(4, 3, SIZE, SIZE)
    a = apply_eraser(x, plugins.build("cutout"), generator=torch.Generator().manual_seed(0))
    b = plugins.Erase("cutout", generator=torch.Generator().manual_seed(0))(x)
    assert torch.equal(a, b)


def test_the_old_name_transform_erase_still_works_and_warns_that_it_is_now_apply_eraser():
    x, eraser = data(4, 3, SIZE, SIZE), plugins.build("cutout")
    with pytest.warns(DeprecationWarning, match="now plugins.functional.apply_eraser"):
        old = plugins.transform.erase(x, eraser, "zero", generator=torch.Generator().manual_seed(0))
    new = apply_eraser(x, eraser, "zero", generator=torch.Generator().manual_seed(0))
    assert torch.equal(old, new)


def test_the_old_name_transform_erase_still_reads_its_old_keyword_fill_mode():
    x, eraser = data(4, 3, SIZE, SIZE), plugins.build("cutout")
    with pytest.warns(DeprecationWarning, match="now plugins.functional.apply_eraser"):
        old = plugins.transform.erase(x, eraser, fill_mode="random",
                                      generator=torch.Generator().manual_seed(0))
    new = apply_eraser(x, eraser, fill="random", generator=torch.Generator().manual_seed(0))
    assert torch.equal(old, new)


def test_the_old_fill_keyword_mode_still_works_and_warns_that_it_is_now_fill():
    x, mask = data(2, 3, SIZE, SIZE), torch.zeros(2, 1, SIZE, SIZE, dtype=torch.bool)
    mask[:, :, :4] = True
    with pytest.warns(DeprecationWarning, match=r"plugins.fill\(..., fill=\)"):
        old = plugins.fill(x, mask, mode="mean", mean=0.5)
    assert torch.equal(old, plugins.fill(x, mask, fill="mean", mean=0.5))

"""Mixing erasers outside training: plugins.Erase / functional.mix as torchvision's v2.CutMix
(a batch and its labels in, mixed images and soft labels out) and
benchmark.cam.erase_with_model."""

import re

import pytest
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

import plugins
from benchmark import cam, models
from plugins.mixing import partner_permutation

B, C, SIZE, CLASSES = 8, 3, 16, 10


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    # distinct images (every pixel differs between any two), so a pasted pixel is visible
    images = torch.rand(B, C, SIZE, SIZE, generator=g) * 0.5 + torch.arange(B)[:, None, None,
                                                                                None]
    return images, torch.randint(0, CLASSES, (B,), generator=g)


def cutmix(seed=0, **kw):
    return plugins.Erase("cutmix", p=1.0, generator=torch.Generator().manual_seed(seed), **kw)


def test_erase_transform_with_cutmix_returns_soft_labels_like_torchvisions_cutmix():
    images, labels = batch()
    mixed, soft = cutmix(num_classes=CLASSES)(images, labels)
    tv_mixed, tv_soft = v2.CutMix(num_classes=CLASSES)(images, labels)
    # the same output types, shapes and dtypes as torchvision's
    assert mixed.shape == tv_mixed.shape and mixed.dtype == tv_mixed.dtype
    assert soft.shape == tv_soft.shape == (B, CLASSES) and soft.dtype == tv_soft.dtype
    assert torch.allclose(soft.sum(1), torch.ones(B))
    # replay the draws: the partner first, then the mask; the labels mixed by the pasted area
    g = torch.Generator().manual_seed(0)
    partner = partner_permutation(B, "cpu", generator=g)
    mask = plugins.build("cutmix", p=1.0)(images, generator=g)
    assert torch.equal(mixed, torch.where(mask, images[partner], images))
    assert ((mixed != images).any(1, keepdim=True) == (mask & (partner != torch.arange(B))
                                                       [:, None, None, None])).all()
    lam = 1 - mask.flatten(1).float().mean(1)
    one_hot = F.one_hot(labels, CLASSES).float()
    assert torch.allclose(soft, lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[partner])
    assert (lam < 1).any()
    # probabilities (B, classes) are taken as they are, without num_classes, as torchvision does
    _, soft2 = cutmix()(images, one_hot)
    assert torch.allclose(soft2, soft)


def test_erase_with_a_mixing_eraser_refuses_what_torchvisions_cutmix_refuses_in_one_line():
    images, labels = batch()
    cases = [
        (lambda: cutmix(num_classes=CLASSES)(images[0], labels[:1]), "call it on a batch"),
        (lambda: cutmix(num_classes=CLASSES)(images), "Erase(...)(images, labels)"),
        (lambda: cutmix()(images, labels), "num_classes must be given"),
        (lambda: cutmix(num_classes=5)(images, F.one_hot(labels, CLASSES)), "num_classes is 5"),
        (lambda: cutmix(num_classes=CLASSES)(images, labels[:4]), "8 images but 4 labels"),
        (lambda: plugins.Erase("cutmix", "zero"), "its fill must be 'paste'"),
        (lambda: plugins.Erase("cutout", "paste"), "fill 'paste' needs a mixing eraser"),
        (lambda: plugins.functional.apply_eraser(images, plugins.build("cutmix")),
         "functional.mix"),
    ]
    for call, says in cases:
        with pytest.raises(ValueError, match=None) as e:
            call()
        assert says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_erase_with_cutmix_keeps_the_image_type_and_dtype_and_is_identity_in_eval():
    images, labels = batch()
    u8 = (images / images.max() * 255).to(torch.uint8)
    mixed, soft = cutmix(num_classes=CLASSES)(tv_tensors.Image(u8), labels)
    assert isinstance(mixed, tv_tensors.Image) and mixed.dtype == torch.uint8
    assert soft.shape == (B, CLASSES)
    t = cutmix(num_classes=CLASSES).eval()
    out = t(images, labels)
    assert out[0] is images and out[1] is labels


def test_erase_with_cam_cutmix_boxes_the_partners_cam_peak():
    images, labels = batch()
    cams = torch.zeros(B, SIZE, SIZE)
    for i in range(B):
        cams[i, 2 * i, (5 * i) % SIZE] = 1.0
    t = plugins.Erase("cam_cutmix", p=1.0, num_classes=CLASSES,
                      generator=torch.Generator().manual_seed(1))
    mixed, _ = t(images, labels, cam=cams)
    g = torch.Generator().manual_seed(1)
    partner = partner_permutation(B, "cpu", generator=g)
    for i in range(B):
        j = partner[i].item()
        if j != i:  # the partner's peak pixel is the partner's
            assert torch.equal(mixed[i, :, 2 * j, (5 * j) % SIZE], images[j, :, 2 * j,
                                                                         (5 * j) % SIZE])


def test_cam_erase_with_a_mixing_eraser_returns_the_mixed_images_partner_labels_and_lam():
    torch.manual_seed(0)
    model = models.create("resnet20").train()
    images, labels = batch()
    out = cam.erase_with_model(model, images, labels, "cam_cutmix", p=1.0,
                    generator=torch.Generator().manual_seed(2))
    assert isinstance(out, cam.Mixed)
    g = torch.Generator().manual_seed(2)
    partner = partner_permutation(B, "cpu", generator=g)
    assert torch.equal(out.partner_labels, labels[partner])
    pasted = (out.images != images).any(1).flatten(1).float().mean(1)
    self_partner = partner == torch.arange(B)
    assert torch.allclose(out.lam[~self_partner], 1 - pasted[~self_partner])
    loss = plugins.mixing.mixed_cross_entropy(model(out.images), labels, out.partner_labels,
                                              out.lam).mean()
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="needs the labels"):
        cam.erase_with_model(model, images, None, "cutmix")
    with pytest.raises(ValueError, match="its fill must be 'paste'"):
        cam.erase_with_model(model, images, labels, "cutmix", fill="random")


def test_erase_with_cutmix_finds_images_and_labels_in_torchvisions_samples_like_v2_cutmix():
    """The samples v2.CutMix takes (its default labels_getter and v2's image rule): a dict with
    an image and a `label`/`labels` entry in any order, an (images, labels) tuple or list, and
    an (image, {"labels": ...}) pair; each comes back in its own structure with the same
    mixing as the plain (images, labels) call; other entries pass through untouched. The
    labels are found first, then the image among the other entries, so a dict whose label
    comes first works too (v2.CutMix would take that label tensor for the image)."""
    images, labels = batch()
    mixed, soft = cutmix(num_classes=CLASSES)(images, labels)
    extra = torch.arange(3)
    samples = [
        ({"image": images, "label": labels}, lambda o: (o["image"], o["label"])),
        ({"label": labels, "image": images, "id": "x"}, lambda o: (o["image"], o["label"])),
        ({"img": tv_tensors.Image(images), "extra": extra, "labels": labels},
         lambda o: (o["img"], o["labels"])),
        ((images, labels), lambda o: o),
        ([images, labels], lambda o: tuple(o)),
        ((tv_tensors.Image(images), {"labels": labels, "boxes_n": extra}),
         lambda o: (o[0], o[1]["labels"])),
    ]
    for sample, get in samples:
        out = cutmix(num_classes=CLASSES)(sample)
        assert type(out) is type(sample)
        got_images, got_soft = get(out)
        assert torch.equal(got_images.as_subclass(torch.Tensor), mixed)
        assert torch.equal(got_soft, soft)
        if isinstance(sample, dict) and next(iter(sample)) == "label":
            continue  # v2.CutMix takes the labels, the first plain tensor, for the image here
        tv_images, tv_soft = get(v2.CutMix(num_classes=CLASSES)(sample))  # torchvision agrees
        assert tv_images.shape == got_images.shape and tv_soft.shape == got_soft.shape
        assert type(tv_images) is type(got_images)
    out = cutmix(num_classes=CLASSES)({"label": labels, "image": images, "id": "x"})
    assert out["id"] == "x"
    # every image entry of one sample gets the same partner and mask
    two = cutmix(num_classes=CLASSES)({"a": tv_tensors.Image(images),
                                       "b": tv_tensors.Image(images + 100), "label": labels})
    assert torch.equal(two["a"].as_subclass(torch.Tensor), mixed)
    assert torch.allclose(two["b"].as_subclass(torch.Tensor) - 100, mixed, atol=1e-4)


def test_erase_with_cutmix_refuses_a_sample_without_labels_or_images_in_one_line():
    images, labels = batch()
    for sample in [{"image": images}, {"label": labels}, {"image": images, "target": labels}]:
        with pytest.raises(ValueError, match=r"^Erase: CutMix mixes the images of a batch and "
                                             r"their labels: .*dict with 'image' and 'label'") \
                as e:
            cutmix(num_classes=CLASSES)(sample)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad", [-3, 0, "10", 2.5, True, float("nan")])
def test_erase_and_mix_refuse_a_num_classes_that_is_not_a_positive_int_at_construction(bad):
    """num_classes: an int >= 1 or None; a bool, a string, a float or < 1 is a one-line
    ValueError naming it and what is allowed when Erase is built (and when mix is called), not
    a raw torch error at the first batch."""
    says = (r"^Erase: num_classes must be an integer >= 1 \(the number of classes of the "
            rf"labels\) or None \(labels already \(B, num_classes\)\), got {re.escape(repr(bad))}$")
    for name in ("cutmix", "cam_cutmix"):
        with pytest.raises(ValueError, match=says):
            plugins.Erase(name, num_classes=bad)
    images, labels = batch()
    with pytest.raises(ValueError, match=says):
        plugins.functional.mix(images, labels, plugins.build("cutmix"), num_classes=bad)
    assert plugins.Erase("cutmix", num_classes=1).num_classes == 1


def test_erase_checks_every_constructor_argument_in_one_line():
    cases = [
        (lambda: plugins.Erase("cutout", num_classes=10), ValueError,
         "Erase: num_classes is for mixing erasers (cutmix, cam_cutmix)"),
        (lambda: plugins.Erase("cutout", labels_getter=None), ValueError,
         "Erase: labels_getter is for mixing erasers"),
        (lambda: plugins.Erase("cutmix", labels_getter=5), ValueError,
         "Erase: labels_getter should either be 'default', a callable, or None"),
        (lambda: plugins.Erase("cutout", generator=5), TypeError,
         "Erase: generator must be a torch.Generator"),
        (lambda: plugins.Erase("cutout", mean="abc"), ValueError,
         "Erase: mean must be a finite number, a sequence of them"),
        (lambda: plugins.Erase("cutout", "mean", mean=[0.5, float("nan")]), ValueError,
         "Erase: mean must be a finite number"),
        (lambda: plugins.Erase("cutmix", alpha=0), ValueError, "CutMix: alpha must be in"),
        (lambda: plugins.Erase("cam_cutmix", p=2), ValueError, "CamCutMix: p must be in"),
    ]
    for call, error, says in cases:
        with pytest.raises(error) as e:
            call()
        assert str(e.value).startswith(says) and "\n" not in str(e.value), str(e.value)


def test_mix_refuses_class_indices_outside_num_classes_in_one_line():
    images, labels = batch()
    for bad, says in [(labels + CLASSES,
                       r"must be in \[0, 9\] \(num_classes 10\), got \d+\.\.\d+$"),
                      (labels - CLASSES, r"must be in \[0, 9\]"),
                      (labels.float(), "class-index labels \\(B,\\) must be integers")]:
        with pytest.raises(ValueError, match=says):
            cutmix(num_classes=CLASSES)(images, bad)

"""Mixing erasers outside training: plugins.Erase / functional.mix as torchvision's v2.CutMix
(a batch and its labels in, mixed images and soft labels out) and
benchmark.cam.erase_with_model."""

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

"""Models: exact CIFAR ResNet sizes, timm's interface, CIFAR stems, CAM layers, clear errors."""

import pytest
import torch

from benchmark import models


def _params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, count", [("resnet20", 269_722), ("resnet32", 464_154),
                                         ("resnet44", 658_586), ("resnet56", 853_018)])
def test_cifar_resnets_have_he_et_al_parameter_counts(name, count):
    assert _params(models.create(name, num_classes=10)) == count


def test_option_a_shortcuts_have_no_parameters_and_pad_channels_with_zeros():
    model = models.create("resnet20")
    shortcut = model.layer2[0].shortcut
    assert isinstance(shortcut, models.ShortcutA) and _params(shortcut) == 0
    out = shortcut(torch.ones(1, 16, 32, 32))
    assert out.shape == (1, 32, 16, 16)
    assert (out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0
            and (out[:, 8:24] == 1).all())


def test_cifar_resnet_has_timms_interface_and_cam_layers():
    model = models.create("resnet20", num_classes=7).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features, 8, 8) and model.num_features == 64
    assert torch.allclose(model.forward_head(feats), model(x))
    assert model.forward_head(feats, pre_logits=True).shape == (2, 64)
    assert model.get_classifier() is model.fc and model.num_classes == 7
    assert model.cam_layers == ["layer3", "layer2", "layer1"]
    assert models.feature_map_sizes(model) == {"layer3": (8, 8), "layer2": (16, 16),
                                               "layer1": (32, 32)}


def test_random_erasing_repo_variant_uses_projection_shortcuts_and_bottlenecks_from_depth_44():
    assert isinstance(models.create("resnet20_re").layer2[0].shortcut, torch.nn.Sequential)
    deep = models.create("resnet44_re")
    assert isinstance(deep.layer1[0], models.Bottleneck) and deep.num_features == 256
    assert deep(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_timm_resnet18_gets_a_cifar_stem_and_ends_in_a_4x4_map():
    model = models.create("timm/resnet18", num_classes=10)
    conv = model.conv1
    assert (conv.kernel_size, conv.stride, conv.out_channels) == ((3, 3), (1, 1), 64)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model.cam_layers == ["layer4", "layer3", "layer2", "layer1"]
    sizes = models.feature_map_sizes(model, 32)
    assert sizes["layer4"] == (4, 4) and sizes["layer3"] == (8, 8)
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 512, 4, 4)
    assert model.get_classifier().out_features == 10


def test_timm_model_without_resnet_stem_takes_cam_layers_from_its_head_input_and_feature_info():
    model = models.create("timm/efficientnet_b0", num_classes=10)
    assert model.cam_layers[0] == "bn2"  # the map forward_features returns, feeding the head
    assert model.cam_layers[1:] == ["blocks.6", "blocks.4", "blocks.2", "blocks.1"]


def test_unknown_names_list_the_known_ones_and_the_closest_match():
    with pytest.raises(ValueError,
                       match=r"unknown model 'resnt20'.*resnet44.*did you mean 'resnet20'"):
        models.create("resnt20")
    with pytest.raises(ValueError, match=r"timm has no model 'resnet1888'.*similar: resnet18"):
        models.create("timm/resnet1888")
    assert "resnet110" in models.available()

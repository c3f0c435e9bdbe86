"""Specification of benchmark.cam: generic Grad-CAM, the GAP+FC fast path, peaks, boxes, sources."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import plugins
from benchmark import cam as C
from benchmark.cam import erasing, fast_path

torch.set_num_threads(2)


def _models():
    try:
        from benchmark import models
    except ImportError:
        return None
    return models


def create(name, num_classes=10):
    """A model through benchmark.models.create (skips the test until that module exists)."""
    models = _models()
    if models is None:
        pytest.skip("benchmark.models not available yet")
    torch.manual_seed(0)
    return models.create(name, num_classes=num_classes)


class TinyNet(nn.Module):
    """A small CNN in timm's interface: conv-BN-ReLU blocks, GAP + linear head."""

    cam_layers = ["block2", "block1"]

    def __init__(self, classes=5, dropout=0.0):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                                    nn.ReLU(inplace=True))
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16),
                                    nn.ReLU(inplace=True))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(16, classes)

    def forward_features(self, x):
        return self.block2(self.block1(x))

    def forward_head(self, x, pre_logits=False):
        x = self.drop(x.mean(dim=(2, 3)))
        return x if pre_logits else self.fc(x)

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class MaxPoolHead(TinyNet):
    """Same body, max-pool head: Grad-CAM still works, the CAM shortcut does not."""

    def forward_head(self, x, pre_logits=False):
        x = x.amax(dim=(2, 3))
        return x if pre_logits else self.fc(x)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    model = TinyNet(**kw)
    # Non-trivial BN statistics, so eval and train modes differ.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


def reference_grad_cam(model, images, targets, layer):
    """The tutorial recipe, one image at a time: hook, backward on a deep copy, upsample."""
    model = copy.deepcopy(model).eval()
    store = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.update(out=o))
    maps = []
    for image, target in zip(images, targets, strict=True):
        model.zero_grad()
        out = model(image[None])
        feats = store["out"]
        feats.retain_grad()
        out[0, target].backward()
        weights = feats.grad[0].mean(dim=(1, 2))
        cam = F.relu((weights[:, None, None] * feats[0]).sum(0))
        maps.append(F.interpolate(cam[None, None], size=images.shape[-2:], mode="bilinear",
                                  align_corners=False)[0, 0])
    handle.remove()
    return torch.stack(maps).detach()


def by_max(maps):
    return maps / maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]


# ----------------------------------------------------------------------------- generic path

@pytest.mark.parametrize("layer", ["block2", "block1"])
def test_grad_cam_equals_per_image_hook_and_backward_reference(layer):
    model = tiny()
    images = torch.randn(6, 3, 16, 16)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    got = C.grad_cam(model, images, targets, layer=layer)
    want = reference_grad_cam(model, images, targets, layer)
    assert want.abs().amax() > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_grad_cam_without_targets_uses_the_argmax_class():
    model = tiny()
    images = torch.randn(8, 3, 16, 16)
    predicted = model.eval()(images).argmax(1)
    model.train()
    got = C.grad_cam(model, images)
    torch.testing.assert_close(got, C.grad_cam(model, images, predicted))
    other = (predicted + 1) % 5
    assert not torch.allclose(got, C.grad_cam(model, images, other))


def test_grad_cam_output_shape_dtype_device_and_non_negative():
    model = tiny()
    images = torch.randn(4, 3, 16, 16)
    out = C.grad_cam(model, images, torch.zeros(4, dtype=torch.long))
    assert out.shape == (4, 16, 16) and out.dtype == torch.float32 and out.device == images.device
    assert (out >= 0).all() and not out.requires_grad
    small = C.grad_cam(model, images, torch.zeros(4, dtype=torch.long), upsample=False)
    assert small.shape == (4, 8, 8) and (small >= 0).all()


def test_cam_call_leaves_parameters_grads_bn_buffers_and_mode_bit_identical():
    for training in (True, False):
        model = tiny(dropout=0.5)
        model.train(training)
        model.block1[1].eval()                      # a mixed-mode model, as with frozen BN
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        before = copy.deepcopy(model.state_dict())
        grads = [p.grad.clone() for p in model.parameters()]
        modes = [m.training for m in model.modules()]
        images = torch.randn(4, 3, 16, 16)
        rng = torch.get_rng_state()

        C.grad_cam(model, images, torch.tensor([0, 1, 2, 3]))
        C.grad_cam(model, images, layer="block1")

        assert torch.equal(torch.get_rng_state(), rng)   # eval mode: dropout drew nothing
        assert [m.training for m in model.modules()] == modes
        after = model.state_dict()
        assert before.keys() == after.keys()
        for k in before:                                  # num_batches_tracked included
            assert torch.equal(before[k], after[k]), k
        for p, g in zip(model.parameters(), grads, strict=True):
            assert torch.equal(p.grad, g)


def test_grad_cam_works_inside_no_grad_and_for_images_that_require_grad():
    model = tiny()
    images = torch.randn(3, 3, 16, 16)
    want = C.grad_cam(model, images, torch.tensor([1, 2, 3]))
    with torch.no_grad():
        got = C.grad_cam(model, images, torch.tensor([1, 2, 3]))
    torch.testing.assert_close(got, want)
    leaf = images.clone().requires_grad_(True)
    torch.testing.assert_close(C.grad_cam(model, leaf, torch.tensor([1, 2, 3])), want)
    assert leaf.grad is None


def test_grad_cam_never_records_a_graph_through_parameters():
    model = tiny()
    for p in model.parameters():
        p.register_hook(lambda g: pytest.fail("a parameter received a gradient"))
    C.grad_cam(model, torch.randn(2, 3, 16, 16), torch.tensor([0, 1]))


def test_grad_cam_without_cam_layers_takes_the_last_4d_module():
    class Bare(TinyNet):
        cam_layers = None

    model = tiny()
    bare = Bare()
    bare.load_state_dict(model.state_dict())
    images = torch.randn(2, 3, 16, 16)
    assert C.default_layer(bare, images) == "block2"
    torch.testing.assert_close(C.grad_cam(bare, images, torch.tensor([0, 1])),
                               C.grad_cam(model, images, torch.tensor([0, 1]), layer="block2"))


def test_bad_layer_name_lists_the_cam_layers_in_one_line():
    with pytest.raises(ValueError, match=r"layer='block9'.*\['block2', 'block1'\]") as err:
        C.grad_cam(tiny(), torch.randn(2, 3, 16, 16), layer="block9")
    assert "\n" not in str(err.value)


def test_layer_without_4d_output_is_refused():
    with pytest.raises(ValueError, match=r"layer='fc'.*2-D"):
        C.grad_cam(tiny(), torch.randn(2, 3, 16, 16), layer="fc")


def test_bad_images_and_targets_are_refused():
    with pytest.raises(ValueError, match="images"):
        C.grad_cam(tiny(), torch.randn(3, 16, 16))
    with pytest.raises(ValueError, match="targets"):
        C.grad_cam(tiny(), torch.randn(2, 3, 16, 16), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="targets"):
        C.grad_cam(tiny(), torch.randn(2, 3, 16, 16), torch.tensor([0, 1, 2]))


# ----------------------------------------------------------------------------- fast path

def test_fast_path_equals_generic_path_on_a_gap_linear_net():
    model = tiny().eval()
    images = torch.randn(6, 3, 16, 16)
    targets = torch.tensor([0, 1, 2, 3, 4, 1])
    feats = model.forward_features(images)
    fast = C.cam_from_features(feats, model.fc.weight, targets, size=(16, 16))
    torch.testing.assert_close(fast, C.grad_cam(model, images, targets), rtol=1e-5, atol=1e-6)
    assert C.cam_from_features(feats, model.fc.weight, targets).shape == (6, 8, 8)


@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet44", "timm/resnet18"])
def test_fast_path_equals_generic_path_for_cifar_and_timm_resnets(name):
    model = create(name).eval()
    images = torch.randn(4, 3, 32, 32)
    targets = torch.tensor([0, 3, 7, 9])
    assert C.fast_path_applies(model)
    feats = model.forward_features(images)
    weight = model.get_classifier().weight
    fast = by_max(C.cam_from_features(feats, weight, targets, size=(32, 32)))
    generic = by_max(C.grad_cam(model, images, targets))
    torch.testing.assert_close(fast, generic, rtol=1e-5, atol=1e-5)
    wrong = by_max(C.cam_from_features(feats, weight, (targets + 1) % 10, size=(32, 32)))
    assert (wrong - generic).abs().amax() > 1e-2


def test_fast_path_applies_only_to_the_layer_feeding_a_gap_linear_head():
    assert C.fast_path_applies(tiny(), input_size=(16, 16))
    assert C.fast_path_applies(tiny(), "block2", input_size=(16, 16))
    assert not C.fast_path_applies(tiny(), "block1", input_size=(16, 16))
    assert not C.fast_path_applies(MaxPoolHead(), input_size=(16, 16))
    assert not C.fast_path_applies(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()))


class ConvHead(TinyNet):
    """A conv after the pool, as timm's MobileNetV3 has (GAP -> 1x1 conv -> act -> linear):
    the classifier takes another width than the features."""

    def __init__(self, width=32, same_width=False):
        super().__init__()
        width = 16 if same_width else width
        self.conv_head = nn.Conv2d(16, width, 1)
        self.fc = nn.Linear(width, 5)

    def forward_head(self, x, pre_logits=False):
        x = F.relu(self.conv_head(x.mean(dim=(2, 3), keepdim=True))).flatten(1)
        return x if pre_logits else self.fc(x)


@pytest.mark.parametrize("same_width", [False, True])
def test_fast_path_answers_no_for_a_conv_after_the_pool_instead_of_raising(same_width):
    assert C.fast_path_applies(ConvHead(same_width=same_width), input_size=(16, 16)) is False


def test_fast_path_answers_no_for_timms_mobilenetv3_whose_head_has_a_conv_after_the_pool():
    """timm/mobilenetv3_small_050: 288 features, a 1x1 conv to 1024, then the linear layer
    (built with pretrained=False: nothing is downloaded)."""
    model = create("timm/mobilenetv3_small_050")
    assert model.get_classifier().in_features != model.num_features
    assert C.fast_path_applies(model, input_size=(16, 16)) is False


def test_fast_path_probe_leaves_the_model_and_global_rng_untouched():
    model = tiny().train()
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    C.fast_path_applies(model, input_size=(16, 16))
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_cam_from_features_refuses_mismatched_weight():
    with pytest.raises(ValueError, match="weight"):
        C.cam_from_features(torch.rand(2, 16, 4, 4), torch.rand(5, 8), torch.tensor([0, 1]))


# ----------------------------------------------------------------------------- peaks and boxes

def test_peaks_land_on_a_planted_maximum():
    cam = torch.rand(5, 32, 32) * 0.5
    where = torch.tensor([[0, 0], [31, 31], [3, 17], [20, 5], [16, 16]])
    cam[torch.arange(5), where[:, 0], where[:, 1]] = 1.0
    out = C.peaks(cam)
    assert out.dtype == torch.long and torch.equal(out, where)


def test_peaks_break_ties_at_the_first_maximum_in_row_major_order():
    cam = torch.zeros(1, 8, 8)
    cam[0, 5, 1] = cam[0, 2, 6] = cam[0, 2, 7] = 1.0
    assert C.peaks(cam).tolist() == [[2, 6]]


def test_peaks_of_constant_and_all_zero_maps_are_the_centre():
    cam = torch.stack([torch.zeros(32, 32), torch.full((32, 32), 0.7), torch.zeros(32, 32)])
    cam[2, 1, 1] = 1.0
    assert C.peaks(cam).tolist() == [[16, 16], [16, 16], [1, 1]]
    assert C.peaks(torch.zeros(1, 7, 9)).tolist() == [[3, 4]]


def test_cam_boxes_bound_the_pixels_above_the_threshold():
    cam = torch.zeros(3, 32, 32)
    cam[0, 4:10, 6:20] = 1.0
    cam[0, 12, 25] = 0.39                                  # below 0.4 of the max: outside
    cam[1, 2, 3] = 1.0
    cam[1, 30, 28] = 0.5                                   # above: stretches the box
    out = C.cam_boxes(cam, 0.4)
    assert out.tolist() == [[6, 4, 20, 10], [3, 2, 29, 31], [0, 0, 32, 32]]


# ----------------------------------------------------------------------------- sources

def test_live_source_uses_given_features_on_the_fast_path_and_grad_cam_otherwise():
    model = tiny()
    images = torch.randn(4, 3, 16, 16)
    labels = torch.tensor([0, 1, 2, 3])
    live = C.LiveCam(model, input_size=(16, 16))
    assert live.fast
    model.eval()
    feats = model.forward_features(images)
    model.train()
    torch.testing.assert_close(live(images, labels, features=feats),
                               C.grad_cam(model, images, labels), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(live(images, labels), C.grad_cam(model, images, labels),
                               rtol=1e-5, atol=1e-6)
    early = C.LiveCam(model, layer="block1", input_size=(16, 16))
    assert not early.fast
    torch.testing.assert_close(early(images, labels),
                               C.grad_cam(model, images, labels, layer="block1"))
    predicted = C.LiveCam(model, target="predicted", input_size=(16, 16))
    torch.testing.assert_close(predicted(images), C.grad_cam(model, images), rtol=1e-5, atol=1e-6)
    assert model.training


def test_sources_refuse_unknown_names_and_missing_inputs():
    with pytest.raises(ValueError, match="target='box'"):
        C.LiveCam(tiny(), target="box")
    with pytest.raises(ValueError, match="source='before'"):
        C.cam_source("before", model=tiny())
    with pytest.raises(ValueError, match="checkpoint=None"):
        C.cam_source("after")
    with pytest.raises(ValueError, match="labels=None"):
        C.LiveCam(tiny(), input_size=(16, 16))(torch.randn(2, 3, 16, 16))


def test_after_source_loads_a_frozen_checkpoint_and_matches_its_grad_cam(tmp_path):
    from benchmark.training import checkpoint

    model = create("resnet20")
    path = checkpoint.save(tmp_path / "r20.pt", model, model_name="resnet20", num_classes=10,
                           mean=[0.5] * 3, std=[0.25] * 3)
    frozen = C.cam_source("after", checkpoint=str(path))
    assert frozen.fast and not frozen.model.training and frozen.mean == [0.5] * 3
    images, labels = torch.randn(3, 3, 32, 32), torch.tensor([1, 2, 3])
    torch.testing.assert_close(by_max(frozen(images, labels)),
                               by_max(C.grad_cam(model.eval(), images, labels)),
                               rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- layers

def test_each_cam_layer_gives_its_own_map_size():
    model = create("timm/resnet18")
    images = torch.randn(2, 3, 32, 32)
    assert C.grad_cam(model, images, layer="layer3", upsample=False).shape == (2, 8, 8)
    assert C.grad_cam(model, images, upsample=False).shape == (2, 4, 4)
    assert C.grad_cam(model, images, layer="layer3").shape == (2, 32, 32)


# ----------------------------------------------------------------------------- on the GPU

@pytest.mark.gpu
@pytest.mark.parametrize("name", ["resnet20", "timm/resnet18"])
def test_cam_on_cuda_matches_cpu_and_never_synchronises_the_host(name, monkeypatch):
    # TF32 convolutions (cuDNN's default) drift ~1e-2 from the float32 CPU reference.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model = create(name).eval()
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    want = C.grad_cam(model, images, labels)
    gpu = model.cuda()
    x, y = images.cuda(), labels.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = C.grad_cam(gpu, x, y)
        fast = C.cam_from_features(gpu.forward_features(x), gpu.get_classifier().weight, y,
                                   size=(32, 32))
        C.grad_cam(gpu, x)
        C.peaks(got)
        C.cam_boxes(got)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(by_max(got.cpu()), by_max(want), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(by_max(fast.cpu()), by_max(want), rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
def test_grad_cam_and_peaks_can_be_captured_in_one_cuda_graph():
    model = create("resnet20").cuda().train()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    x = torch.randn(32, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (32,), device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):                                  # warm-up on a side stream
            C.peaks(C.grad_cam(model, x, y))
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = C.grad_cam(model, x, y)
        top = C.peaks(out)
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, C.grad_cam(model, x, y))
    assert torch.equal(top, C.peaks(out))
    assert model.training and all(p.grad.abs().sum() == 0 for p in model.parameters())


def test_peaks_are_the_plugins_own_rule_not_a_copy():
    import plugins.geometry

    assert C.peaks is plugins.geometry.peaks  # one rule for the CAM and for cam_erasing


def test_cam_figure_writes_one_row_per_example_png(tmp_path):
    from benchmark.report.cam_figure import cam_examples

    model = create("resnet20").train()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    boxes = torch.tensor([[4.0, 4.0, 20.0, 20.0]] * 3)
    out = cam_examples(model, images, torch.tensor([1, 2, 3]), [0.5] * 3, [0.25] * 3,
                       tmp_path / "cam.png", boxes=boxes, n=3)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and model.training
    import matplotlib.image

    # 4 panels across (6.4 in), 3 rows of 1.7 in, at 120 dpi
    assert matplotlib.image.imread(out).shape[:2] == (612, 768)


# ----------------------------------------------------------------------------- erase in your loop

def _model_state(model):
    """Everything a CAM call must not change: state (BN buffers included), grads, mode flags."""
    return (copy.deepcopy(model.state_dict()), [p.grad.clone() for p in model.parameters()],
            [m.training for m in model.modules()])


def test_erase_in_your_own_loop_is_cam_erasing_with_the_models_cam():
    model = tiny()
    images, labels = torch.randn(8, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    got = C.erase_with_model(model, images, labels, b_h=1,
                             generator=torch.Generator().manual_seed(0))
    cam = C.LiveCam(model, input_size=(16, 16))(images, labels)
    eraser = plugins.build("cam_erasing", b_h=1)
    want = plugins.fill(images, eraser(images, cam=cam, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(got, want)
    assert got.shape == images.shape and got.dtype == images.dtype and (got == 0).any()


def test_erase_leaves_the_model_and_the_images_bit_identical():
    for training in (True, False):
        model = tiny(dropout=0.5)
        model.train(training)
        model.block1[1].eval()                      # a mixed-mode model, as with frozen BN
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        before = _model_state(model)
        images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
        kept, rng = images.clone(), torch.get_rng_state()
        for layer in (None, "block1"):              # the fast path and generic Grad-CAM
            C.erase_with_model(model, images, labels, layer=layer,
                               generator=torch.Generator().manual_seed(0))
        after = _model_state(model)
        assert torch.equal(torch.get_rng_state(), rng) and torch.equal(images, kept)
        assert after[2] == before[2]
        for k in before[0]:                         # num_batches_tracked included
            assert torch.equal(before[0][k], after[0][k]), k
        for g0, g1 in zip(before[1], after[1], strict=True):
            assert torch.equal(g0, g1)


def test_erase_works_under_no_grad_and_for_predicted_targets_and_other_layers():
    model = tiny()
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])

    def run(**kw):
        return C.erase_with_model(model, images, labels,
                                  generator=torch.Generator().manual_seed(3), **kw)

    with torch.no_grad():
        assert torch.equal(run(), run())
    assert not torch.equal(run(layer="block1", vertex="centre"), images)
    predicted = model.eval()(images).argmax(1)
    model.train()
    by_prediction = C.erase_with_model(model, images, None, target="predicted",
                                       generator=torch.Generator().manual_seed(3))
    by_label = C.erase_with_model(model, images, predicted,
                                  generator=torch.Generator().manual_seed(3))
    assert torch.equal(by_prediction, by_label)


def test_erase_probes_the_fast_path_once_per_model_layer_and_image_size(monkeypatch):
    calls = []
    probe = C.fast_path_applies
    monkeypatch.setattr(fast_path, "fast_path_applies",
                        lambda *a, **k: calls.append(a[1:]) or probe(*a, **k))
    model, labels = tiny(), torch.tensor([0, 1])
    for _ in range(3):
        C.erase_with_model(model, torch.randn(2, 3, 16, 16), labels)
    C.erase_with_model(model, torch.randn(2, 3, 16, 16), labels, layer="block1")
    C.erase_with_model(model, torch.randn(2, 3, 24, 24), labels)
    assert len(calls) == 3
    assert C.FAST_PATH_CACHE[model] == {(None, (16, 16)): True, ("block1", (16, 16)): False,
                                        (None, (24, 24)): True}


def test_erase_takes_an_eraser_instance_or_a_name_and_needs_no_cam_for_plain_erasers(monkeypatch):
    model, images, labels = tiny(), torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    eraser = plugins.build("cam_erasing", b_h=0)
    a = C.erase_with_model(model, images, labels, eraser,
                           generator=torch.Generator().manual_seed(1))
    b = C.erase_with_model(model, images, labels, b_h=0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="given with a built eraser"):
        C.erase_with_model(model, images, labels, eraser, b_h=2)
    monkeypatch.setattr(erasing, "LiveCam",
                        lambda *a, **k: pytest.fail("no CAM for a plain eraser"))
    out = C.erase_with_model(model, images, None, "cutout", size=8, fill="channel")
    assert out.shape == images.shape and not torch.equal(out, images)


def test_the_old_name_cam_erase_still_works_and_warns_that_it_is_now_erase_with_model():
    model, images, labels = tiny(), torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    with pytest.warns(DeprecationWarning, match="now benchmark.cam.erase_with_model"):
        old = C.erase(model, images, labels, b_h=1, generator=torch.Generator().manual_seed(0))
    new = C.erase_with_model(model, images, labels, b_h=1,
                             generator=torch.Generator().manual_seed(0))
    assert torch.equal(old, new)


# ----------------------------------------------------------------------------- ambient context

def _bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _train_mode(model):
    """The caller's model in train mode for the block (a training step asking for a CAM)."""
    import contextlib

    @contextlib.contextmanager
    def block():
        was = model.training
        model.train()
        try:
            yield
        finally:
            model.train(was)
    return block()


CONTEXTS = {
    "plain": lambda model: torch.enable_grad(),
    "autocast_cpu_bf16": lambda model: _bf16_autocast(),
    "no_grad": lambda model: torch.no_grad(),
    "inference_mode": lambda model: torch.inference_mode(),
    "model_in_train_mode": _train_mode,
}


def _features_and_weight(model, images):
    with torch.no_grad():   # the very same float32 features in every context
        return model.eval().forward_features(images), model.fc.weight


CAM_FUNCTIONS = {
    "grad_cam": lambda m, x, y: C.grad_cam(m, x, y),
    "grad_cam_predicted_early_layer": lambda m, x, y: C.grad_cam(m, x, None, layer="block1"),
    "grad_cam_not_upsampled": lambda m, x, y: C.grad_cam(m, x, y, upsample=False),
    "cam_from_features": lambda m, x, y: C.cam_from_features(*_FEATS[id(m)], y, size=(16, 16)),
    "resize": lambda m, x, y: C.resize(_MAPS, (16, 16)),
    "cam_boxes": lambda m, x, y: C.cam_boxes(_MAPS, 0.4).float(),
    "fast_path_applies": lambda m, x, y: torch.tensor(float(C.fast_path_applies(
        m, input_size=(16, 16)))),
    "LiveCam_fast": lambda m, x, y: C.LiveCam(m, input_size=(16, 16))(x, y),
    "LiveCam_fast_predicted": lambda m, x, y: C.LiveCam(m, target="predicted",
                                                        input_size=(16, 16))(x),
    "LiveCam_generic": lambda m, x, y: C.LiveCam(m, layer="block1", input_size=(16, 16))(x, y),
    "FrozenCam": lambda m, x, y: C.FrozenCam(copy.deepcopy(m), input_size=(16, 16))(x, y),
    "erase": lambda m, x, y: C.erase_with_model(m, x, y, b_h=1,
                                                generator=torch.Generator().manual_seed(0)),
    "erase_generic": lambda m, x, y: C.erase_with_model(m, x, y, layer="block1", b_h=1,
                                             generator=torch.Generator().manual_seed(0)),
}
_FEATS: dict = {}
_MAPS = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("context", list(CONTEXTS))
@pytest.mark.parametrize("function", list(CAM_FUNCTIONS))
def test_every_cam_function_gives_the_same_float32_map_in_any_ambient_context(function, context):
    # Exact equality, not a tolerance: with autocast switched off and the model in eval mode,
    # the very same float32 CPU kernels run in every context, so any difference is a bug (a
    # bf16 einsum moved CAM peaks by up to 16 px).
    model = tiny(dropout=0.5).eval()
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3])
    _FEATS[id(model)] = _features_and_weight(model, images)
    run = CAM_FUNCTIONS[function]
    want = run(model, images, labels)
    state, modes = copy.deepcopy(model.state_dict()), [m.training for m in model.modules()]
    with CONTEXTS[context](model):
        inside = [m.training for m in model.modules()]
        got = run(model, images, labels)
        assert [m.training for m in model.modules()] == inside   # the caller's mode, restored
    assert got.dtype == want.dtype == torch.float32
    assert torch.equal(got, want), f"{function} under {context}"
    assert [m.training for m in model.modules()] == modes
    for key, value in model.state_dict().items():              # BN statistics untouched
        assert torch.equal(value, state[key]), key


# ----------------------------------------------------------------------------- foreign models

class TupleOut(TinyNet):
    """A model whose forward returns (logits, features), as many detection/aux-head nets do."""

    def forward(self, x):
        feats = self.forward_features(x)
        return self.forward_head(feats), feats


class DictOut(TinyNet):
    def forward(self, x):
        return {"features": self.forward_features(x), "logits": super().forward(x)}


FOREIGN_ENTRIES = {
    "grad_cam": lambda m, x, y, **k: C.grad_cam(m, x, y, **k),
    "erase": lambda m, x, y, **k: C.erase_with_model(m, x, y, **k),
    "erase_generic": lambda m, x, y, **k: C.erase_with_model(m, x, y, layer="block1", **k),
    "fast_path_probe": lambda m, x, y, **k: C.fast_path_applies(m, input_size=(16, 16), **k),
    "LiveCam": lambda m, x, y, **k: C.LiveCam(m, layer="block1", input_size=(16, 16),
                                              **k)(x, y),
}


@pytest.mark.parametrize("entry", list(FOREIGN_ENTRIES))
@pytest.mark.parametrize("cls, selector", [(TupleOut, 0), (DictOut, "logits")])
def test_a_model_that_returns_more_than_logits_is_refused_in_one_line_naming_the_selector(
        entry, cls, selector):
    torch.manual_seed(0)
    model = cls()
    images, labels = torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
    with pytest.raises(ValueError) as info:
        FOREIGN_ENTRIES[entry](model, images, labels)
    message = str(info.value)
    assert "\n" not in message and "logits of shape (2, classes)" in message
    assert ("tuple of 2" if cls is TupleOut else "dict with keys") in message
    assert "logits=" in message


@pytest.mark.parametrize("cls, selector", [(TupleOut, 0), (DictOut, "logits"),
                                           (TupleOut, lambda out: out[0])])
def test_logits_selects_a_foreign_models_logits_and_gives_the_plain_models_cam(cls, selector):
    torch.manual_seed(0)
    model = cls()
    plain = tiny()
    model.load_state_dict(plain.state_dict())
    images, labels = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    for layer in ("block2", "block1"):
        assert torch.equal(C.grad_cam(model, images, labels, layer=layer, logits=selector),
                           C.grad_cam(plain, images, labels, layer=layer))
    assert C.fast_path_applies(model, input_size=(16, 16), logits=selector)
    def gen():
        return torch.Generator().manual_seed(0)
    assert torch.equal(C.erase_with_model(model, images, labels, logits=selector, generator=gen()),
                       C.erase_with_model(plain, images, labels, generator=gen()))


def test_a_wrong_logits_selector_is_one_line():
    model = TupleOut()
    with pytest.raises(ValueError, match=r"^logits='nope': cannot select it .* tuple of 2"):
        C.grad_cam(model, torch.randn(2, 3, 16, 16), logits="nope")
    with pytest.raises(ValueError, match=r"logits=1 gave a tensor of shape \(2, 16, 8, 8\)"):
        C.grad_cam(model, torch.randn(2, 3, 16, 16), logits=1)


@pytest.mark.parametrize("entry", list(FOREIGN_ENTRIES))
def test_a_logits_selector_that_raises_anything_is_one_line(entry):
    def selector(out):
        return out.logits                                # a tuple has no .logits

    with pytest.raises(ValueError, match=r"^logits=.*: cannot select it from the model's output, "
                       r"a tuple of 2 .*\(AttributeError: 'tuple' object has no attribute"):
        FOREIGN_ENTRIES[entry](TupleOut(), torch.randn(2, 3, 16, 16), torch.tensor([0, 1]),
                               logits=selector)


@pytest.mark.parametrize("images, targets, expected", [
    (torch.randn(2, 3, 16, 16), torch.tensor([0.0, 1.0]),
     r"^targets: expected an integer tensor of shape \(2,\) \(class indices\), "
     r"got torch.float32 \(2,\)$"),
    (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), torch.tensor([0, 1]),
     r"^images: expected a floating-point tensor \(B, C, H, W\), "
     r"got torch.uint8 \(2, 3, 16, 16\)$"),
])
def test_a_refused_image_or_target_dtype_is_named_in_the_one_line_error(images, targets,
                                                                        expected):
    for entry in ("grad_cam", "erase", "LiveCam"):
        with pytest.raises(ValueError, match=expected):
            FOREIGN_ENTRIES[entry](tiny(), images, targets)


@pytest.mark.parametrize("layer", ["block1", "block2"])
def test_float32_images_into_a_bfloat16_model_give_a_float32_cam_as_the_fast_path_probe_does(
        layer):
    torch.manual_seed(0)
    model = tiny().to(torch.bfloat16)
    images, labels = torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
    expected = C.grad_cam(model, images.to(torch.bfloat16), labels, layer=layer)
    got = C.grad_cam(model, images, labels, layer=layer)
    assert got.dtype == torch.float32 and torch.equal(got, expected)
    erased = C.erase_with_model(model, images, labels, layer=layer,
                                generator=torch.Generator().manual_seed(0))
    assert erased.dtype == torch.float32 and erased.shape == images.shape


def test_computing_a_cam_of_a_plain_sequential_adds_nothing_to_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    before = dict(vars(model))
    images, labels = torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
    C.grad_cam(model, images, labels)
    assert vars(model).keys() == before.keys()
    with pytest.raises(ValueError, match=r"layer='nope': no such module; CAM layers of this "
                       r"model: \['2', '1', '0'\]"):
        C.grad_cam(model, images, labels, layer="nope")   # the probe's names are still known

"""bf16 autocast's weight casts done once a step (benchmark/training/weight_cast.py): the same
bits as autocast's cast per layer, for every step kind, stacked or not, and the casts that
autocast does not do are not done."""

import pytest
import torch
from torch import nn

from benchmark.models import create
from benchmark.tools.op_count import count_step_ops, step_pack
from benchmark.training import step as step_mod
from benchmark.training.stack import stack_models
from benchmark.training.weight_cast import WeightCast, cast_slots


def _train(kind, k, steps, monkeypatch, *, cast_once: bool):
    if not cast_once:  # autocast casts each layer's weight at each use, as before
        monkeypatch.setattr(step_mod, "WeightCast", lambda model, dtype: WeightCast(model, None))
    tr, step = step_pack(kind, k, batch=4, gpu_path=True)
    active = bool(step.cast)
    monkeypatch.undo()
    before = [p.detach().clone() for p in tr.model.parameters()]
    for _ in range(steps):
        tr.opt.zero_grad(set_to_none=True)
        step()
    after = [p.detach().clone() for p in tr.model.parameters()]
    out = after, [b.detach().clone() for b in tr.model.buffers()], tr.acc.clone(), active
    tr.close()
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))  # it trained
    return out


@pytest.mark.parametrize(("kind", "k"), [("plain", 1), ("replace", 1), ("replace", 4),
                                         ("mixing", 2), ("append", 2)])
def test_weights_cast_once_a_step_give_the_bits_of_autocasts_cast_per_layer(kind, k, monkeypatch):
    """bf16 autocast + channels_last (the GPU path) on the CPU: parameters, BatchNorm buffers
    and the per-run sums after three steps are bit-identical either way."""
    once = _train(kind, k, 3, monkeypatch, cast_once=True)
    per_layer = _train(kind, k, 3, monkeypatch, cast_once=False)
    assert once[3] and not per_layer[3]
    for a, b in zip(once[0] + once[1], per_layer[0] + per_layer[1], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(once[2], per_layer[2])


def test_a_split_append_step_keeps_autocasts_cast_per_layer():
    """Its weights feed two training forwards: autograd would sum their bf16 gradients in bf16,
    autocast sums them in fp32, so the cast-once path is off there."""
    tr, _ = step_pack("append", 1, batch=4, gpu_path=True)
    joint = tr.step_for("append")
    split = step_mod.Step(tr.model, tr.opt, tr.lanes, kind="append", append_bn="split",
                          autocast=tr.autocast, acc=tr.acc, pos=tr.pos,
                          weight_dtype=torch.bfloat16)
    assert joint.cast and not split.cast
    tr.close()


def test_the_cast_weights_are_the_conv_and_linear_weights_not_batchnorm_or_a_stacked_bias():
    one = create("resnet20", num_classes=10)
    names = {id(p): n for n, p in one.named_parameters()}
    slots = [names[id(m._parameters[n])] for m, n in cast_slots(one)]
    convs = [n for n, p in one.named_parameters() if p.dim() == 4]
    assert slots == [*convs, "fc.weight", "fc.bias"]
    stacked = stack_models([create("resnet20", num_classes=10) for _ in range(2)])
    names = {id(p): n for n, p in stacked.named_parameters()}
    # the stacked head's bias is added in fp32 (an `add`, not in autocast's bf16 list)
    assert [names[id(m._parameters[n])] for m, n in cast_slots(stacked)] == [*convs, "fc.weight"]


def test_a_conv_subclass_is_left_to_autocast():
    """A subclass may transform its weight before the convolution (weight standardisation):
    autocast would run that in fp32, so only the exact layer types are cast once."""

    class StdConv(nn.Conv2d):
        def forward(self, x):
            w = (self.weight - self.weight.mean()) / (self.weight.std() + 1e-5)
            return self._conv_forward(x, w, self.bias)

    model = nn.Sequential(StdConv(3, 4, 3), nn.Conv2d(4, 4, 3, bias=False))
    assert [(type(m).__name__, n) for m, n in cast_slots(model)] == [("Conv2d", "weight")]


def test_the_layers_see_the_bf16_copies_only_inside_swapped():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(2, 2))
    cast = WeightCast(model, torch.bfloat16)
    cast.refresh()
    with cast.swapped():
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
        assert torch.equal(model[0].weight, model[0].weight.detach().bfloat16())
    assert all(isinstance(p, nn.Parameter) and p.dtype == torch.float32
               for p in model.parameters())
    assert not WeightCast(model, None) and WeightCast(model, None).inputs([1]) == [1]


def test_the_gpu_paths_k16_replace_step_issues_at_most_600_ops_with_its_casts():
    """bf16 autocast's casts were 42 of the K = 16 replace step's ops (626 in all); cast once a
    step they are two foreach ops and an input cast."""
    bf16 = count_step_ops("replace", 16, batch=2, gpu_path=True)
    fp32 = count_step_ops("replace", 16, batch=2)
    assert bf16.all <= 600 and bf16.all - fp32.all <= 6

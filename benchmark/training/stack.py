"""K CIFAR ResNets of one architecture as one network whose every layer is grouped (HFTA-style).

Run k owns group k of every layer: conv -> grouped conv (groups x K), BatchNorm over K x C
channels (per-run statistics), linear -> a batched matmul. The input is the K runs' batches
side by side on the channel axis, (B, K*3, H, W); the logits are (B, K, classes). Every run's
parameters, gradients, BN statistics and momentum buffers are slices along dim 0, so
`split_state` / `merge_states` move between the stack and K ordinary state dicts.

Why: at batch 128 a ResNet20 leaves a GPU idle on launch overhead; K runs in one network
launch K times fewer kernels. The forward equals K separate models exactly; the backward
differs by float accumulation order only (tests/training/test_stack.py).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models import CifarResNet, ShortcutA

__all__ = ["StackedLinear", "merge_states", "split_state", "stack_models", "stackable"]


class StackedLinear(nn.Module):
    """K linear layers on (B, K*in) -> (B, K, out); weight (K*out, in) so run k is a dim-0 slice."""

    def __init__(self, k: int, in_features: int, out_features: int):
        super().__init__()
        self.k, self.in_features, self.out_features = k, in_features, out_features
        self.weight = nn.Parameter(torch.empty(k * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(k * out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # einsum("bki,koi->bko") as the one bmm it makes, on the same operands (the same bits),
        # without its permutes and reshapes: about half the ops, forward and backward
        xs = x.reshape(x.shape[0], self.k, self.in_features).transpose(0, 1)  # (K, B, in)
        w = self.weight.view(self.k, self.out_features, self.in_features).transpose(1, 2)
        out = torch.bmm(xs, w).transpose(0, 1)  # (B, K, out)
        return out + self.bias.view(self.k, self.out_features)


class StackedShortcutA(nn.Module):
    """Option-A shortcut per group: subsample, then zero channels on both sides of each run's
    block."""

    def __init__(self, k: int, extra_channels: int):
        super().__init__()
        self.k, self.extra = k, extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        b, c, h, w = x.shape
        half = self.extra // 2
        x = F.pad(x.reshape(b, self.k, c // self.k, h, w), (0, 0, 0, 0, half, self.extra - half))
        return x.reshape(b, -1, h, w)


def stackable(model: nn.Module) -> bool:
    """Only He et al. / RE-repo CIFAR ResNets are stacked (timm models train one per network)."""
    return isinstance(model, CifarResNet)


def _grouped(conv: nn.Conv2d, k: int) -> nn.Conv2d:
    return nn.Conv2d(conv.in_channels * k, conv.out_channels * k, conv.kernel_size, conv.stride,
                     conv.padding, conv.dilation, conv.groups * k, conv.bias is not None,
                     conv.padding_mode)


def _convert(module: nn.Module, k: int) -> None:
    """Replace, in place and recursively, each layer by its K-group version (weights unset)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            new: nn.Module = _grouped(child, k)
        elif isinstance(child, nn.BatchNorm2d):
            new = nn.BatchNorm2d(child.num_features * k, child.eps, child.momentum, child.affine,
                                 child.track_running_stats)
        elif isinstance(child, nn.Linear):
            new = StackedLinear(k, child.in_features, child.out_features)
        elif isinstance(child, ShortcutA):
            new = StackedShortcutA(k, child.extra)
        elif isinstance(child, (nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm, nn.Dropout)):
            raise TypeError(f"stack: {type(child).__name__} at {name!r} is not supported")
        else:
            _convert(child, k)
            continue
        setattr(module, name, new)


def stack_models(models: list[nn.Module]) -> CifarResNet:
    """One grouped network holding `models` (same architecture); run k is group k.

    The result keeps the CifarResNet interface (`forward_features` gives (B, K*C, h, w),
    `forward` gives (B, K, classes)) plus `stack_size`. Weights, buffers and train/eval mode
    are copied from the models, which are not modified.
    """
    if not models or not all(stackable(m) for m in models):
        raise TypeError("stack_models: needs one or more benchmark.models.CifarResNet models")
    shapes = [[tuple(t.shape) for t in m.state_dict().values()] for m in models]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("stack_models: the models differ in architecture")
    k = len(models)
    stacked = copy.deepcopy(models[0])
    _convert(stacked, k)
    stacked.stack_size = k
    stacked.load_state_dict(merge_states([m.state_dict() for m in models]))
    stacked.train(models[0].training)
    return stacked


def merge_states(states: list[dict]) -> dict:
    """K per-run state dicts (or momentum-buffer dicts) -> the stacked one (concatenate dim 0)."""
    out = {}
    for key, first in states[0].items():
        if first.dim() == 0:  # num_batches_tracked: the runs step together, so one counter
            out[key] = first.clone()
        else:
            out[key] = torch.cat([s[key] for s in states], dim=0)
    return out


def split_state(state: dict, k: int, size: int) -> dict:
    """Run k's slice of a stacked state dict, in the layout of one ordinary model."""
    out = {}
    for key, t in state.items():
        out[key] = t.clone() if t.dim() == 0 else t.chunk(size, dim=0)[k].clone()
    return out

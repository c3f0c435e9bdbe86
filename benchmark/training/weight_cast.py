"""bf16 autocast's weight casts, done once a step for all layers instead of once a layer.

Autocast without a weight cache (CUDA graph capture needs it off) casts every convolution and
linear weight to bf16 at each use: one `_to_copy` per layer in the forward, and one in the
backward, where the bf16 gradient is cast back to the fp32 parameter's dtype. For a K = 16
ResNet20 pack that is 40 of the step's kernels. `WeightCast` does the same two conversions as
two foreach ops: before the forward, one `torch._foreach_copy_` writes every weight's bf16 copy
(round to nearest even, as `_to_copy` does) into persistent bf16 leaves that the layers use in
place of their fp32 parameters; after the backward, one `torch._foreach_copy_` writes the bf16
gradients into persistent fp32 gradient buffers. The bits are autocast's (tested on the CPU:
tests/training/test_weight_cast.py), because each conversion is the same and each weight is
used by one training forward a step.

Which weights: exactly those autocast casts at every use, and only where it does: the weight
and bias of `nn.Conv1d/2d/3d` and `nn.Linear` (exact types: a subclass may transform its weight
before the matmul, e.g. weight standardisation, which autocast would run in fp32), and the
weight of a stacked linear layer (its `bmm`; its bias is added in fp32). Any other parameter is
left to autocast, which casts it per use as before. A step whose weights feed two training
forwards (the "split" append step) must not use it: autograd would sum the two uses' bf16
gradients in bf16, where autocast sums them in fp32.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["WeightCast", "cast_slots"]

_EXACT = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def cast_slots(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, parameter name) of each trainable parameter that bf16 autocast casts at every
    use (see the module docstring), in `model.modules()` order."""
    from benchmark.training.stack import StackedLinear

    slots = []
    for m in model.modules():
        names = (("weight", "bias") if type(m) in _EXACT
                 else ("weight",) if type(m) is StackedLinear else ())
        params = [(n, m._parameters.get(n)) for n in names]
        slots += [(m, n) for n, p in params if isinstance(p, nn.Parameter) and p.requires_grad]
    return slots


class WeightCast:
    """The weights of `cast_slots(model)` as `dtype` copies made once a step; inactive (every
    method a no-op, `inputs` the parameters themselves) when `dtype` is None.

    `refresh()` before the step's first forward; `swapped()` around each forward (the layers
    see the copies); `torch.autograd.grad(loss, cast.inputs(params))`, then
    `cast.gradients(params, grads)` gives the fp32 gradients to assign."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None):
        self.slots = cast_slots(model) if dtype is not None else []
        self.fp32 = [m._parameters[n] for m, n in self.slots]
        self.copies = [torch.empty_like(p, dtype=dtype).requires_grad_() for p in self.fp32]
        self.grads = [torch.empty_like(p) for p in self.fp32]  # persistent: no alloc a step
        self._at = {id(p): i for i, p in enumerate(self.fp32)}

    def __bool__(self) -> bool:
        return bool(self.slots)

    def refresh(self) -> None:
        """Write the weights' bf16 copies: one foreach op (none when inactive)."""
        if self.slots:
            with torch.no_grad():
                torch._foreach_copy_(self.copies, self.fp32)

    @contextlib.contextmanager
    def swapped(self):
        """Inside, each cast layer's parameter is its bf16 copy; outside, the fp32 parameter."""
        for (m, n), c in zip(self.slots, self.copies, strict=True):
            m._parameters[n] = c
        try:
            yield
        finally:
            for (m, n), p in zip(self.slots, self.fp32, strict=True):
                m._parameters[n] = p

    def inputs(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """`params` with each cast parameter replaced by its bf16 copy (what the graph used)."""
        return [p if id(p) not in self._at else self.copies[self._at[id(p)]] for p in params]

    def gradients(self, params: list[torch.Tensor], grads) -> list[torch.Tensor | None]:
        """`grads` (of `inputs(params)`) with each cast parameter's bf16 gradient written into
        its fp32 buffer by one foreach op, where the parameter has no gradient yet (one already
        there gets the bf16 gradient added, in fp32, by the caller)."""
        grads, dst, src = list(grads), [], []
        for j, (p, g) in enumerate(zip(params, grads, strict=True)):
            i = self._at.get(id(p))
            if i is not None and g is not None and p.grad is None:
                dst.append(self.grads[i])
                src.append(g)
                grads[j] = self.grads[i]
        if dst:
            torch._foreach_copy_(dst, src)
        return grads

"""Fixes for CUDA failures a CPU run cannot show, checked on the CPU where it can show them:
the lr tensor's dtype (CUDA's fused SGD reads it as float) and cuDNN's benchmark mode."""

import pytest
import torch

from benchmark.training import pack, selfcheck, stack
from benchmark.training.pack import PackTrainer, load_run_data
from tests.training.test_graphs import specs_for


def test_a_float64_packs_lr_tensor_is_float32_and_it_trains_like_its_runs_alone(monkeypatch):
    monkeypatch.setattr(selfcheck, "SELF_CHECK", False)
    specs = specs_for(["random_erasing", "cutout"], n_train=32)
    rd = load_run_data(specs[0], "cpu")
    packed = PackTrainer(specs, rd, "cpu", dtype=torch.float64)
    assert packed.lr.dtype == torch.float32 and packed.lr.device == packed.device
    assert all(p.dtype == torch.float64 for p in packed.model.parameters())
    got = packed.train_epoch(0)
    assert packed.lr.dtype == torch.float32  # the scheduler rewrites it in place
    for k, s in enumerate(specs):  # the float64 reference: each run trained alone
        alone = PackTrainer([s], rd, "cpu", dtype=torch.float64)
        assert alone.lr.dtype == torch.float32
        want = alone.train_epoch(0)[0]
        assert got[k]["train_loss"] == pytest.approx(want["train_loss"], rel=1e-9)
        mine = stack.split_state(packed.model.state_dict(), k, len(specs))
        for name, w in alone.model.state_dict().items():
            if w.is_floating_point():
                assert ((mine[name] - w).norm() / w.norm().clamp_min(1e-30)).item() <= 1e-9


def test_cudnn_benchmark_is_set_for_cuda_training_and_left_alone_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert pack.tune_cudnn("cpu") is False and torch.backends.cudnn.benchmark is False
    specs = specs_for(["plain"], n_train=16)
    PackTrainer(specs, load_run_data(specs[0], "cpu"), "cpu")
    assert torch.backends.cudnn.benchmark is False
    assert pack.tune_cudnn(torch.device("cuda", 0)) is True  # sets a flag: no GPU needed
    assert torch.backends.cudnn.benchmark is True

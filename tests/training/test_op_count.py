"""The step batched across runs: a K = 16 erasing step issues a bounded number of ops, each run's
random numbers still come from its own generator, and an eraser that cannot batch exactly is
called run by run."""

import contextlib
from types import SimpleNamespace

import pytest
import torch

import plugins
from benchmark.data.augment import DeviceLoader
from benchmark.tools import op_count
from benchmark.tools.op_count import GOAL_K16, OpCount, count_ops, count_step_ops
from benchmark.training import draws as step_mod
from benchmark.training.draws import SENTINEL_SEED, SplitDraws, Unsplittable
from benchmark.training.step import Step, occlusion_stats
from benchmark.training.weight_cast import WeightCast
from plugins.geometry import box_mask, xyxy_mask


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["plain", "replace", "append"])
def test_a_k16_step_issues_a_bounded_number_of_ops_not_a_multiple_of_one_runs(kind):
    one, sixteen = count_step_ops(kind, 1, batch=2), count_step_ops(kind, 16, batch=2)
    print(f"{kind}: K=1 {one.kernels} kernel ops ({one.all} all), "
          f"K=16 {sixteen.kernels} ({sixteen.all} all)")
    # Per run, only the few small draws from its own generator are added (and their joins).
    assert sixteen.kernels <= one.kernels + 16 * 12
    if kind == "replace":
        assert sixteen.all <= GOAL_K16


def test_a_k16_replace_step_issues_at_most_600_aten_ops_views_included():
    """Every top-level aten op that reaches the dispatcher counts, views and detaches too."""
    n = count_step_ops("replace", 16, batch=2)
    assert GOAL_K16 == 600 and n.all <= GOAL_K16
    assert n.kernels < n.all  # the views are in `all`


def test_the_goal_lines_say_met_or_not_met_per_step_kind_and_precision_gpu_path_first(
        monkeypatch):
    counts = {("plain", True): 422, ("plain", False): 379, ("replace", True): 601,
              ("replace", False): 600, ("mixing", True): 732, ("mixing", False): 689,
              ("append", True): 756, ("append", False): 691}
    monkeypatch.setattr(op_count, "count_step_ops", lambda kind, k, batch, gpu_path: OpCount(
        counts[kind, gpu_path] - 100, counts[kind, gpu_path]))
    lines = op_count.goal_lines()
    assert len(lines) == 2 * len(op_count.KINDS) + 1
    by = {(ln.split()[1], "bf16" in ln): ln for ln in lines[:-1]}
    assert set(by) == set(counts)
    assert lines[2].startswith("K=16 replace step") and "bf16 autocast + channels_last" in lines[2]
    assert "601 top-level aten ops, views included (goal <= 600: NOT met)" in by["replace", True]
    assert "600 top-level aten ops, views included (goal <= 600: met)" in by["replace", False]
    assert "(the replace step's goal <= 600: met)" in by["plain", True]
    assert all("NOT met" in by[kind, p] for kind in ("mixing", "append") for p in (True, False))


def test_the_gpu_paths_bf16_step_is_counted_with_its_casts():
    """bf16 autocast adds casts (the input's, the weights' two foreach copies): the GPU path's
    count is the larger one, so a goal met in fp32 is not read as met where the GPU trains."""
    fp32 = count_step_ops("plain", 2, batch=2)
    bf16 = count_step_ops("plain", 2, batch=2, gpu_path=True)
    assert bf16.all > fp32.all


def test_the_object_mask_is_the_box_mask_of_the_clipped_xyxy_boxes():
    """xyxy_mask compares the pixel indices with the four coordinates at once (the step's
    accounting): the same mask as box_mask of (y1, x1, max(y2 - y1, 0), max(x2 - x1, 0))."""
    g = torch.Generator().manual_seed(0)
    for h, w in ((16, 16), (12, 20), (20, 9)):
        boxes = torch.rand(64, 4, generator=g) * 30 - 5  # inside, across and outside the edges
        b = boxes.to(torch.long)
        want = box_mask(b[:, 1], b[:, 0], (b[:, 3] - b[:, 1]).clamp(min=0),
                        (b[:, 2] - b[:, 0]).clamp(min=0), (h, w))
        grid = torch.arange(max(h, w) + 3).view(1, -1, 1)
        assert torch.equal(xyxy_mask(boxes, (h, w)), want)
        assert torch.equal(xyxy_mask(boxes, (h, w), grid=grid), want)


def test_the_steps_accounting_is_each_lanes_occlusion_stats_also_for_an_expanded_mask():
    """The batched accounting gives each lane `occlusion_stats` (train_one's), for any mask
    an eraser returns: here an expanded view (a band of columns, as README's toy eraser)."""
    k, b, h, w = 3, 4, 8, 8
    g = torch.Generator().manual_seed(0)
    band = (torch.arange(w) < 3).expand(k * b, 1, h, w)
    boxes = torch.rand(k * b, 4, generator=g) * 10
    f64 = {"dtype": torch.float64}
    step = SimpleNamespace(k=k, count=torch.full((k,), float(b), **f64), zero=torch.zeros(k, **f64),
                           grid=torch.arange(w).view(1, -1, 1), cam_on=None, peaks_on=None)
    for mask in (band, band.contiguous() & (torch.rand(k * b, 1, h, w, generator=g) < 0.5)):
        got = torch.stack(Step._occlusion(step, mask, boxes, None), dim=1)
        want = torch.stack([occlusion_stats(mask[i * b:(i + 1) * b], boxes[i * b:(i + 1) * b],
                                            None, "cpu") for i in range(k)])
        assert torch.equal(got, want)


def test_the_steps_backward_hands_each_parameter_backwards_gradient():
    """One autograd.grad, each gradient given to its parameter as backward() gives it: in the
    parameter's strides (a channels-last weight; a transposed one, whose gradient autograd
    gives as an expanded scalar), and added to a gradient already there."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(64, 2))
    net[0].weight.data = net[0].weight.data.contiguous(memory_format=torch.channels_last)
    mix = torch.nn.Parameter(torch.randn(2, 2).t())  # strides (1, 2)
    x = torch.randn(5, 3, 6, 6)
    params = [*net.parameters(), mix]

    def loss():
        return (net(x) * mix.sum()).square().sum()

    assert torch.autograd.grad(loss(), [mix])[0].stride() != mix.stride()
    # fp32; and bf16 autocast, whose weight casts the step does once (training/weight_cast.py)
    for dtype, autocast in ((None, contextlib.nullcontext), (torch.bfloat16, lambda: torch.autocast(
            "cpu", dtype=torch.bfloat16, cache_enabled=False))):
        cast = WeightCast(net, dtype)
        assert bool(cast) == (dtype is not None)
        for existing in (False, True):
            for p in params:
                p.grad = torch.ones_like(p) if existing else None
            with autocast():
                out = loss()
            out.backward()
            want = [p.grad.clone() for p in params]
            for p in params:
                p.grad = torch.ones_like(p) if existing else None
            cast.refresh()
            with cast.swapped(), autocast():
                out = loss()
            Step._backward(SimpleNamespace(params=params, cast=cast), out)
            assert all(torch.equal(p.grad, g) and p.grad.stride() == p.stride()
                       and p.grad.dtype == p.dtype for p, g in zip(params, want, strict=True))


def test_each_run_added_to_an_erasing_step_adds_only_its_own_few_draws():
    """K = 1 against K = 5 (cutout, random_erasing, hide_and_seek, plain, cutout): the lanes'
    crop/flip draws and their erasers' draws, not a copy of one run's step."""
    one, five = count_step_ops("replace", 1, batch=2), count_step_ops("replace", 5, batch=2)
    assert five.kernels - one.kernels <= 4 * 12 + 3 * 40  # + 3 more eraser kinds, once each


def test_the_op_counter_counts_top_level_ops_and_leaves_views_out_of_the_kernels():
    x = torch.ones(4, 4)
    got = count_ops(lambda: (x.view(16) + 1).sum())
    assert got.all == 3 and got.kernels == 2


def _gens(n, seed=0):
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def test_a_batched_call_draws_each_runs_numbers_from_its_own_generator_in_its_order():
    lead = torch.Generator().manual_seed(SENTINEL_SEED)
    alone, joint = _gens(3), _gens(3)
    want = torch.cat([torch.cat([torch.rand(4, 2, generator=g).flatten(),
                                 torch.randint(0, 9, (4,), generator=g).float()]) for g in alone])
    with SplitDraws(lead, joint, 4):
        u = torch.rand(12, 2, generator=lead)
        r = torch.randint(0, 9, (12,), generator=lead).float()
    got = torch.cat([torch.cat([u[i * 4:(i + 1) * 4].flatten(), r[i * 4:(i + 1) * 4]])
                     for i in range(3)])
    assert torch.equal(got, want)
    assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(alone, joint,
                                                                            strict=True))


def test_a_draw_that_cannot_be_split_by_run_raises_before_drawing():
    lead = torch.Generator().manual_seed(SENTINEL_SEED)
    gens = _gens(2)
    before = [g.get_state() for g in gens]
    with SplitDraws(lead, gens, 4), pytest.raises(Unsplittable, match="dimensions"):
        torch.rand(1, generator=lead)  # a batch-wide coin
    with SplitDraws(lead, gens, 4), pytest.raises(Unsplittable, match="dimensions"):
        torch.rand(8, 8, generator=lead)  # which dimension is the runs'?
    assert all(torch.equal(g.get_state(), s) for g, s in zip(gens, before, strict=True))


def test_the_batched_crop_flip_and_normalise_equal_each_runs_own_batch():
    images = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(20)
    boxes = torch.tensor([[1, 1, 6, 7]] * 20)
    loaders = [DeviceLoader(images, labels, boxes, batch_size=4, mean=(0.5,) * 3,
                            std=(0.25,) * 3, generator=g) for g in _gens(3)]
    index = torch.stack([torch.randperm(20, generator=torch.Generator().manual_seed(9 + k))[:4]
                         for k in range(3)])
    want = [torch.cat(t) for t in zip(*(ld.batch(index[k]) for k, ld in enumerate(loaders)),
                                      strict=True)]
    for ld, g in zip(loaders, _gens(3), strict=True):
        ld.generator = g
    lead = torch.Generator().manual_seed(SENTINEL_SEED)
    with SplitDraws(lead, [ld.generator for ld in loaders], 4):
        one = DeviceLoader(images, labels, boxes, batch_size=12, mean=(0.5,) * 3,
                           std=(0.25,) * 3, generator=lead)
        got = one.batch(index.reshape(-1))
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


class SortedCutout(plugins.Eraser):
    """Cutout whose squares are handed out in the order of the images' means: a batch-wide
    computation, so its masks depend on which images share the call."""

    def forward(self, images, *, cam=None, generator=None):
        mask = plugins.build("cutout", size=4)(images, generator=generator)
        return mask[images.mean((1, 2, 3)).argsort()]


def test_an_eraser_that_mixes_images_across_the_batch_is_called_run_by_run():
    assert step_mod._probe(plugins.build("cutout", size=4), "zero", 3, 4, (3, 8, 8))
    assert step_mod._probe(plugins.build("random_erasing"), "random", 3, 4, (3, 8, 8))
    assert not step_mod._probe(SortedCutout(), "zero", 3, 4, (3, 8, 8))

"""torch.compile (inductor, CPU) of every built-in eraser with every fill mode.

One compile per eraser, on a small batch. Inductor's own RNG is not eager's (same seed,
other numbers), so the exact comparison with eager runs with ``fallback_random=True``
(the random draws call eager's kernels, everything else is compiled); a separate test
checks the statistics of inductor's own RNG. A ``torch.Generator`` argument cannot be
traced: each draw that takes one is a graph break (``fullgraph=True`` raises).
"""

import pytest
import torch
import torch._dynamo
import torch._inductor.config as inductor_config

import plugins
from plugins.fill import FILL_MODES

# About 70 s on 2 CPU cores with an empty inductor cache (C++ compiles), 15 s with a warm one.
pytestmark = pytest.mark.slow

BUILTINS = ["cam_cutmix", "cam_erasing", "cutmix", "cutout", "gridmask", "hide_and_seek",
            "keep_cutout", "random_erasing"]
SIZE = 16


def erase_with_every_fill(eraser):
    """images, cam -> (fill modes, B, C, H, W): one mask, every fill mode, in one graph."""
    mean = torch.tensor([0.5, -0.5, 1.0])

    def fn(images, cam, generator=None):
        mask = eraser(images, cam=cam, generator=generator)
        return torch.stack([plugins.fill(images, mask, mode, mean=mean, generator=generator)
                            for mode in FILL_MODES])

    return fn


def inputs(batch=8):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, SIZE, SIZE, generator=g)
    return images, torch.rand(batch, SIZE, SIZE, generator=g)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Dynamo caches compiled code per code object: each test compiles its own graph."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(("name", "params"), [(name, {}) for name in BUILTINS]
                         + [("random_erasing", {"max_count": 3})])
def test_builtin_eraser_and_every_fill_compile_with_inductor_and_equal_eager(name, params):
    eraser = plugins.build(name, p=1.0, **params)
    fn = erase_with_every_fill(eraser)
    images, cam = inputs()
    compiled = torch.compile(fn, backend="inductor", fullgraph=True)
    with inductor_config.patch(fallback_random=True):
        torch.manual_seed(0)
        got = compiled(images, cam)
    torch.manual_seed(0)
    want = fn(images, cam)
    assert got.shape == (len(FILL_MODES), *images.shape) and got.dtype == images.dtype
    assert torch.equal(got, want)
    assert (got[0] == 0).all(dim=1).any()  # something was erased


def test_inductors_own_rng_gives_masks_and_fills_with_eagers_statistics():
    eraser = plugins.build("random_erasing", p=0.5)
    fn = erase_with_every_fill(eraser)
    images, cam = inputs(512)
    torch.manual_seed(0)
    got = torch.compile(fn, backend="inductor", fullgraph=True)(images, cam)
    torch.manual_seed(0)
    want = fn(images, cam)
    assert not torch.equal(got, want)  # other random numbers than eager's ...

    def erased(out):
        return (out[0] == 0).all(dim=1)

    # ... with the same laws: half the images erased, the erased area as large as eager's.
    per_image = erased(got).flatten(1).float().mean(1)
    eager = erased(want).flatten(1).float().mean(1)
    assert abs((per_image > 0).float().mean() - 0.5) < 0.08
    assert abs(per_image[per_image > 0].mean() - eager[eager > 0].mean()) < 0.03
    modes = dict(zip(FILL_MODES, got, strict=True))
    mask = erased(got)[:, None].expand_as(images)
    noise = modes["random"][mask]
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1) < 0.05
    # "channel": one flat colour per erased image and channel.
    high = modes["channel"].where(mask, -torch.inf).amax(dim=(2, 3))
    low = modes["channel"].where(mask, torch.inf).amin(dim=(2, 3))
    some = per_image > 0
    assert torch.equal(high[some], low[some])


def test_a_generator_is_a_graph_break_so_fullgraph_raises_and_the_default_matches_eager():
    eraser = plugins.build("cutout")
    fn = erase_with_every_fill(eraser)
    images, cam = inputs()
    with pytest.raises(torch._dynamo.exc.Unsupported, match="Failed to convert args/kwargs"):
        torch.compile(fn, backend="inductor", fullgraph=True)(
            images, cam, torch.Generator().manual_seed(0))
    torch._dynamo.reset()
    got = torch.compile(fn, backend="inductor")(images, cam, torch.Generator().manual_seed(0))
    want = fn(images, cam, torch.Generator().manual_seed(0))
    assert torch.equal(got, want)  # the draws ran eagerly, with the generator

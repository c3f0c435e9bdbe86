"""The device-resident pipeline: pad-crop/flip moves pixels and boxes together, the loader
covers each index once per epoch, normalisation, evaluation batches, CUDA-graph capture."""

import pytest
import torch

from benchmark.data.augment import DeviceLoader, eval_batches, normalize, random_crop_flip


def _single_pixel_images(n=256, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    ys = torch.randint(0, size, (n,), generator=g)
    xs = torch.randint(0, size, (n,), generator=g)
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    images[torch.arange(n), :, ys, xs] = 255
    boxes = torch.stack([xs, ys, xs + 1, ys + 1], dim=1).float()
    return images, boxes


def test_crop_flip_moves_a_planted_pixel_exactly_where_its_box_goes():
    images, boxes = _single_pixel_images()
    out, moved = random_crop_flip(images, boxes, pad=4, generator=torch.Generator().manual_seed(1))
    visible = out.flatten(1).amax(1) > 0
    empty = (moved[:, 2] <= moved[:, 0]) | (moved[:, 3] <= moved[:, 1])
    assert torch.equal(visible, ~empty)  # the pixel left the crop exactly when its box did
    assert 0 < empty.sum() < len(images)  # both cases occur in this sample
    bright = out[visible, 0].flatten(1).argmax(1)
    ys, xs = bright // 32, bright % 32
    assert torch.equal(torch.stack([xs, ys, xs + 1, ys + 1], 1).float(), moved[visible])
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])


def test_crop_shifts_boxes_and_clips_them_at_the_border():
    images = torch.zeros(400, 3, 32, 32, dtype=torch.uint8)
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).repeat(400, 1)
    _, moved = random_crop_flip(images, boxes, pad=4, flip=False,
                                generator=torch.Generator().manual_seed(0))
    assert moved.min() >= 0 and moved.max() <= 32
    widths = moved[:, 2] - moved[:, 0]
    assert widths.min() == 28 and widths.max() == 32  # a shift of up to 4 cuts the full box
    assert set(moved[:, 0].tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0}


def test_flip_mirrors_and_zero_pad_crop_draws_every_offset():
    images = (torch.arange(32, dtype=torch.uint8).view(1, 1, 1, 32)
              .expand(2000, 3, 32, 32).contiguous())
    out, _ = random_crop_flip(images, pad=4, generator=torch.Generator().manual_seed(2))
    rows = out[:, 0, 16].long()  # the middle row: a shifted (maybe mirrored) ramp with zeros
    step = rows[:, 17] - rows[:, 16]
    assert set(step.tolist()) == {1, -1}
    assert 0.45 < (step == -1).float().mean() < 0.55  # flip with p 0.5
    assert (out[:, 0, :, 0] == 0).all(1).any()  # some crops start in the zero padding


def test_same_generator_seed_gives_same_augmentation():
    images, boxes = _single_pixel_images(64)
    a = random_crop_flip(images, boxes, generator=torch.Generator().manual_seed(5))
    b = random_crop_flip(images, boxes, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_normalize_uses_per_channel_stats_in_unit_pixel_scale():
    images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    x = normalize(images, (0.5, 0.0, 1.0), (0.5, 1.0, 0.25))
    assert x.dtype == torch.float32
    assert torch.allclose(x[:, :, 0, 0], torch.tensor([1.0, 1.0, 0.0]).expand(2, 3))
    with pytest.raises(ValueError, match="mean: expected 3"):
        normalize(images, (0.5, 0.5), (1, 1, 1))


def test_loader_permutation_covers_each_index_once_per_epoch():
    n = 100
    images = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
    labels = torch.arange(n)
    loader = DeviceLoader(images, labels, batch_size=10, mean=(0, 0, 0), std=(1, 1, 1), pad=0,
                          generator=torch.Generator().manual_seed(0))
    assert len(loader) == 10
    epochs = [torch.cat([y for _, y, _ in loader]) for _ in range(2)]
    for seen in epochs:
        assert torch.equal(seen.sort().values, labels)
    assert not torch.equal(epochs[0], epochs[1])  # a fresh permutation each epoch


def test_loader_drop_last_gives_fixed_batch_shapes_and_carries_boxes():
    images, boxes = _single_pixel_images(50, size=16)
    loader = DeviceLoader(images, torch.zeros(50, dtype=torch.long), boxes, batch_size=16,
                          mean=(0.5,) * 3, std=(0.5,) * 3)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert all(x.shape == (16, 3, 16, 16) and b.shape == (16, 4) for x, _, b in batches)
    x, _, b = batches[0]
    assert x.min() == -1 and x.max() == 1
    keep_all = DeviceLoader(images, torch.zeros(50, dtype=torch.long), batch_size=16,
                            drop_last=False, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert len(keep_all) == 4 and sum(len(y) for _, y, _ in keep_all) == 50
    assert len(DeviceLoader(torch.zeros(50000, 3, 1, 1, dtype=torch.uint8),
                            torch.zeros(50000, dtype=torch.long), mean=(0,) * 3,
                            std=(1,) * 3)) == 390


def test_loader_rejects_float_images_and_oversized_batches():
    with pytest.raises(ValueError, match="images: expected uint8"):
        DeviceLoader(torch.zeros(4, 3, 8, 8), torch.zeros(4), mean=(0,) * 3, std=(1,) * 3)
    with pytest.raises(ValueError, match="batch_size=8"):
        DeviceLoader(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4), batch_size=8,
                     mean=(0,) * 3, std=(1,) * 3)


def test_eval_batches_cover_the_set_in_order_normalised():
    images = torch.randint(0, 256, (2500, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(2500)
    batches = list(eval_batches(images, labels, batch_size=1024, mean=(0.5,) * 3, std=(0.25,) * 3))
    assert [len(y) for _, y in batches] == [1024, 1024, 452]
    assert torch.equal(torch.cat([y for _, y in batches]), labels)
    x = torch.cat([x for x, _ in batches])
    assert torch.allclose(x, (images.float() / 255 - 0.5) / 0.25, atol=1e-5)


@pytest.mark.gpu
def test_loader_batch_is_captured_in_a_cuda_graph_and_replays_fresh_randomness():
    dev = torch.device("cuda")
    images, boxes = _single_pixel_images(512)
    loader = DeviceLoader(images.to(dev), torch.arange(512, device=dev), boxes.to(dev),
                          batch_size=128, mean=(0.5,) * 3,
                          std=(0.5,) * 3)  # global CUDA RNG: graph-safe
    index = torch.randperm(512, device=dev)[:128]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        loader.batch(index)  # warm-up outside the graph
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        x, y, b = loader.batch(index)
    graph.replay()
    first = b.clone()
    graph.replay()
    torch.cuda.synchronize()
    assert x.shape == (128, 3, 32, 32) and torch.equal(y, index)
    assert not torch.equal(first, b)  # each replay draws new crops and flips
    visible = x[:, 0].flatten(1).amax(1) > 0
    empty = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    assert torch.equal(visible, ~empty)

"""The embedded synthetic set: deterministic bytes, tight boxes around the main object."""

import torch

from benchmark.data import synthetic
from benchmark.data.synthetic import generate
from plugins.geometry import mask_box


def test_same_seed_gives_the_same_bytes_and_another_seed_differs():
    a, b, c = generate(300, seed=3), generate(300, seed=3), generate(300, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.boxes, b.boxes)
    assert not torch.equal(a.images, c.images)
    assert a.images.dtype == torch.uint8 and a.images.shape == (300, 3, 32, 32)


def test_a_smaller_set_is_a_prefix_of_a_larger_one():
    small, large = generate(50, seed=1), generate(1200, seed=1)
    assert torch.equal(small.images, large.images[:50])


def test_box_is_the_tight_box_of_every_object_pixel():
    data = generate(200, seed=0, return_alpha=True)
    obj = data.alpha > 0
    ys = torch.arange(32).view(1, 32, 1)
    xs = torch.arange(32).view(1, 1, 32)
    x1, y1, x2, y2 = (data.boxes[:, i].view(-1, 1, 1) for i in range(4))
    inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
    assert not (obj & ~inside).any()  # every object pixel lies in its box
    # tight: each edge row / column of the box holds an object pixel
    assert ((obj & (xs == x1)).flatten(1).any(1).all()
            and (obj & (xs == x2 - 1)).flatten(1).any(1).all())
    assert ((obj & (ys == y1)).flatten(1).any(1).all()
            and (obj & (ys == y2 - 1)).flatten(1).any(1).all())


def test_all_classes_occur_and_differ_in_form_not_colour_alone():
    data = generate(1000, seed=0)
    assert data.labels.bincount(minlength=10).min() > 60
    masks = []
    for k in range(len(synthetic.CLASSES)):
        n = torch.full((1,), 8.0)
        cov = synthetic._coverage(torch.tensor([k]), n * 2, n * 2, n, torch.zeros(1), 32)
        masks.append(cov[0] > 0.5)
    for i in range(10):
        for j in range(i + 1, 10):
            assert (masks[i] ^ masks[j]).sum() > 10, (synthetic.CLASSES[i], synthetic.CLASSES[j])


def test_the_box_of_an_empty_mask_is_zeros():
    mask = torch.zeros(2, 4, 5, dtype=torch.bool)
    mask[0, 1:3, 2] = True
    assert mask_box(mask).tolist() == [[2, 1, 3, 3], [0, 0, 0, 0]]

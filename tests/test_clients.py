"""plugins.Erase in real clients: timm's create_loader and a DataLoader with two workers."""

import numpy as np
import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

import plugins

SIZE = 32


def pil_images(n, seed=0):
    """RGB images with values in [40, 255]: no pixel is 0 before or after normalisation."""
    rng = np.random.default_rng(seed)
    return [PIL.Image.fromarray(rng.integers(40, 256, (SIZE, SIZE, 3), dtype=np.uint8))
            for _ in range(n)]


class TinyPilDataset(Dataset):
    """torchvision-style: (PIL image, label) pairs through an optional `transform`."""

    def __init__(self, n, transform=None):
        self.images, self.transform = pil_images(n), transform
        self.labels = [i % 2 for i in range(n)]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.images[index]
        return (self.transform(image) if self.transform else image), self.labels[index]


def test_timm_create_loader_trains_with_erase_in_place_of_its_random_erasing(tmp_path):
    timm = pytest.importorskip("timm")
    from timm.data import ImageDataset, create_loader

    for index, image in enumerate(pil_images(16)):  # a class folder per label, as ImageFolder
        folder = tmp_path / f"class{index % 2}"
        folder.mkdir(exist_ok=True)
        image.save(folder / f"{index}.png")
    loader = create_loader(
        ImageDataset(str(tmp_path)), input_size=(3, SIZE, SIZE), batch_size=8, is_training=True,
        re_prob=0.5, use_prefetcher=True, device=torch.device("cpu"), num_workers=0,
    )
    assert loader.random_erasing is not None  # timm's own, built from re_prob
    # PrefetchLoader calls it on the normalised float batch and keeps the returned tensor.
    loader.random_erasing = plugins.Erase("cutout")
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=2, pretrained=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(2):  # 2 batches per epoch: 3 steps
        for images, labels in loader:
            assert images.shape == (8, 3, SIZE, SIZE) and images.dtype == torch.float32
            erased = (images == 0).all(dim=1).flatten(1).sum(1)
            assert (erased >= 64).all()  # cutout (p 1, 16 x 16, clipped to >= 8 x 8) on every image
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if len(losses) == 3:
                break
    assert len(losses) == 3 and all(np.isfinite(losses)) and len(set(losses)) == 3


def test_v2_compose_with_erase_runs_in_a_dataloader_with_two_workers():
    transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                            plugins.Erase("random_erasing", p=1.0)])
    loader = DataLoader(TinyPilDataset(16, transform), batch_size=4, num_workers=2)
    batches = list(loader)
    assert len(batches) == 4
    masks = []
    for images, labels in batches:
        assert images.shape == (4, 3, SIZE, SIZE) and labels.shape == (4,)
        erased = (images == 0).all(dim=1)  # the inputs have no zeros: these pixels were erased
        assert erased.flatten(1).any(1).all()
        masks += [tuple(mask.flatten().tolist()) for mask in erased]
    # Each worker's torch RNG is seeded differently, so the two workers do not repeat masks.
    assert len(set(masks)) == 16

"""What a cost estimate needs of a run's dataset without reading its images: the sizes, the
classes, whether it has object boxes, the image shape, and where the sizes came from
(`dataset_facts`; used by `tools/cost.py` and the dry-run's `data:` line)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataFacts:
    """What a plan needs of a run's dataset: sizes, classes, boxes, the image shape
    (channels, height, width) and where the sizes came from (`source`, for the printed line)."""

    name: str
    n_train: int
    n_test: int
    classes: int
    boxes: bool
    shape: tuple[int, int, int]
    source: str

    @property
    def sizes(self) -> tuple[int, int, int, bool]:
        """(n_train, n_test, classes, has boxes): what `calibrate` takes."""
        return self.n_train, self.n_test, self.classes, self.boxes

    def line(self) -> str:
        """One line: the dataset, its image shape and sizes, and where they came from."""
        c, h, w = self.shape
        return (f"data: {self.name}, {c}x{h}x{w} images, {self.n_train:,} training and "
                f"{self.n_test:,} test images ({self.source})")


_facts_cache: dict = {}


def dataset_facts(spec) -> DataFacts:
    """A run's dataset as a plan sees it, loading its images only when nothing else tells
    (an hf: dataset): the synthetic set from its options; CIFAR, Fashion-MNIST and SVHN at the
    image shape their loaders enforce (Fashion-MNIST 1x28x28, the others 3x32x32) and the
    number of images of the local files when a header or this process's data check has
    counted them (`data.local_sizes`), else the published sizes, saying why."""
    from benchmark import data

    d = spec.data
    key = (d.name, d.root, repr(sorted(d.options.items())))
    if key in _facts_cache:
        return _facts_cache[key]
    known, shape = data.known_sizes(d.name, **d.options), data.known_shape(d.name, **d.options)
    if d.name == "synthetic":
        facts = DataFacts(d.name, *known, (shape[0], shape[1], shape[1]),
                          "generated from the suite's options")
    elif known is not None and shape is not None:
        n_train, n_test, where = data.local_sizes(d.name, d.root, **d.options)
        if n_train is None:
            n_train, n_test = known[:2]
            source = f"{d.name}'s published sizes: {where}"
        else:
            source = f"counted from {where}"
        facts = DataFacts(d.name, n_train, n_test, *known[2:], (shape[0], shape[1], shape[1]),
                          source)
    else:
        kw = dict(root=d.root, **d.options)
        tr, te = data.load(d.name, "train", **kw), data.load(d.name, "test", **kw)
        c, h, w = tr.images.shape[1:]
        facts = DataFacts(d.name, len(tr.labels), len(te.labels), len(tr.classes),
                          tr.boxes is not None, (int(c), int(h), int(w)),
                          "counted from the loaded dataset")
    _facts_cache[key] = facts
    return facts


def dataset_sizes(spec) -> tuple[int, int, int, bool]:
    """(n_train, n_test, num_classes, has boxes) of a run's dataset (`dataset_facts`)."""
    return dataset_facts(spec).sizes

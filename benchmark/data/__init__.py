"""Data: datasets as uint8 tensors with labels and boxes (`sources`: `load`; from `cifar`,
`papers` (Fashion-MNIST, SVHN), `hf`, the embedded `synthetic` set; through `cache`; checked by
`checks`) and the device-resident training loader (`augment`)."""

from benchmark.data.sources import (
    CACHE_VERSION,
    FILE_DATASETS,
    Dataset,
    DataUnavailableError,
    channel_stats,
    check,
    check_splits,
    default_data_dir,
    digest,
    identity,
    known_shape,
    known_sizes,
    load,
    load_checked,
    local_sizes,
)

__all__ = ["CACHE_VERSION", "FILE_DATASETS", "DataUnavailableError", "Dataset", "channel_stats",
           "check", "check_splits", "default_data_dir", "digest", "identity", "known_shape",
           "known_sizes", "load", "load_checked", "local_sizes"]

"""Data: datasets as uint8 tensors with labels and boxes (`sources`: `load`; from `cifar`, `hf`,
the embedded `synthetic` set; through `cache`; checked by `checks`) and the device-resident
training loader (`augment`)."""

from benchmark.data.sources import (
    CACHE_VERSION,
    Dataset,
    DataUnavailableError,
    channel_stats,
    check,
    check_splits,
    default_data_dir,
    digest,
    identity,
    known_sizes,
    load,
    load_checked,
)

__all__ = ["CACHE_VERSION", "DataUnavailableError", "Dataset", "channel_stats", "check",
           "check_splits", "default_data_dir", "digest", "identity", "known_sizes", "load",
           "load_checked"]

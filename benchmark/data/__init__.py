"""Data: datasets as uint8 tensors with labels and boxes (`sources`), the embedded synthetic set
(`synthetic`) and the device-resident training loader (`augment`)."""

from benchmark.data.sources import (
    CACHE_VERSION,
    Dataset,
    channel_stats,
    check,
    default_data_dir,
    load,
)

__all__ = ["CACHE_VERSION", "Dataset", "channel_stats", "check", "default_data_dir", "load"]

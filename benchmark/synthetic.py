"""Alias: `python -m benchmark.synthetic --figure PATH` is `erasebench data samples --out PATH`."""

import sys

from benchmark.cli import alias

if __name__ == "__main__":
    args = ["--out" if a == "--figure" else a for a in sys.argv[1:]]
    sys.exit(alias("data", ["samples", *args]))

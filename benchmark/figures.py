"""Alias: `python -m benchmark.figures ...` is `erasebench figures ...`."""

import sys

from benchmark.cli import alias

if __name__ == "__main__":
    sys.exit(alias("figures", sys.argv[1:]))

"""Alias: `python -m benchmark.speed ...` is `erasebench speed ...`."""

import sys

from benchmark.cli import alias

if __name__ == "__main__":
    sys.exit(alias("speed", sys.argv[1:]))

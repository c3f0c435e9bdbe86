"""`accelerate launch benchmark/run.py ...` is `erasebench run ...`: kept so the command of the
design card works as it always has (the package must be installed: `pip install -e .`)."""

import sys

from benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))

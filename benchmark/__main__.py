"""`python -m benchmark ...` (and `accelerate launch -m benchmark ...`) is `erasebench ...`."""

import sys

from benchmark.cli import main

sys.exit(main())

"""Alias: `python -m benchmark.leaderboard render|compare ...` is
`erasebench leaderboard|compare`."""

import sys

from benchmark.cli import alias

if __name__ == "__main__":
    command, *rest = sys.argv[1:] or ["--help"]
    sys.exit(alias("leaderboard" if command == "render" else "compare", rest)
             if command in ("render", "compare") else alias("leaderboard", [command, *rest]))

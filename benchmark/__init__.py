"""erasebench's benchmark package. The older `python -m benchmark.<name>` commands (figures,
speed, synthetic, leaderboard) are served from the one table `benchmark.cli.ALIASES`."""

from benchmark.cli import install_aliases

install_aliases()

"""The `erasebench` command: one entry point with a subcommand per job.

    erasebench run --suite smoke                 train a suite (under `accelerate launch` too)
    erasebench evaluate --suite smoke            add robustness to occlusion to older records
    erasebench leaderboard --suite smoke         render leaderboards/<suite>.md from its records
    erasebench compare A.md B.md ...             rank methods across suites and models
    erasebench figures erased-fraction | cam     the figures
    erasebench speed erasers | cam | train       throughput benchmarks
    erasebench data check | download | samples   datasets

Under Accelerate: `accelerate launch -m benchmark run ...` (or `accelerate launch
benchmark/run.py ...`, the same).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.abc
import importlib.util
import sys

COMMANDS = {
    "run": ("benchmark.runner.main", "train a suite: every process is a worker on its results"),
    "evaluate": ("benchmark.runner.evaluate",
                 "add robustness to occlusion to finished records, from their checkpoints"),
    "leaderboard": ("benchmark.report.leaderboard", "render leaderboards/<suite>.md from records"),
    "compare": ("benchmark.report.compare", "rank methods across suites and models"),
    "figures": ("benchmark.report.figures", "erased-fraction histograms, CAM examples"),
    "speed": ("benchmark.tools.speed", "throughput of the erasers, the CAM and the training step"),
    "data": ("benchmark.data.commands", "check, download or preview the datasets"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return (f"usage: erasebench <command> [options]\n\ncommands:\n{rows}\n\n"
            "`erasebench <command> --help` for a command's options.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"error: unknown command {name!r}{hint}; commands: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest, prog=f"erasebench {name}") or 0)


def subcommands(argv, *, prog: str, description: str, registrars) -> int:
    """The shared skeleton of a command with subcommands (figures, speed, data): each registrar
    adds its subparser and `set_defaults(func=...)`; a ValueError or missing file is one line."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for register in registrars:
        register(sub)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the command a table records
    try:
        out = args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return out if isinstance(out, int) else 0


# The older `python -m benchmark.<name>` commands, kept working from this one table (no module
# files: `AliasFinder` below serves them): name -> its arguments as `erasebench ...` arguments.
ALIASES = {
    "figures": lambda argv: ["figures", *argv],
    "speed": lambda argv: ["speed", *argv],
    "synthetic": lambda argv: ["data", "samples",
                               *("--out" if a == "--figure" else a for a in argv)],
    "leaderboard": lambda argv: (
        ["leaderboard" if argv[0] == "render" else "compare", *argv[1:]]
        if argv[:1] in (["render"], ["compare"]) else ["leaderboard", *(argv or ["--help"])]),
    "cam_figures": lambda argv: ["figures", *argv],  # `cam_figures cam ...` = `figures cam ...`
}
# Old entry points that became modules of their own rather than `erasebench` commands.
MODULE_ALIASES = {"gpu_check": "benchmark.tools.gpu_check"}


def alias(name: str, argv: list[str]) -> int:
    """Run the old `python -m benchmark.<name> ARGV` as the command or module it became."""
    if name in MODULE_ALIASES:
        return int(importlib.import_module(MODULE_ALIASES[name]).main(list(argv)) or 0)
    return main(ALIASES[name](list(argv)))


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
    """Finds `benchmark.<name>` for each name in ALIASES (first, so no stale file of an older
    install shadows the table): a module that runs `alias(name, sys.argv[1:])` when run as
    `__main__` and does nothing when imported. Installed by `benchmark/__init__.py`."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != "benchmark" or name not in {*ALIASES, *MODULE_ALIASES}:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def get_source(self, fullname):
        name = fullname.rpartition(".")[2]
        return ("import sys\nfrom benchmark.cli import alias\n"
                f"if __name__ == '__main__':\n    sys.exit(alias({name!r}, sys.argv[1:]))\n")

    def is_package(self, fullname):
        return False


def install_aliases() -> None:
    """Make `python -m benchmark.<alias>` findable (once per interpreter)."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())

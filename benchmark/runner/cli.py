"""The `erasebench run` command line: its options, their own checks, and the suite they build
(the YAML suite with the command line's overrides applied, validated again)."""

from __future__ import annotations

import argparse
import sys

from benchmark.runner import claims
from benchmark.runner.worker import WorkerOptions
from benchmark.suites.config import ConfigError, load_suite, validate
from benchmark.suites.expand import apply_overrides, parse_seeds

RUN_DESCRIPTION = "Run a suite: `erasebench run --suite smoke` (or `accelerate launch benchmark/run.py ...`)."  # noqa: E501

IMPORTS_RUN_CODE = (
    "Security: a suite with `imports:` (and each --import) runs that Python code (the module or "
    ".py file) as soon as the suite is read, with your permissions, even with --dry-run. Read "
    "a suite's imported files before you run a suite you did not write. Results folders are "
    "data, not code: checkpoints are loaded with torch.load(weights_only=True).")


class _OneLineParser(argparse.ArgumentParser):
    """A bad option value is one line, `error: argument --epochs: invalid int value: 'x'`, exit
    2, like every other bad value (argparse would print its whole usage block first)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parse_args(argv=None, prog: str = "erasebench run") -> argparse.Namespace:
    p = _OneLineParser(prog=prog, description=RUN_DESCRIPTION,
                                epilog=IMPORTS_RUN_CODE)
    p.add_argument("--suite", default="smoke",
                   help="a name in configs/ or a path to a YAML file (default: smoke); its "
                   "`imports:` run as Python code when it is read, even with --dry-run")
    p.add_argument("--epochs", type=int,
                   help="override train.epochs (LR milestones and warm-up scale with it)")
    p.add_argument("--seeds", help="override seeds: 0,1,2 or 0-4")
    p.add_argument("--models", help="override models: comma-separated, e.g. resnet20,timm/resnet18")
    p.add_argument("--erasers", help="keep only these methods (names or labels), e.g. plain,cutout")
    p.add_argument("--data", help="override the dataset: synthetic, cifar10, cifar100, "
                   "fashion_mnist, svhn, hf:<id>")
    p.add_argument("--data-root", help="where datasets live (default: $ERASEBENCH_DATA or ./data)")
    # --data-dir: --data-root's old name, still read
    p.add_argument("--data-dir", dest="data_dir_old", help=argparse.SUPPRESS)
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset option (repeatable), e.g. n_train=5000, or for hf: datasets "
                   "data_dir=... (Hugging Face's own)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE|FILE",
                   help="import a module or .py file that registers erasers (repeatable); "
                   "it runs as Python code, even with --dry-run")
    p.add_argument("--download", action="store_true",
                   help="fetch the named file dataset (cifar10, cifar100, "
                   "fashion_mnist, svhn) with torchvision if absent")
    p.add_argument("--out", default="runs",
                   help="put results/, leaderboards/ and wandb/ under this folder (default: runs, "
                        "untracked; `--out .` writes the repository's committed leaderboards/)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs and their estimated cost; train nothing")
    p.add_argument("--mixed-precision", choices=("no", "bf16"),
                   help="default: Accelerate's setting (accelerate launch --mixed_precision)")
    p.add_argument("--graphs", choices=("auto", "on", "off"),
                   help="override train.graphs: capture each step in a CUDA graph (auto: on CUDA)")
    p.add_argument("--pack", help="override train.pack: auto, off, or K runs per stacked network")
    p.add_argument("--runs-per-device", type=int, default=1, metavar="N",
                   help="N worker processes share each device (for runs that do not stack)")
    p.add_argument("--claim-timeout", type=float, default=claims.DEFAULT_TIMEOUT_S, metavar="S",
                   help="take over a claim whose heartbeat is older than S s (default: 600)")
    p.add_argument("--no-wandb", action="store_true", help="do not log to Weights & Biases")
    p.add_argument("--wandb-project", default="erasebench",
                   help="W&B project (default: erasebench)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, help="torch threads per process on the CPU "
                   "(default: the machine's cores divided by the number of processes)")
    p.add_argument("--rerun-changed", action="store_true",
                   help="retrain runs whose record was made by another config (moved aside)")
    p.add_argument("--retry-failed", action="store_true", help="train failed runs again")
    p.add_argument("--device", help=argparse.SUPPRESS)  # a --runs-per-device worker's device
    return p.parse_args(argv)


def split(text: str, option: str | None = None, example: str = "") -> list[str]:
    """Comma-separated names; with `option`, a list that names nothing (`--models ,`, `--models
    ''`) or names one twice is a one-line ConfigError: it would train nothing, or twice."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if option is None:
        return items
    if not items:
        raise ConfigError(f"{option} {text!r}: names nothing; expected comma-separated names, "
                          f"e.g. {example}")
    twice = sorted({x for x in items if items.count(x) > 1})
    if twice:
        raise ConfigError(f"{option} {text!r}: names {', '.join(twice)} more than once")
    return items


def parse_pack(text: str | None):
    if text is None:
        return None
    if text in ("auto", "off"):
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ConfigError(f"--pack {text!r}: expected auto, off or a pack size >= 1")


def data_options(items: list[str]) -> dict:
    """--data-option key=value (values read as YAML scalars: 5000 is an int, true a bool)."""
    import yaml

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--data-option {item!r}: expected key=value")
        if key.strip() in out:
            raise ConfigError(f"--data-option {key.strip()}: given twice; give each key once")
        out[key.strip()] = yaml.safe_load(value) if value else ""
    return out


def check_cli(args) -> None:
    """The options' own values, before the suite (and its imports) is read: one ConfigError line
    each."""
    for imp in args.imports:
        if not imp.strip():
            raise ConfigError("--import '': expected a module name or a .py file")
    for opt in ("runs_per_device", "threads"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            raise ConfigError(f"--{opt.replace('_', '-')} {value}: must be >= 1")
    if args.claim_timeout <= 0:
        raise ConfigError(f"--claim-timeout {args.claim_timeout:g}: must be > 0 seconds")
    if args.data_dir_old is not None:
        if args.data_root is not None:
            raise ConfigError("--data-dir and --data-root are one option (--data-dir is its old "
                              "name); give --data-root only")
        print("note: --data-dir is now called --data-root; the old name is still read",
              file=sys.stderr, flush=True)
        args.data_root = args.data_dir_old
    for opt in ("data", "data_root", "suite"):
        if getattr(args, opt) is not None and not getattr(args, opt).strip():
            raise ConfigError(f"--{opt.replace('_', '-')} '': expected a value")


def build_suite(args):
    check_cli(args)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    models = split(args.models, "--models", "resnet20,timm/resnet18") \
        if args.models is not None else None
    methods = split(args.erasers, "--erasers", "plain,cutout") \
        if args.erasers is not None else None
    options = data_options(args.data_option)
    suite = load_suite(args.suite, extra_imports=args.imports)
    file_epochs = suite.train.epochs
    suite = apply_overrides(suite, epochs=args.epochs, seeds=seeds, models=models,
                            methods=methods, data=args.data, root=args.data_root)
    suite.data.options.update(options)
    if args.download:
        suite.data.download = True
    if args.graphs is not None:
        suite.train.graphs = args.graphs
    pack = parse_pack(args.pack)
    if pack is not None:
        suite.train.pack = pack
    if any(x is not None for x in (args.epochs, seeds, models, methods, args.data)) or options:
        try:  # what the options changed (--epochs rescales milestones and warm-ups)
            validate(suite, milestones_in_range=False)
        except ConfigError as e:
            if args.epochs is None or args.epochs == file_epochs:
                raise
            raise ConfigError(f"{e} (values rescaled by --epochs {args.epochs} from the file's "
                              f"train.epochs {file_epochs}; give a larger --epochs)") from None
    return suite




def worker_options(args: argparse.Namespace) -> WorkerOptions:
    """What a worker needs from the command line, and nothing else of it."""
    return WorkerOptions(out=args.out, rerun_changed=args.rerun_changed,
                         retry_failed=args.retry_failed, claim_timeout=args.claim_timeout,
                         progress=not args.no_progress, wandb=not args.no_wandb,
                         wandb_project=args.wandb_project, spawned=bool(args.device))

"""`erasebench data`: see whether a dataset is where the runner looks and reads as a run reads
it, fetch CIFAR-10/100, Fashion-MNIST or SVHN, preview the synthetic set.

    erasebench data check cifar10 [--data-root DIR]
    erasebench data download cifar10 [--data-root DIR]
    erasebench data samples --out leaderboards/figures/synthetic_samples.png
"""

from __future__ import annotations

import argparse
import sys

from benchmark import data


def _root(args) -> str | None:
    """--data-root, or --data-dir (its old name, still read, with a one-line note)."""
    if args.data_dir_old is None:
        return args.root
    if args.root is not None:
        raise ValueError("--data-dir and --data-root are one option (--data-dir is its old name); "
                         "give --data-root only")
    print("note: --data-dir is now called --data-root; the old name is still read",
          file=sys.stderr, flush=True)
    return args.data_dir_old


def check(args) -> int:
    """Is the dataset there and readable? A file dataset (cifar10, cifar100, fashion_mnist, svhn)
    is read and checked as a run reads it (headers, sizes, shapes, labels): a bad file is the
    one-line error `run` would give (exit 2). synthetic is built in; hf: is checked for its
    options and local folders only (reading it may download)."""
    root = _root(args)
    options = dict(args.option or [])
    where = data.default_data_dir() if root is None else root
    if args.name == "synthetic":
        data.check(args.name, root, **options)
        print("synthetic: built in (generated on the fly; no files to look for)")
        return 0
    data.check(args.name, root, **options)
    if args.name not in data.FILE_DATASETS:
        print(f"{args.name}: options and local folders found (the data is read and checked when "
              "a run loads it)")
        return 0
    # the files themselves, not the processed cache: nothing is written, every file is read
    train, test = data.load_checked(args.name, root, **{**options, "cache": False})
    print(f"{args.name}: found and read in {where}/: {len(train)} train and {len(test)} test "
          f"images {tuple(train.images.shape[1:])}, {len(train.classes)} classes")
    return 0


def download(args) -> int:
    """Fetch a dataset's published files (md5-checked) into the data folder and read them once.
    No network: one line naming the URL, the file and where to place the files by hand, exit 2."""
    if args.name not in data.FILE_DATASETS:
        raise ValueError(f"download: only {', '.join(data.FILE_DATASETS)} are fetched here, not "
                         f"{args.name!r} (hf: datasets download through Hugging Face's own cache)")
    root = _root(args)
    for split in ("train", "test"):
        try:
            ds = data.load(args.name, split, root, download=True)
        except data.DataUnavailableError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{args.name} {split}: {len(ds)} images")
    return 0


def samples(args) -> int:
    from benchmark.data import synthetic

    synthetic.save_figure(args.out, seed=args.seed)
    print(f"wrote {args.out}")
    return 0


def _option(text: str) -> tuple[str, object]:
    import yaml

    key, eq, value = text.partition("=")
    if not eq:
        raise ValueError(f"--data-option {text!r}: expected key=value")
    return key, yaml.safe_load(value)


def _root_options(parser) -> None:
    parser.add_argument("--data-root", dest="root", help="where datasets live (default: "
                        "$ERASEBENCH_DATA or ./data)")
    parser.add_argument("--data-dir", dest="data_dir_old", help=argparse.SUPPRESS)  # old name


def _register(sub) -> None:
    c = sub.add_parser("check", help="is the dataset where the runner looks for it?")
    c.add_argument("name", help="synthetic, cifar10, cifar100, fashion_mnist, svhn or "
                   "hf:<id>[:<config>]")
    _root_options(c)
    c.add_argument("--data-option", dest="option", action="append", type=_option,
                   metavar="KEY=VALUE")
    c.set_defaults(func=check)
    d = sub.add_parser("download", help="fetch cifar10, cifar100, fashion_mnist or svhn (needs "
                       "the network)")
    d.add_argument("name", choices=list(data.FILE_DATASETS))
    _root_options(d)
    d.set_defaults(func=download)
    s = sub.add_parser("samples", help="a PNG grid of synthetic samples with their boxes")
    s.add_argument("--out", required=True, help="the PNG to write")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=samples)


def main(argv: list[str] | None = None, prog: str = "erasebench data") -> int:
    from benchmark.cli import subcommands

    return subcommands(argv, prog=prog, description=__doc__, registrars=[_register])

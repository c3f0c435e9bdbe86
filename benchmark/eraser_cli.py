"""The eraser options shared by every command that takes eraser names.

    --import FILE.py|MODULE      import a file or module that registers erasers (repeatable),
                                 the same option `erasebench run --import` takes
    NAME[:key=value,...]         an eraser with parameters, e.g. `cutout:size=8,p=0.5` or
                                 `random_erasing:scale=[0.02,0.2]`; values are YAML scalars or
                                 lists (8 is an int, 0.5 a float, true a bool), as a suite's
                                 `params:` mapping

`resolve` imports the files, then builds every named eraser before any work starts, so an
unknown name or parameter is one line (the registry's, with its did-you-mean and the hint to
`--import` a file) and the command exits 2 without having drawn a mask.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

__all__ = ["EraserSpec", "add_eraser_options", "add_import_option", "device_arg",
           "nonnegative_int", "one_line_errors", "parse_spec", "positive_int", "resolve",
           "threads_arg"]


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make `parser` report a bad argument as one `error: argument --n: ...` line on stderr
    (exit 2) instead of argparse's usage block followed by the error: the same one-line form
    as the command's other errors. `--help` still shows the usage."""
    import sys

    def error(message: str):
        print(f"error: {message} (see `{parser.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error
    return parser


# argparse `type=` helpers shared by the eraser commands: a bad number or device is refused
# while the arguments are parsed (argparse's one `error: argument --n: ...` line, exit 2),
# before any model, data, progress bar or timing.
def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of rows, draws, repeats, a batch or image size)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (e.g. warm-up calls)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def threads_arg(text: str) -> int:
    """torch CPU threads: an integer >= 1, or 0 for torch's default."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"must be an integer >= 1, or 0 for torch's default, got {value}")
    return value


def device_arg(text: str) -> str:
    """A torch device this machine has: cpu, cuda, cuda:N (N < the GPU count) or mps."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}: expected cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return text
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: no CUDA GPU is available here (use cpu)")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(
                f"{text!r}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
        return text
    if device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available here (use cpu)")
        return text
    raise argparse.ArgumentTypeError(
        f"unsupported device {text!r}: expected cpu, cuda, cuda:N or mps")


@dataclass
class EraserSpec:
    """One eraser a command was asked for: its registry name, the parameters given, the built
    eraser, and a label for tables and titles (`name` or `name(key=value, ...)`)."""

    name: str
    params: dict = field(default_factory=dict)
    eraser: object = None

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={v}" for k, v in self.params.items()) + ")"

    @property
    def slug(self) -> str:
        """A file-name-safe form of the label (letters, digits, '_', '-', '=', '.')."""
        keep = "".join(c if c.isalnum() or c in "_-=." else "_" for c in self.label)
        return keep.strip("_")


def add_import_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="FILE.py|MODULE",
                        help="import a .py file or module that registers erasers (repeatable), "
                        "as `erasebench run --import`")


def add_eraser_options(parser: argparse.ArgumentParser, *, threads: int,
                       threads_help: str) -> None:
    """The options of a command over several erasers (`figures erased-fraction`, `speed
    erasers`): --erasers NAME[:key=value,...] (default: every registered eraser), --import, and
    --threads (torch CPU threads, default `threads`; 0: torch's default); a bad option is one
    line (one_line_errors)."""
    parser.add_argument("--erasers", nargs="+", default=None, metavar="NAME[:key=value,...]",
                        help="erasers with optional parameters, e.g. cutout:size=8 gridmask "
                        "(default: every registered eraser, default parameters)")
    add_import_option(parser)
    one_line_errors(parser)
    parser.add_argument("--threads", type=threads_arg, default=threads, help=threads_help)


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets: `a=1,b=[1,2]` -> ['a=1', 'b=[1,2]']."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c in "[(":
            depth += 1
        elif c in "])":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_spec(text: str) -> tuple[str, dict]:
    """`NAME[:key=value,...]` -> (name, params). A one-line ValueError names the bad part."""
    import yaml

    name, colon, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"eraser {text!r}: expected NAME or NAME:key=value,... "
                         "(e.g. cutout:size=8)")
    params = {}
    for item in _split_top(rest) if colon else []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"eraser {text!r}: parameter {item!r} is not key=value "
                             "(e.g. cutout:size=8,p=0.5)")
        try:
            params[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            raise ValueError(f"eraser {text!r}: value of {key.strip()!r} is not a YAML scalar "
                             f"or list: {value!r}") from None
    return name, params


def resolve(specs: list[str] | None, imports: list[str] | None = None, *,
            default: list[str] | None = None) -> list[EraserSpec]:
    """Import `imports`, then parse and build each spec (None: `default`, or every registered
    eraser). Raises a one-line ValueError for a file that cannot be imported, an unknown
    eraser or a bad parameter, before any work starts."""
    import plugins
    from plugins.sources import import_sources

    try:
        import_sources(list(imports or []))
    except ValueError as e:
        raise ValueError(f"--import: {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's file raised while importing
        raise ValueError(f"--import: importing it raised {type(e).__name__}: {e}") from None
    if specs is None:
        specs = default if default is not None else plugins.available()
    out = []
    for text in specs:
        name, params = parse_spec(text)
        try:
            eraser = plugins.build(name, **params)
        except ValueError:
            raise
        except Exception as e:  # noqa: BLE001 - the eraser's own check of its parameters
            raise ValueError(f"eraser {text!r}: {type(e).__name__}: {e}") from None
        out.append(EraserSpec(name, params, settled(eraser)))
    return out


def settled(eraser):
    """The eraser a command outside any run shows or times (speed erasers, figures): one that
    depends on the epoch (`at_epoch`, e.g. GridMask's `ramp_epochs`) as at the end of its ramp
    (epoch `ramp_epochs`: its full p), as a run erases once the ramp is over; any other eraser
    unchanged."""
    if not callable(getattr(eraser, "at_epoch", None)):
        return eraser
    return eraser.at_epoch(getattr(eraser, "ramp_epochs", None) or 0)

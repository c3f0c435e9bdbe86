"""The house's size rules: each module one job, small enough to read. No module in benchmark/ or
plugins/ over 400 lines, no function over 50; the worker takes a dataclass of options."""

import ast
import dataclasses
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 50


def _modules():
    for folder in ("benchmark", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def test_no_module_over_400_lines_and_no_function_over_50():
    too_long = []
    for rel, text in _modules():
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{rel}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    assert not too_long, "split these by job:\n" + "\n".join(too_long)


def test_the_worker_takes_a_dataclass_of_options_not_the_command_line():
    from benchmark.runner.cli import parse_args, worker_options
    from benchmark.runner.worker import Worker, WorkerOptions

    assert dataclasses.is_dataclass(WorkerOptions)
    opts = worker_options(parse_args(["--no-wandb", "--retry-failed", "--claim-timeout", "30",
                                      "--out", "x"]))
    assert isinstance(opts, WorkerOptions)
    assert (opts.wandb, opts.retry_failed, opts.claim_timeout, opts.out) == (False, True, 30.0, "x")
    assert list(Worker.__init__.__code__.co_varnames[:2]) == ["self", "options"]
    source = (ROOT / "benchmark/runner/worker.py").read_text() + \
        (ROOT / "benchmark/runner/hooks.py").read_text()
    assert "args." not in source and "argparse" not in source

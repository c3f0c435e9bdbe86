"""One command, `erasebench`, with a subcommand per job; the older commands still work."""

import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import cli

ROOT = Path(__file__).resolve().parents[1]


def test_every_subcommand_answers_help(capsys):
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0
        assert f"erasebench {name}" in capsys.readouterr().out


def test_no_command_prints_the_list_and_an_unknown_one_is_one_line(capsys):
    assert cli.main([]) == 2 and "commands:" in capsys.readouterr().out
    assert cli.main(["leaderbord"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'leaderboard'" in err


def test_the_installed_script_and_python_m_benchmark_are_the_same_command():
    out = subprocess.run([sys.executable, "-m", "benchmark", "--help"], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0 and "erasebench <command>" in out.stdout


@pytest.mark.parametrize("old, new", [
    (["benchmark/run.py", "--suite", "nope"], "suite 'nope' is not in"),
    (["-m", "benchmark.leaderboard", "render", "--suite", "nope", "--results", "/nonexistent"],
     "no such results folder"),
    (["-m", "benchmark.figures", "erased-fraction", "--draws", "0"],
     "argument --draws: must be an integer >= 1"),
    (["-m", "benchmark.speed", "erasers", "--help"], "erasebench speed erasers"),
    (["-m", "benchmark.synthetic", "--help"], "erasebench data samples"),
    (["-m", "benchmark.leaderboard", "compare", "--help"], "erasebench compare"),
    (["-m", "benchmark.cam_figures", "cam", "--help"], "erasebench figures cam"),
    (["-m", "benchmark.gpu_check", "--help"], "python -m benchmark.tools.gpu_check"),
])
def test_the_older_commands_are_aliases(old, new):
    out = subprocess.run([sys.executable, *old], capture_output=True, text=True, cwd=ROOT)
    assert new in out.stdout + out.stderr


def test_the_older_commands_come_from_one_table_not_from_module_files():
    assert set(cli.ALIASES) == {"figures", "speed", "synthetic", "leaderboard", "cam_figures"}
    assert set(cli.MODULE_ALIASES) == {"gpu_check"}
    for name in {*cli.ALIASES, *cli.MODULE_ALIASES}:
        assert not (ROOT / "benchmark" / f"{name}.py").exists(), name
    assert (ROOT / "benchmark" / "run.py").exists()  # `accelerate launch` needs a file path


def test_data_check_says_where_it_looked_in_one_line(tmp_path, capsys):
    assert cli.main(["data", "check", "cifar10", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(tmp_path) in err and "--download" in err
    assert cli.main(["data", "check", "synthetic"]) == 0


def test_the_cam_figure_never_trains_a_model_it_names_the_command_that_makes_one(capsys):
    assert cli.main(["figures", "cam"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "erasebench run --suite smoke" in err
    assert cli.main(["figures", "cam", "--checkpoint", "/nonexistent.pt"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err

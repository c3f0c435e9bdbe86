"""The manual's submitit example (Scaling out > SLURM) runs as written under submitit's local
executor: array tasks share one results folder and every run trains exactly once."""

import textwrap
from pathlib import Path

import pytest

from benchmark import results

submitit = pytest.importorskip(
    "submitit", reason="submitit is not installed (pip install -e '.[slurm]' or '.[dev]')")

# The manual's snippet, verbatim but for the paths, the suite and the array size (16 -> 2);
# keep the two in step.
SNIPPET = """
import submitit
from benchmark.cli import main

ex = submitit.AutoExecutor("/shared/runs/slurm")
ex.update_parameters(gpus_per_node=1, timeout_min=240, slurm_array_parallelism=16,
                     slurm_signal_delay_s=120)
argv = ["run", "--suite", "thesis", "--mixed-precision", "bf16", "--data-root", "/shared/data",
        "--out", "/shared/runs"]
jobs = ex.map_array(main, [argv] * 16)
"""

SUITE = """
name: arr
data: {name: synthetic, options: {n_train: 64, n_test: 32, seed: 0, size: 16}}
train: {epochs: 1, batch_size: 32, milestones: [1], checkpoint_every: 1, eval_batch_size: 32,
        pack: "off"}
models: [resnet20]
seeds: [0]
methods: [plain, cutout]
"""


@pytest.mark.slow
def test_the_submitit_example_trains_every_run_once_across_its_array_tasks(tmp_path,
                                                                           monkeypatch):
    suite = tmp_path / "arr.yaml"
    suite.write_text(textwrap.dedent(SUITE))
    out = tmp_path / "runs"
    code = (SNIPPET.replace('submitit.AutoExecutor("/shared/runs/slurm")',
                            f'submitit.AutoExecutor("{out}/slurm", cluster="local")')
            .replace('"thesis"', f'"{suite}"').replace("/shared/data", str(tmp_path / "data"))
            .replace("/shared/runs", str(out)).replace("* 16", "* 2"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    scope: dict = {}
    exec(compile(code, "snippet", "exec"), scope)
    jobs = scope["jobs"]
    assert len(jobs) == 2
    assert [j.result() for j in jobs] == [0, 0], [j.stderr() for j in jobs]
    recs = results.load_records(out / "results" / "arr")
    assert sorted(r["run_id"] for r in recs) == sorted(
        f"resnet20__{m}__s0" for m in ("plain", "cutout"))
    assert all(r["status"] == "finished" and r["precision"] == "bf16" for r in recs)
    # every run trained once: the two tasks' counts add up to the suite
    trained = [int(j.stdout().split(" trained here")[0].rsplit("(", 1)[1]) for j in jobs]
    assert sum(trained) == 2

"""Specification of a record's `environment`: the thread count and how the suite was launched,
which change CPU results in their last digits, are stored with every record."""

import pytest
import torch

from benchmark import results
from benchmark.suites.config import load_suite
from benchmark.suites.expand import expand

METRICS = {"final_test_error": 30.0, "best_test_error": 29.0, "best_epoch": 1, "curves": {},
           "occlusion": None, "images_per_s": 1.0, "train_time_s": 1.0,
           "resumed_from_epoch": None}


@pytest.fixture
def spec():
    return expand(load_suite("smoke"))[0]


@pytest.fixture
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith(("ACCELERATE_", "TORCHELASTIC_", "SLURM_")) or key == "OMP_NUM_THREADS":
            monkeypatch.delenv(key)
    threads = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(threads)


def test_a_record_stores_its_processes_torch_threads_and_a_plain_launch(spec, clean_env):
    torch.set_num_threads(1)
    for rec in (results.make_record(spec, METRICS, wall_time_s=1.0, device="cpu",
                                    command="erasebench run --suite smoke --threads 1"),
                results.failed_record(spec, epoch=1, reason="loss is NaN", device="cpu",
                                      command="erasebench run --suite smoke --threads 1")):
        env = rec["environment"]
        assert env["threads"] == 1 and env["threads_option"] == 1
        assert env["interop_threads"] == torch.get_num_interop_threads()
        assert env["launcher"] == "plain" and env["processes"] == 1
        assert env["runs_per_device"] == 1 and env["slurm"] is None


def test_the_default_thread_count_is_recorded_as_no_option_with_the_threads_it_gave(spec,
                                                                                     clean_env):
    torch.set_num_threads(2)
    env = results.make_record(spec, METRICS, wall_time_s=1.0, device="cpu",
                              command="erasebench run --suite smoke")["environment"]
    assert env["threads"] == 2 and env["threads_option"] is None


@pytest.mark.parametrize("command, variables, process, launcher, runs_per_device", [
    ("erasebench run --suite smoke", {"ACCELERATE_MIXED_PRECISION": "no",
                                      "TORCHELASTIC_RUN_ID": "x"}, (1, 2), "accelerate launch", 1),
    ("erasebench run --suite smoke", {"TORCHELASTIC_RUN_ID": "x"}, (0, 4), "torchrun", 1),
    ("erasebench run --suite smoke --runs-per-device 3", {}, (0, 1), "plain", 3),
    ("erasebench run --suite smoke --runs-per-device=3 --device cpu --no-progress", {}, (0, 1),
     "runs-per-device worker", 3),
])
def test_the_record_says_how_the_suite_was_launched(spec, clean_env, command, variables, process,
                                                   launcher, runs_per_device):
    for key, value in variables.items():
        clean_env.setenv(key, value)
    env = results.make_record(spec, METRICS, wall_time_s=1.0, device="cpu", command=command,
                              process=process)["environment"]
    assert env["launcher"] == launcher and env["processes"] == process[1]
    assert env["runs_per_device"] == runs_per_device


def test_a_slurm_array_task_and_omp_num_threads_are_recorded(spec, clean_env):
    clean_env.setenv("SLURM_JOB_ID", "77")
    clean_env.setenv("SLURM_ARRAY_TASK_ID", "3")
    clean_env.setenv("OMP_NUM_THREADS", "1")
    env = results.failed_record(spec, epoch=None, reason="x", command=None)["environment"]
    assert env["slurm"] == {"job": "77", "array_task": "3"} and env["omp_num_threads"] == "1"

"""Shared test setup.

- Tests write nothing outside temporary folders: every cache a library keeps in the home folder
  (Hugging Face, W&B, matplotlib, torch hub, XDG) and the default data folder point into one
  temporary folder for the session, set here before any test module imports those libraries
  (several read their cache paths at import). W&B runs offline unless a test says otherwise.
- Every test starts from the same random state (torch, numpy, random: seed 0).
- Warnings are errors (pyproject's `filterwarnings`, with the third-party ones named there).
- GPU-marked tests skip without CUDA.
"""

import os
import random
import shutil
import tempfile
from pathlib import Path

CACHES = Path(tempfile.mkdtemp(prefix="erasebench-tests-"))
for _var, _sub in {"HF_HOME": "huggingface", "HF_DATASETS_CACHE": "huggingface/datasets",
                   "WANDB_DIR": "wandb", "WANDB_CACHE_DIR": "wandb-cache",
                   "WANDB_CONFIG_DIR": "wandb-config", "MPLCONFIGDIR": "matplotlib",
                   "TORCH_HOME": "torch", "XDG_CACHE_HOME": "xdg-cache",
                   "ERASEBENCH_DATA": "data"}.items():
    os.environ[_var] = str(CACHES / _sub)
os.environ["WANDB_MODE"] = "offline"

import numpy as np  # noqa: E402  (after the cache variables: they are read at import)
import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(CACHES, ignore_errors=True)


@pytest.fixture(autouse=True)
def seeded():
    """The same random state for every test, whatever ran before it."""
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def sigterm_at():
    """`sigterm_at(cmd, prefix, env=None)` starts `cmd` (unbuffered, stderr into stdout), reads
    its output up to the first line starting with `prefix`, sends it SIGTERM and returns (that
    line, the rest of its output, its exit code); the process is killed whatever happens."""
    import signal
    import subprocess

    def run(cmd, prefix, env=None):
        env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)
        line = ""
        try:
            for line in proc.stdout:
                if line.startswith(prefix):
                    break
            proc.send_signal(signal.SIGTERM)
            rest = proc.stdout.read()
            return line, rest, proc.wait(timeout=60)
        finally:
            proc.kill()

    return run

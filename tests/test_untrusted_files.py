"""Nothing read from a results folder, a data cache or a download runs code: every load site
refuses a pickled `__reduce__` payload in one line, and the files erasebench itself writes
(final and resume checkpoints with RNG and optimizer state) still load."""

import io
import pickle
import re
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import cam, models
from benchmark.cli import main as cli
from benchmark.data import cache, sources
from benchmark.fileio import DamagedFileError
from benchmark.suites.config import parse_suite
from benchmark.suites.expand import expand
from benchmark.training import checkpoint, resume
from benchmark.training.pack import PackTrainer, load_run_data


class Payload:
    """Unpickling this writes `marker`: the proof that a load ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "payload-ran"


def evil_checkpoint(path: Path, marker: Path, **keys) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_name": "resnet20", "num_classes": 10, "state_dict": {}, "mean": [0.5] * 3,
                "std": [0.25] * 3, **keys, "payload": Payload(marker)}, path)
    return path


def one_line_naming(msg: str, path: Path) -> None:
    assert "\n" not in msg.strip(), msg
    assert str(path) in msg and "run as code" in msg and "exec" in msg, msg


def test_a_final_checkpoint_with_a_pickled_payload_is_refused_in_one_line(tmp_path, marker):
    path = evil_checkpoint(tmp_path / "resnet20__plain__s0.final.pt", marker)
    with pytest.raises(DamagedFileError) as info:
        checkpoint.load(path)
    assert not marker.exists()
    one_line_naming(str(info.value), path)
    assert path.is_file()  # a final checkpoint is never moved: the user decides


def test_the_cam_after_source_refuses_a_checkpoint_with_a_pickled_payload(tmp_path, marker):
    path = evil_checkpoint(tmp_path / "checkpoints" / "resnet20__plain__s0.final.pt", marker)
    with pytest.raises(DamagedFileError) as info:
        cam.cam_source("after", checkpoint=str(path))
    assert not marker.exists()
    one_line_naming(str(info.value), path)


def test_figures_cam_refuses_a_checkpoint_with_a_pickled_payload_in_one_line_exit_2(
        tmp_path, marker, capsys):
    path = evil_checkpoint(tmp_path / "evil.pt", marker)
    code = cli(["figures", "cam", "--checkpoint", str(path), "--device", "cpu",
                "--out", str(tmp_path / "cam.png")])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists() and not (tmp_path / "cam.png").exists()
    assert err.startswith("error: ") and err.count("\n") == 1
    one_line_naming(err, path)


SUITE = """
name: safe
data: {name: synthetic, options: {n_train: 32, n_test: 16, seed: 0, size: 16}}
train: {epochs: 2, batch_size: 16, milestones: [1], checkpoint_every: 1, eval_batch_size: 16,
        graphs: "off", pack: "off"}
models: [resnet20]
seeds: [0]
methods: [plain, {name: cam_erasing, warmup_epochs: 1}]
"""


@pytest.fixture
def specs():
    return expand(parse_suite(__import__("yaml").safe_load(textwrap.dedent(SUITE))))


@pytest.mark.parametrize("kind", ["resume", "fork"])
def test_a_resume_or_fork_file_with_a_pickled_payload_is_set_aside_and_the_run_restarts(
        tmp_path, marker, specs, capsys, kind):
    plain, cam_run = specs
    assert cam_run.fork_from == plain.run_id
    path = (resume.resume_path(tmp_path, cam_run.run_id) if kind == "resume"
            else resume.fork_path(tmp_path, plain.run_id, 1))
    torch.save({"format": resume.RESUME_FORMAT, "trainer": {}, "epoch": 1, "curves": {},
                "occ": [], "payload": Payload(marker)}, path)
    assert resume.start_state(cam_run, tmp_path) == ("scratch", None)
    err = capsys.readouterr().err
    assert not marker.exists()
    assert err.count("\n") == 1 and err.startswith(f"warning: {path}: not loaded: ")
    assert "run as code" in err and "exec" in err
    assert err.endswith(f"; moved to {path.name}.corrupt; the run restarts from scratch\n")


def test_a_resume_checkpoint_with_rng_and_optimizer_state_round_trips_with_weights_only(
        tmp_path, specs):
    spec = specs[0]
    rd = load_run_data(spec, "cpu")
    trainer = PackTrainer([spec], rd, "cpu")
    trainer.train_epoch(0)  # momentum buffers, a scheduler step, advanced RNG states
    state = trainer.run_state(0)
    fp = {"config": "x"}
    path = resume.resume_path(tmp_path, spec.run_id)
    resume.save(path, trainer, 0, resume.Progress(epoch=1, extra={"wandb_id": "abc"}), fp)
    loaded = resume.load(path, fp)  # weights_only=True inside
    assert loaded is not None and loaded["epoch"] == 1 and loaded["extra"] == {"wandb_id": "abc"}
    other = PackTrainer([spec], rd, "cpu")
    other.load_run_states([loaded["trainer"]])
    assert torch.equal(other.lanes[0].generator.get_state(), state["gen"])
    assert other.sched.state_dict() == trainer.sched.state_dict()
    assert all(torch.equal(a, b) for a, b in zip(other.model.state_dict().values(),
                                                  trainer.model.state_dict().values(),
                                                  strict=True))


@pytest.mark.parametrize("value, named", [
    (np.random.RandomState(0), r"\['rng'\]: a numpy.random.*RandomState"),
    ([np.float64(0.5)], r"\['rng'\]\[0\]: a numpy.float64"),
    (__import__("collections").defaultdict(list), r"\['rng'\]: a collections.defaultdict"),
])
def test_a_checkpoint_state_that_weights_only_would_refuse_is_not_written(tmp_path, value,
                                                                          named):
    with pytest.raises(TypeError, match=r"resume state" + named + ".* cannot be saved"):
        checkpoint.save_resume(tmp_path / "r.resume.pt", {"epoch": 1, "rng": value})
    assert list(tmp_path.iterdir()) == []
    for ok in (torch.nn.Parameter(torch.ones(1)), torch.float32, torch.device("cpu"), {1, 2},
               __import__("collections").Counter({3: 1}), b"x", None):
        path = checkpoint.save_resume(tmp_path / "ok.resume.pt", {"epoch": 1, "v": ok})
        assert checkpoint.load_resume(path)["v"] == ok or isinstance(ok, torch.Tensor)


def test_a_data_cache_file_with_a_pickled_payload_is_deleted_and_rebuilt(tmp_path, marker,
                                                                         capsys):
    path = tmp_path / "cache" / "cifar10-train-0123456789abcdef.pt"
    path.parent.mkdir()
    torch.save({"images": torch.zeros(1, 3, 4, 4, dtype=torch.uint8), "payload": Payload(marker)},
               path)
    assert cache.read_cache(path, "cifar10") is None
    err = capsys.readouterr().err
    assert not marker.exists() and not path.exists()
    assert err.count("\n") == 1 and "damaged data cache" in err


def cifar_members(evil_member: str | None, marker: Path) -> dict:
    rng = np.random.default_rng(0)
    members = {f"data_batch_{i}": {"batch_label": "training batch", "filenames": [b"a.png"],
                                   "data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
                                   "labels": [1, 2]} for i in range(1, 6)}
    members["test_batch"] = dict(members["data_batch_1"])
    members["batches.meta"] = {"label_names": [f"c{i}" for i in range(10)],
                               "num_cases_per_batch": 2}
    if evil_member:
        members[evil_member] = {**members[evil_member], "labels": Payload(marker)}
    return members


@pytest.mark.parametrize("layout", ["folder", "archive"])
def test_a_cifar_batch_with_a_pickled_payload_is_refused_in_one_line(tmp_path, marker, layout):
    members = cifar_members("data_batch_3", marker)
    if layout == "folder":
        source = tmp_path / "cifar-10-batches-py"
        source.mkdir()
        for name, obj in members.items():
            (source / name).write_bytes(pickle.dumps(obj, protocol=2))
    else:
        source = tmp_path / "cifar-10-python.tar.gz"
        with tarfile.open(source, "w:gz") as tar:
            for name, obj in members.items():
                blob = pickle.dumps(obj)
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(DamagedFileError) as info:
        sources.load("cifar10", "train", tmp_path, cache=False)
    msg = str(info.value)
    assert not marker.exists()
    assert "\n" not in msg and msg.startswith(f"{source}: damaged cifar10 ")
    assert re.search(r"data_batch_3 cannot be unpickled \(UnpicklingError: refused global "
                     r"(__builtin__|builtins)\.exec: a CIFAR batch holds only", msg), msg


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_cifar_batch_of_dicts_lists_strings_bytes_and_arrays_loads(tmp_path, protocol):
    source = tmp_path / "cifar-10-batches-py"
    source.mkdir()
    members = cifar_members(None, Path("unused"))
    for name, obj in members.items():
        (source / name).write_bytes(pickle.dumps(obj, protocol=protocol))
    train = sources.load("cifar10", "train", tmp_path, cache=False)
    assert train.images.shape == (10, 3, 32, 32) and train.labels.tolist() == [1, 2] * 5
    first = members["data_batch_1"]["data"][0]
    assert torch.equal(train.images[0].flatten(), torch.from_numpy(first))


def test_the_published_cifar_pickle_format_of_numpy_1_loads():
    """The archives were written by Python 2 with NumPy 1: `numpy.core.multiarray._reconstruct`,
    the array's bytes as a latin-1 str (protocol 2). This is such a pickle, byte for byte."""
    blob = (b"\x80\x02}q\x00U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\n"
            b"ndarray\nq\x03K\x00\x85q\x04U\x01bq\x05\x87q\x06Rq\x07(K\x01K\x02\x85q\x08cnumpy\n"
            b"dtype\nq\tU\x02u1q\nK\x00K\x01\x87q\x0bRq\x0c(K\x03U\x01|q\rNNNJ\xff\xff\xff\xffJ"
            b"\xff\xff\xff\xffK\x00tq\x0eb\x89U\x02\x07\tq\x0ftq\x10bs.")
    out = sources.CifarUnpickler.loads(blob)
    assert out["data"].dtype == np.uint8 and out["data"].tolist() == [7, 9]


def test_every_torch_load_in_the_project_is_weights_only():
    root = Path(__file__).resolve().parents[1]
    calls = [(p, line) for p in (root / "benchmark").rglob("*.py")
             for line in p.read_text().splitlines() if "torch.load(" in line]
    assert calls and all("weights_only=True" in line for _, line in calls), calls
    plain = [p for p in (root / "benchmark").rglob("*.py")
             if "pickle.loads(" in p.read_text() or "pickle.load(" in p.read_text()]
    assert plain == [], plain


def test_a_model_checkpoint_written_by_erasebench_loads_with_weights_only(tmp_path):
    model = models.create("resnet20")
    path = checkpoint.save(tmp_path / "m.final.pt", model, model_name="resnet20", num_classes=10,
                           mean=[0.5] * 3, std=[0.25] * 3, extra={"epoch": 2, "run_id": "x"})
    torch.load(path, weights_only=True)
    loaded, ckpt = checkpoint.load(path)
    assert ckpt["epoch"] == 2 and not loaded.training


def test_the_help_of_every_command_that_reads_suites_says_imports_run_code_even_on_dry_run(
        capsys):
    import importlib
    import inspect

    from benchmark.cli import COMMANDS

    def reads_suites(module: str) -> bool:  # load_suite itself, or run's build_suite over it
        source = inspect.getsource(importlib.import_module(module))
        return "load_suite(" in source or "build_suite(" in source

    readers = [name for name, (module, _) in COMMANDS.items() if reads_suites(module)]
    assert "run" in readers
    for name in readers:
        with pytest.raises(SystemExit) as info:
            cli([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert info.value.code == 0
        assert "a suite with `imports:` (and each --import) runs that Python code" in text
        assert "even with --dry-run" in text


def test_a_suite_with_imports_runs_that_code_when_it_is_read_as_the_help_says(tmp_path):
    from benchmark.suites.config import load_suite

    (tmp_path / "mine.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w')\n")
    (tmp_path / "s.yaml").write_text("name: s\nimports: [mine.py]\n")
    load_suite(str(tmp_path / "s.yaml"))
    assert (tmp_path / "ran").exists()


def test_a_crafted_resume_checkpoint_in_a_results_folder_never_runs_and_the_run_trains(
        tmp_path, marker, capsys):
    from benchmark.runner.main import main

    suite = tmp_path / "safe.yaml"
    suite.write_text(textwrap.dedent(SUITE).replace("epochs: 2", "epochs: 1")
                     .replace("milestones: [1]", "milestones: [1]")
                     .replace("methods: [plain, {name: cam_erasing, warmup_epochs: 1}]",
                              "methods: [plain]"))
    out = tmp_path / "out"
    evil = out / "results" / "safe" / "checkpoints" / "resnet20__plain__s0.resume.pt"
    evil.parent.mkdir(parents=True)
    torch.save({"format": resume.RESUME_FORMAT, "trainer": {}, "epoch": 1, "curves": {},
                "occ": [], "payload": Payload(marker)}, evil)
    assert main(["--suite", str(suite), "--out", str(out), "--no-wandb", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert not marker.exists()
    assert f"warning: {evil}: not loaded: this resume checkpoint holds a pickled Python " in err
    assert "; the run restarts from scratch" in err
    assert (out / "results" / "safe" / "resnet20__plain__s0.json").is_file()


def test_a_resume_checkpoint_of_an_older_erasebench_with_numpy_state_restarts_in_one_line(
        tmp_path, specs, capsys):
    spec = specs[0]
    path = resume.resume_path(tmp_path, spec.run_id)
    torch.save({"format": resume.RESUME_FORMAT, "trainer": {}, "epoch": 1, "curves": {},
                "occ": [], "np_rng": np.random.RandomState(0).get_state()}, path)
    assert resume.start_state(spec, tmp_path) == ("scratch", None)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {path}: not loaded: ")
    assert err.endswith("; the run restarts from scratch\n")

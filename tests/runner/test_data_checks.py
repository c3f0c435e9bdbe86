"""A result always belongs to its config and its data: fingerprints are checked whenever a worker
finds a record or a resume checkpoint, an eraser's source is part of them, and every bad dataset
or method is one line before any training (also in a dry run)."""

import io
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import data, results
from benchmark.runner import main as runner_main
from benchmark.runner.main import main
from benchmark.suites import fingerprint
from benchmark.suites.config import parse_suite
from benchmark.suites.expand import expand
from plugins import registry

TINY = """
name: tiny
data: {name: synthetic, options: {n_train: 64, n_test: 32, seed: 0, size: 16}}
train: {epochs: 2, batch_size: 32, milestones: [1], checkpoint_every: 1, eval_batch_size: 64}
models: [resnet20]
seeds: [0]
methods: [plain]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def run(*args) -> int:
    return main([*map(str, args), "--no-wandb", "--no-progress"])


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def records(out, suite="tiny"):
    return {r["run_id"]: r for r in results.load_records(Path(out) / "results" / suite)}


# --- A, row 1: the fingerprint holds every time a worker finds a record or a checkpoint ------


def test_a_worker_that_finds_a_run_done_by_another_config_stops(tmp_path, capsys, monkeypatch):
    p, out = write(tmp_path / "tiny.yaml", TINY), tmp_path / "out"
    assert run("--suite", p, "--out", out, "--epochs", "3") == 0
    capsys.readouterr()
    with monkeypatch.context() as m:  # the record appears after this worker's start check
        m.setattr(runner_main, "check_fingerprints", lambda *a, **k: None)
        assert run("--suite", p, "--out", out, "--epochs", "2") == 2
        during = one_line(capsys)
    assert run("--suite", p, "--out", out, "--epochs", "2") == 2  # a later rerun
    assert one_line(capsys) == during
    assert during.startswith(f"error: {out / 'results' / 'tiny'}: 1 of its records were made by "
                             "another config (train.epochs: 3 -> 2")
    assert records(out)["resnet20__plain__s0"]["epochs"] == 3  # nothing overwritten
    assert not list((out / "results" / "tiny" / "claims").glob("*.claim"))


def test_a_worker_that_finds_a_run_being_resumed_by_another_config_stops(tmp_path, capsys,
                                                                         monkeypatch):
    from benchmark.training.resume import resume_path

    p, out = write(tmp_path / "tiny.yaml", TINY), tmp_path / "out"
    (spec,) = expand(parse_suite({"name": "tiny", "data": {"name": "synthetic", "options": {
        "n_train": 64, "n_test": 32, "seed": 0, "size": 16}}, "train": {
        "epochs": 3, "batch_size": 32, "milestones": [1], "checkpoint_every": 1,
        "eval_batch_size": 64}}))
    ckpt = resume_path(out / "results" / "tiny" / "checkpoints", spec.run_id)
    ckpt.parent.mkdir(parents=True)
    torch.save({"format": 2, "fingerprint": fingerprint.of_run(spec, "no"), "trainer": {},
                "epoch": 1, "curves": {}, "occ": []}, ckpt)
    with monkeypatch.context() as m:  # the other worker's checkpoint appears after our check
        m.setattr(runner_main, "check_fingerprints", lambda *a, **k: None)
        assert run("--suite", p, "--out", out) == 2
        during = one_line(capsys)
    assert run("--suite", p, "--out", out) == 2
    assert one_line(capsys) == during and "train.epochs: 3 -> 2" in during
    assert ckpt.is_file() and not records(out)  # its trained epochs are kept, nothing trained


# --- A, row 2: the eraser's source is part of the fingerprint ---------------------------------

ERASER = """
import plugins

@plugins.register("top_rows")
class TopRows(plugins.Eraser):
    def forward(self, images, *, cam=None, generator=None):
        rows = images.new_zeros(images.shape[-2], dtype=bool)
        rows[:ROWS] = True
        return rows[None, None, :, None].expand(images.shape[0], 1, -1, images.shape[-1])
"""


def test_an_edited_eraser_file_is_a_changed_config(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    original = dict(registry._REGISTRY)
    write(tmp_path / "my_erasers.py", ERASER.replace("ROWS", "2"))
    p = write(tmp_path / "tiny.yaml", TINY.replace("methods: [plain]", "methods: [top_rows]")
              .replace("epochs: 2,", "epochs: 1,") + "imports: [my_erasers.py]\n")
    out = tmp_path / "out"
    assert run("--suite", p, "--out", out) == 0
    first = records(out)["resnet20__top_rows__s0"]
    assert first["fingerprint"]["eraser_source"] == {"sha256": first["eraser_source"]["sha256"]}
    write(tmp_path / "my_erasers.py", ERASER.replace("ROWS", "3"))
    capsys.readouterr()
    monkeypatch.setattr(registry, "_REGISTRY", dict(original))  # a new process, in effect
    assert run("--suite", p, "--out", out) == 2
    line = one_line(capsys)
    assert "1 of its records were made by another config (eraser_source.sha256: " in line
    assert run("--suite", p, "--out", out, "--rerun-changed") == 0
    again = records(out)["resnet20__top_rows__s0"]
    assert again["eraser_source"]["sha256"] != first["eraser_source"]["sha256"]


def test_built_in_erasers_add_no_source_so_records_written_before_still_match():
    (spec,) = [r for r in expand(parse_suite({"name": "t", "methods": ["cutout"]}))]
    fp = fingerprint.of_run(spec, "no")
    assert "eraser_source" not in fp  # erasebench's own code, like the training loop
    old = {"fingerprint": fp, "eraser": "cutout",
           "eraser_source": {"module": "plugins.cutout", "package": "erasebench", "version": "0"}}
    assert fingerprint.diff_record(old, spec, "no") == []
    # a record of a user's eraser written before the fingerprint held the source still compares
    user = {"fingerprint": fp, "eraser": "cutout", "eraser_source": {"file": "x.py",
                                                                       "sha256": "ab" * 8}}
    assert [k for k, _, _ in fingerprint.diff_record(user, spec, "no")] == ["eraser_source"]


# --- A, row 3: an eraser that would never run ------------------------------------------------


@pytest.mark.parametrize("method", ["{name: cam_erasing, warmup_epochs: 2}",
                                    "{name: random_erasing, warmup_epochs: 5}"])
def test_a_warm_up_as_long_as_the_run_is_one_line_before_training(method, tmp_path, capsys):
    p = write(tmp_path / "tiny.yaml", TINY.replace("methods: [plain]",
                                                   f"methods: [plain, {method}]"))
    for extra in ([], ["--dry-run"]):
        assert run("--suite", p, "--out", tmp_path / "out", *extra) == 2
        line = one_line(capsys)
        assert line.startswith(f"error: {p}: key 'methods[1].warmup_epochs' is ")
        assert "but train.epochs is 2: its eraser would never run; allowed: 0..1" in line
    assert not (tmp_path / "out" / "results").exists()


def test_a_warm_up_made_too_long_by_epochs_says_the_option_rescaled_it(tmp_path, capsys):
    p = write(tmp_path / "wu.yaml", TINY.replace("epochs: 2", "epochs: 4").replace(
        "methods: [plain]", "methods: [plain, {name: cam_erasing, warmup_epochs: 3}]"))
    assert run("--suite", p, "--out", tmp_path / "out", "--dry-run", "--epochs", "1") == 2
    line = one_line(capsys)
    assert line.startswith(f"error: {p}: key 'methods[1].warmup_epochs' is 1 for cam_erasing")
    assert line.endswith("but train.epochs is 1: its eraser would never run; allowed: 0..0 "
                         "(values rescaled by --epochs 1 in proportion to the file's "
                         "train.epochs; give a larger --epochs)")


# --- A, rows 4 and 8; E: data ------------------------------------------------------------------


def _png(pixels) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _parquet(path: Path, labels, size=8, seed=0, label_name="label"):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    imgs = [{"bytes": _png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)), "path": None}
            for _ in labels]
    pq.write_table(pa.table({"img": imgs, label_name: list(labels)}), path)
    return str(path)


def _parquet_suite(tmp_path, train_labels, test_labels, **kw) -> Path:
    files = {"train": _parquet(tmp_path / "train.parquet", train_labels, **kw),
             "test": _parquet(tmp_path / "test.parquet", test_labels, seed=1, **kw)}
    return write(tmp_path / "pq.yaml", f"""
        name: pq
        data: {{name: "hf:parquet", root: {tmp_path / "d"},
                options: {{data_files: {files}, cache_dir: {tmp_path / "hf"}}}}}
        train: {{epochs: 1, batch_size: 4, milestones: [1]}}
        models: [resnet20]
        seeds: [0]
        methods: [plain]
        """)


@pytest.mark.parametrize("case", ["all_one_class", "negative_test_label", "test_label_too_big",
                                  "string_labels", "one_stray_huge_label"])
def test_labels_a_classifier_cannot_learn_are_refused_naming_the_split_and_column(
        case, tmp_path, capsys):
    train, test = {"all_one_class": ([0] * 12, [0, 1, 2]),
                   "negative_test_label": ([0, 1, 2] * 4, [0, -1, 2]),
                   "test_label_too_big": ([0, 1, 2] * 4, [0, 3, 2]),
                   "string_labels": (["cat", "dog"] * 6, ["cat", "dog"]),
                   "one_stray_huge_label": ([0, 1, 2] * 4 + [1000000], [0, 1, 2])}[case]
    expect = {"all_one_class": "split 'train', column 'label': all 12 labels are 0; a classifier "
                               "needs at least 2 classes",
              "negative_test_label": "split 'test', column 'label': label -1 (1 of 3 images) is "
                                     "outside 0..2, the 3 classes of the training split",
              "test_label_too_big": "split 'test', column 'label': label 3 (1 of 3 images) is "
                                    "outside 0..2",
              "string_labels": "split 'train', column 'label': labels are strings (e.g. 'cat'), "
                               "not integer class ids",
              "one_stray_huge_label": "split 'train', column 'label': labels are 4 distinct ids "
                                      "spread over 0..1000000 (largest 1000000); 999997 of the "
                                      "1000001 classes have no training image (e.g. 3)"}[case]
    p = _parquet_suite(tmp_path, train, test)
    for extra in ([], ["--dry-run"]):
        assert run("--suite", p, "--out", tmp_path / "out", *extra) == 2
        line = one_line(capsys)
        assert line.startswith(f"error: {p}: key 'data': dataset 'hf:parquet': ") and expect in line
    assert not (tmp_path / "out" / "results").exists()


def test_a_missing_label_column_is_one_line_naming_the_split_and_the_columns(tmp_path, capsys):
    p = _parquet_suite(tmp_path, [0, 1] * 6, [0, 1], label_name="target")
    assert run("--suite", p, "--out", tmp_path / "out") == 2
    assert one_line(capsys).endswith(
        "dataset 'hf:parquet': split 'train': no label column (tried label, labels, fine_label, "
        "coarse_label); available columns: img, target; name it with label_column=")


def _imagefolder(root: Path, n_train=60, n_test=9, size=8, odd=None) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            folder = root / split / f"class{i % 3}"
            folder.mkdir(parents=True, exist_ok=True)
            s = odd if (odd and i == n - 1) else size
            (folder / f"{i}.png").write_bytes(_png(rng.integers(0, 256, (s, s, 3), np.uint8)))
    return root


def _imagefolder_suite(tmp_path, imgs: Path, batch_size=4, data_dir_key=True) -> Path:
    option = f"data_dir: {imgs}, " if data_dir_key else ""
    return write(tmp_path / "imf.yaml", f"""
        name: imf
        data: {{name: "hf:imagefolder", root: {tmp_path / "d"},
                options: {{{option}cache_dir: {tmp_path / "hf"}}}}}
        train: {{epochs: 1, batch_size: {batch_size}, milestones: [1]}}
        models: [resnet20]
        seeds: [0]
        methods: [plain]
        """)


def test_adding_images_to_an_imagefolder_invalidates_its_cache_and_changes_its_identity(
        tmp_path):
    imgs = _imagefolder(tmp_path / "imgs")
    kw = dict(data_dir=str(imgs), cache_dir=str(tmp_path / "hf"))
    train, _ = data.load_checked("hf:imagefolder", tmp_path / "d", **kw)
    before = data.identity("hf:imagefolder", tmp_path / "d", **kw)
    assert len(train) == 60 and before["train"] == {"images": 60, "sha256": data.digest(train)}
    rng = np.random.default_rng(5)
    for i in (60, 61):
        (imgs / "train" / "class0" / f"{i}.png").write_bytes(
            _png(rng.integers(0, 256, (8, 8, 3), np.uint8)))
    train, _ = data.load_checked("hf:imagefolder", tmp_path / "d", **kw)
    after = data.identity("hf:imagefolder", tmp_path / "d", **kw)
    assert len(train) == 62 and after["train"]["images"] == 62
    assert after["train"]["sha256"] != before["train"]["sha256"]
    assert after["test"] == before["test"]


def test_a_record_stores_the_identity_of_the_data_it_trained_on(tmp_path, capsys):
    p, out = write(tmp_path / "tiny.yaml", TINY.replace("epochs: 2,", "epochs: 1,")), \
        tmp_path / "out"
    assert run("--suite", p, "--out", out) == 0
    rec = records(out)["resnet20__plain__s0"]
    opts = {"n_train": 64, "n_test": 32, "seed": 0, "size": 16}
    assert rec["data_identity"] == data.identity("synthetic", None, **opts)
    assert rec["data_identity"]["train"]["images"] == 64
    # a record trained on other data (same config) is another config's record
    rec["data_identity"]["train"]["sha256"] = "0" * 16
    results.write_record(out / "results" / "tiny", rec)
    capsys.readouterr()
    assert run("--suite", p, "--out", out) == 2
    assert "(data_identity.train.sha256: '0000000000000000' -> " in one_line(capsys)


def test_images_of_mixed_sizes_are_one_line_naming_the_split_and_column(tmp_path, capsys):
    imgs = _imagefolder(tmp_path / "imgs", n_train=9, odd=12)
    p = _imagefolder_suite(tmp_path, imgs)
    assert run("--suite", p, "--out", tmp_path / "out", "--dry-run") == 2
    line = one_line(capsys)
    assert "dataset 'hf:imagefolder': split 'train', column 'image': images differ in size" in line


def test_a_batch_larger_than_the_training_set_is_one_line_in_a_dry_run_too(tmp_path, capsys):
    p = _imagefolder_suite(tmp_path, _imagefolder(tmp_path / "imgs"), batch_size=128)
    for extra in (["--dry-run"], []):
        assert run("--suite", p, "--out", tmp_path / "out", *extra) == 2
        assert one_line(capsys) == (
            f"error: {p}: key 'train.batch_size' is 128, but the training split of "
            "hf:imagefolder has 60 images; allowed: 1..60")


def test_data_dir_for_an_hf_folder_dataset_is_refused_without_scanning_or_writing_there(
        tmp_path, capsys, monkeypatch):
    imgs = _imagefolder(tmp_path / "imgs", n_train=6, n_test=3)
    before = sorted(imgs.rglob("*"))
    monkeypatch.chdir(tmp_path)
    p = _imagefolder_suite(tmp_path, imgs, data_dir_key=False)

    def no_read(*a, **k):
        raise AssertionError("Hugging Face was asked to read a folder")

    import datasets
    monkeypatch.setattr(datasets, "load_dataset", no_read)
    assert run("--suite", p, "--out", tmp_path / "out", "--data-root", "imgs") == 2
    assert one_line(capsys) == (
        f"error: {p}: key 'data': dataset 'hf:imagefolder': Hugging Face's imagefolder builder "
        "needs the option data_dir= (its folder) or data_files=; without them it would read the "
        "working directory; --data-root (data.root) imgs is where erasebench keeps its "
        "processed cache, not the images: name them with --data-option data_dir=imgs")
    # both: the cache would land inside the image folder
    assert run("--suite", p, "--out", tmp_path / "out", "--data-root", "imgs",
               "--data-option", "data_dir=imgs") == 2
    assert "erasebench's processed cache" in one_line(capsys)
    assert sorted(imgs.rglob("*")) == before


def test_an_unreachable_dataset_id_is_one_line_and_never_a_result(tmp_path, capsys, monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'nobody/nothing' on the Hub (LocalEntryNotFound"
                              "Error)\nmore text")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    p = write(tmp_path / "hub.yaml", TINY.replace("name: synthetic, options: {n_train: 64, "
                                                  "n_test: 32, seed: 0, size: 16}",
                                                  f"name: 'hf:nobody/nothing', root: "
                                                  f"{tmp_path / 'd'}"))
    for extra in ([], ["--dry-run"]):
        assert run("--suite", p, "--out", tmp_path / "out", *extra) == 2
        assert one_line(capsys) == (
            f"error: {p}: key 'data': dataset 'hf:nobody/nothing': Hugging Face could not load "
            "split 'train' (ConnectionError: Couldn't reach 'nobody/nothing' on the Hub "
            "(LocalEntryNotFoundError) more text)")
    assert not (tmp_path / "out" / "results").exists()


def test_download_without_network_is_one_line_exit_2_and_never_a_result(tmp_path, capsys,
                                                                       monkeypatch):
    import urllib.error

    from torchvision.datasets import utils

    def no_network(url, root, filename=None, md5=None, **kw):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(utils, "download_url", no_network)
    p = write(tmp_path / "tiny.yaml", TINY)
    assert run("--suite", p, "--out", tmp_path / "out", "--data", "cifar10", "--data-root",
               tmp_path / "d", "--download") == 2
    line = one_line(capsys)
    assert line.startswith(f"error: {p}: key 'data': cifar10: downloading https://")
    assert ("failed (URLError: <urlopen error [Errno -3] Temporary failure in name resolution>); "
            "without the network, place cifar-10-python.tar.gz") in line
    assert line.endswith(f"in {tmp_path / 'd'}/ by hand")
    assert not (tmp_path / "out" / "results").exists()


def test_a_dry_run_of_data_not_downloaded_yet_plans_with_a_one_line_warning(tmp_path, capsys,
                                                                           monkeypatch):
    from benchmark.tools import cost

    def quick(packs, device, **kw):  # the estimate itself is tested elsewhere
        return {r.run_id: {"seconds": 1.0, "images": 100_000} for p in packs for r in p.runs}

    monkeypatch.setattr(cost, "estimate", quick)
    p = write(tmp_path / "tiny.yaml", TINY)
    for extra in ([], ["--download"]):  # a dry run fetches nothing
        assert run("--suite", p, "--out", tmp_path / "out", "--data", "cifar10", "--data-root",
                   tmp_path / "d", "--dry-run", *extra) == 0
        captured = capsys.readouterr()
        err = [ln for ln in captured.err.strip().splitlines()  # less the calibration's progress
               if not ln.startswith(("estimating ", "timing "))]
        assert len(err) == 1 and err[0].startswith(f"warning: {p}: key 'data': cifar10: not "
                                                   "found in ")
        assert err[0].endswith("(planned with cifar10's known sizes; the run itself needs it)")
        assert "resnet20__plain__s0" in captured.out
    assert not (tmp_path / "d").exists() and not (tmp_path / "out").exists()


def test_the_identity_of_a_dataset_is_its_arrays_not_where_it_lives():
    a = data.load("synthetic", "train", n_train=16, n_test=8, size=16)
    b = data.load("synthetic", "train", n_train=16, n_test=8, size=16, seed=1)
    assert data.digest(a) == data.digest(data.load("synthetic", "train", n_train=16, n_test=8,
                                                   size=16))
    assert data.digest(a) != data.digest(b) and len(data.digest(a)) == 16

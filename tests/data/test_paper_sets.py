"""fashion_mnist and svhn, the datasets of the Random Erasing and Cutout papers, read from tiny
files in their published formats written by the tests (no network, nothing outside tmp_path)."""

import gzip
import struct
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import data, models
from benchmark.data import commands
from benchmark.fileio import DamagedFileError
from benchmark.runner.main import main

FASHION = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
           "t10k-labels-idx1-ubyte")


def _idx(array: np.ndarray) -> bytes:
    """LeCun's idx-ubyte format: 0, 0, 0x08 (uint8), the number of dimensions, big-endian sizes."""
    return (bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.astype(np.uint8).tobytes())


def _fashion_arrays(n, seed):
    g = np.random.default_rng(seed)
    return g.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10


def write_fashion(root: Path, n_train=40, n_test=20, gz=True) -> dict:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {"train": _fashion_arrays(n_train, 0), "test": _fashion_arrays(n_test, 1)}
    blobs = [_idx(arrays["train"][0]), _idx(arrays["train"][1]), _idx(arrays["test"][0]),
             _idx(arrays["test"][1])]
    for name, blob in zip(FASHION, blobs, strict=True):
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (raw / name).write_bytes(blob)
    return arrays


def write_svhn(root: Path, n_train=40, n_test=20) -> dict:
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, seed in (("train", n_train, 2), ("test", n_test, 3)):
        g = np.random.default_rng(seed)
        x = g.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # SVHN's (H, W, C, N)
        y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10, 10 = the digit 0
        savemat(str(root / f"{split}_32x32.mat"), {"X": x, "y": y})
        out[split] = (x, y)
    return out


def test_fashion_mnist_gz_files_load_as_grey_28x28_images_with_their_class_names(tmp_path):
    arrays = write_fashion(tmp_path)
    train = data.load("fashion_mnist", "train", tmp_path)
    test = data.load("fashion_mnist", "test", tmp_path)
    assert train.images.shape == (40, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (20, 1, 28, 28)
    assert torch.equal(train.images[:, 0], torch.from_numpy(arrays["train"][0]))
    assert train.labels.tolist() == [i % 10 for i in range(40)]
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert len(train.mean) == len(train.std) == 1 and train.boxes is None
    assert train.mean[0] == pytest.approx(arrays["train"][0].mean() / 255)


def test_fashion_mnist_also_reads_the_extracted_files_torchvision_writes(tmp_path):
    arrays = write_fashion(tmp_path, gz=False)
    test = data.load("fashion_mnist", "test", tmp_path, cache=False)
    assert torch.equal(test.images[:, 0], torch.from_numpy(arrays["test"][0]))


def test_svhn_mat_files_load_channel_first_with_label_10_read_as_the_digit_0(tmp_path):
    arrays = write_svhn(tmp_path)
    train = data.load("svhn", "train", tmp_path)
    x, y = arrays["train"]
    assert train.images.shape == (40, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.equal(train.images[5], torch.from_numpy(x[..., 5]).permute(2, 0, 1))
    assert train.labels.tolist() == [(int(v) % 10) for v in y[:, 0]]
    assert train.labels[9] == 0 and train.classes == [str(d) for d in range(10)]
    assert len(data.load("svhn", "test", tmp_path)) == 20


@pytest.mark.parametrize("name, where, files, train", [
    ("fashion_mnist", "FashionMNIST/raw", "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
     "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (or extracted, without .gz)",
     "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz"),
    ("svhn", "", "train_32x32.mat, test_32x32.mat", "train_32x32.mat")])
def test_missing_files_are_one_line_naming_the_folder_the_files_and_the_download_flag(
        tmp_path, name, where, files, train):
    folder = tmp_path / where if where else tmp_path
    with pytest.raises(FileNotFoundError) as e:
        data.check(name, tmp_path)
    fetch = (f"`erasebench data download {name} --data-root {tmp_path}` (or `erasebench run ... "
             "--download`; download=True in Python)")  # the real command: data check has none
    assert str(e.value) == (f"{name}: not found in {folder}/; put the published files {files} "
                            f"there, or fetch them with {fetch}")
    with pytest.raises(FileNotFoundError) as e:
        data.load(name, "train", tmp_path)
    it = "it" if "," not in train else "them"
    assert str(e.value) == (f"{name}: {train} not found in {folder}/; put {it} there (the "
                            f"published files: {files}), or fetch {it} with {fetch}")
    assert not any(tmp_path.rglob("*.pt"))  # nothing cached, nothing written


def test_a_missing_file_of_one_split_is_named_alone(tmp_path):
    write_fashion(tmp_path)
    (tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert len(data.load("fashion_mnist", "train", tmp_path)) == 40
    with pytest.raises(FileNotFoundError, match=r"^fashion_mnist: t10k-labels-idx1-ubyte.gz not "
                                                "found in .*; put it there "):
        data.load("fashion_mnist", "test", tmp_path)


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.write_bytes(b"not gzip"), "damaged or truncated gzip file"),
    (lambda p: p.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(8))),
     "not an idx3-ubyte file (starts 00000801, expected 00000803)"),
    (lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-5])),
     "5 bytes fewer than the header's sizes (40, 28, 28) (truncated)"),
    (lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes()) + bytes(7))),
     "7 bytes more than the header's sizes (40, 28, 28) (too long)"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(gzip.compress(b"")), "empty file (inside the gzip)"),
    (lambda p: (p.unlink(), p.mkdir()), "is a folder, expected a file"),
    (lambda p: p.write_bytes(gzip.compress(_idx(np.zeros((40, 32, 32), np.uint8)))),
     "images of 32x32 pixels in its header; Fashion-MNIST's are 28x28")])
def test_a_damaged_idx_file_is_one_error_line_naming_it(tmp_path, damage, reason):
    write_fashion(tmp_path)
    path = tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    damage(path)
    with pytest.raises(DamagedFileError) as e:
        data.load("fashion_mnist", "train", tmp_path)
    assert str(e.value).startswith(f"{path}: ") and reason in str(e.value)
    assert "\n" not in str(e.value) and e.value.path == path


def test_a_damaged_svhn_file_is_one_error_line_naming_it(tmp_path):
    write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 but nothing else")
    with pytest.raises(DamagedFileError, match=rf"^{tmp_path / 'test_32x32.mat'}: damaged svhn "
                                               r"file \("):
        data.load("svhn", "test", tmp_path)


@pytest.fixture
def fake_download(monkeypatch):
    """torchvision's downloader, replaced: it writes the tiny files (no network)."""
    from torchvision.datasets import utils

    calls = []

    def download_url(url, root, filename=None, md5=None, **kw):
        calls.append((url, filename, md5))
        tmp = Path(root) / "_made"
        (write_fashion if filename.endswith(".gz") else write_svhn)(tmp)
        made = next(p for p in tmp.rglob(filename))
        Path(root).mkdir(parents=True, exist_ok=True)
        made.rename(Path(root) / filename)

    monkeypatch.setattr(utils, "download_url", download_url)
    return calls


def test_download_fetches_only_the_missing_files_with_torchvisions_urls_and_md5(tmp_path,
                                                                               fake_download):
    from torchvision.datasets import SVHN, FashionMNIST

    write_fashion(tmp_path)
    (tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz").unlink()
    assert len(data.load("fashion_mnist", "test", tmp_path, download=True)) == 20
    md5 = dict(FashionMNIST.resources)["t10k-images-idx3-ubyte.gz"]
    assert fake_download == [(FashionMNIST.mirrors[0] + "t10k-images-idx3-ubyte.gz",
                              "t10k-images-idx3-ubyte.gz", md5)]
    fake_download.clear()
    assert len(data.load("svhn", "test", tmp_path, download=True)) == 20
    assert fake_download == [tuple(SVHN.split_list["test"])]


def test_download_moves_a_damaged_file_aside_and_fetches_it_again(tmp_path, capsys,
                                                                  fake_download):
    write_svhn(tmp_path)
    (tmp_path / "train_32x32.mat").write_bytes(b"broken")
    assert len(data.load("svhn", "train", tmp_path, download=True)) == 40
    assert (tmp_path / "train_32x32.mat.corrupt").read_bytes() == b"broken"
    assert len(fake_download) == 1
    assert capsys.readouterr().err.endswith("moved to train_32x32.mat.corrupt; downloading it "
                                            "again\n")


def test_the_data_commands_check_and_download_the_paper_sets(tmp_path, capsys, fake_download):
    assert commands.main(["download", "svhn", "--data-root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "svhn train: 40 images\nsvhn test: 20 images\n"
    assert commands.main(["check", "svhn", "--data-root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == (f"svhn: found and read in {tmp_path}/: 40 train and 20 "
                                       "test images (3, 32, 32), 10 classes\n")
    assert commands.main(["download", "fashion_mnist", "--data-root", str(tmp_path)]) == 0
    assert len(fake_download) == 2 + 4


def test_known_sizes_and_shapes_need_no_files():
    assert data.known_sizes("fashion_mnist") == (60_000, 10_000, 10, False)
    assert data.known_sizes("svhn") == (73_257, 26_032, 10, False)
    assert data.known_shape("fashion_mnist") == (1, 28)
    assert data.known_shape("svhn") == data.known_shape("cifar10") == (3, 32)
    assert "fashion_mnist" in data.FILE_DATASETS and "svhn" in data.FILE_DATASETS


def test_unknown_options_of_a_paper_set_are_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"^dataset 'svhn': unknown options \['extra'\]; "
                                         "allowed: cache$"):
        data.load("svhn", "train", tmp_path, extra=True)


def test_a_cifar_resnet_takes_grey_images_with_one_input_channel():
    model = models.create("resnet20", in_chans=1)
    assert model.conv1.in_channels == 1 and models.in_channels(model) == 1
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert models.feature_map_sizes(model, 28)["layer3"] == (7, 7)


def test_a_suite_on_absent_files_stops_before_training_with_one_line_and_exit_2(tmp_path, capsys):
    suite = tmp_path / "papers.yaml"
    suite.write_text(textwrap.dedent(SUITE.format(name="svhn")))
    assert main(["--suite", str(suite), "--out", str(tmp_path / "out"), "--data-root",
                 str(tmp_path / "d"), "--no-wandb", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {suite}: key 'data': svhn: not found in {tmp_path / 'd'}/; put the "
                   "published files train_32x32.mat, test_32x32.mat there, or fetch them with "
                   f"`erasebench data download svhn --data-root {tmp_path / 'd'}` (or `erasebench "
                   "run ... --download`; download=True in Python)"]
    assert not (tmp_path / "out" / "results").exists()


def test_a_stack_of_grey_resnets_gives_each_run_its_own_logits():
    from benchmark.training import stack

    torch.manual_seed(0)
    runs = [models.create("resnet20", in_chans=1).eval() for _ in range(2)]
    stacked = stack.stack_models(runs).eval()
    x = torch.randn(3, 2, 1, 28, 28)  # (B, K, C, H, W): each run's own batch
    with torch.no_grad():
        out = stacked(x.reshape(3, 2, 28, 28))
        for k, m in enumerate(runs):
            torch.testing.assert_close(out[:, k], m(x[:, k]), rtol=1e-4, atol=1e-5)


SUITE = """
name: papers
data: {{name: {name}}}
train: {{epochs: 1, batch_size: 16, milestones: [1], eval_batch_size: 32}}
models: [resnet20]
seeds: [0]
methods:
  - plain
  - {{name: cam_erasing, mode: replace}}  # the CAM probe and the mean fill see 1 channel
"""


@pytest.mark.slow  # an end-to-end run: about 30 s a dataset on 2 shared cores
@pytest.mark.parametrize("name", ["fashion_mnist", "svhn"])
def test_a_suite_trains_one_epoch_on_the_tiny_set_and_measures_occlusion_robustness(
        tmp_path, name, capsys):
    (write_fashion if name == "fashion_mnist" else write_svhn)(tmp_path / "d", 32, 16)
    suite = tmp_path / "papers.yaml"
    suite.write_text(textwrap.dedent(SUITE.format(name=name)))
    out = tmp_path / "out"
    assert main(["--suite", str(suite), "--out", str(out), "--data-root", str(tmp_path / "d"),
                 "--no-wandb", "--no-progress"]) == 0
    from benchmark import results

    recs = results.load_records(out / "results" / "papers")
    assert len(recs) == 2 and all(r["status"] == "finished" for r in recs)
    for r in recs:
        assert r["dataset"] == name and len(r["curves"]["test_error"]) == 1
        rb = r["robustness"]
        assert "box" not in rb and len(rb["random"]) == len(rb["cam_peak"]) == 5  # no boxes
    board = (out / "leaderboards" / "papers.md").read_text()
    assert "Robustness to occlusion" in board
    from benchmark.training import checkpoint

    final = next((out / "runs").rglob("*.final.pt"), None) or next(out.rglob("*.final.pt"))
    model, ckpt = checkpoint.load(final)
    assert ckpt["in_chans"] == (1 if name == "fashion_mnist" else 3)
    assert models.in_channels(model) == ckpt["in_chans"]


def test_the_cam_figure_draws_a_grey_image_grey(tmp_path):
    from benchmark.report import cam_figure

    image = torch.rand(1, 28, 28)
    shown = cam_figure._rgb(image)
    assert shown.shape == (28, 28, 3)
    assert (shown[..., 0] == shown[..., 1]).all() and (shown[..., 1] == shown[..., 2]).all()
    model = models.create("resnet20", in_chans=1).eval()
    images = (torch.rand(4, 1, 28, 28) * 255).to(torch.uint8)
    cam_figure.cam_examples(model, images, torch.arange(4), (0.5,), (0.25,), tmp_path / "c.png",
                            n=4)
    assert (tmp_path / "c.png").stat().st_size > 0


def _svhn_with(root: Path, split: str, x=None, y=None):
    from scipy.io import savemat

    write_svhn(root)
    n = 40 if split == "train" else 20
    x = np.zeros((32, 32, 3, n), np.uint8) + 7 if x is None else x
    y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8) if y is None else y
    savemat(str(root / f"{split}_32x32.mat"), {"X": x, "y": y})
    return root / f"{split}_32x32.mat"


@pytest.mark.parametrize("x, y, reason", [
    (np.zeros((28, 28, 3, 40), np.uint8), None,
     "'X' holds 28x28 images; SVHN's are 32x32x3 ('X' of shape (32, 32, 3, N))"),
    (None, np.full((40, 1), 2.5), "'y' holds non-integer labels (e.g. 2.5); SVHN's are "
     "integers 1..10 (10 means the digit 0)"),
    (None, np.zeros((40, 1), np.uint8), "'y' holds label 0 (40 of 40); SVHN's labels are 1..10 "
     "(10 means the digit 0; 0 is not a label in the published files)"),
    (None, np.full((40, 1), 11, np.uint8), "'y' holds label 11 (40 of 40)"),
    (None, np.ones((40, 2), np.uint8), "'y' (40, 2); expected uint8 (H, W, 3, N) and N labels")])
def test_svhn_refuses_other_sides_and_labels_outside_1_to_10_naming_the_file(tmp_path, x, y,
                                                                            reason):
    path = _svhn_with(tmp_path, "train", x, y)
    with pytest.raises(DamagedFileError) as e:
        data.load("svhn", "train", tmp_path, cache=False)
    assert str(e.value).startswith(f"{path}: ") and reason in str(e.value)
    assert "\n" not in str(e.value)


def test_svhn_accepts_integer_valued_float_labels_as_matlab_writes_them(tmp_path):
    _svhn_with(tmp_path, "test", x=np.random.default_rng(0).integers(0, 256, (32, 32, 3, 20),
                                                                     dtype=np.uint8),
               y=(np.arange(20) % 10 + 1).reshape(20, 1).astype(np.float64))
    assert data.load("svhn", "test", tmp_path, cache=False).labels.tolist()[:10] == \
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]


def test_a_constant_training_channel_is_refused_before_training_not_trained_to_nan(tmp_path):
    _svhn_with(tmp_path, "train")  # every pixel 7: std 0 in every channel
    with pytest.raises(ValueError, match=rf"^dataset 'svhn': split 'train', file "
                                         rf"{tmp_path / 'train_32x32.mat'}, channel 0: every "
                                         r"pixel is 7 \(standard deviation 0\)"):
        data.load_checked("svhn", tmp_path, cache=False)


def test_train_and_test_images_of_different_sides_are_refused_for_every_dataset():
    from benchmark.data.checks import check_splits

    def ds(side):
        images = torch.randint(0, 256, (12, 3, side, side), dtype=torch.uint8)
        mean, std = data.channel_stats(images)
        return data.Dataset("x", images, torch.arange(12) % 3, ["a", "b", "c"], None, mean, std)

    with pytest.raises(ValueError, match=r"the train images are \(3, 32, 32\) \(C, H, W\) but "
                                         r"the test images \(3, 28, 28\)"):
        check_splits("hf:some/set", ds(32), ds(28))


def test_data_check_reads_the_files_and_reports_a_bad_one_in_one_line_exit_2(tmp_path, capsys):
    write_fashion(tmp_path)
    path = tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(8)))
    assert commands.main(["check", "fashion_mnist", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {path}: not an idx3-ubyte file (starts 00000801, expected 00000803); "
                   "delete it and fetch it again with `erasebench data download fashion_mnist "
                   f"--data-root {tmp_path}` (`erasebench run ... --download` replaces it itself), "
                   "or place a good copy there\n")
    (tmp_path / "train_32x32.mat").write_bytes(b"garbage")
    (tmp_path / "test_32x32.mat").write_bytes(b"garbage")
    assert commands.main(["check", "svhn", "--data-root", str(tmp_path)]) == 2
    assert "damaged svhn file" in capsys.readouterr().err


def test_data_check_says_synthetic_is_built_in(capsys):
    assert commands.main(["check", "synthetic"]) == 0
    assert capsys.readouterr().out == "synthetic: built in (generated on the fly; no files to " \
                                      "look for)\n"


@pytest.fixture
def no_network(monkeypatch):
    """torchvision's downloader, failing as it does without the network."""
    from urllib.error import URLError

    from torchvision.datasets import utils

    def download_url(url, root, filename=None, md5=None, **kw):
        Path(root).mkdir(parents=True, exist_ok=True)  # as torchvision does before fetching
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(utils, "download_url", download_url)


@pytest.mark.parametrize("name, url_part, folder, files", [
    ("fashion_mnist", "train-images-idx3-ubyte.gz", "FashionMNIST/raw",
     "place the published files train-images-idx3-ubyte.gz, "),
    ("svhn", "train_32x32.mat", "", "place the published files train_32x32.mat, test_32x32.mat"),
    ("cifar10", "cifar-10-python.tar.gz", "", "place cifar-10-python.tar.gz (from ")])
def test_a_download_without_network_is_one_line_naming_url_file_and_where_to_place_it(
        tmp_path, capsys, no_network, name, url_part, folder, files):
    root = tmp_path / "new" / "data"
    assert commands.main(["download", name, "--data-root", str(root)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and "Traceback" not in out.err
    where = root / folder if folder else root
    assert out.err.startswith(f"error: {name}: downloading http") and url_part in out.err
    assert f" to {where / url_part} failed (URLError: " in out.err
    assert f"; without the network, {files}" in out.err and f"in {where}/ by hand\n" in out.err
    assert not (tmp_path / "new").exists()  # the folders it made, empty, are removed


def test_run_download_without_network_stops_before_training_with_one_line(tmp_path, capsys,
                                                                         no_network):
    suite = tmp_path / "fm.yaml"
    suite.write_text(textwrap.dedent(SUITE.format(name="fashion_mnist")))
    rc = main(["--suite", str(suite), "--out", str(tmp_path / "out"), "--data-root",
               str(tmp_path / "d"), "--download", "--no-progress", "--no-wandb"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "fashion_mnist: downloading http" in err and "by hand" in err
    assert not (tmp_path / "d").exists()
    assert not list(tmp_path.rglob("*.json"))  # nothing recorded as a result


def test_the_cam_figure_names_a_truth_box_only_for_data_with_boxes():
    from benchmark.report.cam_figure import column_titles

    assert column_titles("label", 0.4, False, "cutout")[2] == "CAM >= 0.4 max (red)"
    assert column_titles("label", 0.4, True, "cutout")[2] == "CAM >= 0.4 max (red), truth (green)"


@pytest.mark.parametrize("split, stem", [("train", "train-labels-idx1-ubyte"),
                                         ("test", "t10k-labels-idx1-ubyte")])
def test_a_label_outside_the_classes_names_the_label_file_it_came_from(tmp_path, capsys, split,
                                                                          stem):
    """A label a classifier cannot learn from is one line naming the dataset, the split, the
    file its labels were read from and the column (`data check` and every run say the same)."""
    write_fashion(tmp_path)
    labels = np.arange(40 if split == "train" else 20, dtype=np.uint8) % 10
    labels[:3] = 11
    path = tmp_path / "FashionMNIST" / "raw" / f"{stem}.gz"
    path.write_bytes(gzip.compress(_idx(labels)))
    assert commands.main(["check", "fashion_mnist", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: dataset 'fashion_mnist': split {split!r}, file {path}, column "
                   f"'label': label 11 (3 of {len(labels)} images) is outside 0..9, the 10 "
                   "classes of the training split\n")


def test_data_check_of_absent_files_names_the_download_command_it_lacks(tmp_path, capsys):
    """`data check` has no --download: its error names `erasebench data download`, which works
    from any command, and that command's help knows the dataset."""
    assert commands.main(["check", "svhn", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: svhn: not found in {tmp_path}/; ") and err.count("\n") == 1
    assert f"`erasebench data download svhn --data-root {tmp_path}`" in err
    assert "pass --download" not in err

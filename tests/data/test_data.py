"""Datasets: CIFAR pickles (archive and folder), hf: parquet, synthetic, the cache, clear errors;
and a short ResNet20 training run on the synthetic set through the DeviceLoader."""

import io
import math
import pickle
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark import data, models
from benchmark.data import augment, cifar
from benchmark.fileio import DamagedFileError


def _batch(n, label_key, seed):
    rng = np.random.default_rng(seed)
    return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key: rng.integers(0, 10, n).tolist()}


def _cifar10_members():
    members = {f"data_batch_{i}": _batch(4, "labels", i) for i in range(1, 6)}
    members["test_batch"] = _batch(3, "labels", 9)
    members["batches.meta"] = {"label_names": [f"c{i}" for i in range(10)]}
    return members


def _write_folder(root, members):
    root.mkdir(parents=True)
    for name, obj in members.items():
        (root / name).write_bytes(pickle.dumps(obj))


def _write_archive(path, folder, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            blob = pickle.dumps(obj)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def test_cifar10_archive_loads_as_uint8_images_in_channel_first_order(tmp_path):
    members = _cifar10_members()
    _write_archive(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)
    train = data.load("cifar10", "train", tmp_path)
    assert len(train) == 20 and train.images.shape == (20, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    first = members["data_batch_1"]["data"][0]
    assert torch.equal(train.images[0, 1].flatten(),
                       torch.from_numpy(first[1024:2048]))  # green plane
    assert train.labels.tolist()[:4] == members["data_batch_1"]["labels"]
    assert train.classes == [f"c{i}" for i in range(10)] and train.boxes is None
    assert len(data.load("cifar10", "test", tmp_path)) == 3


def test_cifar100_extracted_folder_uses_fine_labels(tmp_path):
    members = {"train": _batch(6, "fine_labels", 0), "test": _batch(2, "fine_labels", 1),
               "meta": {"fine_label_names": [f"f{i}" for i in range(100)]}}
    _write_folder(tmp_path / "cifar-100-python", members)
    train = data.load("cifar100", "train", tmp_path)
    assert train.labels.tolist() == members["train"]["fine_labels"]
    assert len(train.classes) == 100


def test_mean_and_std_are_per_channel_in_unit_pixel_scale(tmp_path):
    _write_folder(tmp_path / "cifar-10-batches-py", _cifar10_members())
    train = data.load("cifar10", "train", tmp_path)
    x = train.images.float() / 255
    assert np.allclose(train.mean, x.mean(dim=(0, 2, 3)).tolist(), atol=1e-5)
    assert np.allclose(train.std, x.std(dim=(0, 2, 3), unbiased=False).tolist(), atol=1e-5)


def test_missing_cifar_names_the_directory_the_file_and_the_download_flag(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"cifar10: not found in .*cifar-10-python\.tar\.gz.*--download"):
        data.load("cifar10", "train", tmp_path)


def test_second_load_comes_from_the_cache_without_reading_the_source(tmp_path, monkeypatch):
    _write_folder(tmp_path / "cifar-10-batches-py", _cifar10_members())
    first = data.load("cifar10", "train", tmp_path)
    assert list((tmp_path / "cache").glob("cifar10-train-*.pt"))

    def fail(*args, **kwargs):
        raise AssertionError("the source was read again")

    monkeypatch.setattr(cifar, "_read_cifar", fail)
    second = data.load("cifar10", "train", tmp_path)
    assert torch.equal(first.images, second.images) and first.mean == second.mean
    with pytest.raises(AssertionError, match="read again"):
        data.load("cifar10", "train", tmp_path, cache=False)


# --- damaged files ----------------------------------------------------------------------------

ARCHIVE = "cifar-10-python.tar.gz"
def HINT_FOR(root):  # noqa: N802 - a constant's shape, per data folder
    """The damaged-file hint: the real command that fetches it again (`data check` has no
    --download), the run's own flag, or a good copy."""
    return (f"; delete it and fetch it again with `erasebench data download cifar10 --data-root "
            f"{root}` (`erasebench run ... --download` replaces it itself), or place a good copy "
            "there")


def _good_archive(path):
    _write_archive(path, "cifar-10-batches-py", _cifar10_members())
    return path


def _one_line_error(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("damage", ["garbage", "cache_of_something_else"])
def test_a_corrupt_cache_file_is_deleted_with_a_warning_and_rebuilt(tmp_path, capsys, damage):
    _write_folder(tmp_path / "cifar-10-batches-py", _cifar10_members())
    first = data.load("cifar10", "train", tmp_path)
    (cache,) = (tmp_path / "cache").glob("cifar10-train-*.pt")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o644  # written through fileio.atomic_write
    if damage == "garbage":
        cache.write_bytes(cache.read_bytes()[:1000])
    else:
        torch.save({"images": torch.zeros(3, 4)}, cache)
    again = data.load("cifar10", "train", tmp_path)
    assert torch.equal(first.images, again.images) and first.mean == again.mean
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {cache}: damaged data cache (")
    assert err.endswith("); deleted it, rebuilding it\n")
    torch.load(cache, weights_only=True)  # rebuilt, readable again
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache.name]


def test_an_archive_that_is_not_gzip_is_one_error_line_naming_the_path(tmp_path):
    archive = tmp_path / ARCHIVE
    archive.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DamagedFileError) as info:
        data.load("cifar10", "train", tmp_path)
    assert _one_line_error(info) == (f"{archive}: damaged or truncated cifar10 archive "
                                     f"(ReadError: not a gzip file){HINT_FOR(tmp_path)}")


@pytest.mark.parametrize("keep", [0.5, -10])
def test_an_archive_truncated_mid_stream_is_one_error_line_naming_the_path(tmp_path, keep):
    archive = _good_archive(tmp_path / ARCHIVE)
    blob = archive.read_bytes()
    # half the bytes, or only the gzip trailer (CRC and length) cut off
    archive.write_bytes(blob[: int(len(blob) * keep)] if keep > 0 else blob[:keep])
    with pytest.raises(DamagedFileError) as info:
        data.load("cifar10", "test", tmp_path)
    assert _one_line_error(info) == (
        f"{archive}: damaged or truncated cifar10 archive (EOFError: Compressed file ended "
        f"before the end-of-stream marker was reached){HINT_FOR(tmp_path)}")


def test_a_bit_flip_inside_an_archive_is_caught_by_its_checksum(tmp_path):
    archive = _good_archive(tmp_path / ARCHIVE)
    blob = bytearray(archive.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    archive.write_bytes(bytes(blob))
    with pytest.raises(DamagedFileError, match=rf"^{archive}: damaged or truncated cifar10 "):
        data.load("cifar10", "test", tmp_path)


def test_a_damaged_file_in_the_extracted_folder_is_one_error_line_naming_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_folder(folder, _cifar10_members())
    batch = folder / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DamagedFileError) as info:
        data.load("cifar10", "train", tmp_path)
    assert _one_line_error(info) == (
        f"{folder}: damaged cifar10 folder: data_batch_2 cannot be unpickled "
        f"(UnpicklingError: pickle data was truncated){HINT_FOR(tmp_path)}")
    (folder / "test_batch").unlink()
    with pytest.raises(DamagedFileError, match="damaged cifar10 folder: test_batch is missing"):
        data.load("cifar10", "test", tmp_path)


@pytest.fixture
def fake_download(monkeypatch):
    """torchvision's downloader, replaced: it writes a good (fake) archive; no network."""
    from torchvision.datasets import utils

    calls = []

    def download_url(url, root, filename=None, md5=None, **kw):
        calls.append((url, filename, md5))
        _good_archive(Path(root) / filename)

    monkeypatch.setattr(utils, "download_url", download_url)
    return calls


def test_download_replaces_a_corrupt_archive(tmp_path, capsys, fake_download):
    from torchvision.datasets import CIFAR10

    archive = tmp_path / ARCHIVE
    archive.write_bytes(b"not a gzip file")
    train = data.load("cifar10", "train", tmp_path, download=True)
    assert len(train) == 20
    assert fake_download == [(CIFAR10.url, ARCHIVE, CIFAR10.tgz_md5)]
    assert (tmp_path / f"{ARCHIVE}.corrupt").read_bytes() == b"not a gzip file"
    assert archive.is_file() and not (tmp_path / "cifar-10-batches-py").exists()
    assert capsys.readouterr().err == (
        f"warning: {archive}: damaged or truncated cifar10 archive (ReadError: not a gzip "
        f"file); moved to {ARCHIVE}.corrupt; downloading it again\n")


def test_download_fetches_a_missing_archive_and_a_good_one_is_never_fetched(tmp_path,
                                                                          fake_download):
    assert len(data.load("cifar10", "test", tmp_path, download=True, cache=False)) == 3
    assert len(data.load("cifar10", "test", tmp_path, download=True, cache=False)) == 3
    assert len(fake_download) == 1


def test_download_moves_a_damaged_folder_aside_and_reads_the_archive(tmp_path, capsys,
                                                                    fake_download):
    _good_archive(tmp_path / ARCHIVE)
    folder = tmp_path / "cifar-10-batches-py"
    _write_folder(folder, _cifar10_members())
    (folder / "batches.meta").write_bytes(b"")
    assert len(data.load("cifar10", "test", tmp_path, download=True)) == 3
    assert fake_download == [] and (tmp_path / "cifar-10-batches-py.corrupt").is_dir()
    assert capsys.readouterr().err.endswith(f"; moved to cifar-10-batches-py.corrupt; reading "
                                            f"{ARCHIVE} instead\n")


def test_a_damaged_download_is_reported_not_fetched_again_in_a_loop(tmp_path, monkeypatch):
    from torchvision.datasets import utils

    def download_url(url, root, filename=None, md5=None, **kw):
        (Path(root) / filename).write_bytes(b"still broken")

    monkeypatch.setattr(utils, "download_url", download_url)
    with pytest.raises(DamagedFileError, match="not a gzip file"):
        data.load("cifar10", "train", tmp_path, download=True)


def test_a_failed_download_is_one_line_naming_the_url_and_the_path(tmp_path, monkeypatch):
    from torchvision.datasets import utils

    def download_url(url, root, filename=None, md5=None, **kw):
        raise RuntimeError("File not found or corrupted.")

    monkeypatch.setattr(utils, "download_url", download_url)
    with pytest.raises(RuntimeError, match=rf"^cifar10: downloading https://\S+ to "
                                           rf"{tmp_path / ARCHIVE} failed \(RuntimeError: File"):
        data.load("cifar10", "train", tmp_path, download=True)


def _write_parquet(path, n, seed):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    pngs = []
    for p in pixels:
        buf = io.BytesIO()
        Image.fromarray(p).save(buf, format="PNG")
        pngs.append({"bytes": buf.getvalue(), "path": None})
    labels = rng.integers(0, 3, n).tolist()
    pq.write_table(pa.table({"img": pngs, "label": labels}), path)
    return pixels, labels


def test_hf_parquet_files_load_with_detected_image_and_label_columns(tmp_path):
    pixels, labels = _write_parquet(tmp_path / "train.parquet", 12, 0)
    _write_parquet(tmp_path / "test.parquet", 5, 1)
    files = {"train": str(tmp_path / "train.parquet"), "test": str(tmp_path / "test.parquet")}
    kw = dict(data_files=files, cache_dir=str(tmp_path / "hf"))
    train = data.load("hf:parquet", "train", tmp_path, **kw)
    assert train.images.shape == (12, 3, 8, 8)
    assert torch.equal(train.images.permute(0, 2, 3, 1), torch.from_numpy(pixels))
    assert train.labels.tolist() == labels and train.classes == ["0", "1", "2"]
    assert len(data.load("hf:parquet", "test", tmp_path, **kw)) == 5
    with pytest.raises(ValueError, match=r"label_column='fine'.*available columns: img, label"):
        data.load("hf:parquet", "train", tmp_path, label_column="fine", cache=False, **kw)


def test_synthetic_splits_are_deterministic_disjoint_and_boxed():
    a = data.load("synthetic", "train", n_train=64, n_test=32, seed=1)
    b = data.load("synthetic", "train", n_train=64, n_test=32, seed=1)
    test = data.load("synthetic", "test", n_train=64, n_test=32, seed=1)
    assert torch.equal(a.images, b.images) and len(test) == 32 and a.boxes.shape == (64, 4)
    assert not torch.equal(a.images[:32], test.images)
    assert len(a.classes) == 10 and 0 < min(a.std) and max(a.mean) < 1


def test_unknown_dataset_split_and_option_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; known: synthetic, cifar10"):
        data.load("imagenet", "train", tmp_path)
    with pytest.raises(ValueError, match="split='val': allowed train, test"):
        data.load("synthetic", "val")
    with pytest.raises(ValueError, match=r"unknown options \['n'\]; allowed: n_train"):
        data.load("synthetic", "train", n=5)


@pytest.mark.slow
def test_resnet20_learns_the_synthetic_set_through_the_device_loader():
    # 16x16 images keep this CPU run to about 30 s (72 steps of 64 images)
    torch.manual_seed(0)
    opts = dict(n_train=1536, n_test=500, seed=0, size=16)
    train, test = data.load("synthetic", "train", **opts), data.load("synthetic", "test", **opts)
    model = models.create("resnet20")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = augment.DeviceLoader(train.images, train.labels, batch_size=64, mean=train.mean,
                                  std=train.std, pad=2, generator=torch.Generator().manual_seed(0))
    total = 3 * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    for _ in range(3):
        for x, y, _ in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item()
                      for x, y in augment.eval_batches(test.images, test.labels, mean=train.mean,
                                                       std=train.std))
    assert correct / len(test) > 0.20  # chance is 0.10; measured 0.306 with these seeds

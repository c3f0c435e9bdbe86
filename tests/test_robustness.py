"""Robustness to occlusion (benchmark/robustness.py): the occluders, the measurement, the record a
finished run gets, and `erasebench evaluate` for records trained before it existed."""

from __future__ import annotations

import json
import math
import os
import shutil
import textwrap

import pytest
import torch

from benchmark import cam, models, results, robustness
from benchmark.data import augment
from benchmark.data import load as load_data
from benchmark.runner import evaluate
from benchmark.runner.main import main as run_main
from plugins.geometry import box_mask, mask_box, peaks

SIZE = (16, 16)
TINY = """
name: robust
data: {name: synthetic, options: {n_train: 32, n_test: 24, seed: 0, size: 16}}
train: {epochs: 1, batch_size: 16, milestones: [1], eval_batch_size: 16}
models: [resnet20]
seeds: [0]
methods: [plain, cutout]
"""


@pytest.fixture(autouse=True)
def one_thread():
    """On a shared 2-core machine, 2 torch threads are ~50x slower than 1 for these tiny nets."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny suite trained once (plain and cutout, 1 epoch): (out folder, records by run id)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("robust")
    suite = root / "robust.yaml"
    suite.write_text(textwrap.dedent(TINY))
    out = root / "out"
    assert run_main(["--suite", str(suite), "--out", str(out), "--no-wandb", "--no-progress",
                     "--threads", "1"]) == 0
    recs = {r["run_id"]: r for r in results.load_records(out / "results" / "robust")}
    return out, recs


def tiny_test_set(n=24):
    ds = load_data("synthetic", "test", n_train=32, n_test=n, seed=0, size=16)
    return ds


def model(seed):
    torch.manual_seed(seed)
    return models.create("resnet20", num_classes=10).eval()


# --------------------------------------------------------------------------- the occluders

def test_the_occluder_covers_the_requested_fraction_of_the_image():
    gen = torch.Generator().manual_seed(1)
    n = 64
    uniform = torch.rand(n, 2, generator=gen)
    boxes = torch.tensor([[0, 0, 4, 4], [12, 12, 16, 16], [3, 5, 11, 9], [0, 10, 16, 16]] * 16)
    peak = torch.randint(0, 16, (n, 2), generator=gen)  # edges and corners included
    for f in robustness.FRACTIONS:
        s = robustness.side(f, SIZE)
        assert s == round(math.sqrt(f * 256))
        assert abs(s * s / 256 - f) <= (2 * s + 1) / 256  # within one row of rounding
        for placement in robustness.PLACEMENTS:
            mask = robustness.squares(placement, f, SIZE, uniform=uniform, boxes=boxes, peak=peak)
            assert mask.shape == (n, 1, 16, 16) and mask.dtype == torch.bool
            # the whole square inside the image: exactly side^2 pixels, one square
            assert (mask.sum(dim=(1, 2, 3)) == s * s).all()
            b = mask_box(mask[:, 0])
            assert ((b[:, 2] - b[:, 0]) == s).all() and ((b[:, 3] - b[:, 1]) == s).all()
    assert robustness.side(0.0, SIZE) == 0
    assert robustness.side(1.0, (8, 16)) == 8  # clipped to the shorter side
    with pytest.raises(ValueError, match=r"fraction=1.5: .* in \[0, 1\]"):
        robustness.side(1.5, SIZE)


def test_box_placement_centres_the_occluder_on_the_object_box():
    boxes = torch.tensor([[4, 4, 12, 12], [2, 6, 9, 13], [5, 1, 15, 11]])
    for f in robustness.FRACTIONS:
        mask = robustness.squares("box", f, SIZE, boxes=boxes)
        b = mask_box(mask[:, 0]).float()
        box_centre = (boxes[:, :2] + boxes[:, 2:]).float() / 2
        occluder_centre = (b[:, :2] + b[:, 2:]) / 2
        assert ((occluder_centre - box_centre).abs() <= 0.5).all()
    # a box at the border: the square is moved inside, never cut
    edge = robustness.squares("box", 0.3, SIZE, boxes=torch.tensor([[0, 0, 2, 2]]))
    assert edge.sum() == robustness.side(0.3, SIZE) ** 2 and edge[0, 0, 0, 0]


def test_cam_peak_placement_centres_the_occluder_on_the_models_cam_peak():
    peak = torch.tensor([[7, 7], [5, 10], [8, 6]])  # far enough from the edges for f = 0.5
    for f in robustness.FRACTIONS:
        mask = robustness.squares("cam_peak", f, SIZE, peak=peak)
        b = mask_box(mask[:, 0]).float()
        centre = torch.stack(((b[:, 1] + b[:, 3]) / 2, (b[:, 0] + b[:, 2]) / 2), dim=1)
        assert ((centre - (peak.float() + 0.5)).abs() <= 0.5).all()
    # near an edge the square is moved inside the image, still covering the peak
    edge = torch.tensor([[0, 15], [15, 0], [8, 3]])
    mask = robustness.squares("cam_peak", 0.5, SIZE, peak=edge)
    assert mask[torch.arange(3), 0, edge[:, 0], edge[:, 1]].all()
    assert (mask.sum(dim=(1, 2, 3)) == robustness.side(0.5, SIZE) ** 2).all()
    # measure() occludes at the model's own Grad-CAM peak of the true class
    ds, net = tiny_test_set(), model(3)
    got = robustness.measure(net, ds.images, ds.labels, None, mean=ds.mean, std=ds.std,
                             fractions=[0.3], batch_size=8)
    x = augment.normalize(ds.images, torch.tensor(ds.mean), torch.tensor(ds.std))
    p = peaks(cam.grad_cam(net, x, ds.labels))
    s = robustness.side(0.3, SIZE)
    top, left = ((2 * p + 1 - s).div(2, rounding_mode="floor")).clamp(0, 16 - s).unbind(1)
    full = torch.full_like(top, s)
    by_hand = x.masked_fill(box_mask(top, left, full, full, SIZE), 0)
    with torch.no_grad():
        wrong = (net(by_hand).argmax(1) != ds.labels).sum().item()
    assert got["cam_peak"] == [100.0 * wrong / len(ds.labels)]
    assert "box" not in got  # no boxes given: the placement is absent, not zero
    # an earlier layer (no fast path): Grad-CAM under measure's no_grad, the same rule
    mid = robustness.measure(net, ds.images, ds.labels, None, mean=ds.mean, std=ds.std,
                             fractions=[0.3], batch_size=8, cam_layer="layer2")
    p = peaks(cam.grad_cam(net, x, ds.labels, layer="layer2"))
    top, left = ((2 * p + 1 - s).div(2, rounding_mode="floor")).clamp(0, 16 - s).unbind(1)
    with torch.no_grad():
        wrong = (net(x.masked_fill(box_mask(top, left, full, full, SIZE), 0)).argmax(1)
                 != ds.labels).sum().item()
    assert mid["cam_peak"] == [100.0 * wrong / len(ds.labels)] and mid["cam_layer"] == "layer2"


def test_every_method_sees_the_same_randomly_occluded_test_set(monkeypatch):
    seen: list[list] = []
    real = robustness.squares

    def spy(placement, fraction, size, **kw):
        mask = real(placement, fraction, size, **kw)
        seen[-1].append((placement, fraction, mask))
        return mask

    monkeypatch.setattr(robustness, "squares", spy)
    ds = tiny_test_set()
    for seed, batch in ((0, 24), (1, 24), (2, 7)):  # other models, seeds and batch sizes
        seen.append([])
        robustness.measure(model(seed), ds.images, ds.labels, ds.boxes, mean=ds.mean, std=ds.std,
                           batch_size=batch)
    def masks(calls, placement):
        by_f: dict[float, list] = {}
        for p, f, m in calls:
            if p == placement:
                by_f.setdefault(f, []).append(m)
        return {f: torch.cat(ms) for f, ms in by_f.items()}

    for placement in ("random", "box"):
        first = masks(seen[0], placement)
        assert set(first) == set(robustness.FRACTIONS)
        for calls in seen[1:]:
            other = masks(calls, placement)
            assert all(torch.equal(first[f], other[f]) for f in first)
    # the occluders do not depend on the run's seed: the global RNG state is not used
    torch.manual_seed(123)
    assert torch.equal(masks(seen[0], "random")[0.3], masks(seen[2], "random")[0.3])


def test_occluding_nothing_gives_the_clean_error():
    ds, net = tiny_test_set(), model(5)
    got = robustness.measure(net, ds.images, ds.labels, ds.boxes, mean=ds.mean, std=ds.std,
                             fractions=[0.0], batch_size=10)
    x = augment.normalize(ds.images, torch.tensor(ds.mean), torch.tensor(ds.std))
    with torch.no_grad():
        clean = 100.0 * (net(x).argmax(1) != ds.labels).sum().item() / len(ds.labels)
    assert got["random"] == got["box"] == got["cam_peak"] == [clean]


def test_a_random_fill_draws_from_the_fixed_seed_too():
    ds = tiny_test_set()
    a = robustness.measure(model(0), ds.images, ds.labels, ds.boxes, mean=ds.mean, std=ds.std,
                           fill="random", batch_size=12)
    b = robustness.measure(model(0), ds.images, ds.labels, ds.boxes, mean=ds.mean, std=ds.std,
                           fill="random", batch_size=12)
    assert a == b and a["fill"] == "random"


# --------------------------------------------------------------------------- records

def test_a_finished_run_records_its_robustness(trained):
    _, recs = trained
    for rec in recs.values():
        rb = rec["robustness"]
        assert rb["fractions"] == list(robustness.FRACTIONS)
        assert rb["seed"] == robustness.SEED and rb["n_test"] == 24 and rb["fill"] == "zero"
        for placement in ("random", "box", "cam_peak"):  # synthetic data has boxes
            assert len(rb[placement]) == 5 and all(0 <= e <= 100 for e in rb[placement])
    # plain and cutout saw the same randomly occluded test set: same seed, same n
    assert len({json.dumps({k: v for k, v in r["robustness"].items()
                            if k in ("fractions", "seed", "n_test", "fill")})
                for r in recs.values()}) == 1


def test_a_robustness_that_is_not_the_measurement_is_dropped_and_the_run_kept(trained, tmp_path,
                                                                           capsys):
    """An error outside [0, 100], fractions other than the standard ones (or in another order),
    a list of another length, another seed or test set: only `robustness` is read as absent (one
    warning naming the file and key); the run's clean error stays in every other table."""
    rec = dict(trained[1]["resnet20__cutout__s0"])
    good = rec["robustness"]
    bad = {"robustness.cam_peak[2]": {**good, "cam_peak": [10.0, 20.0, 150.0, 30.0, 40.0]},
           "robustness.fractions": {**good, "fractions": good["fractions"][::-1]},
           "robustness.random": {**good, "random": [1.0, 2.0]},
           "robustness.seed": {**good, "seed": 5},
           "robustness.n_test": {**good, "n_test": 32}}
    for key, rb in bad.items():
        folder = tmp_path / key
        results.write_record(folder, {**rec, "robustness": rb})
        assert results.value_problem({**rec, "robustness": rb}) is None  # not damaged
        [read] = results.load_records(folder)
        assert read["robustness"] is None and read["final_test_error"] == rec["final_test_error"]
        assert results.read_record(folder / f"{rec['run_id']}.json")["robustness"] is None
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(folder / f"{rec['run_id']}.json") in err[0], key
        assert f"key '{key}' is" in err[0] and "its other numbers are" in err[0], err[0]
    assert results.robustness_problem(rec) is None
    rec["robustness"] = "high"
    assert results.record_problem(rec) == "key 'robustness' is 'high', not an object or null"


def suite_file(trained) -> str:
    """The tiny suite's YAML file: `evaluate --suite` takes it as `run --suite` does."""
    return str(trained[0].parent / "robust.yaml")


def old_records(trained, tmp_path):
    """A copy of the trained suite whose records predate the measurement (no 'robustness')."""
    out = tmp_path / "out"
    shutil.copytree(trained[0], out)
    folder = out / "results" / "robust"
    before = {}
    for path in sorted(folder.glob("*.json")):
        rec = json.loads(path.read_text())
        rec.pop("robustness")
        results.write_record(folder, rec)
        before[rec["run_id"]] = rec
    return out, folder, before


def test_evaluate_adds_robustness_to_old_records_without_training(trained, tmp_path, capsys,
                                                                  monkeypatch):
    import benchmark.training.train as train

    def no_training(*a, **k):
        raise AssertionError("evaluate trained a run")

    monkeypatch.setattr(train, "train_pack", no_training)
    out, folder, before = old_records(trained, tmp_path)
    (folder / "checkpoints" / "resnet20__plain__s0.final.pt").unlink()
    assert evaluate.main(["--suite", suite_file(trained), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert (f"skipped resnet20__plain__s0: no final checkpoint at "
            f"{folder / 'checkpoints' / 'resnet20__plain__s0.final.pt'}") in err
    after = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    cut = after["resnet20__cutout__s0"]
    # the same numbers the runner measured at the end of training, from the final checkpoint
    assert cut.pop("robustness") == trained[1]["resnet20__cutout__s0"]["robustness"]
    assert cut == before["resnet20__cutout__s0"]  # everything else as it was (the fingerprint)
    assert "robustness" not in after["resnet20__plain__s0"]
    board = (out / "leaderboards" / "robust.md").read_text()
    assert "## Robustness to occlusion" in board
    assert "1 of 2 finished run(s) not evaluated" in board
    assert (out / "leaderboards" / "figures" / "robust_robustness_resnet20.png").is_file()
    # a second call finds nothing new to do and writes nothing else
    assert evaluate.main(["--suite", suite_file(trained), "--out", str(out), "--no-progress"]) == 1
    assert "0 record(s) given robustness, 1 already had it, 1 skipped" in capsys.readouterr().out


class Payload:
    """A pickled object whose unpickling would create a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_evaluate_loads_checkpoints_without_running_pickled_code(trained, tmp_path, capsys):
    out, folder, _ = old_records(trained, tmp_path)
    marker = tmp_path / "pwned"
    ckpt = folder / "checkpoints" / "resnet20__cutout__s0.final.pt"
    state = torch.load(ckpt, weights_only=True)
    state["extra"] = Payload(marker)
    torch.save(state, ckpt)
    assert evaluate.main(["--suite", suite_file(trained), "--out", str(out), "--no-progress"]) == 1
    assert not marker.exists()
    err = capsys.readouterr().err
    assert f"skipped resnet20__cutout__s0: {ckpt}" in err and len(err.strip().splitlines()) == 1
    assert "robustness" not in json.loads((folder / "resnet20__cutout__s0.json").read_text())


def test_evaluate_refuses_a_checkpoint_that_is_not_the_records_model(trained, tmp_path, capsys):
    out, folder, _ = old_records(trained, tmp_path)
    rec = json.loads((folder / "resnet20__cutout__s0.json").read_text())
    rec["final_test_error"] = 100.0 - rec["final_test_error"] if rec["final_test_error"] < 45 \
        else rec["final_test_error"] - 40.0
    results.write_record(folder, rec)
    evaluate.main(["--suite", suite_file(trained), "--out", str(out), "--no-progress"])
    assert "is not the record's final error" in capsys.readouterr().err
    assert "robustness" not in json.loads((folder / "resnet20__cutout__s0.json").read_text())


def test_evaluate_names_a_bad_suite_or_a_missing_results_folder(tmp_path, capsys):
    assert evaluate.main(["--suite", "../x", "--out", str(tmp_path)]) == 2
    assert evaluate.main(["--suite", "nothing", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "a suite name is a plain file name" in err[0]
    assert err[1] == f"error: {tmp_path / 'results' / 'nothing'}: no such results folder (run " \
                     "the suite first, or pass --out)"
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_mixing_erasers_runs_are_occluded_with_zero_not_with_its_paste_fill():
    from plugins.mixing import PASTE

    assert robustness.occluder_fill(PASTE) == "zero"
    assert robustness.occluder_fill(None) == "zero"
    assert robustness.occluder_fill("random") == "random"


# --------------------------------------------------------------------------- evaluate's checks

def test_evaluate_refuses_a_bad_device_in_one_line_before_reading_anything(tmp_path, capsys):
    for device in ("banana", "cuda:99"):
        with pytest.raises(SystemExit) as stop:
            evaluate.main(["--suite", "robust", "--out", str(tmp_path), "--device", device])
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: argument --device: ")
        assert repr(device) in err[0]
    assert list(tmp_path.iterdir()) == []


def test_every_command_taking_a_device_refuses_a_bad_one_in_one_line(capsys):
    from benchmark.cli import main as cli

    for argv in (["speed", "cam"], ["speed", "train"], ["speed", "erasers"], ["figures", "cam"],
                 ["evaluate", "--suite", "robust"]):
        with pytest.raises(SystemExit) as stop:
            cli([*argv, "--device", "banana"])
        assert stop.value.code == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        prog = "erasebench " + " ".join(argv[:1] if argv[0] == "evaluate" else argv[:2])
        assert err == [f"error: argument --device: unknown device 'banana': expected cpu, cuda, "
                       f"cuda:N or mps (see `{prog} --help`)"], argv


def test_evaluate_checks_the_records_folder_is_writable_before_measuring(trained, tmp_path,
                                                                         capsys, monkeypatch):
    """As `run` checks --out (preflight.check_out): a read-only results folder is one line, exit
    2, before any checkpoint is loaded or measured."""
    import errno
    from pathlib import Path

    out, folder, before = old_records(trained, tmp_path)

    def no_measuring(*a, **k):
        raise AssertionError("measured before checking the folder")

    real_write = Path.write_text

    def read_only(self, *a, **k):  # a read-only mount (chmod would not stop root)
        if self.parent == folder:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_write(self, *a, **k)

    monkeypatch.setattr(evaluate, "evaluate_record", no_measuring)
    monkeypatch.setattr(Path, "write_text", read_only)
    assert evaluate.main(["--suite", suite_file(trained), "--out", str(out),
                          "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {folder} (the records): not writable (Read-only file system)"]
    assert {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")} == before


def test_a_write_failure_while_evaluating_is_one_line_and_no_half_written_record(
        trained, tmp_path, capsys, monkeypatch):
    import errno

    from benchmark import fileio

    out, folder, before = old_records(trained, tmp_path)
    real_replace, calls = os.replace, []

    def full_disk(src, dst):  # the second record's rename fails as on a full disk
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", full_disk)
    assert evaluate.main(["--suite", suite_file(trained), "--out", str(out),
                          "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no space left" in err[0].lower()
    assert "no record was half-written" in err[0] and "rerun the same command" in err[0]
    after = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    assert set(after) == set(before) and not list(folder.glob(".*.tmp"))
    first, second = sorted(before)
    assert "robustness" in after[first] and after[second] == before[second]


def evaluated(out, run_id: str) -> bool:
    return "robustness" in json.loads((out / "results" / "robust" / f"{run_id}.json").read_text())


def test_evaluate_refuses_a_checkpoint_of_another_model_name(trained, tmp_path, capsys):
    out, folder, _ = old_records(trained, tmp_path)
    rec = json.loads((folder / "resnet20__cutout__s0.json").read_text())
    rec["model"] = "resnet32"  # the record says another model than the checkpoint holds
    results.write_record(folder, rec)
    assert evaluate.main(["--suite", suite_file(trained), "--out", str(out),
                          "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert ("key 'model_name' is 'resnet20', but the record's model is 'resnet32': not this "
            "record's model") in err
    assert not evaluated(out, "resnet20__cutout__s0") and evaluated(out, "resnet20__plain__s0")


def test_a_checkpoint_without_a_run_id_must_give_exactly_the_records_error(trained, tmp_path,
                                                                          capsys):
    """Another run's checkpoint with its run id removed, put in place of this run's: refused
    when its clean error is one test image (24 images: 4.17 points) off the record's."""
    out, folder, _ = old_records(trained, tmp_path)
    ckpts = folder / "checkpoints"
    plain, cut = (json.loads((folder / f"resnet20__{m}__s0.json").read_text())
                  for m in ("plain", "cutout"))
    state = torch.load(ckpts / "resnet20__plain__s0.final.pt", weights_only=True)
    del state["run_id"]
    torch.save(state, ckpts / "resnet20__cutout__s0.final.pt")  # plain's model as cutout's
    # the cutout record's error is one image away from plain's model's error
    cut["final_test_error"] = plain["final_test_error"] + (100 / 24) * (
        1 if plain["final_test_error"] < 50 else -1)
    results.write_record(folder, cut)
    assert evaluate.main(["--suite", suite_file(trained), "--out", str(out),
                          "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "a checkpoint without a run id must give exactly the record's error" in err
    assert not evaluated(out, "resnet20__cutout__s0")
    # the same count of wrong images is the best evidence there is without a run id: accepted
    cut["final_test_error"] = plain["final_test_error"]
    results.write_record(folder, cut)
    assert evaluate.main(["--suite", suite_file(trained), "--out", str(out),
                          "--no-progress"]) == 0
    assert evaluated(out, "resnet20__cutout__s0")


def test_evaluate_skips_a_record_of_another_config_than_the_suite_file(trained, tmp_path,
                                                                        capsys):
    """A record whose config (and fingerprint, edited alike) names another test set, or a run
    the suite does not plan, is skipped with one line naming the file and the key: it would be
    measured on its own test set and averaged with the suite's runs."""
    out, folder, _ = old_records(trained, tmp_path)
    path = folder / "resnet20__cutout__s0.json"
    rec = json.loads(path.read_text())
    for where in (rec["config"]["data"]["options"], rec["fingerprint"]["data"]["options"]):
        where["n_test"] = 16
    results.write_record(folder, rec)
    plain_path = folder / "resnet20__plain__s0.json"
    plain = json.loads(plain_path.read_text())
    plain["config"]["data"]["options"]["seed"] = 5  # the config alone: the test set it names
    results.write_record(folder, plain)
    stray = {**json.loads((folder / "resnet20__plain__s0.json").read_text()),
             "run_id": "resnet20__plain__s7", "seed": 7}
    results.write_record(folder, stray)
    assert evaluate.main(["--suite", suite_file(trained), "--out", str(out),
                          "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert f"skipped resnet20__cutout__s0: {path}: made by another config than " \
           f"{suite_file(trained)} (data.options.n_test: 16 in the record, 24 in the suite); " \
           "not evaluated" in err
    assert f"skipped resnet20__plain__s0: {plain_path}: made by another config than " \
           f"{suite_file(trained)} (config.data.options.seed: 5 in the record, 0 in the " \
           "suite); not evaluated" in err
    assert any(line.startswith(f"skipped resnet20__plain__s7: {folder / 'resnet20__plain__s7.json'}"
                               ": not a run that") for line in err)
    assert len(err) == 3 and not evaluated(out, "resnet20__cutout__s0")
    assert not evaluated(out, "resnet20__plain__s0")

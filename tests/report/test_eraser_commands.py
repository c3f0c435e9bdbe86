"""Specification of the commands that take eraser names (figures erased-fraction, figures cam,
speed erasers): your own eraser through --import, parameters in the name, every name checked
before any work, outputs never over committed files."""

import argparse
import sys
from types import SimpleNamespace

import pytest
import torch

import plugins
from benchmark import cli
from benchmark.eraser_cli import parse_spec, resolve
from plugins import registry

GRIDMASK = '''
import torch
from plugins import Eraser, register


@register("stripes")
class GridMask(Eraser):
    """Erase every other `size` x `size` cell of a grid."""

    def __init__(self, size: int = 4):
        if size < 1:
            raise ValueError(f"GridMask: size must be >= 1, got {size}")
        self.size = size

    def forward(self, images, *, cam=None, generator=None):
        b, _, h, w = images.shape
        rows = (torch.arange(h, device=images.device) // self.size) % 2 == 0
        cols = (torch.arange(w, device=images.device) // self.size) % 2 == 0
        return (rows[:, None] & cols[None, :]).expand(b, 1, h, w).clone()
'''


@pytest.fixture
def my_erasers(tmp_path, monkeypatch):
    """A user's own eraser file; the registry is restored afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    path = tmp_path / "my_erasers.py"
    path.write_text(GRIDMASK)
    yield path
    for name in [m for m in sys.modules if m.startswith("erasebench_user_my_erasers")]:
        del sys.modules[name]


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and err.startswith("error: "), err
    return err


# ----------------------------------------------------------------------------- --import, params

def test_erased_fraction_draws_your_own_eraser_from_import_with_its_parameters(
        my_erasers, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["figures", "erased-fraction", "--import", str(my_erasers), "--erasers",
                     "stripes:size=8", "cutout:size=8,p=0.5", "--draws", "64", "--chunk", "32",
                     "--out", str(out)])
    assert code == 0
    table = (out / "erased_fraction.md").read_text()
    assert "| stripes(size=8) | 0.2500 |" in table           # a quarter of a 32x32 image
    assert "| cutout(size=8, p=0.5) |" in table and "the parameters below" in table
    assert "- `stripes(size=8)`: size=8" in table
    for name in ("stripes_size=8", "cutout_size=8__p=0.5"):
        assert (out / "figures" / f"erased_fraction_{name}.png").is_file()


def test_speed_erasers_times_your_own_eraser_from_import_with_its_parameters(
        my_erasers, capsys):
    rows = cli.main(["speed", "erasers", "--import", str(my_erasers), "--erasers",
                     "stripes:size=2", "--device", "cpu", "--batch", "4", "--repeats", "1",
                     "--baseline-repeats", "1", "--warmup", "0"])
    assert rows == 0
    out = capsys.readouterr().out
    assert "| cpu | stripes(size=2) |" in out and "| cpu | cutout |" not in out


def test_eraser_specs_read_yaml_values_and_lists_inside_brackets():
    assert parse_spec("cutout") == ("cutout", {})
    assert parse_spec("cutout:size=8,p=0.5") == ("cutout", {"size": 8, "p": 0.5})
    assert parse_spec("mine:scale=[0.02,0.2], ratio=[0.5,2],name=top_left") == (
        "mine", {"scale": [0.02, 0.2], "ratio": [0.5, 2], "name": "top_left"})
    specs = resolve(["cam_erasing:sh=0.2,vertex=centre"])
    assert specs[0].eraser.params()["sh"] == 0.2 and specs[0].eraser.params()["vertex"] == "centre"
    assert specs[0].label == "cam_erasing(sh=0.2, vertex=centre)"


# ----------------------------------------------------------------------------- checked first

ERASER_COMMANDS = {
    "figures erased-fraction": lambda tmp, e, *more: [
        "figures", "erased-fraction", "--erasers", e, *more, "--draws", "10", "--out", str(tmp)],
    "figures cam": lambda tmp, e, *more: [
        "figures", "cam", "--checkpoint", str(tmp / "none.pt"), "--eraser", e, *more,
        "--out", str(tmp / "cam.png")],
    "speed erasers": lambda tmp, e, *more: [
        "speed", "erasers", "--erasers", e, *more, "--device", "cpu", "--batch", "2"],
}


@pytest.mark.parametrize("command", list(ERASER_COMMANDS))
@pytest.mark.parametrize("eraser, more, expected", [
    ("stripes", [], "unknown eraser 'stripes' (available: "),
    ("cutout:sise=8", [], "eraser 'cutout' got unknown parameter(s) 'sise'; accepted: "),
    ("cutout:size", [], "eraser 'cutout:size': parameter 'size' is not key=value"),
    ("cutout:size=0", [], "size"),
    ("cutout", ["--import", "no_such_file.py"], "--import: import 'no_such_file.py': no such file"),
])
def test_a_bad_eraser_name_parameter_or_import_is_one_line_exit_2_before_any_work(
        command, eraser, more, expected, tmp_path, capsys, monkeypatch):
    started = []
    monkeypatch.setattr("benchmark.training.checkpoint.load", lambda *a, **k: started.append(a))
    monkeypatch.setattr("tqdm.tqdm", lambda *a, **k: started.append(a))
    monkeypatch.setattr("benchmark.tools.speed_erasers._on", lambda *a, **k: started.append(a))
    code = cli.main(ERASER_COMMANDS[command](tmp_path / "out", eraser, *more))
    assert code == 2 and not started                    # no progress bar, no model, no timing
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", list(ERASER_COMMANDS))
@pytest.mark.parametrize("option, value, allowed", [
    ("--n", "-1", "must be an integer >= 1, got -1"),
    ("--n", "0", "must be an integer >= 1, got 0"),
    ("--size", "0", "must be an integer >= 1, got 0"),
    ("--draws", "0", "must be an integer >= 1, got 0"),
    ("--threads", "-1", "must be an integer >= 1, or 0 for torch's default, got -1"),
    ("--repeats", "0", "must be an integer >= 1, got 0"),
    ("--batch", "0", "must be an integer >= 1, got 0"),
    ("--batch", "x", "expected an integer, got 'x'"),
    ("--device", "tpu", "unknown device 'tpu': expected cpu, cuda, cuda:N or mps"),
    ("--device", "cuda:99", "cuda:99"),
])
def test_every_numeric_or_device_option_of_an_eraser_command_is_checked_before_any_work(
        command, option, value, allowed, tmp_path, capsys, monkeypatch):
    argv = ERASER_COMMANDS[command](tmp_path / "out", "cutout")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="c")
    from benchmark.report import cam_figure, erased_fraction
    from benchmark.tools import speed_erasers
    registrar = {"figures erased-fraction": erased_fraction.register,
                 "figures cam": cam_figure.register,
                 "speed erasers": speed_erasers.register}[command]
    registrar(sub)
    known = {a for act in sub.choices[argv[1]]._actions for a in act.option_strings}
    if option not in known:
        pytest.skip(f"{command} has no {option}")
    started = []
    monkeypatch.setattr("benchmark.training.checkpoint.load", lambda *a, **k: started.append(a))
    monkeypatch.setattr("tqdm.tqdm", lambda *a, **k: started.append(a))
    monkeypatch.setattr("benchmark.tools.speed_erasers._on", lambda *a, **k: started.append(a))
    monkeypatch.setattr("benchmark.eraser_cli.resolve", lambda *a, **k: started.append(a))
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, option, value])
    assert info.value.code == 2 and not started          # refused while parsing
    message = one_line_error(capsys)
    assert message.startswith(f"error: argument {option}: ") and allowed in message


def test_zero_threads_means_torchs_default_in_every_eraser_command():
    from benchmark.eraser_cli import threads_arg

    assert threads_arg("0") == 0 and threads_arg("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="0 for torch's default"):
        threads_arg("-2")


def test_a_cuda_device_without_a_gpu_is_refused_in_one_line(monkeypatch):
    from benchmark.eraser_cli import device_arg

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(argparse.ArgumentTypeError, match="no CUDA GPU is available here"):
        device_arg("cuda")
    assert device_arg("cpu") == "cpu"


def test_an_unregistered_eraser_suggests_imports_in_the_suite_or_import_on_the_command_line():
    with pytest.raises(ValueError) as info:
        plugins.get("stripes")
    message = str(info.value)
    assert "\n" not in message
    assert "`imports: [my_erasers.py]` in the suite" in message
    assert "`--import my_erasers.py` on the command line" in message
    with pytest.raises(ValueError, match="did you mean 'cutout'.*imports:"):
        plugins.get("cutuot")


def test_a_suite_naming_an_eraser_without_its_imports_line_says_to_add_it(tmp_path):
    from benchmark.suites.config import ConfigError, parse_suite

    with pytest.raises(ConfigError) as info:
        parse_suite({"name": "mine", "methods": ["stripes"]}, source=str(tmp_path / "s.yaml"))
    message = str(info.value)
    assert "\n" not in message and "key 'methods[0].name'" in message
    assert "unknown eraser 'stripes'" in message and "imports:" in message


# ----------------------------------------------------------------------------- the CAM figure

def _tiny_model_and_data():
    from benchmark import models

    torch.manual_seed(0)
    model = models.create("resnet20", num_classes=10).eval()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]
    ds = SimpleNamespace(images=images, labels=[5, 3], classes=classes, boxes=None)
    return model, ds


@pytest.fixture
def drawn(monkeypatch):
    """The texts of every figure saved during the test (titles, row labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure

    texts = []
    save = matplotlib.figure.Figure.savefig

    def capture(fig, *a, **k):
        found = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
        texts.append(found)
        return save(fig, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    return texts


def test_the_cam_figure_names_its_checkpoint_shows_class_names_and_the_eraser_you_name(
        tmp_path, monkeypatch, drawn, my_erasers, capsys):
    from benchmark.training import checkpoint

    model, ds = _tiny_model_and_data()
    path = checkpoint.save(tmp_path / "m.final.pt", model, model_name="resnet20", num_classes=10,
                           mean=(0.5,) * 3, std=(0.25,) * 3)
    monkeypatch.setattr("benchmark.data.load", lambda *a, **k: ds)
    out = tmp_path / "cam.png"
    assert cli.main(["figures", "cam", "--checkpoint", str(path), "--import", str(my_erasers),
                     "--eraser", "stripes:size=2", "--n", "2", "--device", "cpu",
                     "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    (texts,) = drawn
    assert f"drawn from checkpoint {path}" in texts
    assert "stripes(size=2)" in texts
    rows = [t for t in texts if t.startswith("true: ")]
    assert rows[0].startswith("true: dog\npredicted: ") and rows[1].startswith("true: cat\n")


def test_the_suite_cam_figure_title_says_when_it_is_drawn_from_the_plain_model(
        tmp_path, monkeypatch, drawn):
    from benchmark.report import cam_figure
    from benchmark.suites.config import parse_suite
    from benchmark.suites.expand import expand
    from benchmark.training import checkpoint

    model, ds = _tiny_model_and_data()
    suite = parse_suite({"name": "s", "methods": ["plain", {"name": "cam_erasing", "mode":
                                                            "append"}]})
    runs = expand(suite)
    plain = next(r for r in runs if r.method.is_plain)
    checkpoint.save(tmp_path / f"{plain.run_id}.final.pt", model, model_name="resnet20",
                    num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3)
    monkeypatch.setattr("benchmark.data.load", lambda *a, **k: ds)
    cam_figure.cam_for_suite(runs, tmp_path, tmp_path / "cam_s.png", n=2)
    (texts,) = drawn
    title = next(t for t in texts if t.startswith("drawn from"))
    assert f"run {plain.run_id} ({plain.run_id}.final.pt)" in title
    assert "\nno CAM-erasing run has a final model, so this is the plain model's CAM" in title
    assert any(t.startswith("true: dog\n") for t in texts)


def test_class_names_fall_back_to_the_index_when_the_dataset_has_none():
    from benchmark.report.cam_figure import class_name

    assert class_name(3, ["a", "b", "c", "cat"]) == "cat"
    assert class_name(3, None) == "3" and class_name(7, ["a"]) == "7"


# ----------------------------------------------------------------------------- default outputs

def test_every_figure_command_writes_under_the_untracked_runs_folder_by_default():
    from benchmark.report import figures

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    for register in figures.SUBCOMMANDS:
        register(sub)
    for name, subparser in sub.choices.items():
        outs = [a for a in subparser._actions if a.dest == "out"]
        assert outs, f"figures {name}: no --out"
        assert outs[0].required or str(outs[0].default).startswith("runs/"), name


def test_an_import_that_raises_names_the_file_that_failed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad_erasers.py").write_text('raise RuntimeError("boom at import")\n')
    code = cli.main(["figures", "erased-fraction", "--import", "bad_erasers.py",
                     "--erasers", "cutout", "--draws", "1", "--out", str(tmp_path / "out")])
    assert code == 2
    assert one_line_error(capsys) == ("error: --import: import 'bad_erasers.py': importing it "
                                      "raised RuntimeError: boom at import")


def test_a_missing_module_from_a_command_names_the_working_directory_once_and_no_suite(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["speed", "erasers", "--import", "no_such_module_xyz", "--erasers", "cutout",
                     "--device", "cpu"])
    message = one_line_error(capsys)
    assert code == 2 and "suite" not in message and message.count(str(tmp_path.resolve())) == 1
    assert message == ("error: --import: import 'no_such_module_xyz': no such module (not "
                       f"installed, and not found in the working directory {tmp_path.resolve()})")

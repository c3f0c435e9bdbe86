"""Every bad value of a suite file or a command-line option is one line naming the file (or
option), the key and what is allowed, exit 2, before any training and the same on --dry-run;
no config value becomes a path outside --out."""

import json
import textwrap

import pytest

from benchmark.runner.main import main
from benchmark.suites.config import ConfigError, load_suite, parse_suite
from benchmark.suites.expand import expand

GOOD = """
name: tiny
data: {name: synthetic, options: {n_train: 32, n_test: 16, seed: 0, size: 16}}
train: {epochs: 2, batch_size: 16, milestones: [1], eval_batch_size: 16}
models: [resnet20]
seeds: [0]
methods: [plain, cutout]
"""


def write(tmp_path, text=GOOD, name="suite.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def refused(capsys, tmp_path, suite, *extra, dry_run=False):
    """Run the CLI; return its one error line (asserting exit 2 and nothing else written)."""
    out = tmp_path / "out"
    args = ["--suite", str(suite), "--out", str(out), "--no-wandb", "--no-progress", *extra]
    code = main(args + (["--dry-run"] if dry_run else []))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not (out / "results").exists() and not (out / "leaderboards").exists()  # nothing
    assert not out.exists() or list(out.iterdir()) == []                    # written
    return err.strip()


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "..", ".hidden", "", "x\\y", "a b",
                                  "-rf", "x" * 101])
def test_a_suite_name_that_is_not_a_plain_file_name_is_refused_before_anything_is_written(
        tmp_path, capsys, name):
    p = write(tmp_path, GOOD.replace("name: tiny", f"name: {json.dumps(name)}"))
    err = refused(capsys, tmp_path, p)
    assert err == (f"error: {p}: key 'name' is {name!r}; a suite name is a plain file name: "
                   "letters, digits, '_', '-' and '.' (not first), at most 100 characters")
    assert not (tmp_path.parent / "escaped").exists()


def test_a_suite_name_is_checked_before_its_imports_run(tmp_path):
    (tmp_path / "evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w')\n")
    p = write(tmp_path, GOOD.replace("name: tiny", "name: ../up\nimports: [evil.py]"))
    with pytest.raises(ConfigError, match="key 'name' is '../up'"):
        load_suite(str(p))
    assert not (tmp_path / "ran").exists()


def test_every_path_made_from_a_config_value_stays_a_single_file_name():
    suite = parse_suite({"name": "s", "models": ["timm/../../x", "resnet20"],
                         "methods": [{"name": "cutout", "label": "../../../etc/passwd"}]})
    for r in expand(suite):
        assert "/" not in r.run_id and "\\" not in r.run_id and not r.run_id.startswith(".")


def test_a_missing_name_is_one_line_naming_the_key(tmp_path):
    p = write(tmp_path, GOOD.replace("name: tiny\n", ""))
    with pytest.raises(ConfigError) as info:
        load_suite(str(p))
    assert str(info.value) == (f"{p}: key 'name' is missing (required); it names the results "
                               "folder: a plain file name, e.g. name: my_suite")


def test_a_tab_in_a_suite_file_is_one_line_naming_line_and_column(tmp_path, capsys):
    p = write(tmp_path, "name: x\ntrain:\n\tepochs: 2\n")
    err = refused(capsys, tmp_path, p)
    assert err == (f"error: {p}: not valid YAML at line 3, column 1: found character '\\t' that "
                   "cannot start any token; indent with spaces: YAML does not allow tabs")


@pytest.mark.parametrize("text, message", [
    ("name: x\ntrain: {pack: 1.5}", "key 'train.pack' must be an integer or a string, got 1.5"),
    ("name: x\nmethods: [{name: cutout, cam: {layer: 3}}]",
     "key 'methods[0].cam.layer' must be a string or null, got 3"),
    ("name: x\nseeds: 0", "key 'seeds' must be a list, got 0"),
    ("name: x\nseeds: [zero]", "key 'seeds[0]' must be an integer, got 'zero'"),
    ("name: x\ndata: cifar10", "key 'data' must be a mapping, got 'cifar10'"),
    ("name: x\ntrain: {flip: maybe}", "key 'train.flip' must be true or false, got 'maybe'"),
    ("name: [x]", "key 'name' must be a string, got ['x']"),
])
def test_a_value_of_the_wrong_type_is_one_line_naming_the_key_and_the_type(tmp_path, text,
                                                                          message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_suite(str(p))
    assert str(info.value) == f"{p}: {message}"


@pytest.mark.parametrize("train, message", [
    ("batch_size: 0", "key 'train.batch_size' must be >= 1, got 0"),
    ("momentum: -0.9", "key 'train.momentum' is -0.9; allowed: 0 <= momentum < 1 (0: plain SGD)"),
    ("momentum: 1", "key 'train.momentum' is 1.0; allowed: 0 <= momentum < 1 (0: plain SGD)"),
    ("weight_decay: -5.0e-4", "key 'train.weight_decay' must be >= 0, got -0.0005"),
    ("pad: -1", "key 'train.pad' must be >= 0, got -1"),
    ("checkpoint_every: -1", "key 'train.checkpoint_every' must be >= 0, got -1"),
    ("gamma: 0", "key 'train.gamma' is 0.0; allowed: a factor > 0 (the LR is multiplied by it at "
                 "each milestone; 0.1 in the thesis)"),
    ("gamma: -0.1", "key 'train.gamma' is -0.1; allowed: a factor > 0"),
    ("lr: .nan", "key 'train.lr' must be a finite number, got nan"),
    ("milestones: [5]", "key 'train.milestones' is [5]; allowed: strictly increasing epochs in "
                        "1..2, the last epoch (the LR is multiplied by train.gamma after each)"),
    ("milestones: [-1]", "key 'train.milestones' is [-1]; allowed: strictly increasing epochs"),
    ("milestones: [0]", "key 'train.milestones' is [0]; allowed"),
    ("milestones: [2, 1]", "key 'train.milestones' is [2, 1]; allowed"),
    ("milestones: [1, 1]", "key 'train.milestones' is [1, 1]; allowed"),
    ("nesterov: true, momentum: 0", "key 'train.nesterov' is true but 'train.momentum' is 0; "
                                    "Nesterov needs a momentum > 0"),
])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_bad_training_value_is_one_line_exit_2_before_any_training(tmp_path, capsys, train,
                                                                     message, dry_run):
    key = train.split(":")[0]
    text = GOOD.replace("batch_size: 16, ", "") if key == "batch_size" else GOOD  # no key twice
    p = write(tmp_path, text.replace("milestones: [1], ", "milestones: [1], " + train + ", ")
              if "milestones" not in train else text.replace("milestones: [1]", train))
    err = refused(capsys, tmp_path, p, dry_run=dry_run)
    assert err.startswith(f"error: {p}: {message}"), err


def test_the_default_milestones_may_lie_beyond_a_short_schedule_and_epochs_rescales_them(
        tmp_path):
    p = write(tmp_path, GOOD.replace("milestones: [1], ", ""))
    suite = load_suite(str(p))
    assert suite.train.epochs == 2 and suite.train.milestones == [150, 225]  # never reached


def test_trust_remote_code_is_refused_naming_the_file_and_key(tmp_path, capsys):
    p = write(tmp_path, GOOD.replace(
        "{name: synthetic, options: {n_train: 32, n_test: 16, seed: 0, size: 16}}",
        "{name: 'hf:someone/data', options: {trust_remote_code: true}}"))
    with pytest.raises(ConfigError) as info:
        load_suite(str(p))
    assert str(info.value).startswith(f"{p}: key 'data.options.trust_remote_code' is refused: ")
    err = refused(capsys, tmp_path, write(tmp_path, GOOD.replace("synthetic", "'hf:a/b'")
                                          .replace("{n_train: 32, n_test: 16, seed: 0, size: 16}",
                                                   "{}"), "hf.yaml"),
                  "--data-option", "trust_remote_code=true")
    assert "key 'data.options.trust_remote_code' is refused" in err


def test_the_data_api_refuses_trust_remote_code_too(tmp_path):
    from benchmark import data

    with pytest.raises(ValueError, match="option 'trust_remote_code' is refused"):
        data.load("hf:someone/data", "train", tmp_path, trust_remote_code=True)


@pytest.mark.parametrize("option, value, message", [
    ("--seeds", "3-1", "--seeds '3-1': the range 3-1 is empty; expected a list like 0,1,2 or a "
                       "range like 0-4 (start <= end)"),
    ("--seeds", "", "--seeds '': expected a list like 0,1,2 or a range like 0-4 (start <= end)"),
    ("--seeds", "0,0-2", "--seeds '0,0-2': names seed 0 more than once"),
    ("--seeds", "0-100000", "--seeds '0-100000': 100001 seeds, more than 1000"),
    ("--seeds", "1-1000000000", "--seeds '1-1000000000': 1000000000 seeds, more than 1000"),
    ("--models", ",", "--models ',': names nothing; expected comma-separated names, e.g. "
                      "resnet20,timm/resnet18"),
    ("--models", "", "--models '': names nothing"),
    ("--models", "resnet20,resnet20", "--models 'resnet20,resnet20': names resnet20 more than "
                                      "once"),
    ("--erasers", ",", "--erasers ',': names nothing; expected comma-separated names, e.g. "
                       "plain,cutout"),
    ("--import", "", "--import '': expected a module name or a .py file"),
    ("--epochs", "0", "--epochs must be >= 1, got 0"),
    ("--runs-per-device", "0", "--runs-per-device 0: must be >= 1"),
    ("--data-option", "n_train", "--data-option 'n_train': expected key=value"),
    ("--pack", "0", "--pack '0': expected auto, off or a pack size >= 1"),
])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_command_line_option_that_would_run_nothing_is_one_line_exit_2(
        tmp_path, capsys, option, value, message, dry_run):
    err = refused(capsys, tmp_path, write(tmp_path), option, value, dry_run=dry_run)
    assert err.startswith(f"error: {message}"), err


def test_a_data_option_given_twice_is_one_line_exit_2(tmp_path, capsys):
    err = refused(capsys, tmp_path, write(tmp_path), "--data-option", "n_train=8",
                  "--data-option", "n_train=9")
    assert err == "error: --data-option n_train: given twice; give each key once"


SYNTH = "{n_train: 32, n_test: 16, seed: 0, size: 16}"


@pytest.mark.parametrize("options, message", [
    ("{n_train: 0}", "option 'n_train' is 0; allowed: an integer >= 1 (images in the training "
                     "split)"),
    ("{n_test: 0}", "option 'n_test' is 0; allowed: an integer >= 1 (images in the test split)"),
    ("{size: 8}", "option 'size' is 8; allowed: an integer >= 16 (pixels per image side)"),
    ("{size: 16.5}", "option 'size' is 16.5; allowed: an integer >= 16"),
    ("{seed: x}", "option 'seed' is 'x'; allowed: an integer (the generator's seed)"),
    ("{size: 100000}", "option 'size' is 100000; allowed: an integer in 16..128 (pixels per "
                       "image side)"),
    ("{n_train: 100000000, size: 32}", "option 'n_train' is 100000000: 100000000 images of "
                                       "32x32 take 286.1 GiB as bytes"),
    ("{n_test: 10000000000}", "option 'n_test' is 10000000000: "),
])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_synthetic_set_too_small_or_too_large_to_train_on_is_one_line_exit_2_before_training(
        tmp_path, capsys, options, message, dry_run):
    p = write(tmp_path, GOOD.replace(SYNTH, options))
    err = refused(capsys, tmp_path, p, dry_run=dry_run)
    assert err == f"error: {p}: key 'data': dataset 'synthetic': {message}" or \
        err.startswith(f"error: {p}: key 'data': dataset 'synthetic': {message}"), err


@pytest.mark.parametrize("method, key", [
    ("{name: cam_erasing, cam: {layer: layer9}}", "methods[1].cam.layer"),
    ("{name: cam_erasing, sweep: {cam.layer: [layer3, fc]}}", "methods[1].sweep.cam.layer"),
])
@pytest.mark.parametrize("dry_run", [False, True])
def test_an_unknown_cam_layer_is_one_line_exit_2_naming_the_models_layers(
        tmp_path, capsys, method, key, dry_run):
    p = write(tmp_path, GOOD.replace("methods: [plain, cutout]", f"methods: [plain, {method}]"))
    err = refused(capsys, tmp_path, p, dry_run=dry_run)
    assert err.startswith(f"error: {p}: key '{key}': model resnet20: layer="), err
    assert "CAM layers of this model: ['layer3', 'layer2', 'layer1']" in err or \
        "CAM needs a 4-D feature map" in err, err


def test_an_eraser_that_erases_whole_images_of_the_datas_size_is_a_warning(tmp_path):
    from benchmark.runner.method_checks import check_methods

    p = write(tmp_path, GOOD.replace(
        "methods: [plain, cutout]",
        "methods: [plain, cutout, {name: cutout, label: big, params: {size: 100}}, "
        "{name: hide_and_seek, params: {grid_size: 64}}]"))
    suite = load_suite(str(p))
    problems, warnings = check_methods(suite, expand(suite))
    assert problems == []
    assert warnings == [
        f"{p}: key 'methods[2].params': big erases the whole image in 100% of 256 draws on 16x16 "
        "images (its erased regions cover the image); those images train on nothing",
        f"{p}: key 'methods[3].params': hide_and_seek erases the whole image in 23% of 256 draws "
        "on 16x16 images (its erased regions cover the image); those images train on nothing"]


@pytest.mark.parametrize("pad, warned", [(100, True), (16, True), (15, False), (4, False)])
def test_a_crop_padding_as_large_as_the_image_is_a_warning_like_an_oversized_eraser(
        tmp_path, capsys, pad, warned):
    p = write(tmp_path, GOOD.replace("eval_batch_size: 16}", f"eval_batch_size: 16, pad: {pad}}}"))
    assert main(["--suite", str(p), "--out", str(tmp_path / "o"), "--dry-run", "--no-wandb",
                 "--no-progress"]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "train.pad" in ln]
    assert lines == ([f"warning: {p}: key 'train.pad': pad {pad} on 16x16 images: "
                      f"{1 - (31 / (2 * pad + 1)) ** 2:.0%} of random crops hold no image pixel "
                      "(only padding); those images train on nothing; a pad below 16 keeps part "
                      "of the image in every crop"] if warned else [])


def test_the_whole_image_warning_uses_the_image_size_of_the_data(tmp_path):
    from benchmark.runner.method_checks import check_methods

    text = GOOD.replace("methods: [plain, cutout]",
                        "methods: [{name: cutout, params: {size: 24}}]")
    small = load_suite(str(write(tmp_path, text, "a.yaml")))
    large = load_suite(str(write(tmp_path, text.replace("size: 16}", "size: 48}"), "b.yaml")))
    assert len(check_methods(small, expand(small))[1]) == 1
    assert check_methods(large, expand(large))[1] == []


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "x"], "error: argument --epochs: invalid int value: 'x'"),
    (["--threads", "1.5"], "error: argument --threads: invalid int value: '1.5'"),
    (["--bogus"], "error: unrecognized arguments: --bogus"),
])
def test_an_option_value_of_the_wrong_type_is_one_line_exit_2_not_a_usage_block(
        tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as e:
        main(["--suite", str(write(tmp_path)), "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith(message), err


@pytest.mark.parametrize("text, key, line, first", [
    ("name: a\nname: b\nmethods: [plain]\n", "name", 2, 1),
    ("name: a\ntrain: {epochs: 2, epochs: 3}\n", "epochs", 2, 2),
    ("name: a\nmethods:\n  - name: cutout\n    params: {size: 8}\n    name: plain\n", "name", 5, 3),
])
def test_a_yaml_key_given_twice_is_one_line_naming_the_key_and_line(tmp_path, capsys, text, key,
                                                                    line, first):
    p = tmp_path / "dup.yaml"
    p.write_text(text)
    err = refused(capsys, tmp_path, p, dry_run=True)
    assert err.startswith(f"error: {p}: not valid YAML at line {line}, column ") and \
        f"key {key!r} appears twice (first at line {first})" in err, err


def test_yaml_merge_keys_are_not_duplicates():
    from benchmark.suites.config import safe_load

    assert safe_load("a: &x {k: 1, j: 2}\nb: {<<: *x, k: 3}\n")["b"] == {"k": 3, "j": 2}


@pytest.mark.parametrize("ramp, warned", [(50, True), (2, True), (1, False)])
def test_a_probability_ramp_longer_than_the_run_is_a_warning_naming_file_key_and_values(
        tmp_path, ramp, warned):
    """GridMask's `ramp_epochs` (p x min(1, epoch / ramp_epochs), epochs counted from 0) that
    never reaches its p within train.epochs: one warning line before any training (the run's
    and --dry-run's checks, which print it as `warning: ...`), not an error; a ramp that ends by
    the last epoch says nothing."""
    from benchmark.runner.method_checks import check_methods

    p = write(tmp_path, GOOD.replace("methods: [plain, cutout]",
                                     f"methods: [plain, {{name: gridmask, params: "
                                     f"{{ramp_epochs: {ramp}}}}}]"))
    suite = load_suite(str(p))
    problems, warnings = check_methods(suite, expand(suite))
    lines = [w for w in warnings if "ramp_epochs" in w]
    last = 0.8 * 1 / ramp
    assert problems == []
    assert lines == ([f"{p}: key 'methods[1].params.ramp_epochs': gridmask: "
                      f"ramp_epochs {ramp} is longer than the run (train.epochs 2): p = 0.8 x "
                      f"min(1, epoch / {ramp}) only reaches {last:.3g} of its target 0.8 in the "
                      "last epoch (1, counted from 0); a ramp_epochs of at most 1 reaches it"]
                     if warned else [])


@pytest.mark.parametrize("where, text, key, says", [
    ("methods: [plain, cutout]", "methods: [plain, {name: cutmix, params: {alpha: 1.0e9}}]",
     "methods[1].params", "CutMix: alpha must be a number in (0.0, 1000000.0], got '1.0e9'"),
    ("methods: [plain, cutout]", "methods: [plain, {name: cutmix, sweep: {alpha: [1.0, 1e3]}}]",
     "methods[1].params", "CutMix: alpha must be a number in (0.0, 1000000.0], got '1e3'"),
    ("milestones: [1]", "milestones: [1], lr: 1e-1", "train.lr", None),
    ("n_train: 32", "n_train: 3.2e1", "data", None),
])
def test_a_yaml_number_pyyaml_reads_as_a_string_is_refused_saying_how_to_write_it(
        tmp_path, capsys, where, text, key, says):
    """PyYAML (YAML 1.1) reads e-notation without a dot or an exponent sign (1.0e9, 1e3, 1e-1)
    as a string: the one-line error says so and gives the spelling it reads as a number."""
    import yaml

    value = {"methods[1].params": "1.0e9" if "1.0e9" in text else "1e3", "train.lr": "1e-1",
             "data": "3.2e1"}[key]
    fixed = {"1.0e9": "1.0e+9", "1e3": "1.0e+3", "1e-1": "1.0e-1", "3.2e1": "3.2e+1"}[value]
    p = write(tmp_path, GOOD.replace(where, text))
    err = refused(capsys, tmp_path, p, dry_run=True)
    assert err.startswith(f"error: {p}: key '{key}'") and (says is None or says in err), err
    assert err.endswith(f"; YAML reads {value} as a string, not a number: write {fixed} (PyYAML, "
                        "a YAML 1.1 reader, needs a dot in the mantissa and a sign in the "
                        "exponent)"), err
    assert yaml.safe_load(fixed) == float(value)  # the spelling given is a number to PyYAML


def test_the_number_hint_is_only_for_strings_that_are_numbers_in_e_notation():
    from benchmark.suites.yaml_text import number_hint

    assert number_hint(".5E2").endswith("write 0.5e+2 (PyYAML, a YAML 1.1 reader, needs a dot "
                                        "in the mantissa and a sign in the exponent)")
    assert number_hint("-1e-3").startswith("; YAML reads -1e-3 as a string, not a number: "
                                           "write -1.0e-3 ")
    # not numbers, or numbers PyYAML reads as such (only quoting made them strings)
    for other in ["cutout", "1e", "e9", "1.0e+9", "-1.e-3", "0x10", 1e9, "1_000"]:
        assert number_hint(other) == ""

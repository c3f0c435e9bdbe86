"""A suite can use an eraser from the user's own file or module, and says where it came from."""

import re
import textwrap
from pathlib import Path

import pytest

import plugins
from benchmark import results
from benchmark.runner.main import main
from benchmark.suites.config import ConfigError, parse_suite
from plugins import registry
from plugins.sources import provenance

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(marker: str, lang: str) -> str:
    text = README.read_text()
    return re.search(rf"```{lang}\n(.*?)```", text[text.index(marker):], re.S).group(1)


@pytest.fixture
def private_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_the_readmes_left_band_runs_in_a_suite_that_imports_its_file(tmp_path, private_registry,
                                                                     monkeypatch):
    (tmp_path / "my_erasers.py").write_text(readme_block("<!-- example:add-eraser -->", "python"))
    suite = readme_block("<!-- example:suite-imports -->", "yaml")
    suite = suite.replace("n_train: 2560, n_test: 1000", "n_train: 64, n_test: 32, size: 16")
    suite = suite.replace("epochs: 4, milestones: [3]",
                          "epochs: 1, milestones: [1], batch_size: 32")
    (tmp_path / "my_study.yaml").write_text(suite)
    monkeypatch.chdir(tmp_path / "..")  # the file is found beside the suite, not only in the cwd
    out = tmp_path / "out"
    assert main(["--suite", str(tmp_path / "my_study.yaml"), "--out", str(out), "--no-wandb",
                 "--no-progress"]) == 0
    rec = {r["run_id"]: r for r in results.load_records(out / "results" / "my_study")}
    band = rec["resnet20__left_band__s0"]
    assert band["status"] == "finished" and band["eraser_params"] == {"width": 4}
    source = band["eraser_source"]
    assert source["file"].endswith("my_erasers.py") and len(source["sha256"]) == 16
    assert rec["resnet20__random_erasing__s0"]["eraser_source"]["package"] == "erasebench"
    board = (out / "leaderboards" / "my_study.md").read_text()
    assert "my_erasers.py" in board and source["sha256"] in board


def test_an_import_given_on_the_command_line_is_imported_before_validation(tmp_path,
                                                                           private_registry):
    (tmp_path / "more.py").write_text(textwrap.dedent('''
        import plugins

        @plugins.register("nothing_erased")
        class NothingErased(plugins.Eraser):
            def forward(self, images, *, cam=None, generator=None):
                return images[:, :1] != images[:, :1]
    '''))
    suite = parse_suite({"name": "x", "methods": ["nothing_erased"]}, str(tmp_path / "s.yaml"),
                        extra_imports=[str(tmp_path / "more.py")])
    assert suite.imports == [str(tmp_path / "more.py")]
    assert "nothing_erased" in plugins.available()
    assert provenance("nothing_erased")["file"] == str((tmp_path / "more.py").resolve())


def test_a_missing_import_is_one_line_naming_it(tmp_path):
    with pytest.raises(ConfigError,
                       match=r"key 'imports': import 'no_such_module': no such module"):
        parse_suite({"name": "x", "imports": ["no_such_module"]}, str(tmp_path / "s.yaml"))
    with pytest.raises(ConfigError, match=r"import 'gone.py': no such file"):
        parse_suite({"name": "x", "imports": ["gone.py"]}, str(tmp_path / "s.yaml"))


def test_data_options_reach_the_loader_and_hfs_own_data_dir_reaches_load_dataset(tmp_path,
                                                                                  monkeypatch):
    import datasets

    from benchmark import data
    from benchmark.runner.main import build_suite, parse_args

    args = parse_args(["--suite", "smoke", "--data-option", "n_train=96",
                       "--data-option", "seed=3"])
    assert build_suite(args).data.options == {"n_train": 96, "n_test": 1000, "seed": 3}
    seen = {}

    def fake_load_dataset(path, *a, **kw):
        seen.update(kw, path=path)
        raise RuntimeError("stop here")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    theirs = tmp_path / "theirs"  # a folder builder's data_dir must exist (checked first)
    theirs.mkdir()
    with pytest.raises(RuntimeError, match="stop here"):
        data.load("hf:imagefolder", "train", tmp_path / "ours", data_dir=str(theirs), cache=False)
    assert seen["path"] == "imagefolder" and seen["data_dir"] == str(theirs)
    with pytest.raises(ConfigError, match="expected key=value"):
        build_suite(parse_args(["--suite", "smoke", "--data-option", "n_train"]))

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


ERASER_USING_HELPER = '''
import plugins
import {helper}

@plugins.register("{name}")
class Boxer(plugins.Eraser):
    def forward(self, images, *, cam=None, generator=None):
        return images[:, :1] * 0 + {helper}.SIZE > 0
'''


def test_editing_a_helper_module_the_eraser_file_imports_changes_its_fingerprint(
        tmp_path, private_registry, monkeypatch):
    from benchmark.suites.fingerprint import _identity

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "helper_h17f_a.py").write_text("SIZE = 4\n")
    (tmp_path / "boxes.py").write_text(ERASER_USING_HELPER.format(helper="helper_h17f_a",
                                                                  name="boxer_h17f_a"))
    parse_suite({"name": "x", "methods": ["boxer_h17f_a"]}, str(tmp_path / "s.yaml"),
                extra_imports=[str(tmp_path / "boxes.py")])
    before = _identity(provenance("boxer_h17f_a"))
    (tmp_path / "helper_h17f_a.py").write_text("SIZE = 16\n")
    after = _identity(provenance("boxer_h17f_a"))
    assert before != after and set(after) == {"sha256"}
    (tmp_path / "unrelated.py").write_text("X = 1\n")  # a file it does not import: no change
    assert _identity(provenance("boxer_h17f_a")) == after


def test_an_editable_installed_eraser_package_is_fingerprinted_by_its_files_too(
        tmp_path, private_registry, monkeypatch):
    from plugins import sources

    pkg = tmp_path / "src" / "edpkg_h17f"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(ERASER_USING_HELPER.format(
        helper="edpkg_h17f.sizes as sizes_h17f", name="boxer_h17f_b").replace(
        "edpkg_h17f.sizes as sizes_h17f.SIZE", "sizes_h17f.SIZE"))
    (pkg / "sizes.py").write_text("SIZE = 4\n")
    info = tmp_path / "site" / "edpkg_h17f-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edpkg_h17f\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("edpkg_h17f\n")
    (info / "direct_url.json").write_text(
        f'{{"url": "file://{tmp_path / "src"}", "dir_info": {{"editable": true}}}}')
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sources._distributions.cache_clear()
    monkeypatch.setattr(sources, "_distributions", sources._distributions)
    try:
        import edpkg_h17f  # noqa: F401  (registers boxer_h17f_b)

        before = provenance("boxer_h17f_b")
        assert before["package"] == "edpkg_h17f" and before["version"] == "1.0"
        (pkg / "sizes.py").write_text("SIZE = 16\n")
        assert provenance("boxer_h17f_b")["sha256"] != before["sha256"]
    finally:
        sources._distributions.cache_clear()

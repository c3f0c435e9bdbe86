"""The documentation runs as written and agrees with the code and the committed results.

Every fenced block in README.md and docs/*.md (docs/incoming/ excepted: texts waiting to be
placed) is one of:
- ```python: exec'd, in a fresh namespace, in a work folder;
- ```bash: run with bash in the same work folder, a copy of a fresh clone's configs/ and
  leaderboards/, with tiny settings appended to every command that trains a suite;
- ```yaml / ```toml: parsed (a YAML suite is loaded as a suite);
- ```text: not code (a file layout, a formula);
or it carries `<!-- not-run: REASON -->` right before it. `<!-- save-as: NAME -->` also writes
the block into the work folder under NAME, for the blocks after it.
"""

import os
import re
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import PIL.Image
import pytest
import tomllib
import torch
import yaml

import plugins
from benchmark.report import thesis
from benchmark.suites.config import load_suite
from benchmark.suites.expand import expand
from plugins import registry

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]  # docs/incoming/ is not placed yet
LANGUAGES = {"python", "bash", "yaml", "toml", "text"}
# What a training command gets appended in the test: a suite of a few seconds.
TINY = ("--epochs 1 --data-option n_train=128 --data-option n_test=64 --data-option size=16 "
        "--no-wandb --no-progress")
COMMITTED = ("configs", "leaderboards")  # what a fresh clone holds that the commands may read


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    code: str
    marks: dict = field(default_factory=dict)

    def __str__(self):
        return f"{self.path.relative_to(ROOT)}:{self.line} ({self.lang})"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, dedented, with the `<!-- key: value -->` marks on
    the lines right before each fence."""
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        indent, lang, start = len(opening.group(1)), opening.group(2), i
        i += 1
        body = []
        while not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][indent:])
            i += 1
        marks, j = {}, start - 1
        while j >= 0 and (mark := re.match(r"^\s*<!-- ([\w-]+):?\s*(.*?)\s*-->\s*$", lines[j])):
            marks[mark.group(1)] = mark.group(2)
            j -= 1
        found.append(Block(path, start + 1, lang, "\n".join(body) + "\n", marks))
        i += 1
    return found


def block_after(marker: str) -> Block:
    for path in DOCS:
        for block in blocks(path):
            if marker in {f"{k}:{v}" if v else k for k, v in block.marks.items()}:
                return block
    raise AssertionError(f"no block marked <!-- {marker} --> in README.md or docs/")


def trains(command: str) -> bool:
    """`erasebench run --suite ...` in any spelling (a dry run too: it must see the same config
    as the records it finds)."""
    return (re.search(r"(^|\s)(run|benchmark/run\.py)\s", command) is not None
            and "--suite" in command)


def tiny(command: str) -> str:
    """Append TINY to every command of the line that trains a suite."""
    parts = re.split(r"(\s*(?:&&|;|&)\s*)", command)
    return "".join(f"{p} {TINY}" if trains(p) else p for p in parts)


def shell_script(code: str) -> str:
    script = []
    for line in code.replace("\\\n", " ").splitlines():
        command = re.sub(r"\s+#\s.*$", "", line).rstrip()
        if command and not command.startswith("#"):
            script.append(tiny(command))
    return "\n".join(script)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A work folder with what a fresh clone has beside the package: configs/, leaderboards/."""
    work = tmp_path_factory.mktemp("clone")
    for name in COMMITTED:
        shutil.copytree(ROOT / name, work / name)
    (work / "benchmark").symlink_to(ROOT / "benchmark")  # `accelerate launch benchmark/run.py`
    return work


def run_shell(block: Block, work: Path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", shell_script(block.code)], cwd=work,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{block}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"


BUILT_IN = dict(registry._REGISTRY)  # the registry before any example registers its eraser


def fresh_registry(monkeypatch):
    """Each example starts from the built-in erasers, as in a fresh process: the registry holds
    the built-ins only, and no user file counts as imported yet (an earlier test may have
    imported the same my_erasers.py, whose module would otherwise be reused without registering
    again). The test's end restores both."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(BUILT_IN))
    for name in [n for n in sys.modules if n.startswith("erasebench_user_")]:
        monkeypatch.delitem(sys.modules, name)


def run_python(block: Block, work: Path, monkeypatch):
    """Exec a block as the module `docs_example`, importable while it runs, so what it defines
    pickles as a class in a user's script does."""
    monkeypatch.chdir(work)
    fresh_registry(monkeypatch)
    module = types.ModuleType("docs_example")
    monkeypatch.setitem(sys.modules, "docs_example", module)
    exec(compile(block.code, str(block), "exec"), module.__dict__)


def parse(block: Block, work: Path, monkeypatch):
    if block.lang == "toml":
        tomllib.loads(block.code)
        return
    data = yaml.safe_load(block.code)
    if isinstance(data, dict) and "methods" in data:  # a suite: it loads (and its imports run)
        monkeypatch.chdir(work)
        fresh_registry(monkeypatch)
        path = work / block.marks.get("save-as", "suite_from_docs.yaml")
        path.write_text(block.code)
        load_suite(path)


def check_blocks(path: Path, clone: Path, monkeypatch, kinds: set[str]):
    """Run (or parse) the blocks of `path` whose language is in `kinds`, in order."""
    for block in blocks(path):
        assert block.lang in LANGUAGES, f"{block}: give the block one of {sorted(LANGUAGES)}"
        if "save-as" in block.marks:
            (clone / block.marks["save-as"]).write_text(block.code)
        if "not-run" in block.marks:
            assert block.marks["not-run"], f"{block}: a not-run mark says why"
        elif block.lang not in kinds:
            continue
        elif block.lang == "python":
            run_python(block, clone, monkeypatch)
        elif block.lang == "bash":
            run_shell(block, clone)
        elif block.lang in ("yaml", "toml"):
            parse(block, clone, monkeypatch)


IDS = [str(p.relative_to(ROOT)) for p in DOCS]


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_every_python_yaml_and_toml_block_runs_or_parses_as_written(path, clone, monkeypatch):
    check_blocks(path, clone, monkeypatch, {"python", "yaml", "toml"})


@pytest.mark.slow
@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_every_shell_block_runs_on_a_fresh_clone_and_writes_over_no_committed_file(
        path, clone, monkeypatch):
    if path != README and not (clone / "runs" / "results" / "smoke").is_dir():
        run_shell(Block(README, 0, "bash", "erasebench run --suite smoke\n"), clone)
    check_blocks(path, clone, monkeypatch, {"bash"})
    for name in COMMITTED:
        for f in (ROOT / name).rglob("*"):
            if f.is_file():
                copy = clone / f.relative_to(ROOT)
                assert copy.read_bytes() == f.read_bytes(), f"{path.name} rewrote {copy}"


def test_a_block_marked_not_run_is_left_alone_and_the_others_are_found():
    marked = [b for p in DOCS for b in blocks(p) if "not-run" in b.marks]
    assert marked and all(b.marks["not-run"] for b in marked)
    assert {b.lang for p in DOCS for b in blocks(p)} <= LANGUAGES
    assert tiny("erasebench run --suite smoke --epochs 2") == (
        f"erasebench run --suite smoke --epochs 2 {TINY}")  # appended last: it wins
    assert tiny("accelerate launch benchmark/run.py --suite smoke").endswith(TINY)
    assert tiny("erasebench leaderboard --suite smoke") == "erasebench leaderboard --suite smoke"
    assert tiny("erasebench run --suite smoke --dry-run").endswith(TINY)


def test_the_example_eraser_registers_a_buildable_eraser_and_leaves_the_registry_as_it_was(
        monkeypatch, tmp_path):
    before = set(plugins.available())
    with monkeypatch.context() as m:
        run_python(block_after("example:add-eraser"), tmp_path, m)
        added = set(plugins.available()) - before
        assert added == {"left_band"}
        eraser = plugins.build("left_band")
        assert isinstance(eraser, plugins.Eraser) and eraser.params() == {"width": 8}
    assert "left_band" not in plugins.available()


def test_the_transform_example_erases_every_image_and_takes_a_pil_image_after_to_image():
    namespace = {"__name__": "docs_example"}
    block = block_after("example:transform")
    exec(compile(block.code, str(block), "exec"), namespace)
    images = namespace["images"]
    assert images.shape == (128, 3, 32, 32)
    assert (images == 0).all(dim=1).flatten(1).any(1).all()  # cutout: every image erased
    out = namespace["transform"](PIL.Image.new("RGB", (32, 32), (10, 200, 30)))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1  # the fills are in the images' units


def test_the_cam_loop_example_trains_on_the_originals_and_their_erased_copies():
    namespace = {"__name__": "docs_example"}
    block = block_after("example:cam-loop")
    exec(compile(block.code, str(block), "exec"), namespace)
    images, erased = namespace["images"], namespace["erased"]
    assert erased.shape == images.shape and not torch.equal(erased, images)
    assert torch.isfinite(namespace["loss"])


@pytest.mark.parametrize("name", ["cam_cutmix", "cam_erasing", "cutmix", "cutout", "gridmask",
                                  "hide_and_seek", "keep_cutout", "random_erasing"])
def test_the_eraser_table_lists_every_builtin(name):
    assert f"| `{name}`" in (ROOT / "docs" / "erasers.md").read_text()


def section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> list[list[str]]:
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")]
            for ln in text.splitlines() if ln.startswith("|")]
    return [r for r in rows[2:]]  # without the header and the |---| line


def test_the_readme_is_a_front_page_of_at_most_200_lines():
    assert len(README.read_text().splitlines()) <= 200


def test_ci_runs_exactly_the_readme_install_and_test_commands():
    install = blocks(README)[0]
    readme = [c for c in shell_script(install.code).splitlines()]
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln and not ln.startswith(("#", "set ", "cd "))]
    assert readme == ci == ['pip install -e ".[dev]"', "python -m pytest"]


def test_the_readme_suite_table_is_configs():
    rows = {r[0].strip("`"): r for r in table_rows(section(README.read_text(), "## Suites"))}
    assert set(rows) == {p.stem for p in (ROOT / "configs").glob("*.yaml")}
    for name, row in rows.items():
        runs = expand(load_suite(name))
        labels = {r.run_id.split("__")[1] for r in runs}
        assert (int(row[2]), int(row[3])) == (len(labels), len(runs)), name
        for hours in re.findall(r"([\d.]+) CPU-hours", row[4]):  # quoted from its leaderboard
            board = (ROOT / "leaderboards" / f"{name}.md").read_text()
            assert f"Total: {hours} CPU-hours" in board, name


def final_errors(suite: str) -> dict[str, str]:
    """method -> the resnet20 cell of a committed leaderboard's Table 2 layout."""
    text = (ROOT / "leaderboards" / f"{suite}.md").read_text()
    part = section(text, "## Final-epoch test error")
    lines = [ln for ln in part.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    row = next(r for r in table_rows(part) if r[0] == "resnet20")
    return dict(zip(header[1:], row[1:], strict=True))


def test_the_numbers_the_readme_quotes_are_the_thesis_and_the_committed_leaderboards():
    text = section(README.read_text(), "## The thesis beside ours")
    ours = {"synthetic_study": final_errors("synthetic_study"), "smoke": final_errors("smoke")}
    rows = table_rows(text)
    assert [r[0] for r in rows] == ["plain", *thesis.TABLE_2["resnet20"]]
    for method, *cells in rows:
        for model, cell in zip(("resnet20", "resnet32", "resnet44"), cells[:3], strict=True):
            published = thesis.TABLE_2[model].get(method)
            assert cell == ("—" if published is None else f"{published:.2f}"), (method, model)
        for suite, cell in zip(ours, cells[3:], strict=True):
            assert ours[suite][method].startswith(cell + " "), (suite, method, cell)
    significance = section((ROOT / "leaderboards" / "synthetic_study.md").read_text(),
                           "## Significance")
    cam = next(r for r in table_rows(significance) if r[1] == "cam_erasing")
    quoted = re.findall(r"\(p = ([\d.]+)\)", text)
    assert quoted == [f"{float(cam[4]):.2f}", f"{float(cam[6]):.2f}"]


def test_every_relative_link_in_the_docs_points_to_a_file():
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" not in target:
                assert (path.parent / target).exists(), f"{path.name}: broken link {target}"


def test_python_m_benchmark_x_commands_in_the_docs_exist():
    for path in DOCS:
        for module in set(re.findall(r"python -m (benchmark(?:\.[a-z_]+)*)", path.read_text())):
            done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{path.name}: python -m {module}: {done.stderr}"

"""The README's "Adding an eraser" example runs as written, and the eraser table stays complete."""

import re
from pathlib import Path

import pytest

import plugins
from plugins import registry

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- example:add-eraser -->"


def example_code() -> str:
    text = README.read_text()
    assert MARKER in text, f"README.md lost the {MARKER} marker"
    match = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], re.S)
    assert match, f"no ```python block after {MARKER}"
    return match.group(1)


def test_readme_add_eraser_example_runs_and_registers_a_buildable_eraser(monkeypatch):
    # A private registry copy: the example's name is gone again after the test.
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    before = set(plugins.available())
    namespace = {"__name__": "readme_example"}
    exec(compile(example_code(), str(README), "exec"), namespace)
    added = set(plugins.available()) - before
    assert len(added) == 1
    (name,) = added
    eraser = plugins.build(name)
    assert isinstance(eraser, plugins.Eraser)
    assert repr(eraser).endswith(")") and eraser.params() is not None


def test_readme_example_name_is_not_left_registered():
    assert not {"left_band"} & set(plugins.available())


@pytest.mark.parametrize("name", ["cam_erasing", "cutout", "hide_and_seek", "random_erasing"])
def test_readme_eraser_table_lists_every_builtin(name):
    section = README.read_text().split("## Erasers", 1)[-1]
    assert f"| `{name}`" in section

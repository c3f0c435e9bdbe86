"""The README's examples (adding an eraser, the transform, CAM erasing in your own loop) run
as written, and the eraser table stays complete."""

import math
import re
from pathlib import Path

import PIL.Image
import pytest
import torch

import plugins
from plugins import registry

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- example:add-eraser -->"


def example_code(marker: str = MARKER) -> str:
    text = README.read_text()
    assert marker in text, f"README.md lost the {marker} marker"
    match = re.search(r"```python\n(.*?)```", text[text.index(marker):], re.S)
    assert match, f"no ```python block after {marker}"
    return match.group(1)


def run_example(marker: str) -> dict:
    namespace = {"__name__": "readme_example"}
    exec(compile(example_code(marker), str(README), "exec"), namespace)
    return namespace


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


def test_readme_transform_example_runs_and_erases_every_image():
    namespace = run_example("<!-- example:transform -->")
    images = namespace["images"]
    assert images.shape == (128, 3, 32, 32)
    assert (images == 0).all(dim=1).flatten(1).any(1).all()  # cutout: every image erased
    out = namespace["transform"](PIL.Image.new("RGB", (32, 32), (10, 200, 30)))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_readme_cam_loop_example_runs_a_training_step_on_originals_and_erased_copies():
    namespace = run_example("<!-- example:cam-loop -->")
    images, erased = namespace["images"], namespace["erased"]
    assert erased.shape == images.shape and not torch.equal(erased, images)
    assert math.isfinite(namespace["loss"].item())

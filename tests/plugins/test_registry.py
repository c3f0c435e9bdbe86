"""Specification of the eraser registry: names, build, clear errors, entry-point plugins."""

import importlib.metadata
import sys
import types
from dataclasses import dataclass

import pytest
import torch

import plugins
from plugins import registry

BUILTINS = ["cam_cutmix", "cam_erasing", "cutmix", "cutout", "gridmask", "hide_and_seek",
            "keep_cutout", "random_erasing"]


@pytest.fixture
def isolated(monkeypatch):
    """A private copy of the registry; entry points are looked up again, from a fake list."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    found = []

    def fake_entry_points(*, group):
        assert group == "erasebench.erasers"
        return list(found)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    return found


@dataclass
class FakeEntryPoint:
    """Like importlib.metadata.EntryPoint, with a package (dist) attached."""

    name: str
    value: str
    package: str
    group: str = "erasebench.erasers"

    @property
    def dist(self):
        return types.SimpleNamespace(name=self.package)

    def load(self):
        return importlib.metadata.EntryPoint(self.name, self.value, self.group).load()


class Whole(plugins.Eraser):
    def forward(self, images, *, cam=None, generator=None):
        b, _, h, w = images.shape
        return torch.ones(b, 1, h, w, dtype=torch.bool, device=images.device)


def test_available_lists_the_builtins_sorted():
    names = plugins.available()
    assert names == sorted(names)
    assert set(BUILTINS) <= set(names)


def test_build_uses_the_defaults_and_accepts_hyperparameters():
    assert plugins.build("random_erasing").p == 0.5
    eraser = plugins.build("cutout", size=8, holes=2)
    assert eraser.params() == {"size": 8, "holes": 2, "p": 1.0}
    assert repr(eraser) == "Cutout(size=8, holes=2, p=1.0)"


def test_get_returns_the_class_so_needs_cam_is_known_before_building():
    assert plugins.get("cam_erasing").needs_cam is True
    assert plugins.get("cutout").needs_cam is False


def test_unknown_name_lists_the_available_ones_and_the_closest_match():
    with pytest.raises(ValueError) as error:
        plugins.build("random_erasin")
    message = str(error.value)
    assert "unknown eraser 'random_erasin'; did you mean 'random_erasing'?" in message
    assert ("available: cam_cutmix, cam_erasing, cutmix, cutout, gridmask, hide_and_seek, "
            "keep_cutout, random_erasing") in message


def test_unknown_name_with_nothing_close_gives_no_suggestion():
    with pytest.raises(ValueError, match=r"unknown eraser 'zzz' \(available: ") as error:
        plugins.build("zzz")
    assert "did you mean" not in str(error.value)


def test_unknown_constructor_parameter_names_the_eraser_the_key_and_the_accepted_ones():
    with pytest.raises(ValueError) as error:
        plugins.build("cutout", length=16)
    assert str(error.value) == (
        "eraser 'cutout' got unknown parameter(s) 'length'; accepted: holes, p, size"
    )


def test_duplicate_name_names_both_clashing_classes(isolated):
    with pytest.raises(ValueError) as error:
        plugins.register("cutout")(Whole)
    assert str(error.value) == (
        "eraser name 'cutout' is already registered by plugins.cutout.Cutout; "
        f"cannot register {Whole.__module__}.Whole under the same name"
    )
    assert plugins.get("cutout").__name__ == "Cutout"


def test_registering_the_same_definition_again_replaces_it(isolated):
    plugins.register("whole")(Whole)
    again = type("Whole", (plugins.Eraser,),
                 {"__module__": Whole.__module__, "__qualname__": "Whole"})
    plugins.register("whole")(again)  # e.g. importlib.reload of the defining module
    assert plugins.get("whole") is again


def test_register_rejects_non_erasers_and_bad_names(isolated):
    with pytest.raises(TypeError, match="is not a subclass of plugins.Eraser"):
        plugins.register("thing")(object)
    with pytest.raises(ValueError, match="lower_snake_case"):
        plugins.register("My Eraser")


def test_registered_plugin_is_buildable_and_unregister_removes_it(isolated):
    plugins.register("whole")(Whole)
    assert "whole" in plugins.available()
    assert plugins.build("whole")(torch.zeros(2, 3, 4, 4)).all()
    plugins.unregister("whole")
    assert "whole" not in plugins.available()


def test_entry_points_are_loaded_lazily_and_only_once(isolated, monkeypatch):
    calls = []
    fake = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: calls.append(1) or fake(**kw))
    assert calls == []
    plugins.available()
    plugins.build("cutout")
    assert calls == [1]


def test_entry_point_naming_a_class_registers_it_under_the_entry_point_name(isolated, monkeypatch):
    module = types.ModuleType("fake_erasers")
    module.Whole = Whole
    monkeypatch.setitem(sys.modules, "fake_erasers", module)
    isolated.append(FakeEntryPoint("whole_image", "fake_erasers:Whole", "fake-erasers"))
    assert "whole_image" in plugins.available()
    assert isinstance(plugins.build("whole_image"), Whole)


def test_entry_point_naming_a_module_registers_through_its_decorators(isolated, monkeypatch,
                                                                       tmp_path):
    (tmp_path / "fake_erasers_mod.py").write_text(
        "import plugins\n\n@plugins.register('from_module')\n"
        "class FromModule(plugins.Eraser):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    isolated.append(FakeEntryPoint("from_module", "fake_erasers_mod", "fake-erasers"))
    try:
        assert "from_module" in plugins.available()
        assert plugins.get("from_module").__qualname__ == "FromModule"
    finally:
        sys.modules.pop("fake_erasers_mod", None)


def test_failing_entry_point_is_a_warning_naming_it_and_its_package_and_builtins_survive(isolated):
    isolated.append(FakeEntryPoint("broken", "no_such_module_erasebench:Eraser", "broken-erasers"))
    with pytest.warns(RuntimeWarning) as record:
        names = plugins.available()
    message = str(record[0].message)
    assert "'broken'" in message and "no_such_module_erasebench:Eraser" in message
    assert "'broken-erasers'" in message and "ModuleNotFoundError" in message
    assert set(BUILTINS) <= set(names)
    assert plugins.build("random_erasing").p == 0.5


def test_entry_point_clashing_with_a_builtin_is_reported_not_raised(isolated, monkeypatch):
    module = types.ModuleType("clashing_erasers")
    module.Whole = Whole
    monkeypatch.setitem(sys.modules, "clashing_erasers", module)
    isolated.append(FakeEntryPoint("cutout", "clashing_erasers:Whole", "clashing-erasers"))
    with pytest.warns(RuntimeWarning, match="already registered by plugins.cutout.Cutout"):
        plugins.available()
    assert plugins.get("cutout").__name__ == "Cutout"


def test_params_needs_each_constructor_argument_stored_under_its_name():
    class Forgetful(plugins.Eraser):
        def __init__(self, size=3):
            self.side = size

    with pytest.raises(AttributeError, match="must store constructor argument 'size' as self.size"):
        Forgetful().params()


def test_a_plugin_returning_a_wrong_mask_is_caught_at_the_call():
    class Floaty(plugins.Eraser):
        def forward(self, images, *, cam=None, generator=None):
            return torch.zeros(images.shape[0], 1, *images.shape[2:])

    with pytest.raises(TypeError,
                       match=r"Floaty.forward must return a bool mask of shape \(2, 1, 4, 4\)"):
        Floaty()(torch.zeros(2, 3, 4, 4))

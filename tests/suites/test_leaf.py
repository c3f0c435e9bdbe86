"""The suite vocabulary is a leaf: reading a suite's config needs no torch, and what stacks is
asked of the model code, by the planner and the trainer alike."""

import subprocess
import sys

import pytest

from benchmark import cam, models
from benchmark.suites import config, plan
from benchmark.suites.config import parse_suite
from benchmark.suites.expand import expand


def test_importing_the_config_imports_no_torch():
    code = ("import sys, benchmark.suites.config as c; "
            "assert c.RunSpec and c.CAM_SOURCES; "
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')); "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_allowed_values_tuple_lives_in_the_config_and_the_code_uses_those():
    from benchmark.suites import expand as expand_mod
    from benchmark.training import graphs, pack, step
    from plugins.fill import FILL_MODES

    assert cam.SOURCES is config.CAM_SOURCES and cam.TARGETS is config.CAM_TARGETS
    assert graphs.MODES is config.GRAPHS and pack.PRECISIONS is config.PRECISIONS
    assert step.APPEND_BN is config.APPEND_BN and step.KINDS is config.STEP_KINDS
    assert expand_mod.RunSpec is config.RunSpec  # the old import place still works
    assert FILL_MODES == config.FILL_MODES  # plugins/ keeps its own copy: they must agree


def spec(model="resnet20", **method):
    s = parse_suite({"name": "leaf", "data": {"name": "synthetic"}, "train": {"epochs": 2},
                     "models": [model], "methods": [{"name": "cam_erasing", **method}]})
    return expand(s)[-1]  # the CAM run (a CAM "after" run comes after its plain run)


@pytest.mark.parametrize(("name", "stacks"), [("resnet20", True), ("resnet44_re", True),
                                              ("resnet110", True), ("timm/resnet18", False)])
def test_what_stacks_is_asked_of_the_model_code_by_name(name, stacks):
    assert models.stackable(name) is stacks
    assert plan.stacks(spec(name)) is stacks


def test_an_unknown_model_is_the_one_line_error_of_create():
    with pytest.raises(ValueError, match="unknown model 'resnet21'"):
        models.stackable("resnet21")


@pytest.mark.parametrize("name", ["resnet20", "resnet20_re", "resnet44_re"])
def test_the_head_layer_the_planner_names_is_where_the_free_cam_path_applies(name):
    model = models.create(name)
    assert cam.fast_path_applies(model, models.head_layer(name))
    assert not any(cam.fast_path_applies(model, layer) for layer in model.cam_layers[1:])


def test_a_cam_from_an_earlier_layer_or_after_training_does_not_stack():
    assert plan.stacks(spec(cam={"layer": "layer3"}))
    assert not plan.stacks(spec(cam={"layer": "layer2"}))
    assert not plan.stacks(spec(cam={"source": "after"}))


def test_the_trainer_refuses_a_pack_the_planner_would_not_form():
    from benchmark.training.pack import PackTrainer

    runs = [spec(cam={"layer": "layer2"}), spec(cam={"layer": "layer2"})]
    with pytest.raises(ValueError, match="cannot train in a stacked pack"):
        PackTrainer(runs, None, "cpu")

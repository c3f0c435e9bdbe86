"""Suite files: typed, validated, expanded into runs; a typo is an error naming file and key."""

import textwrap

import pytest

from benchmark.suites.config import ConfigError, load_suite, parse_suite
from benchmark.suites.expand import apply_overrides, expand, parse_seeds
from benchmark.suites.plan import make_packs


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_every_shipped_suite_loads_and_expands():
    from benchmark.suites.config import CONFIG_DIR

    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert ({"smoke", "thesis", "bh_sweep", "cam_timing", "resnet18", "synthetic_study"}
            <= set(names))
    for name in names:
        assert expand(load_suite(name))


def test_thesis_suite_is_three_models_by_five_methods_by_five_seeds():
    runs = expand(load_suite("thesis"))
    assert len(runs) == 3 * 5 * 5
    cam = [r for r in runs if r.method.name == "cam_erasing"]
    assert {r.method.mode for r in cam} == {"append"}
    assert {r.method.warmup_epochs for r in cam} == {150}
    baselines = [r for r in runs if r.method.name in ("random_erasing", "cutout", "hide_and_seek")]
    assert {r.method.mode for r in baselines} == {"replace"}
    assert {r.method.warmup_epochs for r in baselines} == {0}
    assert runs[0].train.milestones == [150, 225] and runs[0].train.lr == 0.1


def test_unknown_key_names_file_key_and_closest_match(tmp_path):
    p = write(tmp_path, """
        name: x
        train: {epocs: 3}
    """)
    with pytest.raises(ConfigError) as e:
        load_suite(str(p))
    msg = str(e.value)
    assert str(p) in msg and "'train.epocs'" in msg and "did you mean 'epochs'" in msg
    assert "\n" not in msg


def test_wrong_type_is_an_error(tmp_path):
    p = write(tmp_path, "name: x\ntrain: {epochs: three}\n")
    with pytest.raises(ConfigError, match=r"train.epochs.*must be an integer, got .three."):
        load_suite(str(p))


def test_unknown_eraser_lists_the_available_ones(tmp_path):
    p = write(tmp_path, "name: x\nmethods: [random_erasng]\n")
    with pytest.raises(ConfigError, match=r"methods\[0\].name.*random_erasing"):
        load_suite(str(p))


def test_bad_eraser_param_fails_at_load_time_not_mid_suite(tmp_path):
    p = write(tmp_path, "name: x\nmethods: [{name: cam_erasing, params: {bh: 2}}]\n")
    with pytest.raises(ConfigError, match=r"methods\[0\].params"):
        load_suite(str(p))


def test_unknown_suite_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"smok.*did you mean 'smoke'"):
        load_suite("smok")


def test_sweep_expands_into_labelled_methods_with_ablation_values():
    runs = expand(load_suite("bh_sweep"))
    assert [r.ablation for r in runs if r.seed == 0] == [{"b_h": b} for b in range(6)]
    assert runs[0].label == "cam_erasing(b_h=0)"
    assert {r.method.params["b_h"] for r in runs} == set(range(6))


def test_cam_after_runs_depend_on_the_plain_run_of_same_model_and_seed():
    suite = parse_suite({"name": "t", "seeds": [0, 1], "methods": [
        {"name": "cam_erasing", "sweep": {"cam.source": ["during", "after"]}}]})
    runs = expand(suite)
    after = [r for r in runs if r.method.cam.source == "after"]
    plain = {r.run_id for r in runs if r.method.is_plain}
    assert len(plain) == 2  # added as dependencies although the suite did not list plain
    assert all(r.frozen_from in plain for r in after)
    order = [r.run_id for p in make_packs(runs, "off", "cpu") for r in p.runs]
    assert max(order.index(p) for p in plain) < min(order.index(r.run_id) for r in after)


def test_epochs_override_rescales_milestones_and_warmup():
    s = apply_overrides(load_suite("thesis"), epochs=30)
    runs = expand(s)
    assert runs[0].train.milestones == [15, 22]
    assert {r.method.warmup_epochs for r in runs if r.method.name == "cam_erasing"} == {15}


def test_erasers_override_filters_methods_and_rejects_unknown():
    s = apply_overrides(load_suite("thesis"), methods=["plain", "cutout"])
    assert {m.name for m in s.methods} == {"plain", "cutout"}
    with pytest.raises(ConfigError, match="not in suite"):
        apply_overrides(load_suite("thesis"), methods=["mixup"])


def test_seed_syntax():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,2,5-6") == [0, 2, 5, 6]
    with pytest.raises(ConfigError):
        parse_seeds("a")

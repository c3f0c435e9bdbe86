"""Every point of a sweep is checked like a method's own settings: a swept value outside what is
allowed is the same one-line error, before any training, and old names are read as in a method."""

import pytest

from benchmark.suites.config import ConfigError, parse_suite


def s(sweep):
    return {"name": "sw", "data": {"name": "synthetic"}, "train": {"epochs": 4, "milestones": [3]},
            "methods": ["plain", {"name": "cam_erasing", "sweep": sweep}]}

@pytest.mark.parametrize("sweep, key", [
    ({"cam.target": ["bogus"]}, "cam.target"), ({"fill": ["bogus"]}, "fill"),
    ({"cam.source": ["bogus"]}, "cam.source"), ({"mode": ["erase"]}, "mode"),
    ({"append_bn": ["bogus"]}, "append_bn"), ({"warmup_epochs": [-3]}, "warmup_epochs"),
    ({"warmup_epochs": ["2"]}, "warmup_epochs")])
def test_a_swept_setting_is_checked_like_the_methods_own(sweep, key):
    with pytest.raises(ConfigError, match=rf"key 'methods\[1\].sweep.{key}' is"):
        parse_suite(s(sweep), source="sw.yaml")

def test_a_swept_old_cam_target_pred_is_read_as_predicted():
    suite = parse_suite(s({"cam.target": ["pred", "label"]}), source="sw.yaml")
    from benchmark.suites.expand import expand
    assert sorted({r.method.cam.target for r in expand(suite)}) == ["label", "predicted"]

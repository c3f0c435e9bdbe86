"""The eraser contract (plugins.testing), run over every registered eraser: a new eraser,
built in or registered from a user's file, gets every check for free."""

import pytest
import torch

import plugins
from plugins import testing


@pytest.mark.parametrize("check", testing.CHECKS)
@pytest.mark.parametrize("name", plugins.available())
def test_every_registered_eraser_meets_the_contract(name, check):
    testing.CHECKS[check](plugins.build(name))


class LeftBand(plugins.Eraser):
    """A deterministic user eraser (the README's toy): meets the contract."""

    def __init__(self, width: int = 3):
        self.width = width

    def forward(self, images, *, cam=None, generator=None):
        mask = torch.zeros(images.shape[0], 1, *images.shape[-2:], dtype=torch.bool,
                           device=images.device)
        mask[..., : self.width] = True
        return mask


class InPlace(LeftBand):
    def forward(self, images, *, cam=None, generator=None):
        images.mul_(1)  # same values, but written in place
        return super().forward(images)


class GlobalRng(LeftBand):
    def forward(self, images, *, cam=None, generator=None):
        return torch.rand(images.shape[0], 1, *images.shape[-2:], device=images.device) < 0.5


class Syncs(LeftBand):
    def forward(self, images, *, cam=None, generator=None):
        width = int(images.mean() > 0) + self.width  # a Python branch on a tensor value
        return super().forward(images) | (torch.arange(images.shape[-1], device=images.device)
                                          < width)


class Unstored(LeftBand):
    def __init__(self, width: int = 3, height: int = 2):
        self.width = width
        self.rows = height  # not stored under its own name


def test_a_user_eraser_that_meets_the_contract_passes_check_eraser():
    testing.check_eraser(LeftBand())


@pytest.mark.parametrize(("eraser", "message"), [
    (InPlace(), "check_input_unchanged: InPlace: modified its input"),
    (GlobalRng(), "check_generator_only_randomness: GlobalRng: drew from the global torch RNG"),
    (Syncs(), "check_no_host_sync: Syncs: needs the data of a tensor"),
])
def test_check_eraser_names_the_broken_rule_of_a_user_eraser(eraser, message):
    with pytest.raises(AssertionError, match=message):
        testing.check_eraser(eraser)


def test_check_params_catches_an_argument_not_stored_under_its_name():
    with pytest.raises(AssertionError, match="^check_params: Unstored: AttributeError: .*"
                       "must store constructor argument 'height'"):
        testing.check_params(Unstored())
    with pytest.raises(AssertionError, match="^check_params: Unstored: "):
        testing.check_eraser(Unstored())


class Uint8Mask(LeftBand):
    def forward(self, images, *, cam=None, generator=None):
        return super().forward(images).to(torch.uint8)


class ChannelMask(LeftBand):
    def forward(self, images, *, cam=None, generator=None):
        return super().forward(images).expand(-1, images.shape[1], -1, -1)


class HostMask(LeftBand):
    def forward(self, images, *, cam=None, generator=None):
        mask = torch.zeros(images.shape[0], 1, *images.shape[-2:], dtype=torch.bool)  # no device=
        mask[..., : self.width] = True
        return mask


@pytest.mark.parametrize(("eraser", "message"), [
    (Uint8Mask(), r"^check_mask: Uint8Mask: TypeError: .*must return a bool mask .* torch.uint8"),
    (ChannelMask(), r"^check_mask: ChannelMask: TypeError: .*got torch.bool \(4, 3, 8, 8\)"),
    (HostMask(), r"^check_no_host_sync: HostMask: the mask is made on cpu, not on the images' "
                 r"device: create every tensor with device=images.device"),
])
def test_a_mask_of_the_wrong_dtype_shape_or_device_is_reported_under_the_rule_it_breaks(
        eraser, message):
    with pytest.raises(AssertionError, match=message) as info:
        testing.check_eraser(eraser)
    assert "meta" not in str(info.value)                 # a device the user never used


def test_a_host_sync_is_reported_at_the_erasers_own_line_without_naming_meta_tensors():
    with pytest.raises(AssertionError, match=r"needs the data of a tensor .* at test_contract.py:"
                       r"\d+: width = int\(images.mean\(\) > 0\)") as info:
        testing.check_no_host_sync(Syncs())
    assert "meta" not in str(info.value)


def test_check_eraser_refuses_what_is_not_an_eraser():
    with pytest.raises(TypeError, match="expected a plugins.Eraser instance, got str"):
        testing.check_eraser("cutout")


def test_the_checks_are_public_as_plugins_testing_after_import_plugins():
    assert plugins.testing.check_eraser is testing.check_eraser
    public = {name for name in testing.__all__ if name.startswith("check_")}
    assert {check.__name__ for check in testing.CHECKS.values()} <= public

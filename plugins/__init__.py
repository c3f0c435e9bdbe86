"""Erasers for erasebench: the contract, the registry, the shared fill and the built-ins.

>>> import plugins
>>> eraser = plugins.build("random_erasing", p=0.5)
>>> mask = eraser(images)                 # bool (B, 1, H, W), True = erase
>>> images = plugins.fill(images, mask)   # zero fill (the thesis default)
>>> transform = plugins.Erase("cutout")   # the same as a torchvision v2 transform

``plugins.Erase`` (``plugins/transform.py``, over the functional core in
``plugins/functional.py``) and ``plugins.testing`` (the eraser contract as
public checks: ``plugins.testing.check_eraser(MyEraser())``) are imported on first use, so
``import plugins`` does not pay for importing torchvision.
"""

import importlib

# Importing the built-in modules registers them (each decorates its class with @register).
from plugins import (
    cam_cutmix,
    cam_erasing,
    cutmix,
    cutout,
    gridmask,
    hide_and_seek,
    keep_cutout,
    random_erasing,
)
from plugins.base import Eraser
from plugins.fill import fill
from plugins.registry import ENTRY_POINT_GROUP, available, build, get, register, unregister

__all__ = [
    "ENTRY_POINT_GROUP",
    "Erase",
    "Eraser",
    "available",
    "build",
    "cam_cutmix",
    "cam_erasing",
    "cutmix",
    "cutout",
    "fill",
    "functional",
    "get",
    "gridmask",
    "hide_and_seek",
    "keep_cutout",
    "random_erasing",
    "register",
    "testing",
    "unregister",
]


def __getattr__(name: str):
    """Lazy ``plugins.Erase`` / ``transform`` / ``functional`` / ``testing`` (PEP 562):
    torchvision loads on first use."""
    if name in ("Erase", "transform"):
        module = importlib.import_module("plugins.transform")
        return module if name == "transform" else module.Erase
    if name in ("testing", "functional"):
        return importlib.import_module(f"plugins.{name}")
    raise AttributeError(f"module 'plugins' has no attribute {name!r}")

"""Erasers for erasebench: the contract, the registry, the shared fill and the built-ins.

>>> import plugins
>>> eraser = plugins.build("random_erasing", p=0.5)
>>> mask = eraser(images)                 # bool (B, 1, H, W), True = erase
>>> images = plugins.fill(images, mask)   # zero fill (the thesis default)
"""

# Importing the built-in modules registers them (each decorates its class with @register).
from plugins import cam_erasing, cutout, hide_and_seek, random_erasing
from plugins.base import Eraser
from plugins.fill import fill
from plugins.registry import ENTRY_POINT_GROUP, available, build, get, register, unregister

__all__ = [
    "ENTRY_POINT_GROUP",
    "Eraser",
    "available",
    "build",
    "cam_erasing",
    "cutout",
    "fill",
    "get",
    "hide_and_seek",
    "random_erasing",
    "register",
    "unregister",
]

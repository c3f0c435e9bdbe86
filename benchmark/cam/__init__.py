"""Batched Grad-CAM / CAM on the device: the generic path, the free GAP+FC path, peaks, sources.

Everything here works on whole batches with tensor ops and no host synchronisation, so a
training step that asks for a CAM can still be captured in one CUDA graph. Computing a CAM
never changes the model: not its parameters, their `.grad`, BatchNorm buffers or train/eval
mode (see `eval_mode` and `grad_cam` for how).

The caller's ambient torch context never changes a map: every public CAM function
(`grad_cam`, `cam_from_features`, `resize`, `cam_boxes`, `fast_path_applies`, `LiveCam`,
`FrozenCam`, `erase_with_model`) computes in float32 with autocast switched off (a bf16/fp16
autocast region of a mixed-precision training step gives the float32 map, not a
half-precision one), the same under `torch.no_grad()`, `torch.enable_grad()` and
`torch.inference_mode()`, and the same whether the model is in train or eval mode (the
model's own forward runs in the dtype of its parameters).

Models whose forward returns something other than the logits (a `(logits, features)`
tuple, a dict) are refused in one line naming what came back; pass `logits=` (an index,
a key, or a function of the output) to select them.

The package, one job a module: `context` (the plain float32 context, logits selection, input
checks), `layers` (the default layer and its probe), `kernels` (`grad_cam`,
`cam_from_features`, `resize`), `fast_path` (the GAP + linear probe and its cache), `boxes`
(`cam_boxes`, `peaks`), `sources` (`LiveCam`, `FrozenCam`, checkpoint loading, `cam_source`)
and `erasing` (`erase_with_model`, erasing in your own loop). Every public name is here too:
`from benchmark import cam; cam.grad_cam(...)`.
"""

from __future__ import annotations

import warnings

from benchmark.cam.boxes import cam_boxes, peaks
from benchmark.cam.context import LogitsSelector, plain_context, select_logits
from benchmark.cam.erasing import Mixed, erase_with_model
from benchmark.cam.fast_path import FAST_PATH_CACHE, fast_path_applies, fast_path_cached
from benchmark.cam.kernels import cam_from_features, grad_cam, resize
from benchmark.cam.layers import default_layer
from benchmark.cam.sources import SOURCES, TARGETS, FrozenCam, LiveCam, cam_source, frozen_cam_fn

__all__ = ["SOURCES", "TARGETS", "FAST_PATH_CACHE", "FrozenCam", "LiveCam", "LogitsSelector",
           "Mixed", "cam_boxes", "cam_from_features", "cam_source", "default_layer",
           "erase_with_model", "fast_path_applies", "fast_path_cached", "frozen_cam_fn",
           "grad_cam", "peaks", "plain_context", "resize", "select_logits"]
# peaks: the plugins' one rule, re-exported


def erase(*args, **kwargs):
    """Deprecated name of :func:`erase_with_model` (same arguments, same result)."""
    warnings.warn("benchmark.cam.erase is now benchmark.cam.erase_with_model",
                  DeprecationWarning, stacklevel=2)
    return erase_with_model(*args, **kwargs)

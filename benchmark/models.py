"""Models: He et al.'s CIFAR ResNets and any timm model (ResNets get a CIFAR stem).

Every model from `create` has timm's interface (`forward_features`, `forward_head`,
`get_classifier`, `num_features`, `num_classes`) and a `cam_layers` list, so CAM code
treats all models alike.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["available", "create", "eval_mode", "feature_map_sizes", "head_layer", "in_channels",
           "stackable", "CifarResNet"]

# depth -> blocks per stage (depth = 6n + 2)
_CIFAR_DEPTHS = (20, 32, 44, 56, 110)
TIMM_PREFIX = "timm/"


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode for the block, then restore each flag exactly.

    Chosen over saving/restoring buffers: in eval mode BatchNorm neither reads batch
    statistics nor updates running_mean/var/num_batches_tracked, and dropout draws no
    random numbers, so the CAM is deterministic and the model (and the global RNG) is
    untouched. Flags are restored per module because a model may mix modes (e.g. frozen BN).
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


# --- He et al. 2016 CIFAR ResNets (option-A shortcuts) --------------------------------------


class ShortcutA(nn.Module):
    """Option-A shortcut: stride-2 subsampling and zero channels on both sides; no parameters."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.extra // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus the identity (or option-A) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = ShortcutA(planes - in_planes)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1-3x3-1x1 bottleneck (expansion 4) with a 1x1-conv + BN shortcut (option B)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = _shortcut_b(in_planes, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + self.shortcut(x))


class BasicBlockB(BasicBlock):
    """Basic block with an option-B (1x1 conv + BN) projection shortcut where shapes change."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__(in_planes, planes, stride)
        self.shortcut = _shortcut_b(in_planes, planes, stride)


def _shortcut_b(in_planes: int, out: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_planes, out, 1, stride, bias=False), nn.BatchNorm2d(out))


class CifarResNet(nn.Module):
    """CIFAR ResNet: 3x3 stem (16), stages 16/32/64 of `n` blocks, GAP + linear.

    `variant="he"`: He et al. 2016 with option-A shortcuts and the Kaiming init of
    akamaster/pytorch_resnet_cifar10 (the thesis' models). `variant="re"`: the Random
    Erasing repository's models (option-B shortcuts, bottleneck blocks from depth 44).
    """

    HEAD_LAYER = "layer3"  # the stage whose output feeds GAP + fc (the free CAM path's layer)

    def __init__(self, depth: int, num_classes: int = 10, variant: str = "he", in_chans: int = 3):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth={depth}: a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110)")
        if variant not in ("he", "re"):
            raise ValueError(f"variant={variant!r}: allowed 'he' (option A) "
                             "or 're' (Random Erasing repo)")
        n = (depth - 2) // 6
        if variant == "he":
            block = BasicBlock
        else:
            block = Bottleneck if depth >= 44 else BasicBlockB
        expansion = getattr(block, "expansion", 1)
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self._in = 16
        self.layer1 = self._stage(block, 16, n, 1)
        self.layer2 = self._stage(block, 32, n, 2)
        self.layer3 = self._stage(block, 64, n, 2)
        self.num_features = 64 * expansion
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)
        self.cam_layers = [self.HEAD_LAYER, "layer2", "layer1"]
        self._init(variant)

    def _stage(self, block, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self._in, planes, s))
            self._in = planes * getattr(block, "expansion", 1)
        return nn.Sequential(*layers)

    def _init(self, variant: str) -> None:
        for m in self.modules():
            if variant == "he" and isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)  # akamaster's _weights_init (fan_in)
            elif variant == "re" and isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (B, num_features, H/4, W/4), before pooling."""
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        return self.fc


# --- timm models ------------------------------------------------------------------------------


def _cifar_stem(model: nn.Module) -> None:
    """Replace a timm ResNet's 7x7/2 stem conv and max-pool by one 3x3/1 conv (stem width kept)."""
    width = model.bn1.num_features
    first = model.conv1 if isinstance(model.conv1, nn.Conv2d) else model.conv1[0]
    conv = nn.Conv2d(first.in_channels, width, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    model.conv1 = conv
    model.maxpool = nn.Identity()


def _timm_cam_layers(model: nn.Module, probe_size: int) -> list[str]:
    """4-D maps from the head's input backwards: the module whose output `forward_features`
    returns, then the stage outputs of timm's feature_info (stem dropped), last first."""
    info = getattr(model, "feature_info", None) or []
    entries = list(getattr(info, "info", info))
    stages = [e["module"] for e in entries if e.get("reduction", 4) > 2 and e.get("module")]
    calls: list[tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: calls.append((n, out)))
             for n, m in model.named_modules() if n and not isinstance(m, nn.Identity)]
    try:
        with torch.no_grad(), eval_mode(model):
            feats = model.forward_features(torch.zeros(1, in_channels(model), probe_size,
                                                       probe_size))
    finally:
        for h in hooks:
            h.remove()
    four_d = {n for n, out in calls if isinstance(out, torch.Tensor) and out.dim() == 4}
    # hooks fire child before parent, so the last match is the outermost module giving `feats`;
    # a feature_info stage that gives `feats` is preferred (convnext: 'stages.3', not 'stages')
    matches = [n for n, out in calls if out is feats and n in four_d]
    head_input = [n for n in matches if n in stages][-1:] or matches[-1:]
    ordered = head_input + [n for n in stages[::-1] if n in four_d and n not in head_input]
    return ordered


def _create_timm(name: str, num_classes: int, *, cifar_stem: bool = True, **kwargs) -> nn.Module:
    import timm

    check(TIMM_PREFIX + name)
    kwargs.setdefault("pretrained", False)  # pretrained weights only as an explicit choice
    model = timm.create_model(name, num_classes=num_classes, **kwargs)
    from timm.models.resnet import ResNet

    is_resnet = isinstance(model, ResNet)
    if is_resnet and cifar_stem:
        _cifar_stem(model)
    size = (32 if is_resnet and cifar_stem
            else int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]))
    model.cam_layers = _timm_cam_layers(model, size)
    return model


# --- public API -------------------------------------------------------------------------------


def available() -> list[str]:
    """Names `create` accepts; besides these, 'timm/<any timm model>'."""
    cifar = [f"resnet{d}" for d in _CIFAR_DEPTHS]
    return cifar + [f"{n}_re" for n in cifar] + [TIMM_PREFIX + "<timm model name>"]


def _cifar_name(name: str) -> tuple[int, str]:
    """(depth, variant) of a CIFAR ResNet name, or a one-line error listing the known names."""
    variant, base = ("re", name[: -len("_re")]) if name.endswith("_re") else ("he", name)
    depth = base[len("resnet"):] if base.startswith("resnet") else ""
    if not (depth.isdigit() and int(depth) in _CIFAR_DEPTHS):
        known = available()
        close = difflib.get_close_matches(name, known[:-1], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}; known: {', '.join(known)}{hint}")
    return int(depth), variant


def check(name: str) -> None:
    """Raise the one-line error `create` would, without building the model."""
    if name.startswith(TIMM_PREFIX):
        import timm

        short = name[len(TIMM_PREFIX):]
        if not timm.is_model(short):
            similar = difflib.get_close_matches(short, timm.list_models(), n=5, cutoff=0.6)
            hint = f"; similar: {', '.join(similar)}" if similar else ""
            raise ValueError(f"model {name!r}: timm has no model {short!r}{hint} "
                             "(all names: timm.list_models())")
        return
    _cifar_name(name)


def stackable(name: str) -> bool:
    """Whether runs of model `name` can train side by side as one stacked network
    (training/stack.py): the He et al. and RE-repo CIFAR ResNets can; timm models train one
    per network. Decided from the name (nothing is built); an unknown name raises the one-line
    ValueError of `create`. suites/plan.py and training/pack.py both ask this."""
    if name.startswith(TIMM_PREFIX):
        return False
    _cifar_name(name)
    return True


def head_layer(name: str) -> str | None:
    """The layer of model `name` whose output feeds its GAP + linear head, where a CAM comes
    free from the training forward (`cam.cam_from_features`): 'layer3' for the CIFAR ResNets;
    None where that is not known without building the model (timm: `cam.fast_path_applies`
    probes it). tests/test_models.py checks it against that probe."""
    return CifarResNet.HEAD_LAYER if stackable(name) else None


def create(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build a model by name: resnet20/32/44/56/110, resnetN_re, or timm/<name> (kwargs to timm)."""
    if name.startswith(TIMM_PREFIX):
        return _create_timm(name[len(TIMM_PREFIX):], num_classes, **kwargs)
    depth, variant = _cifar_name(name)
    return CifarResNet(depth, num_classes, variant=variant, **kwargs)


def feature_map_sizes(model: nn.Module, image_size: int = 32, *, layers: list[str] | None = None,
                      strict: bool = True) -> dict[str, tuple[int, int]]:
    """(h, w) of each layer's output for one image_size x image_size input (one hooked forward).

    `layers` defaults to `model.cam_layers`. Non-4-D outputs raise (strict) or are left out.
    """
    layers = list(model.cam_layers if layers is None else layers)
    if not layers:
        return {}
    modules = dict(model.named_modules())
    missing = [n for n in layers if n not in modules]
    if missing:
        raise ValueError(f"layers {missing} not in the model; it has e.g. {list(modules)[1:8]}")
    shapes: dict[str, tuple] = {}
    hooks = [modules[n].register_forward_hook(
        lambda _m, _i, out, n=n: shapes.__setitem__(n, tuple(out.shape))) for n in layers]
    param = next(model.parameters(), None)
    device = param.device if param is not None else "cpu"
    chans = getattr(model, "in_chans", None) or in_channels(model)
    try:
        with torch.no_grad(), eval_mode(model):
            model(torch.zeros(1, chans, image_size, image_size, device=device))
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for n in layers:
        shape = shapes.get(n)
        if shape is not None and len(shape) == 4:
            out[n] = (shape[2], shape[3])
        elif strict:
            raise ValueError(f"layer {n!r} gives output shape {shape}, not a 4-D feature map")
    return out


def in_channels(model: nn.Module) -> int:
    """The number of input channels a model takes (its first conv's; 3 if it has none)."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3

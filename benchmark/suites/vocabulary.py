"""The suite's vocabulary: every allowed value of a suite key, the config dataclasses and
`RunSpec`, here once, in a module that imports no torch (tests/suites/test_leaf.py). Training,
the CAM code, the runner and the report import these (`benchmark.suites.config` names them too).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("replace", "append")  # a method erases in place, or appends erased copies
STEP_KINDS = ("plain", *MODES)  # the step a run takes in an epoch (training/step.py)
APPEND_BN = ("joint", "split")  # append mode: originals + copies as one BatchNorm batch, or two
CAM_SOURCES = ("during", "after")  # the model being trained, or a frozen plain model
CAM_TARGETS = ("label", "predicted")  # the CAM of the true class, or of the argmax
GRAPHS = ("auto", "on", "off")  # train.graphs: capture the step in a CUDA graph
PRECISIONS = ("no", "bf16")  # --precision: fp32, or bf16 autocast
# plugins/ imports nothing from benchmark/, so plugins.fill keeps its own copy of this tuple;
# tests/suites/test_leaf.py checks that the two are equal.
FILL_MODES = ("zero", "mean", "random", "channel")
PASTE = "paste"  # the fill of mixing erasers (plugins.mixing.PASTE): the partner's region
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
PLAIN = "plain"


class ConfigError(ValueError):
    """A suite file is wrong; the message names the file and the key."""


@dataclass
class DataConfig:
    name: str = "synthetic"  # synthetic | cifar10 | cifar100 | hf:<id>[:<config>]
    root: str | None = None  # where erasebench's datasets live; default: $ERASEBENCH_DATA or ./data
    download: bool = False  # fetch CIFAR with torchvision when absent (needs the network)
    options: dict = field(default_factory=dict)  # passed to benchmark.data.load

    @property
    def data_dir(self) -> str | None:
        """`root` under its old name (YAML `data.data_dir` is still read as `data.root`)."""
        return self.root


@dataclass
class TrainConfig:
    epochs: int = 300
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    milestones: list[int] = field(default_factory=lambda: [150, 225])  # MultiStepLR, in epochs
    gamma: float = 0.1
    pad: int = 4  # random crop after zero padding
    flip: bool = True
    eval_batch_size: int = 1000
    checkpoint_every: int = 10  # epochs between resumable checkpoints (0: never)
    # NHWC: ~20% faster for ResNet20 on the CPU; false for the NCHW reference
    channels_last: bool = True
    # Speed options: they change how fast a run trains, never its result (see docs/architecture.md).
    graphs: str = "auto"  # auto | on | off: capture the step in a CUDA graph (auto: on CUDA)
    pack: int | str = "auto"  # auto | off | K: train up to K runs as one stacked network
    share_warmup: bool = True  # fork a CAM run's plain warm-up from the matching plain run


@dataclass
class CamConfig:
    source: str = "during"  # during: the model being trained; after: a frozen plain model
    layer: str | None = None  # None: the layer feeding the head (model.cam_layers[0])
    target: str = "label"  # label: ground truth (the thesis's natural reading); predicted: argmax


@dataclass
class MethodConfig:
    name: str = PLAIN  # "plain" or an eraser registry name
    params: dict = field(default_factory=dict)  # eraser constructor arguments
    label: str | None = None  # display name; default: the name plus the swept values
    mode: str | None = None  # replace | append; None: append for CAM erasers, else replace
    warmup_epochs: int | None = None  # epochs without erasing; None: half for append, else 0
    # zero | mean | random | channel (plugins.fill.FILL_MODES) | paste (mixing erasers: the
    # partner image's same region); None: paste for a mixing eraser, else zero
    fill: str | None = None
    append_bn: str = "joint"  # append mode: joint (originals + copies, one BN batch) | split
    cam: CamConfig = field(default_factory=CamConfig)
    sweep: dict = field(default_factory=dict)  # {param or cam.source/...: [values]}

    @property
    def is_plain(self) -> bool:
        return self.name == PLAIN

    @property
    def needs_cam(self) -> bool:
        import plugins

        return not self.is_plain and plugins.get(self.name).needs_cam


@dataclass
class SuiteConfig:
    name: str
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    models: list[str] = field(default_factory=lambda: ["resnet20"])
    seeds: list[int] = field(default_factory=lambda: [0])
    methods: list[MethodConfig] = field(default_factory=lambda: [MethodConfig()])
    imports: list[str] = field(default_factory=list)  # modules or .py files that register erasers
    file: str = "<dict>"  # the file it came from (not a YAML key)


def to_dict(obj) -> dict:
    d = dataclasses.asdict(obj)
    d.pop("file", None)
    return d


@dataclass
class RunSpec:
    """Everything one training run needs; stored resolved in its result record
    (suites/expand.py makes them from a suite)."""

    suite: str
    run_id: str
    model: str
    seed: int
    method: MethodConfig
    data: DataConfig
    train: TrainConfig
    ablation: dict = field(default_factory=dict)
    frozen_from: str | None = None  # run_id whose final checkpoint is the frozen CAM model (after)
    fork_from: str | None = None  # run_id whose state at warmup_epochs this run starts from
    fork_epochs: list[int] = field(default_factory=list)  # epochs at which it saves fork states

    @property
    def label(self) -> str:
        return self.method.label or self.method.name

    def to_dict(self) -> dict:
        return to_dict(self)

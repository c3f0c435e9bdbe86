"""`erasebench speed train`: images/s of one training step along four paths, in one process:
(a) the classic pipeline (per-image PIL transforms, DataLoader workers, eager fp32), (b) the
runner's eager step with the data on the device, (c) that step as a CUDA graph, (d) graphed
and stacked K = 4, 8, 16; for resnet20 and resnet44, the plain and CAM-append steps; then the
append step with one BatchNorm batch of 2B vs two of B (B: `--batch`). First, the op counts of
K-run steps (`--op-count-k`, tools/op_count.py), each line printed as it is counted. Writes the
table to `--out` (default runs/speed.md, untracked; the committed leaderboards/speed.md only
when named there) with the device, the versions, the command and the op counts, rewritten after
every op count and measured row: a SIGTERM (handled from the start) or a failed path leaves
what was counted and measured so far, and a failed path is a row saying why."""

from __future__ import annotations

import os
import platform
import shlex
import signal

import torch

from benchmark.eraser_cli import device_arg, one_line_errors
from benchmark.fileio import atomic_write
from benchmark.timing import per_call
from benchmark.tools.op_count import iter_goal_lines

TRAIN_KINDS = {"plain": "plain", "cam-append": "cam_erasing"}


class _ClassicSet(torch.utils.data.Dataset):
    """CIFAR-shaped images as PIL, through per-image torchvision transforms (the classic input)."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def _classic_seconds(model_name: str, kind: str, device, args) -> float:
    """(a): a torchvision Dataset with per-image PIL transforms and per-image RandomErasing, a
    DataLoader with workers, an eager fp32 step. The CAM-append row feeds the same loader's
    batches to the eager append step (the CAM needs the model, so it cannot be per-image)."""
    import numpy as np
    import torch.nn.functional as F
    from torchvision import transforms as T

    import plugins
    from benchmark import cam, models

    rng = np.random.default_rng(0)
    n = args.batch * (args.warmup + args.steps + 1)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    tf = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
          T.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))]
    if kind == "plain":
        tf.append(T.RandomErasing(p=0.5, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=0))
    loader = torch.utils.data.DataLoader(
        _ClassicSet(images, labels, T.Compose(tf)), batch_size=args.batch, shuffle=True,
        num_workers=args.workers, drop_last=True, pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0)
    torch.manual_seed(0)
    model = models.create(model_name).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    eraser = plugins.build("cam_erasing")
    batches = iter(loader)

    def step():
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if kind == "plain":
            loss = F.cross_entropy(model(x), y)
        else:
            with torch.no_grad():
                feats = model.forward_features(x)
            cmap = cam.cam_from_features(feats, model.fc.weight, y, size=(32, 32))
            xe = plugins.fill(x, eraser(x, cam=cmap))
            loss = F.cross_entropy(model(torch.cat([x, xe])), torch.cat([y, y]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return per_call(step, device, warmup=args.warmup, calls=args.steps)


def _pack_seconds(model_name: str, kind: str, k: int, graphs: str, device, args,
                  append_bn: str = "joint") -> float:
    """Seconds per step of a pack of k runs of one step kind, via the runner's own trainer."""
    from benchmark.suites.config import parse_suite
    from benchmark.suites.expand import expand
    from benchmark.tools import cost

    method = TRAIN_KINDS[kind]
    entry = method if method == "plain" else {"name": method, "warmup_epochs": 0,
                                              "append_bn": append_bn}
    suite = parse_suite({"name": "speed", "data": {"name": "cifar10"},
                         "train": {"epochs": 1, "batch_size": args.batch, "milestones": [1],
                                   "graphs": graphs},
                         "models": [model_name], "seeds": list(range(k)), "methods": [entry]})
    specs = expand(suite)
    precision = "bf16" if device.type == "cuda" else "no"
    rates = cost.calibrate(specs, device, (50_000, 10_000, 10, False), precision,
                           steps_only=True, timed_steps=args.steps)
    if graphs == "on" and not rates["graphs"]:
        raise RuntimeError(f"{model_name} {kind}: the step was not captured")
    return rates["plain" if kind == "plain" else "append"]


def _paths(model_name: str, kind: str, device, args) -> list[tuple[str, int, object]]:
    """(path, K, measure) of one model and step kind: `measure()` returns seconds per step;
    None where CUDA is missing. Nothing is measured until `measure` is called."""
    def pack(k, graphs):
        return lambda: _pack_seconds(model_name, kind, k, graphs, device, args)

    cuda = device.type == "cuda"
    paths = [("(a) classic DataLoader, per-image transforms, fp32", 1,
              lambda: _classic_seconds(model_name, kind, device, args)),
             ("(b) eager, on the device", 1, pack(1, "off")),
             ("(c) graphed", 1, pack(1, "on") if cuda else None)]
    paths += [(f"(d) graphed + stacked, K = {k}", k, pack(k, "on") if cuda else None)
              for k in args.stack]
    return paths


class _Stopped(Exception):
    """SIGTERM arrived (gpu_check's deadline, SLURM): write what is measured and stop."""


def _raise_stopped(signum, frame):
    raise _Stopped(signal.Signals(signum).name)


class _Table:
    """The speed table, rewritten (atomically) after every measured row, so a SIGTERM or a row
    that fails leaves a table with every row measured so far."""

    def __init__(self, device, args):
        self.device, self.args = device, args
        self.rows: list[dict] = []
        self.bn_rows: list[dict] = []
        self.op_lines: list[str] = []
        self.note = ""

    def text(self) -> str:
        return (_train_table(self.rows, self.device, self.args, self.note)
                + _append_bn_table(self.bn_rows, self.args.batch)
                + _op_count_section(self.op_lines, self.args.op_count_k))

    def write(self) -> None:
        if self.args.out:
            atomic_write(self.args.out, self.text())


def _measure(measure) -> tuple[float | None, str | None]:
    """(seconds per step, None) or (None, the one-line reason it failed)."""
    from benchmark.results import one_line

    try:
        return measure(), None
    except (_Stopped, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - one failed path (a capture) must not lose the rest
        return None, one_line(e, 200)


def _step_rows(model_name: str, kind: str, device, args, table: _Table) -> None:
    """Measure one model and step kind path by path; each row printed, flushed and written as
    soon as it is measured."""
    images = args.batch * (1 if kind == "plain" else 2)
    base = None
    for path, k, measure in _paths(model_name, kind, device, args):
        sec, error = (None, None) if measure is None else _measure(measure)
        if path.startswith("(a)"):
            base = sec
        row = {"model": model_name, "step": kind, "path": path, "k": k, "error": error,
               "ms_per_step": None if sec is None else 1e3 * sec,
               "images_per_s": None if sec is None else k * images / sec,
               "x_classic": None if sec is None or base is None else k * base / sec}
        table.rows.append(row)
        table.write()
        print(f"row: {_row_line(row)}", flush=True)


def train(args) -> int:
    """`train`: images/s of one training step along the paths (a) to (d), for resnet20/44 and
    the plain and CAM-append steps, as ratios to (a), all in this one process; first the op
    counts of K = `--op-count-k` steps (0: none). Each op-count line and each row is printed
    and the table (`--out`) rewritten as soon as it is counted or measured; a path that fails is
    a row saying so and the others continue; SIGTERM (handled before any work) stops it with
    what was counted and measured so far written. Returns 0, 1 when a row failed, 143 when
    stopped by SIGTERM."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.steps = args.steps or (20 if device.type == "cuda" else 3)
    table = _Table(device, args)
    previous = signal.signal(signal.SIGTERM, _raise_stopped)  # before any work
    code = 0
    try:
        if args.op_count_k:  # the steps' op counts (issue 18: at most 600 for K = 16)
            for line in iter_goal_lines(args.op_count_k):
                print(line, flush=True)
                table.op_lines.append(line)
                table.write()
        else:
            print(_NOT_COUNTED, flush=True)
        for model_name in args.models:
            for kind in ("plain", "cam-append"):
                _step_rows(model_name, kind, device, args, table)
        for model_name in args.models:
            table.bn_rows.append(_append_bn_row(model_name, device, args))
            table.write()
    except _Stopped as e:
        table.note = (f"Stopped by {e} after {len(table.rows) + len(table.bn_rows)} rows: the "
                      "rows below are the ones measured before it.")
        code = 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    table.write()
    print(table.text(), flush=True)
    if args.out:
        print(f"wrote {args.out}", flush=True)
    failed = any(r.get("error") for r in table.rows + table.bn_rows)
    return code or (1 if failed else 0)


def _row_line(r: dict) -> str:
    what = f"{r['model']} {r['step']} {r['path']}"
    if r.get("error"):
        return f"{what}: failed: {r['error']}"
    if r["ms_per_step"] is None:
        return f"{what}: not measured (no CUDA device)"
    return f"{what}: {r['ms_per_step']:.2f} ms/step, {r['images_per_s']:,.0f} images/s"


def _append_bn_row(model_name: str, device, args) -> dict:
    """The append step with one BatchNorm batch of 2B (joint, the default) and two of B (split),
    timed back to back on the fastest single-run path of this device."""
    graphs = "on" if device.type == "cuda" else "off"
    sec, errors = {}, []
    for bn in ("joint", "split"):
        sec[bn], error = _measure(lambda bn=bn: _pack_seconds(
            model_name, "cam-append", 1, graphs, device, args, append_bn=bn))
        if error:
            errors.append(f"{bn}: {error}")
    row = {"model": model_name, "path": "(c) graphed" if graphs == "on" else "(b) eager",
           "joint_ms": sec["joint"] and 1e3 * sec["joint"],
           "split_ms": sec["split"] and 1e3 * sec["split"], "error": "; ".join(errors) or None}
    if row["error"]:
        print(f"row: {model_name} cam-append joint vs split: failed: {row['error']}", flush=True)
    else:
        print(f"row: {model_name} cam-append joint {row['joint_ms']:.2f} vs split "
              f"{row['split_ms']:.2f} ms/step", flush=True)
    return row


_NOT_COUNTED = "op counts: not counted (--op-count-k 0)"


def _op_count_section(lines: list[str], k: int) -> str:
    """The op counts made so far (each line as `iter_goal_lines` yields it)."""
    out = ["", f"## Top-level aten ops of one K = {k} step (tools/op_count.py)", ""]
    if not k:
        out.append(_NOT_COUNTED)
    elif not lines:
        out.append("(none counted)")
    out += [f"- {line}" for line in lines]
    return "\n".join(out) + "\n"


def _append_bn_table(rows, batch: int) -> str:
    out = ["", f"## The append step: one BatchNorm batch of {2 * batch} or two of {batch}", "",
           "`append_bn: joint` (the default, as the thesis trains) takes the CAM from an extra "
           f"no-grad forward of the {batch} originals, then trains the {2 * batch} images as "
           "one batch; "
           "`split` gets the CAM free from the originals' training forward and runs the erased "
           "copies as a second batch.", "",
           "| model | path | joint ms / step | split ms / step | joint / split |",
           "|---|---|---|---|---|"]
    if not rows:
        out.append("| (not measured) | | | | |")
    for r in rows:
        if r.get("error"):
            out.append(f"| {r['model']} | {r['path']} | failed: {r['error']} | | |")
        else:
            out.append(f"| {r['model']} | {r['path']} | {r['joint_ms']:.2f} | "
                       f"{r['split_ms']:.2f} | {r['joint_ms'] / r['split_ms']:.2f}x |")
    return "\n".join(out) + "\n"


def _train_table(rows, device, args, note: str = "") -> str:
    import torchvision

    cuda = device.type == "cuda"
    name = (torch.cuda.get_device_name(device) if cuda
            else f"CPU ({torch.get_num_threads()} threads)")
    out = ["# Training-step speed", "",
           f"Generated by `{shlex.join(['erasebench', 'speed', *args.argv])}`; "
           "do not edit by hand.", "",
           f"Device: {name} · torch {torch.__version__} · torchvision {torchvision.__version__} "
           f"· Python {platform.python_version()} · batch {args.batch} · "
           f"{'bf16 autocast for (b)-(d)' if cuda else 'fp32'} · the mean of "
           f"{args.steps} timed steps after warm-up (and, for (c) and (d), the capture).", "",
           "(a) is the classic pipeline: a torchvision Dataset with per-image PIL transforms "
           "(crop, flip, normalise; per-image RandomErasing for the plain step), a DataLoader "
           f"with {args.workers} workers, eager fp32. (b) is the runner's eager step with the "
           "data on the device. (c) captures the whole step in one CUDA graph. (d) stacks K "
           "runs in one grouped network, graphed; its images/s are the K runs' total. The "
           f"CAM-append step trains {args.batch} originals + {args.batch} CAM-erased copies.", "",
           *([note, ""] if note else []),
           "| model | step | path | ms / step | images/s | x (a) |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("error"):
            out.append(f"| {r['model']} | {r['step']} | {r['path']} | failed: {r['error']} "
                       "| — | — |")
        elif r["ms_per_step"] is None:
            out.append(f"| {r['model']} | {r['step']} | {r['path']} | — | — | — |")
        else:
            x = "—" if r["x_classic"] is None else f"{r['x_classic']:.1f}x"
            out.append(f"| {r['model']} | {r['step']} | {r['path']} | {r['ms_per_step']:.2f} "
                       f"| {r['images_per_s']:,.0f} | {x} |")
    if not cuda:
        out += ["", "Paths (c) and (d) are empty: CUDA graphs need a GPU, and this device is a "
                "CPU (where stacking gains nothing either)."]
    out += ["", *_targets(rows, args.batch)]
    return "\n".join(out) + "\n"


def _targets(rows, batch: int) -> list[str]:
    """The issue's targets, checked against this table (where the paths were measured); the
    heading names the batch these rows were measured at (the targets are stated for 128)."""
    def ms(model, step, prefix):
        for r in rows:
            if r["model"] == model and r["step"] == step and r["path"].startswith(prefix):
                return r
        return None

    lines = [f"## Targets (ResNet20, measured at batch {batch}; the targets are for batch 128)",
             ""]
    g = ms("resnet20", "plain", "(c)")
    s16 = ms("resnet20", "plain", "(d) graphed + stacked, K = 16")
    if g and g.get("ms_per_step") is not None:
        if g["x_classic"] is not None:
            lines.append(f"- graphed vs (a): {g['x_classic']:.1f}x (target: at least 5x)")
        if s16 and s16.get("ms_per_step") is not None:
            lines.append(f"- stacked K = 16 vs one graphed run: "
                         f"{s16['images_per_s'] / g['images_per_s']:.2f}x (target: at least 2.5x)")
        path = "(c)"
    else:
        lines.append("- graphed and stacked targets: not measured (no CUDA device)")
        path = "(b)"
    p, a = ms("resnet20", "plain", path), ms("resnet20", "cam-append", path)
    if p and a and p.get("ms_per_step") and a.get("ms_per_step"):
        lines.append(f"- a CAM-append step costs {a['ms_per_step'] / p['ms_per_step']:.2f}x "
                     f"a plain step on path {path} (target: at most 2.3x)")
    return lines


def register(sub) -> None:
    p = sub.add_parser("train",
                       help="training-step images/s: classic vs eager vs graphed vs stacked")
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet44"],
                   help="models to time (default: %(default)s)")
    p.add_argument("--batch", type=int, default=128, help="images per run and step "
                   "(default: %(default)s)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per path (default: 20 on CUDA, 3 on the CPU)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed steps of path (a) (default: %(default)s)")
    p.add_argument("--stack", type=int, nargs="+", default=[4, 8, 16],
                   help="K of path (d) (default: %(default)s)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="DataLoader workers of path (a) (default: %(default)s: this machine's "
                        "cores, at most 8)")
    p.add_argument("--op-count-k", type=int, default=16,
                   help="K of the packs whose one-step op counts are printed first, 0: not "
                        "counted (default: %(default)s)")
    p.add_argument("--device", type=device_arg, default=None,
                   help="cpu, cuda, cuda:N or mps (default: cuda when present, else cpu)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default: %(default)s, torch's default)")
    p.add_argument("--out", default="runs/speed.md",
                   help="the markdown table, '' for none (default: %(default)s, untracked; the "
                        "committed table leaderboards/speed.md is written only when named here)")
    one_line_errors(p)  # a bad --device or number: one line, exit 2, before any timing
    p.set_defaults(func=train)

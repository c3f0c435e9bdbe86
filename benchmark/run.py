"""Run a suite: `accelerate launch benchmark/run.py --suite smoke` (or plain `python benchmark/run.py`).

Runs are independent: under `accelerate launch --num_processes N` each process trains its share
(run-level parallelism). Finished runs are skipped, interrupted ones resume from their checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts benchmark/ first on sys.path, where config.py, data.py, ... would
# shadow same-named top-level modules of other packages. Drop it: the package is imported whole.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
if str(_here.parent) not in sys.path:
    sys.path.append(str(_here.parent))

import argparse  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import time  # noqa: E402

from benchmark import results  # noqa: E402
from benchmark.config import ConfigError, load_suite  # noqa: E402
from benchmark.suite import RunSpec, apply_overrides, expand, parse_seeds, shard, stages  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmark/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="smoke", help="a name in configs/ or a path to a YAML file (default: smoke)")
    p.add_argument("--epochs", type=int, help="override train.epochs (LR milestones and warm-up scale with it)")
    p.add_argument("--seeds", help="override seeds: 0,1,2 or 0-4")
    p.add_argument("--models", help="override models: comma-separated, e.g. resnet20,timm/resnet18")
    p.add_argument("--erasers", help="keep only these methods (names or labels), e.g. plain,cutout")
    p.add_argument("--data", help="override the dataset: synthetic, cifar10, cifar100, hf:<id>")
    p.add_argument("--data-dir", help="where datasets live (default: $ERASEBENCH_DATA or ./data)")
    p.add_argument("--download", action="store_true", help="download CIFAR with torchvision if absent")
    p.add_argument("--out", default=".", help="put results/ and leaderboards/ under this folder (default: .)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their estimated cost; train nothing")
    p.add_argument("--no-wandb", action="store_true", help="do not log to Weights & Biases")
    p.add_argument("--wandb-project", default="erasebench", help="W&B project (default: erasebench)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, help="torch threads per process on the CPU "
                   "(default: the machine's cores divided by the number of processes)")
    return p.parse_args(argv)


def split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_suite(args):
    suite = load_suite(args.suite)
    suite = apply_overrides(
        suite, epochs=args.epochs, seeds=parse_seeds(args.seeds) if args.seeds else None,
        models=split(args.models) if args.models else None,
        methods=split(args.erasers) if args.erasers else None, data=args.data, data_dir=args.data_dir)
    if args.download:
        suite.data.download = True
    return suite


def dry_run(runs: list[RunSpec], device) -> None:
    """Print the runs with images processed and a time estimate from a 3-step calibration per model."""
    from benchmark import cost

    est = cost.estimate(runs, device)
    width = max(len(r.run_id) for r in runs)
    print(f"{'run':<{width}}  {'mode':<7} {'warmup':>6} {'epochs':>6} {'images':>12} {'est. time':>10}")
    for r in runs:
        e = est[r.run_id]
        dep = f"  (needs {r.depends_on})" if r.depends_on else ""
        print(f"{r.run_id:<{width}}  {r.method.mode or '-':<7} {r.method.warmup_epochs:>6} "
              f"{r.train.epochs:>6} {e['images']:>12,} {cost.fmt_seconds(e['seconds']):>10}{dep}")
    total = sum(e["seconds"] for e in est.values())
    print(f"{len(runs)} runs; estimated {cost.fmt_seconds(total)} on {results.device_name(device)} "
          f"(one process; calibrated from 3 training steps per model)")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        suite = build_suite(args)
        runs = expand(suite)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    import torch
    from accelerate import Accelerator

    # Without CUDA, ask for the CPU explicitly: then `accelerate launch --multi_gpu --num_processes N`
    # (or torchrun) gives N gloo-connected CPU processes instead of N unaware copies.
    acc = Accelerator(cpu=not torch.cuda.is_available())
    if acc.num_processes == 1 and os.environ.get("MASTER_ADDR") and os.environ.get("ACCELERATE_USE_CPU") == "True":
        print("note: `accelerate launch --cpu --num_processes N` starts one process (Accelerate runs "
              "multi-CPU through mpirun); for N processes use `accelerate launch --multi_gpu "
              "--num_processes N`, which without CUDA starts N CPU processes", file=sys.stderr)
    if acc.device.type == "cpu":
        # `accelerate launch` exports OMP_NUM_THREADS=1 unless configured, which halves CPU speed
        # on 2 cores; default to the cores shared out between the processes instead.
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // acc.num_processes))
    if args.dry_run:
        if acc.is_main_process:
            dry_run(runs, acc.device)
        return 0

    out = Path(args.out)
    results_dir = out / "results" / suite.name
    work_dir = results_dir / "checkpoints"
    work_dir.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["benchmark/run.py", *(sys.argv[1:] if argv is None else map(str, argv))])
    t_suite = time.perf_counter()
    trained = skipped = 0
    failed: list[str] = []
    data_cache: dict = {}
    for stage in stages(runs):
        for spec in shard(stage, acc.process_index, acc.num_processes):
            if results.is_finished(results_dir, spec.run_id):
                skipped += 1
                continue
            try:
                train_one(spec, args, acc, results_dir, work_dir, command, data_cache)
                trained += 1
            except Exception as e:  # one broken run must not lose the others' results
                failed.append(spec.run_id)
                print(f"error: run {spec.run_id} failed: {type(e).__name__}: {e}", file=sys.stderr)
        acc.wait_for_everyone()  # stage two needs stage one's frozen models

    if acc.is_main_process:
        lb = out / "leaderboards" / f"{suite.name}.md"
        from benchmark import figures, leaderboard

        try:  # a figure must never cost the suite its leaderboard
            figures.cam_for_suite(runs, work_dir, lb.parent / "figures" / f"cam_{suite.name}.png")
        except Exception as e:
            print(f"warning: CAM figure not written: {type(e).__name__}: {e}", file=sys.stderr)

        leaderboard.render_suite(suite.name, results_dir, lb, figures_dir=lb.parent / "figures",
                                 expected_runs=[expected(r) for r in runs])
        done = sum(results.is_finished(results_dir, r.run_id) for r in runs)
        print(f"suite {suite.name}: {done}/{len(runs)} runs finished ({trained} trained here, "
              f"{skipped} already done) in {time.perf_counter() - t_suite:.0f}s; "
              f"results: {results_dir}; leaderboard: {lb}")
    acc.end_training()
    return 1 if failed else 0


def expected(r: RunSpec) -> dict:
    """What the leaderboard needs to place a planned run's cell before (or without) its record."""
    m = r.method
    cam = {"source": m.cam.source, "layer": m.cam.layer, "target": m.cam.target} if m.needs_cam else None
    return {"run_id": r.run_id, "model": r.model, "method": r.label, "seed": r.seed,
            "eraser": None if m.is_plain else m.name, "eraser_params": dict(m.params), "cam": cam}


def train_one(spec: RunSpec, args, acc, results_dir: Path, work_dir: Path, command: str, data_cache) -> None:
    from benchmark import tracking
    from benchmark.train import train_run

    frozen = None
    if spec.depends_on:
        frozen = work_dir / f"{spec.depends_on}.final.pt"
        if not frozen.is_file():
            raise FileNotFoundError(f"{frozen}: the frozen CAM model of {spec.run_id} (the final checkpoint "
                                    f"of run {spec.depends_on}) is missing; delete "
                                    f"{results.record_path(results_dir, spec.depends_on)} to retrain it")
    tracker = tracking.start(enabled=not args.no_wandb, project=args.wandb_project, group=spec.suite,
                             name=spec.run_id, config=spec.to_dict(), out_dir=Path(args.out))
    bar = None
    if not args.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=spec.train.epochs, desc=spec.run_id, position=acc.process_index, leave=True,
                   unit="ep", dynamic_ncols=True)

    def progress(epoch, row):
        if bar is not None:
            bar.n = epoch
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", err=f"{row['test_error']:.2f}", refresh=False)
            bar.refresh()

    t0 = time.perf_counter()
    try:
        metrics = train_run(spec, device=acc.device, work_dir=work_dir, data_cache=data_cache,
                            autocast=acc.autocast, tracker=tracker, frozen_ckpt=frozen, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    rec = results.make_record(spec, metrics, wall_time_s=time.perf_counter() - t0, device=acc.device,
                              command=command, process=(acc.process_index, acc.num_processes))
    results.write_record(results_dir, rec)
    tracker.summary({"final_test_error": rec["final_test_error"], "best_test_error": rec["best_test_error"],
                     **{f"occlusion/{k}": v for k, v in (rec["occlusion"] or {}).items() if v is not None}})
    tracker.finish()


if __name__ == "__main__":
    sys.exit(main())

"""Mixing erasers (cutmix, cam_cutmix) in training: the partner's region is pasted and the loss
is the area-weighted cross-entropy, in every path of the step; mask-only erasers are unchanged;
epoch-dependent erasers (GridMask's ramp) get their epoch's eraser."""

import copy
import textwrap

import pytest
import torch
import torch.nn.functional as F

import plugins
from benchmark.data.augment import DeviceLoader
from benchmark.runner.main import main
from benchmark.suites.config import parse_suite
from benchmark.suites.expand import expand
from benchmark.training import graphs
from benchmark.training.pack import PackTrainer, load_run_data
from benchmark.training.step import SLOTS, Lane, Step
from benchmark.training.step import S as SLOT
from plugins.geometry import peaks
from plugins.mixing import partner_permutation

B, SIZE, N = 16, 16, 64


def specs(methods, seeds=(0,), epochs=1, n_train=N):
    return expand(parse_suite({
        "name": "mix", "data": {"name": "synthetic",
                                "options": {"n_train": n_train, "n_test": 32, "size": SIZE}},
        "train": {"epochs": epochs, "batch_size": B, "milestones": [epochs],
                  "channels_last": False},
        "models": ["resnet20"], "seeds": list(seeds), "methods": list(methods)}))


def first_step(tr, kind="replace"):
    """Run one step of `kind`; return the generators' states before it and the model before."""
    tr.model.train()
    for lane in tr.lanes:
        lane.perm.copy_(torch.randperm(lane.perm.shape[0], generator=lane.generator))
    states = [lane.generator.get_state() for lane in tr.lanes]
    before = copy.deepcopy(tr.model)
    tr.opt.zero_grad(set_to_none=True)
    tr.step_for(kind)()
    return states, before


def replay_batch(lane, state):
    """The lane's first batch, drawn again from its generator's state before the step."""
    lane.generator.set_state(state)
    x, y, _ = lane.loader.batch(lane.perm[torch.arange(B)])
    return x, y


def per_run_loss(tr):
    return (tr.acc[:, SLOT["loss"]] / tr.acc[:, SLOT["seen"]]).tolist()


def test_a_stacked_pack_with_cutmix_trains_with_the_area_weighted_cross_entropy():
    runs = specs([{"name": "cutmix", "params": {"p": 1.0}}], seeds=(0, 1))
    tr = PackTrainer(runs, load_run_data(runs[0], "cpu"), "cpu", dtype=torch.float64)
    assert tr.model.stack_size == 2
    states, before = first_step(tr)
    mixed, labels, partners, lams = [], [], [], []
    for lane, state in zip(tr.lanes, states, strict=True):
        x, y = replay_batch(lane, state)
        partner = partner_permutation(B, "cpu", generator=lane.generator)  # drawn first
        mask = lane.eraser(x, generator=lane.generator)
        mixed.append(torch.where(mask, x[partner], x))
        labels.append(y)
        partners.append(partner)
        lams.append([1 - mask[i].sum().item() / (SIZE * SIZE) for i in range(B)])
    logits = before(torch.cat(mixed, dim=1)).view(B, 2, -1)
    for k, got in enumerate(per_run_loss(tr)):
        y, partner, lam = labels[k], partners[k], lams[k]
        by_hand = sum(lam[i] * F.cross_entropy(logits[i, k], y[i]).item()
                      + (1 - lam[i]) * F.cross_entropy(logits[i, k], y[partner[i]]).item()
                      for i in range(B)) / B
        plain = F.cross_entropy(logits[:, k], y).item()
        assert got == pytest.approx(by_hand, rel=1e-10, abs=0)
        assert abs(got - plain) > 1e-3  # the labels really are mixed
        assert min(lam) < 0.9  # and the boxes are not empty


def test_mask_only_erasers_are_unchanged_by_the_mixing_contract():
    """A mask eraser's step is the plain cross-entropy of its filled images, and it draws
    nothing more from its generator than before (no partner): alone, and packed with cutmix."""
    for methods in (["cutout"], ["cutout", {"name": "cutmix", "params": {"p": 1.0}}]):
        runs = specs(methods)
        tr = PackTrainer(runs, load_run_data(runs[0], "cpu"), "cpu", dtype=torch.float64)
        states, before = first_step(tr)
        lane = tr.lanes[0]
        after = lane.generator.get_state()
        x, y = replay_batch(lane, states[0])
        erased = plugins.fill(x, lane.eraser(x, generator=lane.generator), "zero")
        assert torch.equal(lane.generator.get_state(), after)
        k = len(runs)
        if k == 1:
            logits = before(erased)
        else:  # the cutmix lane's images, replayed, ride along in the stack
            lane2 = tr.lanes[1]
            x2, _ = replay_batch(lane2, states[1])
            p2 = partner_permutation(B, "cpu", generator=lane2.generator)
            m2 = lane2.eraser(x2, generator=lane2.generator)
            logits = before(torch.cat([erased, torch.where(m2, x2[p2], x2)], dim=1))
        logits = logits.view(B, k, -1)[:, 0]
        want = F.cross_entropy(logits, y, reduction="none").mean()
        assert per_run_loss(tr)[0] == want.item()
        assert tr.step_for("replace").mixing == (k == 2)


def test_cam_cutmix_pastes_the_partners_region_around_the_partners_cam_peak(monkeypatch):
    runs = specs([{"name": "cam_cutmix", "params": {"p": 1.0}, "mode": "replace",
                   "warmup_epochs": 0}])
    tr = PackTrainer(runs, load_run_data(runs[0], "cpu"), "cpu")
    # each image's CAM has its peak at its own place: row i, column (3 i) mod 16
    cams = torch.zeros(B, SIZE, SIZE)
    for i in range(B):
        cams[i, i, (3 * i) % SIZE] = 1.0
    monkeypatch.setattr(Step, "_cam", lambda self, k, x, y, feats, logits: cams.clone())
    seen = []
    tr.model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    states, _ = first_step(tr)
    lane = tr.lanes[0]
    x, _ = replay_batch(lane, states[0])
    partner = partner_permutation(B, "cpu", generator=lane.generator)
    mask = lane.eraser(x, cam=cams[partner], generator=lane.generator)
    assert torch.equal(seen[-1], torch.where(mask, x[partner], x))  # the images trained on
    own_peak_outside = 0
    for i in range(B):
        if not mask[i].any():
            continue
        pr, pc = peaks(cams[partner[i]][None])[0].tolist()
        assert mask[i, 0, pr, pc]  # the box holds the partner's peak
        rows = mask[i, 0].any(1).nonzero().flatten()
        if 0 < rows[0] and rows[-1] < SIZE - 1:  # not clipped: centred on the peak's row
            assert (rows[0] + rows[-1] + 1) // 2 == pr
        r, c = peaks(cams[i][None])[0].tolist()
        own_peak_outside += int(not mask[i, 0, r, c])
    assert own_peak_outside > 0  # the box does not follow the image's own peak


class Spy:
    """A StepRunner stand-in: runs each step eagerly, records re-captures."""

    def __init__(self):
        self.recaptures, self.captured = 0, set()

    def __call__(self, kind, step):
        step()

    def recapture(self):
        self.recaptures += 1


def test_gridmask_probability_follows_the_ramp_per_epoch_in_training():
    runs = specs([{"name": "gridmask", "params": {"ramp_epochs": 2}}], epochs=4)
    tr = PackTrainer(runs, load_run_data(runs[0], "cpu"), "cpu")
    tr.runner = Spy()
    probs, erased, recaptures = [], [], []
    for epoch in range(4):
        metrics = tr.train_epoch(epoch)[0]
        probs.append(tr.lanes[0].epoch_eraser.p)
        erased.append(metrics["erased_fraction"])
        recaptures.append(tr.runner.recaptures)
    assert probs == [0.0, 0.4, 0.8, 0.8]  # p * min(1, epoch / ramp_epochs), the official set_prob
    assert erased[0] == 0.0 and all(e > 0 for e in erased[1:])
    # a captured graph bakes p into its kernels: captured anew when p changes, not after (the
    # trainer starts with epoch 0's eraser, so epoch 0 needs none)
    assert recaptures == [0, 1, 2, 2]
    assert tr.lanes[0].eraser.params()["ramp_epochs"] == 2  # the record keeps the configured one


def test_a_recapture_warms_up_and_captures_the_step_again(monkeypatch):
    from tests.training.test_graphs import FakeCuda

    fake = FakeCuda(monkeypatch)
    r = graphs.StepRunner("auto", "cpu", [], lambda: None, warmup_steps=2, log=lambda m: None)
    calls = []
    for _ in range(4):
        r("replace", lambda: calls.append(1))
    r.recapture()
    for _ in range(4):
        r("replace", lambda: calls.append(1))
    # each time: 2 eager warm-up steps and a capture (the fake graph runs the step once)
    assert fake.captures == 2 and len(calls) == 6 and fake.replays == 2 + 2


def suite_file(tmp_path, method: str) -> str:
    p = tmp_path / "mixfill.yaml"
    p.write_text(textwrap.dedent(f"""
        name: mixfill
        data: {{name: synthetic, options: {{n_train: 32, n_test: 16, size: 16}}}}
        train: {{epochs: 1, batch_size: 16, milestones: [1]}}
        methods:
          - {method}
    """))
    return str(p)


@pytest.mark.parametrize(("method", "says"), [
    ("{name: cutmix, fill: zero}", "its fill must be 'paste' (or left out), got 'zero'"),
    ("{name: cam_cutmix, sweep: {fill: [paste, random]}}", "got 'random'"),
    ("{name: cutout, fill: paste}", "fill 'paste' needs a mixing eraser"),
])
def test_a_mixing_eraser_with_a_non_paste_fill_is_one_line_before_training(tmp_path, capsys,
                                                                           method, says):
    out = tmp_path / "out"
    path = suite_file(tmp_path, method)
    assert main(["--suite", path, "--out", str(out), "--no-wandb", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and path in err[0] and "methods[0].fill" in err[0] and says in err[0]
    assert not (out / "results").exists()


def test_a_mixing_eraser_without_a_fill_pastes_and_a_mask_eraser_fills_zero():
    runs = specs(["cutmix", "cam_cutmix", "cutout", "plain"])
    assert [r.method.fill for r in runs] == ["paste", "paste", "zero", "zero"]


def test_the_mixing_step_makes_no_host_sync():
    """The whole step on meta tensors: a host read (`.item()`, `bool(t)`, `.tolist()`) of a
    partner permutation, a lam or an accumulator would raise there. Both step kinds, a stacked
    pack of cutmix and cam_cutmix (the free CAM path)."""
    runs = specs([{"name": "cutmix", "mode": "append"},
                  {"name": "cam_cutmix", "mode": "append", "warmup_epochs": 0}])
    rd = load_run_data(runs[0], "cpu")
    tr = PackTrainer(runs, rd, "cpu")
    meta = torch.device("meta")
    model = tr.model.to(meta)

    class Opt:
        def step(self):
            pass

    lanes = [Lane(DeviceLoader(rd.train_images.to(meta), rd.train_labels.to(meta), None,
                               batch_size=B, mean=rd.mean, std=rd.std, generator=None),
                  None, torch.empty(N, dtype=torch.long, device=meta), lane.eraser, lane.fill,
                  torch.zeros(3, device=meta), lane.target, None) for lane in tr.lanes]
    for kind in ("replace", "append"):
        acc = torch.zeros(2, len(SLOTS), dtype=torch.float64, device=meta)
        pos = torch.zeros((), dtype=torch.long, device=meta)
        step = Step(model, Opt(), lanes, kind=kind, acc=acc, pos=pos)
        assert step.mixing
        step()
        assert acc.device == meta


def rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def test_a_stacked_cutmix_pack_trains_like_separate_runs_in_float64():
    from benchmark.training import stack

    runs = specs(["cutmix", {"name": "cam_cutmix", "mode": "replace", "warmup_epochs": 0}],
                 seeds=(0,), n_train=32)
    runs = [runs[0], specs(["cutmix"], seeds=(1,), n_train=32)[0]]
    rd = load_run_data(runs[0], "cpu")
    packed = PackTrainer(runs, rd, "cpu", dtype=torch.float64)
    got = packed.train_epoch(0)
    for k, spec in enumerate(runs):
        alone = PackTrainer([spec], rd, "cpu", dtype=torch.float64)
        want = alone.train_epoch(0)[0]
        assert got[k]["train_loss"] == pytest.approx(want["train_loss"], rel=1e-9)
        assert got[k]["erased_fraction"] == want["erased_fraction"]  # the same boxes
        mine = stack.split_state(packed.model.state_dict(), k, 2)
        for name, w in alone.model.state_dict().items():
            if w.is_floating_point():
                assert rel(mine[name], w) <= 1e-8, name


ONE_METHODS = {
    "cutmix": {"name": "cutmix", "params": {"p": 1.0}},
    "cam_cutmix_append_joint": {"name": "cam_cutmix", "warmup_epochs": 1, "append_bn": "joint"},
    "cam_cutmix_append_split": {"name": "cam_cutmix", "warmup_epochs": 1, "append_bn": "split"},
    "gridmask_ramp": {"name": "gridmask", "params": {"ramp_epochs": 2}},
}


@pytest.mark.parametrize("name", list(ONE_METHODS))
def test_train_one_and_a_pack_of_one_train_mixing_and_ramped_erasers_bit_identically(name,
                                                                                      tmp_path):
    from benchmark.training.one import train_one
    from benchmark.training.train import train_pack
    from tests.training.test_one import DATA, one_spec, same_outcome

    spec = one_spec(ONE_METHODS[name])
    ref = train_one(spec, work_dir=tmp_path / "one", data_cache=DATA)
    packed = train_pack([spec], device="cpu", work_dir=tmp_path / "pack", data_cache=DATA)[0]
    same_outcome(ref, packed)
    assert ref["curves"]["erased_fraction"][-1] > 0


def test_the_config_and_plugins_name_the_paste_fill_alike():
    from benchmark.suites import config
    from plugins import mixing

    assert config.PASTE == mixing.PASTE and config.PASTE not in config.FILL_MODES

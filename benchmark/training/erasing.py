"""The erasing part of the training step over its K lanes (a mixin of `Step`, training/step.py):
the lanes grouped by equal eraser, each group's CAMs, masks and fills made in one call over its
lanes' run-major images, each lane's random numbers drawn from its own generator (`SplitDraws`);
a group whose eraser does not batch exactly (`_probe`) is erased lane by lane."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

import plugins
from benchmark import cam
from benchmark.training.draws import SplitDraws, _probe
from plugins.mixing import lam_from_mask, partner_permutation, paste


class LaneErasing:
    """`Step`'s CAMs and erasing. Reads the step's `lanes`, `k`, `b` (images per lane),
    `device`, `model`, `fast` (the lanes on the free CAM path), `erasing`, `mixing`, `lead` (the
    sentinel generator, or None), `_means`, `_index` and `_layouts`, and its `_lanes_major`."""

    # -- CAM ---------------------------------------------------------------------------------
    def _cam(self, k, x, y, feats, logits):
        lane = self.lanes[k]
        if lane.cam_fn is not None:  # generic Grad-CAM of the live model, or a frozen model
            return lane.cam_fn(x, y)
        c = feats.shape[1] // self.k
        weight = self.model.get_classifier().weight
        weight = weight.view(self.k, -1, c)[k]
        target = y if lane.target == "label" else logits.view(len(y), self.k, -1)[:, k].argmax(-1)
        return cam.cam_from_features(feats[:, k * c:(k + 1) * c], weight, target,
                                     size=x.shape[-2:])

    def _cams(self, group, idx, x, y, feats, logits):
        """The CAMs of a group's lanes, run-major (n B, H, W): `cam.cam_from_features` for all
        of them at once (the free path), or lane by lane."""
        n = len(group)
        if n == 1 or not all(self.fast[k] for k in group):
            rows = [self._cam(k, x[i * self.b:(i + 1) * self.b], y[i * self.b:(i + 1) * self.b],
                              feats, logits) for i, k in enumerate(group)]
            return rows[0] if n == 1 else torch.cat(rows)
        b, kc, h, w = feats.shape
        c = kc // self.k
        fs = feats.view(b, self.k, c, h, w)
        weight = self.model.get_classifier().weight.view(self.k, -1, c)
        if idx is not None:
            fs, weight = fs[:, idx], weight[idx]
        if self.lanes[group[0]].target == "label":
            target = y.view(n, b).t()
        else:
            target = logits.view(b, self.k, -1).argmax(-1)
            target = target if idx is None else target[:, idx]
        with torch.no_grad(), torch.autocast(feats.device.type, enabled=False):
            rows = weight.float()[torch.arange(n, device=feats.device), target]  # no_grad
            rows = rows / (h * w)  # (B, n, C): as cam_from_features, lane by lane
            maps = torch.einsum("bnc,bnchw->nbhw", rows, fs.float()).relu_()
            return F.interpolate(maps.reshape(n * b, 1, h, w), size=tuple(x.shape[-2:]),
                                 mode="bilinear", align_corners=False)[:, 0]

    # -- erasing -----------------------------------------------------------------------------
    def _key(self, k):
        lane = self.lanes[k]
        e = lane.current
        return type(e), repr(e), lane.fill, self._means[k], lane.target, lane.cam_fn is None

    def _groups(self) -> list[tuple[tuple[int, ...], torch.Tensor | None]]:
        """Lanes erasing alike, each group with the index tensor of its lanes (None: all lanes,
        in order). A group whose eraser does not batch exactly (`_probe`) is split into lanes."""
        if not self.erasing:
            return []
        keys: dict[tuple, list[int]] = {}
        for k, lane in enumerate(self.lanes):
            if lane.current is not None:
                keys.setdefault(self._key(k), []).append(k)
        shape = tuple(self.lanes[0].loader.images.shape[1:])
        groups = []
        for members in keys.values():
            lane = self.lanes[members[0]]
            if len(members) > 1 and (self.lead is None or not _probe(
                    lane.current, lane.fill, len(members), self.b, shape)):
                groups += [(k,) for k in members]
            else:
                groups.append(tuple(members))
        out = []
        for g in groups:
            if g == tuple(range(self.k)):
                out.append((g, None))
                continue
            if g not in self._index:
                self._index[g] = torch.tensor(g, device=self.device, dtype=torch.long)
            out.append((g, self._index[g]))
        if out and not (len(out) == 1 and out[0][1] is None):
            self._layout(out)  # made here, before any capture
        return out

    def _erase_group(self, group, rows, y, cmap):
        """One group's (erased, mask, partner labels or None, lam or None), run-major."""
        lanes = [self.lanes[k] for k in group]
        lane, n = lanes[0], len(group)
        eraser = lane.current
        gen = lane.generator
        split = contextlib.nullcontext()
        if n > 1:
            gen = self.lead
            split = SplitDraws(self.lead, [ln.generator for ln in lanes], self.b)
        with split:
            if lane.mixes:  # the partner first, then the eraser's own draws
                if n == 1:
                    partner = partner_permutation(rows.shape[0], rows.device, generator=gen)
                else:  # partner_permutation's draw, sorted within each lane
                    keys = torch.rand(rows.shape[0], device=rows.device, generator=gen)
                    partner = (keys.view(n, -1).argsort()
                               + torch.arange(0, rows.shape[0], self.b,
                                              device=rows.device)[:, None]).view(-1)
                mask = eraser(rows, cam=None if cmap is None else cmap[partner], generator=gen)
                return paste(rows, mask, partner), mask, y[partner], lam_from_mask(mask)
            mask = eraser(rows, cam=cmap, generator=gen)
            return (plugins.fill(rows, mask, lane.fill, mean=lane.fill_mean, generator=gen),
                    mask, None, None)

    def _erase(self, x, y, feats, logits):
        """Every lane's eraser over the run-major batch x (K B, C, H, W), labels y (K B,): CAM if
        its eraser needs one, mask, fill (or paste from the partner). Returns (erased, mask or
        None, CAMs or None, partner labels, lams): run-major; the last two (B, K) when the
        step mixes (a lane that does not mix: its own labels, lam 1), else None. Rows of lanes
        without an eraser: their images, an empty mask, a zero CAM. One index op gathers a
        group's rows; one cat and one index op put the results back (`_layout`)."""
        groups = self._groups()
        if not groups:  # no lane erases now
            return x, None, None, None, None
        if len(groups) == 1 and groups[0][1] is None:  # every lane in one group
            group = groups[0][0]
            cmap = (self._cams(group, None, x, y, feats, logits)
                    if self.lanes[group[0]].current.needs_cam else None)
            erased, mask, y2, lam = self._erase_group(group, x, y, cmap)
            if not self.mixing:
                return erased, mask, cmap, None, None
            return erased, mask, cmap, self._lanes_major(y2), self._lanes_major(lam)
        rows_of, rest, inv = self._layout(groups)
        outs, masks, cmaps = [], [], []
        y2 = lam = None
        if self.mixing:
            y2, lam = y, torch.ones(x.shape[0], device=x.device)
        for (group, idx), r in zip(groups, rows_of, strict=True):
            first = self.lanes[group[0]]
            rows = x[r]
            labels = y[r] if first.mixes or first.current.needs_cam else y  # only these read it
            cmap = None
            if first.current.needs_cam:
                cmap = self._cams(group, idx, rows, labels, feats, logits)
            out, m, y2g, lamg = self._erase_group(group, rows, labels, cmap)
            outs.append(out)
            masks.append(m)
            cmaps.append(cmap)
            if y2g is not None:
                y2, lam = _put(y2, idx, y2g, self.k), _put(lam, idx, lamg, self.k)
        if rest is not None:
            outs.append(x[rest])
            masks.append(masks[0].new_zeros((rest.shape[0], *masks[0].shape[1:])))
            cmaps.append(None)
        cams = None
        if any(c is not None for c in cmaps):
            like = next(c for c in cmaps if c is not None)
            cams = torch.cat([c if c is not None else like.new_zeros((len(o), *like.shape[1:]))
                              for c, o in zip(cmaps, outs, strict=True)])[inv]
        erased, mask = torch.cat(outs)[inv], torch.cat(masks)[inv]
        if not self.mixing:
            return erased, mask, cams, None, None
        return erased, mask, cams, self._lanes_major(y2), self._lanes_major(lam)

    def _layout(self, groups):
        """For groups (as `_groups` gives them, not one group of all lanes): the image rows of
        each group's lanes in the run-major batch (long (n B,) each), those of the lanes
        without an eraser (or None), and the index that puts the groups' results,
        concatenated in that order, back in run-major order (long (K B,)). Made once."""
        key = tuple(g for g, _ in groups)
        if key not in self._layouts:
            b, dev = self.b, self.device
            done = [k for g in key for k in g]
            rest = [k for k in range(self.k) if k not in done]
            place = {k: i for i, k in enumerate(done + rest)}

            def rows(lanes):
                return torch.tensor([k * b + i for k in lanes for i in range(b)], device=dev)

            self._layouts[key] = ([rows(g) for g in key], rows(rest) if rest else None,
                                  torch.tensor([place[r // b] * b + r % b
                                                for r in range(self.k * b)], device=dev))
        return self._layouts[key]


def _put(t, idx, rows, k):
    """t (K B', ...) with lanes idx's rows replaced by rows (n B', ...): a new tensor."""
    return t.reshape(k, -1).index_copy(0, idx, rows.reshape(len(idx), -1)).view(t.shape)

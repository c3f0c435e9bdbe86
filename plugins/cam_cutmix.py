"""CAM-guided CutMix: CutMix's box centred on the CAM peak of the image it is cut from."""

from __future__ import annotations

from plugins.cutmix import CutMix
from plugins.geometry import peaks
from plugins.registry import register

__all__ = ["CamCutMix"]


@register("cam_cutmix")
class CamCutMix(CutMix):
    """CutMix whose box is centred on the SOURCE (partner) image's CAM peak.

    The idea of SaliencyMix (Uddin et al. 2021, afm-shahab-uddin/SaliencyMix
    ``saliency_bbox``) and Attentive CutMix, with the run's own CAM instead of an external
    saliency model: lam ~ Beta(alpha, alpha), the box side as in CutMix
    (int(H sqrt(1 - lam)) x int(W sqrt(1 - lam))), centred at the peak (row, col) of the
    source's saliency, rows clip(r - cut_h // 2, 0, H) .. clip(r + cut_h // 2, 0, H)
    (columns likewise). As in SaliencyMix the SAME box coordinates are cut from the source
    and pasted into the target, so the target receives the source's most salient region.

    ``cam`` must be the saliency of the SOURCE images, in the order of ``images``: the
    caller passes ``cam[partner]`` (float (B, H, W)), where ``partner`` is the permutation
    it pastes with (:func:`plugins.mixing.partner_permutation`). Called with the batch's own
    CAM the box lands on each image's own peak instead. Peak: the first maximum in
    row-major order, a constant map -> the centre (:func:`plugins.geometry.peaks`, as
    ``cam_erasing``; SaliencyMix's ``np.argmax`` is the same first maximum).

    Readings chosen: per image (SaliencyMix draws one coin, one lam and uses the saliency
    of ``rand_index[0]`` for the whole batch); defaults alpha 1.0, p 0.5 (SaliencyMix's CIFAR
    ``--beta 1.0 --salmix_prob 0.5``). Returns bool (B, 1, H, W), True = pasted.
    """

    needs_cam = True

    def centres(self, images, cam, generator):
        peak = peaks(cam)  # (B, 2): the first maximum of each image's CAM, as cam_erasing's
        return peak[:, 0], peak[:, 1]

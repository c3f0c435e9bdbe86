"""The published numbers of the thesis (docs/method.md) as data, so leaderboards can print them
beside ours.

Top-1 test error in percent on CIFAR-10, mean of 5 runs, 300 epochs. Keys are structured, never
display labels: models by name, methods by eraser registry name ("cam_erasing" = the proposed
CAM-guided Random Erasing with b_h = 2, CAM during training).
"""

from __future__ import annotations

DATASET = "cifar10"
EPOCHS = 300
SEEDS = 5
BASELINES = ("random_erasing", "cutout", "hide_and_seek")

# Table 1: the three baselines on ResNet20.
TABLE_1 = {"resnet20": {"random_erasing": 6.75, "cutout": 6.68, "hide_and_seek": 6.95}}

# Table 2: proposed (b_h = 2) and the baselines on ResNet20/32/44.
TABLE_2 = {
    "resnet20": {"cam_erasing": 6.40, "random_erasing": 6.75, "cutout": 6.68,
                 "hide_and_seek": 6.95},
    "resnet32": {"cam_erasing": 5.56, "random_erasing": 6.00, "cutout": 5.89,
                 "hide_and_seek": 5.99},
    "resnet44": {"cam_erasing": 5.15, "random_erasing": 5.34, "cutout": 5.33,
                 "hide_and_seek": 5.47},
}

# Table 3: ResNet20, CAM erasing during training, error by b_h (pixels of the 32x32 input).
TABLE_3 = {"resnet20": {0: 6.43, 1: 6.43, 2: 6.40, 3: 6.54, 4: 6.51, 5: 6.52}}

# Table 4: ResNet20, b_h = 2, CAM from the model being trained vs from a frozen plain model.
TABLE_4 = {"resnet20": {"during": 6.40, "after": 6.44}}

# The b_h that Table 1, 2 and 4 use for the proposed method.
PROPOSED_B_H = 2

# The thesis's eraser settings, in the plugins' argument names. A record is compared with a
# published number only when every setting its eraser_params name agrees (b_h is matched per table).
SETTINGS = {
    "random_erasing": {"p": 0.5, "sl": 0.02, "sh": 0.4, "r1": 0.3, "min_count": 1, "max_count": 1},
    "cutout": {"size": 16, "holes": 1, "p": 1.0},
    "hide_and_seek": {"grid_size": 8, "hide_prob": 0.5, "p": 0.5},
    "cam_erasing": {"sl": 0.02, "sh": 0.4, "r1": 0.3},
}



def settings_match(eraser: str | None, eraser_params: dict) -> bool:
    """True when no argument in eraser_params contradicts the thesis's setting for that eraser."""
    wanted = SETTINGS.get(eraser, {})
    return all(eraser_params[k] == v for k, v in wanted.items() if k in eraser_params)


def is_thesis_cam(eraser_params: dict, cam: dict | None, *, b_h=PROPOSED_B_H,
                  source: str = "during") -> bool:
    """CAM erasing as the thesis ran it (default: the proposed b_h = 2, CAM during training),
    CAM from the model's default layer."""
    return (cam is not None and cam.get("source") == source and cam.get("layer") is None
            and eraser_params.get("b_h") == b_h and settings_match("cam_erasing", eraser_params))


def table_reference(table: dict, model: str, eraser: str | None, eraser_params: dict,
                    cam: dict | None) -> float | None:
    """Table 1 or 2's number for this model and method configuration, or None if it has none."""
    row = table.get(model, {})
    if eraser == "cam_erasing":
        return row.get(eraser) if is_thesis_cam(eraser_params, cam) else None
    if eraser in BASELINES and settings_match(eraser, eraser_params):
        return row.get(eraser)
    return None


def table3_reference(model: str, eraser_params: dict, cam: dict | None) -> float | None:
    """Table 3's number for this CAM erasing configuration's b_h (CAM during training)."""
    b_h = eraser_params.get("b_h")
    if not is_thesis_cam(eraser_params, cam, b_h=b_h):
        return None
    return TABLE_3.get(model, {}).get(b_h)


def table4_reference(model: str, eraser_params: dict, cam: dict | None) -> float | None:
    """Table 4's number for this CAM erasing configuration's CAM source (b_h = 2)."""
    source = (cam or {}).get("source")
    if not is_thesis_cam(eraser_params, cam, source=source):
        return None
    return TABLE_4.get(model, {}).get(source)

"""The embedded dataset: ten shape classes on cluttered, textured backgrounds, with boxes.

Generated in seconds from a seed (no files), vectorised in torch: every parameter is
drawn for a whole chunk at once and shapes are rasterised as anti-aliased signed
distance functions on a coordinate grid. Classes differ in form; colour is jittered so
that it alone does not decide the class. Each image has one main object (drawn on top)
and its tight ground-truth box, plus smaller distractor shapes and strokes below it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

from plugins.geometry import mask_box

__all__ = ["CLASSES", "OPTIONS", "Synthetic", "generate", "split_seed", "save_figure", "load",
           "check_options"]

CLASSES = ["circle", "square", "triangle", "cross", "ring", "star", "diamond", "bar", "L-shape",
           "arrow"]

# Difficulty knobs (sizes in pixels at 32x32; they scale with `size`).
RADIUS = (10.0, 15.0)         # main object's radius
HUE_JITTER = 0.05             # sd of the hue around the class hue (classes are 0.1 apart)
DISTRACTORS = 2               # at most this many smaller shapes of random classes
DISTRACTOR_SCALE = (0.25, 0.45)  # their radius relative to the main object's
STROKES = 2                   # at most this many random line strokes
NOISE = 0.03                  # sd of the per-pixel noise (in [0, 1] units)
CHUNK = 1000                  # samples per independently seeded chunk (prefix-stable output)
MIN_SIZE = 16                 # smallest image side: below it the shapes' radii leave no room
MAX_SIZE = 128                # largest: a chunk's float32 work tensors stay under ~2.5 GB
MAX_BYTES = 2**32             # largest split, n * 3 * size^2 bytes (4 GiB; 16 GiB as float32)
# The options of dataset 'synthetic' and their defaults (n_train/n_test images, seed, size px).
OPTIONS = {"n_train": 10000, "n_test": 2000, "seed": 0, "size": 32}


@dataclass
class Synthetic:
    """Generated samples: uint8 images (N,3,H,W), int64 labels, float boxes (x1,y1,x2,y2)."""

    images: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    alpha: torch.Tensor | None = None  # main object's coverage (N,H,W) in [0,1], on request


def split_seed(seed: int, split: str) -> int:
    """A 63-bit seed derived from (seed, split), so train and test never share samples."""
    digest = hashlib.sha256(f"erasebench-synthetic:{seed}:{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# --- signed distance functions in the object's local frame (radius ~1) -----------------------


def _box(x, y, cx, cy, hx, hy):
    dx, dy = (x - cx).abs() - hx, (y - cy).abs() - hy
    outside = torch.sqrt(dx.clamp(min=0) ** 2 + dy.clamp(min=0) ** 2)
    return outside + torch.maximum(dx, dy).clamp(max=0)


def _convex(x, y, vertices):
    """Convex polygon (vertices in either order): max of the signed edge distances."""
    d = None
    n = len(vertices)
    # orientation from the signed area, so every normal points outwards
    area = sum(vertices[i][0] * vertices[(i + 1) % n][1] - vertices[(i + 1) % n][0] * vertices[i][1]
               for i in range(n))
    sign = 1.0 if area > 0 else -1.0
    for i in range(n):
        (x0, y0), (x1, y1) = vertices[i], vertices[(i + 1) % n]
        ex, ey = x1 - x0, y1 - y0
        length = math.hypot(ex, ey)
        nx, ny = sign * ey / length, -sign * ex / length
        e = (x - x0) * nx + (y - y0) * ny
        d = e if d is None else torch.maximum(d, e)
    return d


def _sdf(cls: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r = torch.sqrt(x * x + y * y)
    if cls == 0:  # circle
        return r - 0.85
    if cls == 1:  # square
        return _box(x, y, 0, 0, 0.65, 0.65)
    if cls == 2:  # triangle
        return _convex(x, y, [(0.0, -0.95), (-0.85, 0.55), (0.85, 0.55)])
    if cls == 3:  # cross (plus)
        return torch.minimum(_box(x, y, 0, 0, 0.9, 0.26), _box(x, y, 0, 0, 0.26, 0.9))
    if cls == 4:  # ring
        return (r - 0.68).abs() - 0.22
    if cls == 5:  # five-pointed star (polar radius; distance approximate away from the edge)
        phi = torch.atan2(y, x)
        return (r - 0.5 * (1 + 0.75 * torch.cos(5 * phi).clamp(min=-0.6))) * 0.6
    if cls == 6:  # diamond (rhombus, half-diagonals 0.6 and 0.95)
        a, b = 0.6, 0.95
        return (x.abs() / a + y.abs() / b - 1) * (a * b / math.hypot(a, b))
    if cls == 7:  # bar
        return _box(x, y, 0, 0, 0.95, 0.2)
    if cls == 8:  # L-shape
        return torch.minimum(_box(x, y, -0.5, 0, 0.22, 0.85), _box(x, y, 0, 0.63, 0.72, 0.22))
    if cls == 9:  # arrow: shaft + triangular head
        shaft = _box(x, y, -0.3, 0, 0.6, 0.15)
        head = _convex(x, y, [(0.95, 0.0), (0.2, -0.55), (0.2, 0.55)])
        return torch.minimum(shaft, head)
    raise ValueError(f"class index {cls} out of range 0..{len(CLASSES) - 1}")


def _coverage(cls, cx, cy, radius, angle, size: int) -> torch.Tensor:
    """Anti-aliased coverage (N,H,W) of shapes `cls` at centre (cx,cy), radius, rotation."""
    grid = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres
    gx = grid.view(1, 1, size) - cx.view(-1, 1, 1)
    gy = grid.view(1, size, 1) - cy.view(-1, 1, 1)
    c, s = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    rad = radius.view(-1, 1, 1)
    u, v = (c * gx + s * gy) / rad, (-s * gx + c * gy) / rad
    dist = torch.empty_like(u)
    for k in range(len(CLASSES)):  # a loop over classes, not samples
        sel = cls == k
        dist[sel] = _sdf(k, u[sel], v[sel])
    return (0.5 - dist * rad).clamp(0, 1)  # distance in pixels -> coverage of a 1-px footprint


def _hsv(h, s, v):
    """HSV in [0,1] -> RGB (N,3), vectorised."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=1)
    t = torch.minimum(k, 4 - k).clamp(0, 1)
    return v[:, None] * (1 - s[:, None] * t)


def _u(n, lo, hi, g):
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _background(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Textured backgrounds (N,3,H,W): a base colour, low-frequency colour noise, stripes."""
    base = _hsv(torch.rand(n, generator=g), _u(n, 0, 0.8, g), _u(n, 0.15, 0.95, g))
    img = base.view(n, 3, 1, 1).expand(n, 3, size, size).clone()
    blobs = torch.randn(n, 3, 4, 4, generator=g) * _u(n, 0.05, 0.25, g).view(n, 1, 1, 1)
    img += torch.nn.functional.interpolate(blobs, size=(size, size), mode="bicubic",
                                           align_corners=False)
    grid = torch.arange(size, dtype=torch.float32) / size
    beta = _u(n, 0, math.pi, g).view(n, 1, 1)
    freq = _u(n, 2, 10, g).view(n, 1, 1) * math.pi
    phase = _u(n, 0, 2 * math.pi, g).view(n, 1, 1)
    wave = torch.sin(freq * (grid.view(1, 1, size) * torch.cos(beta)
                             + grid.view(1, size, 1) * torch.sin(beta)) + phase)
    amp = _u(n, 0, 0.15, g) * (torch.rand(n, generator=g) < 0.6)
    return img + (amp.view(n, 1, 1) * wave).unsqueeze(1)


def _strokes(img: torch.Tensor, g: torch.Generator) -> None:
    """Random line segments (anti-aliased capsules), drawn in place."""
    n, _, size, _ = img.shape
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    for _ in range(STROKES):
        on = (torch.rand(n, generator=g) < 0.5).float().view(n, 1, 1)
        p0, p1 = torch.rand(n, 2, generator=g) * size, torch.rand(n, 2, generator=g) * size
        width = _u(n, 0.4, 1.0, g).view(n, 1, 1) * size / 32
        d = p1 - p0
        px = grid.view(1, 1, size) - p0[:, 0].view(n, 1, 1)
        py = grid.view(1, size, 1) - p0[:, 1].view(n, 1, 1)
        dx, dy = d[:, 0].view(n, 1, 1), d[:, 1].view(n, 1, 1)
        t = ((px * dx + py * dy) / (dx * dx + dy * dy + 1e-6)).clamp(0, 1)
        dist = torch.sqrt((px - t * dx) ** 2 + (py - t * dy) ** 2) - width
        a = (0.5 - dist).clamp(0, 1) * on
        colour = torch.rand(n, 3, generator=g).view(n, 3, 1, 1)
        img.mul_(1 - a.unsqueeze(1)).add_(a.unsqueeze(1) * colour)


def _object_colour(cls: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = cls.numel()
    hue = (cls.float() / len(CLASSES) + HUE_JITTER * torch.randn(n, generator=g)) % 1.0
    return _hsv(hue, _u(n, 0.45, 1.0, g), _u(n, 0.45, 1.0, g))


def _chunk(n: int, size: int, g: torch.Generator, return_alpha: bool):
    scale = size / 32
    img = _background(n, size, g)
    _strokes(img, g)
    labels = torch.randint(0, len(CLASSES), (n,), generator=g)
    radius = _u(n, RADIUS[0] * scale, RADIUS[1] * scale, g)
    cx, cy = (_u(n, 0, 1, g) * (size - 2 * radius) + radius,
              _u(n, 0, 1, g) * (size - 2 * radius) + radius)
    angle = _u(n, 0, 2 * math.pi, g)
    colour = _object_colour(labels, g)
    for _ in range(DISTRACTORS):  # smaller shapes of random classes, below the main object
        on = (torch.rand(n, generator=g) < 0.6).float().view(n, 1, 1, 1)
        dcls = torch.randint(0, len(CLASSES), (n,), generator=g)
        drad = radius * _u(n, *DISTRACTOR_SCALE, g)
        dcx, dcy = torch.rand(n, generator=g) * size, torch.rand(n, generator=g) * size
        a = _coverage(dcls, dcx, dcy, drad, _u(n, 0, 2 * math.pi, g), size).unsqueeze(1) * on
        img = img * (1 - a) + a * _object_colour(dcls, g).view(n, 3, 1, 1)
    alpha = _coverage(labels, cx, cy, radius, angle, size)
    # mild shading across the object so it is not a flat colour
    shade = 1 + 0.15 * torch.randn(n, 1, 1, 1, generator=g) * (
        torch.arange(size, dtype=torch.float32).view(1, 1, 1, size) - cx.view(n, 1, 1, 1)
    ) / radius.view(n, 1, 1, 1)
    img = img * (1 - alpha.unsqueeze(1)) + alpha.unsqueeze(1) * colour.view(n, 3, 1, 1) * shade
    img = img + NOISE * torch.randn(img.shape, generator=g)
    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels, mask_box(alpha > 0).float(), alpha if return_alpha else None


def generate(n: int, seed: int = 0, size: int = 32, *, return_alpha: bool = False) -> Synthetic:
    """`n` samples from `seed`: same seed, same bytes; a smaller n gives a prefix of a larger
    one."""
    if n < 1:
        raise ValueError(f"n={n}: the number of samples must be at least 1")
    if size < MIN_SIZE:
        raise ValueError(f"size={size}: synthetic images must be at least {MIN_SIZE} pixels wide")
    parts = []
    for start in range(0, n, CHUNK):
        g = torch.Generator().manual_seed(split_seed(seed, f"chunk{start // CHUNK}"))
        # always a whole chunk (then cut), so the draws do not depend on n
        images, labels, boxes, alpha = _chunk(CHUNK, size, g, return_alpha)
        m = min(CHUNK, n - start)
        parts.append((images[:m], labels[:m], boxes[:m], alpha[:m] if return_alpha else None))
    images, labels, boxes, alpha = (list(x) for x in zip(*parts, strict=True))
    return Synthetic(torch.cat(images), torch.cat(labels), torch.cat(boxes),
                     torch.cat(alpha) if return_alpha else None)


def save_figure(path: str, *, seed: int = 0, rows: int = 5, cols: int = 10, scale: int = 4) -> None:
    """A grid of samples with their boxes and class names (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    data = generate(rows * cols, seed=split_seed(seed, "train"))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.45))
    for ax, img, label, box in zip(axes.flat, data.images, data.labels, data.boxes, strict=True):
        ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
        x1, y1, x2, y2 = box.tolist()
        # box edges lie on pixel boundaries: pixel i spans [i - 0.5, i + 0.5] in imshow coordinates
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="lime",
                               lw=1))
        ax.set_title(CLASSES[int(label)], fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def check_options(options: dict) -> None:
    """The synthetic set's options as `benchmark.data.load` would reject them (one line each):
    only OPTIONS' keys; sizes of at least one image, an image side of at least MIN_SIZE pixels,
    an integer seed."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"dataset 'synthetic': unknown options {unknown}; allowed: "
                         f"{', '.join(OPTIONS)}")
    for key, low, why in (("n_train", 1, "images in the training split"),
                          ("n_test", 1, "images in the test split"),
                          ("size", MIN_SIZE, "pixels per image side"),
                          ("seed", None, "the generator's seed")):
        if key not in options:
            continue
        v = options[key]
        if not isinstance(v, int) or isinstance(v, bool) or (low is not None and v < low):
            bound = f" >= {low}" if low is not None else ""
            raise ValueError(f"dataset 'synthetic': option {key!r} is {v!r}; allowed: an "
                             f"integer{bound} ({why})")
    # Upper bounds, before anything is allocated: the generator draws whole chunks of CHUNK
    # images as float32 (~ a dozen tensors of CHUNK*3*size^2 floats), and a split is held in
    # memory as uint8 and copied to float32 for training.
    size = options.get("size", OPTIONS["size"])
    if size > MAX_SIZE:
        raise ValueError(f"dataset 'synthetic': option 'size' is {size!r}; allowed: an integer "
                         f"in {MIN_SIZE}..{MAX_SIZE} (pixels per image side)")
    for key in ("n_train", "n_test"):
        n = options.get(key, 1)
        if n * 3 * size * size > MAX_BYTES:
            raise ValueError(
                f"dataset 'synthetic': option {key!r} is {n!r}: {n} images of {size}x{size} "
                f"take {n * 3 * size * size / 2**30:.1f} GiB as bytes (4x that as float32); "
                f"allowed: at most {MAX_BYTES // (3 * size * size)} at size {size}")


def load(split: str, **options):
    """One split of dataset 'synthetic' as a `benchmark.data.Dataset` (options: OPTIONS)."""
    from benchmark.data.dataset import Dataset, channel_stats

    check_options(options)
    opts = {**OPTIONS, **options}
    n = opts["n_train"] if split == "train" else opts["n_test"]
    data = generate(n, seed=split_seed(opts["seed"], split), size=opts["size"])
    mean, std = channel_stats(data.images)
    return Dataset("synthetic", data.images, data.labels, list(CLASSES), data.boxes, mean, std)

"""The world predictor's image ops: resizing to its input, blur, training augmentation, non-face corruptions.

* :func:`resize` -- any ``H, W`` to the network input: area averaging when shrinking (an exact box
  filter for integer factors, like the world's supersampling), bilinear when enlarging.
* :func:`augment` -- applied in training to faces and corruptions alike, so validity cannot key on it:
  random shift (+-3 px) and scale (+-5 %), partial Gaussian blur (:func:`blur`) and pixel noise, so the
  predictor transfers to GAN samples, which are a little softer than renders. Colours are never
  jittered: they are labels.
* :func:`lever_input` -- how a training lever (linearity.py, distribution_match.py) shows images in [-1, 1]
  to the predictor: as they are ("plain"), or through :func:`augment` ("augment", the generator then cannot
  meet the lever with detail only the predictor reads -- the levers' docstrings say why and what it did).
* :func:`make_corruptions` -- the negatives of the validity head (label 0), made on the fly: uniform
  noise, pixel-shuffled renders, smooth colour blobs, renders cut into patches and shuffled (whole image
  or only the face region), flat colours and gradients (:data:`CORRUPTIONS`).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = ["resize", "blur", "augment", "READS", "lever_input", "CONTINUOUS", "in_range", "CORRUPTIONS",
           "make_corruptions"]


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """[N, 3, H, W] float -> [N, 3, size, size]: area average when shrinking (exact box filter for
    integer factors, like the world's supersampling), bilinear when enlarging."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if h >= size and w >= size:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _gauss_kernel(sigma: float, radius: int) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, H, W] with reflect padding."""
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = _gauss_kernel(sigma, r).to(x)
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def augment(x: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
    """Training augmentation of [N, 3, S, S] in [0, 1]: shift +-3 px and scale +-5 % (75 % of images),
    partial Gaussian blur (45 %, sigma 0.6-1.3 mixed in by a random weight) and pixel noise (40 %, std up to 0.03).
    Differentiable in x. ``g`` None draws from torch's global generator of x's device (a training lever that
    reads the predictor through it: the trainer's checkpointed RNG state then covers it)."""
    n, _, s, _ = x.shape
    device = x.device if g is None else g.device
    u = lambda *shape: torch.rand(*shape, generator=g, device=device).to(x.device)  # noqa: E731
    geo = (u(n) < 0.75).float()
    scale = 1.0 + geo * (u(n) - 0.5) * 0.1
    shift = geo[:, None] * (u(n, 2) - 0.5) * 2 * (3.0 / (s / 2))
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = 1 / scale
    theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = torch.where(geo.view(n, 1, 1, 1) > 0, moved, x)
    sel = torch.nonzero(u(n) < 0.45).flatten()       # blur a subset: one sigma per batch, partial mix
    if len(sel):
        sigma = (0.6, 0.9, 1.3)[int(torch.randint(3, (1,), generator=g, device=device))]
        xs = x[sel]
        a = u(len(sel)).view(-1, 1, 1, 1)
        x = x.index_copy(0, sel, xs + a * (blur(xs, sigma) - xs))
    sd = (u(n) < 0.4).float() * u(n) * 0.03
    x = x + sd.view(n, 1, 1, 1) * torch.randn(x.shape, generator=g, device=device).to(x.device)
    return x.clamp(0.0, 1.0)


#: How a training lever shows images to the predictor (:func:`lever_input`).
READS = ("plain", "augment")


def lever_input(predictor, img: torch.Tensor, read: str) -> torch.Tensor:
    """The predictor's input for images [N, 3, H, W] in [-1, 1], differentiably: resized, and with ``read``
    "augment" passed through :func:`augment` (torch's global generator: fresh draws every call)."""
    if read not in READS:
        raise ValueError(f"predictor read {read!r}: use one of {READS}")
    x = predictor.prepare_tensor(img, (-1.0, 1.0))
    return augment(x, None) if read == "augment" else x


#: How a lever reads a continuous attribute's head output (:func:`in_range`).
CONTINUOUS = ("raw", "clamped", "folded")


def in_range(v: torch.Tensor, how: str) -> torch.Tensor:
    """A continuous head output as a lever reads it: "raw", "clamped" to its range [0, 1], or "folded" back
    into it at the ends (1.2 reads 0.8, -0.1 reads 0.1); differentiable."""
    if how == "clamped":
        return v.clamp(0.0, 1.0)
    if how == "folded":
        return torch.where(v > 1, 2 - v, v).abs()
    return v


CORRUPTIONS = ("noise", "pixel_shuffle", "blobs", "patch_shuffle", "face_patch_shuffle", "colour_field")


def _derangement(n: int, g: torch.Generator) -> torch.Tensor:
    """A random permutation without fixed points (one n-cycle)."""
    p = torch.randperm(n, generator=g)
    perm = torch.empty(n, dtype=torch.long)
    perm[p] = p.roll(1)
    return perm


def _patch_shuffle(img: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """[3, H, W] cut into k x k patches (H, W divisible by k) and re-assembled in a shuffled order."""
    c, h, w = img.shape
    ph, pw = h // k, w // k
    p = img.reshape(c, k, ph, k, pw).permute(1, 3, 0, 2, 4).reshape(k * k, c, ph, pw)
    p = p[_derangement(k * k, g)]
    return p.reshape(k, k, c, ph, pw).permute(2, 0, 3, 1, 4).reshape(c, h, w)


def make_corruptions(faces: torch.Tensor, n: int, g: torch.Generator,
                     kinds: Sequence[str] = CORRUPTIONS) -> tuple[torch.Tensor, list[str]]:
    """``n`` non-face images [n, 3, S, S] in [0, 1] (validity label 0), built from ``faces`` [M, 3, S, S]
    where a kind needs a source face.  Returns (images, kind of each)."""
    m, _, s, _ = faces.shape
    out, names = [], []
    for i in range(n):
        kind = kinds[int(torch.randint(len(kinds), (1,), generator=g))]
        src = faces[int(torch.randint(m, (1,), generator=g))]
        if kind == "noise":
            lo, span = float(torch.rand(1, generator=g)) * 0.5, 0.2 + float(torch.rand(1, generator=g)) * 0.8
            img = lo + span * torch.rand(3, s, s, generator=g)
        elif kind == "pixel_shuffle":
            img = src.reshape(3, -1)[:, torch.randperm(s * s, generator=g)].reshape(3, s, s)
        elif kind == "blobs":
            r = int(torch.randint(2, 9, (1,), generator=g))
            low = torch.rand(1, 3, r, r, generator=g)
            img = F.interpolate(low, size=(s, s), mode="bicubic", align_corners=False)[0]
        elif kind == "patch_shuffle":
            k = (2, 4, 8)[int(torch.randint(3, (1,), generator=g))]
            img = _patch_shuffle(src, k, g)
        elif kind == "face_patch_shuffle":   # keep the border (background, hair outline), scramble the face
            img = src.clone()
            a, b = s // 8, s - s // 8        # central 48 x 48 of 64
            k = (3, 4, 6)[int(torch.randint(3, (1,), generator=g))]
            img[:, a:b, a:b] = _patch_shuffle(src[:, a:b, a:b], k, g)
        else:                                # flat colour or a linear two-colour gradient
            c1, c2 = torch.rand(3, 1, 1, generator=g), torch.rand(3, 1, 1, generator=g)
            if float(torch.rand(1, generator=g)) < 0.4:
                img = c1.expand(3, s, s).clone()
            else:
                ang = float(torch.rand(1, generator=g)) * 2 * math.pi
                yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
                t = ((math.cos(ang) * xx + math.sin(ang) * yy) * 0.5 + 0.5).clamp(0, 1)
                img = c1 + (c2 - c1) * t
        out.append(img.clamp(0, 1))
        names.append(kind)
    return torch.stack(out) if out else faces.new_zeros(0, 3, s, s), names

"""Differentiable augmentation of the discriminator's inputs (a lever of the v2 recipe, issue #17).

Method:

* **DiffAugment** (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"):
  the same random, differentiable transforms are applied to reals *and* fakes before D sees them,
  in both D's and G's steps, so D cannot memorise the training images and G's gradient passes
  through the transform. Ops (images in [-1, 1], NCHW):

  - ``color``: brightness + U(-0.5, 0.5); saturation: (x - grey) * U(0, 2) + grey; contrast:
    (x - mean) * U(0.5, 1.5) + mean (grey = the per-pixel channel mean, mean = the image mean);
  - ``translation``: an integer shift of up to 1/8 of the side in x and y, zero (mid-grey) fill;
  - ``cutout``: a square of half the side, centred anywhere in the image, set to zero.

* **Adaptive probability** (StyleGAN2-ADA, Karras et al. 2020): each op is applied to each image
  with probability ``p``. With ``ada_target > 0``, p follows D's overfitting heuristic
  r_t = E[sign(D(real))]: every ``interval`` D steps, p += sign(r_t - target) * (batch * interval) /
  (ada_kimg * 1000), clipped to [0, 1]. With p = 1 and no target this is plain DiffAugment.

Randomness comes from torch's global RNG, which the training checkpoint saves, so a resumed run
augments exactly as an uninterrupted one; p and the r_t accumulator are buffers (in ``state_dict``).
"""

from __future__ import annotations

import torch
from torch import nn

OPS = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """'translation,cutout,color' -> the ops in canonical order; unknown names raise ValueError."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [n for n in names if n not in OPS]
    if bad:
        raise ValueError(f"unknown augmentation {bad}: choose from {', '.join(OPS)}")
    return tuple(op for op in OPS if op in names)


def color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * (torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + grey
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by its own integer (dy, dx) in [-s, s] (s = ratio * side), zero fill.
    Output pixel (i, j) = input (i - dy, j - dx) when inside the image, else 0."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gy = (gy - dy + 1).clamp(0, h + 1)          # +1: index into the 1-px zero-padded image
    gx = (gx - dx + 1).clamp(0, w + 1)
    pad = nn.functional.pad(x, [1, 1, 1, 1])
    return pad.permute(0, 2, 3, 1)[gb, gy, gx].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a (ratio * side)^2 square per image whose centre is uniform over the image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys >= oy - ch // 2) & (ys < oy - ch // 2 + ch) & (xs >= ox - cw // 2) & (xs < ox - cw // 2 + cw))
    return x * (~inside).unsqueeze(1).to(x.dtype)


_FUNCS = {"color": color, "translation": translation, "cutout": cutout}


class DiffAugment(nn.Module):
    """``aug(x)``: the policy's ops in order, each applied to each image with probability ``p``."""

    def __init__(self, policy: str, p: float = 1.0, ada_target: float = 0.0, ada_kimg: float = 100.0,
                 interval: int = 4):
        super().__init__()
        self.ops = parse_policy(policy)
        if not self.ops:
            raise ValueError("an empty augmentation policy")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"augmentation probability {p} is not in [0, 1]")
        self.ada_target, self.ada_kimg, self.interval = float(ada_target), float(ada_kimg), int(interval)
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float64))
        self.register_buffer("acc", torch.zeros(2, dtype=torch.float64))   # sum of sign(D(real)), count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = float(self.p)
        for name in self.ops:
            if p >= 1.0:
                x = _FUNCS[name](x)
            elif p > 0.0:
                keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= p
                x = torch.where(keep, x, _FUNCS[name](x))
        return x

    @torch.no_grad()
    def update(self, logits_real: torch.Tensor, batch: int) -> None:
        """ADA: accumulate sign(D(real)); every ``interval`` calls move p towards r_t = target."""
        if self.ada_target <= 0:
            return
        self.acc += torch.tensor([float(logits_real.sign().sum()), float(logits_real.numel())], dtype=torch.float64,
                                 device=self.acc.device)
        if self.acc[1] >= self.interval * logits_real.numel():
            rt = float(self.acc[0] / self.acc[1])
            step = (batch * self.interval) / (self.ada_kimg * 1000)
            sign = (rt > self.ada_target) - (rt < self.ada_target)
            self.p.copy_((self.p + sign * step).clamp(0.0, 1.0))
            self.acc.zero_()

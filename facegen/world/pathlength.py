"""Lazy path-length regularisation of the generator (StyleGAN2, Karras et al. 2020, section 3.2).

Method: for images g(w) and a random image-space direction y ~ N(0, I) / sqrt(H * W), the path length
of w is a = ||J_w^T y||_2 (J_w = dg/dw), computed as the gradient of sum(g(w) * y) with respect to w
(summed over w's channels, averaged over the w+ layers: ``sqrt(mean_layers(sum_channels(grad^2)))``).
The penalty is (a - mean_a)^2, where mean_a is a running mean (decay 0.01), so a fixed-size step in w
moves the image by a fixed amount whichever way it goes: smoother, better-conditioned, more linear w.

"Lazy": it runs every ``interval`` G steps, its loss multiplied by ``interval``, on a smaller batch
(``batch // batch_shrink``, at least 1; StyleGAN2 uses 2) -- the small-batch setting of a CPU run;
Adam's lr and beta2 for G are corrected for the extra steps (c = interval / (interval + 1)) by the
trainer. ``pl_mean`` is a buffer, so checkpoints keep it.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def path_lengths(img: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per-sample path lengths [N] of images [N, C, H, W] (a function of ``ws`` [N, L, D] with its graph)
    along ``noise`` (same shape as img, already scaled by 1 / sqrt(H * W)). Keeps the graph for a penalty."""
    (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
    return grad.square().sum(2).mean(1).sqrt()


class PathLengthRegulariser(nn.Module):
    def __init__(self, weight: float = 2.0, interval: int = 4, batch_shrink: int = 2, decay: float = 0.01):
        super().__init__()
        if weight <= 0 or interval < 1 or batch_shrink < 1 or not 0 < decay <= 1:
            raise ValueError("path length: weight > 0, interval >= 1, batch_shrink >= 1, 0 < decay <= 1")
        self.weight, self.interval, self.batch_shrink, self.decay = weight, interval, batch_shrink, decay
        self.register_buffer("pl_mean", torch.zeros([]))

    def batch_size(self, batch: int) -> int:
        return max(1, batch // self.batch_shrink)

    def loss(self, img: torch.Tensor, ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to backpropagate = penalty.mean() * weight * interval, path lengths [N] detached);
        updates the running mean."""
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        lengths = path_lengths(img, ws, noise)
        with torch.no_grad():
            self.pl_mean.copy_(self.pl_mean.lerp(lengths.mean(), self.decay))
        penalty = (lengths - self.pl_mean).square()
        return penalty.mean() * self.weight * self.interval, lengths.detach()

"""FIR resampling filters shared by StyleGAN2 and StyleGAN3: upsample, filter, downsample.

``upfirdn2d`` is the one primitive (NVIDIA's name): zero-insert by ``up``, pad (negative pads crop),
convolve with a FIR filter (a true convolution: the filter is flipped), keep every ``down``-th pixel.
A 2-D filter runs as one depthwise conv; a 1-D filter is separable (one pass along W, one along H,
each scaled by sqrt(gain)), as StyleGAN3's windowed-sinc filters are.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def setup_filter(f: Sequence[float]) -> torch.Tensor:
    """Normalised 2-D FIR filter from 1-D taps: outer(f, f) / sum, e.g. [1,3,3,1] -> 4x4 / 64."""
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 1:
        f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: int = 1, down: int = 1,
              padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """x [N, C, H, W] -> zero-insert ``up``, pad [x0, x1, y0, y1], FIR ``f``, keep every ``down``-th.

    ``f`` is 2-D (one pass with ``f * gain``) or 1-D (separable, two passes with ``f * sqrt(gain)``);
    None is the identity.
    """
    n, c, h, w = x.shape
    px0, px1, py0, py1 = (int(p) for p in padding)
    if f is not None and f.ndim == 2 and up == 1 and down == 1 and px0 == px1 == py0 == py1 >= 0:
        f = (f * gain).to(x.dtype).flip([0, 1])[None, None].repeat([c, 1, 1, 1])
        return F.conv2d(x, f, padding=px0, groups=c)          # the common case in one call
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    if f is not None:
        f = (f * (gain ** (f.ndim / 2))).to(x.dtype).flip(list(range(f.ndim)))
        f = f[None, None].repeat([c, 1] + [1] * f.ndim)
        if f.ndim == 4:
            x = F.conv2d(x, f, groups=c)
        else:
            x = F.conv2d(x, f.unsqueeze(2), groups=c)     # along W: kernel [1, taps]
            x = F.conv2d(x, f.unsqueeze(3), groups=c)     # along H: kernel [taps, 1]
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """2x upsampling with FIR filter f (used for the skip-architecture RGB path)."""
    fw = f.shape[-1]
    p = [(fw + up - 1) // 2, (fw - up) // 2] * 2
    return upfirdn2d(x, f, up=up, padding=p, gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    fw = f.shape[-1]
    p = [(fw - down + 1) // 2, (fw - down) // 2] * 2
    return upfirdn2d(x, f, down=down, padding=p)

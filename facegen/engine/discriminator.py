"""StyleGAN2's residual discriminator (ADA layout), used for training.

Blocks from the image resolution down to 8 px: fromRGB (first block), two 3x3 convs with 2x FIR
downsampling and a residual 1x1 skip (each branch scaled by sqrt(1/2)); then, at 4 px, the minibatch
standard deviation as an extra channel, a conv, a fully connected layer (the trunk features, shared with
auxiliary heads) and the output layer -- with ``c_dim > 0`` a projection onto the mapped class code.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

from facegen.engine.filters import setup_filter
from facegen.engine.layers import Conv2dLayer, FullyConnectedLayer
from facegen.engine.mapping import MappingNetwork

class DiscriminatorBlock(torch.nn.Module):
    """fromRGB (first block only), two 3x3 convs with 2x FIR downsampling, residual 1x1 skip."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int,
                 img_channels: int, resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation="lrelu",
                                       conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation="lrelu", down=2,
                                 resample_filter=resample_filter, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                resample_filter=resample_filter)

    def forward(self, x: Optional[torch.Tensor], img: torch.Tensor):
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x


class MinibatchStdLayer(torch.nn.Module):
    """Append the std of features over groups of samples as extra channel(s)."""

    def __init__(self, group_size: int, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class Discriminator(torch.nn.Module):
    """Residual StyleGAN2 discriminator (ADA layout); c_dim > 0 adds a projection head."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int = 3, channel_base: int = 32768,
                 channel_max: int = 512, conv_clamp: Optional[float] = None, mbstd_group_size: int = 4,
                 cmap_dim: Optional[int] = None):
        super().__init__()
        self.c_dim, self.img_resolution = c_dim, img_resolution
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        ch = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        if cmap_dim is None:
            cmap_dim = ch[4]
        self.cmap_dim = cmap_dim if c_dim > 0 else 0
        for res in self.block_resolutions:
            in_ch = ch[res] if res < img_resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_ch, ch[res], ch[res // 2], res, img_channels,
                                                        conv_clamp=conv_clamp))
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None)
        self.mbstd = MinibatchStdLayer(mbstd_group_size)
        self.conv = Conv2dLayer(ch[4] + 1, ch[4], kernel_size=3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(ch[4] * 16, ch[4], activation="lrelu")
        self.out = FullyConnectedLayer(ch[4], 1 if c_dim == 0 else cmap_dim)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """Trunk features [N, ch4] (shared by auxiliary heads such as an InfoGAN Q head)."""
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        x = self.mbstd(x)
        x = self.conv(x)
        return self.fc(x.flatten(1))

    def forward(self, img: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.out(self.features(img))
        if self.c_dim > 0:
            cmap = self.mapping(None, c)
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x

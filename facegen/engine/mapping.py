"""StyleGAN2's mapping network: z (+ class embedding) -> w, broadcast to the synthesis layers, truncated.

Pixel-normalised z (and, when conditional, an embedded class code) passes through ``num_layers``
equalised-lr fully connected layers with leaky ReLU (learning-rate multiplier 0.01). A running average
``w_avg`` (EMA, updated in training) is the centre of the truncation trick: w' = w_avg + psi (w - w_avg),
optionally only for the first ``truncation_cutoff`` layers. The discriminator's conditional head uses the
same network without z (``num_ws=None``, no ``w_avg``).
"""

from __future__ import annotations

from typing import Optional

import torch

from facegen.engine.layers import FullyConnectedLayer
from facegen.engine.stylegan2_ops import normalize_2nd_moment

class MappingNetwork(torch.nn.Module):
    """z (+ class embedding) -> w, broadcast to num_ws layers, with truncation toward w_avg."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: Optional[int], num_layers: int = 8,
                 embed_features: Optional[int] = None, layer_features: Optional[int] = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: Optional[float] = 0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], activation=activation,
                                                         lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor], truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, update_w_avg: bool = False) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            assert z is not None and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}]"
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            assert c is not None and c.shape[1] == self.c_dim, f"c must be [N, {self.c_dim}]"
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_w_avg and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            assert self.w_avg_beta is not None
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

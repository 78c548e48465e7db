"""A projected discriminator on the world predictor's frozen features (a lever of the v2 recipe, issue #17).

Method (Projected GAN, Sauer et al. 2021, "Projected GANs Converge Faster"), scaled to the face world:

1. **Frozen pretrained features**: the trunk of the world attribute predictor
   (:func:`facegen.world.predictor.load_world_predictor`, a 6-layer CNN trained on labelled renders)
   in eval mode (BatchNorm statistics fixed), tapped after the last layer of each resolution:
   32 px (32 channels), 16 px (64), 8 px (128), 4 px (128) for its 64 px input. Images in [-1, 1]
   go straight in (the predictor maps [0, 1] to [-1, 1] itself); other sizes are resized to 64 px.
2. **Fixed random projections**: cross-channel mixing (CCM), a random 1x1 convolution per scale
   (same number of channels), and cross-scale mixing (CSM), a top-down pass that adds each coarser
   mixed map, upsampled x2, to the next finer one through a random 1x1 convolution (the paper's
   feature-fusion blocks). Both are drawn once from ``seed`` and never trained (buffers): they spread
   the features over channels and scales so D cannot focus on a few.
3. **Per-scale heads** (trained): spectral-normalised 4x4 stride-2 convolutions (channels doubling, at
   most 128) + BatchNorm + leaky ReLU down to 8x8 (4x4 stays), then a 4x4 convolution to a map of
   logits; all scales' logits are concatenated. Sized for a CPU: the heads and mixing cost about as
   much as the frozen trunk (~30 M multiply-adds per 64 px image each).
4. **Loss**: hinge (D: relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z))) as in the paper, or the
   non-saturating logistic loss of StyleGAN2. The paper uses no R1 with it.

The quality judge must not see this network's features: it uses the predictor (the judge of issue #17
is a separate network); FD measured in the *predictor's* features is therefore biased in its favour.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _trunk_taps(trunk: nn.Sequential, input_size: int) -> list[tuple[int, int, int]]:
    """Indices of the ReLU closing the last conv of each resolution -> [(layer index, channels, side)]."""
    taps, side, convs = [], input_size, [m for m in trunk if isinstance(m, nn.Conv2d)]
    relu_idx = [i for i, m in enumerate(trunk) if isinstance(m, nn.ReLU)]
    for k, conv in enumerate(convs):
        side = (side - 1) // conv.stride[0] + 1
        nxt = convs[k + 1].stride[0] if k + 1 < len(convs) else 2
        if nxt > 1:
            taps.append((relu_idx[k], conv.out_channels, side))
    return taps


class FrozenFeatures(nn.Module):
    """Predictor trunk (frozen) + fixed random CCM / CSM -> a list of mixed feature maps, finest first."""

    def __init__(self, predictor=None, seed: int = 0):
        super().__init__()
        if predictor is None:
            from facegen.world.predictor import load_world_predictor
            predictor = load_world_predictor()
        import copy
        self.trunk = copy.deepcopy(predictor.trunk).eval().requires_grad_(False)
        self.input_size = predictor.input_size
        self.taps = _trunk_taps(self.trunk, self.input_size)
        g = torch.Generator().manual_seed(seed)
        self.out_channels, self.sides = [], []
        for k, (_, c, side) in enumerate(self.taps):
            co = c
            self.register_buffer(f"ccm{k}", torch.randn(co, c, 1, 1, generator=g) / math.sqrt(c))
            self.out_channels.append(co)
            self.sides.append(side)
        for k in range(len(self.taps) - 1):     # CSM: coarser k+1 -> finer k
            ci, co = self.out_channels[k + 1], self.out_channels[k]
            self.register_buffer(f"csm{k}", torch.randn(co, ci, 1, 1, generator=g) / math.sqrt(ci))

    def train(self, mode: bool = True):
        super().train(mode)
        self.trunk.eval()                       # BatchNorm statistics stay the predictor's
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.input_size)
        feats, h, want = [], x, {i for i, _, _ in self.taps}
        for i, layer in enumerate(self.trunk):
            h = layer(h)
            if i in want:
                feats.append(h)
        mixed = [F.conv2d(f, getattr(self, f"ccm{k}")) for k, f in enumerate(feats)]
        out = [None] * len(mixed)
        out[-1] = mixed[-1]
        for k in range(len(mixed) - 2, -1, -1):
            up = F.interpolate(out[k + 1], size=mixed[k].shape[-2:], mode="bilinear", align_corners=False)
            out[k] = mixed[k] + F.conv2d(up, getattr(self, f"csm{k}"))
        return out


class Head(nn.Module):
    """One scale's discriminator: SN conv 4x4/2 + BN + lrelu blocks down to 8 px, then SN conv 4x4 -> logits."""

    def __init__(self, channels: int, side: int, width: int = 128):
        super().__init__()
        layers, c = [], channels
        while side > 8:
            co = min(2 * c, width)
            layers += [spectral_norm(nn.Conv2d(c, co, 4, 2, 1, bias=False)), nn.BatchNorm2d(co),
                       nn.LeakyReLU(0.2)]
            c, side = co, side // 2
        layers.append(spectral_norm(nn.Conv2d(c, 1, 4, 1, 0)))
        self.net = nn.Sequential(*layers)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f).flatten(1)


def d_loss(logits_fake: torch.Tensor, logits_real: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()
    return F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()


def g_loss(logits_fake: torch.Tensor, kind: str) -> torch.Tensor:
    return -logits_fake.mean() if kind == "hinge" else F.softplus(-logits_fake).mean()


class ProjectedDiscriminator(nn.Module):
    """``P(img)`` -> logits [N, K] (all scales' logit maps, concatenated); only the heads have parameters."""

    def __init__(self, resolution: int = 64, loss: str = "hinge", seed: int = 0, predictor=None):
        super().__init__()
        if loss not in ("hinge", "logistic"):
            raise ValueError(f"projected loss {loss!r}: use 'hinge' or 'logistic'")
        self.loss_kind = loss
        self.features = FrozenFeatures(predictor, seed=seed)
        self.heads = nn.ModuleList(Head(c, s) for c, s in zip(self.features.out_channels, self.features.sides))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return torch.cat([h(f) for h, f in zip(self.heads, self.features(img))], 1)

    def loss_G(self, fake: torch.Tensor) -> torch.Tensor:
        return g_loss(self(fake), self.loss_kind)

    def d_step(self, fake: torch.Tensor, real: torch.Tensor, opt) -> tuple[dict, torch.Tensor]:
        """One D update on detached fakes and reals -> (stats, real logits for ADA's r_t)."""
        self.heads.requires_grad_(True)
        lf, lr = self(fake.detach()), self(real.detach())
        loss = d_loss(lf, lr, self.loss_kind)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss_P": loss.item(), "P_real": lr.mean().item(), "P_fake": lf.mean().item()}, lr.detach()

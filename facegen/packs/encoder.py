"""The ``encoder`` pack component: a network image -> w+ for one generator, its folder format and its training.

Network (:class:`Encoder`)
--------------------------
A small ResNet (stem + 4 stages of residual blocks, BatchNorm, ReLU; stride 2 between stages; global
features -> MLP) that maps an aligned face image to an *offset from w_avg* for every one of the
generator's ``num_ws`` style inputs, so an untrained encoder starts at the average face. It is tied to
one generator: its folder (``config.json`` + ``model.safetensors``, written by :meth:`Encoder.save_pretrained`)
stores the generator's fingerprint, and :func:`load_encoder` refuses another generator's encoder. A pack
names the folder as its ``encoder`` component (:func:`encoder_for`).
A folder whose config names ``_class_name: E4EEncoder`` holds a published e4e encoder instead
(:mod:`facegen.packs.e4e`, imported by ``python -m facegen pack import-encoder --format e4e``); :func:`load_encoder`
dispatches on that name, and both give w+ in one forward pass.

Training (:func:`train_encoder`) needs no dataset: every batch is drawn from the generator itself --
z -> w (truncation psi ~ U(psi_min, 1)), half the batch style-mixed at a random layer so w+ is covered,
images synthesised with random noise -- so every image has a known w+. Loss = latent MSE (in units of the
w distribution's per-dimension std) + ``pixel_weight`` x pixel MSE of the re-synthesised image
+ ``feature_weight`` x a perceptual distance (:mod:`facegen.labels.perceptual`: by default the one
:func:`~facegen.labels.perceptual.perceptual_for` picks for the generator and its pack). A caller may pass
``real_pool``, images with no known latent (for ``mini``: face-world renders from the GAN's own training
seeds, :mod:`facegen.world.encoder_training`); a ``real_frac`` share of every pixel/perceptual batch is
drawn from it and gets only the reconstruction losses. Adam(W) with warm-up and cosine decay driven by
``max(step fraction, time fraction)``, so ``minutes`` always ends on a decayed learning rate.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegen.engine.errors import ModelNotFoundError, UnsupportedModelError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
MAX_INPUT = 256                     # encoder input side for large generators (images are resized to it)


class EncoderMismatchError(ModelNotFoundError):
    """The encoder was trained for another generator."""


# ---------------------------------------------------------------------------
# 1. The network
# ---------------------------------------------------------------------------

class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)), inplace=True)
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)), inplace=True)


def fit(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [N, C, H, W] to size x size: area averaging when shrinking, bilinear when enlarging."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if x.shape[-1] > size:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


class Encoder(nn.Module):
    """Aligned image [N, 3, S, S] in [-1, 1] -> w+ [N, num_ws, w_dim] (= w_avg + predicted offset)."""

    def __init__(self, num_ws: int, w_dim: int, input_size: int = 64, channels=(32, 64, 128, 256),
                 blocks_per_stage: int = 2, hidden: int = 512, pool: int = 2, stem_stride: int = 2):
        super().__init__()
        self.num_ws, self.w_dim, self.input_size = int(num_ws), int(w_dim), int(input_size)
        self.init_kwargs = dict(num_ws=self.num_ws, w_dim=self.w_dim, input_size=self.input_size,
                                channels=[int(c) for c in channels], blocks_per_stage=int(blocks_per_stage),
                                hidden=int(hidden), pool=int(pool), stem_stride=int(stem_stride))
        # Stem (stride 2 halves the work of the largest stage), then one stage per width: the first
        # at the stem's resolution, each later one halving it.
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True))
        stages, c = [], channels[0]
        for i, o in enumerate(channels):
            for j in range(blocks_per_stage):
                stages.append(_ResBlock(c, o, 2 if j == 0 and (i > 0 or stem_stride == 1) else 1))
                c = o
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.fc = nn.Sequential(nn.Linear(c * pool * pool, hidden), nn.LeakyReLU(0.2, inplace=True),
                                nn.Linear(hidden, self.num_ws * self.w_dim))
        nn.init.zeros_(self.fc[-1].weight)
        nn.init.zeros_(self.fc[-1].bias)
        self.register_buffer("w_avg", torch.zeros(self.w_dim))
        self.register_buffer("w_std", torch.ones(self.w_dim))
        self.meta: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.stages(self.stem(fit(x, self.input_size))))
        d = self.fc(h.flatten(1)).view(-1, self.num_ws, self.w_dim)
        return self.w_avg + d * self.w_std

    @property
    def fingerprint(self) -> Optional[str]:
        return self.meta.get("generator_fingerprint")

    # -- persistence ------------------------------------------------------------------------------
    def save_pretrained(self, folder, **meta) -> Path:
        from facegen.engine.hub import write_folder
        self.meta.update(meta)
        return write_folder(folder, "Encoder", self.state_dict(), {**self.init_kwargs, "meta": self.meta},
                            FORMAT_VERSION, metadata={"generator_fingerprint": str(self.fingerprint)})

    @classmethod
    def from_pretrained(cls, folder) -> "Encoder":
        from facegen.engine.hub import read_folder
        folder = Path(folder)
        cfg, state = read_folder(folder, "Encoder", "encoder",
                                 f"python -m facegen encoder train --model MODEL --out {folder}", FORMAT_VERSION)
        keys = ("num_ws", "w_dim", "input_size", "channels", "blocks_per_stage", "hidden", "pool", "stem_stride")
        E = cls(**{k: cfg[k] for k in keys if k in cfg})
        try:
            E.load_state_dict(state, strict=True)
        except Exception as e:
            raise UnsupportedModelError(f"{folder / WEIGHTS_NAME} does not hold this encoder's weights ({e}).") from None
        E.meta = dict(cfg.get("meta") or {})
        E.meta["source"] = str(folder)
        return E.eval()


_CACHE: dict = {}


def encoder_class(folder):
    """The class an encoder folder's config.json names (``_class_name``): facegen's :class:`Encoder`, or
    :class:`facegen.packs.e4e.E4EEncoder` (a published e4e encoder, ``pack import-encoder --format e4e``)."""
    if read_config(folder).get("_class_name") == "E4EEncoder":
        from facegen.packs.e4e import E4EEncoder
        return E4EEncoder
    return Encoder


def load_encoder(source, G=None) -> Encoder:
    """The encoder in folder `source` (the class its config names), cached per folder (and weights mtime).
    With G: it must be G's."""
    folder = Path(source)
    w = folder / WEIGHTS_NAME
    key = (str(folder.resolve()), w.stat().st_mtime_ns if w.is_file() else 0)
    if key not in _CACHE:
        _CACHE[key] = encoder_class(folder).from_pretrained(folder)
    E = _CACHE[key]
    if G is not None:
        check_pair(E, G)
    return E


def check_pair(E: Encoder, G) -> None:
    """Refuse an encoder made for another generator (latent shape, then fingerprint)."""
    if (E.num_ws, E.w_dim) != (G.num_ws, G.w_dim):
        raise EncoderMismatchError(f"The encoder predicts [{E.num_ws}, {E.w_dim}] latents but the generator takes "
                                   f"[{G.num_ws}, {G.w_dim}]: it belongs to another generator.")
    if E.fingerprint and E.fingerprint != G.fingerprint:
        raise EncoderMismatchError(
            f"This encoder was trained for generator {E.fingerprint}, but the active generator is {G.fingerprint}. "
            f"Train one for it: python -m facegen encoder train --model {G.meta.get('name', 'MODEL')} "
            "--out DIR, and name DIR as the 'encoder' of the generator's pack.")


def encoder_for(G, pack) -> Optional[Encoder]:
    """The encoder of G's pack (its ``encoder`` component), checked against G; None without a pack or
    without an encoder in it (photo encoding then projects from w_avg)."""
    if pack is None or not pack.has("encoder"):
        return None
    pack.check_generator(G)
    return load_encoder(pack.path("encoder"), G)


def read_config(folder) -> dict:
    """An encoder folder's config.json (no weights read); {} when absent or unreadable."""
    f = Path(folder) / CONFIG_NAME
    try:
        return json.loads(f.read_text()) if f.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


# ---------------------------------------------------------------------------
# 2. Training on the generator's own samples
# ---------------------------------------------------------------------------

@torch.no_grad()
def w_stats(G, n: int = 4096, seed: int = 0) -> tuple:
    """(mean, per-dimension std clamped at 1e-3) of w over n mapped z ~ N(0, I), on the CPU."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=g)
    w = G.mapping(z.to(G.mapping.w_avg.device), None)[:, 0].cpu()
    return w.mean(0), w.std(0).clamp_min(1e-3)


@torch.no_grad()
def sample_batch(G, n: int, g: torch.Generator, psi_min: float = 0.5, mix_prob: float = 0.5,
                 noise_mode: str = "random") -> tuple:
    """n generator samples with known w+: (images [-1, 1] [n, 3, R, R], ws [n, num_ws, w_dim])."""
    dev = G.mapping.w_avg.device
    z = torch.randn(2, n, G.z_dim, generator=g)
    psi = (psi_min + (1 - psi_min) * torch.rand(n, 1, 1, generator=g))
    ws = G.mapping(z[0].to(dev), None)
    ws2 = G.mapping(z[1].to(dev), None)
    mix = torch.rand(n, generator=g) < mix_prob
    cut = torch.randint(1, G.num_ws, (n,), generator=g)
    layer = torch.arange(G.num_ws)[None, :]
    sel = (mix[:, None] & (layer >= cut[:, None]))[..., None].to(dev)
    ws = torch.where(sel, ws2, ws)
    w_avg = G.mapping.w_avg
    ws = w_avg + psi.to(dev) * (ws - w_avg)
    img = G.synthesis(ws, noise_mode=noise_mode)
    return img.clamp(-1, 1), ws


@dataclass
class TrainConfig:
    minutes: float = 10.0
    max_steps: int = 100_000
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    psi_min: float = 0.5
    mix_prob: float = 0.5
    latent_weight: float = 1.0
    pixel_weight: float = 4.0
    feature_weight: float = 1.5
    pixel_every: int = 2          # steps with the (costlier) pixel + feature losses: every k-th
    real_pool: int = 0            # images with no known latent mixed in (pixel/feature loss only); see real_frac
    real_frac: float = 0.25
    seed: int = 0
    channels: str = "32,64,128,256"
    blocks: int = 1
    hidden: int = 512
    log_every: int = 50


def train_encoder(G, cfg: TrainConfig, E: Optional[Encoder] = None, perceptual=None,
                  real_pool: Optional[torch.Tensor] = None, log=print) -> tuple:
    """Train (or continue training) an encoder for G; returns (E, stats dict). `perceptual`: a
    :class:`facegen.labels.perceptual.Perceptual` (used when ``cfg.feature_weight > 0``); `real_pool`: images
    [-1, 1] [M, 3, R, R] without latents (see the module docstring)."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    dev = G.mapping.w_avg.device
    if E is None:
        E = Encoder(G.num_ws, G.w_dim, input_size=min(G.img_resolution, MAX_INPUT),
                    channels=[int(c) for c in cfg.channels.split(",")], blocks_per_stage=cfg.blocks,
                    hidden=cfg.hidden)
        _, std = w_stats(G)
        E.w_avg.copy_(G.mapping.w_avg.detach().cpu())
        E.w_std.copy_(std)
    E = E.to(dev).train()
    for p in G.parameters():
        p.requires_grad_(False)
    G.eval()
    perc = perceptual if cfg.feature_weight > 0 else None
    pool = real_pool.to(dev) if real_pool is not None and len(real_pool) else None
    opt = torch.optim.AdamW(E.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    w_std = E.w_std.to(dev)
    t0 = time.perf_counter()
    step, hist, window = 0, [], []
    warm = 100
    while step < cfg.max_steps:
        el = time.perf_counter() - t0
        frac = max(step / cfg.max_steps, el / (cfg.minutes * 60))
        if frac >= 1:
            break
        lr = cfg.lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        for pg in opt.param_groups:
            pg["lr"] = lr
        img, ws = sample_batch(G, cfg.batch, g, cfg.psi_min, cfg.mix_prob)
        pred = E(img)
        l_lat = ((pred - ws) / w_std).square().mean()
        loss = cfg.latent_weight * l_lat
        stats = {"latent": l_lat.item()}
        if cfg.pixel_every and step % cfg.pixel_every == 0 and (cfg.pixel_weight > 0 or perc is not None):
            x, predx = img, pred
            if pool is not None and cfg.real_frac > 0:
                k = max(1, int(round(cfg.batch * cfg.real_frac)))
                idx = torch.randint(0, pool.shape[0], (k,), generator=g)
                real = pool[idx.to(pool.device)]
                real = torch.where(torch.rand(k, 1, 1, 1, generator=g).to(dev) < 0.5, real, real.flip(3))
                x = torch.cat([img[k:], real])
                predx = torch.cat([pred[k:], E(real)])
            rec = G.synthesis(predx, noise_mode="const")
            if rec.shape[-1] > MAX_INPUT:      # large generators: reconstruction losses at <= 256 px
                rec, x = fit(rec, MAX_INPUT), fit(x, MAX_INPUT)
            l_pix = (rec - x).square().mean()
            loss = loss + cfg.pixel_weight * l_pix
            stats["pixel"] = l_pix.item()
            if perc is not None:
                l_f = perc.loss(rec, perc.target(x)).mean()
                loss = loss + cfg.feature_weight * l_f
                stats["feature"] = l_f.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        window.append(stats)
        if step % cfg.log_every == 0:
            rec_ = {"step": step, "elapsed_s": round(time.perf_counter() - t0, 1), "lr": round(lr, 6),
                    **{k: round(float(np.mean([w[k] for w in window if k in w])), 5)
                       for k in ("latent", "pixel", "feature") if any(k in w for w in window)}}
            hist.append(rec_)
            log(json.dumps(rec_))
            window = []
    for p in G.parameters():
        p.requires_grad_(True)
    E.eval()
    return E, {"steps": step, "images_seen": step * cfg.batch, "train_seconds": round(time.perf_counter() - t0, 1),
               "history": hist, "perceptual": getattr(perc, "note", "none")}

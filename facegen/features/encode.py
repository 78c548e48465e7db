"""Images -> w+ latents: a ResNet encoder trained on the generator's own samples, plus per-image refinement.

Encoder (:class:`Encoder`)
--------------------------
A small ResNet (stem + 4 stages of two residual blocks, BatchNorm, ReLU; stride 2 between stages;
global features -> MLP) that maps an aligned face image to an *offset from w_avg* for every one of
the generator's ``num_ws`` style inputs, so an untrained encoder starts at the average face. It is
tied to one generator: the folder stores the generator's fingerprint and :func:`load_encoder`
refuses another generator's encoder.

Training (:func:`train_encoder`, ``python -m facegen encoder train``) needs no dataset: every batch
is drawn from the generator itself -- z -> w (truncation psi ~ U(psi_min, 1)), half the batch
style-mixed at a random layer so w+ is covered, images synthesised with random noise -- so every
image has a known w+. Loss = latent MSE (in units of the w distribution's per-dimension std)
+ ``pixel_weight`` x pixel MSE of the re-synthesised image + ``feature_weight`` x perceptual
distance. Optionally (``--real-pool N``, used for the face world's mini) a quarter of the
pixel/perceptual batch is face-world renders from the GAN's own training seed range (0 ..
real_pool-1): no latent is known for them, so they only get the reconstruction losses -- this
closes the gap between the generator's samples and the "photos" the encoder will see. Evaluation
seeds (>= 20_000_000) are never used. Adam with warm-up and cosine decay driven by ``max(step fraction, time fraction)``,
so ``--minutes`` always ends on a decayed learning rate.

Perceptual term. Reconstruction work usually uses LPIPS (VGG features). No LPIPS/VGG weights can
be downloaded in facegen's offline setting, so for the face world's ``mini`` generator the
perceptual term is the distance between the face world predictor's 128-d penultimate features
(:mod:`facegen.world.predictor`), which encode exactly the attributes the world is made of. For FFHQ-size
generators pass any ``perceptual(img_a, img_b) -> loss`` callable (e.g. an ``lpips.LPIPS(net="vgg")``
module when its weights are available; see ``assets/packs/mini/encoder/README.md``).

Refinement (:func:`refine`)
---------------------------
Per-image optimisation of w+ with Adam, starting from the encoder's output: pixel MSE +
perceptual term + a small pull towards the encoder's latent (keeps the result editable). Noise
inputs are held at their constant values (not optimised), so no noise regularisation is needed.
It stops at ``steps``, at ``time_budget`` seconds, or early when the loss has not improved by
``min_rel_improvement`` for ``patience`` steps; ``progress(fraction, text)`` is called as it goes.

Rebuild the shipped encoder for ``mini`` (about 10 minutes on one CPU core; see ``assets/packs/mini/encoder/README.md``,
and ``bench/encode.py`` for the held-out numbers)::

    python -m facegen encoder train --model mini --out assets/packs/mini/encoder --minutes 9 --real-pool 2000 --threads 1
    python bench/encode.py --n 64 --refine-n 16 --steps 200 --budget 8 --threads 1 --write

Encode photos from the command line (aligned crop, reconstruction and latent .npz per photo)::

    python -m facegen encoder encode PHOTO.jpg [...] --model mini --outdir out/ [--face 2] [--refine-steps 200]
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegen.engine.errors import InputError, ModelNotFoundError, UnsupportedModelError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
from facegen.engine.paths import REPO_ROOT  # noqa: E402
DEFAULT_ENCODER_DIR = REPO_ROOT / "assets" / "packs" / "mini" / "encoder"
EVAL_SEED_START = 20_000_000        # face-world renders never used for any training (predictor test range)
REAL_SEED_START = 0                 # optional render pool: the GAN's own training range (< 10_000_000)
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
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="area" if x.shape[-1] >
                              self.input_size else "bilinear", align_corners=None if x.shape[-1] >
                              self.input_size else False)
        h = self.pool(self.stages(self.stem(x)))
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
        w_p = folder / WEIGHTS_NAME
        keys = ("num_ws", "w_dim", "input_size", "channels", "blocks_per_stage", "hidden", "pool", "stem_stride")
        E = cls(**{k: cfg[k] for k in keys if k in cfg})
        try:
            E.load_state_dict(state, strict=True)
        except Exception as e:
            raise UnsupportedModelError(f"{w_p} does not hold this encoder's weights ({e}).") from None
        E.meta = dict(cfg.get("meta") or {})
        E.meta["source"] = str(folder)
        return E.eval()


_CACHE: dict = {}


def load_encoder(source=None, G=None) -> Encoder:
    """The encoder in `source` (folder; default ``assets/packs/mini/encoder``), cached. With G: must match G's fingerprint."""
    folder = Path(source) if source is not None else DEFAULT_ENCODER_DIR
    key = str(folder.resolve())
    if key not in _CACHE:
        _CACHE[key] = Encoder.from_pretrained(folder)
    E = _CACHE[key]
    if G is not None:
        check_pair(E, G)
    return E


def check_pair(E: Encoder, G) -> None:
    if (E.num_ws, E.w_dim) != (G.num_ws, G.w_dim):
        raise EncoderMismatchError(f"The encoder predicts [{E.num_ws}, {E.w_dim}] latents but the generator takes "
                                   f"[{G.num_ws}, {G.w_dim}]: it belongs to another generator.")
    if E.fingerprint and E.fingerprint != G.fingerprint:
        raise EncoderMismatchError(
            f"This encoder was trained for generator {E.fingerprint}, but the active generator is {G.fingerprint}. "
            f"Train one for it: python -m facegen encoder train --model {G.meta.get('name', 'MODEL')} "
            "--out DIR (see assets/packs/mini/encoder/README.md).")


def find_encoder(G, search=None) -> Optional[Path]:
    """A folder holding an encoder for G (by fingerprint): `search` folders, then assets/packs/mini/encoder*."""
    cands = [Path(s) for s in (search or [])] + sorted(REPO_ROOT.glob("assets/packs/mini/encoder*"))
    for d in cands:
        cfg = d / CONFIG_NAME
        if cfg.is_file():
            try:
                meta = json.loads(cfg.read_text()).get("meta") or {}
            except json.JSONDecodeError:
                continue
            if meta.get("generator_fingerprint") == G.fingerprint:
                return d
    return None


# ---------------------------------------------------------------------------
# 2. Using it
# ---------------------------------------------------------------------------

def to_tensor(images: np.ndarray, device=None) -> torch.Tensor:
    """uint8 [N, H, W, 3] (or [H, W, 3]) -> float [N, 3, H, W] in [-1, 1] (the generator's range)."""
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise InputError(f"Images must be uint8 [N, H, W, 3], got {a.dtype} {list(a.shape)}.")
    a = np.ascontiguousarray(a) if a.flags.writeable else np.array(a)
    return torch.from_numpy(a).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _fit(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if x.shape[-1] > size:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


@torch.no_grad()
def encode(E: Encoder, images, batch_size: int = 64) -> np.ndarray:
    """uint8 images [N, H, W, 3] -> w+ float32 [N, num_ws, w_dim] (one network pass per batch)."""
    dev = E.w_avg.device
    was = E.training
    E.eval()
    x = to_tensor(images)
    out = [E(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, x.shape[0], batch_size)]
    E.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, E.num_ws, E.w_dim), np.float32)


_PREDICTORS: dict = {}


def _predictor_on(device: torch.device):
    """The shipped world predictor, frozen, on `device` (the shared CPU copy, or a private copy per device)."""
    from facegen.world.predictor import load_world_predictor
    key = str(device)
    if key not in _PREDICTORS:
        P = load_world_predictor()
        if device.type != "cpu":
            import copy
            P = copy.deepcopy(P).to(device)
        for p in P.parameters():
            p.requires_grad_(False)
        _PREDICTORS[key] = P.eval()
    return _PREDICTORS[key]


class FeatureLoss:
    """Perceptual distance through the face world predictor: mean squared difference of its 128-d
    penultimate features (scaled by the features' typical magnitude) -- the stand-in for LPIPS here."""

    def __init__(self, predictor=None, device=None):
        self.P = predictor or _predictor_on(torch.device(device or "cpu"))
        self.scale = 10.0   # about the mean squared feature of a face: the term is O(1) for unrelated faces

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """img [N, 3, H, W] in [-1, 1] -> features [N, D] (differentiable)."""
        self.P.eval()
        return self.P(self.P.prepare_tensor(img, (-1.0, 1.0)))[0]

    def __call__(self, a: torch.Tensor, b_features: torch.Tensor) -> torch.Tensor:
        return (self.features(a) - b_features).square().mean(1) / self.scale


def perceptual_loss(kind: str = "world", device=None):
    """'world' (face-world predictor features; the default offline) or 'none'."""
    if kind == "none":
        return None
    if kind == "world":
        return FeatureLoss(device=device)
    raise InputError(f"Unknown perceptual loss '{kind}' (use world or none).")


@dataclass
class RefineResult:
    ws: np.ndarray                    # [num_ws, w_dim] float32 (best loss seen)
    steps: int
    seconds: float
    stopped_by: str                   # "steps", "time", "early" or "no-steps"
    history: list = field(default_factory=list)   # total loss per step
    initial_loss: float = float("nan")
    final_loss: float = float("nan")


def refine(G, image: np.ndarray, ws_init, steps: int = 200, time_budget: float = 8.0, lr: float = 0.03,
           pixel_weight: float = 1.0, feature_weight: float = 0.1, latent_weight: float = 0.002,
           perceptual: Union[str, Callable, None] = "world", patience: int = 25, min_rel_improvement: float = 2e-3,
           noise_mode: str = "const", progress: Optional[Callable] = None) -> RefineResult:
    """Optimise w+ so that G(w+) matches the aligned `image` (uint8 [R, R, 3]); see the module docstring."""
    steps, time_budget = int(steps), float(time_budget)
    if not 0 <= steps <= 5000:
        raise InputError(f"Refinement steps must be between 0 and 5000 (got {steps}).")
    if not (math.isfinite(time_budget) and 0 < time_budget <= 600):
        raise InputError(f"The refinement time budget must be between 0 and 600 seconds (got {time_budget}).")
    dev = G.mapping.w_avg.device
    ws0 = torch.as_tensor(np.asarray(ws_init, np.float32)).reshape(1, G.num_ws, G.w_dim).to(dev)
    target = to_tensor(image, dev)
    target = _fit(target, G.img_resolution)
    if steps == 0:
        return RefineResult(ws0[0].cpu().numpy(), 0, 0.0, "no-steps")
    perc = perceptual_loss(perceptual, dev) if isinstance(perceptual, str) else perceptual
    t0 = time.perf_counter()
    with torch.no_grad():
        tfeat = perc.features(target) if isinstance(perc, FeatureLoss) else None
    ws = ws0.clone().requires_grad_(True)
    opt = torch.optim.Adam([ws], lr=lr, betas=(0.9, 0.999))
    best, best_ws, hist = float("inf"), ws0.detach().clone(), []
    since, ref, stopped = 0, float("inf"), "steps"
    # Gradients w.r.t. ws only (torch.autograd.grad): G's parameters are never touched, so concurrent
    # refinements on one shared generator do not interfere.
    with torch.enable_grad():
        for i in range(steps):
            img = G.synthesis(ws, noise_mode=noise_mode)
            loss = pixel_weight * (img - target).square().mean()
            if perc is not None:
                loss = loss + feature_weight * (perc(img, tfeat).mean() if tfeat is not None else perc(img, target).mean())
            if latent_weight:
                loss = loss + latent_weight * (ws - ws0).square().mean()
            v = loss.item()
            hist.append(v)
            if v < best:
                best, best_ws = v, ws.detach().clone()
            if v < ref * (1 - min_rel_improvement):
                ref, since = v, 0
            else:
                since += 1
            el = time.perf_counter() - t0
            if progress is not None and (i % 10 == 0 or i == steps - 1):
                progress(min(1.0, max((i + 1) / steps, el / time_budget)), f"refining: step {i + 1}/{steps}, "
                         f"loss {v:.4f}")
            if since >= patience:
                stopped = "early"
                break
            if el >= time_budget:
                stopped = "time"
                break
            ws.grad, = torch.autograd.grad(loss, [ws])
            opt.step()
    return RefineResult(best_ws[0].cpu().numpy().astype(np.float32), len(hist), time.perf_counter() - t0, stopped,
                        hist, hist[0] if hist else float("nan"), best)


def reconstruction_metrics(a: np.ndarray, b: np.ndarray) -> dict:
    """uint8 images -> {'mse': mean squared error in [0, 1] units, 'psnr': dB, 'mae': mean abs error (0-255)}."""
    a = np.asarray(a, np.float64) / 255.0
    b = np.asarray(b, np.float64) / 255.0
    if a.shape != b.shape:
        raise InputError(f"Cannot compare images of shapes {a.shape} and {b.shape}.")
    mse = float(np.mean((a - b) ** 2))
    return {"mse": mse, "psnr": float(10 * np.log10(1.0 / max(mse, 1e-12))), "mae": float(np.mean(np.abs(a - b)) * 255)}


# ---------------------------------------------------------------------------
# 3. Training
# ---------------------------------------------------------------------------

@torch.no_grad()
def w_stats(G, n: int = 4096, seed: int = 0) -> tuple:
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


def _render_pool(n: int, size: int, start: int = REAL_SEED_START, log=print) -> torch.Tensor:
    from facegen.world.render import render_batch
    t0 = time.perf_counter()
    imgs, _ = render_batch(range(start, start + n), size=size)
    log(f"rendered {n} face-world images (seeds {start}..{start + n - 1}) in {time.perf_counter() - t0:.0f}s")
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0


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
    real_pool: int = 0            # face-world renders (seeds 0.., the GAN's training range) mixed in, pixel/feature loss only
    real_frac: float = 0.25
    seed: int = 0
    channels: str = "32,64,128,256"
    blocks: int = 1
    hidden: int = 512
    log_every: int = 50


def train_encoder(G, cfg: TrainConfig, E: Optional[Encoder] = None, log=print) -> tuple:
    """Train (or continue training) an encoder for G; returns (E, stats dict)."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    dev = G.mapping.w_avg.device
    if E is None:
        E = Encoder(G.num_ws, G.w_dim, input_size=min(G.img_resolution, MAX_INPUT),
                    channels=[int(c) for c in cfg.channels.split(",")], blocks_per_stage=cfg.blocks,
                    hidden=cfg.hidden)
        mean, std = w_stats(G)
        E.w_avg.copy_(G.mapping.w_avg.detach().cpu())
        E.w_std.copy_(std)
    E = E.to(dev).train()
    for p in G.parameters():
        p.requires_grad_(False)
    G.eval()
    perc = FeatureLoss(device=dev) if cfg.feature_weight > 0 else None
    pool = _render_pool(cfg.real_pool, G.img_resolution, log=log).to(dev) if cfg.real_pool else None
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
                rec, x = _fit(rec, MAX_INPUT), _fit(x, MAX_INPUT)
            l_pix = (rec - x).square().mean()
            loss = loss + cfg.pixel_weight * l_pix
            stats["pixel"] = l_pix.item()
            if perc is not None:
                with torch.no_grad():
                    tf = perc.features(x)
                l_f = perc(rec, tf).mean()
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
               "history": hist}


# ---------------------------------------------------------------------------
# 4. Evaluation (shared with bench/encode.py)
# ---------------------------------------------------------------------------

def attribute_errors(pred_a: dict, pred_b: dict) -> dict:
    """Disagreement between two predictor outputs (or predictions vs ground-truth label dicts per key):
    mean abs difference of continuous attributes (circular for hues), agreement of categorical/bool labels."""
    from facegen.world.render import ATTRIBUTE_SPEC
    out = {}
    for name, kind, rng in ATTRIBUTE_SPEC:
        a, b = np.asarray(pred_a[name]), np.asarray(pred_b[name])
        if kind == "continuous":
            d = np.abs(a.astype(np.float64) - b.astype(np.float64))
            if name in ("bg_hue", "clothing_hue"):
                d = np.minimum(d % 1.0, 1 - d % 1.0)
            out[f"{name}_mae"] = float(d.mean())
        elif kind == "categorical":
            la = a if a.dtype.kind in "US" else np.asarray(rng)[a.argmax(-1)]
            lb = b if b.dtype.kind in "US" else np.asarray(rng)[b.argmax(-1)]
            out[f"{name}_acc"] = float(np.mean(la == lb))
        else:
            out[f"{name}_acc"] = float(np.mean((a > 0.5) == (b > 0.5)))
    cont = [v for k, v in out.items() if k.endswith("_mae") and not k.startswith(("bg_hue", "clothing_hue"))]
    acc = [v for k, v in out.items() if k.endswith("_acc")]
    out["continuous_mae_mean"] = float(np.mean(cont))
    out["label_acc_mean"] = float(np.mean(acc))
    return out


def labels_to_pred(labels: list) -> dict:
    """Ground-truth label dicts -> the predictor's output layout (continuous arrays, category labels)."""
    from facegen.world.render import ATTRIBUTE_SPEC
    out = {}
    for name, kind, rng in ATTRIBUTE_SPEC:
        v = [lab[name] for lab in labels]
        out[name] = np.asarray(v, dtype=str if kind == "categorical" else np.float32)
    return out


def _pred_labels(pred: dict) -> dict:
    from facegen.world.render import ATTRIBUTE_SPEC
    return {name: (pred[f"{name}_label"] if kind == "categorical" else pred[name]) for name, kind, _ in ATTRIBUTE_SPEC}


def evaluate(G, E, n: int = 64, refine_n: int = 0, start: int = EVAL_SEED_START, refine_kwargs=None,
             log=print) -> dict:
    """Encode face-world renders (seeds start..start+n-1, never used in training) -> metrics; refine the first
    `refine_n` of them too. Also the generator's own samples (known w+) for the latent error."""
    from facegen.engine.synthesis import synthesize, to_uint8
    from facegen.world.predictor import load_world_predictor
    from facegen.world.render import render_batch
    P = load_world_predictor()
    imgs, labels = render_batch(range(start, start + n), size=G.img_resolution)
    truth = labels_to_pred(labels)
    t = time.perf_counter()
    ws = np.concatenate([encode(E, imgs[i:i + 1]) for i in range(n)])
    enc_s = (time.perf_counter() - t) / n
    rec = synthesize(G, ws)
    res = {"n": n, "seeds": f"{start}-{start + n - 1}"}

    def block(rec_imgs, idx):
        m = reconstruction_metrics(rec_imgs, imgs[idx])
        pr = P.predict(rec_imgs)
        po = P.predict(imgs[idx])
        fr, fo = P.features(rec_imgs), P.features(imgs[idx])
        m["feature_dist"] = float(np.mean(np.sum((fr - fo) ** 2, 1)))
        m["attr_vs_truth"] = attribute_errors(_pred_labels(pr), {k: v[idx] for k, v in truth.items()})
        m["attr_vs_original"] = attribute_errors(_pred_labels(pr), _pred_labels(po))
        return m

    res["encoder"] = {**block(rec, np.arange(n)), "seconds_per_image": enc_s}
    res["predictor_on_originals"] = attribute_errors(_pred_labels(P.predict(imgs)), truth)
    with torch.no_grad():
        g = torch.Generator().manual_seed(123)
        x, wt = sample_batch(G, 64, g, psi_min=0.7, mix_prob=0.0, noise_mode="const")
        we = E.eval()(x)
        res["gan_samples_latent_mse_std_units"] = float(((we - wt) / E.w_std).square().mean())
        res["gan_samples_psnr"] = reconstruction_metrics(to_uint8(G.synthesis(we, noise_mode="const")),
                                                         to_uint8(x))["psnr"]
    if refine_n:
        idx = np.arange(min(refine_n, n))
        kw = dict(refine_kwargs or {})
        outs, secs, steps = [], [], []
        for i in idx:
            r = refine(G, imgs[i], ws[i], **kw)
            outs.append(r.ws)
            secs.append(r.seconds)
            steps.append(r.steps)
            log(f"  refined {i + 1}/{len(idx)}: {r.steps} steps, {r.seconds:.1f}s ({r.stopped_by})")
        rr = synthesize(G, np.stack(outs))
        res["refined"] = {**block(rr, idx), "seconds_per_image": float(np.mean(secs)),
                          "steps_mean": float(np.mean(steps)), "kwargs": kw}
        res["encoder_on_refined_subset"] = block(rec[idx], idx)
    return res


# ---------------------------------------------------------------------------
# 5. Figures (numpy/PIL, for the app and the CLI)
# ---------------------------------------------------------------------------

def error_map(a: np.ndarray, b: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """|a - b| per pixel (mean over RGB, x gain) as a black-red-yellow-white heat map, uint8 [H, W, 3]."""
    d = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(-1) / 255.0 * gain
    d = np.clip(d, 0, 1)
    r = np.clip(d * 3, 0, 1)
    g = np.clip(d * 3 - 1, 0, 1)
    bl = np.clip(d * 3 - 2, 0, 1)
    return (np.stack([r, g, bl], -1) * 255 + 0.5).astype(np.uint8)


def comparison_figure(panels: list, size: int = 192) -> np.ndarray:
    """[(title, uint8 image), ...] -> one labelled strip, every panel `size` px high (small images are
    upscaled with nearest neighbour so their pixels stay visible; other shapes keep their aspect)."""
    from PIL import Image, ImageDraw
    pad, head = 6, 18
    ims = []
    for _, img in panels:
        im = Image.fromarray(np.asarray(img, np.uint8))
        w = max(1, round(im.width * size / im.height))
        ims.append(im.resize((w, size), Image.NEAREST if im.height < size else Image.LANCZOS))
    W = sum(im.width for im in ims) + pad * (len(ims) + 1)
    canvas = Image.new("RGB", (W, size + head + pad), (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    x = pad
    for (title, _), im in zip(panels, ims):
        canvas.paste(im, (x, head))
        d.text((x + 2, 3), str(title), fill=(20, 20, 20))
        x += im.width + pad
    return np.asarray(canvas)


def loss_curve(history: list, width: int = 360, height: int = 160) -> np.ndarray:
    """The refinement loss per step (relative to the start) as a small line chart, uint8 [H, W, 3]."""
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(im)
    l, r, t, b = 40, width - 8, 18, height - 20
    d.rectangle([l, t, r, b], outline=(180, 180, 180))
    d.text((4, 2), "refinement loss (1 = encoder output)", fill=(20, 20, 20))
    h = np.asarray(history, np.float64)
    if h.size >= 2 and np.isfinite(h).all() and h[0] > 0:
        y = h / h[0]
        lo = min(0.0, float(y.min()))
        xs = l + (r - l) * np.arange(h.size) / (h.size - 1)
        ys = b - (b - t) * (y - lo) / max(1.0 - lo, 1e-9)
        d.line(list(zip(xs.tolist(), np.clip(ys, t, b).tolist())), fill=(120, 60, 200), width=2)
        d.text((4, t - 2), "1.0", fill=(90, 90, 90))
        d.text((4, b - 10), f"{lo:.1f}", fill=(90, 90, 90))
        d.text((l, b + 4), "0", fill=(90, 90, 90))
        d.text((r - 30, b + 4), f"{h.size - 1}", fill=(90, 90, 90))
        d.text((l + 60, b + 4), f"final {y.min():.2f}", fill=(120, 60, 200))
    return np.asarray(im)


# ---------------------------------------------------------------------------
# 6. Command line
# ---------------------------------------------------------------------------

def _readme(record: dict) -> str:
    m = record.get("metrics", {})
    enc = m.get("encoder", {})
    lines = [
        "# Encoder for the `mini` generator",
        "",
        "A ResNet encoder (aligned 64 px face -> w+ [10, 128]) for facegen's embedded `mini` StyleGAN2, "
        "trained on the generator's own samples (image -> known w+) with latent + pixel + perceptual loss; "
        "see `facegen/encoder.py` for the method. Used by the app's *Photo encoding* tab and by "
        "`python -m facegen bank build`.",
        "",
        f"* generator fingerprint: `{record['generator_fingerprint']}` (the encoder refuses any other generator)",
        f"* parameters: {record['params']:,}; weights {record['weights_mb']} MB (float32 safetensors)",
        f"* training: {record['train']['steps']} steps, {record['train']['images_seen']:,} generated images, "
        f"{record['train']['train_seconds'] / 60:.1f} min on {record['threads']} CPU thread(s)",
        "",
        "## Exact command",
        "",
        "```",
        record["command"],
        "```",
        "",
        "## Held-out metrics (face-world renders, seeds >= 20 000 000, never used in any training)",
        "",
        f"* encoder only: PSNR {enc.get('psnr', float('nan')):.2f} dB, MSE {enc.get('mse', float('nan')):.5f}, "
        f"{enc.get('seconds_per_image', float('nan')) * 1000:.1f} ms per image",
        f"* attribute error (world predictor on reconstruction vs ground truth): continuous MAE "
        f"{enc.get('attr_vs_truth', {}).get('continuous_mae_mean', float('nan')):.3f}, label accuracy "
        f"{enc.get('attr_vs_truth', {}).get('label_acc_mean', float('nan')):.3f}",
        f"* generator's own samples: latent MSE {m.get('gan_samples_latent_mse_std_units', float('nan')):.3f} "
        f"(in w std units), PSNR {m.get('gan_samples_psnr', float('nan')):.2f} dB",
        "",
        "Refinement numbers (encoder + per-image optimisation) come from `bench/encode.py`; see metrics.json.",
        "",
        "## Perceptual loss",
        "",
        "LPIPS/VGG weights cannot be downloaded in facegen's offline setting, so the perceptual term for `mini` "
        "is the squared distance between the face-world predictor's 128-d features (`assets/predictor`). "
        "That predictor was trained on the world's attributes, so the term pulls reconstructions towards the "
        "right pose, smile, hair, colours -- what LPIPS does for photos.",
        "",
        "## Recipe for FFHQ-size generators (1024 px, 18 x 512 w+) on a GPU",
        "",
        "1. Align training/eval photos exactly as FFHQ (`facegen.labels.align`, dlib 68 landmarks; the generator's "
        "samples are aligned by construction, so the encoder is trained on samples only).",
        "2. Train at an input of 256 px (`MAX_INPUT`; images are area-downsampled), with wider stages, e.g.",
        "   ```",
        "   python -m facegen encoder train --model ffhq-config-f --out encoders/ffhq --minutes 600 \\",
        "       --batch 16 --channels 64,128,256,512 --blocks 2 --hidden 1024 --pixel-every 1 --feature-weight 0",
        "   ```",
        "   on one GPU (FACEGEN_DEVICE=cuda; no `--real-pool`: face-world renders are for mini only). The encoder "
        "sees 256 px inputs and the reconstruction losses are computed at 256 px (facegen area-downsamples "
        "G's 1024 px output); expect roughly 10-20 GPU-hours for a usable encoder, as with pSp/e4e.",
        "3. Perceptual term: where LPIPS weights are available (`pip install lpips`, weights cached), pass "
        "`perceptual=lpips.LPIPS(net='vgg')`-style callables to `refine()` and add them to the training loss "
        "(weight ~0.8 as in pSp), plus an identity loss (ArcFace) for faces if licences allow.",
        "4. Refinement: 100-500 Adam steps in w+ (lr 0.01-0.03) at 256 px, with noise optimisation and "
        "the StyleGAN2 projector's noise regularisation if fine detail matters; GPU time about 0.05 s/step.",
        "",
    ]
    return "\n".join(lines)


def cli_main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m facegen encoder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train an encoder for a generator on its own samples")
    t.add_argument("--model", default="mini")
    t.add_argument("--out", required=True)
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--eval-n", type=int, default=64)
    t.add_argument("--device", default=None, help="cpu, cuda, mps (default: FACEGEN_DEVICE or the best available)")
    for f in TrainConfig.__dataclass_fields__.values():
        kind = {"int": int, "float": float, "str": str}[f.type] if isinstance(f.type, str) else f.type
        t.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    e = sub.add_parser("encode", help="align + encode photos to latent .npz files")
    e.add_argument("images", nargs="+")
    e.add_argument("--model", default="mini")
    e.add_argument("--encoder", default=None)
    e.add_argument("--outdir", required=True)
    e.add_argument("--refine-steps", type=int, default=200)
    e.add_argument("--time-budget", type=float, default=8.0)
    e.add_argument("--face", type=int, default=1, help="which face (1 = largest)")
    args = p.parse_args(argv)
    from facegen.engine.device import configure_cpu_threads
    from facegen.engine.loaders import load_generator
    if args.threads if hasattr(args, "threads") else 0:
        configure_cpu_threads(args.threads)
    G = load_generator(args.model)
    if args.cmd == "train":
        from facegen.engine.device import pick_device
        G = G.to(pick_device(args.device))
        fields = TrainConfig.__dataclass_fields__
        cfg = TrainConfig(**{k: getattr(args, k) for k in fields})
        command = "python -m facegen encoder " + " ".join(shlex.quote(a) for a in argv)
        E, stats = train_encoder(G, cfg, log=lambda m: print(m, flush=True))
        E.meta.update(generator_fingerprint=G.fingerprint, generator=args.model,
                      generator_resolution=G.img_resolution)
        out = Path(args.out)
        E.save_pretrained(out, generator_fingerprint=G.fingerprint)
        metrics = evaluate(G, E, n=args.eval_n)
        record = {"command": command, "generator": args.model, "generator_fingerprint": G.fingerprint,
                  "config": {k: getattr(cfg, k) for k in fields}, "train": stats,
                  "params": sum(p.numel() for p in E.parameters()),
                  "weights_mb": round((out / WEIGHTS_NAME).stat().st_size / 2 ** 20, 2),
                  "threads": torch.get_num_threads(), "torch": torch.__version__, "metrics": metrics}
        mpath = out / "metrics.json"
        old = json.loads(mpath.read_text()) if mpath.exists() else {}
        old.pop("bench", None)
        (out / "metrics.json").write_text(json.dumps({**old, **record}, indent=1) + "\n")
        (out / "README.md").write_text(_readme(record))
        print(json.dumps({"out": str(out), "fingerprint": G.fingerprint,
                          "psnr": metrics["encoder"]["psnr"],
                          "attr_continuous_mae": metrics["encoder"]["attr_vs_truth"]["continuous_mae_mean"]}))
        return 0
    # encode
    from facegen.labels.align import align_face
    from facegen.engine.latents import save_latent
    from PIL import Image
    enc_dir = args.encoder or find_encoder(G)
    if enc_dir is None:
        raise ModelNotFoundError(f"No encoder found for generator {G.fingerprint}; pass --encoder DIR.")
    E = load_encoder(enc_dir, G)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for src in args.images:
        r = encode_photo(G, E, src, index=args.face - 1, refine_steps=args.refine_steps,
                         time_budget=args.time_budget)
        stem = Path(src).stem
        Image.fromarray(r["aligned"]).save(outdir / f"{stem}-aligned.png")
        Image.fromarray(r["refined_image"]).save(outdir / f"{stem}-reconstruction.png")
        save_latent(outdir / f"{stem}.npz", r["ws"], fingerprint=G.fingerprint, source=Path(src).name,
                    kind="encoded-photo", refine_steps=r["refine"].steps)
        print(json.dumps({"image": src, "align": r["align"].summary(), "psnr_encoder": round(r["encoder_metrics"]["psnr"], 2),
                          "psnr_refined": round(r["refined_metrics"]["psnr"], 2),
                          "seconds": round(r["seconds"], 2)}))
    return 0


def encode_photo(G, E, src, index: Optional[int] = None, mode: str = "auto", refine_steps: int = 200,
                 time_budget: float = 8.0, progress: Optional[Callable] = None, aligned=None) -> dict:
    """The whole path for one photo: align -> encoder -> refinement. Returns a dict of picklable values
    (aligned / encoder / refined images, ws, metrics, timings) plus the AlignResult and RefineResult.

    `aligned` (an AlignResult or an aligned uint8 crop) skips the alignment of `src`."""
    from facegen.labels.align import AlignResult, align_face
    from facegen.engine.synthesis import synthesize
    t0 = time.perf_counter()
    say = progress or (lambda *a, **k: None)
    say(0.02, "finding the face")
    if isinstance(aligned, np.ndarray):     # an aligned crop (uint8 [R, R, 3]) made earlier
        aligned = AlignResult(aligned, "given", None, source=aligned)
    al = aligned if aligned is not None else align_face(src, G.img_resolution, index=index, mode=mode)
    say(0.1, "encoding")
    t1 = time.perf_counter()
    ws_e = encode(E, al.image)[0]
    t_enc = time.perf_counter() - t1
    img_e = synthesize(G, ws_e[None])[0]
    r = refine(G, al.image, ws_e, steps=refine_steps, time_budget=time_budget,
               progress=lambda f, s: say(0.1 + 0.85 * f, s))
    img_r = synthesize(G, r.ws[None])[0] if r.steps else img_e
    return {"aligned": al.image, "align": al, "encoder_ws": ws_e, "encoder_image": img_e, "ws": r.ws,
            "refined_image": img_r, "refine": r, "encoder_metrics": reconstruction_metrics(img_e, al.image),
            "refined_metrics": reconstruction_metrics(img_r, al.image), "encoder_seconds": t_enc,
            "align_seconds": al.seconds, "seconds": time.perf_counter() - t0}


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))

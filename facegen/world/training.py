"""StyleGAN2 training: the loop that made the embedded ``mini`` generator.

Method (StyleGAN2, Karras et al. 2020, with the StyleGAN2-ADA defaults scaled down):

* **Networks**: the engine's :class:`~facegen.engine.networks.Generator` and the residual
  :class:`~facegen.engine.networks.Discriminator` (minibatch std).
* **Loss**: non-saturating logistic. G minimises softplus(-D(G(z))); D minimises
  softplus(D(G(z))) + softplus(-D(x)).
* **Regularisation**: lazy R1 on reals every ``r1_interval`` D steps,
  (gamma / 2) * ||grad_x D(x)||^2 * interval; optimiser hyper-parameters corrected for the
  lazy schedule (lr * c, beta ** c with c = interval / (interval + 1)).
* **Style mixing** with probability 0.9: a random crossover layer switches to a second z.
* **EMA generator** with a half-life of ``ema_kimg`` thousand images (ramped up early on).
* **Data**: rendered from the face world (pre-rendered in memory, cached as .npy) or read from
  an image folder (so the same command fine-tunes on real faces on a GPU machine); random
  horizontal flips.
* **Checkpoints** hold G, D, G_ema, both optimisers, the step and every RNG state: a resumed
  run continues bit for bit. ``log.jsonl`` has losses and speed; ``samples/`` has grids.
* **Several sessions / processes**: compact resume files to carry a run to another machine, and a
  start / resume event in ``log.jsonl`` per invocation (:mod:`facegen.world.resume`); under ``torchrun``
  the global batch is split over the processes with one process's draws (:mod:`facegen.world.distributed`).

CLI::

    python -m facegen train --outdir runs/mini --data world:24000 --resolution 64 \\
        --minutes 90 --export assets/mini
    torchrun --standalone --nproc_per_node 2 -m facegen train --outdir runs/X --batch 16 --threads 1 ...
    python -m facegen train --export-resume runs/X/checkpoint.pt --export assets/X-resume [--with-optimizer]
    python -m facegen train --outdir runs/X --resume-from assets/X-resume ...
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from facegen.engine.networks import Discriminator, Generator


@dataclass
class TrainConfig:
    outdir: str = "runs/mini"
    data: str = "world:24000"              # 'world:N' or a folder of images
    resolution: int = 64
    batch: int = 16
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    g_channel_base: int = 1024             # channels per res = min(base // res, max)
    g_channel_max: int = 128
    g_architecture: str = "skip"           # 'skip' (StyleGAN2's default), 'orig' (only the last block writes RGB)
    g_chroma_res: int = 0                  # skip only: blocks below this resolution write brightness, not colour
    d_channel_base: int = 1024
    d_channel_max: int = 128
    lr: float = 0.0025
    r1_gamma: float = 0.1
    r1_interval: int = 16
    style_mixing: float = 0.9
    ema_kimg: float = 5.0
    ema_rampup: float = 0.05
    xflip: bool = True
    kimg: float = 10000.0                  # stop after this many thousand images ...
    minutes: float = 0.0                   # ... or this much wall time (0 = no limit)
    seed: int = 0
    snapshot_steps: int = 500
    log_steps: int = 50
    device: str = "cpu"
    c_dim: int = 0                         # class-conditional training (labels from the world)
    init: str = ""                         # fine-tune: start G (and G_ema) from this generator folder and
                                           # D from its discriminator.safetensors (fresh optimisers)
    classes: str = ""                      # conditional: comma-separated facegen.world.classes classes of the
                                           # world labels as the class code (c_dim = their number)
    q_weight: float = 0.0                  # > 0: InfoGAN-style -- D stays unconditional and a Q head on its
                                           # trunk predicts the class code of reals and fakes (BCE)
    # Levers of the v2 recipe (issue #17); the defaults leave the recipe above unchanged, bit for bit.
    augment: str = ""                      # DiffAugment ops on D's inputs, e.g. 'translation,cutout,color' (augment.py)
    augment_p: float = 1.0                 # probability per op and image (the start value when adaptive)
    ada_target: float = 0.0                # > 0: ADA -- adapt p so that E[sign(D(real))] stays at this (0.6)
    ada_kimg: float = 100.0                # ... p can move by 1 in this many kimg
    pl_weight: float = 0.0                 # > 0: lazy path-length regularisation of G (pathlength.py; StyleGAN2: 2)
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    projected: str = ""                    # 'with' (beside the pixel D) | 'only': a projected D on the frozen
                                           # world-predictor trunk (projected.py)
    projected_loss: str = "hinge"          # 'hinge' | 'logistic'
    projected_lr: float = 0.002


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def load_dataset(spec: str, resolution: int, cache_dir: Optional[Path] = None) -> np.ndarray:
    """'world:N' -> N face-world renders (seeds 0..N-1) | folder -> its images, as uint8 [N, H, W, 3]."""
    if spec.startswith("world:"):
        n = int(spec.split(":", 1)[1])
        cache = cache_dir / f"world_{n}_{resolution}.npy" if cache_dir else None
        if cache is not None and cache.exists():
            return np.load(cache)
        from facegen.world.render import render_batch
        images = np.concatenate([render_batch(range(i, min(i + 500, n)), size=resolution)[0]
                                 for i in range(0, n, 500)])
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, images)
        return images
    from PIL import Image
    folder = Path(spec)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not files:
        raise FileNotFoundError(f"no images found in {folder}")
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((resolution, resolution), Image.LANCZOS))
                     for p in files])


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1


# ---------------------------------------------------------------------------
# The training state
# ---------------------------------------------------------------------------

def build_networks(cfg: TrainConfig):
    G = Generator(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.resolution,
                  mapping_kwargs=dict(num_layers=cfg.mapping_layers),
                  synthesis_kwargs=dict(channel_base=cfg.g_channel_base, channel_max=cfg.g_channel_max,
                                        architecture=cfg.g_architecture,
                                        **({"chroma_res": cfg.g_chroma_res} if cfg.g_chroma_res else {})))
    D = Discriminator(c_dim=0 if cfg.q_weight > 0 else cfg.c_dim, img_resolution=cfg.resolution,
                      channel_base=cfg.d_channel_base, channel_max=cfg.d_channel_max)
    return G, D


def build_q_head(cfg: TrainConfig, D) -> Optional[torch.nn.Module]:
    """InfoGAN Q head: D's trunk features [N, ch4] -> class-code logits [N, c_dim] (None unless q_weight > 0)."""
    if cfg.q_weight <= 0:
        return None
    from facegen.engine.networks import FullyConnectedLayer
    return torch.nn.Sequential(FullyConnectedLayer(D.fc.out_features, D.fc.out_features, activation="lrelu"),
                               FullyConnectedLayer(D.fc.out_features, cfg.c_dim))


def world_class_labels(classes: str, n: int) -> np.ndarray:
    """Class code of world seeds 0..n-1: float32 [n, K], 1 where the seed's face satisfies the class."""
    from facegen.world.classes import WORLD_CLASSES, world_labels, world_table
    return WORLD_CLASSES.mask(world_table(world_labels(range(n))), WORLD_CLASSES.parse_list(classes)).astype(np.float32)


DISCRIMINATOR_NAME = "discriminator.safetensors"


def init_from_folder(G, D, folder) -> None:
    """Fine-tuning start: G's weights from a Hub-native generator folder, D's from the
    ``discriminator.safetensors`` beside it (see :func:`export_discriminator`); shapes must match the config."""
    from safetensors.torch import load_file
    from facegen.engine.errors import ModelNotFoundError
    from facegen.engine.hub import read_folder
    folder = Path(folder)
    _, g_state = read_folder(folder, "Generator", "generator", "python -m facegen train ... --export FOLDER")
    if G.c_dim > 0 and "mapping.embed.weight" not in g_state:
        # an unconditional start for a conditional G: the z part of the first mapping layer is copied
        # (rescaled for the wider input's equalised-lr gain), the class part starts at zero, so G starts as
        # the unconditional generator and learns to use the code.
        own = G.state_dict()
        w = g_state["mapping.fc0.weight"]
        new = torch.zeros_like(own["mapping.fc0.weight"])
        new[:, :w.shape[1]] = w * math.sqrt(new.shape[1] / w.shape[1])
        g_state = {**g_state, "mapping.fc0.weight": new, "mapping.embed.weight": own["mapping.embed.weight"],
                   "mapping.embed.bias": own["mapping.embed.bias"]}
    G.load_state_dict(g_state, strict=True)
    d_path = folder / DISCRIMINATOR_NAME
    if not d_path.is_file():
        raise ModelNotFoundError(f"{d_path} is missing: write it with `python -m facegen train "
                                 f"--export-discriminator CKPT --export {folder}`.")
    D.load_state_dict(load_file(str(d_path)), strict=True)


def export_discriminator(checkpoint, folder) -> Path:
    """Write the D of a training checkpoint as ``FOLDER/discriminator.safetensors`` (for fine-tuning)."""
    from safetensors.torch import save_file
    st = torch.load(checkpoint, map_location="cpu", weights_only=True)
    path = Path(folder) / DISCRIMINATOR_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.float().contiguous() for k, v in st["D"].items()}, str(path),
              metadata={"format": "pt", "step": str(st["step"]), "kimg": str(round(st["images_seen"] / 1000, 1))})
    return path


def build_levers(cfg: TrainConfig, device):
    """(DiffAugment, path-length regulariser, projected D, its optimiser) -- each None when its lever is off."""
    aug = pl = P = opt_P = None
    if cfg.augment:
        from facegen.world.augment import DiffAugment
        aug = DiffAugment(cfg.augment, p=cfg.augment_p, ada_target=cfg.ada_target, ada_kimg=cfg.ada_kimg).to(device)
    if cfg.pl_weight > 0:
        from facegen.world.pathlength import PathLengthRegulariser
        pl = PathLengthRegulariser(cfg.pl_weight, cfg.pl_interval, cfg.pl_batch_shrink).to(device)
    if cfg.projected:
        if cfg.projected not in ("with", "only"):
            raise ValueError(f"--projected {cfg.projected!r}: use 'with' or 'only'")
        from facegen.world.projected import ProjectedDiscriminator
        P = ProjectedDiscriminator(cfg.resolution, loss=cfg.projected_loss, seed=cfg.seed).to(device).train()
        opt_P = torch.optim.Adam(P.heads.parameters(), lr=cfg.projected_lr, betas=(0.0, 0.99), eps=1e-8)
    return aug, pl, P, opt_P


class Trainer:
    def __init__(self, cfg: TrainConfig, images: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None):
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        self.G, self.D = build_networks(cfg)
        self.G.to(self.device).train()
        self.D.to(self.device).train()
        if cfg.init:
            init_from_folder(self.G, self.D, cfg.init)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.Q = build_q_head(cfg, self.D)
        d_params = list(self.D.parameters())
        if self.Q is not None:
            self.Q.to(self.device).train()
            d_params += list(self.Q.parameters())
        c = cfg.r1_interval / (cfg.r1_interval + 1)
        self.aug, self.pl, self.P, self.opt_P = build_levers(cfg, self.device)
        cg = cfg.pl_interval / (cfg.pl_interval + 1) if self.pl is not None else 1.0
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr * cg, betas=(0.0, 0.99 ** cg), eps=1e-8)
        self.opt_D = torch.optim.Adam(d_params, lr=cfg.lr * c, betas=(0.0, 0.99 ** c), eps=1e-8)
        self.images = images
        self.labels = labels
        self.data_rng = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.images_seen = 0
        self.elapsed = 0.0

    # -- one iteration ------------------------------------------------------------------------
    def sample_reals(self):
        idx = torch.randint(len(self.images), (self.cfg.batch,), generator=self.data_rng)
        x = to_tensor(self.images[idx.numpy()])
        if self.cfg.xflip:
            flip = torch.rand(self.cfg.batch, generator=self.data_rng) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        c = torch.from_numpy(self.labels[idx.numpy()]).float() if self.labels is not None else None
        return x.to(self.device), (c.to(self.device) if c is not None else None)

    def mapping_with_mixing(self, z, c):
        G = self.G
        ws = G.mapping(z, c, update_w_avg=True)
        if self.cfg.style_mixing > 0 and torch.rand([]) < self.cfg.style_mixing:
            cutoff = int(torch.randint(1, G.num_ws, []))
            ws2 = G.mapping(torch.randn_like(z), c)
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return ws

    def fake_labels(self, c_real):
        if c_real is None:
            return None
        return c_real[torch.randperm(len(c_real))]

    # Data parallel (facegen.world.distributed): every process draws the global batch and trains on its
    # rows; in a single process (dp None) both hooks are the plain code.
    dp = None

    def local(self, t):
        """This process's rows of a global-batch tensor (all of it in a single process)."""
        return t if self.dp is None or t is None else self.dp.local(t)

    def synthesize(self, ws):
        """G.synthesis with random noise, on this process's rows of the global ws."""
        return self.G.synthesis(ws, noise_mode="random") if self.dp is None else self.dp.synthesize(self.G, ws)

    def train_step(self) -> dict:
        cfg, G, D = self.cfg, self.G, self.D
        stats = {}
        # G: non-saturating loss.
        x_real, c_real = self.sample_reals()
        c_fake_all = self.fake_labels(c_real)
        x_real, c_real, c_fake = self.local(x_real), self.local(c_real), self.local(c_fake_all)
        z = torch.randn(cfg.batch, cfg.z_dim, device=self.device)
        G.requires_grad_(True)
        D.requires_grad_(False)
        img = self.synthesize(self.mapping_with_mixing(z, c_fake_all))
        if self.aug is not None:
            img = self.aug(img)
        if self.Q is not None:          # InfoGAN: G also makes its class code recognisable to Q
            feats = D.features(img)
            loss_q = F.binary_cross_entropy_with_logits(self.Q(feats), c_fake)
            loss_G = F.softplus(-D.out(feats)).mean() + cfg.q_weight * loss_q
            stats["q_fake_G"] = loss_q.item()
        elif cfg.projected == "only":
            loss_G = 0.0
        else:
            loss_G = F.softplus(-D(img, c_fake)).mean()
        if self.P is not None:
            self.P.requires_grad_(False)
            loss_G = loss_G + self.P.loss_G(img)
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()
        stats["loss_G"] = loss_G.item()
        if self.pl is not None and self.step % self.pl.interval == 0:
            z = torch.randn(self.pl.batch_size(cfg.batch), cfg.z_dim, device=self.device)
            ws = self.mapping_with_mixing(z, None if c_fake_all is None else c_fake_all[:len(z)])
            loss_pl, lengths = self.pl.loss(G.synthesis(ws, noise_mode="random"), ws)
            self.opt_G.zero_grad(set_to_none=True)
            loss_pl.backward()
            self.opt_G.step()
            stats["pl"] = lengths.mean().item()
        # D: logistic loss on fakes and reals.
        G.requires_grad_(False)
        D.requires_grad_(True)
        with torch.no_grad():
            z = torch.randn(cfg.batch, cfg.z_dim, device=self.device)
            img = self.synthesize(self.mapping_with_mixing(z, c_fake_all))
        x_seen = x_real
        if self.aug is not None:
            img, x_seen = self.aug(img), self.aug(x_real)
        if self.Q is not None:
            f_fake, f_real = D.features(img), D.features(x_seen)
            logits_fake, logits_real = D.out(f_fake), D.out(f_real)
            loss_q = (F.binary_cross_entropy_with_logits(self.Q(f_real), c_real)
                      + F.binary_cross_entropy_with_logits(self.Q(f_fake), c_fake)) / 2
            stats["q_D"] = loss_q.item()
        elif cfg.projected != "only":
            logits_fake = D(img, c_fake)
            logits_real = D(x_seen, c_real)
            loss_q = 0.0
        if cfg.projected != "only":
            loss_D = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean() + cfg.q_weight * loss_q
            self.opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            self.opt_D.step()
            stats["loss_D"] = loss_D.item()
            stats["D_real"] = logits_real.mean().item()
            stats["D_fake"] = logits_fake.mean().item()
        if self.P is not None:
            p_stats, p_real = self.P.d_step(img, x_seen, self.opt_P)
            stats.update(p_stats)
            logits_real = p_real if cfg.projected == "only" else logits_real
        if self.aug is not None:
            self.aug.update(logits_real, cfg.batch)
            stats["aug_p"] = float(self.aug.p)
        # Lazy R1 on reals.
        if self.step % cfg.r1_interval == 0 and cfg.projected != "only":
            x = x_real.detach().requires_grad_(True)
            logits = D(self.aug(x) if self.aug is not None else x, c_real)
            (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
            penalty = grad.square().sum(dim=[1, 2, 3]).mean()
            loss_r1 = penalty * (cfg.r1_gamma / 2) * cfg.r1_interval
            self.opt_D.zero_grad(set_to_none=True)
            loss_r1.backward()
            self.opt_D.step()
            stats["r1"] = penalty.item()
        # EMA.
        self.images_seen += cfg.batch
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup:
            ema_nimg = min(ema_nimg, self.images_seen * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)
        self.step += 1
        return stats

    # -- checkpoints ---------------------------------------------------------------------------
    def state(self) -> dict:
        return {"cfg": asdict(self.cfg), "step": self.step, "images_seen": self.images_seen,
                "elapsed": self.elapsed, "G": self.G.state_dict(), "D": self.D.state_dict(),
                "G_ema": self.G_ema.state_dict(), "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "rng_torch": torch.get_rng_state(), "rng_data": self.data_rng.get_state(),
                "rng_numpy": np.random.get_state()[1].tolist(), "rng_numpy_pos": int(np.random.get_state()[2]),
                "rng_python": repr(random.getstate()), **({"Q": self.Q.state_dict()} if self.Q is not None else {}),
                **{k: m.state_dict() for k, m in self.lever_modules().items()}}

    def lever_modules(self) -> dict:
        """The v2 levers' state holders that are switched on (their state_dicts go in the checkpoint)."""
        return {k: m for k, m in (("aug", self.aug), ("pl", self.pl), ("P", self.P), ("opt_P", self.opt_P))
                if m is not None}

    def save_checkpoint(self, path: Path):
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: Path):
        self.load_state(torch.load(path, map_location=self.device, weights_only=True))

    def load_state(self, st: dict):
        """Everything :meth:`state` saved (facegen.world.resume builds such a dict from a compact file)."""
        self.step, self.images_seen, self.elapsed = st["step"], st["images_seen"], st["elapsed"]
        self.G.load_state_dict(st["G"])
        self.D.load_state_dict(st["D"])
        self.G_ema.load_state_dict(st["G_ema"])
        self.opt_G.load_state_dict(st["opt_G"])
        if self.Q is not None:
            self.Q.load_state_dict(st["Q"])
        self.opt_D.load_state_dict(st["opt_D"])
        for k, m in self.lever_modules().items():
            m.load_state_dict(st[k])
        torch.set_rng_state(st["rng_torch"].cpu())
        self.data_rng.set_state(st["rng_data"].cpu())
        np.random.set_state(("MT19937", np.array(st["rng_numpy"], dtype=np.uint32), st["rng_numpy_pos"], 0, 0.0))
        import ast
        state = ast.literal_eval(st["rng_python"])
        random.setstate(state)


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------

@torch.no_grad()
def sample_grid(G, path: Path, n: int = 32, seed: int = 0, psi: float = 0.7):
    from PIL import Image
    from facegen.engine.synthesis import synthesize
    from facegen.engine.latents import seeds_to_ws
    from facegen.world.render import make_grid
    ws = seeds_to_ws(G, list(range(seed, seed + n)), psi=psi) if G.c_dim == 0 else None
    if ws is None:
        return
    Image.fromarray(make_grid(synthesize(G, ws), cols=8)).save(path)


def train(cfg: TrainConfig, resume: bool = True, export: Optional[str] = None, log=print,
          command: Optional[str] = None, resume_from: Optional[str] = None) -> Trainer:
    from facegen.world import distributed, resume as resuming
    dp = distributed.DataParallel.from_env(cfg.device)     # torchrun with several processes, else None
    main = dp is None or dp.rank == 0                       # only the main process writes
    log = log if main else (lambda s: None)
    out = Path(cfg.outdir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with distributed.main_first(dp):
        images = load_dataset(cfg.data, cfg.resolution, cache_dir=out / "data")
    log(f"data: {len(images)} images at {cfg.resolution}px ({time.time() - t0:.0f}s)")
    labels = None
    if cfg.c_dim > 0:
        if not (cfg.classes and cfg.data.startswith("world:")):
            raise ValueError("a conditional run (c_dim > 0) needs --classes and --data world:N (labels from the world)")
        labels = world_class_labels(cfg.classes, len(images))
        if labels.shape[1] != cfg.c_dim:
            raise ValueError(f"--c-dim {cfg.c_dim} but --classes names {labels.shape[1]} classes")
        log(f"class code: {cfg.classes} (rates {np.round(labels.mean(0), 3).tolist()})")
    trainer = Trainer(cfg, images, labels)
    ckpt = out / "checkpoint.pt"
    source = ckpt if resume and ckpt.exists() else resume_from     # the run's own checkpoint wins
    optimizer_restored = resuming.load_resume(trainer, source) if source else None
    if source:
        log(f"resumed at step {trainer.step} ({trainer.images_seen / 1000:.1f} kimg) from {source}")
    if dp is not None:
        dp.attach(trainer)
    if main:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    nparams = sum(p.numel() for p in trainer.G.parameters())
    log(f"G {nparams / 1e6:.2f}M params, D {sum(p.numel() for p in trainer.D.parameters()) / 1e6:.2f}M params")
    start_elapsed, t_start = trainer.elapsed, time.time()
    window = []
    last = {}
    with open(out / "log.jsonl" if main else os.devnull, "a") as logf:
        logf.write(json.dumps(resuming.run_event(trainer, command, dp.world if dp else 1, source,
                                                 optimizer_restored)) + "\n")     # start / resume: the history
        while trainer.images_seen < cfg.kimg * 1000:
            if cfg.minutes and distributed.any_process(dp, trainer.elapsed >= cfg.minutes * 60):
                break
            ts = time.time()
            stats = distributed.after_step(dp, trainer, trainer.train_step())
            window.append(time.time() - ts)
            trainer.elapsed = start_elapsed + (time.time() - t_start)
            if not all(math.isfinite(v) for v in stats.values()):
                raise FloatingPointError(f"non-finite loss at step {trainer.step}: {stats}")
            if trainer.step % cfg.log_steps == 0:
                rec = last = {"step": trainer.step, "kimg": trainer.images_seen / 1000, "elapsed_s": round(trainer.elapsed, 1),
                       "s_per_step": round(float(np.mean(window)), 3), **{k: round(v, 4) for k, v in stats.items()}}
                window = []
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                log(json.dumps(rec))
            if main and trainer.step % cfg.snapshot_steps == 0:
                trainer.save_checkpoint(ckpt)
                sample_grid(trainer.G_ema, out / "samples" / f"step{trainer.step:07d}.png")
        if dp is not None:   # every process must still hold rank 0's weights
            logf.write(json.dumps({"event": "data_parallel", "step": trainer.step, "world_size": dp.world,
                                   "max_divergence": dp.max_divergence(trainer)}) + "\n")
            dp.close()
    if not main:
        return trainer
    trainer.save_checkpoint(ckpt)
    sample_grid(trainer.G_ema, out / "samples" / "final.png")
    if export:
        G = copy.deepcopy(trainer.G_ema).eval()
        G.meta = {"name": Path(export).name, "trained_kimg": round(trainer.images_seen / 1000, 1),
                  "train_minutes": round(trainer.elapsed / 60, 1), "data": cfg.data,
                  **({"classes": cfg.classes.split(",")} if cfg.c_dim > 0 else {})}
        G.save_pretrained(export)
        metrics = {"command": command, "config": asdict(cfg), "fingerprint": G.fingerprint,
                   "steps": trainer.step, "kimg": round(trainer.images_seen / 1000, 2),
                   "wall_minutes": round(trainer.elapsed / 60, 1),
                   "params_G": sum(p.numel() for p in G.parameters()),
                   "params_D": sum(p.numel() for p in trainer.D.parameters()),
                   "weights_mb": round((Path(export) / "model.safetensors").stat().st_size / 2 ** 20, 2),
                   "last_log": last, "history": resuming.history(out / "log.jsonl"),
                   "torch": torch.__version__, "threads": torch.get_num_threads()}
        mpath = Path(export) / "metrics.json"
        old = json.loads(mpath.read_text()) if mpath.exists() else {}
        mpath.write_text(json.dumps({**old, **metrics}, indent=1) + "\n")
        log(f"exported G_ema to {export} (fingerprint {G.fingerprint})")
    return trainer


def export_checkpoint(checkpoint, folder, **meta) -> Path:
    """Write the G_ema of a training checkpoint as a Hub-native folder (e.g. an interim snapshot)."""
    st = torch.load(checkpoint, map_location="cpu", weights_only=True)
    cfg = TrainConfig(**st["cfg"])
    G, _ = build_networks(cfg)
    G.load_state_dict(st["G_ema"])
    G.meta = {"trained_kimg": round(st["images_seen"] / 1000, 1), "train_minutes": round(st["elapsed"] / 60, 1),
              "data": cfg.data, **meta}
    return G.eval().save_pretrained(folder)


def cli_main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m facegen train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in TrainConfig.__dataclass_fields__.values():
        kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str, "bool": str}[f.type]
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--export", default=None, help="write G_ema as a Hub-native folder here at the end")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--export-checkpoint", default=None, metavar="CKPT",
                   help="only export the G_ema of CKPT to --export, no training")
    p.add_argument("--export-discriminator", default=None, metavar="CKPT",
                   help="only write the D of CKPT to --export/discriminator.safetensors, no training")
    p.add_argument("--export-resume", default=None, metavar="CKPT",
                   help="only write CKPT as a compact resume file --export/resume.safetensors, no training")
    p.add_argument("--with-optimizer", action="store_true", help="--export-resume: keep the Adam state too")
    p.add_argument("--resume-from", default=None, metavar="PATH",
                   help="start this run directory from a resume file / folder / checkpoint.pt (facegen.world.resume)")
    args = vars(p.parse_args(argv))
    r_ckpt, with_optimizer, resume_from = args.pop("export_resume"), args.pop("with_optimizer"), args.pop("resume_from")
    if r_ckpt:
        from facegen.world.resume import export_resume
        print(export_resume(r_ckpt, args["export"] or "exported", with_optimizer=with_optimizer))
        return 0
    d_ckpt = args.pop("export_discriminator")
    if d_ckpt:
        print(export_discriminator(d_ckpt, args["export"] or "exported"))
        return 0
    if args.get("export_checkpoint"):
        print(export_checkpoint(args["export_checkpoint"], args["export"] or "exported"))
        return 0
    args.pop("export_checkpoint")
    threads = args.pop("threads")
    if threads:
        torch.set_num_threads(threads)
    resume = not args.pop("no_resume")
    export = args.pop("export")
    if isinstance(args.get("xflip"), str):
        args["xflip"] = args["xflip"].lower() in ("1", "true", "yes")
    cfg = TrainConfig(**args)
    from facegen.world.distributed import launcher
    command = launcher() + " -m facegen train " + " ".join(argv)
    train(cfg, resume=resume, export=export, log=lambda s: print(s, flush=True), command=command,
          resume_from=resume_from)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))

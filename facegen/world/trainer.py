"""The StyleGAN2 training state and one iteration of it (:class:`Trainer`).

One :meth:`Trainer.train_step`, in order:

1. **G step** -- non-saturating logistic loss softplus(-D(G(z))) on a batch with style mixing
   (probability ``style_mixing``: a random crossover layer switches to a second z); plus the InfoGAN
   Q loss on the fake class code, or the projected D's G loss, when those are on.
2. **Path-length step** (lazy, every ``pl_interval`` steps) when ``pl_weight > 0``; the
   **linear-decodability step** (lazy, every ``lin_interval`` steps) when ``lin_weight > 0``
   (:mod:`facegen.world.linearity`: the world predictor's attributes of G(w) follow the best linear
   read-out of w); the **attribute-matching step** (lazy, every ``match_interval`` steps) when
   ``match_weight > 0`` (:mod:`facegen.world.distribution_match`: the predictor's attribute distribution of
   G's faces toward the reals').
3. **D step** -- softplus(D(G(z))) + softplus(-D(x)) on reals with random horizontal flips (both
   through DiffAugment when on; ADA then adapts its probability from the sign of D(real)); the
   projected D's own step.
4. **Lazy R1** on reals every ``r1_interval`` steps: (gamma / 2) ||grad_x D(x)||^2 * interval; both
   optimisers' hyper-parameters are corrected for their lazy schedules (lr * c, beta ** c with
   c = interval / (interval + 1)).
5. **EMA** of G's weights with a half-life of ``ema_kimg`` thousand images, ramped up early on.

Every face G draws in these steps carries random per-pixel noise (StyleGAN2), unless ``g_noise`` is
"none": then none is drawn and the noise strengths are held at 0 (set to 0 at the start and on a resume),
so the generator that ships draws what training saw. Why: from scratch at batch 64 one block's noise
strength grew from ~0.001 to 0.1-0.14 by 80-96 kimg (64 px; 32 px when the matching lever read noise-free
faces) and the faces turned to speckle or blotches (high-frequency energy up to 1.5 x the renders',
MediaPipe finding < 15 % of them; bench/results/v3-early/README.md), while the world has no stochastic
detail for noise to draw (v2's strengths ended below 0.002).

:meth:`Trainer.state` holds G, D, G_ema, the optimisers, the lever states, the step and every RNG
state, so a resumed run continues bit for bit. Under ``torchrun`` the ``dp`` hooks train this
process's rows of the global batch (:mod:`facegen.world.distributed`). The run around it:
:mod:`facegen.world.training`.
"""

from __future__ import annotations

import copy
import os
import random
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from facegen.world.distribution_match import build_distribution_match
from facegen.world.linearity import build_linearity
from facegen.world.resume import OPTIMISERS
from facegen.world.train_config import TrainConfig, build_levers, build_networks, build_q_head
from facegen.world.train_data import to_tensor
from facegen.world.train_export import init_from_folder

__all__ = ["Trainer"]


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
        self.lin = build_linearity(cfg, self.device)
        self.match = build_distribution_match(cfg, self.device)
        cg = cfg.pl_interval / (cfg.pl_interval + 1) if self.pl is not None else 1.0
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr * cg, betas=(0.0, 0.99 ** cg), eps=1e-8)
        self.opt_D = torch.optim.Adam(d_params, lr=cfg.lr * c, betas=(0.0, 0.99 ** c), eps=1e-8)
        self.hyperparameters = {k: [{"lr": g["lr"], "betas": g["betas"]} for g in opt.param_groups]
                                for k, opt in self.optimisers().items()}
        if cfg.g_noise not in ("random", "none"):
            raise ValueError(f"g_noise must be 'random' or 'none' (got {cfg.g_noise!r})")
        self.noise_mode = cfg.g_noise
        self.hold_noise()
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
        """G.synthesis with the run's noise mode, on this process's rows of the global ws."""
        if self.dp is None:
            return self.G.synthesis(ws, noise_mode=self.noise_mode)
        return self.dp.synthesize(self.G, ws, self.noise_mode)

    @torch.no_grad()
    def hold_noise(self):
        """g_noise "none": every noise strength of G and G_ema is 0 (module docstring)."""
        if self.noise_mode == "none":
            for net in (self.G, self.G_ema):
                for name, p in net.synthesis.named_parameters():
                    if name.endswith("noise_strength"):
                        p.zero_()

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
            loss_pl, lengths = self.pl.loss(G.synthesis(ws, noise_mode=self.noise_mode), ws)
            self.opt_G.zero_grad(set_to_none=True)
            loss_pl.backward()
            self.opt_G.step()
            stats["pl"] = lengths.mean().item()
        if self.lin is not None and self.step % self.lin.interval == 0:
            z = torch.randn(self.lin.batch_size(cfg.batch), cfg.z_dim, device=self.device)
            ws = G.mapping(z, None if c_fake_all is None else c_fake_all[:len(z)])   # one w per face, no mixing
            if self.lin.mode == "w":         # the attributes are fixed targets: no graph through the synthesis
                with torch.no_grad():
                    img = G.synthesis(ws.detach(), noise_mode=self.noise_mode)
            else:
                img = G.synthesis(ws, noise_mode=self.noise_mode)
            loss_lin, lin_stats = self.lin.loss(img, ws[:, 0])
            if loss_lin is not None:
                self.opt_G.zero_grad(set_to_none=True)
                loss_lin.backward()
                self.opt_G.step()
            stats.update(lin_stats)
        if self.match is not None and self.step % self.match.interval == 0:
            n = min(self.match.batch_size(cfg.batch), len(x_real))
            z = torch.randn(n, cfg.z_dim, device=self.device)
            c = None if c_fake_all is None else c_fake_all[:n]
            ws = G.mapping(z, c)                                                      # faces as sampled, no mixing
            measured = None
            if self.match.measure in ("ema", "mixed"):                                # what ships, same z
                with torch.no_grad():
                    measured = self.G_ema.synthesis(self.G_ema.mapping(z, c), noise_mode=self.noise_mode)
            loss_m, m_stats = self.match.loss(G.synthesis(ws, noise_mode=self.noise_mode), x_real[:n], measured)
            if loss_m is not None:
                self.opt_G.zero_grad(set_to_none=True)
                loss_m.backward()
                self.opt_G.step()
            stats.update(m_stats)
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
        return {k: m for k, m in (("aug", self.aug), ("pl", self.pl), ("P", self.P), ("opt_P", self.opt_P),
                                                ("lin", self.lin), ("match", self.match))
                if m is not None}

    def optimisers(self) -> dict:
        return {k: getattr(self, k) for k in OPTIMISERS if getattr(self, k) is not None}

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
        for k, opt in self.optimisers().items():   # Adam's moments resume; its lr and betas are this run's options
            for group, hp in zip(opt.param_groups, self.hyperparameters[k]):
                group.update(hp)
        torch.set_rng_state(st["rng_torch"].cpu())
        self.data_rng.set_state(st["rng_data"].cpu())
        np.random.set_state(("MT19937", np.array(st["rng_numpy"], dtype=np.uint32), st["rng_numpy_pos"], 0, 0.0))
        import ast
        state = ast.literal_eval(st["rng_python"])
        random.setstate(state)
        self.hold_noise()

"""A StyleGAN2 training run's configuration (:class:`TrainConfig`) and what it builds.

Every field of :class:`TrainConfig` is a ``python -m facegen train`` option (``--r1-gamma`` for
``r1_gamma``). From a config come G and D (:func:`build_networks`: the engine's
:class:`~facegen.engine.networks.Generator` and :class:`~facegen.engine.discriminator.Discriminator`),
the InfoGAN Q head (:func:`build_q_head`) and the v2 levers (:func:`build_levers`: DiffAugment / ADA,
path-length regularisation, the projected discriminator; the linear-decodability lever is built by
:func:`facegen.world.linearity.build_linearity`, attribute matching by
:func:`facegen.world.distribution_match.build_distribution_match`), each None when switched off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from facegen.engine.discriminator import Discriminator
from facegen.engine.layers import FullyConnectedLayer
from facegen.engine.networks import Generator
from facegen.world.linearity import DEFAULT_ATTRIBUTES as LIN_ATTRIBUTES

__all__ = ["TrainConfig", "build_networks", "build_q_head", "build_levers"]


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
    g_noise: str = "random"                # G's per-pixel noise inputs in training: "random" (StyleGAN2) or "none"
                                           #      (never drawn; their strengths are held at 0: trainer.py)
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
    lin_weight: float = 0.0                # > 0: linear decodability of attributes from w (linearity.py)
    lin_interval: int = 4
    lin_batch_shrink: int = 2
    lin_warmup: int = 100                  # lever steps that only gather its statistics
    lin_mode: str = "both"                 # 'both': through the image and w | 'w': through w only (the mapping)
    lin_attributes: str = ",".join(LIN_ATTRIBUTES)  # the predictor attributes it reads (comma list)
    lin_bool_target: str = "logit"         # a boolean's score: 'logit' (clipped) | 'prob' (sigmoid) (linearity.py)
    lin_logit_clip: float = 6.0            # |logit| a boolean's score is clipped at (linearity.py, logit_clip)
    lin_spread: str = "running"            # the gradient's variance: 'running' | 'batch' (no gain from narrowing)
    lin_read: str = "plain"                # how the predictor sees G's faces: 'plain' | 'augment' (its training
                                           #      augmentation, predictor_images.lever_input)
    lin_continuous: str = "raw"            # continuous scores: 'raw' head output | 'clamped' to [0, 1]
    lin_attribute_weights: str = ""        # factors on single attributes' terms, e.g. 'smile=3' (others 1)
    match_weight: float = 0.0              # > 0: match the predictor's attribute distribution of fakes to the
    match_interval: int = 4                #      reals' (distribution_match.py)
    match_batch_shrink: int = 2
    match_warmup: int = 50
    match_measure: str = "G"              # whose faces the running fake statistics read: the training "G" or
                                           #      "ema" (G_ema, the network that ships; G still takes the gradient)
                                           #      or "mixed" (continuous on G_ema, classes on G)
    match_mode: str = "moments"            # the pull: running mean / spread errors ("moments") or the batch's
                                           #      sorted statistics against the reals' ("quantiles")
    match_joint: str = ""                  # "cov": also every pair's covariance (attributes drawn apart stay apart)
    match_joint_weight: float = 1.0        #      the pair terms' weight, relative to the marginal ones
    match_joint_skip: str = ""             #      attributes whose pairs are left out (comma list, e.g. eye_color)
    match_read: str = "plain"              # how the predictor sees faces and reals: 'plain' | 'augment'
    match_sharpen: float = 1.0             # temperature of booleans' / categoricals' probabilities (< 1: counts)
    match_continuous: str = "raw"          # continuous statistics: 'raw' head output | 'clamped' to [0, 1] |
                                           #      'folded' back into [0, 1] at its ends
    match_quantile_weight: float = 0.0     # > 0: also the continuous marginals' sorted quantiles (their shape)


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
    return torch.nn.Sequential(FullyConnectedLayer(D.fc.out_features, D.fc.out_features, activation="lrelu"),
                               FullyConnectedLayer(D.fc.out_features, cfg.c_dim))


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

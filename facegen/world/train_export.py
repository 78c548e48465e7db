"""A StyleGAN2 run's weights in and out of Hub-native folders.

* :func:`export_checkpoint` -- the G_ema of a training checkpoint or compact resume file
  (:func:`facegen.world.resume.read_resume`) as a generator folder (an interim snapshot; ``--export-checkpoint``).
* :func:`export_discriminator` -- its D as ``FOLDER/discriminator.safetensors`` (``--export-discriminator``),
  so that a later run can fine-tune from the folder.
* :func:`init_from_folder` -- that fine-tuning start: G from the generator folder (an unconditional G
  widened for a class code if needed), D from the ``discriminator.safetensors`` beside it.

Compact resume files (optimiser and RNG state too) are :mod:`facegen.world.resume`.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import torch

from facegen.world.resume import read_resume
from facegen.world.train_config import TrainConfig, build_networks

__all__ = ["DISCRIMINATOR_NAME", "init_from_folder", "export_discriminator", "export_checkpoint", "checkpoint_config"]

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
    """Write the D of a training checkpoint (or compact resume file) as ``FOLDER/discriminator.safetensors`` (for fine-tuning)."""
    from safetensors.torch import save_file
    st = read_resume(checkpoint)
    path = Path(folder) / DISCRIMINATOR_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.float().contiguous() for k, v in st["D"].items()}, str(path),
              metadata={"format": "pt", "step": str(st["step"]), "kimg": str(round(st["images_seen"] / 1000, 1))})
    return path


def checkpoint_config(st: dict) -> TrainConfig:
    """The TrainConfig of a read checkpoint, for building its networks: options of the writing run that this
    TrainConfig no longer has are left out (only the networks' shape matters to a reader)."""
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in st["cfg"].items() if k in known})


def export_checkpoint(checkpoint, folder, network: str = "G_ema", **meta) -> Path:
    """Write the G_ema of a training checkpoint (or compact resume file) as a Hub-native folder (e.g. an
    interim snapshot); a run's removed options do not stop it (:func:`checkpoint_config`). ``network`` "G"
    writes the training generator instead (to tell what the weight average changes; it never ships)."""
    if network not in ("G_ema", "G"):
        raise ValueError(f"export: network {network!r}, use 'G_ema' or 'G'")
    st = read_resume(checkpoint)
    cfg = checkpoint_config(st)
    G, _ = build_networks(cfg)
    G.load_state_dict(st[network])
    if network == "G":
        meta = {"network": "training G (not the weight average)", **meta}
    G.meta = {"trained_kimg": round(st["images_seen"] / 1000, 1), "train_minutes": round(st["elapsed"] / 60, 1),
              "data": cfg.data, **meta}
    return G.eval().save_pretrained(folder)

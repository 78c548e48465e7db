"""Two class-sampling components of a pack: the class classifier and the z-code generators.

A pack may carry, besides its generic class sampler (:mod:`facegen.packs.classes`), networks trained
for its generator (mini's pack has both; :mod:`facegen.world.classes` trains them on the face world):

* ``classifier`` — :class:`ClassClassifier`, a small multi-label CNN with one logit per class of the
  pack labeller's rule set (:mod:`facegen.labels.classes`). Differentiable, so z-code generators can be
  trained against it; customisation checks faces with it.
* ``zcodes`` — :class:`ZCodeBank`, one :class:`ZCodeNet` per class, ``z = u + f(u)`` with u ~ N(0, I):
  a proposal of latents whose faces belong to the class. Tied to one generator by fingerprint.

Both are facegen model folders (``config.json`` + ``model.safetensors``, :func:`facegen.engine.hub.write_folder`),
loaded strictly and cached per folder, in eval mode with gradients off.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegen.engine.errors import InputError, UnsupportedModelError

__all__ = ["ClassClassifier", "ZCodeNet", "ZCodeBank", "load_classifier", "save_classifier", "load_zcodes",
           "save_zcodes", "FORMAT_VERSION"]

FORMAT_VERSION = 1


class ClassClassifier(nn.Module):
    """Multi-label CNN: [N, 3, 64, 64] in [0, 1] -> one logit per class.

    Four stride-2 3x3 convolutions (24-48-96-128 channels, GroupNorm, LeakyReLU 0.2), 4x4x128 ->
    Linear 128 -> logits. Other input sizes are resized to 64 (area down, bilinear up)."""

    def __init__(self, classes: Sequence[str], channels: Sequence[int] = (24, 48, 96, 128), hidden: int = 128):
        super().__init__()
        self.classes = list(classes)
        self.init_kwargs = {"classes": self.classes, "channels": [int(c) for c in channels], "hidden": int(hidden)}
        layers, c = [], 3
        for o in channels:
            layers += [nn.Conv2d(c, o, 3, 2, 1), nn.GroupNorm(min(8, o // 4), o), nn.LeakyReLU(0.2)]
            c = o
        self.trunk = nn.Sequential(*layers)
        side = 64 // 2 ** len(channels)
        self.fc = nn.Linear(c * side * side, hidden)
        self.head = nn.Linear(hidden, len(self.classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> penultimate features [N, hidden] (differentiable)."""
        if x.shape[-1] != 64:
            x = F.interpolate(x, size=(64, 64), mode="area" if x.shape[-1] > 64 else "bilinear")
        return F.leaky_relu(self.fc(self.trunk(x * 2 - 1).flatten(1)), 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def logits_from_gan(self, img: torch.Tensor) -> torch.Tensor:
        """GAN output in about [-1, 1] -> logits (differentiable)."""
        return self(((img + 1) / 2).clamp(0, 1))

    @staticmethod
    def to_input(images: np.ndarray) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> the network's input, [N, 3, H, W] in [0, 1]."""
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255

    @torch.no_grad()
    def probs(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        """uint8 [N, H, W, 3] -> class probabilities float32 [N, K]."""
        out = [torch.sigmoid(self(self.to_input(images[i:i + batch]))) for i in range(0, len(images), batch)]
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes)), np.float32)

    @torch.no_grad()
    def embed(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        """uint8 [N, H, W, 3] -> penultimate features float32 [N, hidden]."""
        out = [self.features(self.to_input(images[i:i + batch])) for i in range(0, len(images), batch)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.fc.out_features), np.float32)

    def index(self, names: Sequence[str]) -> list:
        missing = [n for n in names if n not in self.classes]
        if missing:
            raise InputError(f"The class classifier has no class {', '.join(map(repr, missing))} "
                             f"(it knows: {', '.join(self.classes)}).")
        return [self.classes.index(n) for n in names]


class ZCodeNet(nn.Module):
    """z = u + f(u), f: z_dim -> hidden -> hidden -> z_dim (LeakyReLU); f's last layer starts at zero."""

    def __init__(self, z_dim: int = 128, hidden: int = 128):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(z_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                               nn.LeakyReLU(0.2), nn.Linear(hidden, z_dim))
        nn.init.zeros_(self.f[-1].weight)
        nn.init.zeros_(self.f[-1].bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u + self.f(u)


class ZCodeBank(nn.Module):
    """The z-code nets of several classes for one generator (by fingerprint)."""

    def __init__(self, classes: Sequence[str], z_dim: int, hidden: int, fingerprint: str):
        super().__init__()
        self.classes, self.z_dim, self.hidden, self.fingerprint = list(classes), int(z_dim), int(hidden), fingerprint
        self.nets = nn.ModuleDict({self.key(c): ZCodeNet(z_dim, hidden) for c in self.classes})

    @staticmethod
    def key(name: str) -> str:
        return name.replace(":", "_").replace("-", "_")

    def net(self, name: str) -> ZCodeNet:
        if name not in self.classes:
            raise InputError(f"No z-code generator for '{name}' (trained: {', '.join(self.classes)}).")
        return self.nets[self.key(name)]

    def config(self) -> dict:
        return {"classes": self.classes, "z_dim": self.z_dim, "hidden": self.hidden, "fingerprint": self.fingerprint}


# ---------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------

def _load_module(folder: str, kind: str, what: str, command: str, build):
    """Read a folder written by write_folder, build the module from its config, load the weights (strict)."""
    from facegen.engine.hub import read_folder
    cfg, sd = read_folder(Path(folder), kind, what, command, FORMAT_VERSION)
    model = build(cfg)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise UnsupportedModelError(f"{folder}/model.safetensors does not match its config.json: {e}") from None
    model.meta = cfg.get("meta", {})
    return model.eval().requires_grad_(False)


def save_classifier(model: ClassClassifier, folder, **meta) -> Path:
    from facegen.engine.hub import write_folder
    return write_folder(folder, "ClassClassifier", model.state_dict(), {**model.init_kwargs, "meta": meta},
                        FORMAT_VERSION)


@lru_cache(maxsize=4)
def _load_classifier(folder: str) -> ClassClassifier:
    return _load_module(folder, "ClassClassifier", "class classifier",
                        f"python -m facegen customize classifier --out {folder}",
                        lambda cfg: ClassClassifier(cfg["classes"], cfg["channels"], cfg["hidden"]))


def load_classifier(folder) -> ClassClassifier:
    """A pack's class classifier (``pack.path("classifier")``): cached, eval mode, frozen."""
    return _load_classifier(str(Path(folder).resolve()))


def save_zcodes(bank: ZCodeBank, folder, **meta) -> Path:
    from facegen.engine.hub import write_folder
    return write_folder(folder, "ZCodeBank", bank.state_dict(), {**bank.config(), "meta": meta}, FORMAT_VERSION)


@lru_cache(maxsize=4)
def _load_zcodes(folder: str) -> ZCodeBank:
    return _load_module(folder, "ZCodeBank", "z-code generators", f"python -m facegen customize zcode --out {folder}",
                        lambda cfg: ZCodeBank(cfg["classes"], cfg["z_dim"], cfg["hidden"], cfg["fingerprint"]))


def load_zcodes(folder, G=None) -> ZCodeBank:
    """A pack's z-code generators (``pack.path("zcodes")``); with ``G``, check they were trained for it."""
    bank = _load_zcodes(str(Path(folder).resolve()))
    if G is not None and G.fingerprint != bank.fingerprint:
        raise InputError(f"The z-code generators in {folder} were trained for generator {bank.fingerprint}, not "
                         f"for this one ({G.fingerprint}); use rejection sampling here.")
    return bank

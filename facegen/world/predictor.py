"""The face world's attribute predictor: a small CNN that labels face images.

Purpose
-------
The predictor is the face world's *labeller*.  Given images (renders, GAN
samples, reconstructions) it estimates every attribute of
:data:`facegen.world.attributes.ATTRIBUTE_SPEC` and says whether an image reads as a
face at all.  It is used to

* label generated images for fitting latent directions,
* judge customisation hit rates and encoder attribute error,
* measure GAN quality: a Frechet distance in its 128-d feature space
  (:meth:`Labeller.features`) and a "valid face" rate (:meth:`Labeller.validity`).

Everything that consumes it should program against :class:`Labeller`, the
interface a real-photo labeller (e.g. a CelebA attribute classifier plus a
face detector) would also implement.

Interface (:class:`Labeller`)
-----------------------------
``images`` are always a numpy ``uint8`` array ``[N, H, W, 3]`` (RGB), any
``H, W >= 16``; they are resized to the network input (64 x 64) inside
(area averaging when shrinking, bilinear when enlarging).

``predict(images) -> dict[str, np.ndarray]``, keyed by attribute name:

* continuous ``name``      -> ``float32 [N]``, clipped to the attribute's range
  (``bg_hue`` / ``clothing_hue`` are circular, predicted as sin/cos and decoded
  to ``[0, 1)``);
* categorical ``name``     -> ``float32 [N, K]`` class probabilities, classes in
  ``categories[name]`` order; ``f"{name}_label"`` -> ``str [N]`` argmax labels;
* bool ``name``            -> ``float32 [N]`` probability of ``True``.

``features(images) -> float32 [N, D]`` penultimate features (D = 128) for
Frechet distance / diversity.  ``validity(images) -> float32 [N]`` probability
that the image is a face.

:class:`WorldPredictor` adds ``predict_vectors`` (the
:func:`facegen.world.render.attributes_to_vector` layout, for comparing with ground
truth) and ``predict_attributes`` (``FaceAttributes`` records), and a
differentiable torch path (``forward`` / ``decode`` / ``prepare_tensor``, and ``attribute_scores``
for guided editing, :mod:`facegen.features.editing`).

Method
------
* Network: 6 conv blocks (3x3 conv, BatchNorm, ReLU; channels 32-64-64-128-
  128-128, four of them stride 2: 64 -> 4 px), flatten 4x4x128 -> Linear ->
  ReLU -> 128-d feature -> one linear layer holding every head (8 continuous,
  2 circular as sin/cos, 3 categorical, 2 bool, 1 validity logit).
* Training data: face-world renders (64 px, supersample 4) with exact ground
  truth.  **Seed ranges:** predictor training seeds start at 10_000_000,
  held-out test seeds at 20_000_000; GAN training uses seeds below
  10_000_000, so the predictor never sees the GAN's training faces either.
* Losses: MSE for continuous attributes (hues as sin/cos), cross-entropy for
  categorical, BCE for bools; validity is BCE of renders (label 1) against
  corrupted images made on the fly (label 0): uniform noise, pixel-shuffled
  renders, smooth colour blobs, renders cut into patches and shuffled (whole
  image or only the face region), flat colours and gradients.
* Augmentation (applied to faces and corruptions alike, so validity cannot key
  on it): random shift (+-3 px) and scale (+-5 %), partial Gaussian blur and
  pixel noise, so the predictor transfers to GAN samples, which are a little
  softer than renders.  Colours are never jittered: they are labels.
* Adam(W), batch 128, warm-up then cosine decay; the schedule is driven by
  ``max(step fraction, time fraction)`` so ``--minutes`` always ends on a fully
  decayed learning rate.

Rebuild the shipped model (see ``assets/predictor/README.md``)::

    python -m facegen predictor train --n-train 20000 --n-test 2000 --size 64 \\
        --epochs 12 --minutes 12 --out assets/predictor
"""

from __future__ import annotations

import abc
import argparse
import json
import math
import shlex
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegen.engine.errors import InputError, UnsupportedModelError
from facegen.engine.paths import ASSETS
from facegen.world.attributes import ATTRIBUTE_SPEC, FaceAttributes, VECTOR_DIM, vector_to_attributes
from facegen.world.render import render_batch

__all__ = [
    "Labeller", "WorldPredictor", "load_world_predictor", "DEFAULT_PREDICTOR_DIR",
    "TRAIN_SEED_START", "TEST_SEED_START", "CIRCULAR", "make_corruptions", "evaluate", "cli_main",
]

#: Shipped weights (``config.json`` + ``model.safetensors`` + ``metrics.json`` + README.md).
DEFAULT_PREDICTOR_DIR = ASSETS / "predictor"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1

#: Predictor training seeds are TRAIN_SEED_START + i, held-out test seeds TEST_SEED_START + i.
#: GAN training uses seeds below 10_000_000, so the three sets are disjoint.
TRAIN_SEED_START = 10_000_000
TEST_SEED_START = 20_000_000

#: Continuous attributes on a circle (value 0 == value 1): predicted as (sin, cos).
CIRCULAR = ("bg_hue", "clothing_hue")

from facegen.labels.base import INPUT_SIZE, MIN_INPUT_SIZE, ImageArray, Labeller, check_images  # noqa: E402,F401


# ---------------------------------------------------------------------------
# 2. Head layout
# ---------------------------------------------------------------------------

def _head_layout(spec: Sequence[tuple[str, str, tuple]]) -> list[tuple[str, str, tuple, int, int]]:
    """(name, kind, rng, start, width) of each attribute in the head output, plus the validity logit.

    kind is "continuous" (1 slot, value normalised to [0, 1]), "circular" (2 slots: sin, cos),
    "categorical" (K logits), "bool" (1 logit) or "validity" (1 logit, last).
    """
    out, i = [], 0
    for name, kind, rng in spec:
        if kind == "continuous" and name in CIRCULAR:
            k, w = "circular", 2
        elif kind == "categorical":
            k, w = kind, len(rng)
        else:
            k, w = kind, 1
        out.append((name, k, tuple(rng), i, w))
        i += w
    out.append(("validity", "validity", (False, True), i, 1))
    return out


def _targets(labels: list[dict], layout) -> dict[str, np.ndarray]:
    """Training targets from world labels dicts: normalised floats, sin/cos, class indices, 0/1."""
    t = {}
    for name, kind, rng, _, _ in layout:
        if kind == "validity":
            continue
        vals = [lab[name] for lab in labels]
        if kind == "continuous":
            lo, hi = rng
            t[name] = ((np.asarray(vals, np.float32) - lo) / (hi - lo)).astype(np.float32)
        elif kind == "circular":
            a = 2 * np.pi * np.asarray(vals, np.float64)
            t[name] = np.stack([np.sin(a), np.cos(a)], 1).astype(np.float32)
        elif kind == "categorical":
            t[name] = np.asarray([rng.index(v) for v in vals], np.int64)
        else:
            t[name] = np.asarray(vals, np.float32)
    return t


# ---------------------------------------------------------------------------
# 3. The network
# ---------------------------------------------------------------------------

DEFAULT_ARCH = {"channels": [32, 64, 64, 128, 128, 128], "strides": [2, 2, 1, 2, 1, 2], "feature_dim": 128,
                "input_size": INPUT_SIZE}


class WorldPredictor(nn.Module, Labeller):
    """Small CNN predicting every face-world attribute plus a face-validity score.

    Build untrained with ``WorldPredictor()``; load weights with
    :meth:`from_pretrained` or :func:`load_world_predictor`.  The numpy methods
    (``predict``, ``features``, ``validity``, ...) run in eval mode without
    gradients and restore the previous train/eval mode.
    """

    name = "world"

    def __init__(self, channels: Sequence[int] = tuple(DEFAULT_ARCH["channels"]),
                 strides: Sequence[int] = tuple(DEFAULT_ARCH["strides"]), feature_dim: int = 128,
                 input_size: int = INPUT_SIZE, spec: Optional[Sequence] = None):
        super().__init__()
        if len(channels) != len(strides):
            raise ValueError("channels and strides must have the same length")
        spec = [(str(n), str(k), tuple(r)) for n, k, r in (spec if spec is not None else ATTRIBUTE_SPEC)]
        self._spec = spec
        self.layout = _head_layout(spec)
        self.out_dim = sum(w for *_, w in self.layout)
        self.input_size = int(input_size)
        self.init_kwargs = {"channels": [int(c) for c in channels], "strides": [int(s) for s in strides],
                            "feature_dim": int(feature_dim), "input_size": int(input_size),
                            "spec": [[n, k, list(r)] for n, k, r in spec]}
        layers, c = [], 3
        for o, s in zip(channels, strides):
            layers += [nn.Conv2d(c, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
            c = o
        self.trunk = nn.Sequential(*layers)
        side = self.input_size
        for s in strides:
            side = (side - 1) // s + 1
        self.fc = nn.Linear(c * side * side, feature_dim)
        self.head = nn.Linear(feature_dim, self.out_dim)

    # -- Labeller ---------------------------------------------------------
    @property
    def spec(self) -> list[tuple[str, str, tuple]]:
        return list(self._spec)

    # -- torch path ---------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float [N, 3, S, S] in [0, 1] (S = input_size) -> (features [N, D], raw head outputs [N, out_dim])."""
        h = self.trunk(x * 2.0 - 1.0)
        f = F.relu(self.fc(h.flatten(1)))
        return f, self.head(f)

    def prepare_tensor(self, x: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
        """Differentiably map float images [N, 3, H, W] in ``value_range`` (e.g. GAN output, (-1, 1))
        to the network input: [0, 1], input_size x input_size."""
        lo, hi = value_range
        x = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
        return _resize(x, self.input_size)

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw head outputs -> {continuous: value in range [N], circular: [0,1) [N],
        categorical: probabilities [N, K], bool/validity: probability [N]} (tensors, differentiable)."""
        res = {}
        for name, kind, rng, i, w in self.layout:
            o = out[:, i:i + w]
            if kind == "continuous":
                lo, hi = rng
                res[name] = lo + (hi - lo) * o[:, 0].clamp(0.0, 1.0)
            elif kind == "circular":
                res[name] = torch.remainder(torch.atan2(o[:, 0], o[:, 1]) / (2 * math.pi), 1.0)
            elif kind == "categorical":
                res[name] = o.softmax(1)
            else:
                res[name] = torch.sigmoid(o[:, 0])
        return res

    def attribute_scores(self, img: torch.Tensor, names: Sequence[str],
                         value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
        """Differentiable scores [N, len(names)] of images [N, 3, H, W] in ``value_range`` (e.g. GAN
        output), in the units attribute directions use: continuous attributes normalised to [0, 1]
        of their range but *not* clipped (so gradients do not vanish at the ends), booleans and
        ``"category:value"`` as probabilities. Run the module in eval mode (BatchNorm statistics)."""
        out = self(self.prepare_tensor(img, value_range))[1]
        index = {n: (k, rng, i, w) for n, k, rng, i, w in self.layout}
        cols = []
        for name in names:
            cat, _, value = str(name).partition(":")
            if cat not in index or (value and index[cat][0] != "categorical"):
                raise InputError(f"The world predictor has no attribute '{name}'.")
            kind, rng, i, w = index[cat]
            if value:
                if value not in rng:
                    raise InputError(f"'{value}' is not a value of {cat} ({', '.join(rng)}).")
                cols.append(out[:, i:i + w].softmax(1)[:, list(rng).index(value)])
            elif kind == "continuous":
                cols.append(out[:, i])
            elif kind in ("bool", "validity"):
                cols.append(torch.sigmoid(out[:, i]))
            elif kind == "categorical":
                raise InputError(f"'{name}' has no single score: use '{name}:<value>', e.g. '{name}:{rng[0]}'.")
            else:
                raise InputError(f"'{name}' is circular and has no single score.")
        return torch.stack(cols, 1)

    # -- numpy path -----------------------------------------------------------
    @torch.no_grad()
    def _run(self, images: ImageArray, batch_size: int = 256) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        images = check_images(images)
        was_training = self.training
        self.eval()
        dev = next(self.parameters()).device
        feats, outs = [], []
        try:
            for i in range(0, images.shape[0], batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).to(dev)
                x = _resize(x.permute(0, 3, 1, 2).float() / 255.0, self.input_size)
                f, o = self(x.contiguous(memory_format=torch.channels_last))
                feats.append(f.float().cpu())
                outs.append(o.float().cpu())
        finally:
            self.train(was_training)
        if not outs:
            f = torch.zeros(0, self.fc.out_features)
            o = torch.zeros(0, self.out_dim)
        else:
            f, o = torch.cat(feats), torch.cat(outs)
        dec = {k: v.numpy().astype(np.float32) for k, v in self.decode(o).items()}
        return f.numpy().astype(np.float32), dec

    def predict(self, images: ImageArray) -> dict[str, np.ndarray]:
        """See :meth:`Labeller.predict`; does not include validity (use :meth:`validity`)."""
        return self.predict_all(images)[0]

    def features(self, images: ImageArray) -> np.ndarray:
        """See :meth:`Labeller.features` (post-ReLU penultimate layer, D = 128)."""
        return self._run(images)[0]

    def validity(self, images: ImageArray) -> np.ndarray:
        """See :meth:`Labeller.validity`."""
        return self._run(images)[1]["validity"]

    def predict_all(self, images: ImageArray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """One pass: (predict dict, features [N, D], validity [N])."""
        f, dec = self._run(images)
        pred = {}
        for name, kind, rng, _, _ in self.layout:
            if kind == "validity":
                continue
            pred[name] = dec[name]
            if kind == "categorical":
                pred[f"{name}_label"] = np.asarray(rng, dtype=str)[dec[name].argmax(1)] if len(dec[name]) \
                    else np.zeros(0, dtype=str)
        return pred, f, dec["validity"]

    def predict_vectors(self, images: ImageArray) -> np.ndarray:
        """float32 [N, VECTOR_DIM] in the ``world.attributes_to_vector`` layout (categorical: probabilities,
        bool: probabilities).  Only for the world spec."""
        if [s[0] for s in self._spec] != [s[0] for s in ATTRIBUTE_SPEC]:
            raise InputError("predict_vectors needs a predictor trained on world.ATTRIBUTE_SPEC")
        pred = self.predict(images)
        cols = []
        for name, kind, _ in ATTRIBUTE_SPEC:
            v = pred[name]
            cols.append(v if v.ndim == 2 else v[:, None])
        if not cols or cols[0].shape[0] == 0:
            return np.zeros((0, VECTOR_DIM), np.float32)
        return np.concatenate(cols, 1).astype(np.float32)

    def predict_attributes(self, images: ImageArray) -> list[FaceAttributes]:
        """Decoded :class:`FaceAttributes` per image (argmax categories, bools at p > 0.5)."""
        return [vector_to_attributes(v) for v in self.predict_vectors(images)]

    # -- persistence ------------------------------------------------------------
    def save_pretrained(self, folder: Union[str, Path], **meta) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (float32) into ``folder``; returns it."""
        from facegen.engine.hub import write_folder
        return write_folder(folder, "WorldPredictor", self.state_dict(), {**self.init_kwargs, "meta": meta},
                            FORMAT_VERSION)

    @classmethod
    def from_pretrained(cls, folder: Union[str, Path], device: Union[str, torch.device] = "cpu") -> "WorldPredictor":
        """Load a folder written by :meth:`save_pretrained` (eval mode)."""
        from facegen.engine.hub import read_folder
        folder = Path(folder)
        cfg, sd = read_folder(folder, "WorldPredictor", "predictor",
                              f"python -m facegen predictor train --out {folder}", FORMAT_VERSION)
        w_p = folder / WEIGHTS_NAME
        model = cls(channels=cfg["channels"], strides=cfg["strides"], feature_dim=cfg["feature_dim"],
                    input_size=cfg["input_size"], spec=cfg.get("spec"))
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise UnsupportedModelError(f"{w_p} does not match its {CONFIG_NAME}: {e}") from None
        model.meta = cfg.get("meta", {})
        return model.to(device).eval()


@lru_cache(maxsize=None)
def _load_cached(folder: str) -> WorldPredictor:
    return WorldPredictor.from_pretrained(folder)


def load_world_predictor(folder: Union[str, Path, None] = None) -> WorldPredictor:
    """The shipped predictor (``assets/predictor/``), loaded once per process and cached (CPU, eval mode).

    Treat the returned module as read-only (it is shared); ``copy.deepcopy`` it to fine-tune or move it.
    """
    return _load_cached(str(Path(folder).resolve() if folder is not None else DEFAULT_PREDICTOR_DIR))


# ---------------------------------------------------------------------------
# 4. Image ops (resize, blur, augmentation, corruptions)
# ---------------------------------------------------------------------------

def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """[N, 3, H, W] float -> [N, 3, size, size]: area average when shrinking (exact box filter for
    integer factors, like the world's supersampling), bilinear when enlarging."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if h >= size and w >= size:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _gauss_kernel(sigma: float, radius: int) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, H, W] with reflect padding."""
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = _gauss_kernel(sigma, r).to(x)
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Training augmentation of [N, 3, S, S] in [0, 1]: shift +-3 px and scale +-5 % (75 % of images),
    partial Gaussian blur (45 %, sigma 0.6-1.3 mixed in by a random weight) and pixel noise (40 %, std up to 0.03)."""
    n, _, s, _ = x.shape
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    geo = (u(n) < 0.75).float()
    scale = 1.0 + geo * (u(n) - 0.5) * 0.1
    shift = geo[:, None] * (u(n, 2) - 0.5) * 2 * (3.0 / (s / 2))
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = 1 / scale
    theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = torch.where(geo.view(n, 1, 1, 1) > 0, moved, x)
    sel = torch.nonzero(u(n) < 0.45).flatten()       # blur a subset: one sigma per batch, partial mix
    if len(sel):
        sigma = (0.6, 0.9, 1.3)[int(torch.randint(3, (1,), generator=g))]
        xs = x[sel]
        a = u(len(sel)).view(-1, 1, 1, 1)
        x = x.index_copy(0, sel, xs + a * (_blur(xs, sigma) - xs))
    sd = (u(n) < 0.4).float() * u(n) * 0.03
    x = x + sd.view(n, 1, 1, 1) * torch.randn(x.shape, generator=g)
    return x.clamp(0.0, 1.0)


CORRUPTIONS = ("noise", "pixel_shuffle", "blobs", "patch_shuffle", "face_patch_shuffle", "colour_field")


def _derangement(n: int, g: torch.Generator) -> torch.Tensor:
    """A random permutation without fixed points (one n-cycle)."""
    p = torch.randperm(n, generator=g)
    perm = torch.empty(n, dtype=torch.long)
    perm[p] = p.roll(1)
    return perm


def _patch_shuffle(img: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """[3, H, W] cut into k x k patches (H, W divisible by k) and re-assembled in a shuffled order."""
    c, h, w = img.shape
    ph, pw = h // k, w // k
    p = img.reshape(c, k, ph, k, pw).permute(1, 3, 0, 2, 4).reshape(k * k, c, ph, pw)
    p = p[_derangement(k * k, g)]
    return p.reshape(k, k, c, ph, pw).permute(2, 0, 3, 1, 4).reshape(c, h, w)


def make_corruptions(faces: torch.Tensor, n: int, g: torch.Generator,
                     kinds: Sequence[str] = CORRUPTIONS) -> tuple[torch.Tensor, list[str]]:
    """``n`` non-face images [n, 3, S, S] in [0, 1] (validity label 0), built from ``faces`` [M, 3, S, S]
    where a kind needs a source face.  Returns (images, kind of each)."""
    m, _, s, _ = faces.shape
    out, names = [], []
    for i in range(n):
        kind = kinds[int(torch.randint(len(kinds), (1,), generator=g))]
        src = faces[int(torch.randint(m, (1,), generator=g))]
        if kind == "noise":
            lo, span = float(torch.rand(1, generator=g)) * 0.5, 0.2 + float(torch.rand(1, generator=g)) * 0.8
            img = lo + span * torch.rand(3, s, s, generator=g)
        elif kind == "pixel_shuffle":
            img = src.reshape(3, -1)[:, torch.randperm(s * s, generator=g)].reshape(3, s, s)
        elif kind == "blobs":
            r = int(torch.randint(2, 9, (1,), generator=g))
            low = torch.rand(1, 3, r, r, generator=g)
            img = F.interpolate(low, size=(s, s), mode="bicubic", align_corners=False)[0]
        elif kind == "patch_shuffle":
            k = (2, 4, 8)[int(torch.randint(3, (1,), generator=g))]
            img = _patch_shuffle(src, k, g)
        elif kind == "face_patch_shuffle":   # keep the border (background, hair outline), scramble the face
            img = src.clone()
            a, b = s // 8, s - s // 8        # central 48 x 48 of 64
            k = (3, 4, 6)[int(torch.randint(3, (1,), generator=g))]
            img[:, a:b, a:b] = _patch_shuffle(src[:, a:b, a:b], k, g)
        else:                                # flat colour or a linear two-colour gradient
            c1, c2 = torch.rand(3, 1, 1, generator=g), torch.rand(3, 1, 1, generator=g)
            if float(torch.rand(1, generator=g)) < 0.4:
                img = c1.expand(3, s, s).clone()
            else:
                ang = float(torch.rand(1, generator=g)) * 2 * math.pi
                yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
                t = ((math.cos(ang) * xx + math.sin(ang) * yy) * 0.5 + 0.5).clamp(0, 1)
                img = c1 + (c2 - c1) * t
        out.append(img.clamp(0, 1))
        names.append(kind)
    return torch.stack(out) if out else faces.new_zeros(0, 3, s, s), names


# ---------------------------------------------------------------------------
# 5. Training and evaluation
# ---------------------------------------------------------------------------

def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [0, 1], channels-last memory."""
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0).contiguous(
        memory_format=torch.channels_last)


def _loss(model: WorldPredictor, out: torch.Tensor, tg: dict[str, torch.Tensor], n_real: int,
          valid: torch.Tensor, w_cont: float = 10.0) -> tuple[torch.Tensor, dict[str, float]]:
    total, parts = out.new_zeros(()), {}
    o_real = out[:n_real]
    for name, kind, _, i, w in model.layout:
        if kind == "validity":
            l = F.binary_cross_entropy_with_logits(out[:, i], valid)
        elif kind == "continuous":
            l = w_cont * F.mse_loss(o_real[:, i], tg[name])
        elif kind == "circular":
            l = w_cont * F.mse_loss(o_real[:, i:i + 2], tg[name])
        elif kind == "categorical":
            l = F.cross_entropy(o_real[:, i:i + w], tg[name])
        else:
            l = F.binary_cross_entropy_with_logits(o_real[:, i], tg[name])
        total = total + l
        parts[name] = l.detach().item()
    return total, parts


def train_predictor(model: WorldPredictor, images: np.ndarray, labels: list[dict], epochs: int = 12,
                    batch_size: int = 128, lr: float = 2e-3, neg_fraction: float = 0.25,
                    time_budget_s: Optional[float] = None, seed: int = 0, log_every: int = 100,
                    max_steps: Optional[int] = None, log=print) -> dict:
    """Train ``model`` in place on renders ``images`` (uint8 [N, S, S, 3]) with world ``labels``.

    The LR follows warm-up + cosine over ``progress = max(step / total_steps, elapsed / time_budget_s)``
    and training stops at progress 1, so a time budget still ends fully annealed.  Returns a summary.
    """
    check_images(images)
    if len(images) != len(labels) or len(images) == 0:
        raise InputError(f"need as many labels as images (and at least one), got {len(images)} / {len(labels)}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    tg_all = {k: torch.from_numpy(v) for k, v in _targets(labels, model.layout).items()}
    imgs = torch.from_numpy(images)
    n = len(images)
    steps_per_epoch = max(1, n // batch_size) if n >= batch_size else 1
    total_steps = steps_per_epoch * epochs
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    model.to(memory_format=torch.channels_last).train()
    decay = [p for nme, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for nme, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.99))
    t0 = time.perf_counter()
    step, progress, n_neg, warm = 0, 0.0, int(round(batch_size * neg_fraction)), 0.03
    hist, run = [], {}
    while progress < 1.0:
        order = rng.permutation(n)
        for b in range(steps_per_epoch):
            idx = torch.from_numpy(order[b * batch_size:(b + 1) * batch_size])
            real = imgs[idx].permute(0, 3, 1, 2).float() / 255.0
            neg, _ = make_corruptions(real, n_neg, g)
            x = augment(torch.cat([real, neg]), g).contiguous(memory_format=torch.channels_last)
            valid = torch.cat([torch.ones(len(real)), torch.zeros(len(neg))])
            tg = {k: v[idx] for k, v in tg_all.items()}
            if progress < warm:
                lr_now = lr * max(progress / warm, 0.02)
            else:
                lr_now = lr * 0.5 * (1 + math.cos(math.pi * (progress - warm) / (1 - warm)))
            for grp in opt.param_groups:
                grp["lr"] = lr_now
            _, out = model(x)
            loss, parts = _loss(model, out, tg, len(real), valid)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            for k, v in parts.items():
                run[k] = run.get(k, 0.0) + v
            run["loss"] = run.get("loss", 0.0) + loss.detach().item()
            el = time.perf_counter() - t0
            progress = max(step / total_steps, el / time_budget_s if time_budget_s else 0.0)
            if log_every and step % log_every == 0:
                avg = {k: v / log_every for k, v in run.items()}
                hist.append({"step": step, "elapsed_s": round(el, 1), **{k: round(v, 4) for k, v in avg.items()}})
                log(f"step {step}/{total_steps} ep {step / steps_per_epoch:.2f} {el:.0f}s lr {lr_now:.2e} "
                    f"loss {avg['loss']:.3f} (yaw {avg['yaw']:.3f} smile {avg['smile']:.3f} "
                    f"hair_color {avg['hair_color']:.3f} eye_color {avg['eye_color']:.3f} "
                    f"validity {avg['validity']:.3f})")
                run = {}
            if progress >= 1.0:
                break
    model.eval()
    return {"steps": step, "epochs_done": round(step / steps_per_epoch, 2), "train_time_s": round(time.perf_counter() - t0, 1),
            "stopped_by": "time" if time_budget_s and step < total_steps else "steps", "history": hist}


def _circ_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b) % 1.0
    return np.minimum(d, 1.0 - d)


def evaluate(model: WorldPredictor, images: np.ndarray, labels: list[dict], seed: int = 1) -> dict:
    """Held-out metrics: MAE per continuous attribute (circular distance for hues), accuracy per
    categorical/bool attribute, validity accuracy on the renders vs an equal number of corruptions
    (and per corruption kind), plus the same attribute metrics on renders blurred with sigma 1."""
    g = torch.Generator().manual_seed(seed)
    x = images

    def attr_metrics(pred):
        m = {}
        for name, kind, rng, _, _ in model.layout:
            if kind == "validity":
                continue
            truth = [lab[name] for lab in labels]
            if kind == "continuous":
                m[f"{name}_mae"] = float(np.mean(np.abs(pred[name] - np.asarray(truth, np.float32))))
            elif kind == "circular":
                m[f"{name}_mae"] = float(np.mean(_circ_dist(pred[name], np.asarray(truth, np.float32))))
            elif kind == "categorical":
                m[f"{name}_acc"] = float(np.mean(pred[f"{name}_label"] == np.asarray(truth)))
            else:
                m[f"{name}_acc"] = float(np.mean((pred[name] > 0.5) == np.asarray(truth, bool)))
        return m

    pred, _, val_real = model.predict_all(x)
    out = {"attributes": attr_metrics(pred)}
    faces = _to_tensor(x)
    neg, kinds = make_corruptions(faces, len(x), g)
    neg_u8 = (neg.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    val_neg = model.validity(neg_u8)
    kinds = np.asarray(kinds)
    out["validity"] = {
        "accuracy": float((np.mean(val_real > 0.5) + np.mean(val_neg <= 0.5)) / 2),
        "renders_valid_rate": float(np.mean(val_real > 0.5)),
        "corruptions_rejected_rate": float(np.mean(val_neg <= 0.5)),
        "rejected_by_kind": {k: float(np.mean(val_neg[kinds == k] <= 0.5)) for k in CORRUPTIONS if (kinds == k).any()},
    }
    blurred = (_blur(faces, 1.0).permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    pb, _, vb = model.predict_all(blurred)
    out["blurred_sigma1"] = {**attr_metrics(pb), "renders_valid_rate": float(np.mean(vb > 0.5))}
    return out


def _render_set(start: int, n: int, size: int, log=print) -> tuple[np.ndarray, list[dict]]:
    imgs, labs = [], []
    t0 = time.perf_counter()
    chunk = 1000
    for i in range(0, n, chunk):
        x, l = render_batch(range(start + i, start + min(n, i + chunk)), size=size)
        imgs.append(x)
        labs += l
        log(f"  rendered {min(n, i + chunk)}/{n} ({time.perf_counter() - t0:.0f}s)")
    return np.concatenate(imgs), labs


def _fmt_metrics_md(m: dict) -> str:
    lines = ["| metric | held-out |", "|---|---|"]
    for k, v in m["attributes"].items():
        lines.append(f"| {k} | {v:.4f} |")
    for k in ("accuracy", "renders_valid_rate", "corruptions_rejected_rate"):
        lines.append(f"| validity {k} | {m['validity'][k]:.4f} |")
    return "\n".join(lines)


def cli_main(argv: list[str]) -> int:
    """``train --n-train 20000 --n-test 2000 --size 64 --epochs 12 --out assets/predictor [--minutes 12]``
    and ``eval [--model DIR] [--n-test 2000]``."""
    p = argparse.ArgumentParser(prog="python -m facegen predictor",
                                description="Face-world attribute predictor (labeller): train / evaluate.")
    sub = p.add_subparsers(dest="cmd", required=True)
    pt = sub.add_parser("train", help="render face-world data, train, evaluate, save")
    pt.add_argument("--n-train", type=int, default=20000)
    pt.add_argument("--n-test", type=int, default=2000)
    pt.add_argument("--size", type=int, default=64, help="render size (the network input is 64 px)")
    pt.add_argument("--epochs", type=int, default=12)
    pt.add_argument("--batch-size", type=int, default=128)
    pt.add_argument("--lr", type=float, default=2e-3)
    pt.add_argument("--minutes", type=float, default=None,
                    help="wall-clock budget for the whole command (render + train + eval); training is "
                         "cut short, with a fully decayed learning rate, to fit")
    pt.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--out", default=str(DEFAULT_PREDICTOR_DIR))
    pe = sub.add_parser("eval", help="evaluate a saved predictor on held-out renders")
    pe.add_argument("--model", default=str(DEFAULT_PREDICTOR_DIR))
    pe.add_argument("--n-test", type=int, default=2000)
    pe.add_argument("--size", type=int, default=64)
    pe.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.n_test < 1 or (args.cmd == "train" and (args.n_train < 1 or args.epochs < 1)):
        print("error: --n-train, --n-test and --epochs must be >= 1", file=sys.stderr)
        return 2
    if args.n_test > TRAIN_SEED_START or (args.cmd == "train" and args.n_train > TEST_SEED_START - TRAIN_SEED_START):
        print("error: too many faces for the disjoint seed ranges", file=sys.stderr)
        return 2
    if args.cmd == "eval":
        model = WorldPredictor.from_pretrained(args.model)
        x, labs = _render_set(TEST_SEED_START, args.n_test, args.size)
        print(json.dumps(evaluate(model, x, labs), indent=1))
        return 0

    command = "python -m facegen predictor " + shlex.join(argv)
    t_start = time.perf_counter()
    print(f"rendering {args.n_train} training faces (seeds {TRAIN_SEED_START}+) ...")
    x_tr, l_tr = _render_set(TRAIN_SEED_START, args.n_train, args.size)
    t_render = time.perf_counter() - t_start
    print(f"rendering {args.n_test} held-out faces (seeds {TEST_SEED_START}+) ...")
    x_te, l_te = _render_set(TEST_SEED_START, args.n_test, args.size)
    t_render_all = time.perf_counter() - t_start
    budget = None
    if args.minutes is not None:
        reserve = 15.0 + 0.01 * args.n_test      # evaluation + saving
        budget = args.minutes * 60 - (time.perf_counter() - t_start) - reserve
        if budget < 10:
            print(f"error: --minutes {args.minutes} leaves no time to train after rendering "
                  f"({t_render_all:.0f}s)", file=sys.stderr)
            return 2
        print(f"training budget {budget:.0f}s")
    model = WorldPredictor()
    summary = train_predictor(model, x_tr, l_tr, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              time_budget_s=budget, seed=args.seed)
    t_eval = time.perf_counter()
    metrics = evaluate(model, x_te, l_te)
    wall = time.perf_counter() - t_start
    record = {
        "command": command,
        "n_train": args.n_train, "n_test": args.n_test, "size": args.size, "epochs": args.epochs,
        "epochs_done": summary["epochs_done"], "steps": summary["steps"], "stopped_by": summary["stopped_by"],
        "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads,
        "train_seeds": [TRAIN_SEED_START, TRAIN_SEED_START + args.n_train - 1],
        "test_seeds": [TEST_SEED_START, TEST_SEED_START + args.n_test - 1],
        "wall_time_s": round(wall, 1), "render_time_s": round(t_render_all, 1), "render_train_s": round(t_render, 1),
        "train_time_s": summary["train_time_s"], "eval_time_s": round(time.perf_counter() - t_eval, 1),
        "n_params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        **metrics,
        "history": summary["history"],
    }
    out = model.save_pretrained(args.out, command=command, train_seeds=record["train_seeds"],
                                test_seeds=record["test_seeds"], wall_time_s=record["wall_time_s"])
    (out / "metrics.json").write_text(json.dumps(record, indent=1))
    (out / "README.md").write_text(_readme(record, metrics))
    print(json.dumps({k: v for k, v in record.items() if k != "history"}, indent=1))
    print(f"saved to {out} in {wall:.0f}s")
    return 0


def _readme(record: dict, metrics: dict) -> str:
    return f"""# Face-world attribute predictor (shipped weights)

`config.json` + `model.safetensors`: the `facegen.world.predictor.WorldPredictor` small CNN
({record['n_params']:,} parameters, 64x64 input) that labels face-world images: every attribute of
`facegen.world.attributes.ATTRIBUTE_SPEC`, a face-validity score and 128-d features for Frechet distance.
Load it with `facegen.world.predictor.load_world_predictor()`.

## Rebuild

From the repository root (one CPU thread, {record['wall_time_s']:.0f} s wall on the build machine,
rendering included):

```
{record['command']}
```

Training faces use world seeds {record['train_seeds'][0]}..{record['train_seeds'][1]}, held-out test faces
{record['test_seeds'][0]}..{record['test_seeds'][1]}; the GAN trains on seeds below 10000000, so the
three sets are disjoint. Training stopped after {record['epochs_done']} epochs ({record['stopped_by']} limit).
Re-evaluate with `python -m facegen predictor eval`.

## Held-out metrics ({record['n_test']} renders)

MAE is in the attribute's own units (yaw and light_direction span [-1, 1], the rest [0, 1];
hues use circular distance). Validity accuracy is the mean of the rate of renders scored valid
and the rate of corrupted images (noise, pixel/patch shuffles, blobs, colour fields) rejected.

{_fmt_metrics_md(metrics)}

Full numbers (per corruption kind, on renders blurred with sigma 1, loss history): `metrics.json`.

`--minutes` caps the whole command (rendering + training + evaluation); the learning-rate schedule
follows the elapsed fraction of that budget, so a slower or busier machine trains fewer epochs
(here {record['epochs_done']} of {record['epochs']}) but still ends fully annealed.

## Limitations

* Validity separates faces from non-faces (noise, blobs, shuffled pixels/patches, colour fields).
  It is not a sharpness or artefact score: blurred renders and the average of two faces still
  score as valid.
* Eye colour is 1-2 pixels at 64 px; it degrades on blurry inputs (Gaussian sigma >= 1.5 px).
* Trained on face-world renders only; on anything else the attribute outputs are meaningless.
"""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli_main(sys.argv[1:]))

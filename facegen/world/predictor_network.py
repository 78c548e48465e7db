"""The world predictor's network: a small CNN with one head per face-world attribute and a validity logit.

* Trunk: 6 conv blocks (3x3 conv, BatchNorm, ReLU; channels 32-64-64-128-128-128, four of them
  stride 2: 64 -> 4 px), flatten 4x4x128 -> Linear -> ReLU -> 128-d feature (the space of the Frechet
  distance).
* Head: one linear layer holding every attribute (:func:`_head_layout`): 8 continuous (normalised to
  [0, 1] of their range), 2 circular hues as (sin, cos), 3 categorical (logits), 2 bool (logits) and the
  validity logit last.
* :class:`WorldPredictor` implements :class:`~facegen.labels.base.Labeller` (numpy path: ``predict``,
  ``features``, ``validity``) and a differentiable torch path (``forward``, ``decode``, ``prepare_tensor``,
  ``attribute_scores``); it persists as a Hub-native folder (``config.json`` + ``model.safetensors``).

Training: :mod:`facegen.world.predictor_training`; loading the shipped weights and the command line:
:mod:`facegen.world.predictor`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegen.engine.errors import InputError, UnsupportedModelError
from facegen.labels.base import INPUT_SIZE, ImageArray, Labeller, check_images
from facegen.world.attributes import ATTRIBUTE_SPEC, FaceAttributes, VECTOR_DIM, vector_to_attributes
from facegen.world.predictor_images import resize

__all__ = ["WorldPredictor", "DEFAULT_ARCH", "CIRCULAR", "CONFIG_NAME", "WEIGHTS_NAME", "FORMAT_VERSION"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1

#: Continuous attributes on a circle (value 0 == value 1): predicted as (sin, cos).
CIRCULAR = ("bg_hue", "clothing_hue")


# ---------------------------------------------------------------------------
# 1. Head layout
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


# ---------------------------------------------------------------------------
# 2. The network
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
        return resize(x, self.input_size)

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
                x = resize(x.permute(0, 3, 1, 2).float() / 255.0, self.input_size)
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

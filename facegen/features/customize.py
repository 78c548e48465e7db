"""Customisation by class: faces that are smiling, old, bearded, red-haired ... on demand.

The original site (seeprettyface, 2019) let a visitor ask for "a smiling face" or "a face with
glasses". Its code shipped rejection sampling; its write-up described better methods. facegen
implements three of them for the face world, plus the baseline, and measures all four
(``bench/customize.py``).

Method
------
1. **Classes** (:data:`CLASSES`) are predicates on face-world attributes (``facegen.world.render``):
   ``smiling`` is smile >= 0.6, ``old`` is age >= 0.6, ``hair:red`` is red base hair on a head
   that is not bald, and so on. The same predicate applies to ground-truth labels of renders
   (to train a classifier) and to a labeller's predictions (to judge samples). Several classes
   mean AND. Classes of one *group* exclude each other (young + old, two hair colours) and a few
   pairs never occur in the world (female + beard): :func:`parse_classes` refuses both with an
   :class:`~facegen.engine.errors.InputError` that names the clash.
2. **The training classifier** (:class:`ClassClassifier`): a small multi-label CNN, one logit per
   class, trained on face-world renders of the GAN's own training seeds with blur/noise/shift
   augmentation so it transfers to GAN samples. It is deliberately *not* the world predictor
   (other architecture: GroupNorm + LeakyReLU, stride-2 convolutions, other training data and
   seeds), so that the world predictor can judge methods that were optimised against this one.
3. **Rejection sampling** (:func:`rejection_sample`, the baseline the original code shipped):
   draw z ~ N(0, I), generate, classify, keep the faces whose class probabilities all pass
   ``threshold`` (:data:`ACCEPT` = 0.9); repeat until enough faces are kept or ``max_tries`` is
   spent. Cost per kept face is 1 / (acceptance rate) generator + classifier passes: slow for rare
   classes.
4. **Z-code generators** (:class:`ZCodeNet`, :func:`train_zcode`; the site's method 1): per class
   a small residual MLP ``z = u + f(u)``, u ~ N(0, I), trained with G and the classifier frozen to
   minimise

       L = E_u[ softplus(m - logit_k(C(aug(G(z, psi))))) ]               (-log p(class | face), margin m)
           + lambda_real  * E_u[ softplus(-D(G(z, psi))) ]                 (G's own discriminator: realism)
           + lambda_prior * ( mean_d mu_d^2 + mean_d (sigma_d^2 - 1)^2 )   (batch moments of z ~ N(0, I))
           + lambda_move  * E_u[ ||z - u||^2 / z_dim ]                    (each code moves little)
           + lambda_div   * relu(1 - dist(w(z)) / dist(w(u)))             (optional: no contraction in W)
           + lambda_feat  * relu(1 - dist(C_f(G(z))) / dist(C_f(G(u))))   (optional: faces as varied as unconditional ones)

   where dist is the batch's mean pairwise distance (of the mapped codes w, or of the classifier's
   penultimate features C_f of the faces).

   The last layer of f starts at zero, so training starts from unconditional sampling; the prior
   and movement terms keep the codes spread like N(0, I), so the net cannot collapse onto one
   face. Without the realism term and the augmentation (random shift, scale, blur and noise, aug)
   the nets found adversarial codes: degraded, collapsed images that *both* classifiers took for
   the class; the GAN's discriminator (exported with mini) and the augmentation keep the codes on
   the image manifold. The margin m (default 2, p >= 0.88) asks for clear class members. psi is drawn in [0.5, 1] per step so the codes work at
   every usual truncation. Sampling costs one tiny MLP pass per face, no rejections (optionally a
   classifier check on top).
5. **Classifier-filtered fine-tuning** (method 1b, :func:`select_for_finetune`): draw a few thousand
   faces at psi = 1 (proposed by the class's z-code generator, or at random), keep those the
   classifier accepts with p >= 0.9, save them as an image folder and
   fine-tune that generator on them with the ordinary training loop (``facegen.world.training``,
   ``--init`` from the shipped generator and discriminator). The result is a new generator that
   draws the class unconditionally (``mini-glasses`` in the registry).
6. **Conditional generator** (method 3, :func:`conditional_sample`): a StyleGAN2 whose mapping
   also takes a class code (multi-hot over the classes), fine-tuned from an unconditional generator
   with an InfoGAN-style Q head on the discriminator's trunk (``facegen.world.training``, ``--classes``,
   ``--q-weight``); codes for sampling come from training faces that satisfy the chosen classes.
7. **Check and variety** (:func:`customize`'s ``check``): by default every proposal (z-code,
   fine-tuned, random) is checked by the classifier and only accepted faces are returned; ``varied``
   keeps 4 x n accepted faces and chooses n by farthest-point selection in the classifier's features
   (:func:`varied_subset`), which trades about 2 points of hit rate for about 0.06 of diversity;
   ``none`` returns z-code or fine-tuned proposals unchecked.
8. **Combinations and other generators**: for several classes the z-code generator of the rarest
   class proposes and rejection keeps those that also satisfy the rest (:func:`customize`,
   method ``zcode``). Z-code generators are tied to the generator they were trained with (by
   fingerprint); other generators fall back to rejection sampling with a clear message.

Rebuild the shipped artefacts (see ``assets/customize/README.md``)::

    python -m facegen customize classifier --out assets/packs/mini/classifier
    python -m facegen customize zcode --out assets/packs/mini/zcode
    python -m facegen customize select --cls glasses --n 3000 --out runs/customize/glasses-data
"""

from __future__ import annotations

from facegen.engine.paths import ASSETS as ASSETS_ROOT
import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegen.engine.errors import InputError, ModelNotFoundError, UnsupportedModelError

__all__ = ["CLASSES", "CustomClass", "parse_classes", "class_names", "world_table", "predicted_table",
           "class_mask", "ClassClassifier", "ZCodeNet", "ZCodeBank", "load_classifier", "load_zcodes",
           "rejection_sample", "zcode_sample", "varied_subset", "customize", "CHECKS", "select_for_finetune",
           "METHODS", "cli_main"]

ASSETS = ASSETS_ROOT / "customize"
MINI_PACK = ASSETS_ROOT / "packs" / "mini"
CLASSIFIER_DIR = MINI_PACK / "classifier"
ZCODE_DIR = MINI_PACK / "zcode"
FORMAT_VERSION = 1
#: Seeds of the classifier's held-out test renders (GAN training uses 0..23,999, the predictor 10M+/20M+).
TEST_SEED_START = 30_000_000


# ---------------------------------------------------------------------------
# 1. Classes: predicates on world attributes
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CustomClass:
    """One selectable class: ``test(table) -> bool [N]`` on a label table (see :func:`world_table`)."""
    name: str
    description: str
    group: Optional[str]            # classes of one group exclude each other
    test: Callable[[dict], np.ndarray]


def _ge(attr, t):
    return lambda tb: np.asarray(tb[attr], np.float64) >= t


def _le(attr, t):
    return lambda tb: np.asarray(tb[attr], np.float64) <= t


def _hair(colour):
    return lambda tb: (np.asarray(tb["hair_color"]) == colour) & (np.asarray(tb["hair_style"]) != "bald")


CLASSES: dict[str, CustomClass] = {c.name: c for c in [
    CustomClass("smiling", "smile >= 0.6", "smile", _ge("smile", 0.6)),
    CustomClass("neutral", "smile <= 0.2", "smile", _le("smile", 0.2)),
    CustomClass("old", "age >= 0.6", "age", _ge("age", 0.6)),
    CustomClass("young", "age <= 0.2", "age", _le("age", 0.2)),
    CustomClass("male", "gender >= 0.6 (masculine)", "gender", _ge("gender", 0.6)),
    CustomClass("female", "gender <= 0.4 (feminine)", "gender", _le("gender", 0.4)),
    CustomClass("glasses", "wears glasses", None, lambda tb: np.asarray(tb["glasses"], bool)),
    CustomClass("beard", "has a beard", None, lambda tb: np.asarray(tb["beard"], bool)),
    CustomClass("skin:dark", "skin tone >= 0.65", "skin", _ge("skin_tone", 0.65)),
    CustomClass("skin:light", "skin tone <= 0.3", "skin", _le("skin_tone", 0.3)),
    CustomClass("bald", "hair style bald", "hair", lambda tb: np.asarray(tb["hair_style"]) == "bald"),
    CustomClass("long-hair", "hair length >= 0.6, not bald", None,
                lambda tb: (np.asarray(tb["hair_length"], np.float64) >= 0.6) & (np.asarray(tb["hair_style"]) != "bald")),
    *[CustomClass(f"hair:{c}", f"{c} hair (not bald)", "hair", _hair(c))
      for c in ("black", "brown", "blonde", "red", "auburn")],
]}

#: Pairs that never occur together in the face world (beard probability is 0 below gender 0.45).
IMPOSSIBLE = {frozenset({"female", "beard"}): "the face world has no bearded feminine faces",
              frozenset({"bald", "long-hair"}): "long hair needs hair"}


def class_names() -> list[str]:
    return list(CLASSES)


def parse_classes(spec: Union[str, Sequence[str], None]) -> list[str]:
    """'smiling, glasses' or ['smiling', 'glasses'] -> validated class names (AND).

    Unknown names, an empty choice and contradictory combinations raise InputError."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    names = []
    for it in items:
        n = str(it).strip().lower()
        if n and n not in names:
            names.append(n)
    if not names:
        raise InputError(f"Pick at least one class (one of: {', '.join(CLASSES)}).")
    unknown = [n for n in names if n not in CLASSES]
    if unknown:
        raise InputError(f"Unknown class{'es' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"choose from: {', '.join(CLASSES)}.")
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ga, gb = CLASSES[a].group, CLASSES[b].group
            if ga is not None and ga == gb:
                raise InputError(f"Contradictory classes: '{a}' and '{b}' exclude each other ({ga}); pick one.")
            why = IMPOSSIBLE.get(frozenset({a, b}))
            if why:
                raise InputError(f"Contradictory classes: '{a}' and '{b}' never occur together ({why}).")
    return names


def parse_class_list(spec: Union[str, Sequence[str]]) -> list[str]:
    """Known class names in order, exclusive ones allowed (e.g. a conditional GAN's class code)."""
    names = [str(n).strip().lower() for n in (spec.split(",") if isinstance(spec, str) else spec) if str(n).strip()]
    unknown = [n for n in names if n not in CLASSES]
    if unknown or not names:
        raise InputError(f"Unknown or missing classes {unknown}; choose from: {', '.join(CLASSES)}.")
    return names


def world_table(labels: Sequence[dict]) -> dict:
    """Ground-truth label dicts (``world.render_batch``) -> {attribute: array [N]}."""
    keys = labels[0].keys() if labels else []
    return {k: np.asarray([lab[k] for lab in labels]) for k in keys}


def world_labels(seeds) -> list[dict]:
    """Ground-truth labels of world seeds without rendering (:func:`facegen.world.render.seed_attributes`)."""
    from facegen.world.render import labels_dict, seed_attributes
    return [labels_dict(seed_attributes(s)) for s in seeds]


def predicted_table(pred: dict) -> dict:
    """A Labeller's ``predict`` output -> the same table: argmax labels for categories, p > 0.5 for bools."""
    from facegen.world.render import ATTRIBUTE_SPEC
    out = {}
    for name, kind, _ in ATTRIBUTE_SPEC:
        if kind == "categorical":
            out[name] = np.asarray(pred[f"{name}_label"])
        elif kind == "bool":
            out[name] = np.asarray(pred[name]) > 0.5
        else:
            out[name] = np.asarray(pred[name])
    return out


def class_mask(table: dict, names: Sequence[str]) -> np.ndarray:
    """bool [N, K]: does each face satisfy each class?"""
    return np.stack([CLASSES[n].test(table) for n in names], 1)


# ---------------------------------------------------------------------------
# 2. The training classifier (not the world predictor)
# ---------------------------------------------------------------------------

class ClassClassifier(nn.Module):
    """Multi-label CNN: [N, 3, 64, 64] in [0, 1] -> one logit per class.

    Four stride-2 3x3 convolutions (24-48-96-128 channels, GroupNorm, LeakyReLU 0.2), 4x4x128 ->
    Linear 128 -> logits. Differentiable, so generators can be trained against it."""

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

    def index(self, names: Sequence[str]) -> list[int]:
        return [self.classes.index(n) for n in names]


def _save_folder(module: nn.Module, folder, class_name: str, config: dict) -> Path:
    from facegen.engine.hub import write_folder
    return write_folder(folder, class_name, module.state_dict(), config, FORMAT_VERSION)


def _read(folder, class_name: str, what: str, rebuild: str) -> tuple:
    from facegen.engine.hub import read_folder
    return read_folder(Path(folder), class_name, what, rebuild, FORMAT_VERSION)


def save_classifier(model: ClassClassifier, folder, **meta) -> Path:
    return _save_folder(model, folder, "ClassClassifier", {**model.init_kwargs, "meta": meta})


def _load_module(folder: str, kind: str, what: str, command: str, build):
    """Read a folder written by _save_folder, build the module from its config, load the weights (strict)."""
    cfg, sd = _read(folder, kind, what, command)
    model = build(cfg)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise UnsupportedModelError(f"{folder}/model.safetensors does not match its config.json: {e}") from None
    model.meta = cfg.get("meta", {})
    return model.eval().requires_grad_(False)


@lru_cache(maxsize=4)
def _load_classifier(folder: str) -> ClassClassifier:
    return _load_module(folder, "ClassClassifier", "customisation classifier",
                        f"python -m facegen customize classifier --out {folder}",
                        lambda cfg: ClassClassifier(cfg["classes"], cfg["channels"], cfg["hidden"]))


def load_classifier(folder=None) -> ClassClassifier:
    """The shipped customisation classifier (cached, eval mode, frozen)."""
    return _load_classifier(str(Path(folder or CLASSIFIER_DIR).resolve()))


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    from facegen.world.predictor import augment
    flip = torch.rand(len(x), generator=g) < 0.5        # the world's classes are all mirror-symmetric
    return augment(torch.where(flip[:, None, None, None], x.flip(3), x), g)


def train_classifier(images: np.ndarray, labels: Sequence[dict], classes: Sequence[str], steps: int = 900,
                     batch: int = 128, lr: float = 2e-3, seed: int = 7, log=print) -> ClassClassifier:
    """BCE per class on renders with augmentation; Adam with cosine decay; class-balanced positive weights."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = ClassClassifier(classes)
    y = torch.from_numpy(class_mask(world_table(labels), classes).astype(np.float32))
    pos = y.mean(0).clamp(0.02, 0.98)
    pos_weight = ((1 - pos) / pos).sqrt()           # halfway to balanced: rare classes still get recall
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    t0 = time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps)) * min(1.0, (step + 1) / 50)
        idx = torch.randint(len(images), (batch,), generator=g)
        x = torch.from_numpy(images[idx.numpy()]).permute(0, 3, 1, 2).float() / 255
        loss = F.binary_cross_entropy_with_logits(model(_augment(x, g)), y[idx], pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 100 == 0:
            log(json.dumps({"step": step + 1, "loss": round(loss.item(), 4), "elapsed_s": round(time.time() - t0, 1)}))
    return model.eval().requires_grad_(False)


def evaluate_classifier(model: ClassClassifier, images: np.ndarray, labels: Sequence[dict]) -> dict:
    """Per class on labelled images: accuracy, precision, recall, base rate (threshold 0.5)."""
    y = class_mask(world_table(labels), model.classes)
    p = model.probs(images) > 0.5
    out = {}
    for k, n in enumerate(model.classes):
        tp = int((p[:, k] & y[:, k]).sum())
        out[n] = {"accuracy": round(float((p[:, k] == y[:, k]).mean()), 4),
                  "precision": round(tp / max(1, int(p[:, k].sum())), 4),
                  "recall": round(tp / max(1, int(y[:, k].sum())), 4), "base_rate": round(float(y[:, k].mean()), 4)}
    return out


# ---------------------------------------------------------------------------
# 3. Rejection sampling (the baseline)
# ---------------------------------------------------------------------------

def _check_G(G):
    if G.c_dim:
        raise InputError("Customisation needs an unconditional generator (this one takes a class vector).")


def _generate(G, z: torch.Tensor, psi: float, noise_mode: str = "const") -> tuple:
    from facegen.engine.synthesis import to_uint8
    with torch.no_grad():
        ws = G.mapping(z.to(G.mapping.w_avg.device), None, truncation_psi=psi)
        return to_uint8(G.synthesis(ws, noise_mode=noise_mode)), ws.cpu().numpy()


def _accept(C: ClassClassifier, images: np.ndarray, idx: list[int], threshold: float) -> np.ndarray:
    return (C.probs(images)[:, idx] >= threshold).all(1)


#: Acceptance threshold on every chosen class's probability. 0.5 keeps many borderline faces that the
#: independent judge rejects (glasses: about half); 0.9 costs more samples and keeps clearer members.
ACCEPT = 0.9


def rejection_sample(G, names: Sequence[str], n: int, psi: float = 0.7, seed: int = 0, C=None,
                     threshold: float = ACCEPT, batch: int = 32, max_tries: int = 4096, propose=None,
                     variety: int = 1) -> dict:
    """Draw z ~ N(0, I) (or from ``propose(rng, batch)``), generate, classify, keep hits.

    ``variety`` > 1: keep ``variety * n`` hits, then the ``n`` most varied of them
    (:func:`varied_subset`). Returns {images uint8 [M, H, W, 3], ws [M, num_ws, w_dim], tries, kept,
    pool, seconds}; M <= n (fewer only if ``max_tries`` proposals were not enough)."""
    from facegen.engine.latents import check_psi
    _check_G(G)
    psi = check_psi(psi)
    if not 1 <= int(variety) <= MAX_VARIETY:
        raise InputError(f"Variety must be between 1 and {MAX_VARIETY} (got {variety}).")
    C = C or load_classifier()
    idx = C.index(names)
    rng = torch.Generator().manual_seed(int(seed))
    want = n * int(variety)
    images, ws, tries, t0 = [], [], 0, time.time()
    while sum(len(i) for i in images) < want and tries < max_tries:
        b = min(batch, max_tries - tries)
        z = propose(rng, b) if propose is not None else torch.randn(b, G.z_dim, generator=rng)
        img, w = _generate(G, z, psi)
        keep = _accept(C, img, idx, threshold)
        images.append(img[keep])
        ws.append(w[keep])
        tries += b
    images = np.concatenate(images)[:want] if images else np.zeros((0,) + (G.img_resolution,) * 2 + (3,), np.uint8)
    ws = np.concatenate(ws)[:want] if ws else np.zeros((0, G.num_ws, G.w_dim), np.float32)
    pool = len(images)
    if pool > n:
        keep = varied_subset(C, images, n, seed)
        images, ws = images[keep], ws[keep]
    return {"images": images, "ws": ws, "tries": tries, "kept": len(images), "pool": pool,
            "seconds": time.time() - t0}


#: Pool size (x the faces asked for) of the "more varied" check, and the most a caller may ask for.
VARIETY = 4
MAX_VARIETY = 16


def varied_subset(C: ClassClassifier, images: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of n faces of ``images`` spread as widely as the pool allows: farthest-point selection in
    the training classifier's penultimate features (start at a random face; then, again and again, the
    face farthest from all chosen so far).

    Measured (``bench/customize.py``, 4x pools): diversity up by about 0.06 of unconditional, the judge's
    hit rate down by about 2 points: the farthest faces include the pool's borderline members."""
    if len(images) <= n:
        return np.arange(len(images))
    f = torch.from_numpy(C.embed(images)).double()
    d = torch.cdist(f, f)
    chosen = [int(torch.randint(len(f), (1,), generator=torch.Generator().manual_seed(int(seed))))]
    nearest = d[chosen[0]].clone()                       # distance of every face to the chosen set
    while len(chosen) < n:
        i = int(nearest.argmax())
        chosen.append(i)
        nearest = torch.minimum(nearest, d[i])
    return np.array(chosen)


# ---------------------------------------------------------------------------
# 4. Z-code generators
# ---------------------------------------------------------------------------

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


def prior_loss(z: torch.Tensor) -> torch.Tensor:
    """Batch moments of z against N(0, I): mean_d mu_d^2 + mean_d (var_d - 1)^2."""
    mu, var = z.mean(0), z.var(0)
    return mu.square().mean() + (var - 1).square().mean()


def train_zcode(G, C: ClassClassifier, name: str, steps: int = 200, batch: int = 24, lr: float = 2e-3,
                lambda_prior: float = 1.0, lambda_move: float = 1.0, lambda_div: float = 0.0, margin: float = 2.0,
                lambda_real: float = 1.0, D=None, augment: bool = True, psi_range=(0.5, 1.0), seed: int = 0,
                hidden: int = 128, lambda_feat: float = 0.0, log=print) -> tuple:
    """Train one class's z-code net against frozen G and C (and D for realism) -> (net, history)."""
    _check_G(G)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = ZCodeNet(G.z_dim, hidden)
    G.requires_grad_(False)
    k = C.index([name])[0]
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.99))
    hist, t0 = [], time.time()
    for step in range(steps):
        u = torch.randn(batch, G.z_dim, generator=g)
        psi = float(psi_range[0] + (psi_range[1] - psi_range[0]) * torch.rand([], generator=g))
        z = net(u)
        ws = G.mapping(z, None, truncation_psi=psi)
        img = G.synthesis(ws, noise_mode="const")
        x = ((img + 1) / 2).clamp(0, 1)
        feats = C.features(_augment(x, g) if augment else x)
        logit = C.head(feats)[:, k]
        l_cls = F.softplus(margin - logit).mean()
        l_prior, l_move = prior_loss(z), (z - u).square().mean()
        loss = l_cls + lambda_prior * l_prior + lambda_move * l_move
        if D is not None and lambda_real:
            l_real = F.softplus(-D(img)).mean()      # the GAN's own discriminator: stay on the image manifold
            loss = loss + lambda_real * l_real
        if lambda_div:
            with torch.no_grad():
                d_u = torch.pdist(G.mapping(u, None, truncation_psi=psi)[:, 0]).mean()
            l_div = F.relu(1 - torch.pdist(ws[:, 0]).mean() / d_u)
            loss = loss + lambda_div * l_div
        if lambda_feat:
            with torch.no_grad():     # the unconditional faces of the same u: the spread to keep
                x_u = ((G.synthesis(G.mapping(u, None, truncation_psi=psi), noise_mode="const") + 1) / 2).clamp(0, 1)
                f_u = torch.pdist(C.features(x_u)).mean()
            l_feat = F.relu(1 - torch.pdist(feats).mean() / f_u)
            loss = loss + lambda_feat * l_feat
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 25 == 0 or step == 0:
            rec = {"class": name, "step": step + 1, "cls": round(l_cls.item(), 4),
                   "hit": round((logit > 0).float().mean().item(), 3), "prior": round(l_prior.item(), 4),
                   "move": round(l_move.item(), 4), "elapsed_s": round(time.time() - t0, 1)}
            if D is not None and lambda_real:
                rec["real"] = round(l_real.item(), 4)
            if lambda_feat:
                rec["feat_spread"] = round(1 - l_feat.item(), 4)
            hist.append(rec)
            log(json.dumps(rec))
    return net.eval().requires_grad_(False), hist


def load_discriminator(G, path) -> nn.Module:
    """G's training discriminator (``discriminator.safetensors``, training defaults at G's resolution), frozen."""
    from safetensors.torch import load_file
    from facegen.world.training import TrainConfig, build_networks
    if not Path(path).is_file():
        raise ModelNotFoundError(f"No discriminator at {path} (export it with `python -m facegen train "
                                 "--export-discriminator CKPT --export FOLDER`).")
    _, D = build_networks(TrainConfig(resolution=G.img_resolution))
    D.load_state_dict(load_file(str(path)), strict=True)
    return D.eval().requires_grad_(False)


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


def save_zcodes(bank: ZCodeBank, folder, **meta) -> Path:
    return _save_folder(bank, folder, "ZCodeBank", {**bank.config(), "meta": meta})


@lru_cache(maxsize=4)
def _load_zcodes(folder: str) -> ZCodeBank:
    return _load_module(folder, "ZCodeBank", "z-code generators", f"python -m facegen customize zcode --out {folder}",
                        lambda cfg: ZCodeBank(cfg["classes"], cfg["z_dim"], cfg["hidden"], cfg["fingerprint"]))


def load_zcodes(folder=None, G=None) -> ZCodeBank:
    """The shipped z-code generators; with ``G``, check they were trained for it."""
    bank = _load_zcodes(str(Path(folder or ZCODE_DIR).resolve()))
    if G is not None and G.fingerprint != bank.fingerprint:
        raise InputError(f"The z-code generators were trained for generator {bank.fingerprint} (mini), not for "
                         f"this one ({G.fingerprint}); use rejection sampling here.")
    return bank


def zcode_sample(G, name: str, n: int, psi: float = 0.7, seed: int = 0, bank=None) -> dict:
    """n faces from the class's z-code net: u ~ N(0, I) by seed, z = net(u), generate (no rejection)."""
    from facegen.engine.latents import check_psi
    bank = bank or load_zcodes(G=G)
    psi = check_psi(psi)
    t0 = time.time()
    u = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(int(seed)))
    with torch.no_grad():
        z = bank.net(name)(u)
    images, ws = _generate(G, z, psi)
    return {"images": images, "ws": ws, "tries": n, "kept": n, "seconds": time.time() - t0}


# ---------------------------------------------------------------------------
# 5. One entry point for the app: classes x method
# ---------------------------------------------------------------------------

METHODS = ("zcode", "rejection", "finetuned", "conditional")
CHECKS = ("check", "varied", "none")
MAX_FACES = 64


def base_rates() -> dict:
    """Class frequencies in the classifier's test renders (stored with it), for picking the rarest class."""
    C = load_classifier()
    ev = C.meta.get("test", {})
    return {n: ev.get(n, {}).get("base_rate", 0.5) for n in C.classes}


def finetuned_name(model: str, name: str) -> str:
    """Registry name of `model` fine-tuned on class `name` (e.g. mini + glasses -> 'mini-glasses')."""
    return f"{model}-{name.replace(':', '-')}"


def finetuned_classes(model: str) -> list[str]:
    """Classes with a fine-tuned generator for `model` in the registry."""
    from facegen.engine import registry
    return [c for c in CLASSES if registry.has(finetuned_name(model, c))]


def finetuned_for(model: str, names: Sequence[str]) -> tuple:
    """-> (registry name, class) of the fine-tuned generator for one of `names`, or InputError."""
    have = finetuned_classes(model)
    for n in names:
        if n in have:
            return finetuned_name(model, n), n
    raise InputError(f"No fine-tuned generator for {' + '.join(names)} with model '{model}' "
                     f"(fine-tuned: {', '.join(have) or 'none'}); use the z-code generator or rejection sampling.")


def conditional_name(model: str) -> str:
    """Registry name of `model`'s class-conditional sibling (e.g. 'mini-conditional')."""
    return f"{model}-conditional"


def customize(G, classes, method: str = "zcode", n: int = 8, psi: float = 0.7, seed: int = 0,
              max_tries: int = 4096, G_finetuned=None, finetuned_class: Optional[str] = None,
              G_conditional=None, check: str = "check") -> dict:
    """Faces of `classes` (AND) by `method` -> {images, ws, classes, method, note, tries, kept, seconds}.

    * ``rejection``: sample, classify, keep.
    * ``zcode``: the z-code generator of the rarest chosen class proposes.
    * ``finetuned``: ``G_finetuned`` (fine-tuned on ``finetuned_class``, see :func:`finetuned_for`)
      proposes; its ws belong to ``G_finetuned``.
    * ``conditional``: ``G_conditional`` draws every class at once from its class code (no check).

    ``check`` (:data:`CHECKS`) decides what happens to the proposals: ``check`` (default) keeps those
    the classifier accepts for every chosen class; ``varied`` keeps :data:`VARIETY` x n accepted ones
    and returns the n most varied (:func:`varied_subset`); ``none`` returns z-code or fine-tuned
    proposals unchecked (fastest; with several classes the check still runs for the others).
    """
    names = parse_classes(classes)
    n = int(n)
    if not 1 <= n <= MAX_FACES:
        raise InputError(f"Count must be between 1 and {MAX_FACES} (got {n}).")
    if method not in METHODS:
        raise InputError(f"Method must be one of {', '.join(METHODS)} (got '{method}').")
    if check not in CHECKS:
        raise InputError(f"Check must be one of {', '.join(CHECKS)} (got '{check}').")
    _check_G(G)
    C = load_classifier()
    variety = VARIETY if check == "varied" else 1
    if method == "rejection":
        out = rejection_sample(G, names, n, psi, seed, C, max_tries=max_tries, variety=variety)
        note = f"rejection sampling: kept {out['pool']} of {out['tries']} samples"
    elif method == "conditional":
        if G_conditional is None:
            raise InputError("The conditional method needs a class-conditional generator (none is shipped for this "
                             "model); use the z-code generator or rejection sampling.")
        out = conditional_sample(G_conditional, names, n, psi, seed)
        note = f"conditional generator: class code {' + '.join(names)}, {n} faces, no rejection"
    elif method == "finetuned":
        if G_finetuned is None or finetuned_class not in names:
            raise InputError("The fine-tuned method needs the fine-tuned generator of one of the chosen classes.")
        rest = [c for c in names if c != finetuned_class]
        if not rest and check == "none":
            from facegen.engine.latents import check_psi
            t0 = time.time()
            z = torch.randn(n, G_finetuned.z_dim, generator=torch.Generator().manual_seed(int(seed)))
            images, ws = _generate(G_finetuned, z, check_psi(psi))
            out = {"images": images, "ws": ws, "tries": n, "kept": n, "seconds": time.time() - t0}
            note = f"generator fine-tuned on '{finetuned_class}': {n} faces, no rejection"
        else:
            out = rejection_sample(G_finetuned, names, n, psi, seed, C, max_tries=max_tries, variety=variety)
            note = (f"generator fine-tuned on '{finetuned_class}' proposes, the classifier checks {' + '.join(names)}: "
                    f"kept {out['pool']} of {out['tries']}")
    else:
        bank = load_zcodes(G=G)
        rates = base_rates()
        lead = min(names, key=lambda c: rates.get(c, 0.5))
        if len(names) == 1 and check == "none":
            out = zcode_sample(G, lead, n, psi, seed, bank)
            note = f"z-code generator '{lead}': {n} faces, no rejection"
        else:
            net = bank.net(lead)
            out = rejection_sample(G, names, n, psi, seed, C, max_tries=max_tries, variety=variety,
                                   propose=lambda rng, b: net(torch.randn(b, G.z_dim, generator=rng)))
            note = (f"z-code generator '{lead}' proposes, the classifier checks {' + '.join(names)}: "
                    f"kept {out['pool']} of {out['tries']}")
    if variety > 1 and method != "conditional":
        note += f"; the {out['kept']} most varied of {out['pool']} hits"
    if out["kept"] < n:
        note += f" (only {out['kept']} of {n} found within {out['tries']} samples: the combination is rare)"
    return {**out, "classes": names, "method": method, "note": note}


# ---------------------------------------------------------------------------
# 5b. Conditional generator (method 3)
# ---------------------------------------------------------------------------

LABEL_BANK_SEEDS = 6000


@lru_cache(maxsize=4)
def _label_bank(classes: tuple) -> np.ndarray:
    """Class codes of world seeds 0..5,999 (the conditional GAN's training faces): the empirical joint."""
    return class_mask(world_table(world_labels(range(LABEL_BANK_SEEDS))), list(classes)).astype(np.float32)


def conditional_sample(Gc, names: Sequence[str], n: int, psi: float = 0.7, seed: int = 0) -> dict:
    """A class-conditional generator (trained with ``--classes``, c_dim = their number): class codes are
    drawn from training faces that satisfy every chosen class (so the other entries follow the world's
    joint distribution), z ~ N(0, I); no rejection."""
    from facegen.engine.latents import check_psi
    classes = tuple(Gc.meta.get("classes") or ())
    if Gc.c_dim == 0 or len(classes) != Gc.c_dim:
        raise InputError("This generator is not a class-conditional facegen generator (no class list in its meta).")
    missing = [c for c in names if c not in classes]
    if missing:
        raise InputError(f"The conditional generator has no class {', '.join(missing)} (it knows: {', '.join(classes)}).")
    t0 = time.time()
    bank = _label_bank(classes)
    rows = np.flatnonzero(bank[:, [classes.index(c) for c in names]].all(1))
    if len(rows) == 0:
        raise InputError(f"No training face has {' + '.join(names)}, so the conditional generator has no code for it.")
    rng = torch.Generator().manual_seed(int(seed))
    c = torch.from_numpy(bank[rows[torch.randint(len(rows), (n,), generator=rng).numpy()]])
    z = torch.randn(n, Gc.z_dim, generator=rng)
    dev = Gc.mapping.w_avg.device
    from facegen.engine.synthesis import to_uint8
    with torch.no_grad():
        ws = Gc.mapping(z.to(dev), c.to(dev), truncation_psi=check_psi(psi))
        images = to_uint8(Gc.synthesis(ws, noise_mode="const"))
    return {"images": images, "ws": ws.cpu().numpy(), "tries": n, "kept": n, "seconds": time.time() - t0}


# ---------------------------------------------------------------------------
# 6. Fine-tuning data (method 1b)
# ---------------------------------------------------------------------------

def select_for_finetune(G, name: str, n: int, out, threshold: float = 0.9, seed: int = 100, propose: str = "zcode",
                        log=print) -> dict:
    """n faces of `name` at psi = 1 that the classifier accepts with p >= threshold, as an image folder.

    ``propose``: ``random`` (z ~ N(0, I): plain rejection) or ``zcode`` (the class's z-code generator
    proposes, which wastes fewer samples and gives clearer class members)."""
    from PIL import Image
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fn = None
    if propose == "zcode":
        net = load_zcodes(G=G).net(name)
        fn = lambda rng, b: net(torch.randn(b, G.z_dim, generator=rng))  # noqa: E731
    elif propose != "random":
        raise InputError(f"propose must be 'zcode' or 'random' (got '{propose}').")
    res = rejection_sample(G, [name], n, psi=1.0, seed=seed, threshold=threshold, batch=64, max_tries=400 * n,
                           propose=fn)
    for i, img in enumerate(res["images"]):
        Image.fromarray(img).save(out / f"{i:05d}.png")
    info = {"class": name, "kept": res["kept"], "tries": res["tries"], "accept_rate": round(res["kept"] / res["tries"], 4),
            "threshold": threshold, "propose": propose, "psi": 1.0, "seconds": round(res["seconds"], 1),
            "generator": G.fingerprint}
    (out / "selection.json").write_text(json.dumps(info, indent=1))
    log(json.dumps(info))
    return info


# ---------------------------------------------------------------------------
# 7. Command line
# ---------------------------------------------------------------------------

def cmd_classifier(a) -> int:
    from facegen.world.training import load_dataset
    from facegen.world.render import render_batch
    t0 = time.time()
    images = load_dataset(f"world:{a.n_train}", 64, cache_dir=Path(a.cache_dir))
    labels = world_labels(range(a.n_train))
    test_images, test_labels = render_batch(range(TEST_SEED_START, TEST_SEED_START + a.n_test), size=64)
    print(f"data: {len(images)} train, {len(test_images)} test renders ({time.time() - t0:.0f}s)", flush=True)
    t1 = time.time()
    model = train_classifier(images, labels, class_names(), steps=a.steps, seed=a.seed,
                             log=lambda s: print(s, flush=True))
    train_s = time.time() - t1
    test = evaluate_classifier(model, test_images, test_labels)
    metrics = {"command": "python -m facegen customize " + " ".join(shlex.quote(x) for x in a.argv),
               "train_seeds": [0, a.n_train - 1], "test_seeds": [TEST_SEED_START, TEST_SEED_START + a.n_test - 1],
               "steps": a.steps, "train_seconds": round(train_s, 1), "threads": torch.get_num_threads(),
               "params": sum(p.numel() for p in model.parameters()), "test": test}
    save_classifier(model, a.out, test=test)
    (Path(a.out) / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps(test, indent=1))
    return 0


def cmd_zcode(a) -> int:
    from facegen.engine.loaders import load_generator
    G = load_generator(a.model).eval()
    C = load_classifier(a.classifier)
    D = load_discriminator(G, a.discriminator) if a.lambda_real else None
    names = parse_class_list(a.classes) if a.classes else C.classes
    # a group of mutually exclusive classes is fine here: one net each
    bank = ZCodeBank(names, G.z_dim, a.hidden, G.fingerprint)
    hist = {}
    t0 = time.time()
    for name in names:
        net, h = train_zcode(G, C, name, steps=a.steps, batch=a.batch, lambda_prior=a.lambda_prior,
                             lambda_move=a.lambda_move, lambda_div=a.lambda_div, margin=a.margin, seed=a.seed,
                             lambda_real=a.lambda_real, D=D, lambda_feat=a.lambda_feat,
                             hidden=a.hidden, log=lambda s: print(s, flush=True))
        bank.nets[bank.key(name)].load_state_dict(net.state_dict())
        hist[name] = h
        save_zcodes(bank, a.out, model=a.model, steps=a.steps, done=list(hist))   # usable after every class
    metrics = {"command": "python -m facegen customize " + " ".join(shlex.quote(x) for x in a.argv),
               "generator": G.fingerprint, "model": a.model, "steps": a.steps, "batch": a.batch,
               "lambda_prior": a.lambda_prior, "lambda_move": a.lambda_move, "lambda_div": a.lambda_div,
               "lambda_feat": a.lambda_feat, "lambda_real": a.lambda_real, "discriminator": a.discriminator,
               "margin": a.margin, "train_seconds": round(time.time() - t0, 1),
               "threads": torch.get_num_threads(), "params_per_class": sum(p.numel() for p in bank.net(names[0]).parameters()),
               "final": {n: h[-1] for n, h in hist.items()}, "history": hist}
    save_zcodes(bank, a.out, model=a.model, steps=a.steps)
    mpath = Path(a.out) / "metrics.json"
    old = json.loads(mpath.read_text()) if mpath.exists() else {}
    mpath.write_text(json.dumps({**old, **metrics}, indent=1) + "\n")
    return 0


def cmd_select(a) -> int:
    from facegen.engine.loaders import load_generator
    G = load_generator(a.model).eval()
    select_for_finetune(G, parse_classes(a.cls)[0], a.n, a.out, threshold=a.threshold, seed=a.seed, propose=a.propose)
    return 0


def cli_main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m facegen customize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("classifier", help="train the customisation classifier on face-world renders")
    c.add_argument("--n-train", type=int, default=24000)
    c.add_argument("--n-test", type=int, default=1000)
    c.add_argument("--steps", type=int, default=900)
    c.add_argument("--seed", type=int, default=7)
    c.add_argument("--cache-dir", default="runs/mini/data", help="where world renders are cached (.npy)")
    c.add_argument("--out", default=str(CLASSIFIER_DIR))
    c.set_defaults(fn=cmd_classifier)
    z = sub.add_parser("zcode", help="train one z-code generator per class")
    z.add_argument("--model", default="mini")
    z.add_argument("--classifier", default=str(CLASSIFIER_DIR))
    z.add_argument("--classes", default="", help="comma-separated (default: every class)")
    z.add_argument("--steps", type=int, default=200)
    z.add_argument("--batch", type=int, default=24)
    z.add_argument("--hidden", type=int, default=128)
    z.add_argument("--lambda-prior", type=float, default=1.0)
    z.add_argument("--lambda-move", type=float, default=1.0)
    z.add_argument("--lambda-div", type=float, default=0.0)
    z.add_argument("--lambda-feat", type=float, default=0.0,
                   help="> 0: keep the classifier-feature spread of the class's faces at least that of unconditional ones")
    z.add_argument("--lambda-real", type=float, default=1.0)
    z.add_argument("--discriminator", default="assets/mini/discriminator.safetensors")
    z.add_argument("--margin", type=float, default=2.0)
    z.add_argument("--seed", type=int, default=0)
    z.add_argument("--out", default=str(ZCODE_DIR))
    z.set_defaults(fn=cmd_zcode)
    s = sub.add_parser("select", help="rejection-sample one class into an image folder (fine-tuning data)")
    s.add_argument("--model", default="mini")
    s.add_argument("--cls", required=True)
    s.add_argument("--n", type=int, default=3000)
    s.add_argument("--threshold", type=float, default=0.9)
    s.add_argument("--seed", type=int, default=100)
    s.add_argument("--propose", default="zcode", choices=["zcode", "random"])
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_select)
    a = p.parse_args(argv)
    a.argv = list(argv)
    torch.set_num_threads(a.threads)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))

"""Training and evaluating the world predictor on face-world renders with exact ground truth.

* Data: face-world renders (64 px, supersample 4). **Seed ranges:** predictor training seeds start at
  :data:`TRAIN_SEED_START` (10_000_000), held-out test seeds at :data:`TEST_SEED_START` (20_000_000);
  GAN training uses seeds below 10_000_000, so the predictor never sees the GAN's training faces either.
* Targets (:func:`_targets`): continuous attributes normalised to [0, 1], hues as (sin, cos), class
  indices, 0/1.
* Losses (:func:`_loss`): MSE for continuous attributes (hues as sin/cos, weight 10), cross-entropy for
  categorical, BCE for bools; validity is BCE of renders (label 1) against corrupted images made on the
  fly (label 0, :func:`facegen.world.predictor_images.make_corruptions`). Faces and corruptions alike
  pass through :func:`facegen.world.predictor_images.augment`.
* Optimiser (:func:`train_predictor`): AdamW, batch 128, warm-up then cosine decay; the schedule is
  driven by ``max(step fraction, time fraction)`` so a time budget always ends on a fully decayed
  learning rate.
* Evaluation (:func:`evaluate`): per-attribute MAE / accuracy, validity against corruptions, and the
  same on renders blurred with sigma 1.
"""

from __future__ import annotations

import math
import time
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from facegen.engine.errors import InputError
from facegen.labels.base import check_images
from facegen.world.predictor_images import CORRUPTIONS, augment, blur, make_corruptions
from facegen.world.predictor_network import WorldPredictor

__all__ = ["TRAIN_SEED_START", "TEST_SEED_START", "train_predictor", "evaluate"]

#: Predictor training seeds are TRAIN_SEED_START + i, held-out test seeds TEST_SEED_START + i.
#: GAN training uses seeds below 10_000_000, so the three sets are disjoint.
TRAIN_SEED_START = 10_000_000
TEST_SEED_START = 20_000_000


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
    blurred = (blur(faces, 1.0).permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    pb, _, vb = model.predict_all(blurred)
    out["blurred_sigma1"] = {**attr_metrics(pb), "renders_valid_rate": float(np.mean(vb > 0.5))}
    return out

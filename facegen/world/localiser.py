"""The face world's landmark localiser: training it on renders, and fitting its head framing.

The localiser (:class:`facegen.features.faceswap.tracking.Localiser`, a small CNN: five landmarks and a
face / no-face logit from a 64 x 64 picture) ships in mini's feature pack (component ``localiser``,
``assets/packs/mini/localiser/``); faceswap uses it through the pack. This module makes it:

* **Training data** (:func:`synth_frames`): face-world renders (:func:`render_pool`) pasted at random
  scale (0.3-1.15 of the picture side), tilt (+-12 deg) and position onto plain / gradient /
  smooth-noise backgrounds, with brightness jitter and noise; 20 % of the pictures have no face.
* **Training** (:func:`train_localiser`): smooth L1 on the landmarks (pixels) + binary cross-entropy on
  presence; Adam, cosine learning rate from 2e-3, batch 32, for a time budget; evaluated on held-out
  renders. The renders' mean landmarks are stored as the localiser's ``template``.
* **Framing** (:func:`fit_framing`): aligning on the eyes and mouth re-centres the *features*, which slide
  sideways as the head turns, while the face world's renders (and a generator trained on them) are
  framed on the *head*. A ridge regression from the five landmarks (in the template frame) to the
  similarity that takes the template frame to the frame a render of this face fills, fitted on renders.

    python -m facegen faceswap-world localiser-train --out assets/packs/mini/localiser --threads 1
    python -m facegen faceswap-world framing-fit --out assets/packs/mini/localiser
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facegen.engine.paths import ASSETS
from facegen.features.faceswap.geometry import Framing, align_points, apply_affine, invert_affine, umeyama, \
    warp_affine
from facegen.features.faceswap.tracking import Localiser
from facegen.packs.alignment import LANDMARKS

LOCALISER_DIR = ASSETS / "packs" / "mini" / "localiser"


def render_pool(n: int, seed: int, size: int = 64) -> tuple:
    """n face-world renders -> (images float [n, 3, s, s] in [0, 1], landmarks [n, 5, 2], background rgb)."""
    from facegen.world.attributes import sample_attributes
    from facegen.world.render import render
    rng = np.random.default_rng(seed)
    imgs, lms = [], []
    for _ in range(n):
        r = render(sample_attributes(rng), size=size, supersample=2)
        imgs.append(r.image)
        lms.append([r.landmarks[k] for k in LANDMARKS])
    imgs = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    return imgs, torch.tensor(np.asarray(lms, np.float32)), imgs[:, :, 0, 0]


def _backgrounds(n: int, colors: torch.Tensor, g: torch.Generator, size: int = 64) -> torch.Tensor:
    """Plain (a render's own background colour), two-colour gradient or smooth-noise backgrounds."""
    kind = torch.randint(0, 3, (n,), generator=g)
    c1, c2 = torch.rand(n, 3, 1, 1, generator=g), torch.rand(n, 3, 1, 1, generator=g)
    ramp = torch.linspace(0, 1, size).view(1, 1, 1, size)
    ang = torch.rand(n, 1, 1, 1, generator=g) > 0.5
    ramp = torch.where(ang, ramp, ramp.transpose(-1, -2))
    grad = c1 + (c2 - c1) * ramp
    noise = F.interpolate(torch.rand(n, 3, 6, 6, generator=g), size=(size, size), mode="bicubic",
                          align_corners=False).clamp(0, 1)
    plain = colors.view(n, 3, 1, 1).expand(n, 3, size, size)
    out = torch.where((kind == 0).view(n, 1, 1, 1), plain, torch.where((kind == 1).view(n, 1, 1, 1), grad, noise))
    return out.contiguous()


def synth_frames(pool: tuple, n: int, g: torch.Generator, p_empty: float = 0.2, size: int = 64) -> tuple:
    """A batch of localiser training pictures: renders pasted at random scale (0.3-1.15 of the side),
    tilt (+-12 deg) and position onto random backgrounds; some pictures have no face.
    -> (x [n, 3, size, size], landmarks [n, 5, 2] px, has_face [n] float)."""
    imgs, lms, colors = pool
    idx = torch.randint(0, imgs.shape[0], (n,), generator=g)
    src, lm = imgs[idx], lms[idx]
    s = 0.3 + 0.85 * torch.rand(n, generator=g) ** 0.8
    th = (torch.rand(n, generator=g) * 2 - 1) * math.radians(12)
    spread = torch.clamp((1 - s) * 0.5 + 0.06, min=0.06) * size
    c = size / 2 + (torch.rand(n, 2, generator=g) * 2 - 1) * spread[:, None]
    cos, sin = torch.cos(th), torch.sin(th)
    R = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)     # render -> frame rotation
    S = imgs.shape[-1]
    # forward: p_frame = (size / S) * s * R (p_render - S/2) + c ; inverse for sampling
    A = R * (s * size / S)[:, None, None]
    Ainv = torch.linalg.inv(A)
    M = torch.cat([Ainv, (torch.tensor([S / 2, S / 2]) - (Ainv @ c[:, :, None])[..., 0])[:, :, None]], 2)
    warped = warp_affine(torch.cat([src, torch.ones_like(src[:, :1])], 1), M.numpy(), (size, size))
    # the sampler clamps at the border; mark what lies outside the render as transparent
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    pr = torch.einsum("nij,hwj->nhwi", M[:, :, :2], torch.stack([xs, ys], -1)) + M[:, None, None, :, 2]
    inside = ((pr >= 0) & (pr <= S)).all(-1).float()[:, None]
    bg = _backgrounds(n, colors[idx], g, size)
    x = warped[:, :3] * inside + bg * (1 - inside)
    empty = torch.rand(n, generator=g) < p_empty
    x = torch.where(empty.view(n, 1, 1, 1), bg, x)
    lm_frame = torch.einsum("nij,nkj->nki", A, lm - S / 2) + c[:, None]
    gain = 0.85 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    bias = (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.15
    x = (x * gain + bias + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, lm_frame, (~empty).float()


def train_localiser(out, n_renders: int = 1500, seconds: float = 180, batch: int = 32, seed: int = 0,
                    log=print) -> dict:
    """Train the face-world localiser within `seconds`, evaluate on held-out renders, save to `out`."""
    t0 = time.time()
    torch.manual_seed(seed)
    pool = render_pool(n_renders, seed)
    val_pool = render_pool(200, seed + 1000)
    t_render = time.time() - t0
    log(f"rendered {n_renders + 200} faces in {t_render:.0f} s")
    model = Localiser(points=pool[1].mean(0).numpy().astype(np.float64) / 64)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    step, t1 = 0, time.time()
    while time.time() - t1 < seconds:
        frac = (time.time() - t1) / seconds
        for grp in opt.param_groups:
            grp["lr"] = 2e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1))))
        x, lm, has = synth_frames(pool, batch, g)
        pred, logit = model(x)
        l_lm = (F.smooth_l1_loss(pred, lm, reduction="none", beta=1.0).mean((1, 2)) * has).sum() / has.sum().clamp(min=1)
        l_p = F.binary_cross_entropy_with_logits(logit, has)
        loss = l_lm + l_p
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            log(f"step {step} landmarks {l_lm.item():.3f} presence {l_p.item():.3f} ({time.time() - t1:.0f} s)")
    model.eval()
    gv = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        x, lm, has = synth_frames(val_pool, 512, gv)
        pred, logit = model(x)
        err = (pred - lm).norm(dim=-1).mean(1)
        keep = has > 0
        iod = (lm[:, 1] - lm[:, 0]).norm(dim=-1)
        acc = ((logit > 0).float() == has).float().mean().item()
    model.save_pretrained(out)
    # two-pass error on whole frames as the tracker uses it (pictures with a face)
    two = model.locate((x[keep].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))[0]
    err2 = np.linalg.norm(two - lm[keep].numpy(), axis=-1).mean(1)
    metrics = {"steps": step, "batch": batch, "train_seconds": round(time.time() - t1, 1),
               "render_seconds": round(t_render, 1), "n_renders": n_renders, "val_pictures": 512,
               "landmark_error_px_one_pass": round(float(err[keep].mean()), 3),
               "landmark_error_px_two_pass": round(float(err2.mean()), 3),
               "landmark_error_over_eye_distance_two_pass": round(float((err2 / iod[keep].numpy()).mean()), 4),
               "presence_accuracy": round(acc, 4), "picture_size": 64}
    (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log(json.dumps(metrics))
    return write_framing(out, log=log)


def fit_framing(points: np.ndarray, n: int = 2000, seed: int = 5, ridge: float = 1e-4, log=print) -> dict:
    """Fit the face world's framing relative to the template `points` ([5, 2] fractions of the side): from
    the five landmarks in the template frame, a linear (ridge) regression predicts the similarity that
    takes the template frame to the frame a face-world render of this face fills (head-centred).
    -> {"weights": [11, 4], metrics} (corner error of held-out renders, with and without it)."""
    S = 64
    _, lms, _ = render_pool(n + 400, seed)
    lms = lms.numpy().astype(np.float64)
    frame = Framing(np.zeros((11, 4)), np.asarray(points, np.float64))
    tm = align_points(frame.points * S)
    X, Y = [], []
    for lm in lms:
        M = umeyama(align_points(lm), tm)                             # render -> template frame
        Minv = invert_affine(M)                                       # template frame -> render
        X.append(frame.features(apply_affine(M, lm), S))
        Y.append([Minv[0, 0] - 1, Minv[1, 0], Minv[0, 2] / S, Minv[1, 2] / S])
    X, Y = np.asarray(X), np.asarray(Y)
    Xt, Yt, Xv, Yv = X[:n], Y[:n], X[n:], Y[n:]
    W = np.linalg.solve(Xt.T @ Xt + ridge * n * np.eye(X.shape[1]), Xt.T @ Yt)
    corners = np.array([[0, 0], [S, 0], [0, S], [S, S], [S / 2, S / 2]], np.float64)

    def corner_err(P, Q):
        def apply(p, c):
            a, b, tx, ty = p[0] + 1, p[1], p[2] * S, p[3] * S
            return c @ np.array([[a, b], [-b, a]]) + [tx, ty]
        return float(np.mean([np.linalg.norm(apply(p, corners) - apply(q, corners), axis=-1).mean()
                              for p, q in zip(P, Q)]))
    metrics = {"framing_n": n, "framing_val": len(Xv),
               "framing_corner_error_px_at_64": round(corner_err(Xv @ W, Yv), 3),
               "framing_corner_error_px_features_only": round(corner_err(np.zeros_like(Yv) + Yt.mean(0), Yv), 3)}
    log(json.dumps(metrics))
    return {"weights": W.round(6).tolist(), **metrics}


def write_framing(folder=None, n: int = 2000, log=print) -> dict:
    """Fit the framing for the localiser in `folder` (its template) and store it in its config.json
    (weights) and metrics.json."""
    folder = Path(folder or LOCALISER_DIR)
    cfg = json.loads((folder / "config.json").read_text())
    fit = fit_framing(np.asarray(cfg["template"], np.float64) / 64, n, log=log)
    cfg["framing"] = fit.pop("weights")
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    mp = folder / "metrics.json"
    metrics = {**(json.loads(mp.read_text()) if mp.exists() else {}), **fit}
    mp.write_text(json.dumps(metrics, indent=1))
    return metrics

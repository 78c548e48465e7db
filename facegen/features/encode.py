"""Photo encoding for any generator: a photo -> aligned crop -> w+ latent, by the pack's encoder or by projection.

Start (:func:`encode_photo`, the app's *Photo encoding* tab)
-------------------------------------------------------------
1. **Align** (:mod:`facegen.labels.align`): dlib detection + the FFHQ recipe, to the generator's
   resolution (32 px works). A square image with no detectable face is taken as already aligned when
   the pack's labeller says it is a face (face-world renders); a photo with no face is refused.
2. **Start latent**: the pack's ``encoder`` (:mod:`facegen.packs.encoder`: facegen's own, or a published e4e
   encoder, :mod:`facegen.packs.e4e`) gives a w+ in one pass;
   without a pack, or a pack without an encoder, the start is the average face ``w_avg`` and the
   projection below does all the work within the time budget (the returned ``note`` says so).
3. **Optimise** (:func:`optimise`): one loop for both cases, set by :class:`OptimiseConfig`:

   * :func:`project` -- the official StyleGAN2 projector's recipe (Karras et al. 2020, ``projector.py``):
     start at w_avg; Adam (beta 0.9, 0.999) with a learning-rate ramp (``lr x min(1, t / 0.05)`` up,
     cosine down over the last 25 %); Gaussian noise added to w, ``w_std x 0.05 x max(0, 1 - t / 0.75)^2``;
     the noise maps optimised too, with the multi-scale autocorrelation penalty (x 1e5) and renormalised to
     zero mean / unit variance after every step. ``mode="w"`` optimises one w broadcast to every layer
     (the official choice, most editable), ``"w+"`` one per layer. ``t = max(step / steps, elapsed /
     time_budget)``, so the schedule always ends at the budget. The noise maps live on a private copy of
     the synthesis network's module tree (parameters shared, never written), so G stays untouched.
   * :func:`refine` -- starts from the encoder's w+: constant lr 0.03, no w noise, G's constant noise,
     pixel MSE + 0.1 x perceptual + 0.002 x pull towards the start; it stops early when the loss has not
     improved by 0.2 % for 25 steps (the recipe ``mini``'s numbers were measured with).

   The perceptual term (:func:`facegen.labels.perceptual.perceptual_for`): the pack's choice, else the
   generator's own discriminator when its file carries one, else pixels + MS-SSIM; its ``note`` is shown.
   Only the latent is kept: every result is rendered with G's constant noise, as the rest of the studio
   renders latents, so the reconstruction shown is the one the saved latent reproduces.

Command line: ``python -m facegen encoder encode PHOTO.jpg [...] --model MODEL --outdir out/``
(:func:`cli_encode`, routed through :mod:`facegen.world.encoder_training`, which adds ``train``).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from facegen.engine.errors import InputError
from facegen.labels.perceptual import Perceptual, perceptual_for
from facegen.packs.encoder import Encoder, encoder_for, fit

MODES = ("w", "w+")
MAX_STEPS = 5000
MAX_BUDGET = 600.0


# ---------------------------------------------------------------------------
# 1. The encoder's pass
# ---------------------------------------------------------------------------

def to_tensor(images: np.ndarray, device=None) -> torch.Tensor:
    """uint8 [N, H, W, 3] (or [H, W, 3]) -> float [N, 3, H, W] in [-1, 1] (the generator's range)."""
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise InputError(f"Images must be uint8 [N, H, W, 3], got {a.dtype} {list(a.shape)}.")
    a = np.ascontiguousarray(a) if a.flags.writeable else np.array(a)
    return torch.from_numpy(a).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def encode(E: Encoder, images, batch_size: int = 64) -> np.ndarray:
    """uint8 images [N, H, W, 3] -> w+ float32 [N, num_ws, w_dim] (one network pass per batch)."""
    dev = E.w_avg.device
    was = E.training
    E.eval()
    x = to_tensor(images)
    out = [E(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, x.shape[0], batch_size)]
    E.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, E.num_ws, E.w_dim), np.float32)


def reconstruction_metrics(a: np.ndarray, b: np.ndarray) -> dict:
    """uint8 images -> {'mse': mean squared error in [0, 1] units, 'psnr': dB, 'mae': mean abs error (0-255)}."""
    a = np.asarray(a, np.float64) / 255.0
    b = np.asarray(b, np.float64) / 255.0
    if a.shape != b.shape:
        raise InputError(f"Cannot compare images of shapes {a.shape} and {b.shape}.")
    mse = float(np.mean((a - b) ** 2))
    return {"mse": mse, "psnr": float(10 * np.log10(1.0 / max(mse, 1e-12))), "mae": float(np.mean(np.abs(a - b)) * 255)}


# ---------------------------------------------------------------------------
# 2. Optimisation: projection and refinement are one loop
# ---------------------------------------------------------------------------

@dataclass
class OptimiseConfig:
    mode: str = "w+"                 # "w": one w broadcast to every layer; "w+": one per layer
    steps: int = 1000
    time_budget: float = 8.0         # seconds
    lr: float = 0.1
    lr_rampup: float = 0.05          # fraction of the schedule (0 = none)
    lr_rampdown: float = 0.25        # cosine ramp-down over this last fraction (0 = none)
    w_noise: float = 0.05            # noise added to w: w_std x w_noise x max(0, 1 - t / noise_ramp)^2
    noise_ramp: float = 0.75
    optimise_noise: bool = True      # optimise the noise maps (regularised and renormalised)
    noise_reg_weight: float = 1e5
    feature_weight: float = 1.0      # x the perceptual term
    pixel_weight: float = 1.0        # x pixel MSE (D features are no trained LPIPS: they do not pin colours)
    latent_weight: float = 0.0       # x mean squared distance to the start (keeps refinements editable)
    patience: int = 0                # stop after this many steps without a `min_rel_improvement` gain (0: never)
    min_rel_improvement: float = 2e-3
    keep: str = "last"               # "last" latent (the projector: its schedule ends on lr 0, no w noise) or "best"
    seed: int = 0                    # the w-noise draws


#: The official StyleGAN2 projector's recipe (steps and budget are set per call).
PROJECT = OptimiseConfig()
#: Refinement of an encoder's w+ (what mini's published numbers were measured with).
REFINE = OptimiseConfig(mode="w+", steps=200, lr=0.03, lr_rampup=0.0, lr_rampdown=0.0, w_noise=0.0,
                        optimise_noise=False, feature_weight=0.1, pixel_weight=1.0, latent_weight=0.002,
                        patience=25, keep="best")


@dataclass
class RefineResult:
    ws: np.ndarray                    # [num_ws, w_dim] float32 (best loss seen)
    steps: int
    seconds: float
    stopped_by: str                   # "steps", "time", "early" or "no-steps"
    history: list = field(default_factory=list)   # loss per step (without the noise maps' penalty)
    initial_loss: float = float("nan")
    final_loss: float = float("nan")   # the kept latent's loss (best seen, or the last evaluated)
    mode: str = "w+"
    perceptual: str = ""              # what the perceptual term was (its note)


def _check_limits(steps, time_budget) -> tuple:
    steps, time_budget = int(steps), float(time_budget)
    if not 0 <= steps <= MAX_STEPS:
        raise InputError(f"Optimisation steps must be between 0 and {MAX_STEPS} (got {steps}).")
    if not (math.isfinite(time_budget) and 0 < time_budget <= MAX_BUDGET):
        raise InputError(f"The time budget must be between 0 and {MAX_BUDGET:g} seconds (got {time_budget}).")
    return steps, time_budget


@torch.no_grad()
def w_spread(G, n: int = 4096, seed: int = 123) -> float:
    """The projector's scalar w std: sqrt(E ||w - w_avg||^2) over n mapped z ~ N(0, I)."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(G.mapping.w_avg.device)
    w = G.mapping(z, None)[:, 0]
    return float((w - G.mapping.w_avg).square().sum(1).mean().sqrt())


def noisy_synthesis(G) -> tuple:
    """A private copy of G.synthesis whose noise maps are fresh leaf tensors (starting at G's constant noise)
    -> (synthesis copy, {name: noise map}). Parameters and other buffers are shared with G, not copied."""
    memo = {}
    for m in G.synthesis.modules():
        for name, t in list(m._parameters.items()) + list(m._buffers.items()):
            if t is not None and name != "noise_const":
                memo[id(t)] = t
    syn = copy.deepcopy(G.synthesis, memo)
    bufs = {}
    for name, m in syn.named_modules():
        if "noise_const" in m._buffers:
            buf = m._buffers["noise_const"].detach().clone().requires_grad_(True)
            m._buffers["noise_const"] = buf
            bufs[name] = buf
    return syn, bufs


def noise_regularisation(bufs: dict) -> torch.Tensor:
    """The projector's penalty: squared autocorrelation (1 px shifts, both axes) at every scale down to 8 px."""
    reg = torch.zeros((), device=next(iter(bufs.values())).device)
    for v in bufs.values():
        noise = v[None, None]
        while True:
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return reg


def _schedule(cfg: OptimiseConfig, t: float) -> tuple:
    """(learning rate, w-noise factor) at schedule position t in [0, 1]."""
    ramp = 1.0
    if cfg.lr_rampdown > 0:
        ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if cfg.lr_rampup > 0:
        ramp = ramp * min(1.0, t / cfg.lr_rampup)
    wn = cfg.w_noise * max(0.0, 1.0 - t / cfg.noise_ramp) ** 2 if cfg.w_noise > 0 and cfg.noise_ramp > 0 else 0.0
    return cfg.lr * ramp, wn


def optimise(G, image: np.ndarray, ws_init, cfg: OptimiseConfig, perceptual: Optional[Perceptual] = None,
             progress: Optional[Callable] = None) -> RefineResult:
    """Optimise a latent so that G(latent) matches the aligned `image` (uint8 [R, R, 3]) from `ws_init`
    ([num_ws, w_dim], or [w_dim] for a w); see the module docstring and :class:`OptimiseConfig`."""
    steps, budget = _check_limits(cfg.steps, cfg.time_budget)
    if cfg.mode not in MODES:
        raise InputError(f"The latent space must be 'w' or 'w+' (got '{cfg.mode}').")
    dev = G.mapping.w_avg.device
    w0 = torch.as_tensor(np.asarray(ws_init, np.float32)).to(dev)
    ws0 = w0.reshape(1, 1, G.w_dim).expand(1, G.num_ws, G.w_dim) if w0.numel() == G.w_dim else \
        w0.reshape(1, G.num_ws, G.w_dim)
    target = fit(to_tensor(image, dev), G.img_resolution)
    if steps == 0:
        return RefineResult(ws0[0].cpu().numpy(), 0, 0.0, "no-steps", mode=cfg.mode,
                            perceptual=getattr(perceptual, "note", ""))
    with torch.no_grad():
        tstate = perceptual.target(target) if perceptual is not None else None
    start = ws0.mean(1, keepdim=True) if cfg.mode == "w" else ws0      # W: the layers' mean (w_avg stays w_avg)
    var = start.detach().clone().requires_grad_(True)
    syn, bufs = noisy_synthesis(G) if cfg.optimise_noise else (G.synthesis, {})
    opt = torch.optim.Adam([var] + list(bufs.values()), lr=cfg.lr, betas=(0.9, 0.999))
    w_std = w_spread(G) if cfg.w_noise > 0 else 0.0
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()          # after the set-up (the first Adam in a process imports torch._dynamo: seconds)
    best, best_ws, hist = float("inf"), ws0.detach().clone(), []
    since, ref, stopped = 0, float("inf"), "steps"
    # Gradients w.r.t. the latent (and the private noise maps) only, with torch.autograd.grad: G's parameters
    # are never touched, so concurrent optimisations on one shared generator do not interfere.
    with torch.enable_grad():
        for i in range(steps):
            el = time.perf_counter() - t0
            t = min(1.0, max(i / steps, el / budget))
            lr, wn = _schedule(cfg, t)
            for pg in opt.param_groups:
                pg["lr"] = lr
            ws = var.expand(1, G.num_ws, G.w_dim) if cfg.mode == "w" else var
            if wn > 0:
                ws = ws + (torch.randn(var.shape, generator=gen) * (w_std * wn)).to(dev)
            img = syn(ws, noise_mode="const")
            loss = cfg.pixel_weight * (img - target).square().mean() if cfg.pixel_weight else torch.zeros((), device=dev)
            if perceptual is not None and cfg.feature_weight:
                loss = loss + cfg.feature_weight * perceptual.loss(img, tstate).mean()
            if cfg.latent_weight:
                loss = loss + cfg.latent_weight * (ws - ws0).square().mean()
            v = loss.item()                  # the history: the image (and latent) terms, not the noise penalty
            if bufs and cfg.noise_reg_weight:
                loss = loss + cfg.noise_reg_weight * noise_regularisation(bufs)
            hist.append(v)
            if v < best:
                best = v
                best_ws = (var.expand(1, G.num_ws, G.w_dim) if cfg.mode == "w" else var).detach().clone()
            if v < ref * (1 - cfg.min_rel_improvement):
                ref, since = v, 0
            else:
                since += 1
            el = time.perf_counter() - t0
            if progress is not None and (i % 10 == 0 or i == steps - 1):
                progress(min(1.0, max((i + 1) / steps, el / budget)), f"optimising: step {i + 1}/{steps}, loss {v:.4f}")
            if cfg.patience and since >= cfg.patience:
                stopped = "early"
                break
            if el >= budget:
                stopped = "time"
                break
            grads = torch.autograd.grad(loss, [var] + list(bufs.values()))
            for p, g in zip([var] + list(bufs.values()), grads):
                p.grad = g
            opt.step()
            if bufs:
                with torch.no_grad():
                    for buf in bufs.values():
                        buf -= buf.mean()
                        buf *= buf.square().mean().rsqrt()
    if cfg.keep == "last":       # the latent after the last step (its loss: the last one evaluated)
        best_ws, best = (var.expand(1, G.num_ws, G.w_dim) if cfg.mode == "w" else var).detach().clone(), hist[-1]
    return RefineResult(best_ws[0].cpu().numpy().astype(np.float32), len(hist), time.perf_counter() - t0, stopped,
                        hist, hist[0], best, cfg.mode, getattr(perceptual, "note", ""))


def _perceptual(G, pack, perceptual) -> Optional[Perceptual]:
    if isinstance(perceptual, Perceptual) or perceptual is None:
        return perceptual
    if perceptual == "none":
        return None
    return perceptual_for(G, pack, perceptual, G.mapping.w_avg.device)


def refine(G, image: np.ndarray, ws_init, steps: int = 200, time_budget: float = 8.0, pack=None,
           perceptual: Union[str, Perceptual, None] = "auto", progress: Optional[Callable] = None,
           **overrides) -> RefineResult:
    """Refine an encoder's w+ for `image` (the :data:`REFINE` recipe; keyword `overrides` change its
    fields). `perceptual`: a :class:`~facegen.labels.perceptual.Perceptual`, a kind for
    :func:`~facegen.labels.perceptual.perceptual_for` with `pack` ("auto", "labeller", "discriminator",
    "pixels"), or "none"."""
    cfg = replace(REFINE, steps=steps, time_budget=time_budget, **overrides)
    return optimise(G, image, ws_init, cfg, _perceptual(G, pack, perceptual), progress)


def project(G, image: np.ndarray, mode: str = "w", steps: int = 1000, time_budget: float = 8.0, pack=None,
            perceptual: Union[str, Perceptual, None] = "auto", ws_init=None, progress: Optional[Callable] = None,
            **overrides) -> RefineResult:
    """Project `image` into G's W (``mode="w"``) or w+ from w_avg (or `ws_init`) with the official projector's
    recipe (:data:`PROJECT`; keyword `overrides` change its fields). See :func:`refine` for `perceptual`."""
    cfg = replace(PROJECT, mode=mode, steps=steps, time_budget=time_budget, **overrides)
    start = G.mapping.w_avg.detach().cpu().numpy() if ws_init is None else ws_init
    return optimise(G, image, start, cfg, _perceptual(G, pack, perceptual), progress)


# ---------------------------------------------------------------------------
# 3. The whole path for one photo
# ---------------------------------------------------------------------------

def encode_photo(G, pack, src, index: Optional[int] = None, mode: str = "auto", refine_steps: int = 200,
                 time_budget: float = 8.0, progress: Optional[Callable] = None, aligned=None,
                 space: str = "w", perceptual: Union[str, Perceptual] = "auto") -> dict:
    """align -> start latent (the pack's encoder, else w_avg) -> refinement / projection. Returns a dict of
    picklable values (aligned / start / final images, ws, metrics, timings, ``note``) plus the AlignResult
    and RefineResult. `aligned` (an AlignResult or an aligned uint8 crop) skips the alignment of `src`;
    `space` ("w" or "w+") is the projection's space when there is no encoder."""
    from facegen.engine.synthesis import synthesize
    from facegen.labels.align import AlignResult, align_face
    if space not in MODES:
        raise InputError(f"The projection space must be 'w' or 'w+' (got '{space}').")
    _check_limits(refine_steps, time_budget)
    t0 = time.perf_counter()
    say = progress or (lambda *a, **k: None)
    say(0.02, "finding the face")
    if isinstance(aligned, np.ndarray):     # an aligned crop (uint8 [R, R, 3]) made earlier
        aligned = AlignResult(aligned, "given", None, source=aligned)
    labeller = pack.labeller if pack is not None else None
    al = aligned if aligned is not None else align_face(src, G.img_resolution, index=index, mode=mode,
                                                        validity=labeller)
    E = encoder_for(G, pack)
    perc = _perceptual(G, pack, perceptual)
    prog = (lambda f, s: say(0.1 + 0.85 * f, s))
    t1 = time.perf_counter()
    if E is not None:
        say(0.1, "encoding")
        ws_e = encode(E.to(G.mapping.w_avg.device), al.image)[0]
        t_enc = time.perf_counter() - t1
        r = refine(G, al.image, ws_e, steps=refine_steps, time_budget=time_budget, perceptual=perc, progress=prog)
        start = "encoder"
        then = (f"then refinement in w+ (up to {refine_steps} steps / {time_budget:g} s)" if refine_steps
                else "no refinement (0 steps)")
        desc = getattr(E, "description", "the pack's encoder")        # e4e's names itself
        note = f"Start: {desc} (one forward pass), {then}."
    else:
        say(0.1, "projecting from the average face")
        ws_e = np.broadcast_to(G.mapping.w_avg.detach().cpu().numpy(), (G.num_ws, G.w_dim)).copy()
        t_enc = 0.0
        r = project(G, al.image, mode=space, steps=refine_steps, time_budget=time_budget, perceptual=perc,
                    progress=prog)
        start = "w_avg"
        why = "no feature pack for this generator" if pack is None else f"pack '{pack.name}' has no encoder"
        note = (f"Start: the average face (w_avg) -- {why} -- then projection (the StyleGAN2 projector's "
                f"recipe in {'W' if space == 'w' else 'w+'}), which uses the whole time budget "
                f"({time_budget:g} s, up to {refine_steps} steps).")
    note += f" Loss: {perc.note if perc is not None else 'pixel MSE only'}."
    img_e = synthesize(G, ws_e[None])[0]
    img_r = synthesize(G, r.ws[None])[0] if r.steps else img_e
    return {"aligned": al.image, "align": al, "encoder_ws": ws_e, "encoder_image": img_e, "ws": r.ws,
            "refined_image": img_r, "refine": r, "encoder_metrics": reconstruction_metrics(img_e, al.image),
            "refined_metrics": reconstruction_metrics(img_r, al.image), "encoder_seconds": t_enc,
            "align_seconds": al.seconds, "seconds": time.perf_counter() - t0, "start": start, "note": note,
            "perceptual": perc.kind if perc is not None else "none"}


# ---------------------------------------------------------------------------
# 4. Figures (numpy/PIL, for the app and the CLI)
# ---------------------------------------------------------------------------

def error_map(a: np.ndarray, b: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """|a - b| per pixel (mean over RGB, x gain) as a black-red-yellow-white heat map, uint8 [H, W, 3]."""
    d = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(-1) / 255.0 * gain
    d = np.clip(d, 0, 1)
    r = np.clip(d * 3, 0, 1)
    g = np.clip(d * 3 - 1, 0, 1)
    bl = np.clip(d * 3 - 2, 0, 1)
    return (np.stack([r, g, bl], -1) * 255 + 0.5).astype(np.uint8)


def comparison_figure(panels: list, size: int = 192) -> np.ndarray:
    """[(title, uint8 image), ...] -> one labelled strip, every panel `size` px high (small images are
    upscaled with nearest neighbour so their pixels stay visible; other shapes keep their aspect)."""
    from PIL import Image, ImageDraw
    pad, head = 6, 18
    ims = []
    for _, img in panels:
        im = Image.fromarray(np.asarray(img, np.uint8))
        w = max(1, round(im.width * size / im.height))
        ims.append(im.resize((w, size), Image.NEAREST if im.height < size else Image.LANCZOS))
    W = sum(im.width for im in ims) + pad * (len(ims) + 1)
    canvas = Image.new("RGB", (W, size + head + pad), (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    x = pad
    for (title, _), im in zip(panels, ims):
        canvas.paste(im, (x, head))
        d.text((x + 2, 3), str(title), fill=(20, 20, 20))
        x += im.width + pad
    return np.asarray(canvas)


def loss_curve(history: list, width: int = 360, height: int = 160, title: str = "loss (1 = start)") -> np.ndarray:
    """The optimisation loss per step (relative to the start) as a small line chart, uint8 [H, W, 3]."""
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(im)
    l, r, t, b = 40, width - 8, 18, height - 20
    d.rectangle([l, t, r, b], outline=(180, 180, 180))
    d.text((4, 2), title, fill=(20, 20, 20))
    h = np.asarray(history, np.float64)
    if h.size >= 2 and np.isfinite(h).all() and h[0] > 0:
        y = h / h[0]
        lo = min(0.0, float(y.min()))
        hi = max(1.0, float(y.max()))
        xs = l + (r - l) * np.arange(h.size) / (h.size - 1)
        ys = b - (b - t) * (y - lo) / max(hi - lo, 1e-9)
        d.line(list(zip(xs.tolist(), np.clip(ys, t, b).tolist())), fill=(120, 60, 200), width=2)
        d.text((4, t - 2), f"{hi:.1f}", fill=(90, 90, 90))
        d.text((4, b - 10), f"{lo:.1f}", fill=(90, 90, 90))
        d.text((l, b + 4), "0", fill=(90, 90, 90))
        d.text((r - 30, b + 4), f"{h.size - 1}", fill=(90, 90, 90))
        d.text((l + 60, b + 4), f"final {y.min():.2f}", fill=(120, 60, 200))
    return np.asarray(im)


# ---------------------------------------------------------------------------
# 5. Command line: python -m facegen encoder encode
# ---------------------------------------------------------------------------

def add_encode_arguments(e) -> None:
    """The `encode` subcommand's arguments (an argparse parser)."""
    e.add_argument("images", nargs="+")
    e.add_argument("--model", default="mini")
    e.add_argument("--outdir", required=True)
    e.add_argument("--refine-steps", type=int, default=200, help="optimisation steps (refinement or projection)")
    e.add_argument("--time-budget", type=float, default=8.0)
    e.add_argument("--space", default="w", choices=list(MODES), help="projection space without an encoder")
    e.add_argument("--face", type=int, default=1, help="which face (1 = largest)")
    e.add_argument("--no-pack", action="store_true", help="ignore the generator's pack (projection from w_avg)")


def cli_encode(args) -> int:
    """Encode photos to latent .npz files with the model's pack (aligned crop and reconstruction per photo)."""
    import json
    from PIL import Image
    from facegen.engine.latents import save_latent
    from facegen.engine.loaders import load_generator
    from facegen.packs.pack import find_pack
    G = load_generator(args.model)
    pack = None if args.no_pack else find_pack(G)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for src in args.images:
        r = encode_photo(G, pack, src, index=args.face - 1, refine_steps=args.refine_steps,
                         time_budget=args.time_budget, space=args.space)
        stem = Path(src).stem
        Image.fromarray(r["aligned"]).save(outdir / f"{stem}-aligned.png")
        Image.fromarray(r["refined_image"]).save(outdir / f"{stem}-reconstruction.png")
        save_latent(outdir / f"{stem}.npz", r["ws"], fingerprint=G.fingerprint, source=Path(src).name,
                    kind="encoded-photo", refine_steps=r["refine"].steps, start=r["start"])
        print(json.dumps({"image": src, "align": r["align"].summary(), "start": r["start"],
                          "psnr_start": round(r["encoder_metrics"]["psnr"], 2),
                          "psnr_final": round(r["refined_metrics"]["psnr"], 2), "seconds": round(r["seconds"], 2),
                          "note": r["note"]}))
    return 0

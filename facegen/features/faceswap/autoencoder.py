"""Faceswap autoencoder: one shared encoder, one decoder per identity, and its training.

:class:`FaceswapAE`: encoder 64 -> 4 x 4 -> dense code -> 8 x 8 features shared by both identities;
decoder A and decoder B upsample back to 64 x 64, each predicting a residual on its identity's mean
face. Each training step (:func:`train`) trains both decoders on a batch of their own faces under
*random warp* (:func:`random_warp`: a random similarity and mirror applied to input and target, plus a
smooth random deformation of the input only), with an L1 loss weighted towards the head and, more, the
eyes and mouth (:func:`loss_weights`, laid out on the alignment template); optionally plus faceswap's
structural term 1 - SSIM (``ssim_weight``, :func:`ssim_map`), and optionally with the encoder seeing
only the inner face (:meth:`FaceswapAE.set_input_region`) -- both measured and left off by default
(README, *Faceswap video*). Training runs for a time budget (seconds) with a progress callback;
:class:`TrainState` saves a checkpoint (``torch.save`` of tensors only, loaded with
``weights_only=True``) so a later call resumes where it stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegen.engine.errors import InputError
from facegen.features.faceswap.blend import face_mask
from facegen.packs.alignment import generic_points

CROP = 64                        # aligned face size = autoencoder resolution


def _points(size: int, points: Optional[np.ndarray]) -> np.ndarray:
    """The template landmarks [5, 2] in pixels of a `size` crop (default: the generic template)."""
    return generic_points() * size if points is None else np.asarray(points, np.float64)


def _up(c_in: int, c_out: int) -> nn.Sequential:
    """x2 upsampling: conv to 4 c_out channels + pixel shuffle (the faceswap 'upscale' block)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out * 4, 3, 1, 1), nn.LeakyReLU(0.1), nn.PixelShuffle(2))


class FaceswapAE(nn.Module):
    """Shared encoder (64 -> 4 x 4 -> dense code -> 8 x 8) and one decoder per identity (8 -> 64).

    Each decoder predicts a residual on its identity's mean face (in logit space; :meth:`set_priors`), and
    its last convolution starts at zero, so training starts from the mean face instead of grey and the
    short CPU budget goes into pose and expression rather than into first drawing a face."""

    def __init__(self, size: int = CROP, ch: int = 16, code: int = 128):
        super().__init__()
        if size not in (64, 128):
            raise InputError(f"Faceswap size must be 64 or 128 (got {size}).")
        self.size, self.ch, self.code = size, ch, code
        n_down = int(math.log2(size // 4))
        chans = [ch * 2 ** i for i in range(n_down)]          # 16, 32, 64, 128 at 64 px
        enc, c_in = [], 3
        for c in chans:
            enc += [nn.Conv2d(c_in, c, 5, 2, 2), nn.LeakyReLU(0.1)]
            c_in = c
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(c_in * 16, code), nn.Linear(code, 16 * c_in),
                                     nn.Unflatten(1, (c_in, 4, 4)), _up(c_in, c_in // 2))
        self.decoders = nn.ModuleList([self._decoder(c_in // 2, n_down - 1) for _ in range(2)])
        for d in self.decoders:
            nn.init.zeros_(d[-1].weight)
            nn.init.zeros_(d[-1].bias)
        self.register_buffer("priors", torch.zeros(2, 3, size, size))
        self.register_buffer("input_mask", torch.ones(1, 1, size, size))

    def set_input_region(self, region: Optional[str], points: Optional[np.ndarray] = None) -> None:
        """Let the encoder see only `region` ('face', 'head'; None: the whole crop) of every input, laid
        out on the template `points` [5, 2] (pixels), the rest grey, so that its code need not carry what
        differs between the identities outside it (background, hair, clothes)."""
        m = torch.ones(self.size, self.size) if region is None else \
            torch.from_numpy(face_mask(self.size, _points(self.size, points), feather=1.5, region=region))
        self.input_mask.copy_(m.to(self.input_mask)[None, None])

    def set_priors(self, faces_a: torch.Tensor, faces_b: torch.Tensor) -> None:
        """Mean faces ([N, 3, S, S] in [0, 1]) of identity A and B -> the decoders' starting points."""
        for i, f in enumerate((faces_a, faces_b)):
            m = f.float().mean(0).clamp(0.02, 0.98)
            self.priors[i] = torch.log(m / (1 - m)).to(self.priors.device)

    @staticmethod
    def _decoder(c: int, n_up: int) -> nn.Sequential:
        layers = []
        for _ in range(n_up):
            layers.append(_up(c, c // 2))
            c //= 2
        return nn.Sequential(*layers, nn.Conv2d(c, 3, 5, 1, 2))

    def forward(self, x: torch.Tensor, identity: int) -> torch.Tensor:
        """x [N, 3, S, S] in [0, 1] -> decoder `identity` (0 = A, 1 = B) output in [0, 1]."""
        x = x * self.input_mask + 0.5 * (1 - self.input_mask)
        return torch.sigmoid(self.decoders[identity](self.encoder(x)) + self.priors[identity])


AUGMENT = dict(rot=5.0, zoom=0.03, shift=0.03, warp=0.02, flip=True)


def random_warp(x: torch.Tensor, g: torch.Generator, rot: float = 10, zoom: float = 0.05, shift: float = 0.05,
                warp: float = 0.02, flip: bool = True) -> tuple:
    """Random-warp augmentation -> (warped input, target). Both get the same random similarity (and
    horizontal flip); the input also gets a smooth random deformation (a 5 x 5 grid of offsets of about
    `warp` x side, upsampled), which the autoencoder learns to undo."""
    n, _, h, w = x.shape
    th = (torch.rand(n, generator=g) * 2 - 1) * math.radians(rot)
    sc = 1 + (torch.rand(n, generator=g) * 2 - 1) * zoom
    tr = (torch.rand(n, 2, generator=g) * 2 - 1) * shift * 2
    fl = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    cos, sin = torch.cos(th) / sc, torch.sin(th) / sc
    theta = torch.stack([torch.stack([cos * fl, -sin, tr[:, 0]], -1), torch.stack([sin * fl, cos, tr[:, 1]], -1)], 1)
    grid = F.affine_grid(theta, (n, x.shape[1], h, w), align_corners=False)
    target = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    offs = F.interpolate(torch.randn(n, 2, 5, 5, generator=g) * warp * 2, size=(h, w), mode="bicubic",
                         align_corners=False).permute(0, 2, 3, 1)
    warped = F.grid_sample(x, grid + offs, padding_mode="border", align_corners=False)
    return warped, target


@dataclass
class TrainState:
    """Everything `train` needs to resume: the model, the optimiser, the step, the loss history."""
    model: FaceswapAE
    opt: torch.optim.Optimizer
    step: int = 0
    seconds: float = 0.0
    losses: list = field(default_factory=list)     # (step, loss A, loss B)

    @classmethod
    def new(cls, size: int = CROP, lr: float = 1e-3, seed: int = 0, ch: int = 16, code: int = 128,
            beta1: float = 0.9, input_region: Optional[str] = None,
            points: Optional[np.ndarray] = None) -> "TrainState":
        """A fresh model and optimiser; `points`: the alignment template at `size` (for input_region)."""
        torch.manual_seed(seed)
        m = FaceswapAE(size, ch, code)
        m.set_input_region(input_region, points)
        return cls(m, torch.optim.Adam(m.parameters(), lr=lr, betas=(beta1, 0.999)))

    def save(self, path) -> Path:
        path = Path(path)
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                    "seconds": self.seconds, "losses": torch.tensor(self.losses, dtype=torch.float32).reshape(-1, 3),
                    "size": self.model.size, "ch": self.model.ch, "code": self.model.code}, str(path))
        return path

    @classmethod
    def load(cls, path) -> "TrainState":
        d = torch.load(str(path), map_location="cpu", weights_only=True)      # tensors and numbers only
        st = cls.new(int(d["size"]), ch=int(d["ch"]), code=int(d["code"]))
        st.model.load_state_dict(d["model"])
        st.opt.load_state_dict(d["opt"])
        st.step, st.seconds = int(d["step"]), float(d["seconds"])
        st.losses = [tuple(map(float, r)) for r in d["losses"].tolist()]
        return st


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


def loss_weights(size: int = CROP, points: Optional[np.ndarray] = None, mask_weight: float = 4.0,
                 feature_weight: float = 3.0) -> np.ndarray:
    """Per-pixel loss weight [size, size]: 1 + mask_weight inside the (head) mask + feature_weight on the
    eyes and the mouth (faceswap's eye and mouth multipliers: the small features that make the identity),
    laid out on the template `points` [5, 2] (pixels at `size`; default generic)."""
    from PIL import Image, ImageDraw
    t = _points(size, points)
    ex = np.linalg.norm(t[1] - t[0])
    ss = 4
    im = Image.new("L", (size * ss, size * ss), 0)
    d = ImageDraw.Draw(im)
    for (cx, cy), rx, ry in ((t[0], 0.3 * ex, 0.2 * ex), (t[1], 0.3 * ex, 0.2 * ex),
                             ((t[3] + t[4]) / 2, 0.55 * ex, 0.25 * ex)):
        d.ellipse([(cx - rx) * ss, (cy - ry) * ss, (cx + rx) * ss, (cy + ry) * ss], fill=255)
    feat = np.asarray(im.resize((size, size), Image.BOX), np.float32) / 255
    head = face_mask(size, t, feather=2.0, region="head")
    return (1 + mask_weight * head + feature_weight * feat).astype(np.float32)


def ssim_map(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.5, c1: float = 0.01 ** 2,
             c2: float = 0.03 ** 2) -> torch.Tensor:
    """SSIM per pixel (mean over channels) of images in [0, 1], [N, C, H, W] -> [N, 1, H, W], with a
    Gaussian window of std `sigma` (11 taps at 1.5): luminance x contrast x structure of the local patch."""
    r = int(math.ceil(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]

    def blur(t):
        t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(F.pad(t, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(1, keepdim=True)


def train(state: TrainState, faces_a: np.ndarray, faces_b: np.ndarray, seconds: float = 300,
          max_steps: Optional[int] = None, batch: int = 8, callback: Optional[Callable] = None,
          seed: Optional[int] = None, weights: Optional[np.ndarray] = None, augment: Optional[dict] = None,
          ssim_weight: float = 0.0, points: Optional[np.ndarray] = None) -> TrainState:
    """Train both decoders (A on faces_a, B on faces_b, uint8 [N, S, S, 3] aligned crops) for `seconds`
    (or `max_steps`), continuing from `state`. Loss per identity: L1 between decoder output and target,
    weighted per pixel by `weights` (default :func:`loss_weights` on the template `points`), moved with the
    target by the random warp (`augment`: its keyword arguments), plus `ssim_weight` x the same-weighted
    mean of 1 - SSIM (:func:`ssim_map`: faceswap's structural loss, which punishes lost edges more than L1).
    `callback(state, elapsed_s)` runs every 10 steps."""
    dev = next(state.model.parameters()).device
    S = state.model.size
    A, B = _to_tensor(faces_a).to(dev), _to_tensor(faces_b).to(dev)
    w = loss_weights(S, points) if weights is None else np.asarray(weights, np.float32)
    mask = torch.from_numpy(w / w.max())[None, None].to(dev)
    augment = dict(AUGMENT, **(augment or {}))
    if state.step == 0:
        state.model.set_priors(A, B)
    g = torch.Generator().manual_seed(state.step if seed is None else seed)
    state.model.train()
    t0 = time.time()
    n = 0
    while True:
        el = time.time() - t0
        if (max_steps is not None and n >= max_steps) or (max_steps is None and el >= seconds):
            break
        losses = []
        for ident, data in ((0, A), (1, B)):
            idx = torch.randint(0, data.shape[0], (batch,), generator=g)
            x = torch.cat([data[idx], mask.expand(batch, 1, S, S)], 1)
            warped, target = random_warp(x.cpu(), g, **augment)
            warped, target = warped.to(dev), target.to(dev)
            out = state.model(warped[:, :3], ident)
            wgt = target[:, 3:]
            loss = ((out - target[:, :3]).abs() * wgt).mean() / wgt.mean()
            if ssim_weight:
                loss = loss + ssim_weight * ((1 - ssim_map(out, target[:, :3])) * wgt).mean() / wgt.mean()
            losses.append(loss)
        loss = losses[0] + losses[1]
        state.opt.zero_grad()
        loss.backward()
        state.opt.step()
        state.step += 1
        n += 1
        state.losses.append((state.step, float(losses[0].detach()), float(losses[1].detach())))
        if callback is not None and state.step % 10 == 0:
            callback(state, time.time() - t0)
    state.seconds += time.time() - t0
    state.model.eval()
    return state


@torch.no_grad()
def swap_faces(model: FaceswapAE, crops: np.ndarray, identity: int = 0, batch: int = 64) -> np.ndarray:
    """Aligned crops uint8 [N, S, S, 3] -> decoder `identity`'s faces, uint8 [N, S, S, 3]."""
    dev = next(model.parameters()).device
    model.eval()
    out = [model(_to_tensor(crops[i:i + batch]).to(dev), identity).cpu() for i in range(0, len(crops), batch)]
    return (torch.cat(out).permute(0, 2, 3, 1).numpy() * 255).round().clip(0, 255).astype(np.uint8)


def preview(model: FaceswapAE, faces_a: np.ndarray, faces_b: np.ndarray, n: int = 4, up: int = 2) -> np.ndarray:
    """Rows: target faces (B), their swap (B through decoder A), faces of A, A's reconstructions."""
    ib = np.linspace(0, len(faces_b) - 1, n).round().astype(int)
    ia = np.linspace(0, len(faces_a) - 1, n).round().astype(int)
    rows = [faces_b[ib], swap_faces(model, faces_b[ib], 0), faces_a[ia], swap_faces(model, faces_a[ia], 0)]
    S = faces_a.shape[1]
    grid = np.full((4 * (S + 2), n * (S + 2), 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid[r * (S + 2) + 1:r * (S + 2) + 1 + S, c * (S + 2) + 1:c * (S + 2) + 1 + S] = im
    return grid.repeat(up, 0).repeat(up, 1)

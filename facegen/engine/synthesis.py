"""Synthesis: w+ latents -> uint8 RGB images, in batches, on any device (the official generate.py mapping).

Every layer above renders through here; the functions take and return picklable values (numpy arrays),
so the app can wrap them in ``spaces.GPU`` on ZeroGPU unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from facegen.engine.errors import InputError

NOISE_MODES = ("const", "random", "none")


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in about [-1, 1] -> [N, H, W, C] uint8 (the official generate.py mapping)."""
    img = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return img.cpu().numpy()


@torch.no_grad()
def synthesize(G, ws, noise_mode: str = "const", batch_size: int = 16, precision: str = "fp32",
               transform=None) -> np.ndarray:
    """w+ [N, num_ws, w_dim] (tensor or array) -> uint8 images [N, H, W, 3]. ``transform`` (StyleGAN3
    only: a 3x3 input transform, :func:`facegen.engine.stylegan3.transform_matrix`) turns / shifts
    these images for this call only; None renders with the generator's stored transform."""
    if noise_mode not in NOISE_MODES:
        raise InputError(f"Noise mode must be one of {', '.join(NOISE_MODES)} (got '{noise_mode}').")
    dev = G.mapping.w_avg.device
    ws = torch.as_tensor(np.asarray(ws) if not isinstance(ws, torch.Tensor) else ws, dtype=torch.float32)
    if ws.ndim == 2:
        ws = ws.unsqueeze(0)
    out = []
    for i in range(0, ws.shape[0], batch_size):
        extra = {} if transform is None else {"transform": torch.as_tensor(transform, dtype=torch.float32, device=dev)}
        img = G.synthesis(ws[i:i + batch_size].to(dev), noise_mode=noise_mode, precision=precision, **extra)
        out.append(to_uint8(img))
    return np.concatenate(out) if out else np.zeros((0, G.img_resolution, G.img_resolution, 3), np.uint8)

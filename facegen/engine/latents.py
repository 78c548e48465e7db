"""The latent toolkit: seeds, z, w, w+, truncation, interpolation, mixing, fusion, files.

Spaces (as in the StyleGAN papers):

* **z** ``[N, z_dim]``: Gaussian input. ``seed_to_z`` draws it exactly as the official
  ``generate.py`` does (``np.random.RandomState(seed).randn(1, z_dim)``, float64), so a seed gives
  the same face as the official tools on the same weights.
* **w** ``[N, w_dim]``: output of the mapping network.
* **w+** ``[N, num_ws, w_dim]``: one w per synthesis layer input; what the synthesis network
  eats, what style mixing, editing, fusion and encoding work in. Layer 0 is the coarsest
  (4x4), the last ones the finest.

Latent files are ``.npz`` (arrays ``ws`` and ``meta``, a JSON string) or bare ``.npy``; they are
read with ``allow_pickle=False`` and validated. Files written by facegen carry the generator
fingerprint; loading one against another generator warns with
:class:`~facegen.engine.errors.FingerprintMismatchWarning`.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch

from facegen.engine.errors import FingerprintMismatchWarning, InputError, LatentError

MAX_SEED = 2 ** 32 - 1

# ---------------------------------------------------------------------------
# Seeds and z
# ---------------------------------------------------------------------------


def parse_seeds(text: Union[str, int, Sequence[int]], max_count: int = 1024) -> list:
    """'0-7', '1,5,9-11', 42 or [1, 2] -> list of ints (inclusive ranges)."""
    if isinstance(text, (int, np.integer)):
        seeds = [int(text)]
    elif isinstance(text, str):
        seeds = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            m = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", part)
            if not m:
                raise InputError(f"Cannot read seeds '{text}': use numbers and ranges like '0-7' or '1,5,9-11'.")
            a, b = int(m.group(1)), int(m.group(2) or m.group(1))
            if b < a:
                raise InputError(f"Seed range '{part}' runs backwards.")
            if b - a + 1 + len(seeds) > max_count:
                raise InputError(f"Too many seeds in '{text}' (at most {max_count}).")
            seeds.extend(range(a, b + 1))
    else:
        seeds = [int(s) for s in text]
    if not seeds:
        raise InputError("No seeds given.")
    if len(seeds) > max_count:
        raise InputError(f"Too many seeds ({len(seeds)}; at most {max_count}).")
    for s in seeds:
        if not 0 <= s <= MAX_SEED:
            raise InputError(f"Seed {s} is out of range (0 to {MAX_SEED}).")
    return seeds


def seed_to_z(seed: int, z_dim: int) -> np.ndarray:
    """[1, z_dim] float64, exactly as the official generate.py draws it."""
    return np.random.RandomState(int(seed)).randn(1, z_dim)


def seeds_to_z(seeds: Iterable[int], z_dim: int) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([seed_to_z(s, z_dim) for s in seeds])).to(torch.float32)


def check_psi(psi: float) -> float:
    psi = float(psi)
    if not np.isfinite(psi) or not -2.0 <= psi <= 2.0:
        raise InputError(f"Truncation psi must be between -2 and 2 (got {psi}); 0.5-1.0 is usual.")
    return psi


def check_cutoff(G, cutoff: Optional[int]) -> Optional[int]:
    if cutoff is None or cutoff == 0 or cutoff == G.num_ws:
        return None
    cutoff = int(cutoff)
    if not 0 < cutoff <= G.num_ws:
        raise InputError(f"Truncation cutoff must be between 1 and {G.num_ws} layers (got {cutoff}).")
    return cutoff


def class_vector(G, index, n: int = 1) -> Optional[torch.Tensor]:
    """The one-hot class code [n, c_dim] of class `index` for a class-conditional generator (None for an
    unconditional one), as the official generate.py builds it from ``--class``."""
    if G.c_dim == 0:
        return None
    try:
        index = int(index)
    except (TypeError, ValueError):
        raise InputError(f"Class must be a whole number between 0 and {G.c_dim - 1} (got {index!r}).") from None
    if not 0 <= index < G.c_dim:
        raise InputError(f"This generator has {G.c_dim} classes: class must be between 0 and {G.c_dim - 1} "
                         f"(got {index}).")
    c = torch.zeros(n, G.c_dim)
    c[:, index] = 1
    return c


@torch.no_grad()
def z_to_ws(G, z: torch.Tensor, c=None, psi: float = 1.0, cutoff: Optional[int] = None) -> torch.Tensor:
    """z [N, z_dim] -> w+ [N, num_ws, w_dim] (with truncation).

    `c`: for a class-conditional generator, a class index (int) or class codes [N, c_dim]; None draws
    class 0 (the tabs that take a class pass it; every other path -- mixing a seed, sampling for
    directions -- draws class 0, as the UI says for conditional models)."""
    dev = G.mapping.w_avg.device
    if isinstance(c, (int, np.integer, str)) or c is None:   # a class index: only conditional generators use it
        c = class_vector(G, 0 if c is None else c, z.shape[0])
    c = c.to(dev) if c is not None else None
    return G.mapping(z.to(dev), c, truncation_psi=check_psi(psi), truncation_cutoff=check_cutoff(G, cutoff))


def seeds_to_ws(G, seeds, psi: float = 1.0, cutoff: Optional[int] = None, c=None) -> torch.Tensor:
    return z_to_ws(G, seeds_to_z(parse_seeds(seeds), G.z_dim), c=c, psi=psi, cutoff=cutoff)


def w_to_wplus(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    """w [N, w_dim] -> w+ [N, num_ws, w_dim] (the same w for every layer)."""
    return w.unsqueeze(1).repeat(1, num_ws, 1)


def wplus_to_w(ws: torch.Tensor) -> torch.Tensor:
    """w+ -> w by averaging layers (exact when every layer holds the same w)."""
    return ws.mean(dim=1)


def z_to_w(G, z: torch.Tensor, c=None) -> torch.Tensor:
    return z_to_ws(G, z, c)[:, 0]


def w_to_z(G, w: torch.Tensor, steps: int = 300, lr: float = 0.05, c=None) -> torch.Tensor:
    """Invert the mapping network by gradient descent (the mapping has no closed-form inverse)."""
    w = w.detach().to(G.mapping.w_avg.device)
    z = torch.randn(w.shape[0], G.z_dim, device=w.device, requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        with torch.enable_grad():
            loss = (G.mapping(z, c)[:, 0] - w).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return z.detach()


def truncate(G, ws: torch.Tensor, psi: float, cutoff: Optional[int] = None) -> torch.Tensor:
    """w_avg + psi * (w - w_avg) on the first `cutoff` layers (all by default)."""
    psi, cutoff = check_psi(psi), check_cutoff(G, cutoff)
    w_avg = G.mapping.w_avg.to(ws.device)
    out = ws.clone()
    n = cutoff or ws.shape[1]
    out[:, :n] = w_avg.lerp(ws[:, :n], psi)
    return out


# ---------------------------------------------------------------------------
# Interpolation, mixing, fusion
# ---------------------------------------------------------------------------


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation (the right path in W / w+)."""
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation (the right path in Z, whose samples live near a sphere)."""
    an = a / a.norm(dim=-1, keepdim=True).clamp_min(eps)
    bn = b / b.norm(dim=-1, keepdim=True).clamp_min(eps)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + eps, 1 - eps))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def layer_range(start: int, end: int, num_ws: int) -> list:
    """Inclusive layer range as the UI shows it (e.g. 5-8), validated against num_ws."""
    start, end = int(start), int(end)
    if not (0 <= start <= end < num_ws):
        raise InputError(f"Layer range {start}-{end} is not valid for a generator with {num_ws} layers "
                         f"(use 0-{num_ws - 1}, start <= end).")
    return list(range(start, end + 1))


def preset_layers(name: str, num_ws: int) -> list:
    """StyleGAN paper bands: coarse = layers 0-3 (4-8 px: pose, face shape), middle = 4-7
    (16-32 px: features, hair style, eyes open/closed), fine = 8+ (64 px and up: colours, texture)."""
    bands = {"coarse": range(0, 4), "middle": range(4, 8), "fine": range(8, num_ws)}
    if name not in bands:
        raise InputError(f"Unknown layer preset '{name}' (use coarse, middle or fine).")
    layers = [i for i in bands[name] if i < num_ws]
    return layers or [num_ws - 1]  # tiny generators have no fine band: use the last layer


def style_mix(source: torch.Tensor, template: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
    """Copy `layers` of the template's w+ into the source's w+ (the StyleGAN style-mixing figure)."""
    if source.shape[-2:] != template.shape[-2:]:
        raise LatentError(f"Cannot mix latents of shapes {list(source.shape)} and {list(template.shape)}.")
    out = source.clone()
    idx = torch.as_tensor(list(layers), dtype=torch.long)
    out[..., idx, :] = template[..., idx, :].to(out.dtype)
    return out


def fuse(latents: Sequence[torch.Tensor], weights: Optional[Sequence[float]] = None,
         layers: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Weighted average of N w+ latents (weights normalised to sum 1).

    With `layers`, only those layers are fused; the rest come from the first latent.
    """
    if len(latents) < 2:
        raise InputError("Fusion needs at least two faces.")
    shapes = {tuple(l.shape) for l in latents}
    if len(shapes) != 1:
        raise LatentError(f"Cannot fuse latents of different shapes: {sorted(shapes)}.")
    w = np.ones(len(latents)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(latents),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InputError("Fusion weights must be non-negative numbers, one per face, not all zero.")
    w = w / w.sum()
    stacked = torch.stack([l.to(torch.float32) for l in latents])
    mixed = (stacked * torch.as_tensor(w, dtype=torch.float32).reshape(-1, *[1] * latents[0].ndim)).sum(0)
    if layers is None:
        return mixed
    return style_mix(latents[0].to(torch.float32), mixed, layers)


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def _as_array(ws) -> np.ndarray:
    return (ws.detach().cpu().numpy() if isinstance(ws, torch.Tensor) else np.asarray(ws)).astype(np.float32)


def latent_bytes(ws, fingerprint: Optional[str] = None, **meta) -> bytes:
    """w+ (or a batch) as the bytes of a .npz with JSON metadata (fingerprint, seed, psi, model ...)."""
    arr = _as_array(ws)
    meta = {"format": "facegen-latent", "version": 1, "fingerprint": fingerprint, "shape": list(arr.shape), **meta}
    buf = io.BytesIO()
    np.savez(buf, ws=arr, meta=np.array(json.dumps(meta)))
    return buf.getvalue()


def save_latent(path, ws, fingerprint: Optional[str] = None, **meta) -> Path:
    """Write w+ (or a batch) to .npz with metadata (see latent_bytes), or a bare .npy array."""
    path = Path(path)
    if path.suffix == ".npy":
        np.save(path, _as_array(ws), allow_pickle=False)
        return path
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    path.write_bytes(latent_bytes(ws, fingerprint, **meta))
    return path


def load_latent(path, G=None, warn: bool = True):
    """Read a latent file -> (ws float32 array [num_ws, w_dim] or [N, num_ws, w_dim], meta dict).

    With G: the shape must fit G (a w [w_dim] is broadcast to w+), and a fingerprint that is not
    G's warns with FingerprintMismatchWarning.
    """
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise LatentError(f"{path.name} is not a latent file: it would need unpickling, which facegen refuses ({e}).") from None
    except Exception as e:
        raise LatentError(f"{path.name} is not a readable .npy/.npz latent file ({type(e).__name__}).") from None
    meta = {}
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if "ws" not in data.files:
                raise LatentError(f"{path.name} has no 'ws' array (found {data.files}).")
            try:
                ws = data["ws"]
                if "meta" in data.files:
                    meta = json.loads(str(data["meta"]))
            except ValueError as e:
                raise LatentError(f"{path.name} holds object arrays, which facegen refuses to unpickle ({e}).") from None
            except Exception as e:
                raise LatentError(f"{path.name} is corrupt ({type(e).__name__}: {e}).") from None
    else:
        ws = data
    return validate_latent(ws, G, meta, name=path.name, warn=warn), meta


def validate_latent(ws, G=None, meta: Optional[dict] = None, name: str = "latent", warn: bool = True) -> np.ndarray:
    ws = np.asarray(ws)
    if ws.dtype.kind not in "fi":
        raise LatentError(f"{name}: latents must be floating point numbers, got dtype {ws.dtype}.")
    if not np.all(np.isfinite(ws)):
        raise LatentError(f"{name}: latent contains NaN or infinite values.")
    ws = ws.astype(np.float32)
    if G is not None:
        if ws.ndim >= 1 and ws.shape[-1] != G.w_dim:
            raise LatentError(f"{name}: latent width {ws.shape[-1]} does not fit this generator (w_dim {G.w_dim}).")
        if ws.ndim == 1 or (ws.ndim == 2 and ws.shape[0] == 1 and G.num_ws != 1):
            ws = np.repeat(ws.reshape(1, -1), G.num_ws, axis=0)
        if ws.ndim not in (2, 3) or ws.shape[-2] != G.num_ws:
            raise LatentError(f"{name}: latent of shape {list(ws.shape)} does not fit this generator "
                              f"(expected [{G.num_ws}, {G.w_dim}] or [N, {G.num_ws}, {G.w_dim}]).")
        fp = (meta or {}).get("fingerprint")
        if warn and fp and fp != G.fingerprint:
            warnings.warn(f"{name} was made with generator {fp}, but the active generator is {G.fingerprint}: "
                          "the face will not be the same.", FingerprintMismatchWarning, stacklevel=3)
    elif ws.ndim not in (1, 2, 3):
        raise LatentError(f"{name}: latent of shape {list(ws.shape)} is not a w, w+ or batch of w+.")
    return ws

"""rosinality/stylegan2-pytorch checkpoints (``stylegan2-ffhq-config-f.pt`` and every ``.pt`` of that code) ->
facegen's StyleGAN2 :class:`~facegen.engine.networks.Generator`.

Most editing papers after 2020 (pSp, e4e, HyperStyle, PTI, StyleCLIP ...) ship their generator in the layout of
rosinality's re-implementation: ``torch.save`` of a dict whose ``g_ema`` is the state dict of its ``Generator``
(``convert_weight.py`` adds ``latent_avg``, the TF file's ``dlatent_avg``; ``train.py`` adds ``g``, ``d``,
optimiser states and ``args``, an ``argparse.Namespace``). pSp / e4e checkpoints carry the same generator as
``decoder.*`` inside their ``state_dict``. The networks are the same maths as NVIDIA's; only the names and a few
layouts differ, so conversion is a pure renaming (checked in ``tests/test_rosinality.py`` against outputs of
rosinality's own code, ``tests/fixtures/rosinality-tiny/``):

=================================================  ===============================================================
rosinality (``g_ema``)                             facegen / NVIDIA
=================================================  ===============================================================
``style.0`` PixelNorm, ``style.N`` EqualLinear     ``mapping`` normalises z, ``mapping.fc{N-1}``: the same weight
(lr_mul 0.01: scale lr_mul/sqrt(in), bias x        and bias (FullyConnectedLayer has the same gains), lrelu with
lr_mul, fused lrelu slope 0.2 gain sqrt 2)         slope 0.2 and gain sqrt 2
``input.input`` [1, C, 4, 4]                       ``synthesis.b4.const`` [C, 4, 4]
``conv1`` / ``convs.{2i}`` / ``convs.{2i+1}``      ``b4.conv1`` / ``b{2^(i+3)}.conv0`` (up) / ``.conv1``:
  ``conv.weight`` [1, O, I, k, k]                    ``weight`` [O, I, k, k] (its 1/sqrt(fan in) scale cancels in
                                                     the demodulation; NVIDIA stores it unscaled too)
  ``conv.modulation.{weight,bias}``                  ``affine.{weight,bias}`` (bias init 1, scale 1/sqrt(w_dim))
  ``noise.weight`` [1]                               ``noise_strength`` []
  ``activate.bias``                                  ``bias`` (FusedLeakyReLU: lrelu(x + b, 0.2) x sqrt 2)
``to_rgb1`` / ``to_rgbs.i``                        ``b4.torgb`` / ``b{2^(i+3)}.torgb``; ``bias`` [1, 3, 1, 1] -> [3]
``noises.noise_{j}`` [1, 1, r, r]                  the ``noise_const`` [r, r] of synthesis layer j (0 = b4.conv1,
                                                     2k-5 and 2k-4 = conv0 / conv1 of the 2^k block)
``latent_avg`` [w] (or [num_ws, w] in e4e)         ``mapping.w_avg``
=================================================  ===============================================================

Upsampling is the same arrangement in both codes: a stride-2 transposed convolution with the unflipped weight,
then the [1, 3, 3, 1] blur x 4 with padding (1, 1); the skip path upsamples RGB with the same FIR (padding 2, 1).
The channel table (``channel_multiplier``: 2 for config-f) is read from the tensor shapes and expressed as
NVIDIA's ``min(channel_base // res, channel_max)``; a table that formula cannot express is refused.
The mapping's learning-rate multiplier is not stored in the file; rosinality's code always uses 0.01.
A checkpoint without ``latent_avg`` (``train.py`` snapshots) gets w_avg as the mean of the mapping of 10 000
seeded z, as rosinality's ``mean_latent`` and pSp compute it; ``G.meta["w_avg"]`` says so.

Files are read with ``torch.load(weights_only=True)``; the only global allowed besides tensors and plain
containers is ``argparse.Namespace`` (``train.py``'s ``args``). Anything else is refused before it runs.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Optional, Union

import torch

from facegen.engine.errors import UnsafePickleError, UnsupportedModelError
from facegen.engine.networks import Generator

LR_MLP = 0.01                       # rosinality's Generator(lr_mlp=0.01), never changed by its scripts
W_AVG_SAMPLES = 10_000              # pSp / e4e compute a missing latent_avg from 10 000 samples
_GEN_KEYS = ("g_ema", "g")


# ---------------------------------------------------------------------------
# Reading the file
# ---------------------------------------------------------------------------

def read_checkpoint(path: Union[str, Path]) -> dict:
    """``torch.load(path, weights_only=True)`` with ``argparse.Namespace`` allowed (nothing else). A file that
    needs another global raises :class:`UnsafePickleError` naming it; an unreadable file
    :class:`UnsupportedModelError`."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:          # noqa: BLE001 -- torch raises UnpicklingError, RuntimeError, zipfile errors ...
        msg = str(e)
        m = re.search(r"GLOBAL ([\w.]+)", msg)
        if m:
            raise UnsafePickleError(m.group(1), str(path)) from None
        raise UnsupportedModelError(f"{path} could not be read as a PyTorch checkpoint "
                                    f"({type(e).__name__}: {msg.splitlines()[0] if msg else ''}).") from None
    if not isinstance(obj, dict):
        raise UnsupportedModelError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict.")
    return obj


def generator_state(ckpt: dict, source: str = "checkpoint") -> tuple:
    """(rosinality generator state dict, latent_avg or None, where it came from) from a checkpoint dict:
    ``g_ema`` (else ``g``), or the ``decoder.*`` entries of a pSp / e4e ``state_dict``."""
    for key in _GEN_KEYS:
        if isinstance(ckpt.get(key), dict) and "input.input" in ckpt[key]:
            return ckpt[key], ckpt.get("latent_avg"), key
    sd = ckpt.get("state_dict")
    if isinstance(sd, dict) and "decoder.input.input" in sd:
        return {k[len("decoder."):]: v for k, v in sd.items() if k.startswith("decoder.")}, \
            ckpt.get("latent_avg"), "state_dict/decoder"
    raise UnsupportedModelError(
        f"{source} is not a rosinality StyleGAN2 checkpoint: no 'g_ema' generator state dict (nor a pSp / e4e "
        f"'state_dict' with 'decoder.*'); its keys are {sorted(map(str, ckpt))[:8]}.")


# ---------------------------------------------------------------------------
# The architecture, read from the tensor shapes
# ---------------------------------------------------------------------------

def _t(sd: dict, key: str, source: str) -> torch.Tensor:
    if key not in sd:
        raise UnsupportedModelError(f"{source}: the generator lacks tensor {key!r}.")
    v = sd[key]
    if not isinstance(v, torch.Tensor):
        raise UnsupportedModelError(f"{source}: {key!r} is a {type(v).__name__}, not a tensor.")
    return v.detach().to(torch.float32)


def _filter_taps(sd: dict, source: str) -> list:
    """The 1-D resampling filter from the stored 2-D blur kernel (outer(f, f) / sum^2 x 4)."""
    k = sd.get("convs.0.conv.blur.kernel")
    if k is None:
        return [1, 3, 3, 1]
    k = k.detach().double()
    f = k.sum(1) / k.sum()
    if not torch.allclose(torch.outer(f, f) * k.sum(), k, atol=1e-6):
        raise UnsupportedModelError(f"{source}: the blur kernel is not separable; facegen supports separable FIRs.")
    return [round(float(x), 8) for x in f / f.min()]


def architecture(sd: dict, source: str = "checkpoint") -> dict:
    """Generator kwargs (NVIDIA names) that rebuild the network of rosinality state dict `sd`."""
    n_mlp = sum(1 for k in sd if re.fullmatch(r"style\.\d+\.weight", k))
    n_rgb = sum(1 for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    if n_mlp == 0:
        raise UnsupportedModelError(f"{source}: no mapping layers (style.N.weight) in the generator.")
    style_dim = _t(sd, "style.1.weight", source).shape[1]
    size = 2 ** (n_rgb + 2)
    channels = {4: _t(sd, "conv1.conv.weight", source).shape[1]}
    for i in range(n_rgb):
        channels[2 ** (i + 3)] = _t(sd, f"convs.{2 * i}.conv.weight", source).shape[1]
    cmax = max(channels.values())
    candidates = [c * r for r, c in channels.items() if c < cmax] or [cmax * size]
    base = next((b for b in candidates if all(min(b // r, cmax) == c for r, c in channels.items())), None)
    if base is None:
        raise UnsupportedModelError(f"{source}: channels per resolution {channels} do not follow "
                                    "min(channel_base / res, channel_max); facegen cannot rebuild this generator.")
    return dict(z_dim=style_dim, c_dim=0, w_dim=style_dim, img_resolution=size, img_channels=3,
                mapping_kwargs=dict(num_layers=n_mlp, lr_multiplier=LR_MLP),
                synthesis_kwargs=dict(channel_base=base, channel_max=cmax, num_fp16_res=0, conv_clamp=None,
                                      architecture="skip", resample_filter=_filter_taps(sd, source)))


# ---------------------------------------------------------------------------
# Renaming
# ---------------------------------------------------------------------------

def _styled(sd: dict, src: str, dst: str, noise: str, source: str) -> dict:
    return {f"{dst}.weight": _t(sd, f"{src}.conv.weight", source)[0],
            f"{dst}.affine.weight": _t(sd, f"{src}.conv.modulation.weight", source),
            f"{dst}.affine.bias": _t(sd, f"{src}.conv.modulation.bias", source),
            f"{dst}.noise_strength": _t(sd, f"{src}.noise.weight", source).reshape(()),
            f"{dst}.bias": _t(sd, f"{src}.activate.bias", source),
            f"{dst}.noise_const": _t(sd, f"noises.{noise}", source)[0, 0]}


def _torgb(sd: dict, src: str, dst: str, source: str) -> dict:
    return {f"{dst}.weight": _t(sd, f"{src}.conv.weight", source)[0],
            f"{dst}.affine.weight": _t(sd, f"{src}.conv.modulation.weight", source),
            f"{dst}.affine.bias": _t(sd, f"{src}.conv.modulation.bias", source),
            f"{dst}.bias": _t(sd, f"{src}.bias", source).reshape(-1)}


def convert_state(G: Generator, sd: dict, w_avg: Optional[torch.Tensor], source: str = "checkpoint") -> dict:
    """rosinality state dict -> G's state dict (see the table in the module docstring)."""
    out = {"mapping.w_avg": w_avg if w_avg is not None else G.mapping.w_avg.detach().clone()}
    for i in range(G.mapping.num_layers):
        out[f"mapping.fc{i}.weight"] = _t(sd, f"style.{i + 1}.weight", source)
        out[f"mapping.fc{i}.bias"] = _t(sd, f"style.{i + 1}.bias", source)
    out["synthesis.b4.const"] = _t(sd, "input.input", source)[0]
    out.update(_styled(sd, "conv1", "synthesis.b4.conv1", "noise_0", source))
    out.update(_torgb(sd, "to_rgb1", "synthesis.b4.torgb", source))
    for i, res in enumerate(G.synthesis.block_resolutions[1:]):
        b = f"synthesis.b{res}"
        out.update(_styled(sd, f"convs.{2 * i}", f"{b}.conv0", f"noise_{2 * i + 1}", source))
        out.update(_styled(sd, f"convs.{2 * i + 1}", f"{b}.conv1", f"noise_{2 * i + 2}", source))
        out.update(_torgb(sd, f"to_rgbs.{i}", f"{b}.torgb", source))
    for k, v in G.state_dict().items():          # FIR buffers: the constructor's (checked against the file above)
        if k.endswith("resample_filter"):
            out[k] = v
    return out


def _load(G: Generator, state: dict, source: str) -> None:
    """Strict load: every tensor present, none extra, every shape right (else UnsupportedModelError)."""
    own = G.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise UnsupportedModelError(f"{source}: the generator does not convert cleanly (missing {missing[:4]}, "
                                    f"unexpected {unexpected[:4]}, wrong shapes {bad[:4]}).")
    G.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


@torch.no_grad()
def estimate_w_avg(G: Generator, n: int = W_AVG_SAMPLES, seed: int = 0) -> torch.Tensor:
    """Mean of the mapping over n seeded z ~ N(0, I) (for checkpoints without latent_avg)."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return G.mapping(z, None)[:, 0].mean(0)


def generator_from_checkpoint(ckpt: dict, source: str = "checkpoint") -> Generator:
    """A rosinality / pSp / e4e checkpoint dict -> Generator in eval mode, ``G.meta`` naming the format."""
    sd, latent_avg, key = generator_state(ckpt, source)
    G = Generator(**architecture(sd, source))
    w_avg = None
    if latent_avg is not None:
        la = torch.as_tensor(latent_avg).detach().to(torch.float32)
        w_avg = la.reshape(-1, G.w_dim).mean(0) if la.numel() % G.w_dim == 0 else None
        if w_avg is None:
            raise UnsupportedModelError(f"{source}: latent_avg has shape {list(la.shape)}, not [{G.w_dim}].")
    _load(G, convert_state(G, sd, w_avg, source), source)
    G.meta.update(format="rosinality-pt", source=source, checkpoint_key=key,
                  w_avg="latent_avg" if w_avg is not None else f"estimated: mean of {W_AVG_SAMPLES} mapped z")
    if w_avg is None:
        G.mapping.w_avg.copy_(estimate_w_avg(G))
    return G.eval()


def load_checkpoint(path: Union[str, Path]) -> Generator:
    """A rosinality ``.pt`` file (or a pSp / e4e checkpoint, for its decoder) -> Generator."""
    return generator_from_checkpoint(read_checkpoint(path), str(path))

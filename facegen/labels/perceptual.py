"""Perceptual losses that exist offline for any generator: image reconstruction distances for encoding.

Photo encoding (:mod:`facegen.features.encode`) and encoder training (:mod:`facegen.packs.encoder`)
need a distance between a target image and the generator's reconstruction that cares about what a
person sees, not only about pixels. The usual choice, LPIPS on VGG features, needs weights that
cannot be downloaded here, so facegen uses what every generator brings with it:

``"discriminator"`` -- the generator's own discriminator (:class:`DiscriminatorLoss`)
    The official StyleGAN2-ADA pickle carries ``D`` beside ``G_ema``; facegen's own generators keep
    ``discriminator.safetensors`` beside their weights (or in their pack). The activations after each
    residual block of D (every resolution from R down to 8 px) are taken *as LPIPS takes VGG's*:
    each spatial feature vector is unit-normalised across channels, the squared difference of target
    and reconstruction is summed over channels and averaged over positions, and the layers are
    averaged (uniform weights: no learned LPIPS heads exist for D). Identical images give exactly 0.
``"pixels"`` -- pixels and multi-scale SSIM (:class:`PixelLoss`)
    ``0.16 x L1 + 0.84 x (1 - MS-SSIM)`` (the mix of Zhao et al., "Loss functions for image restoration
    with neural networks", 2017). :func:`ms_ssim` follows Wang, Simoncelli & Bovik (2003): an 11-tap
    Gaussian window (sigma 1.5; 7 taps below 176 px so that 32 px images keep 3 scales), the contrast-
    structure term at every scale and luminance at the coarsest, 2x average pooling between scales, the
    paper's five exponents renormalised when fewer (3-5) scales fit the image.
``"labeller"`` -- the features of the pack's labeller (:class:`LabellerLoss`)
    When the labeller a pack was built with is differentiable (a torch module with ``prepare_tensor``,
    whose forward returns ``(features, heads)``, as the face world's predictor), the mean squared
    difference of its features (/ 10, about their mean square on a face). The default of ``mini``.

:func:`perceptual_for` chooses: the pack's ``perceptual`` field when there is a pack; without one, the
discriminator when the generator's file carries one, else pixels + MS-SSIM. The chosen loss says what
it is in ``.note`` (shown by the app). Every loss takes images in the generator's range [-1, 1],
``[N, 3, H, W]``, is differentiable in the first argument, and returns one value per image ``[N]``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from facegen.engine.errors import InputError, ModelNotFoundError, UnsupportedModelError

KINDS = ("labeller", "discriminator", "pixels")
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)      # Wang et al. 2003, Table 1 (5 scales)
DISCRIMINATOR_FILE = "discriminator.safetensors"


# ---------------------------------------------------------------------------
# 1. Multi-scale SSIM
# ---------------------------------------------------------------------------

def gaussian_window(size: int, sigma: float = 1.5, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps [size]."""
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-x.square() / (2 * sigma * sigma))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of every channel of x [N, C, H, W]."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ms_ssim_plan(side: int) -> tuple:
    """(window taps, number of scales) for images `side` px wide: 11 taps and up to 5 scales from 176 px,
    7 taps below; as many scales as keep the coarsest image at least one window wide."""
    if side < 7:
        raise InputError(f"MS-SSIM needs images of at least 7 x 7 pixels (got {side}).")
    win = 11 if side >= 176 else 7
    levels = max(1, min(5, int(math.floor(math.log2(side / win))) + 1))
    return win, levels


def ms_ssim(a: torch.Tensor, b: torch.Tensor, value_range: tuple = (-1.0, 1.0), levels: Optional[int] = None,
            win: Optional[int] = None, sigma: float = 1.5) -> torch.Tensor:
    """Multi-scale SSIM of images a, b [N, C, H, W] with values in `value_range` -> [N] in [0, 1] (1 =
    identical). Intensities are mapped to [0, 1] first: SSIM's luminance term assumes non-negative values.
    Differentiable; negative contrast-structure terms are clamped to a small positive value (as common
    implementations do) so the weighted product stays defined."""
    if a.shape != b.shape or a.ndim != 4:
        raise InputError(f"MS-SSIM compares two [N, C, H, W] batches of one shape (got {list(a.shape)} and "
                         f"{list(b.shape)}).")
    w0, l0 = ms_ssim_plan(min(a.shape[-2:]))
    win, levels = win or w0, levels or l0
    weights = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=torch.float32, device=a.device)
    weights = weights / weights.sum()
    g = gaussian_window(win, sigma, a.device)
    c1, c2 = 0.01 ** 2, 0.03 ** 2                             # K1, K2 of the paper, dynamic range 1
    lo, hi = value_range
    a, b = (a.float() - lo) / (hi - lo), (b.float() - lo) / (hi - lo)
    terms = []
    for level in range(levels):
        if min(a.shape[-2:]) < win:
            raise InputError(f"MS-SSIM with {levels} scales needs images of at least {win * 2 ** (levels - 1)} px.")
        mu_a, mu_b = _blur(a, g), _blur(b, g)
        s_aa = _blur(a * a, g) - mu_a.square()
        s_bb = _blur(b * b, g) - mu_b.square()
        s_ab = _blur(a * b, g) - mu_a * mu_b
        cs = (2 * s_ab + c2) / (s_aa + s_bb + c2)
        if level == levels - 1:
            lum = (2 * mu_a * mu_b + c1) / (mu_a.square() + mu_b.square() + c1)
            terms.append((lum * cs).mean((-2, -1)))          # [N, C] full SSIM at the coarsest scale
        else:
            terms.append(cs.mean((-2, -1)))
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    t = torch.stack(terms, 0).clamp_min(1e-6)                # [levels, N, C]
    return torch.exp((weights.view(-1, 1, 1) * t.log()).sum(0)).mean(1)


# ---------------------------------------------------------------------------
# 2. The losses
# ---------------------------------------------------------------------------

class Perceptual:
    """A reconstruction distance. ``target(img)`` precomputes what the target contributes (once per
    image); ``loss(img, state) -> [N]``. ``kind`` is one of :data:`KINDS`, ``note`` says it for people."""

    kind = ""
    note = ""

    def target(self, img: torch.Tensor):
        return img.detach()

    def loss(self, img: torch.Tensor, state) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(img, self.target(target))


class PixelLoss(Perceptual):
    """``l1_weight x mean |a - b| + ssim_weight x (1 - MS-SSIM(a, b))`` per image (images in [-1, 1])."""

    kind = "pixels"

    def __init__(self, l1_weight: float = 0.16, ssim_weight: float = 0.84, max_side: int = 256):
        self.l1_weight, self.ssim_weight, self.max_side = float(l1_weight), float(ssim_weight), int(max_side)
        self.note = "pixels (L1) + multi-scale SSIM (MS-SSIM)"

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(self.max_side, self.max_side), mode="area") if x.shape[-1] > self.max_side else x

    def target(self, img):
        return self._fit(img.detach())

    def loss(self, img, state):
        img = self._fit(img)
        out = self.l1_weight * (img - state).abs().mean((1, 2, 3))
        if self.ssim_weight:
            out = out + self.ssim_weight * (1 - ms_ssim(img, state))
        return out


class DiscriminatorLoss(Perceptual):
    """LPIPS-style distance in the residual-block activations of a StyleGAN2 discriminator (see the module
    docstring): per block, features unit-normalised over channels, squared difference summed over
    channels, averaged over positions; blocks averaged."""

    kind = "discriminator"

    def __init__(self, D: torch.nn.Module, where: str = "", min_res: int = 8):
        self.D = D.eval().requires_grad_(False)
        self.blocks = [r for r in D.block_resolutions if r >= min_res] or list(D.block_resolutions[:1])
        self.note = f"the generator's own discriminator features ({len(self.blocks)} blocks{', ' + where if where else ''})"

    def features(self, img: torch.Tensor) -> list:
        """img [N, 3, R, R] in [-1, 1] -> unit-normalised activations of each block in ``self.blocks``."""
        R = self.D.img_resolution
        if img.shape[-1] != R or img.shape[-2] != R:
            img = F.interpolate(img, size=(R, R), mode="area" if img.shape[-1] > R else "bilinear",
                                **({} if img.shape[-1] > R else {"align_corners": False}))
        feats, x = [], None
        for res in self.D.block_resolutions:
            x = getattr(self.D, f"b{res}")(x, img)
            if res in self.blocks:
                feats.append(x / (x.square().sum(1, keepdim=True) + 1e-10).sqrt())
            if res == self.blocks[-1]:
                break
        return feats

    def target(self, img):
        with torch.no_grad():
            return [f.detach() for f in self.features(img)]

    def loss(self, img, state):
        fs = self.features(img)
        return torch.stack([(f - t).square().sum(1).mean((1, 2)) for f, t in zip(fs, state)]).mean(0)


def differentiable_labeller(lab) -> bool:
    """Does `lab` offer the torch path :class:`LabellerLoss` needs (a module, ``prepare_tensor``, forward ->
    (features, ...))?"""
    return isinstance(lab, torch.nn.Module) and callable(getattr(lab, "prepare_tensor", None))


class LabellerLoss(Perceptual):
    """Mean squared difference of a differentiable labeller's features, / ``scale`` (about the features'
    mean square on a face, so the term is O(1) for unrelated faces). The perceptual term of ``mini``."""

    kind = "labeller"

    def __init__(self, labeller, scale: float = 10.0, name: str = ""):
        if not differentiable_labeller(labeller):
            raise UnsupportedModelError(f"The labeller '{name or getattr(labeller, 'name', '?')}' has no "
                                        "differentiable torch path; use the discriminator or pixel loss.")
        self.P = labeller.eval()
        self.scale = float(scale)
        self.note = f"the '{name or getattr(labeller, 'name', 'pack')}' labeller's features"

    def features(self, img: torch.Tensor) -> torch.Tensor:
        self.P.eval()
        return self.P(self.P.prepare_tensor(img, (-1.0, 1.0)))[0]

    def target(self, img):
        with torch.no_grad():
            return self.features(img)

    def loss(self, img, state):
        return (self.features(img) - state).square().mean(1) / self.scale


# ---------------------------------------------------------------------------
# 3. Finding a generator's discriminator
# ---------------------------------------------------------------------------

def discriminator_from_state(state: dict, resolution: int, conv_clamp=None, mbstd_group_size: int = 4, c_dim: int = 0,
                             where: str = "state dict") -> torch.nn.Module:
    """A :class:`facegen.engine.discriminator.Discriminator` holding `state` (facegen's layout); the channel plan
    (``min(channel_base // res, channel_max)``) is read back from the weight shapes."""
    from facegen.engine.discriminator import Discriminator
    R = int(resolution)
    blocks = [2 ** i for i in range(int(math.log2(R)), 2, -1)]
    try:
        ch = {r: int(state[f"b{r}.conv0.weight"].shape[0]) for r in blocks}
        ch[4] = int(state["conv.weight"].shape[0])
    except KeyError as e:
        raise UnsupportedModelError(f"{where} is not a {R} px StyleGAN2 discriminator (no {e}).") from None
    cmax = max(ch.values())
    base = ch[R] * R if ch[R] < cmax else cmax * R
    if any(min(base // r, cmax) != c for r, c in ch.items()):
        raise UnsupportedModelError(f"{where}: discriminator channels {ch} follow no StyleGAN2 channel plan.")
    D = Discriminator(c_dim=c_dim, img_resolution=R, channel_base=base, channel_max=cmax, conv_clamp=conv_clamp,
                      mbstd_group_size=mbstd_group_size)
    try:
        D.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UnsupportedModelError(f"{where} does not hold a discriminator facegen can run ({e}).") from None
    return D


def discriminator_from_ada_pickle(path) -> Optional[torch.nn.Module]:
    """The ``D`` of a StyleGAN2-ADA / StyleGAN3-codebase training pickle (read with the allow-list
    unpickler, nothing in it runs), or None when the pickle carries none (e.g. a bare G_ema or a TF pickle)."""
    from facegen.engine.safe_pickle import PersistentObject, safe_load
    with open(path, "rb") as f:
        obj = safe_load(f)
    net = obj.get("D") if isinstance(obj, dict) else None
    if not isinstance(net, PersistentObject) or net.class_name != "Discriminator":
        return None
    kw = dict(net.state.get("_init_kwargs") or {})
    if kw.get("architecture", "resnet") != "resnet":
        raise UnsupportedModelError(f"{path}: the discriminator's architecture is '{kw['architecture']}'; facegen "
                                    "runs the residual (resnet) StyleGAN2 discriminator.")
    rename = {"b4.conv.": "conv.", "b4.fc.": "fc.", "b4.out.": "out."}
    state = {}
    for k, v in net.tensors().items():
        for old, new in rename.items():
            if k.startswith(old):
                k = new + k[len(old):]
        state[k] = v.detach().float()
    mbstd = (kw.get("epilogue_kwargs") or {}).get("mbstd_group_size", 4)
    return discriminator_from_state(state, int(kw.get("img_resolution", 0)), conv_clamp=kw.get("conv_clamp"),
                                    mbstd_group_size=mbstd, c_dim=int(kw.get("c_dim", 0)), where=str(path))


def discriminator_file(G, pack=None) -> Optional[Path]:
    """Where G's discriminator lives: the pack's ``discriminator`` component, the pickle G came from (when
    it is an ADA-format pickle), or ``discriminator.safetensors`` beside a Hub-native folder; else None."""
    if pack is not None and pack.has("discriminator"):
        return pack.path("discriminator")
    src = G.meta.get("source")
    if not src:
        return None
    p = Path(str(src))
    if p.is_dir() and (p / DISCRIMINATOR_FILE).is_file():
        return p / DISCRIMINATOR_FILE
    if p.is_file() and p.suffix == ".pkl" and G.meta.get("format") == "stylegan2-ada-pkl":
        return p
    return None


_D_CACHE: dict = {}


def load_discriminator(G, pack=None, device=None) -> Optional[torch.nn.Module]:
    """G's discriminator (see :func:`discriminator_file`), frozen, on `device`; None when G has none.
    Cached per file and device."""
    path = discriminator_file(G, pack)
    if path is None:
        return None
    key = (str(path), path.stat().st_mtime_ns, str(device or "cpu"))
    if key not in _D_CACHE:
        if path.suffix == ".pkl":
            D = discriminator_from_ada_pickle(path)
        else:
            from safetensors.torch import load_file
            try:
                state = load_file(str(path))
            except Exception as e:
                raise UnsupportedModelError(f"{path} is not a readable safetensors file ({e}).") from None
            D = discriminator_from_state(state, G.img_resolution, where=str(path))
        if D is not None and D.img_resolution != G.img_resolution:
            raise UnsupportedModelError(f"{path}: the discriminator looks at {D.img_resolution} px images but the "
                                        f"generator makes {G.img_resolution} px.")
        _D_CACHE[key] = D.to(device or "cpu").eval().requires_grad_(False) if D is not None else None
    return _D_CACHE[key]


# ---------------------------------------------------------------------------
# 4. Choosing one
# ---------------------------------------------------------------------------

def perceptual_for(G, pack=None, kind: str = "auto", device=None) -> Perceptual:
    """The perceptual loss for encoding G's images: `kind` (labeller | discriminator | pixels), or "auto":
    the pack's ``perceptual`` field, without a pack the discriminator when G's file carries one, else
    pixels + MS-SSIM. A pack asking for what G lacks falls back the same way; ``.note`` says what was used."""
    if kind not in ("auto",) + KINDS:
        raise InputError(f"Unknown perceptual loss '{kind}': use auto, {', '.join(KINDS)}.")
    why = ""
    if kind == "auto":
        kind = pack.perceptual if pack is not None else "discriminator"
        why = "pack" if pack is not None else "no pack"
    if kind == "labeller":
        from facegen.labels.base import load_labeller
        name = pack.labeller if pack is not None else None
        if not name:
            raise InputError("The labeller perceptual loss needs a pack that names its labeller.")
        try:
            lab = load_labeller(name)
        except ModelNotFoundError as e:
            lab, why = None, f"labeller '{name}' unavailable: {e}"
        if lab is not None and differentiable_labeller(lab):
            if device is not None and torch.device(device).type != "cpu":
                import copy
                lab = copy.deepcopy(lab).to(device)
            lab.requires_grad_(False)
            return _noted(LabellerLoss(lab, name=name), why)
        kind = "discriminator"
        why = why if lab is None else f"labeller '{name}' is not differentiable"
    if kind == "discriminator":
        try:
            D = load_discriminator(G, pack, device)
        except (UnsupportedModelError, ModelNotFoundError, OSError) as e:
            D, why = None, f"discriminator unusable: {e}"
        if D is not None:
            return _noted(DiscriminatorLoss(D, where=_where(G, pack)), why)
        why = why if why.startswith("discriminator") else (why + "; " if why else "") + "the generator's file carries no discriminator"
    return _noted(PixelLoss(), why)


def _where(G, pack) -> str:
    p = discriminator_file(G, pack)
    return f"from {p.name}" if p is not None else ""


def _noted(loss: Perceptual, why: str) -> Perceptual:
    if why:
        loss.note = f"{loss.note} ({why})"
    return loss

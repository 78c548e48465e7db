"""The e4e photo encoder as a pack's ``encoder`` component: network, checkpoint loader, folder format.

e4e (Tov et al., "Designing an Encoder for StyleGAN Image Manipulation", SIGGRAPH 2021; published as
``e4e_ffhq_encode.pt``, on the Hub as ``public-data/e4e``) maps an FFHQ-aligned face to a w+ latent of its
StyleGAN2 decoder in one forward pass. Written here from the paper and the checkpoint layout (the official code
is a reference for numbers only: ``tests/fixtures/e4e-tiny/`` holds outputs it computed); every module name
below is the checkpoint's, so its state dict loads key for key.

Network (:class:`E4EEncoder`, the ``Encoder4Editing`` of pSp's code over an IR-SE50 backbone)
-------------------------------------------------------------------------------------------
1. ``input_layer``: 3x3 conv (no bias) -> BatchNorm -> PReLU.
2. ``body``: bottleneck IR-SE units in four stages (IR-SE50: 3, 4, 14, 3 units of width 64, 128, 256, 512);
   the first unit of every stage has stride 2. A unit: shortcut = the input subsampled (same width) or a
   strided 1x1 conv + BatchNorm; residual = BatchNorm -> 3x3 conv -> PReLU -> 3x3 conv (stride) -> BatchNorm ->
   squeeze-excitation (channel mean -> 1x1 conv to C/16 -> ReLU -> 1x1 conv -> sigmoid, scaling the channels);
   out = residual + shortcut.
3. Feature pyramid: c1, c2, c3 = the outputs of stages 2, 3 and 4; p2 = bilinear(c3 to c2's size, corners
   aligned) + ``latlayer1``(c2); p1 = bilinear(p2 to c1's size) + ``latlayer2``(c1) (1x1 convs with bias).
4. ``styles.i`` (map2style, "GradualStyleBlock"): stride-2 3x3 convs with bias, each followed by LeakyReLU with
   slope 0.01, down to 1x1, then an equalised linear layer (weight x 1/sqrt(in), bias x 1, no activation).
5. w+: w0 = styles.0(c3) for every layer, plus a delta per layer i >= 1: styles.i(c3) for i < 3 (coarse),
   styles.i(p2) for 3 <= i < 7 (middle), styles.i(p1) for i >= 7 (fine). e4e then adds ``latent_avg``:
   w+ = latent_avg + [w0, w0 + d1, ..., w0 + d_{n-1}].

Input: an aligned face in [-1, 1] at ``input_size`` (e4e: 256; images of another size are resized, by area
averaging when shrinking -- e4e's own transform is PIL's bilinear resize). The decoder of the checkpoint is a
rosinality generator (:mod:`facegen.engine.rosinality` loads it, also via ``load_generator(e4e.pt)``).

Checkpoint: ``torch.load(weights_only=True)`` (argparse.Namespace is the only extra global allowed) of
``{"state_dict": {"encoder.*", "decoder.*"}, "opts": dict, "latent_avg": [num_ws, w_dim]}`` as e4e's training
coach writes it; a flat dict of ``encoder.*`` keys is read too. Only ``opts["encoder_type"] ==
"Encoder4Editing"`` is accepted (pSp's GradualStyleEncoder computes every style independently: refused).
Folder (what ``python -m facegen pack import-encoder --format e4e`` writes, read by
:func:`facegen.packs.encoder.load_encoder`): ``config.json`` (``_class_name: E4EEncoder``, the unit table) +
``model.safetensors`` (the encoder's tensors and ``latent_avg``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from facegen.engine.errors import UnsupportedModelError

CLASS_NAME = "E4EEncoder"
FORMAT_VERSION = 1
COARSE, MIDDLE = 3, 7               # style layers below COARSE read c3, below MIDDLE p2, the rest p1
INPUT_SIZE = 256                    # e4e's transform: Resize((256, 256))


# ---------------------------------------------------------------------------
# 1. Building blocks (module names are the checkpoint's)
# ---------------------------------------------------------------------------

class Subsample(nn.Module):
    """The identity shortcut of a strided unit (e4e: MaxPool2d(1, stride), i.e. every stride-th pixel)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(relu(fc1(mean over pixels of x)))) with 1x1 convs without bias."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x):
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class IRSEUnit(nn.Module):
    """Bottleneck IR-SE unit: residual(x) + shortcut(x) (see the module docstring)."""

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = Subsample(stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(nn.BatchNorm2d(in_channels),
                                       nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
                                       nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth),
                                       SqueezeExcite(depth))

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


class EqualLinear(nn.Module):
    """y = x (W / sqrt(in))^T + b (StyleGAN's equalised learning rate, multiplier 1)."""

    def __init__(self, features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(features, features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.scale = 1 / math.sqrt(features)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


class MapToStyle(nn.Module):
    """map2style head: `n_convs` stride-2 3x3 convs + LeakyReLU(0.01), then EqualLinear on the 1x1 result."""

    def __init__(self, in_channels: int, w_dim: int, n_convs: int):
        super().__init__()
        layers = []
        for i in range(n_convs):
            layers += [nn.Conv2d(in_channels if i == 0 else w_dim, w_dim, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(w_dim)
        self.w_dim = w_dim

    def forward(self, x):
        x = self.convs(x)
        if x.shape[2:] != (1, 1):
            raise UnsupportedModelError(f"e4e head ends at {tuple(x.shape[2:])} pixels, not 1x1: the input image "
                                        "is too large for this encoder's heads.")
        return self.linear(x.reshape(-1, self.w_dim))


def _upsample_add(x, y):
    return F.interpolate(x, size=y.shape[2:], mode="bilinear", align_corners=True) + y


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    mode = dict(mode="area") if x.shape[-1] > size else dict(mode="bilinear", align_corners=False)
    return F.interpolate(x, size=(size, size), **mode)


# ---------------------------------------------------------------------------
# 2. The encoder
# ---------------------------------------------------------------------------

class E4EEncoder(nn.Module):
    """Aligned image [N, 3, S, S] in [-1, 1] -> w+ [N, num_ws, w_dim] = latent_avg + e4e's offsets.

    `units`: the body, one (in_channels, depth, stride) per unit; `head_convs`: conv count of every style head.
    """

    def __init__(self, units: Sequence[Sequence[int]], head_convs: Sequence[int], w_dim: int,
                 stem_channels: int = 64, input_size: int = INPUT_SIZE):
        super().__init__()
        units = [tuple(int(v) for v in u) for u in units]
        starts = [i for i, (_, _, s) in enumerate(units) if s > 1]
        if len(starts) != 4 or starts[0] != 0:
            raise UnsupportedModelError(f"e4e encoder body with {len(units)} units and stage starts {starts}: "
                                        "expected four stages (IR-SE50: 3, 4, 14, 3 units).")
        self.taps = (starts[2] - 1, starts[3] - 1, len(units) - 1)          # ends of stages 2, 3, 4 (c1, c2, c3)
        self.num_ws, self.w_dim, self.input_size = len(head_convs), int(w_dim), int(input_size)
        self.init_kwargs = dict(units=[list(u) for u in units], head_convs=[int(c) for c in head_convs],
                                w_dim=self.w_dim, stem_channels=int(stem_channels), input_size=self.input_size)
        self.input_layer = nn.Sequential(nn.Conv2d(3, stem_channels, 3, 1, 1, bias=False),
                                         nn.BatchNorm2d(stem_channels), nn.PReLU(stem_channels))
        self.body = nn.Sequential(*[IRSEUnit(*u) for u in units])
        c1, c2, c3 = (units[t][1] for t in self.taps)
        self.styles = nn.ModuleList([MapToStyle(c3, self.w_dim, n) for n in head_convs])
        self.latlayer1 = nn.Conv2d(c2, c3, 1)
        self.latlayer2 = nn.Conv2d(c1, c3, 1)
        self.register_buffer("latent_avg", torch.zeros(self.num_ws, self.w_dim))
        self.meta: dict = {}

    # -- the maths --------------------------------------------------------------------------------
    def offsets(self, x: torch.Tensor) -> torch.Tensor:
        """e4e's own output (before latent_avg): [N, num_ws, w_dim]."""
        x = self.input_layer(x)
        feats = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                feats[self.taps.index(i)] = x
        c1, c2, c3 = feats[0], feats[1], feats[2]
        w0 = self.styles[0](c3)
        out = [w0]
        features = c3
        for i in range(1, self.num_ws):
            if i == COARSE:
                features = p2 = _upsample_add(c3, self.latlayer1(c2))
            elif i == MIDDLE:
                features = _upsample_add(p2, self.latlayer2(c1))
            out.append(w0 + self.styles[i](features))
        return torch.stack(out, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (any size; resized to ``input_size``) -> w+."""
        return self.latent_avg + self.offsets(_resize(x, self.input_size))

    @property
    def w_avg(self) -> torch.Tensor:
        """The latent e4e starts from (per layer); its device is the encoder's."""
        return self.latent_avg

    @property
    def fingerprint(self) -> Optional[str]:
        return self.meta.get("generator_fingerprint")

    @property
    def description(self) -> str:
        return "the pack's e4e encoder (IR-SE50 + map2style heads, Tov et al. 2021)"

    # -- from the published checkpoint ------------------------------------------------------------
    @classmethod
    def from_state(cls, sd: dict, latent_avg, source: str = "checkpoint", input_size: int = INPUT_SIZE):
        """Build from an ``Encoder4Editing`` state dict (keys without the ``encoder.`` prefix): the unit table,
        head depths and widths are read from the tensor shapes."""
        def shape(k):
            if k not in sd:
                raise UnsupportedModelError(f"{source}: the e4e encoder lacks tensor {k!r}.")
            return tuple(sd[k].shape)
        units, i = [], 0
        while f"body.{i}.res_layer.1.weight" in sd:
            depth, cin = shape(f"body.{i}.res_layer.1.weight")[:2]
            stride = 2 if i == 0 or f"body.{i}.shortcut_layer.0.weight" in sd else 1
            units.append((cin, depth, stride))
            i += 1
        heads, j = [], 0
        while f"styles.{j}.linear.weight" in sd:
            heads.append(sum(1 for k in sd if k.startswith(f"styles.{j}.convs.") and k.endswith(".weight")))
            j += 1
        if not units or not heads:
            raise UnsupportedModelError(f"{source}: no e4e encoder (body.N / styles.N tensors) in the checkpoint.")
        w_dim = shape("styles.0.linear.weight")[0]
        E = cls(units, heads, w_dim, stem_channels=shape("input_layer.0.weight")[0], input_size=input_size)
        la = torch.as_tensor(latent_avg, dtype=torch.float32)
        if la.numel() == w_dim:
            la = la.reshape(1, w_dim).repeat(E.num_ws, 1)
        if tuple(la.shape) != (E.num_ws, w_dim):
            raise UnsupportedModelError(f"{source}: latent_avg has shape {list(la.shape)}, expected "
                                        f"[{E.num_ws}, {w_dim}] or [{w_dim}].")
        state = {k: v for k, v in sd.items()}
        state["latent_avg"] = la
        E._load(state, source)
        return E.eval()

    def _load(self, state: dict, source: str) -> None:
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or bad:
            raise UnsupportedModelError(f"{source}: not an Encoder4Editing state dict (missing {missing[:4]}, "
                                        f"unexpected {unexpected[:4]}, wrong shapes {bad[:4]}).")
        self.load_state_dict({k: torch.as_tensor(v).to(own[k].dtype) for k, v in state.items()})

    # -- facegen's folder -------------------------------------------------------------------------
    def save_pretrained(self, folder, **meta) -> Path:
        from facegen.engine.folder import write_folder
        self.meta.update(meta)
        return write_folder(folder, CLASS_NAME, self.state_dict(), {**self.init_kwargs, "meta": self.meta},
                            FORMAT_VERSION, metadata={"generator_fingerprint": str(self.fingerprint)})

    @classmethod
    def from_pretrained(cls, folder) -> "E4EEncoder":
        from facegen.engine.folder import read_folder
        folder = Path(folder)
        cfg, state = read_folder(folder, CLASS_NAME, "e4e encoder",
                                 f"python -m facegen pack import-encoder --format e4e FILE --model MODEL --out PACK",
                                 FORMAT_VERSION)
        try:
            E = cls(**{k: cfg[k] for k in ("units", "head_convs", "w_dim", "stem_channels", "input_size")})
        except KeyError as e:
            raise UnsupportedModelError(f"{folder}/config.json lacks {e}.") from None
        E._load(state, str(folder))
        E.meta = dict(cfg.get("meta") or {})
        E.meta["source"] = str(folder)
        return E.eval()


# ---------------------------------------------------------------------------
# 3. Reading e4e_ffhq_encode.pt
# ---------------------------------------------------------------------------

def encoder_state(ckpt: dict, source: str = "checkpoint") -> dict:
    """The ``encoder.*`` tensors of an e4e checkpoint dict, prefix removed (``state_dict`` or top level)."""
    opts = ckpt.get("opts")
    opts = vars(opts) if hasattr(opts, "__dict__") and not isinstance(opts, dict) else (opts or {})
    kind = opts.get("encoder_type", "Encoder4Editing")
    if kind != "Encoder4Editing":
        raise UnsupportedModelError(f"{source} holds a {kind!r} encoder; facegen reads e4e's Encoder4Editing only.")
    sd = ckpt.get("state_dict", ckpt)
    enc = {k[len("encoder."):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith("encoder.")}
    if not enc:
        raise UnsupportedModelError(f"{source} is not an e4e checkpoint: no 'encoder.*' tensors "
                                    f"(keys: {sorted(map(str, ckpt))[:8]}).")
    if "latent_avg" not in ckpt:
        raise UnsupportedModelError(f"{source} has no 'latent_avg': e4e adds it to every output, so the encoder "
                                    "cannot be used without it.")
    return enc


def from_checkpoint(ckpt: Union[dict, str, Path], input_size: int = INPUT_SIZE) -> E4EEncoder:
    """An e4e checkpoint (a path, read with ``weights_only=True``, or its dict) -> E4EEncoder in eval mode."""
    from facegen.engine.rosinality import read_checkpoint
    source = "checkpoint"
    if not isinstance(ckpt, dict):
        source = str(ckpt)
        ckpt = read_checkpoint(ckpt)
    E = E4EEncoder.from_state(encoder_state(ckpt, source), ckpt["latent_avg"], source, input_size)
    E.meta.update(format="e4e", checkpoint=Path(source).name)
    return E


@torch.no_grad()
def decoder_difference(ckpt: dict, G, source: str = "checkpoint") -> Optional[float]:
    """How far G is from the checkpoint's own decoder: the largest absolute difference over their parameters
    (0.0 for the same network, ``inf`` for another architecture), or None when the checkpoint carries no
    decoder. Buffers (noise maps, w_avg) are left out: they do not change what a latent means."""
    from facegen.engine.rosinality import generator_from_checkpoint
    try:
        D = generator_from_checkpoint(ckpt, source)
    except UnsupportedModelError:
        return None
    own, theirs = dict(G.named_parameters()), dict(D.named_parameters())
    if set(own) != set(theirs) or any(tuple(own[k].shape) != tuple(theirs[k].shape) for k in own):
        return float("inf")
    return max(float((own[k].detach().cpu().float() - theirs[k]).abs().max()) for k in own)

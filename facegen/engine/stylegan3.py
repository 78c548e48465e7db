"""StyleGAN3 generators (configs T and R), written from the paper in plain PyTorch.

A clean-room statement of "Alias-Free Generative Adversarial Networks" (Karras et al., 2021) in the
parameter layout of the official StyleGAN3 release, so that its state dicts load key for key (strict)
and its network pickles convert without running them (:mod:`facegen.engine.loaders`). The signal
maths lives in :mod:`facegen.engine.stylegan3_ops`.

The idea: every feature map is a band-limited continuous signal sampled on a grid. The synthesis
network starts from Fourier features (sinusoids with fixed random frequencies, turned and shifted by a
similarity transform that the first w predicts) and each layer does a modulated convolution and a
*filtered* leaky ReLU: upsample, nonlinearity, low-pass, downsample, so that no frequency above the
layer's cutoff is created or aliased. The cutoffs grow geometrically from 2 to img_res/2 over
``num_layers`` layers (the last ``num_critical`` are critically sampled); every layer keeps a 10-pixel
margin that the last layers crop. The result is translation (T) or rotation (R) equivariant: moving
the input's transform moves the image.

* **T** (``stylegan3-t``): 3x3 modulated convolutions, separable Kaiser-windowed sinc filters.
* **R** (``stylegan3-r``): 1x1 convolutions (``conv_kernel=1``) and radially symmetric (jinc)
  down-filters (``use_radial_filters=True``) in every layer that is not critically sampled.

Interface: :class:`StyleGAN3Generator` offers what facegen uses of the StyleGAN2
:class:`~facegen.engine.networks.Generator` (``mapping``, ``synthesis``, ``num_ws``, ``z_dim``,
``w_dim``, ``c_dim``, ``img_resolution``, ``img_channels``, ``meta``, ``init_kwargs``,
``fingerprint``, ``save_pretrained``); ``synthesis(ws, noise_mode=...)`` accepts and ignores the noise
mode (StyleGAN3 has no noise inputs). ws[:, 0] drives the Fourier input, ws[:, 1 + i] layer i.
Translate / rotate the output: ``G.synthesis.input.set_transform(translate=(tx, ty), angle=deg)``
(or copy a 3x3 matrix into the buffer ``G.synthesis.input.transform``).
"""

from __future__ import annotations

import inspect
import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from facegen.engine.layers import FullyConnectedLayer
from facegen.engine.mapping import MappingNetwork
from facegen.engine.networks import PretrainedGenerator
from facegen.engine.stylegan3_ops import filtered_lrelu, lowpass_filter, modulated_conv2d

# ---------------------------------------------------------------------------
# The layer schedule: cutoffs, stopbands, sampling rates, sizes, channels
# ---------------------------------------------------------------------------


def layer_schedule(img_resolution: int, img_channels: int = 3, channel_base: int = 32768, channel_max: int = 512,
                   num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                   first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
                   margin_size: int = 10, num_fp16_res: int = 4) -> dict:
    """The per-layer design of the synthesis network (float64 numpy arrays of length num_layers + 1).

    Cutoff f_c and stopband f_t grow geometrically from the first layer's values to img_res/2 (and
    img_res/2 * last_stopband_rel), reached at layer num_layers - num_critical and kept from there on
    (the critically sampled layers). A layer's sampling rate is the smallest power of two >= 2 f_t
    (capped at img_res); its half transition width f_h = max(f_t, s/2) - f_c; its size adds a margin
    on each side (the last two have none); channels fall as 1 / f_c, capped at channel_max.
    """
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    use_fp16 = sampling_rates * (2 ** num_fp16_res) > img_resolution
    return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=sampling_rates, half_widths=half_widths,
                sizes=sizes, channels=channels, use_fp16=use_fp16)


def transform_matrix(translate: Sequence[float] = (0.0, 0.0), angle: float = 0.0) -> np.ndarray:
    """The 3x3 input transform (float64) that shows the image translated by ``translate`` (in image
    widths; +x moves the content right) and turned by ``angle`` degrees (counter-clockwise as
    displayed): the inverse of [[cos, sin, tx], [-sin, cos, ty], [0, 0, 1]] -- the convention of the
    published generate scripts, so the same numbers give the same image."""
    a = math.radians(float(angle))
    c, s = math.cos(a), math.sin(a)
    m = np.array([[c, s, float(translate[0])], [-s, c, float(translate[1])], [0.0, 0.0, 1.0]])
    return np.linalg.inv(m)


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------


class SynthesisInput(torch.nn.Module):
    """Fourier features: ``channels`` sinusoids on a ``size`` grid, turned and shifted per sample.

    The affine layer maps w to (r_c, r_s, t_x, t_y); normalised by |(r_c, r_s)| it is a rotation by
    atan2(r_s, r_c) after a translation by (t_x, t_y). Composed with the user ``transform`` buffer
    it moves the frequencies and phases; frequencies the transform pushes beyond the band are faded
    out (amplitude falls linearly from the bandwidth to half the sampling rate). The sinusoids are
    mixed by a learned [C, C] matrix (no bias, no activation).
    """

    def __init__(self, w_dim: int, channels: int, size, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels = w_dim, int(channels)
        self.size = np.broadcast_to(np.asarray(size), [2]).astype(np.int64)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        # Random frequencies uniform in the disc of radius `bandwidth`, random phases in [-0.5, 0.5)
        # cycles. (A fresh network only: published networks bring their own, which must be loaded.)
        angle = torch.rand([self.channels]) * (2 * np.pi)
        radius = torch.rand([self.channels]).sqrt() * self.bandwidth
        freqs = torch.stack([angle.cos(), angle.sin()], dim=1) * radius[:, None]
        self.weight = torch.nn.Parameter(torch.randn([self.channels, self.channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([self.channels]) - 0.5)

    def set_transform(self, translate: Sequence[float] = (0.0, 0.0), angle: float = 0.0):
        """Show the image translated by ``translate`` (image widths) and rotated by ``angle`` degrees."""
        m = torch.as_tensor(transform_matrix(translate, angle).astype(np.float32))
        self.transform.copy_(m.to(self.transform.device))

    def forward(self, w: torch.Tensor, transform: Optional[torch.Tensor] = None) -> torch.Tensor:
        """w [N, w_dim] -> features [N, C, size, size]; ``transform`` ([3, 3] or [N, 3, 3]) replaces the
        buffer for this call only (nothing is stored, so concurrent callers do not see each other's)."""
        n = w.shape[0]
        transform = self.transform if transform is None else torch.as_tensor(transform, dtype=torch.float32,
                                                                               device=w.device)
        transforms = transform if transform.ndim == 3 else transform.unsqueeze(0)  # [1 or N, 3, 3]
        freqs = self.freqs.unsqueeze(0)                                              # [1, C, 2]
        phases = self.phases.unsqueeze(0)                                            # [1, C]
        t = self.affine(w)                                                           # [N, 4]
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).unsqueeze(0).repeat([n, 1, 1])          # rotation
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = torch.eye(3, device=w.device).unsqueeze(0).repeat([n, 1, 1])          # translation
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ transforms
        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        # Sample grid in units where the final image spans 1 (pixel centres).
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        grids = F.affine_grid(theta.unsqueeze(0), [1, 1, int(self.size[1]), int(self.size[0])], align_corners=False)
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)   # [N, H, W, C]
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (np.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)                                                # [N, C, H, W]

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={list(self.size)}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


class SynthesisLayer(torch.nn.Module):
    """Modulated conv (k x k; 1x1 for ToRGB) -> filtered leaky ReLU, between two sampling rates.

    The nonlinearity runs at ``tmp_sampling_rate`` = 2 x max(in, out) rate (``lrelu_upsampling``):
    up-filter with the input cutoff, leaky ReLU, down-filter with the output cutoff. Inputs are
    scaled by 1/sqrt(magnitude EMA), the running mean square of the layer input.
    """

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool,
                 in_channels: int, out_channels: int, in_size, out_size, in_sampling_rate: int,
                 out_sampling_rate: int, in_cutoff: float, out_cutoff: float, in_half_width: float,
                 out_half_width: float, conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                 use_radial_filters: bool = False, conv_clamp: Optional[float] = 256,
                 magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.w_dim, self.is_torgb, self.is_critically_sampled = w_dim, bool(is_torgb), bool(is_critically_sampled)
        self.use_fp16 = bool(use_fp16)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.in_size = np.broadcast_to(np.asarray(in_size), [2]).astype(np.int64)
        self.out_size = np.broadcast_to(np.asarray(out_size), [2]).astype(np.int64)
        self.in_sampling_rate, self.out_sampling_rate = int(in_sampling_rate), int(out_sampling_rate)
        self.tmp_sampling_rate = max(self.in_sampling_rate, self.out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff = float(in_cutoff), float(out_cutoff)
        self.in_half_width, self.out_half_width = float(in_half_width), float(out_half_width)
        self.conv_kernel = 1 if is_torgb else int(conv_kernel)
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, self.in_channels, bias_init=1)
        k = self.conv_kernel
        self.weight = torch.nn.Parameter(torch.randn([self.out_channels, self.in_channels, k, k]))
        self.bias = torch.nn.Parameter(torch.zeros([self.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        # Resampling filters: up to the nonlinearity's rate with the input cutoff, back down with the output's.
        self.up_factor = int(np.rint(self.tmp_sampling_rate / self.in_sampling_rate))
        self.down_factor = int(np.rint(self.tmp_sampling_rate / self.out_sampling_rate))
        assert self.in_sampling_rate * self.up_factor == self.tmp_sampling_rate
        assert self.out_sampling_rate * self.down_factor == self.tmp_sampling_rate
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not self.is_torgb else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not self.is_torgb else 1
        self.down_radial = bool(use_radial_filters) and not self.is_critically_sampled
        self.register_buffer("up_filter", lowpass_filter(self.up_taps, self.in_cutoff, self.in_half_width * 2,
                                                         self.tmp_sampling_rate))
        self.register_buffer("down_filter", lowpass_filter(self.down_taps, self.out_cutoff, self.out_half_width * 2,
                                                           self.tmp_sampling_rate, radial=self.down_radial))

        # Padding (at the upsampled rate) that makes the output exactly out_size:
        # out = (in_size + k - 1) * up + pad - (up_taps - 1) - (down_taps - 1), then every down-th sample.
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x: torch.Tensor, w: torch.Tensor, dtype: torch.dtype = torch.float32,
                update_emas: bool = False) -> torch.Tensor:
        assert x.shape[1:] == (self.in_channels, int(self.in_size[1]), int(self.in_size[0])), \
            (list(x.shape), self.in_channels, list(self.in_size))
        if update_emas:
            with torch.no_grad():
                ms = x.detach().to(torch.float32).square().mean()
                self.magnitude_ema.copy_(ms.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * (self.conv_kernel ** 2)))
        x = modulated_conv2d(x.to(dtype), self.weight, styles, padding=self.conv_kernel - 1,
                             demodulate=not self.is_torgb, input_gain=input_gain)
        gain = 1 if self.is_torgb else np.sqrt(2)
        slope = 1 if self.is_torgb else 0.2
        x = filtered_lrelu(x, self.up_filter, self.down_filter, self.bias, up=self.up_factor, down=self.down_factor,
                           padding=self.padding, gain=gain, slope=slope, clamp=self.conv_clamp)
        assert x.shape[1:] == (self.out_channels, int(self.out_size[1]), int(self.out_size[0])), list(x.shape)
        return x.to(dtype)

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}@{self.in_sampling_rate} ({list(self.in_size)}), "
                f"out={self.out_channels}@{self.out_sampling_rate} ({list(self.out_size)}), "
                f"cutoff {self.in_cutoff:.3g}->{self.out_cutoff:.3g}, k={self.conv_kernel}, "
                f"up={self.up_factor}, down={self.down_factor}{', radial' if self.down_radial else ''}"
                f"{', torgb' if self.is_torgb else ''}")


# ---------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------

_PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16,
               "fp16-all": torch.float16, "bf16-all": torch.bfloat16}


class SynthesisNetwork(torch.nn.Module):
    """w+ [N, num_ws, w_dim] -> image [N, C, R, R] in about [-1, 1]: Fourier input + num_layers + ToRGB."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = num_layers + 2
        self.num_layers, self.num_critical, self.margin_size = num_layers, num_critical, margin_size
        self.output_scale, self.num_fp16_res = output_scale, num_fp16_res
        s = layer_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                           first_cutoff, first_stopband, last_stopband_rel, margin_size, num_fp16_res)
        self.schedule = s
        self.input = SynthesisInput(w_dim=w_dim, channels=int(s["channels"][0]), size=int(s["sizes"][0]),
                                    sampling_rate=s["sampling_rates"][0], bandwidth=s["cutoffs"][0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=(idx == num_layers), is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=bool(s["use_fp16"][idx]),
                in_channels=int(s["channels"][prev]), out_channels=int(s["channels"][idx]),
                in_size=int(s["sizes"][prev]), out_size=int(s["sizes"][idx]),
                in_sampling_rate=int(s["sampling_rates"][prev]), out_sampling_rate=int(s["sampling_rates"][idx]),
                in_cutoff=s["cutoffs"][prev], out_cutoff=s["cutoffs"][idx],
                in_half_width=s["half_widths"][prev], out_half_width=s["half_widths"][idx], **layer_kwargs)
            name = f"L{idx}_{layer.out_size[0]}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def layers(self) -> list:
        """The synthesis layers in order (ToRGB last); layer i reads ws[:, 1 + i]."""
        return [getattr(self, name) for name in self.layer_names]

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", precision: str = "fp32",
                force_fp32: bool = False, update_emas: bool = False, transform: Optional[torch.Tensor] = None,
                **ignored) -> torch.Tensor:
        """noise_mode is accepted and ignored (StyleGAN3 has no noise inputs), as are StyleGAN2-only
        options (fused_modconv, micro_batch). precision 'fp16'/'bf16' runs the layers the network marks
        as half precision in that type ('-all': every layer) -- on CUDA only, like the published code;
        on other devices everything runs in float32. ``transform`` ([3, 3] or [N, 3, 3], e.g. from
        :func:`transform_matrix`) turns / shifts this call's images without touching the stored buffer."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}, got {precision!r}")
        half = _PRECISIONS[precision] if ws.device.type == "cuda" and not force_fp32 else None
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0], transform)
        for layer, w in zip(self.layers(), ws[1:]):
            use_half = half is not None and (precision.endswith("-all") or layer.use_fp16)
            x = layer(x, w, dtype=half if use_half else torch.float32, update_emas=update_emas)
        x = x.to(torch.float32)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x


_MAPPING_NAMES = {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta"}


class StyleGAN3Generator(PretrainedGenerator, torch.nn.Module):
    """z, c -> w+ (mapping, truncation) -> image (alias-free synthesis).

    Constructor arguments are those of the official StyleGAN3 Generator (synthesis kwargs flat), so
    the kwargs stored in its pickles construct this class directly.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int = 3,
                 mapping_kwargs: Optional[dict] = None, **synthesis_kwargs):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        unknown = set(mapping_kwargs) - _MAPPING_NAMES
        if unknown:
            raise TypeError(f"unknown mapping kwargs {sorted(unknown)}")
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.init_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, mapping_kwargs=mapping_kwargs, **synthesis_kwargs)
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **{"num_layers": 2, "w_avg_beta": 0.998, **mapping_kwargs})
        self.meta: dict = {}          # name, source, licence ... filled by the loaders

    @property
    def architecture(self) -> str:
        """'stylegan3-t' (3x3 convs, separable filters), 'stylegan3-r' (1x1 convs, radial filters),
        or 'stylegan3' for any other mix."""
        k = self.init_kwargs.get("conv_kernel", 3)
        radial = bool(self.init_kwargs.get("use_radial_filters", False))
        return {(3, False): "stylegan3-t", (1, True): "stylegan3-r"}.get((k, radial), "stylegan3")

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False, **synthesis_kwargs) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_w_avg=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)


ARCHITECTURES = ("stylegan3-t", "stylegan3-r", "stylegan3")
_ARCH_DEFAULTS = {"stylegan3-t": {}, "stylegan3-r": {"conv_kernel": 1, "use_radial_filters": True}, "stylegan3": {}}


def _accepted_names() -> set:
    names = set()
    for fn in (StyleGAN3Generator.__init__, SynthesisNetwork.__init__, SynthesisLayer.__init__):
        names |= {p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    # Set by the network itself, per layer (not constructor options).
    return names - {"self", "is_torgb", "is_critically_sampled", "use_fp16", "in_channels",
                    "out_channels", "in_size", "out_size", "in_sampling_rate", "out_sampling_rate",
                    "in_cutoff", "out_cutoff", "in_half_width", "out_half_width"}


def from_config(config: dict) -> StyleGAN3Generator:
    """A generator from a Hub-native config.json: its ``architecture`` (one of ARCHITECTURES; R fills
    conv_kernel=1 and use_radial_filters=True unless given) and the constructor kwargs found in it.
    Raises TypeError / ValueError when the kwargs do not build, or contradict the architecture."""
    arch = config.get("architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"architecture {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    kwargs = {**_ARCH_DEFAULTS[arch], **{k: v for k, v in config.items() if k in _accepted_names()}}
    G = StyleGAN3Generator(**kwargs)
    if arch != "stylegan3" and G.architecture != arch:
        raise ValueError(f"architecture {arch!r} but conv_kernel={kwargs.get('conv_kernel', 3)}, "
                         f"use_radial_filters={kwargs.get('use_radial_filters', False)}")
    return G

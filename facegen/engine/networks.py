"""StyleGAN2 generator and discriminator, written from the maths in plain PyTorch.

This is a clean-room re-statement of the StyleGAN2 architecture (Karras et al.,
"Analyzing and Improving the Image Quality of StyleGAN", 2020) in the parameter
layout of the official StyleGAN2-ADA PyTorch release, so that its state dicts
load key for key. There are no custom CUDA ops and nothing to compile: every
operation is a stock ``torch`` call and runs on CPU, CUDA and MPS.

Reading order (as in the paper):

1. Low-level maths: bias + activation, the FIR resampling filter (upfirdn),
   convolution with resampling.
2. Modulated convolution -- the heart of StyleGAN2: a style scales the input
   channels of a conv weight, demodulation renormalises each output channel.
   Two equivalent formulations: *fused* (one grouped conv with a per-sample
   weight) and *non-fused* (scale activations, shared conv, rescale). The
   generator picks the faster one for the device and batch.
3. Layers: fully connected, synthesis layer (modconv + noise + bias + act),
   toRGB.
4. Networks: mapping z -> w, synthesis w+ -> image, the Generator that joins
   them with truncation, and the residual Discriminator used for training.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from facegen.engine.filters import downsample2d, setup_filter, upfirdn2d, upsample2d  # noqa: F401

# ---------------------------------------------------------------------------
# 1. Low-level maths
# ---------------------------------------------------------------------------

ACTIVATION_GAIN = {"linear": 1.0, "lrelu": math.sqrt(2.0), "relu": math.sqrt(2.0)}


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor], act: str = "linear",
             gain: Optional[float] = None, clamp: Optional[float] = None, dim: int = 1) -> torch.Tensor:
    """y = clamp(act(x + b) * gain).  Leaky ReLU uses slope 0.2 and default gain sqrt(2)."""
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape).to(x.dtype)
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    elif act == "relu":
        x = F.relu(x)
    elif act != "linear":
        raise ValueError(f"unknown activation {act!r}")
    gain = ACTIVATION_GAIN[act] if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Pixel norm: scale each vector to unit root-mean-square."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """Plain conv; flip_weight=False turns correlation into true convolution."""
    if not flip_weight:
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1,
                    down: int = 1, padding: int = 0, groups: int = 1, flip_weight: bool = True) -> torch.Tensor:
    """Convolution combined with FIR up/down-sampling, in the arrangement of the reference code.

    Upsampling: transposed conv with stride 2 followed by the FIR filter (gain 4).
    Downsampling: FIR filter followed by strided conv.
    """
    out_ch, in_per_group, kh, kw = w.shape
    fw = f.shape[-1] if f is not None else 1
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0, py1 = px0, px1
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0, py1 = px0, px1

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1])
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up * up)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1])
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        # Transposed conv wants [in, out/groups, kh, kw].
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_per_group, out_ch // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up * up)
        if down > 1:
            x = upfirdn2d(x, f, down=down)
        return x
    assert px0 == px1 and py0 == py1 and px0 >= 0
    return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)


# ---------------------------------------------------------------------------
# 2. Modulated convolution
# ---------------------------------------------------------------------------

def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: Optional[torch.Tensor] = None, up: int = 1, padding: int = 0,
                     resample_filter: Optional[torch.Tensor] = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True) -> torch.Tensor:
    """StyleGAN2 modulated convolution.

    w'_{ijk} = s_i * w_{ijk}                  (modulate input channel i by the style)
    w''_{ijk} = w'_{ijk} / sqrt(sum_{i,k} w'_{ijk}^2 + eps)   (demodulate output channel j)

    x: [N, I, H, W], weight: [O, I, kh, kw], styles: [N, I].
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    assert x.shape[1] == in_ch and styles.shape == (n, in_ch), (x.shape, styles.shape, weight.shape)

    # Half precision: pre-normalise to avoid overflow (same maths after demodulation).
    if x.dtype in (torch.float16, torch.bfloat16) and demodulate:
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)       # [N, O, I, kh, kw]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()         # [N, O]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)

    if not fused_modconv:
        # Scale activations instead of weights; one conv shared by the whole batch.
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding, flip_weight=flip_weight)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    # Fused: fold the batch into groups, one grouped conv with per-sample weights.
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=n, flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1 / sqrt(sum_{i,k} (s_i w_{oik})^2 + eps) = rsqrt(s^2 @ (sum_k w_{oik}^2)^T + eps), without ever
    forming the [N, O, I, kh, kw] per-sample weights."""
    return (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()


def modulated_conv2d_act(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                         noise: Optional[torch.Tensor], bias: torch.Tensor, gain: float,
                         clamp: Optional[float], up: int = 1, padding: int = 0,
                         resample_filter: Optional[torch.Tensor] = None, flip_weight: bool = True) -> torch.Tensor:
    """A whole synthesis layer, shared-weight formulation, with the tail fused into one pass:

        y = clamp(lrelu(conv(x * s) * d + noise + b) * g)
          = clamp(lrelu(conv(x * s) * (d g) + (noise + b) g))        (g > 0)

    computed as one ``addcmul`` and an in-place leaky ReLU. Same maths as
    ``bias_act(modulated_conv2d(..., fused_modconv=False), b)`` to float rounding.
    """
    n = x.shape[0]
    if x.dtype in (torch.float16, torch.bfloat16):  # keep the reference path for half precision
        y = modulated_conv2d(x, weight, styles, noise, up, padding, resample_filter, True, flip_weight, False)
        return bias_act(y, bias, "lrelu", gain, clamp)
    dg = demodulation_coefficients(weight, styles) * gain
    x = x * styles.reshape(n, -1, 1, 1)
    x = conv2d_resample(x, weight, f=resample_filter, up=up, padding=padding, flip_weight=flip_weight)
    nb = bias.reshape(1, -1, 1, 1) if noise is None else noise + bias.reshape(1, -1, 1, 1)
    x = torch.addcmul(nb * gain, x, dg.reshape(n, -1, 1, 1))
    x = F.leaky_relu_(x, 0.2) if not x.requires_grad else F.leaky_relu(x, 0.2)
    if clamp is not None and clamp >= 0:
        x = x.clamp_(-clamp, clamp) if not x.requires_grad else x.clamp(-clamp, clamp)
    return x


def modulated_conv2d_fused_act(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                               noise: Optional[torch.Tensor], bias: torch.Tensor, gain: float,
                               clamp: Optional[float], up: int = 1, padding: int = 0,
                               resample_filter: Optional[torch.Tensor] = None,
                               flip_weight: bool = True) -> torch.Tensor:
    """A whole synthesis layer, fused formulation (per-sample weights; at batch 1 one plain conv):

        y = clamp(lrelu(conv(x, w'') + noise + b) * g),      w''_{noik} = s_ni w_oik d_no
          = clamp(lrelu(conv(x, w'' g) + (noise + b) g))     (g > 0: leaky ReLU is positively homogeneous)

    The demodulation d (from :func:`demodulation_coefficients`) and the gain g are folded into the
    per-sample weights in one pass over the [O, I, kh, kw] weight; without resampling the bias goes into
    the conv itself. The noise add, leaky ReLU and clamp then run in place, so the conv output (plus the
    FIR output when upsampling) is the only activation-sized tensor the layer allocates -- on CPU each
    fresh large tensor also costs page faults. Same maths as ``bias_act(modulated_conv2d(..., fused_modconv=
    True), b)`` to float rounding; half precision and g <= 0 take that reference path.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if x.dtype != torch.float32 or gain <= 0:
        y = modulated_conv2d(x, weight, styles, noise, up, padding, resample_filter, True, flip_weight, True)
        return bias_act(y, bias, "lrelu", gain, clamp)
    coef = styles.reshape(n, 1, in_ch) * (demodulation_coefficients(weight, styles) * gain).reshape(n, out_ch, 1)
    w = (weight.unsqueeze(0) * coef.reshape(n, out_ch, in_ch, 1, 1)).reshape(n * out_ch, in_ch, kh, kw)
    if up == 1:
        w = w if flip_weight else w.flip([2, 3])
        y = F.conv2d(x.reshape(1, n * in_ch, *x.shape[2:]), w, (bias * gain).repeat(n), padding=padding, groups=n)
        y = y.reshape(n, out_ch, *y.shape[2:])
    else:
        y = conv2d_resample(x.reshape(1, n * in_ch, *x.shape[2:]), w, f=resample_filter, up=up, padding=padding,
                            groups=n, flip_weight=flip_weight)
        y = y.reshape(n, out_ch, *y.shape[2:])
        y = y + (bias * gain).reshape(1, -1, 1, 1) if y.requires_grad else y.add_((bias * gain).reshape(1, -1, 1, 1))
    if noise is not None:
        y = y + noise * gain if y.requires_grad else y.add_(noise, alpha=gain)
    y = F.leaky_relu(y, 0.2) if y.requires_grad else F.leaky_relu_(y, 0.2)
    if clamp is not None and clamp >= 0:
        y = y.clamp(-clamp, clamp) if y.requires_grad else y.clamp_(-clamp, clamp)
    return y


def modulated_1x1(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1x1 modulated conv without demodulation (toRGB): y_n = (W * s_n) x_n.

    The per-sample weights are tiny ([O, I], O = 3), so they are built directly. One sample: a plain
    1x1 conv (any memory format). Several: one batched matmul [O, I] @ [I, H*W] per sample -- the long
    pixel axis stays the fast axis (a pixels-major [H*W, I] @ [I, 3] product with a permuted copy of
    x costs up to 20x more on CPU)."""
    n, c, h, w = x.shape
    wn = (weight[:, :, 0, 0].unsqueeze(0) * styles.unsqueeze(1)).to(x.dtype)   # [N, O, I]
    if n == 1:
        return F.conv2d(x, wn[0, :, :, None, None])
    return torch.bmm(wn, x.reshape(n, c, h * w)).reshape(n, -1, h, w)


def choose_fused_modconv(device: torch.device, batch: int, training: bool, needs_grad: bool = False) -> bool:
    """Pick the faster modconv formulation (both give the same result to ~1e-6).

    CPU: at batch 1 in inference the fused formulation is one plain conv per layer with the
    modulation, demodulation and gain folded into its weight (as the reference code runs it) and the
    epilogue in place (:func:`modulated_conv2d_fused_act`); grouped convs are slow on CPU, so
    batches (and anything that needs gradients) take the shared-weight (non-fused) conv. Large
    generators reach batch 1 on CPU through :func:`choose_micro_batch`. CUDA: the fused grouped conv
    wins in inference, the non-fused one in training (as in the reference implementation).
    Measured with ``bench/generate.py --reference``.
    """
    if device.type == "cuda":
        return not training
    return batch == 1 and not training and not needs_grad


def choose_micro_batch(device: torch.device, resolution: int, needs_grad: bool) -> int:
    """Chunk size for synthesis (0 = whole batch). Measured with bench/generate.py (256 px, config-f
    width, 2 cores): per-image throughput on CPU is highest one sample at a time (1.85 images/s at
    batch 1 vs 1.36 at batch 16), as a batch's activations overflow the caches. Small generators
    (< 128 px, e.g. mini: 4 faces in 0.02 s whole vs 0.04 s one by one) fit the caches whole; GPUs
    and anything that needs gradients (training, encoder refinement) take the whole batch."""
    if device.type == "cpu" and not needs_grad and resolution >= 128:
        return 1
    return 0


# ---------------------------------------------------------------------------
# 3. Layers
# ---------------------------------------------------------------------------

class FullyConnectedLayer(torch.nn.Module):
    """y = act(x W^T * (lr_mult / sqrt(in)) + b * lr_mult)  (equalised learning rate)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(torch.nn.Module):
    """Equalised-lr conv with optional FIR resampling (discriminator and resnet skips)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: Optional[float] = None):
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = ACTIVATION_GAIN[activation]
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down,
                            padding=self.padding, flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class SynthesisLayer(torch.nn.Module):
    """x -> act(modconv(x, A(w)) + noise * strength + b)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: Optional[float] = None,
                 channels_last: bool = False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.use_noise, self.activation = resolution, up, use_noise, activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATION_GAIN[activation]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused_modconv: bool = True,
                gain: float = 1.0) -> torch.Tensor:
        assert noise_mode in ("random", "const", "none"), noise_mode
        assert x.shape[2] * self.up == self.resolution, (x.shape, self.resolution)
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        if fused_modconv and self.activation == "lrelu":
            return modulated_conv2d_fused_act(x, self.weight, styles, noise, self.bias, self.act_gain * gain, clamp,
                                              up=self.up, padding=self.padding, resample_filter=self.resample_filter,
                                              flip_weight=(self.up == 1))
        if not fused_modconv and self.activation == "lrelu":
            return modulated_conv2d_act(x, self.weight, styles, noise, self.bias, self.act_gain * gain, clamp,
                                        up=self.up, padding=self.padding, resample_filter=self.resample_filter,
                                        flip_weight=(self.up == 1))
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv)
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(torch.nn.Module):
    """1x1 modulated conv without demodulation: features -> RGB."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: Optional[float] = None, channels_last: bool = False):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        if (not fused_modconv or x.device.type == "cpu") and self.weight.shape[-1] == 1 and x.dtype == torch.float32:
            x = modulated_1x1(x, self.weight, styles)
        else:
            x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


# ---------------------------------------------------------------------------
# 4. Networks
# ---------------------------------------------------------------------------

class MappingNetwork(torch.nn.Module):
    """z (+ class embedding) -> w, broadcast to num_ws layers, with truncation toward w_avg."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: Optional[int], num_layers: int = 8,
                 embed_features: Optional[int] = None, layer_features: Optional[int] = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: Optional[float] = 0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], activation=activation,
                                                         lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor], truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, update_w_avg: bool = False) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            assert z is not None and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}]"
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            assert c is not None and c.shape[1] == self.c_dim, f"c must be [N, {self.c_dim}]"
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_w_avg and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            assert self.w_avg_beta is not None
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisBlock(torch.nn.Module):
    """One resolution: [const | 2x up-conv], conv, toRGB; 'skip' sums upsampled RGB outputs."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = None, use_fp16: bool = False, fp16_channels_last: bool = False,
                 chroma: bool = True, **layer_kwargs):
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"unknown synthesis architecture {architecture!r}")
        self.in_channels, self.w_dim, self.resolution = in_channels, w_dim, resolution
        self.img_channels, self.is_last, self.architecture, self.use_fp16 = img_channels, is_last, architecture, use_fp16
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution,
                                    conv_clamp=conv_clamp, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            # chroma=False: this block adds brightness only (one channel, the same to R, G and B), so
            # colour can come only from the blocks that have it (see SynthesisNetwork's chroma_res).
            self.torgb = ToRGBLayer(out_channels, img_channels if chroma else 1, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                dtype: torch.dtype = torch.float32, fused_modconv: Optional[bool] = None,
                noise_mode: str = "random"):
        assert ws.shape[1:] == (self.num_conv + self.num_torgb, self.w_dim), ws.shape
        w_iter = iter(ws.unbind(dim=1))
        n = ws.shape[0]
        if fused_modconv is None:
            fused_modconv = choose_fused_modconv(ws.device, n, self.training, torch.is_grad_enabled())
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([n, 1, 1, 1])
        else:
            assert x.shape[1:] == (self.in_channels, self.resolution // 2, self.resolution // 2), x.shape
            x = x.to(dtype)
        kw = dict(fused_modconv=fused_modconv, noise_mode=noise_mode)
        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), **kw)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), **kw)
            x = self.conv1(x, next(w_iter), gain=math.sqrt(0.5), **kw)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), **kw)
            x = self.conv1(x, next(w_iter), **kw)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
            if y.shape[1] != self.img_channels:
                y = y.expand(-1, self.img_channels, -1, -1)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(torch.nn.Module):
    """w+ [N, num_ws, w_dim] -> image [N, C, R, R] in about [-1, 1]."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, chroma_res: int = 0, **block_kwargs):
        """chroma_res > 0 (skip architecture; not in the official networks): blocks below this resolution
        write brightness only, so colour is decided by the styles of the blocks at and above it."""
        super().__init__()
        log2 = int(np.log2(img_resolution))
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        self.channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = self.channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_ch, self.channels[res], w_dim=w_dim, resolution=res, img_channels=img_channels,
                                   is_last=(res == img_resolution), use_fp16=(res >= fp16_resolution),
                                   chroma=(res >= chroma_res), **block_kwargs)
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", fused_modconv: Optional[bool] = None,
                precision: str = "fp32", return_blocks: bool = False, micro_batch: Optional[int] = None):
        """precision: 'fp32' everywhere, 'fp16'/'bf16' in the blocks the network marks as fp16 (CUDA),
        or 'fp16-all'/'bf16-all' in every block. RGB accumulates in fp32.
        micro_batch: run the batch in chunks of this size (None: choose for the device; 0: whole batch)."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        ws = ws.to(torch.float32)
        n = ws.shape[0]
        if micro_batch is None:
            micro_batch = choose_micro_batch(ws.device, self.img_resolution, self.training or torch.is_grad_enabled())
        if micro_batch and n > micro_batch and not return_blocks:
            # On CPU the activations of a whole batch overflow the caches: one sample at a time is
            # faster (and gives every sample exactly the pixels it gets alone).
            return torch.cat([self(ws[i:i + micro_batch], noise_mode=noise_mode, fused_modconv=fused_modconv,
                                   precision=precision, micro_batch=0) for i in range(0, n, micro_batch)])
        half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision.split("-")[0])
        if precision != "fp32" and half is None:
            raise ValueError(f"precision must be fp32, fp16, bf16, fp16-all or bf16-all, got {precision!r}")
        x = img = None
        w_idx = 0
        blocks = {}
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            use_half = half is not None and (precision.endswith("-all") or block.use_fp16)
            dtype = half if use_half else torch.float32
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), dtype=dtype,
                           fused_modconv=fused_modconv, noise_mode=noise_mode)
            w_idx += block.num_conv
            if return_blocks:
                blocks[res] = (x, img)
        return (img, blocks) if return_blocks else img


class PretrainedGenerator:
    """What every facegen generator (StyleGAN2 here, StyleGAN3 in :mod:`facegen.engine.stylegan3`) shares:
    Hub-native persistence (config.json with its ``architecture`` + model.safetensors) and a fingerprint
    computed once."""

    def save_pretrained(self, folder, **meta):
        """Write the Hub-native folder; load it with :func:`facegen.engine.loaders.load_generator`."""
        from facegen.engine.folder import save_pretrained
        return save_pretrained(self, folder, **meta)

    def push_to_hub(self, repo_id: str, **kwargs):
        from facegen.engine.hub import push_to_hub
        return push_to_hub(self, repo_id, **kwargs)

    @property
    def fingerprint(self) -> str:
        from facegen.engine.fingerprint import fingerprint
        if "_fingerprint" not in self.__dict__:
            self.__dict__["_fingerprint"] = fingerprint(self)
        return self.__dict__["_fingerprint"]


class Generator(PretrainedGenerator, torch.nn.Module):
    """z, c -> w+ (mapping, truncation) -> image (synthesis).

    Constructor arguments are those of the official StyleGAN2-ADA Generator, so the kwargs stored in
    its pickles construct this class directly.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int = 3,
                 mapping_kwargs: Optional[dict] = None, synthesis_kwargs: Optional[dict] = None, **flat_kwargs):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        # Flat kwargs (as in StyleGAN3-codebase pickles): anything not a mapping kwarg goes to synthesis.
        mapping_names = {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta"}
        for k, v in flat_kwargs.items():
            (mapping_kwargs if k in mapping_names and k != "activation" else synthesis_kwargs)[k] = v
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.init_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, mapping_kwargs=mapping_kwargs,
                                synthesis_kwargs=synthesis_kwargs)
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)
        self.meta: dict = {}          # name, source, licence ... filled by the loaders

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, **synthesis_kwargs) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)



# ---------------------------------------------------------------------------
# Discriminator (residual, with minibatch standard deviation), used for training
# ---------------------------------------------------------------------------

class DiscriminatorBlock(torch.nn.Module):
    """fromRGB (first block only), two 3x3 convs with 2x FIR downsampling, residual 1x1 skip."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int,
                 img_channels: int, resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation="lrelu",
                                       conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation="lrelu", down=2,
                                 resample_filter=resample_filter, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                resample_filter=resample_filter)

    def forward(self, x: Optional[torch.Tensor], img: torch.Tensor):
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x


class MinibatchStdLayer(torch.nn.Module):
    """Append the std of features over groups of samples as extra channel(s)."""

    def __init__(self, group_size: int, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class Discriminator(torch.nn.Module):
    """Residual StyleGAN2 discriminator (ADA layout); c_dim > 0 adds a projection head."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int = 3, channel_base: int = 32768,
                 channel_max: int = 512, conv_clamp: Optional[float] = None, mbstd_group_size: int = 4,
                 cmap_dim: Optional[int] = None):
        super().__init__()
        self.c_dim, self.img_resolution = c_dim, img_resolution
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        ch = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        if cmap_dim is None:
            cmap_dim = ch[4]
        self.cmap_dim = cmap_dim if c_dim > 0 else 0
        for res in self.block_resolutions:
            in_ch = ch[res] if res < img_resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_ch, ch[res], ch[res // 2], res, img_channels,
                                                        conv_clamp=conv_clamp))
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None)
        self.mbstd = MinibatchStdLayer(mbstd_group_size)
        self.conv = Conv2dLayer(ch[4] + 1, ch[4], kernel_size=3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(ch[4] * 16, ch[4], activation="lrelu")
        self.out = FullyConnectedLayer(ch[4], 1 if c_dim == 0 else cmap_dim)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """Trunk features [N, ch4] (shared by auxiliary heads such as an InfoGAN Q head)."""
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        x = self.mbstd(x)
        x = self.conv(x)
        return self.fc(x.flatten(1))

    def forward(self, img: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.out(self.features(img))
        if self.c_dim > 0:
            cmap = self.mapping(None, c)
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x

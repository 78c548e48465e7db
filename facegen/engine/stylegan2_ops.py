"""StyleGAN2's maths in plain PyTorch: bias + activation, resampling convolution, modulated convolution.

The operations of StyleGAN2 (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN",
2020) as stock ``torch`` calls: no custom CUDA ops, nothing to compile; they run on CPU, CUDA and MPS.
The layers (:mod:`facegen.engine.layers`) are thin modules around them.

Reading order (as in the paper):

1. Low-level maths: bias + activation, the FIR resampling filter (upfirdn, :mod:`facegen.engine.filters`),
   convolution with resampling.
2. Modulated convolution -- the heart of StyleGAN2: a style scales the input
   channels of a conv weight, demodulation renormalises each output channel.
   Two equivalent formulations: *fused* (one grouped conv with a per-sample
   weight) and *non-fused* (scale activations, shared conv, rescale). The
   generator picks the faster one for the device and batch (:func:`choose_fused_modconv`),
   and the chunk size of a batch (:func:`choose_micro_batch`).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from facegen.engine.filters import upfirdn2d

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

"""The signal-processing maths of StyleGAN3 ("Alias-Free GAN", Karras et al. 2021), in plain PyTorch.

Everything here is a stock ``torch`` / ``numpy`` / ``scipy`` call: no CUDA kernels, nothing to compile.
The op orders follow the reference (non-CUDA) path of the published networks, so that a float32 run on
the CPU reproduces their outputs to rounding (see ``tests/test_stylegan3.py``).

Reading order:

1. Filter design. Every resampling filter is a windowed-sinc low-pass (Kaiser window, designed in
   float64, unit DC gain). Separable filters are 1-D and applied along x then y; config R's radially
   symmetric down-filter is a 2-D windowed jinc (the 2-D analogue of the sinc).
2. ``upfirdn2d`` (shared with StyleGAN2 in :mod:`facegen.engine.filters`): upsample by zero insertion,
   pad (negative pads crop), convolve with the FIR filter (a true convolution), keep every ``down``-th.
3. ``filtered_lrelu``: the alias-free nonlinearity -- bias, upsample to a higher sampling rate, leaky
   ReLU there (where its new high frequencies fit), low-pass and downsample back.
4. ``modulated_conv2d``: StyleGAN2's modulated convolution with StyleGAN3's batch-wide style
   pre-normalisation and the magnitude-EMA input gain.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from facegen.engine.filters import upfirdn2d

# ---------------------------------------------------------------------------
# 1. Filter design
# ---------------------------------------------------------------------------


def lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> Optional[torch.Tensor]:
    """A Kaiser-windowed low-pass FIR filter as a float32 tensor (None for a single tap = identity).

    cutoff: -6 dB frequency; width: transition band (2 x half width) -- both in the units of fs, the
    sampling rate the filter runs at. The Kaiser beta comes from the attenuation that ``numtaps`` taps
    reach over that transition band (Kaiser's formulas).

    * separable (``radial=False``): ``scipy.signal.firwin`` -> 1-D ``[numtaps]``, applied along x and y;
    * radial: ``f(r) = J1(2 pi fc r) / (pi r)`` (the ideal circular low-pass, a jinc) at the tap
      distances r from the centre, times the outer product of two 1-D Kaiser windows, normalised to
      unit sum -> 2-D ``[numtaps, numtaps]``, rotation symmetric up to the square window's corners.
      ``numtaps`` is even, so r is never 0.
    """
    import scipy.signal
    import scipy.special
    assert numtaps >= 1
    if numtaps == 1:
        return None
    if not radial:
        f = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(f, dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    w = np.kaiser(numtaps, beta)
    f *= np.outer(w, w)
    f /= np.sum(f)
    return torch.as_tensor(f, dtype=torch.float32)


# ---------------------------------------------------------------------------
# 2. Upsample, FIR filter, downsample: ``upfirdn2d`` from facegen.engine.filters (shared with StyleGAN2)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# 3. Filtered leaky ReLU
# ---------------------------------------------------------------------------


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], b: torch.Tensor,
                   up: int = 1, down: int = 1, padding: Sequence[int] = (0, 0, 0, 0), gain: float = np.sqrt(2),
                   slope: float = 0.2, clamp: Optional[float] = None, reference: bool = False) -> torch.Tensor:
    """y = downsample(fd * clamp(lrelu(fu * upsample(x + b)) * gain)) -- the alias-free nonlinearity.

    1. add the per-channel bias;
    2. upsample by ``up`` (zero insertion) and low-pass with ``fu`` (gain up^2 keeps the DC level),
       applying ``padding`` [x0, x1, y0, y1] at the upsampled rate (negative values crop);
    3. leaky ReLU (``slope``; 1 = identity for ToRGB), times ``gain``, clamped to +-``clamp``;
    4. low-pass with ``fd`` and keep every ``down``-th sample.

    ``reference=True`` composes :func:`upfirdn2d` calls literally. The default computes the same sums
    faster (measured: the same values bit for bit on CPU, about 3x faster at 256 px): the filters run
    as depthwise convolutions on channels-last tensors (oneDNN's fast layout for them) and the
    down-filter only at the samples that are kept (a strided convolution).
    """
    if reference:
        x = x + b.reshape(1, -1, 1, 1).to(x.dtype)
        x = upfirdn2d(x, fu, up=up, padding=padding, gain=up ** 2)
        if slope != 1:
            x = F.leaky_relu(x, slope)
        if gain != 1:
            x = x * float(gain)
        if clamp is not None and clamp >= 0:
            x = x.clamp(-clamp, clamp)
        return upfirdn2d(x, fd, down=down)
    inplace = not (torch.is_grad_enabled() and (x.requires_grad or b.requires_grad))
    x = x + b.reshape(1, -1, 1, 1).to(x.dtype)
    x = _upsample_pad(x, up, padding, channels_last=fu is not None or fd is not None)
    if fu is not None:
        x = _fir(x, fu * (up ** 2) ** (fu.ndim / 2), 1)
    if slope != 1:
        x = F.leaky_relu_(x, slope) if inplace else F.leaky_relu(x, slope)
    if gain != 1:
        x = x.mul_(float(gain)) if inplace else x * float(gain)
    if clamp is not None and clamp >= 0:
        x = x.clamp_(-clamp, clamp) if inplace else x.clamp(-clamp, clamp)
    if fd is not None:
        x = _fir(x, fd, down)
    elif down > 1:
        x = x[:, :, ::down, ::down]
    return x.contiguous()


def _upsample_pad(x: torch.Tensor, up: int, padding: Sequence[int], channels_last: bool) -> torch.Tensor:
    """Zero insertion and padding / cropping in one pass: the input samples are written, every
    ``up``-th, into a zero canvas of the padded size (channels-last for the filters that follow).
    Sample j lands at pad0 + up * j, as when the zeros are inserted after it and the result padded."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = (int(p) for p in padding)
    if up == 1 and px0 == px1 == py0 == py1 == 0:
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x
    hc, wc = h * up + py0 + py1, w * up + px0 + px1
    if hc <= 0 or wc <= 0:
        raise ValueError(f"padding {list(padding)} crops the whole {h}x{w} input (upsampled x{up}) away")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    canvas = x.new_zeros([n, c, hc, wc]).contiguous(memory_format=fmt)
    j0, j1 = max(0, -(py0 // up)), min(h, (hc - 1 - py0) // up + 1)     # rows that land inside
    i0, i1 = max(0, -(px0 // up)), min(w, (wc - 1 - px0) // up + 1)     # columns that land inside
    if j1 > j0 and i1 > i0:
        canvas[:, :, py0 + up * j0: py0 + up * (j1 - 1) + 1: up, px0 + up * i0: px0 + up * (i1 - 1) + 1: up] = \
            x[:, :, j0:j1, i0:i1]
    return canvas


def _fir(x: torch.Tensor, f: torch.Tensor, stride: int) -> torch.Tensor:
    """Valid true convolution of every channel with f (1-D: along W, then H; 2-D: at once), evaluated
    only at every ``stride``-th output sample."""
    c = x.shape[1]
    f = f.to(x.dtype).flip(list(range(f.ndim)))
    if f.ndim == 1:
        x = F.conv2d(x, f.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c, stride=(1, stride))
        return F.conv2d(x, f.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c, stride=(stride, 1))
    return F.conv2d(x, f[None, None].expand(c, 1, -1, -1), groups=c, stride=stride)


# ---------------------------------------------------------------------------
# 4. Modulated convolution
# ---------------------------------------------------------------------------


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, padding: int = 0,
                     demodulate: bool = True, input_gain: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x [N, I, H, W], weight [O, I, k, k], styles [N, I] -> [N, O, H', W'] (no bias).

    With demodulation the weight is first scaled to unit RMS per output channel and the styles to
    unit RMS over the *whole batch* (one scalar; it cancels in exact arithmetic, and keeps half
    precision in range). Then w'_{noik} = s_{ni} w_{oik}, demodulated to unit norm per (n, o), and
    multiplied by ``input_gain`` (1/sqrt(magnitude EMA) of the layer input) -- after demodulation, so
    the gain scales the output linearly. One grouped convolution runs all samples at once.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight.unsqueeze(0) * styles.unsqueeze(1).unsqueeze(3).unsqueeze(4)          # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()                       # [N, O]
        w = w * dcoefs.unsqueeze(2).unsqueeze(3).unsqueeze(4)
    if input_gain is not None:
        input_gain = input_gain.expand(n, in_ch)
        w = w * input_gain.unsqueeze(1).unsqueeze(3).unsqueeze(4)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = F.conv2d(x, w.to(x.dtype), padding=padding, groups=n)
    return x.reshape(n, -1, *x.shape[2:])

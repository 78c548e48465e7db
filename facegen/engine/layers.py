"""StyleGAN2's layers: each a small module around the maths of :mod:`facegen.engine.stylegan2_ops`.

* :class:`FullyConnectedLayer` -- equalised learning rate (the mapping network, the affine style
  maps, the discriminator's head; StyleGAN3 reuses it).
* :class:`Conv2dLayer` -- equalised-lr conv with FIR up/down-sampling (discriminator, resnet skips).
* :class:`SynthesisLayer` -- modulated conv + noise + bias + leaky ReLU, one per conv of a synthesis block.
* :class:`ToRGBLayer` -- 1x1 modulated conv without demodulation, features -> RGB.

Parameter names and shapes are those of the official StyleGAN2-ADA release, so its state dicts load
key for key.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from facegen.engine.filters import setup_filter
from facegen.engine.stylegan2_ops import (ACTIVATION_GAIN, bias_act, conv2d_resample, modulated_1x1,
                                          modulated_conv2d, modulated_conv2d_act, modulated_conv2d_fused_act)

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

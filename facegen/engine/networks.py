"""StyleGAN2 generator, written from the maths in plain PyTorch: the synthesis network and the Generator.

This is a clean-room re-statement of the StyleGAN2 architecture (Karras et al.,
"Analyzing and Improving the Image Quality of StyleGAN", 2020) in the parameter
layout of the official StyleGAN2-ADA PyTorch release, so that its state dicts
load key for key. There are no custom CUDA ops and nothing to compile: every
operation is a stock ``torch`` call and runs on CPU, CUDA and MPS.

Reading order (as in the paper), one module each:

1. Maths (:mod:`facegen.engine.stylegan2_ops`): bias + activation, convolution with FIR resampling,
   modulated convolution (fused and non-fused) and the choice between them.
2. Layers (:mod:`facegen.engine.layers`): fully connected, synthesis layer (modconv + noise + bias +
   act), toRGB.
3. Mapping z -> w with truncation (:mod:`facegen.engine.mapping`).
4. Here: synthesis w+ -> image (one block per resolution) and the :class:`Generator` that joins mapping
   and synthesis.
5. The residual :class:`~facegen.engine.discriminator.Discriminator` used for training
   (:mod:`facegen.engine.discriminator`).

The names of 1, 2, 3 and 5 are re-exported here, where they lived before the split.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

from facegen.engine.filters import downsample2d, setup_filter, upfirdn2d, upsample2d  # noqa: F401
from facegen.engine.layers import Conv2dLayer, FullyConnectedLayer, SynthesisLayer, ToRGBLayer  # noqa: F401
from facegen.engine.mapping import MappingNetwork
from facegen.engine.stylegan2_ops import (ACTIVATION_GAIN, bias_act, choose_fused_modconv,  # noqa: F401
                                          choose_micro_batch, conv2d_resample, demodulation_coefficients,
                                          modulated_1x1, modulated_conv2d, modulated_conv2d_act,
                                          modulated_conv2d_fused_act, normalize_2nd_moment)
from facegen.engine.discriminator import Discriminator, DiscriminatorBlock, MinibatchStdLayer  # noqa: F401

__all__ = [
    # defined here
    "SynthesisBlock", "SynthesisNetwork", "PretrainedGenerator", "Generator",
    # re-exported from the modules this one was split into (their names stay importable from here)
    "ACTIVATION_GAIN", "bias_act", "normalize_2nd_moment", "conv2d_resample", "modulated_conv2d",
    "demodulation_coefficients", "modulated_conv2d_act", "modulated_conv2d_fused_act", "modulated_1x1",
    "choose_fused_modconv", "choose_micro_batch", "FullyConnectedLayer", "Conv2dLayer", "SynthesisLayer",
    "ToRGBLayer", "MappingNetwork", "DiscriminatorBlock", "MinibatchStdLayer", "Discriminator",
    "setup_filter", "upfirdn2d", "upsample2d", "downsample2d",
]

# ---------------------------------------------------------------------------
# Synthesis network
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# The Generator: mapping + synthesis
# ---------------------------------------------------------------------------

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

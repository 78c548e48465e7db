"""The engine's fast CPU paths: which formulation runs, and that it is the same maths as the reference one.

Speed itself is measured by ``bench/generate.py --reference DIR`` (NVIDIA's code side by side), never here.
The golden fixtures (tests/test_engine.py) check whole networks; these tests check the pieces: the choice
logic, the batch-1 fused layer (demodulation, gain, bias, noise, clamp folded together) against the
reference formulation ``bias_act(modulated_conv2d(...))``, gradients through it, and the toRGB 1x1 path.
"""

import math

import pytest
import torch

from facegen.engine.filters import setup_filter
from facegen.engine.networks import Generator
from facegen.engine.stylegan2_ops import (bias_act, choose_fused_modconv, modulated_1x1, modulated_conv2d,
                                          modulated_conv2d_fused_act)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _maxdiff(a, b):
    return (a - b).abs().max().item()


def _generator(res=32, **kw):
    torch.manual_seed(0)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=res, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=res * 16, channel_max=32, **kw)).eval()
    for name, p in G.named_parameters():       # non-zero noise strengths and biases, so both are exercised
        if name.endswith("noise_strength") or (name.endswith("bias") and "affine" not in name):
            p.data.uniform_(0.1, 0.5)
    return G


def test_choice_batch_1_cpu_inference_is_fused_everything_else_as_before():
    assert choose_fused_modconv(CPU, 1, training=False, needs_grad=False) is True
    assert choose_fused_modconv(CPU, 2, training=False, needs_grad=False) is False    # grouped convs are slow on CPU
    assert choose_fused_modconv(CPU, 1, training=True, needs_grad=True) is False
    assert choose_fused_modconv(CPU, 1, training=False, needs_grad=True) is False     # encoder refinement
    assert choose_fused_modconv(CUDA, 1, training=False) is True
    assert choose_fused_modconv(CUDA, 8, training=False, needs_grad=True) is True     # CUDA unchanged
    assert choose_fused_modconv(CUDA, 8, training=True) is False


def test_synthesis_runs_the_chosen_path():
    """The default batch-1 CPU synthesis is bit for bit the fused path (and the two paths do differ in their
    last bits, so the comparison can tell them apart); with gradients it is the shared-weight path; a
    micro-batched large generator runs every sample on the batch-1 fused path."""
    G = _generator()
    ws = G.mapping(torch.randn(3, 32), None, truncation_psi=0.8).detach()
    with torch.no_grad():
        fused = G.synthesis(ws[:1], noise_mode="const", fused_modconv=True)
        unfused = G.synthesis(ws[:1], noise_mode="const", fused_modconv=False)
        assert not torch.equal(fused, unfused) and _maxdiff(fused, unfused) < 1e-5
        assert torch.equal(G.synthesis(ws[:1], noise_mode="const"), fused)
        assert torch.equal(G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const", fused_modconv=False))
    with torch.enable_grad():
        assert torch.equal(G.synthesis(ws[:1], noise_mode="const").detach(), unfused)
    big = _generator(res=128)
    ws = big.mapping(torch.randn(2, 32), None).detach()
    with torch.no_grad():
        auto = big.synthesis(ws, noise_mode="const")                    # micro-batch 1 on CPU
        each = torch.cat([big.synthesis(ws[i:i + 1], noise_mode="const", fused_modconv=True, micro_batch=0)
                          for i in range(2)])
        assert torch.equal(auto, each)


def _reference_layer(x, weight, styles, noise, bias, gain, clamp, up, f):
    y = modulated_conv2d(x, weight, styles, noise, up=up, padding=1, resample_filter=f, flip_weight=(up == 1),
                         fused_modconv=True)
    return bias_act(y, bias, "lrelu", gain, clamp)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
def test_fused_layer_matches_the_reference_formulation(up, batch):
    """conv(x, w'' g) + (noise + b) g, leaky ReLU and clamp in place == clamp(lrelu(conv(x, w'') + noise + b) g),
    with a clamp that bites, the resnet gain sqrt(0.5) and per-sample (random-mode) noise."""
    torch.manual_seed(1)
    n, i, o, h = batch, 6, 5, 8
    x, weight, styles = torch.randn(n, i, h, h), torch.randn(o, i, 3, 3), torch.randn(n, i) + 1
    bias = torch.randn(o)
    f = setup_filter([1, 3, 3, 1])
    for noise in (None, torch.randn(h * up, h * up) * 0.3, torch.randn(n, 1, h * up, h * up) * 0.3):
        for gain, clamp in ((math.sqrt(2), None), (math.sqrt(2) * math.sqrt(0.5), 0.5)):
            with torch.no_grad():
                ref = _reference_layer(x, weight, styles, noise, bias, gain, clamp, up, f)
                got = modulated_conv2d_fused_act(x, weight, styles, noise, bias, gain, clamp, up=up, padding=1,
                                                 resample_filter=f, flip_weight=(up == 1))
            assert got.shape == ref.shape == (n, o, h * up, h * up)
            assert _maxdiff(got, ref) < 1e-5, (noise is None, gain, clamp)
            if clamp is not None:
                assert (ref.abs() == clamp).float().mean() > 0.05      # the clamp is exercised


def test_fused_layer_gradients_match():
    torch.manual_seed(2)
    f = setup_filter([1, 3, 3, 1])
    for up in (1, 2):
        leaves = [torch.randn(1, 4, 6, 6), torch.randn(3, 4, 3, 3), torch.randn(1, 4) + 1, torch.randn(3)]
        grads = []
        for fn in (_reference_layer, None):
            ts = [t.clone().requires_grad_(True) for t in leaves]
            x, weight, styles, bias = ts
            noise = torch.ones(6 * up, 6 * up) * 0.2
            if fn is None:
                y = modulated_conv2d_fused_act(x, weight, styles, noise, bias, 1.3, 0.8, up=up, padding=1,
                                               resample_filter=f, flip_weight=(up == 1))
            else:
                y = fn(x, weight, styles, noise, bias, 1.3, 0.8, up, f)
            (y * torch.linspace(-1, 2, y.numel()).reshape(y.shape)).sum().backward()
            grads.append([t.grad for t in ts])
        for a, b in zip(*grads):
            assert a.abs().max() > 0 and _maxdiff(a, b) < 1e-4 * (1 + a.abs().max().item())


@pytest.mark.parametrize("batch", [1, 3])
def test_torgb_1x1_matches_the_reference_formulation(batch):
    torch.manual_seed(3)
    x, weight, styles = torch.randn(batch, 8, 5, 7), torch.randn(3, 8, 1, 1), torch.randn(batch, 8)
    ref = modulated_conv2d(x, weight, styles, demodulate=False, fused_modconv=True)
    got = modulated_1x1(x, weight, styles)
    assert got.shape == ref.shape == (batch, 3, 5, 7)
    assert _maxdiff(got, ref) < 1e-5

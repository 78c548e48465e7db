"""StyleGAN3 (T and R) in the engine: facegen.engine.stylegan3 against the official-format golden fixture.

* stylegan3-t-tiny (../shared/fixtures; skipped with a reason when absent): the pickle loads without
  running it, bit-equal to the fixture's state dict, with every layer's design (sampling rates,
  cutoffs, taps, padding, filters) as the fixture's config lists it; every output in io.safetensors is
  reproduced (<= 1e-5) by the expression its config.json gives, run on the loaded generator -- the
  images, the transformed images and the per-layer debug tensors; Hub-native save / load round-trips
  with the same fingerprint; the studio serves it.
* StyleGAN3 R has no reference outputs: its layer schedule is checked against the fixture's table for
  the released R configs, its down-filters are radial (isotropic frequency response), its convs 1x1,
  and rotating the input transform rotates the image (exactly for 90 degrees, closely for 30 / 45) --
  which config T, built the same way, does not do.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import facegen
from facegen.engine import stylegan3_ops as ops
from facegen.engine.errors import UnsupportedModelError
from facegen.engine.stylegan3 import StyleGAN3Generator, SynthesisNetwork, layer_schedule, transform_matrix

FIXTURE = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "stylegan3-t-tiny"
TOL = 1e-5


def _need_fixture():
    if not (FIXTURE / "G_ema.pkl").exists():
        pytest.skip(f"the StyleGAN3 golden fixture is absent ({FIXTURE}): it lives in ../shared/fixtures")


@pytest.fixture(scope="module")
def cfg():
    _need_fixture()
    return json.loads((FIXTURE / "config.json").read_text())


@pytest.fixture(scope="module")
def io():
    _need_fixture()
    from safetensors.torch import load_file
    return load_file(str(FIXTURE / "io.safetensors"))


@pytest.fixture(scope="module")
def G3():
    _need_fixture()
    torch.set_num_threads(1)
    return facegen.load_generator(FIXTURE / "G_ema.pkl")


def _maxdiff(a, b) -> float:
    assert tuple(a.shape) == tuple(b.shape), (tuple(a.shape), tuple(b.shape))
    return (a.float() - b.float()).abs().max().item()


# ---------------------------------------------------------------------------
# Loading: pickle (not executed) -> the official state dict and layer design
# ---------------------------------------------------------------------------

def test_pickle_loads_to_the_official_state_dict(G3, cfg):
    from safetensors.torch import load_file
    assert type(G3).__name__ == "StyleGAN3Generator" and G3.architecture == "stylegan3-t"
    assert (G3.num_ws, G3.z_dim, G3.w_dim, G3.c_dim, G3.img_resolution) == (cfg["num_ws"], 64, 64, 0, 32)
    assert G3.meta["format"] == "stylegan3-pkl"
    sd = G3.state_dict()
    assert list(sd) == cfg["state_dict_keys"]                       # official names, official order
    ref = load_file(str(FIXTURE / "G_ema.safetensors"))
    assert set(ref) == set(sd) and all(torch.equal(ref[k], sd[k]) for k in ref)
    # The same file loads strictly into a generator built from the kwargs, with the same fingerprint.
    fresh = StyleGAN3Generator(**cfg["init_kwargs"])
    fresh.load_state_dict(ref, strict=True)
    assert fresh.fingerprint == G3.fingerprint


def test_layer_design_matches_the_fixture(G3, cfg):
    S = G3.synthesis
    assert S.layer_names == [layer["name"] for layer in cfg["layers"]]
    si = cfg["synthesis_input"]
    assert (S.input.channels, list(S.input.size), S.input.sampling_rate, S.input.bandwidth) == \
        (si["channels"], si["size"], si["sampling_rate"], si["bandwidth"])
    for L, ref in zip(S.layers(), cfg["layers"]):
        mine = dict(is_torgb=L.is_torgb, is_critically_sampled=L.is_critically_sampled, use_fp16=L.use_fp16,
                    in_channels=L.in_channels, out_channels=L.out_channels, in_size=list(L.in_size),
                    out_size=list(L.out_size), in_sampling_rate=L.in_sampling_rate,
                    out_sampling_rate=L.out_sampling_rate, tmp_sampling_rate=L.tmp_sampling_rate,
                    conv_kernel=L.conv_kernel, up_factor=L.up_factor, down_factor=L.down_factor, up_taps=L.up_taps,
                    down_taps=L.down_taps, down_radial=L.down_radial, padding=L.padding, conv_clamp=L.conv_clamp,
                    up_filter_shape=None if L.up_filter is None else list(L.up_filter.shape),
                    down_filter_shape=None if L.down_filter is None else list(L.down_filter.shape))
        for k, v in mine.items():
            assert v == ref[k], (ref["name"], k, v, ref[k])
        for k in ("in_cutoff", "out_cutoff", "in_half_width", "out_half_width"):
            assert getattr(L, k) == pytest.approx(ref[k], rel=1e-12), (ref["name"], k)
        assert L.magnitude_ema.item() == pytest.approx(ref["magnitude_ema"], rel=1e-6)


def test_filters_are_designed_as_stored(G3, cfg):
    """A generator built from the kwargs alone designs the same Kaiser filters the file stores."""
    torch.manual_seed(0)
    fresh = StyleGAN3Generator(**cfg["init_kwargs"])
    n = 0
    for a, b in zip(fresh.synthesis.layers(), G3.synthesis.layers()):
        for name in ("up_filter", "down_filter"):
            fa, fb = getattr(a, name), getattr(b, name)
            assert (fa is None) == (fb is None)
            if fa is not None:
                assert _maxdiff(fa, fb) <= 1e-7, (a, name)
                n += 1
    assert n == 28


@pytest.mark.parametrize("name", ["stylegan3-t @1024", "stylegan3-r @1024", "stylegan3-t @256", "stylegan3-r @256"])
def test_schedule_of_the_released_configs(cfg, name):
    """The layer table of the four released configs (T / R, 256 / 1024) as the fixture derives it from
    the official code: names, rates, factors, taps, radial filters, paddings, sizes, channels, fp16."""
    key = next(k for k in cfg["real_config_schedules"] if k.startswith(name))
    r = cfg["real_config_schedules"][key]
    init = dict(r["init"])
    res = init.pop("img_resolution")
    with torch.device("meta"):                  # the layer design only; no 1024-px weights in memory
        S = SynthesisNetwork(w_dim=512, img_resolution=res, img_channels=3, **init)
    assert S.layer_names == [layer["name"] for layer in r["layers"]]
    assert (S.input.channels, int(S.input.size[0]), S.input.sampling_rate, S.input.bandwidth) == \
        (r["input"]["channels"], r["input"]["size"], r["input"]["sampling_rate"], r["input"]["bandwidth"])
    for L, ref in zip(S.layers(), r["layers"]):
        mine = dict(in_sr=L.in_sampling_rate, out_sr=L.out_sampling_rate, tmp_sr=L.tmp_sampling_rate, up=L.up_factor,
                    down=L.down_factor, up_taps=L.up_taps, down_taps=L.down_taps, radial=L.down_radial,
                    padding=L.padding, in_size=int(L.in_size[0]), out_size=int(L.out_size[0]), in_ch=L.in_channels,
                    out_ch=L.out_channels, crit=L.is_critically_sampled, fp16_default=L.use_fp16,
                    in_cutoff=round(L.in_cutoff, 4), out_cutoff=round(L.out_cutoff, 4),
                    in_half_width=round(L.in_half_width, 4), out_half_width=round(L.out_half_width, 4))
        assert {k: ref[k] for k in mine} == mine, ref["name"]
        assert L.weight.shape[-1] == (1 if "-r" in name or L.is_torgb else 3)
        if L.down_filter is not None:
            assert L.down_filter.ndim == (2 if L.down_radial else 1)


# ---------------------------------------------------------------------------
# Every output in io.safetensors, by the expression config.json gives for it
# ---------------------------------------------------------------------------

def _with_transform(G, matrix, fn):
    base = G.synthesis.input.transform.clone()
    G.synthesis.input.transform.copy_(matrix)
    try:
        return fn()
    finally:
        G.synthesis.input.transform.copy_(base)


def _debug_tensors(G, z, conv_layers) -> dict:
    """The dbg_* tensors of the img_psi1 run (sample 0), captured with forward hooks; the modulated
    convolution's output for `conv_layers` (the ones the fixture stores it for)."""
    S, out, seen = G.synthesis, {}, {}
    hooks = [S.input.affine.register_forward_hook(lambda m, a, y: out.__setitem__("dbg_input_affine", y[:1])),
             S.input.register_forward_hook(lambda m, a, y: out.__setitem__("dbg_input", y[:1, :8]))]
    for name, L in zip(S.layer_names, S.layers()):
        def styles(m, a, y, name=name):
            out[f"dbg_{name}_styles"] = y[:1]
            seen[name + "/styles"] = y

        def inputs(m, a, name=name):
            seen[name + "/x"] = a[0]

        def output(m, a, y, name=name):
            out[f"dbg_{name}"] = y[:1, :8]

        hooks += [L.affine.register_forward_hook(styles), L.register_forward_pre_hook(inputs),
                  L.register_forward_hook(output)]
    try:
        G(z, None, truncation_psi=1)
    finally:
        for h in hooks:
            h.remove()
    # dbg_{layer}_conv: the modulated convolution of the layer's own input and styles (before the bias).
    for name, L in zip(S.layer_names, S.layers()):
        if name not in conv_layers:
            continue
        s = seen[name + "/styles"]
        if L.is_torgb:
            s = s * (1 / np.sqrt(L.in_channels * L.conv_kernel ** 2))
        conv = ops.modulated_conv2d(seen[name + "/x"], L.weight, s, padding=L.conv_kernel - 1,
                                    demodulate=not L.is_torgb, input_gain=L.magnitude_ema.rsqrt())
        out[f"dbg_{name}_conv"] = conv[:1, :8]
    return out


@torch.no_grad()
def test_every_output_reproduced(G3, cfg, io):
    G, z = G3, io["z"]
    ws = G.mapping(z, None, truncation_psi=1)
    ws_mix = ws.clone()
    ws_mix[0, 4:8] = ws[1, 4:8]
    got = {
        "z": z,
        "ws": ws,
        "ws_trunc": G.mapping(z, None, truncation_psi=0.7),
        "ws_trunc_cutoff": G.mapping(z, None, truncation_psi=0.7, truncation_cutoff=8),
        "img_psi1": G(z, None, truncation_psi=1),
        "img_psi07": G(z, None, truncation_psi=0.7),
        "img_psi07_cutoff": G(z, None, truncation_psi=0.7, truncation_cutoff=8),
        "ws_mix": ws_mix,
        "img_mix": G.synthesis(ws_mix),
        "transform_base": G.synthesis.input.transform.clone(),
        "transform_img_transformed": io["transform_img_transformed"],
        "img_transformed": _with_transform(G, io["transform_img_transformed"], lambda: G(z, None, truncation_psi=1)),
        "transform_img_transform_scaled": io["transform_img_transform_scaled"],
        "img_transform_scaled": _with_transform(G, io["transform_img_transform_scaled"],
                                                lambda: G(z, None, truncation_psi=1)),
        **_debug_tensors(G, z, [k[4:-5] for k in cfg["io_key_order"] if k.endswith("_conv")]),
    }
    assert set(got) == set(cfg["io_key_order"]) == set(io), set(io) ^ set(got)
    diffs = {k: _maxdiff(got[k], io[k]) for k in cfg["io_key_order"]}
    bad = {k: d for k, d in diffs.items() if not d <= TOL}
    assert not bad, bad
    # The outputs are not trivially close: the transforms and the mixing change the images.
    assert _maxdiff(io["img_transformed"], io["img_psi1"]) > 0.1 and _maxdiff(io["img_mix"], io["img_psi1"]) > 0.1
    # ... and the generator's buffer was restored.
    assert torch.equal(G.synthesis.input.transform, io["transform_base"])


def test_transform_matrix_is_the_published_convention(io):
    """transform_matrix(translate, angle) gives the matrices the fixture stores (gen_images.py recipe)."""
    m = torch.from_numpy(transform_matrix((0.125, -0.0625), 30.0).astype(np.float32))
    assert _maxdiff(m, io["transform_img_transformed"]) <= 1e-7
    assert _maxdiff(torch.from_numpy(transform_matrix((0.05, -0.03), 7.0).astype(np.float32)), io["transform_base"]) <= 1e-7


@torch.no_grad()
def test_set_transform_reproduces_the_transformed_images(G3, io):
    S = G3.synthesis
    base = S.input.transform.clone()
    try:
        S.input.set_transform(translate=(0.125, -0.0625), angle=30.0)
        assert _maxdiff(G3(io["z"], None), io["img_transformed"]) <= TOL
    finally:
        S.input.transform.copy_(base)
    # Per call, without touching the buffer: one matrix for all, or one per sample.
    ws = G3.mapping(io["z"], None)
    m = torch.from_numpy(transform_matrix((0.125, -0.0625), 30.0).astype(np.float32))
    assert _maxdiff(G3.synthesis(ws, transform=m), io["img_transformed"]) <= TOL
    per_sample = torch.stack([m, io["transform_img_transform_scaled"], m, base])
    img = G3.synthesis(ws, transform=per_sample)
    assert _maxdiff(img[[0, 2]], io["img_transformed"][[0, 2]]) <= 1e-5
    assert _maxdiff(img[1], io["img_transform_scaled"][1]) <= 1e-5 and _maxdiff(img[3], io["img_psi1"][3]) <= 1e-5
    assert torch.equal(S.input.transform, base)


# ---------------------------------------------------------------------------
# Hub-native folder, fingerprint, errors
# ---------------------------------------------------------------------------

@torch.no_grad()
def test_save_pretrained_round_trip(G3, io, tmp_path):
    folder = G3.save_pretrained(tmp_path / "sg3t")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "stylegan3-t" and config["fingerprint"] == G3.fingerprint
    G2 = facegen.load_generator(folder)
    assert isinstance(G2, StyleGAN3Generator) and G2.meta["format"] == "hub-native"
    assert G2.fingerprint == G3.fingerprint
    assert torch.equal(G2(io["z"], None, truncation_psi=0.7), G3(io["z"], None, truncation_psi=0.7))
    # A config that says R but builds T is refused with a message naming the file.
    bad = dict(config, architecture="stylegan3-r", conv_kernel=3)
    (folder / "config.json").write_text(json.dumps(bad))
    with pytest.raises(UnsupportedModelError, match="stylegan3-r config that does not build"):
        facegen.load_generator(folder)
    (folder / "config.json").write_text(json.dumps(dict(config, architecture="stylegan4")))
    with pytest.raises(UnsupportedModelError, match="'stylegan4' generator"):
        facegen.load_generator(folder)


def test_stylegan3_pickle_with_wrong_kwargs_is_refused(tmp_path):
    """A StyleGAN3 pickle whose kwargs do not build (here: none at all) -> a typed error, not a crash."""
    from test_engine import _persistent_pickle
    p = tmp_path / "sg3.pkl"
    p.write_bytes(_persistent_pickle("Generator", ["input", "L0_36_512", "L1_36_512"], {"z_dim": 512}))
    with pytest.raises(UnsupportedModelError, match="StyleGAN3 generator kwargs not understood"):
        facegen.load_generator(p)


# ---------------------------------------------------------------------------
# StyleGAN3 R: no reference outputs -- what can be checked without one
# ---------------------------------------------------------------------------

def _tiny(conv_kernel: int, radial: bool, seed: int = 0) -> StyleGAN3Generator:
    torch.manual_seed(seed)
    return StyleGAN3Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, channel_base=512, channel_max=32,
                              conv_kernel=conv_kernel, use_radial_filters=radial).eval()


@pytest.fixture(scope="module")
def R():
    torch.set_num_threads(1)
    return _tiny(1, True)


def _response(f: torch.Tensor, fx: float, fy: float, fs: float) -> float:
    """|H(fx, fy)| of a 2-D filter sampled at rate fs (frequencies in the same units)."""
    n = f.shape[-1]
    t = (np.arange(n) - (n - 1) / 2) / fs
    phase = np.exp(-2j * np.pi * (fx * t[None, :] + fy * t[:, None]))
    return float(abs((f.double().numpy() * phase).sum()))


def test_r_builds_with_radial_filters_and_1x1_convs(R, tmp_path):
    S = R.synthesis
    assert R.architecture == "stylegan3-r" and R.num_ws == 16
    for L in S.layers():
        assert L.weight.shape[-2:] == (1, 1)
        if L.is_torgb:
            assert L.down_filter is None
        elif L.is_critically_sampled:
            assert L.down_filter.ndim == 1 and not L.down_radial
        else:
            f = L.down_filter
            assert L.down_radial and f.shape == (12, 12)
            assert abs(f.sum().item() - 1) < 1e-6                      # unit DC gain
            assert torch.equal(f, f.t()) and torch.equal(f, f.flip(0)) and torch.equal(f, f.flip(1))
    with torch.no_grad():
        img = R(torch.randn(3, 32), None, truncation_psi=0.7)
    assert img.shape == (3, 3, 32, 32) and torch.isfinite(img).all() and img.std() > 1e-3
    folder = R.save_pretrained(tmp_path / "sg3r")
    assert json.loads((folder / "config.json").read_text())["architecture"] == "stylegan3-r"
    R2 = facegen.load_generator(folder)
    assert R2.architecture == "stylegan3-r" and R2.fingerprint == R.fingerprint


def _anisotropy(f: torch.Tensor, fc: float, fs: float) -> float:
    """max over radii 0.2..1.6 fc of |H(rho, 0) - H(rho/sqrt2, rho/sqrt2)|: on-axis vs diagonal response."""
    worst = 0.0
    for rho in np.linspace(0.2, 1.6, 15) * fc:
        d = abs(_response(f, rho, 0.0, fs) - _response(f, rho / math.sqrt(2), rho / math.sqrt(2), fs))
        worst = max(worst, d)
    return worst


def test_radial_filter_is_isotropic(R):
    """The jinc down-filters pass / stop a frequency whatever its direction; the separable filter of
    the same layer does not where the transition band is narrow (its pass band is a square, so the
    diagonal passes more). Measured: radial <= 0.08 everywhere; separable up to 0.51."""
    rows = []
    for L in R.synthesis.layers():
        if not L.down_radial:
            continue
        fs, fc = L.tmp_sampling_rate, L.out_cutoff
        sep = ops.lowpass_filter(L.down_taps, fc, L.out_half_width * 2, fs)
        assert sep.ndim == 1
        rows.append((_anisotropy(L.down_filter, fc, fs), _anisotropy(torch.outer(sep, sep), fc, fs)))
    assert len(rows) == 12
    assert all(radial < 0.1 for radial, _ in rows), rows
    narrow = [(radial, sep) for radial, sep in rows if sep > 0.1]
    assert len(narrow) >= 3 and all(radial < 0.25 * sep for radial, sep in narrow), rows


def _rotate(img: torch.Tensor, degrees: float) -> torch.Tensor:
    """The image turned counter-clockwise (as displayed) by `degrees` about its centre (bicubic
    resampling); _rotate(x, 90) is torch.rot90(x, 1, dims=[2, 3]) (checked in the test below)."""
    a = -math.radians(degrees)
    theta = torch.tensor([[math.cos(a), math.sin(a), 0.0], [-math.sin(a), math.cos(a), 0.0]])
    grid = F.affine_grid(theta[None].repeat(len(img), 1, 1), list(img.shape), align_corners=False)
    return F.grid_sample(img, grid, mode="bicubic", align_corners=False)


@torch.no_grad()
def _rotation_errors(G, angle: float) -> tuple:
    """(error of the turned render against the turned image, error of the plain image) in the central disc."""
    ws = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(5)), None)
    base = G.synthesis(ws)
    G.synthesis.input.set_transform(angle=angle)
    try:
        turned = G.synthesis(ws)
    finally:
        G.synthesis.input.set_transform()
    yy, xx = torch.meshgrid(torch.arange(32) - 15.5, torch.arange(32) - 15.5, indexing="ij")
    disc = yy ** 2 + xx ** 2 < 10 ** 2
    exact = angle % 90 == 0
    expected = torch.rot90(base, int(angle // 90), dims=[2, 3]) if exact else _rotate(base, angle)
    return (turned - expected)[..., disc].abs().mean().item(), (turned - base)[..., disc].abs().mean().item()


@pytest.mark.parametrize("angle", [90, 30, -45])
def test_r_rotating_the_input_rotates_the_image(R, angle):
    """R is rotation equivariant by construction (1x1 convs, radial filters): angle = 90 gives the
    rot90 image to float rounding; 30 / -45 degrees match the bicubically turned image far better
    than the unturned one (measured ratio ~0.02)."""
    err, moved = _rotation_errors(R, angle)
    assert moved > 1e-3
    if angle == 90:
        assert err < 1e-6, err
    else:
        assert err < 0.1 * moved, (err, moved)


def test_rotate_helper_turns_counter_clockwise():
    x = torch.randn(1, 3, 32, 32)
    assert (_rotate(x, 90) - torch.rot90(x, 1, dims=[2, 3]))[..., 2:-2, 2:-2].abs().max() < 1e-5
    assert (_rotate(x, 90) - torch.rot90(x, -1, dims=[2, 3]))[..., 2:-2, 2:-2].abs().max() > 0.5


def test_t_is_not_rotation_equivariant():
    """The same check on config T (3x3 convs, separable filters) fails: the test above measures R's design."""
    err, moved = _rotation_errors(_tiny(3, False), 30)
    assert err > 0.3 * moved, (err, moved)


@torch.no_grad()
def test_translation_moves_the_image(R):
    """Whole-pixel translations shift the image by that many pixels (content moves +x for tx > 0)."""
    ws = R.mapping(torch.randn(2, 32, generator=torch.Generator().manual_seed(1)), None)
    base = R.synthesis(ws)
    R.synthesis.input.set_transform(translate=(4 / 32, 0.0))
    try:
        moved = R.synthesis(ws)
    finally:
        R.synthesis.input.set_transform()
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert (moved - torch.roll(base, 4, dims=3))[inner].abs().max().item() < 1e-4
    assert (moved - base)[inner].abs().mean().item() > 1e-3


# ---------------------------------------------------------------------------
# Ops, clamp, precision
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("up,down,radial", [(2, 2, False), (4, 2, False), (2, 2, True), (4, 2, True), (1, 1, False),
                                            (2, 1, False), (1, 2, True)])
def test_fast_filtered_lrelu_equals_the_reference(up, down, radial):
    """The default filtered_lrelu (one-pass zero insertion, channels-last, strided down-filter) gives
    the literal upfirdn2d composition's values and gradients, with positive, negative and asymmetric
    paddings (measured: bit-equal on this CPU)."""
    g = torch.Generator().manual_seed(up * 10 + down)
    fu = ops.lowpass_filter(6 * up if up > 1 else 1, 3.0, 4.0, 16 * up)
    fd = ops.lowpass_filter(6 * down if down > 1 else 1, 3.0, 4.0, 16 * up, radial=radial)
    taps = sum(f.shape[-1] for f in (fu, fd) if f is not None)
    for pad in ([9, 8, 9, 8], [-6, -9, -6, -9], [11, 10, 3, -2], [0, 0, 0, 0]):
        if 20 * up + min(pad[0] + pad[1], pad[2] + pad[3]) < taps:
            continue                                    # nothing left to filter
        x = (torch.randn(2, 5, 20, 20, generator=g) * 3).requires_grad_()
        b = torch.randn(5, generator=g).requires_grad_()
        outs = []
        for reference in (True, False):
            y = ops.filtered_lrelu(x, fu, fd, b, up, down, pad, clamp=2.0, reference=reference)
            gx, gb = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum(), [x, b])
            outs.append((y.detach(), gx, gb))
        (y0, gx0, gb0), (y1, gx1, gb1) = outs
        assert y0.shape == y1.shape and y0.numel() > 0, pad
        assert _maxdiff(y0, y1) <= 1e-6 and _maxdiff(gx0, gx1) <= 1e-6 and _maxdiff(gb0, gb1) <= 1e-5, pad
        assert y0.abs().max() > 0.5


def test_conv_clamp_bounds_the_torgb_output(R):
    L = R.synthesis.layers()[-1]
    x = torch.randn(1, L.in_channels, 32, 32) * 1000
    w = torch.randn(1, R.w_dim)
    old = L.conv_clamp
    try:
        L.conv_clamp = 0.5
        with torch.no_grad():
            y = L(x, w)
    finally:
        L.conv_clamp = old
    assert y.abs().max().item() == pytest.approx(0.5)


def test_magnitude_ema_moves_only_with_update_emas():
    G = _tiny(1, True, seed=2)
    L = G.synthesis.layers()[0]
    z = torch.randn(4, 32)
    with torch.no_grad():
        G(z, None)
        assert L.magnitude_ema.item() == 1.0
        x = G.synthesis.input(G.mapping(z, None)[:, 0])
        G(z, None, update_emas=True)
    want = torch.lerp(x.square().mean(), torch.tensor(1.0), L.magnitude_ema_beta).item()
    assert L.magnitude_ema.item() == pytest.approx(want, rel=1e-6) and L.magnitude_ema.item() != 1.0


def test_synthesis_ignores_noise_mode_and_checks_precision(R):
    ws = R.mapping(torch.randn(1, 32), None)
    with torch.no_grad():
        a, b = R.synthesis(ws, noise_mode="random"), R.synthesis(ws, noise_mode="none")
        c = R.synthesis(ws, precision="fp16")            # CPU: the published code's fp32 path
    assert torch.equal(a, b) and torch.equal(a, c)
    with pytest.raises(ValueError, match="precision"):
        R.synthesis(ws, precision="fp8")


def test_layer_schedule_follows_the_paper():
    """Cutoffs grow geometrically to Nyquist, reached num_critical layers before the end."""
    s = layer_schedule(256)
    c = s["cutoffs"]
    assert c[0] == 2 and c[12] == c[13] == c[14] == 128
    assert np.allclose(c[1:13] / c[:12], (128 / 2) ** (1 / 12))
    assert s["sizes"][-1] == s["sizes"][-2] == 256 and s["sizes"][0] == 16 + 20


# ---------------------------------------------------------------------------
# The studio serves a StyleGAN3 pickle
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sg3_client(tmp_path_factory):
    _need_fixture()
    from gradio_client import Client
    from conftest import launch_app
    proc, url = launch_app(str(FIXTURE / "G_ema.pkl"), tmp_path_factory.mktemp("sg3-app"))
    yield Client(url, verbose=False)
    proc.terminate()
    proc.wait(timeout=30)


def test_app_generates_with_a_stylegan3_pickle(sg3_client, G3):
    from PIL import Image
    from facegen.engine import latents as L
    from facegen.engine.synthesis import synthesize
    gallery, files, link, *_ = sg3_client.predict("3-4", 1, 0.7, 0, "const", api_name="/generate")
    got = [np.asarray(Image.open(item["image"] if isinstance(item, dict) else item[0]).convert("RGB"))
           for item in gallery]
    want = synthesize(G3, L.seeds_to_ws(G3, [3, 4], psi=0.7))
    assert len(got) == 2 and got[0].shape == (32, 32, 3)
    for a, b in zip(got, want):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert np.abs(got[0].astype(int) - got[1].astype(int)).mean() > 1.0

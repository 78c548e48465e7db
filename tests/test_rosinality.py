"""rosinality/stylegan2-pytorch checkpoints through load_generator (facegen.engine.rosinality).

The golden fixture tests/fixtures/rosinality-tiny/ holds a tiny random generator in rosinality's checkpoint
layouts with the outputs rosinality's own code computed from it (its README says how): every stored latent and
image must come back within 1e-4 -- mapping, the stored noise maps, no noise, given noise maps, truncation,
style mixing, w+ input -- and the file must load with torch.load(weights_only=True), refusing anything else.
"""

import argparse
import copy
import fractions
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from facegen.engine import latents as L
from facegen.engine import rosinality as R
from facegen.engine.errors import UnsafePickleError, UnsupportedModelError
from facegen.engine.loaders import load_generator

FIX = Path(__file__).resolve().parent / "fixtures" / "rosinality-tiny"
CKPT = FIX / "stylegan2-tiny.pt"
TRAIN = FIX / "stylegan2-tiny-train.pt"
TOL = 1e-4


@pytest.fixture(scope="module")
def ref():
    torch.set_num_threads(1)
    return load_file(str(FIX / "io.safetensors"))


@pytest.fixture(scope="module")
def G():
    return load_generator(CKPT)


def diff(a, b) -> float:
    return float((a - b).abs().max())


def test_architecture_is_read_from_the_tensor_shapes(G):
    assert (G.img_resolution, G.num_ws, G.w_dim, G.z_dim) == (64, 10, 64, 64)
    assert G.mapping.num_layers == 2
    assert G.synthesis.channels == {4: 32, 8: 32, 16: 32, 32: 32, 64: 16}        # channel_multiplier 1, / 16
    assert G.meta["format"] == "rosinality-pt" and G.meta["checkpoint_key"] == "g_ema"
    assert G.meta["w_avg"] == "latent_avg"


def test_mapping_and_latent_avg(G, ref):
    with torch.no_grad():
        ws = G.mapping(ref["z"], None)
    assert diff(ws[:, 0], ref["ws"]) <= TOL
    assert diff(ws, ref["ws_plus"]) <= TOL
    assert torch.equal(G.mapping.w_avg, ref["latent_avg"])


@pytest.mark.parametrize("key,noise_mode", [("img_const", "const"), ("img_none", "none")])
def test_images_from_z(G, ref, key, noise_mode):
    """rosinality's randomize_noise=False is facegen's noise_mode='const' (the stored noise maps); zero noise
    maps are noise_mode='none'."""
    with torch.no_grad():
        img = G.synthesis(G.mapping(ref["z"], None), noise_mode=noise_mode)
    assert diff(img, ref[key]) <= TOL


def test_noise_maps_matter(ref):
    """The stored outputs with and without noise differ, so the two tests above each check the noise path."""
    assert diff(ref["img_const"], ref["img_none"]) > 0.1


def test_truncation_toward_latent_avg(G, ref):
    with torch.no_grad():
        img = G.synthesis(G.mapping(ref["z"], None, truncation_psi=0.7), noise_mode="const")
    assert diff(img, ref["img_psi07"]) <= TOL


def test_style_mixing(G, ref):
    """rosinality's inject_index=4: layers 0-3 from z, 4-9 from z2."""
    with torch.no_grad():
        ws = L.style_mix(G.mapping(ref["z"], None), G.mapping(ref["z2"], None), range(4, G.num_ws))
        img = G.synthesis(ws, noise_mode="const")
    assert diff(ws, ref["ws_mix"]) <= TOL
    assert diff(img, ref["img_mix"]) <= TOL


def test_wplus_input(G, ref):
    with torch.no_grad():
        img = G.synthesis(ref["wplus"], noise_mode="const")
    assert diff(img, ref["img_wplus"]) <= TOL


def test_given_noise_maps(G, ref):
    """rosinality's noise=[noise_0 ... noise_8] (layer j = b4.conv1, then conv0 / conv1 of each larger block):
    set as the constant noise of a copy, the images match -- the layer order and the noise strengths are right."""
    Gc = copy.deepcopy(G)
    layers = [Gc.synthesis.b4.conv1] + [getattr(getattr(Gc.synthesis, f"b{r}"), c)
                                        for r in Gc.synthesis.block_resolutions[1:] for c in ("conv0", "conv1")]
    assert len(layers) == 9
    for j, layer in enumerate(layers):
        layer.noise_const.copy_(ref[f"noise_{j}"][0, 0])
    with torch.no_grad():
        img = Gc.synthesis(Gc.mapping(ref["z"], None), noise_mode="const")
    assert diff(img, ref["img_noise"]) <= TOL


def test_train_snapshot_uses_g_ema_and_estimates_w_avg(ref):
    """train.py's layout: args is an argparse.Namespace (the one extra global allowed), g_ema is taken (not g),
    and without latent_avg w_avg is the mean of the mapping (rosinality's own mean_latent is stored as a check)."""
    G2 = load_generator(TRAIN)
    with torch.no_grad():
        img = G2.synthesis(G2.mapping(ref["z"], None), noise_mode="const")
    assert diff(img, ref["img_const"]) <= TOL
    assert diff(ref["img_g"], ref["img_const"]) > 0.1           # g differs, so taking g would fail above
    assert G2.meta["w_avg"].startswith("estimated")
    assert diff(G2.mapping.w_avg, ref["latent_avg"]) < 0.2      # 10 000 vs their 4096 samples; |latent_avg| ~ 1.8
    assert float(ref["latent_avg"].abs().max()) > 1.0


def test_any_suffix_zip_checkpoint_and_folder_roundtrip(G, ref, tmp_path):
    """A torch zip checkpoint is recognised by its content, and the converted generator saves and loads as a
    Hub-native folder with the same fingerprint and images."""
    other = tmp_path / "stylegan2.ckpt"
    shutil.copy(CKPT, other)
    assert load_generator(other).fingerprint == G.fingerprint
    G.save_pretrained(tmp_path / "folder")
    G3 = load_generator(tmp_path / "folder")
    assert G3.fingerprint == G.fingerprint
    with torch.no_grad():
        assert diff(G3.synthesis(ref["wplus"], noise_mode="const"), ref["img_wplus"]) <= TOL


class _MakeDir:
    """Unpickling this would call os.makedirs(path): the loader must refuse it before anything runs."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def test_refuses_a_checkpoint_that_would_run_code(tmp_path):
    marker = tmp_path / "was-run"
    bad = tmp_path / "evil.pt"
    torch.save({"g_ema": torch.load(CKPT, weights_only=True)["g_ema"], "args": _MakeDir(str(marker))}, bad)
    with pytest.raises(UnsafePickleError, match="makedirs"):
        load_generator(bad)
    assert not marker.exists()


def test_namespace_is_the_only_extra_global(tmp_path):
    p = tmp_path / "fraction.pt"
    ckpt = torch.load(CKPT, weights_only=True)
    ckpt["args"] = argparse.Namespace(size=64, lr=fractions.Fraction(1, 500))
    torch.save(ckpt, p)
    with pytest.raises(UnsafePickleError, match="Fraction"):
        load_generator(p)


def test_refuses_what_is_not_a_rosinality_generator(tmp_path):
    other = tmp_path / "classifier.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(UnsupportedModelError, match="not a rosinality StyleGAN2 checkpoint"):
        load_generator(other)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(UnsupportedModelError, match="not a checkpoint dict"):
        load_generator(tensor)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UnsupportedModelError, match="could not be read"):
        load_generator(junk)


def test_refuses_a_channel_table_facegen_cannot_build():
    sd = dict(torch.load(CKPT, weights_only=True)["g_ema"])
    w = sd["convs.2.conv.weight"]                                   # the 16 px block: 32 -> 20 output channels
    sd["convs.2.conv.weight"] = w[:, :20]
    with pytest.raises(UnsupportedModelError, match="channel_base"):
        R.architecture(sd, "patched")

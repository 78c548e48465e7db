"""The e4e encoder as a pack encoder (facegen.packs.e4e, `pack import-encoder --format e4e`).

The golden fixture tests/fixtures/e4e-tiny/ holds a tiny random e4e model in e4e's checkpoint layout with the
outputs e4e's own code computed (its README says how and what was narrowed): facegen's encoder must give the
same w+ and, through the checkpoint's decoder loaded by facegen.engine.rosinality, the same images (<= 1e-4).
An imported e4e pack then encodes a photo through encode_photo in one encoder pass.
"""

import argparse
import fractions
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from facegen.engine.errors import InputError, UnsafePickleError, UnsupportedModelError
from facegen.engine.loaders import load_generator
from facegen.features.encode import encode_photo
from facegen.packs import e4e
from facegen.packs.cli import cli_main
from facegen.packs.encoder import EncoderMismatchError, encoder_for
from facegen.packs.pack import Pack

FIX = Path(__file__).resolve().parent / "fixtures" / "e4e-tiny"
CKPT = FIX / "e4e-tiny.pt"
ROSINALITY = Path(__file__).resolve().parent / "fixtures" / "rosinality-tiny" / "stylegan2-tiny.pt"
TOL = 1e-4


@pytest.fixture(scope="module")
def ref():
    torch.set_num_threads(1)
    return load_file(str(FIX / "io.safetensors"))


@pytest.fixture(scope="module")
def E():
    return e4e.from_checkpoint(CKPT, input_size=64)


@pytest.fixture(scope="module")
def D():
    """The checkpoint's decoder, loaded from the e4e file itself."""
    return load_generator(CKPT)


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("e4e") / "pack"
    assert cli_main(["import-encoder", "--format", "e4e", str(CKPT), "--model", str(CKPT), "--out", str(out),
                     "--input-size", "64"]) == 0
    return out


def diff(a, b) -> float:
    return float((torch.as_tensor(a) - torch.as_tensor(b)).abs().max())


def test_structure_is_read_from_the_checkpoint(E):
    assert len(E.body) == 24 and E.taps == (6, 20, 23)                  # IR-SE50: 3 + 4 + 14 + 3 units
    assert [len(s.convs) // 2 for s in E.styles] == [4, 4, 4, 5, 5, 5, 5, 6]
    assert (E.num_ws, E.w_dim) == (8, 24)


def test_w_plus_reproduces_e4e(E, ref):
    with torch.no_grad():
        assert diff(E.offsets(ref["x"]), ref["offsets"]) <= TOL
        assert diff(E(ref["x"]), ref["w_plus"]) <= TOL
    assert diff(ref["offsets"][0], ref["offsets"][1]) > 0.1             # the two inputs give different latents


def test_decoder_images_reproduce_e4e(D, ref):
    assert D.meta["checkpoint_key"] == "state_dict/decoder" and (D.num_ws, D.w_dim) == (8, 24)
    with torch.no_grad():
        assert diff(D.synthesis(ref["w_plus"], noise_mode="const"), ref["img"]) <= TOL
        assert diff(D.synthesis(ref["w_plus"], noise_mode="none"), ref["img_noise_none"]) <= TOL
    assert diff(D.mapping.w_avg, ref["latent_avg"][0]) == 0


def test_other_input_sizes_are_resized_to_the_encoder_input(E, ref):
    """Larger inputs are area-averaged to the encoder's 64 px: each stored pixel blown up to 3x3 plus a zero-mean
    3x3 pattern (centre +0.4) averages back exactly, so w+ is unchanged (sampling the centres would not)."""
    a = 0.05
    tile = torch.full((3, 3), -a)
    tile[1, 1] = 8 * a
    big = ref["x"].repeat_interleave(3, dim=2).repeat_interleave(3, dim=3) + tile.repeat(64, 64)
    with torch.no_grad():
        assert diff(E(big), ref["w_plus"]) <= TOL


def test_import_writes_a_pack_encoder_that_encoder_for_loads(pack_dir, D, ref):
    cfg = json.loads((pack_dir / "encoder" / "config.json").read_text())
    assert cfg["_class_name"] == "E4EEncoder" and cfg["meta"]["generator_fingerprint"] == D.fingerprint
    pack = Pack.load(pack_dir)
    E2 = encoder_for(D, pack)
    assert isinstance(E2, e4e.E4EEncoder)
    with torch.no_grad():
        assert diff(E2(ref["x"]), ref["w_plus"]) <= TOL
    metrics = json.loads((pack_dir / "metrics.json").read_text())
    assert metrics["steps"]["encoder"]["decoder_max_parameter_difference"] == 0.0
    with pytest.raises(InputError, match="--replace"):
        cli_main(["import-encoder", "--format", "e4e", str(CKPT), "--model", str(CKPT), "--out", str(pack_dir)])


def test_encode_photo_is_one_encoder_pass(pack_dir, D, ref):
    """An already aligned crop at the generator's 32 px, no refinement: the result is the encoder's w+ (the crop
    resized to its 64 px input) after exactly one forward call."""
    from PIL import Image
    from facegen.features.encode import to_tensor
    pack = Pack.load(pack_dir)
    E2 = encoder_for(D, pack)
    crop = np.asarray(Image.fromarray(ref["x_uint8"][0].numpy()).resize((32, 32), Image.BOX))
    with torch.no_grad():
        expected = E2(to_tensor(crop))[0]
    calls = []
    hook = E2.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    try:
        r = encode_photo(D, pack, None, aligned=crop, refine_steps=0)
    finally:
        hook.remove()
    assert calls == [1]
    assert r["start"] == "encoder" and "e4e" in r["note"] and "one forward pass" in r["note"]
    assert diff(r["encoder_ws"], expected) <= 1e-6 and diff(r["ws"], expected) <= 1e-6
    assert diff(expected, ref["w_plus"][0]) < diff(expected, ref["w_plus"][1])     # it reads this face


def test_encode_a_real_photo_with_refinement(pack_dir, D):
    spec = importlib.util.find_spec("skimage")
    photo = Path(spec.origin).parent / "data" / "astronaut.png" if spec else None
    if photo is None or not photo.is_file():
        pytest.skip("scikit-image's astronaut.png is not installed")
    r = encode_photo(D, Pack.load(pack_dir), str(photo), refine_steps=5, time_budget=20)
    assert r["start"] == "encoder" and r["aligned"].shape == (32, 32, 3)
    assert r["refine"].steps >= 1 and r["refine"].final_loss <= r["refine"].initial_loss
    assert np.isfinite(r["ws"]).all() and r["ws"].shape == (8, 24)


def test_refuses_another_generator(tmp_path, D):
    with pytest.raises(EncoderMismatchError, match="latents"):          # another shape: rosinality-tiny
        cli_main(["import-encoder", "--format", "e4e", str(CKPT), "--model", str(ROSINALITY),
                  "--out", str(tmp_path / "p1")])
    other = load_generator(CKPT)                                         # the same shape, other weights
    with torch.no_grad():
        other.synthesis.b8.conv0.weight.add_(0.01)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(EncoderMismatchError, match="its own decoder"):
        cli_main(["import-encoder", "--format", "e4e", str(CKPT), "--model", str(tmp_path / "other"),
                  "--out", str(tmp_path / "p2")])


def test_checkpoint_variants(tmp_path, ref):
    """opts as an argparse.Namespace loads (the allow-listed global); any other global is refused before it
    runs; a pSp GradualStyleEncoder checkpoint is refused by name."""
    ckpt = torch.load(CKPT, weights_only=True)
    ns = tmp_path / "ns.pt"
    torch.save({**ckpt, "opts": argparse.Namespace(**ckpt["opts"])}, ns)
    with torch.no_grad():
        assert diff(e4e.from_checkpoint(ns, input_size=64)(ref["x"]), ref["w_plus"]) <= TOL
    bad = tmp_path / "fraction.pt"
    torch.save({**ckpt, "opts": {**ckpt["opts"], "learning_rate": fractions.Fraction(1, 10000)}}, bad)
    with pytest.raises(UnsafePickleError, match="Fraction"):
        e4e.from_checkpoint(bad)
    psp = tmp_path / "psp.pt"
    torch.save({**ckpt, "opts": {**ckpt["opts"], "encoder_type": "GradualStyleEncoder"}}, psp)
    with pytest.raises(UnsupportedModelError, match="GradualStyleEncoder"):
        e4e.from_checkpoint(psp)
    no_avg = tmp_path / "no-avg.pt"
    torch.save({k: v for k, v in ckpt.items() if k != "latent_avg"}, no_avg)
    with pytest.raises(UnsupportedModelError, match="latent_avg"):
        e4e.from_checkpoint(no_avg)

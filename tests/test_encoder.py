"""facegen.features.encode and facegen.packs.bank: the encoder network, training, refinement, latent banks, CLIs.

Fast tests use a small random generator of mini's shape; tests of the shipped assets (assets/mini,
assets/packs/mini/encoder, assets/banks) skip with a reason when those are absent.
"""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from facegen.packs import bank as B
from facegen.features import encode as enc
from facegen.world import render as world
from facegen.engine.errors import FacegenError, InputError
from facegen.engine.synthesis import synthesize

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT / "assets" / "mini"
ENCODER = ROOT / "assets" / "packs" / "mini" / "encoder"


def _random_generator(seed):
    from facegen.engine.networks import Generator
    torch.manual_seed(seed)
    G = Generator(z_dim=128, c_dim=0, w_dim=128, img_resolution=64, mapping_kwargs=dict(num_layers=4),
                  synthesis_kwargs=dict(channel_base=1024, channel_max=128)).eval()
    G.meta["name"] = f"random{seed}"
    return G


@pytest.fixture(scope="module")
def G():
    torch.set_num_threads(1)
    return _random_generator(0)


@pytest.fixture(scope="module")
def E(G):
    cfg = enc.TrainConfig(minutes=1, max_steps=4, batch=8, real_pool=16, log_every=2)
    E, stats = enc.train_encoder(G, cfg, log=lambda m: None)
    assert stats["steps"] == 4 and stats["images_seen"] == 32
    E.meta["generator_fingerprint"] = G.fingerprint
    return E


def test_encoder_shapes_and_start_at_average(G):
    E = enc.Encoder(G.num_ws, G.w_dim)
    E.w_avg.copy_(G.mapping.w_avg)
    imgs = world.render_batch([20_000_000, 20_000_001], size=64)[0]
    ws = enc.encode(E, imgs)
    assert ws.shape == (2, G.num_ws, G.w_dim) and ws.dtype == np.float32
    # The last layer starts at zero: an untrained encoder predicts the average face.
    assert np.allclose(ws, G.mapping.w_avg.numpy()[None, None], atol=1e-6)
    # Larger inputs are resized to the encoder's input.
    big = world.render_seed(20_000_002, size=128).image
    assert enc.encode(E, big).shape == (1, G.num_ws, G.w_dim)
    with pytest.raises(InputError):
        enc.encode(E, np.zeros((2, 64, 64), np.uint8))


def test_save_load_roundtrip_and_generator_check(G, E, tmp_path):
    E.save_pretrained(tmp_path / "e")
    cfg = json.loads((tmp_path / "e" / "config.json").read_text())
    assert cfg["_class_name"] == "Encoder" and cfg["meta"]["generator_fingerprint"] == G.fingerprint
    E2 = enc.load_encoder(tmp_path / "e", G)
    x = world.render_batch([20_000_003], size=64)[0]
    assert np.allclose(enc.encode(E, x), enc.encode(E2, x), atol=1e-5)
    assert enc.find_encoder(G, [tmp_path / "e"]) == tmp_path / "e"
    other = _random_generator(1)
    with pytest.raises(enc.EncoderMismatchError, match="trained for generator"):
        enc.load_encoder(tmp_path / "e", other)
    assert enc.find_encoder(other, [tmp_path / "e"]) is None
    with pytest.raises(FacegenError, match="No encoder"):
        enc.Encoder.from_pretrained(tmp_path / "missing")


def test_refine_improves_and_respects_limits(G, E):
    # A target the generator can make exactly: refinement from the encoder's guess must get closer.
    w_true = (G.mapping.w_avg + 0.6 * torch.randn(1, 1, G.w_dim, generator=torch.Generator().manual_seed(3)))
    w_true = w_true.expand(1, G.num_ws, G.w_dim)
    target = synthesize(G, w_true)[0]
    w0 = enc.encode(E, target)[0]
    calls = []
    r = enc.refine(G, target, w0, steps=40, time_budget=30, progress=lambda f, s: calls.append(f), patience=1000)
    assert r.steps == 40 and r.stopped_by == "steps" and r.final_loss < 0.8 * r.initial_loss
    before = enc.reconstruction_metrics(synthesize(G, w0[None])[0], target)
    after = enc.reconstruction_metrics(synthesize(G, r.ws[None])[0], target)
    assert after["mse"] < before["mse"]
    assert calls and 0 < calls[-1] <= 1
    # Time budget.
    t = time.perf_counter()
    r = enc.refine(G, target, w0, steps=5000, time_budget=0.5, perceptual="none")
    assert r.stopped_by in ("time", "early") and time.perf_counter() - t < 3
    # Early stop on a plateau (a huge patience threshold means "no improvement" at once).
    r = enc.refine(G, target, w0, steps=500, time_budget=30, patience=3, min_rel_improvement=0.99)
    assert r.stopped_by == "early" and r.steps <= 6
    assert enc.refine(G, target, w0, steps=0).stopped_by == "no-steps"
    with pytest.raises(InputError):
        enc.refine(G, target, w0, steps=-1)
    with pytest.raises(InputError):
        enc.refine(G, target, w0, time_budget=0)


def test_figures():
    a = world.render_seed(20_000_004).image
    b = world.render_seed(20_000_005).image
    m = enc.error_map(a, b)
    assert m.shape == a.shape and m.dtype == np.uint8 and enc.error_map(a, a).max() == 0
    fig = enc.comparison_figure([("a", a), ("b", b)], size=96)
    assert fig.shape[0] > 96 and fig.shape[1] > 2 * 96
    assert enc.loss_curve([1.0, 0.5, 0.4]).ndim == 3
    assert enc.reconstruction_metrics(a, a)["psnr"] > 100


def test_bank_build_save_load(G, E, tmp_path):
    photos = tmp_path / "photos"
    files = B.render_world_characters(photos, size=64)
    assert len(files) == len(B.WORLD_CHARACTERS) == 12
    for f in files[3:]:
        f.unlink()
    (photos / "broken.png").write_bytes(b"not a png")
    bank, skipped = B.build_bank(G, E, photos, name="test bank", refine_steps=3, time_budget=5, log=lambda m: None)
    assert len(bank) == 3 and [s[0] for s in skipped] == ["broken.png"]
    assert bank.names[0] == "Ada Quill"
    out = bank.save(tmp_path / "bank.npz")
    with np.load(out, allow_pickle=False) as d:           # no pickles anywhere
        assert set(d.files) >= {"names", "ws", "thumbs", "meta"}
        assert d["names"].dtype.kind == "U"
    b2 = B.load_bank(out, G)
    assert b2.names == bank.names and np.allclose(b2.ws, bank.ws) and b2.matches(G)
    assert b2.meta["fingerprint"] == G.fingerprint and b2.meta["entries"][0]["file"] == "ada_quill.png"
    assert b2.index("ada quill") == 0 and b2.index(2) == 2
    with pytest.raises(InputError, match="not in the bank"):
        b2.index("Nobody")
    other = _random_generator(1)
    with pytest.raises(B.BankError, match="made for generator"):
        B.load_bank(out, other)
    assert [b.title for b in B.banks_for(G, [tmp_path])] == ["test bank"]
    assert B.banks_for(other, [tmp_path]) == []
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 nonsense")
    with pytest.raises(B.BankError):
        B.load_bank(bad)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(B.BankError):
        B.load_bank(tmp_path / "obj.npy")
    with pytest.raises(B.BankError):                      # checked before anything goes to the network
        B.push_bank(bad, "someone/banks")
    with pytest.raises(FacegenError, match="not in the local Hub cache|does not exist|Cannot get"):
        B.load_bank("hf://facegen-studio/no-such-banks/mini.npz")      # HF_HUB_OFFLINE=1 in tests
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no photos"):
        B.build_bank(G, E, tmp_path / "empty")


def test_cli_encoder_train_and_bank(G, tmp_path, capsys):
    from facegen.__main__ import main
    gdir = G.save_pretrained(tmp_path / "g")
    rc = main(["encoder", "train", "--model", str(gdir), "--out", str(tmp_path / "e"), "--max-steps", "2",
               "--batch", "4", "--real-pool", "0", "--eval-n", "2", "--threads", "1"])
    assert rc == 0
    rec = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert rec["generator_fingerprint"] == G.fingerprint and rec["command"].startswith("python -m facegen encoder")
    assert "encoder" in rec["metrics"] and (tmp_path / "e" / "README.md").is_file()
    photos = tmp_path / "p"
    assert main(["bank", "world-characters", str(photos), "--size", "64"]) == 0
    for f in sorted(photos.glob("*.png"))[2:]:
        f.unlink()
    capsys.readouterr()
    rc = main(["bank", "build", str(photos), str(tmp_path / "b.npz"), "--model", str(gdir), "--encoder",
               str(tmp_path / "e"), "--refine-steps", "2"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["faces"] == 2
    assert main(["bank", "show", str(tmp_path / "b.npz")]) == 0
    assert "Ada Quill" in capsys.readouterr().out
    assert main(["bank", "show", str(tmp_path / "missing.npz")]) == 2     # typed error, no traceback


# ---------------------------------------------------------------------------
# The shipped encoder and bank for mini
# ---------------------------------------------------------------------------

needs_assets = pytest.mark.skipif(not (MINI / "config.json").is_file() or not (ENCODER / "config.json").is_file(),
                                  reason="assets/mini or assets/packs/mini/encoder is not built yet "
                                         "(python -m facegen encoder train --model mini --out assets/packs/mini/encoder)")


@pytest.fixture(scope="module")
def mini():
    import facegen
    return facegen.load_generator("mini")


@needs_assets
def test_shipped_encoder_matches_mini_and_refinement_helps(mini):
    E = enc.load_encoder(ENCODER, mini)            # raises if the fingerprint is not mini's
    meta = json.loads((ENCODER / "metrics.json").read_text())
    assert meta["generator_fingerprint"] == mini.fingerprint
    assert "python -m facegen encoder train" in (ENCODER / "README.md").read_text()
    assert (ENCODER / "model.safetensors").stat().st_size < 20 * 2 ** 20
    imgs = world.render_batch(range(20_000_100, 20_000_102), size=64)[0]     # never used in training
    t = time.perf_counter()
    ws = enc.encode(E, imgs[:1])
    assert time.perf_counter() - t < 0.5
    ws = enc.encode(E, imgs)
    for img, w in zip(imgs, ws):
        r = enc.refine(mini, img, w, steps=60, time_budget=10)
        e0 = enc.reconstruction_metrics(synthesize(mini, w[None])[0], img)["mse"]
        e1 = enc.reconstruction_metrics(synthesize(mini, r.ws[None])[0], img)["mse"]
        assert e1 < e0


@needs_assets
def test_shipped_bank_matches_mini(mini):
    banks = B.banks_for(mini)
    assert banks, "no bank in assets/banks matches assets/mini"
    b = banks[0]
    assert len(b) == 12 and "Ada Quill" in b.names
    assert b.thumbs.shape[1:] == (64, 64, 3)

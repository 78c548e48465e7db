"""Photo encoding on every generator: the encoder pack component (facegen.packs.encoder), projection and refinement
(facegen.features.encode), bank building (facegen.features.banks) and bank files (facegen.packs.bank), the CLIs.

Fast tests use a small random generator of mini's shape; the projection tests use the official-format
StyleGAN2-ADA golden fixture (../shared/fixtures, skipped when absent); tests of the shipped assets (assets/mini,
mini's pack) skip with a reason when those are absent.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facegen.engine.errors import FacegenError, InputError
from facegen.engine.synthesis import synthesize
from facegen.features import banks as FB
from facegen.features import encode as enc
from facegen.packs import bank as B
from facegen.packs import encoder as PE
from facegen.packs.pack import Pack, new_manifest
from facegen.world import characters as WC
from facegen.world import render as world

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT / "assets" / "mini"
MINI_PACK = ROOT / "assets" / "packs" / "mini"
ADA = ROOT.parent / "shared" / "fixtures" / "stylegan2-ada-tiny" / "G_ema.pkl"
needs_ada = pytest.mark.skipif(not ADA.is_file(), reason=f"the StyleGAN2-ADA golden fixture is absent ({ADA})")


def _random_generator(seed):
    from facegen.engine.networks import Generator
    torch.manual_seed(seed)
    G = Generator(z_dim=128, c_dim=0, w_dim=128, img_resolution=64, mapping_kwargs=dict(num_layers=4),
                  synthesis_kwargs=dict(channel_base=1024, channel_max=128)).eval()
    G.meta["name"] = f"random{seed}"
    return G


class FakeClock:
    """Stands in for the `time` module inside one facegen module: every reading advances `tick` seconds."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def _read(self) -> float:
        self.now += self.tick
        return self.now

    perf_counter = time = monotonic = _read


def _pack_with_encoder(G, E, folder: Path) -> Pack:
    """A pack folder for G whose encoder component is E (labeller "world": renders dlib misses still align)."""
    E.save_pretrained(folder / "encoder", generator_fingerprint=G.fingerprint)
    m = new_manifest(G, "test", labeller="world", perceptual="pixels")
    m["components"]["encoder"] = "encoder"
    pack = Pack(folder, m)
    pack.save()
    return pack


@pytest.fixture(scope="module")
def G():
    torch.set_num_threads(1)
    return _random_generator(0)


@pytest.fixture(scope="module")
def E(G):
    cfg = PE.TrainConfig(minutes=1, max_steps=4, batch=8, real_pool=16, log_every=2)
    pool = torch.from_numpy(world.render_batch(range(16), size=64)[0]).permute(0, 3, 1, 2).float() / 127.5 - 1
    E, stats = PE.train_encoder(G, cfg, real_pool=pool, log=lambda m: None)
    assert stats["steps"] == 4 and stats["images_seen"] == 32
    E.meta["generator_fingerprint"] = G.fingerprint
    return E


@pytest.fixture(scope="module")
def ada():
    if not ADA.is_file():
        pytest.skip(f"the StyleGAN2-ADA golden fixture is absent ({ADA})")
    import facegen
    return facegen.load_generator(str(ADA))


def test_encoder_shapes_and_start_at_average(G):
    E = PE.Encoder(G.num_ws, G.w_dim)
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


def test_encoder_comes_from_the_pack_and_refuses_other_generators(G, E, tmp_path):
    pack = _pack_with_encoder(G, E, tmp_path / "pack")
    cfg = json.loads((tmp_path / "pack" / "encoder" / "config.json").read_text())
    assert cfg["_class_name"] == "Encoder" and cfg["meta"]["generator_fingerprint"] == G.fingerprint
    E2 = PE.encoder_for(G, Pack.load(tmp_path / "pack"))
    x = world.render_batch([20_000_003], size=64)[0]
    assert np.allclose(enc.encode(E, x), enc.encode(E2, x), atol=1e-5)
    assert PE.encoder_for(G, None) is None
    assert PE.encoder_for(G, Pack(tmp_path, new_manifest(G, "bare", None))) is None      # a pack without an encoder
    other = _random_generator(1)
    with pytest.raises(PE.EncoderMismatchError, match="trained for generator"):
        PE.load_encoder(tmp_path / "pack" / "encoder", other)
    with pytest.raises(FacegenError, match="built for generator"):
        PE.encoder_for(other, pack)
    with pytest.raises(FacegenError, match="No encoder"):
        PE.Encoder.from_pretrained(tmp_path / "missing")


def test_refine_improves_and_respects_limits(G, E):
    # A target the generator can make exactly: refinement from the encoder's guess must get closer.
    w_true = (G.mapping.w_avg + 0.6 * torch.randn(1, 1, G.w_dim, generator=torch.Generator().manual_seed(3)))
    w_true = w_true.expand(1, G.num_ws, G.w_dim)
    target = synthesize(G, w_true)[0]
    w0 = enc.encode(E, target)[0]
    calls = []
    r = enc.refine(G, target, w0, steps=40, time_budget=30, progress=lambda f, s: calls.append(f), patience=1000)
    assert r.steps == 40 and r.stopped_by == "steps" and r.final_loss < 0.8 * r.initial_loss
    assert "MS-SSIM" in r.perceptual           # no pack, no discriminator: pixels + MS-SSIM
    before = enc.reconstruction_metrics(synthesize(G, w0[None])[0], target)
    after = enc.reconstruction_metrics(synthesize(G, r.ws[None])[0], target)
    assert after["mse"] < before["mse"]
    assert calls and 0 < calls[-1] <= 1
    # Time budget, on a clock that advances 0.1 s per reading (no wall-clock timing here; bench/timing.py
    # measures the real overshoot): a 0.5 s budget stops the loop after at most 5 steps, a 1 s one later.
    stops = {}
    for budget in (0.5, 1.0):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(enc, "time", FakeClock(0.1))
            stops[budget] = enc.refine(G, target, w0, steps=5000, time_budget=budget, perceptual="none")
    assert stops[0.5].stopped_by == "time" and 1 <= stops[0.5].steps <= 5, stops[0.5]
    assert stops[1.0].stopped_by == "time" and stops[0.5].steps < stops[1.0].steps <= 10, stops[1.0]
    assert stops[0.5].seconds >= 0.5
    # Early stop on a plateau (a huge patience threshold means "no improvement" at once).
    r = enc.refine(G, target, w0, steps=500, time_budget=30, patience=3, min_rel_improvement=0.99)
    assert r.stopped_by == "early" and r.steps <= 6
    assert enc.refine(G, target, w0, steps=0).stopped_by == "no-steps"
    with pytest.raises(InputError):
        enc.refine(G, target, w0, steps=-1)
    with pytest.raises(InputError):
        enc.refine(G, target, w0, time_budget=0)
    with pytest.raises(InputError, match="'w' or 'w\\+'"):
        enc.project(G, target, mode="z")


def test_projection_leaves_the_generator_untouched(G):
    """The projector optimises noise maps on a private copy: G's own noise buffers and weights never change."""
    before = {k: v.clone() for k, v in G.state_dict().items()}
    target = synthesize(G, G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(5)), None))[0]
    r = enc.project(G, target, steps=3, time_budget=30, perceptual="pixels")
    assert r.steps == 3 and r.mode == "w"
    assert np.allclose(r.ws, r.ws[:1])          # W: one w broadcast to every layer
    for k, v in G.state_dict().items():
        assert torch.equal(v, before[k]), k


@needs_ada
def test_projection_of_a_generated_image_beats_the_start_and_the_average_face(ada):
    """Target = G(w_true) of the official-format ADA fixture (32 px). From w_avg, 40 projector steps in W with
    the default loss (no pack: the pickle's own D + pixel MSE) must gain >= 3 dB PSNR over the start
    (measured: +6.6 dB at 50 steps, 10.2 -> 16.8 dB) and beat the per-pixel mean of 256 samples."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        w_true = ada.mapping(torch.randn(1, ada.z_dim, generator=g), None, truncation_psi=0.7)
        samples = synthesize(ada, ada.mapping(torch.randn(256, ada.z_dim, generator=g), None))
    target = synthesize(ada, w_true)[0]
    start = synthesize(ada, ada.mapping.w_avg.expand(1, ada.num_ws, ada.w_dim))[0]
    mean_face = samples.astype(np.float64).mean(0).round().astype(np.uint8)
    r = enc.project(ada, target, mode="w", steps=40, time_budget=120)
    assert "discriminator" in r.perceptual and r.steps == 40
    psnr = {k: enc.reconstruction_metrics(img, target)["psnr"] for k, img in
            {"start": start, "mean": mean_face, "projected": synthesize(ada, r.ws[None])[0]}.items()}
    assert psnr["projected"] >= psnr["start"] + 3.0, psnr
    assert psnr["projected"] > psnr["mean"] + 3.0, psnr
    assert r.final_loss < 0.5 * r.initial_loss


@needs_ada
def test_encode_photo_without_a_pack_projects_from_w_avg(ada):
    import importlib.util
    spec = importlib.util.find_spec("skimage")
    photo = Path(spec.origin).parent / "data" / "astronaut.png" if spec else None
    if photo is None or not photo.is_file():
        pytest.skip("scikit-image's astronaut.png is not installed")
    pytest.importorskip("dlib")
    r = enc.encode_photo(ada, None, photo, refine_steps=15, time_budget=30, space="w+")
    assert r["start"] == "w_avg" and r["aligned"].shape == (32, 32, 3) and r["align"].method == "ffhq"
    assert "average face" in r["note"] and "no feature pack" in r["note"] and "discriminator" in r["note"]
    assert np.allclose(r["encoder_ws"], ada.mapping.w_avg.numpy()[None])
    assert r["refine"].steps == 15 and r["refine"].mode == "w+"
    assert r["refined_metrics"]["mse"] < r["encoder_metrics"]["mse"]
    with pytest.raises(InputError, match="projection space"):
        enc.encode_photo(ada, None, photo, space="z")


def test_figures():
    a = world.render_seed(20_000_004).image
    b = world.render_seed(20_000_005).image
    m = enc.error_map(a, b)
    assert m.shape == a.shape and m.dtype == np.uint8 and enc.error_map(a, a).max() == 0
    fig = enc.comparison_figure([("a", a), ("b", b)], size=96)
    assert fig.shape[0] > 96 and fig.shape[1] > 2 * 96
    curve = enc.loss_curve([1.0, 0.5, 0.4])
    assert curve.ndim == 3 and (curve != 255).any()
    assert enc.reconstruction_metrics(a, a)["psnr"] > 100


def test_bank_build_save_load(G, E, tmp_path):
    pack = _pack_with_encoder(G, E, tmp_path / "pack")
    photos = tmp_path / "photos"
    files = WC.render_world_characters(photos, size=64)
    assert len(files) == len(WC.WORLD_CHARACTERS) == 12
    for f in files[3:]:
        f.unlink()
    (photos / "broken.png").write_bytes(b"not a png")
    bank, skipped = FB.build_bank(G, pack, photos, name="test bank", refine_steps=3, time_budget=5, log=lambda m: None)
    assert len(bank) == 3 and [s[0] for s in skipped] == ["broken.png"]
    assert bank.names[0] == "Ada Quill" and bank.meta["entries"][0]["start"] == "encoder"
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
        FB.build_bank(G, pack, tmp_path / "empty")
    # Without a pack the bank is still built, by projection from w_avg (alignment without a labeller: a render
    # dlib finds, Dmitri Holm's, is kept; Ada Quill's, which dlib misses at 64 px, is refused).
    photos2 = tmp_path / "photos2"
    for f in WC.render_world_characters(photos2, size=64)[1:]:
        if f.name != "dmitri_holm.png":
            f.unlink()
    bank, skipped = FB.build_bank(G, None, photos2, refine_steps=2, time_budget=5, log=lambda m: None)
    assert bank.names == ["Dmitri Holm"] and [s[0] for s in skipped] == ["ada_quill.png"]
    assert bank.meta["entries"][0]["start"] == "w_avg" and bank.meta["encoder_fingerprint"] is None


def test_cli_encoder_train_and_bank(G, tmp_path, capsys):
    from facegen.__main__ import main
    gdir = G.save_pretrained(tmp_path / "g")
    rc = main(["encoder", "train", "--model", str(gdir), "--out", str(tmp_path / "pack" / "encoder"),
               "--max-steps", "2", "--batch", "4", "--real-pool", "0", "--eval-n", "2", "--threads", "1"])
    assert rc == 0
    rec = json.loads((tmp_path / "pack" / "encoder" / "metrics.json").read_text())
    assert rec["generator_fingerprint"] == G.fingerprint and rec["command"].startswith("python -m facegen encoder")
    assert "encoder" in rec["metrics"] and (tmp_path / "pack" / "encoder" / "README.md").is_file()
    assert "MS-SSIM" in rec["train"]["perceptual"]       # a generator with no pack and no D
    m = new_manifest(G, "cli", labeller="world")
    m["components"]["encoder"] = "encoder"
    Pack(tmp_path / "pack", m).save()
    photos = tmp_path / "p"
    assert main(["bank", "world-characters", str(photos), "--size", "64"]) == 0
    for f in sorted(photos.glob("*.png"))[2:]:
        f.unlink()
    capsys.readouterr()
    rc = main(["bank", "build", str(photos), str(tmp_path / "b.npz"), "--model", str(gdir), "--pack",
               str(tmp_path / "pack"), "--refine-steps", "2"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["faces"] == 2
    assert main(["bank", "show", str(tmp_path / "b.npz")]) == 0
    assert "Ada Quill" in capsys.readouterr().out
    assert main(["bank", "show", str(tmp_path / "missing.npz")]) == 2     # typed error, no traceback
    capsys.readouterr()
    enc_args = ["encoder", "encode", str(photos / "ada_quill.png"), "--model", str(gdir), "--outdir",
                str(tmp_path / "enc"), "--refine-steps", "2"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEGEN_PACKS", str(tmp_path / "pack"))          # find_pack: the CLI's own pack lookup
        assert main(enc_args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["start"] == "encoder" and (tmp_path / "enc" / "ada_quill.npz").is_file()
    assert main(enc_args + ["--no-pack"]) == 2     # no pack, no labeller: a render dlib cannot find is refused
    assert "No face" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# The shipped encoder and bank for mini
# ---------------------------------------------------------------------------

needs_assets = pytest.mark.skipif(not (MINI / "config.json").is_file() or not (MINI_PACK / "encoder" / "config.json").is_file(),
                                  reason="assets/mini or mini's pack encoder is not built yet "
                                         "(python -m facegen encoder train --model mini --out assets/packs/mini/encoder)")


@needs_assets
def test_shipped_encoder_matches_mini_and_refinement_helps(mini):
    from facegen.packs.pack import find_pack
    pack = find_pack(mini)
    assert pack is not None and pack.perceptual == "labeller" and pack.labeller == "world"
    E = PE.encoder_for(mini, pack)            # raises if the fingerprint is not mini's
    enc_dir = pack.path("encoder")
    meta = json.loads((enc_dir / "metrics.json").read_text())
    assert meta["generator_fingerprint"] == mini.fingerprint
    assert "python -m facegen encoder train" in (enc_dir / "README.md").read_text()
    assert (enc_dir / "model.safetensors").stat().st_size < 20 * 2 ** 20
    imgs = world.render_batch(range(20_000_100, 20_000_102), size=64)[0]     # never used in training
    ws = enc.encode(E, imgs)
    for img, w in zip(imgs, ws):
        r = enc.refine(mini, img, w, steps=60, time_budget=10, pack=pack)
        assert "'world' labeller" in r.perceptual
        e0 = enc.reconstruction_metrics(synthesize(mini, w[None])[0], img)["mse"]
        e1 = enc.reconstruction_metrics(synthesize(mini, r.ws[None])[0], img)["mse"]
        assert e1 < e0


@needs_assets
def test_shipped_encoder_beats_the_average_face_on_held_out_renders(mini):
    """Quality floor, measured: 32 face-world renders never used in training (seeds 20,000,100+) encoded by
    mini's pack encoder alone (no refinement) against the baseline every generator has, the average face
    G(w_avg). Measured: 19.2 dB vs 13.2 dB mean PSNR (+6.0 dB; the smallest gain +1.5 dB), and a face's
    encoding is 6x closer (MSE) to its own render than to the next render's."""
    from facegen.packs.pack import find_pack
    E = PE.encoder_for(mini, find_pack(mini))
    imgs = world.render_batch(range(20_000_100, 20_000_132), size=64)[0]
    rec = synthesize(mini, enc.encode(E, imgs))
    avg = synthesize(mini, mini.mapping.w_avg.expand(1, mini.num_ws, mini.w_dim))[0]
    psnr = lambda a, b: enc.reconstruction_metrics(a, b)["psnr"]      # noqa: E731
    gain = np.array([psnr(r, x) - psnr(avg, x) for r, x in zip(rec, imgs)])
    assert gain.mean() >= 3.0 and (gain > 0).mean() >= 0.9, gain.round(2)
    mse = lambda a, b: float(np.mean((a.astype(float) - b) ** 2))    # noqa: E731
    own = np.mean([mse(r, x) for r, x in zip(rec, imgs)])
    other = np.mean([mse(r, x) for r, x in zip(rec, np.roll(imgs, 1, axis=0))])
    assert own < 0.5 * other, (own, other)                                 # it encodes this face, not a face


@needs_assets
def test_shipped_bank_matches_mini(mini):
    banks = B.banks_for(mini)
    assert banks, "no bank in mini's pack matches assets/mini"
    b = banks[0]
    assert len(b) == 12 and "Ada Quill" in b.names
    assert b.thumbs.shape[1:] == (64, 64, 3)

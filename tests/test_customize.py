"""Customisation by class (facegen.features.customize): classes and clashes, rejection sampling, z-code
generators, the shipped assets and the fine-tuning hook of the training loop."""

from pathlib import Path

import numpy as np
import pytest
import torch

import facegen
from facegen.features import customize as cz
from facegen.engine.errors import InputError
from facegen.world.render import render_batch

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def G():
    return facegen.load_generator("mini").eval()


@pytest.fixture(scope="module")
def C():
    return cz.load_classifier()


# -- classes -------------------------------------------------------------------------------------

def test_parse_classes_normalises_and_deduplicates():
    assert cz.parse_classes(" Smiling, glasses ,smiling") == ["smiling", "glasses"]
    assert cz.parse_classes(["hair:red", "old"]) == ["hair:red", "old"]


@pytest.mark.parametrize("spec, message", [
    ("young, old", "Contradictory classes: 'young' and 'old'"),
    ("hair:red, hair:black", "'hair:red' and 'hair:black' exclude each other"),
    ("skin:dark,skin:light", "exclude each other"),
    ("smiling, neutral", "exclude each other"),
    ("female, beard", "never occur together"),
    ("bald, hair:blonde", "exclude each other"),
    ("smiling, purple", r"Unknown class 'purple'; choose from: smiling, neutral, old"),
    ("", "Pick at least one class"),
    ([], "Pick at least one class"),
])
def test_bad_classes_are_refused_with_a_clear_message(spec, message):
    with pytest.raises(InputError, match=message):
        cz.parse_classes(spec)


def test_class_predicates_follow_the_world_labels():
    _, labels = render_batch(range(40), size=64)
    tb = cz.world_table(labels)
    m = cz.class_mask(tb, ["glasses", "old", "hair:red", "bald"])
    assert m.shape == (40, 4) and m.dtype == bool
    for i, lab in enumerate(labels):
        assert m[i, 0] == lab["glasses"]
        assert m[i, 1] == (lab["age"] >= 0.6)
        assert m[i, 2] == (lab["hair_color"] == "red" and lab["hair_style"] != "bald")
        assert m[i, 3] == (lab["hair_style"] == "bald")


# -- shipped assets ------------------------------------------------------------------------------

def test_shipped_classifier_and_zcodes_load(G, C):
    assert C.classes == cz.class_names()
    for name, m in C.meta["test"].items():        # held-out renders
        assert m["accuracy"] > 0.75, (name, m)
    bank = cz.load_zcodes(G=G)
    assert bank.fingerprint == G.fingerprint
    assert set(bank.classes) == set(cz.class_names())
    assert (REPO / "assets" / "customize" / "README.md").exists()


def test_zcodes_refuse_another_generator(other_generator):
    with pytest.raises(InputError, match="trained for generator .* use rejection sampling"):
        cz.load_zcodes(G=other_generator)


# -- rejection sampling ---------------------------------------------------------------------------

def test_rejection_sampling_returns_only_hits(G, C):
    out = cz.rejection_sample(G, ["glasses", "male"], 6, psi=0.7, seed=3, C=C, threshold=0.9)
    assert out["kept"] == 6 and out["images"].shape == (6, 64, 64, 3) and out["ws"].shape == (6, G.num_ws, G.w_dim)
    assert out["tries"] > out["kept"]                            # glasses AND male is not the common case
    p = C.probs(out["images"])[:, C.index(["glasses", "male"])]
    assert (p >= 0.9).all(), p
    # the ws regenerate the same faces
    from facegen.engine.synthesis import synthesize
    np.testing.assert_array_equal(synthesize(G, out["ws"]), out["images"])


# -- z-code generators ----------------------------------------------------------------------------

def test_zcode_sampling_shape_and_determinism(G):
    a = cz.zcode_sample(G, "beard", 4, psi=0.7, seed=11)
    b = cz.zcode_sample(G, "beard", 4, psi=0.7, seed=11)
    c = cz.zcode_sample(G, "beard", 4, psi=0.7, seed=12)
    assert a["images"].shape == (4, 64, 64, 3) and a["ws"].shape == (4, G.num_ws, G.w_dim)
    np.testing.assert_array_equal(a["images"], b["images"])
    assert not np.array_equal(a["images"], c["images"])


def test_zcode_hits_more_often_than_unconditional_by_the_independent_judge(G):
    """Judged by the world predictor, which the z-code nets were not trained against."""
    from facegen.world.predictor import load_world_predictor
    P = load_world_predictor()
    n = 48
    rates = {}
    for name in ("glasses", "hair:red"):
        z = cz.zcode_sample(G, name, n, psi=0.7, seed=4242)["images"]
        u, _ = cz._generate(G, torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(4242)), 0.7)
        hit = lambda im: cz.class_mask(cz.predicted_table(P.predict(im)), [name])[:, 0].mean()  # noqa: E731
        rates[name] = (hit(z), hit(u))
    for name, (zr, ur) in rates.items():
        assert zr >= ur + 0.4, rates


def test_zcode_feature_spread_term(G, C):
    """lambda_feat: the z-code loss also asks the class's faces to be as spread in the classifier's
    feature space as unconditional faces of the same noise; its value is logged (spread / unconditional)."""
    x = torch.rand(3, 3, 64, 64)
    torch.testing.assert_close(C.head(C.features(x)), C(x))
    net, hist = cz.train_zcode(G, C, "glasses", steps=2, batch=6, lambda_feat=1.0, log=lambda s: None)
    assert 0 < hist[0]["feat_spread"] <= 1
    _, hist0 = cz.train_zcode(G, C, "glasses", steps=1, batch=6, log=lambda s: None)
    assert "feat_spread" not in hist0[0]


def _spread(C, images):
    return float(torch.pdist(torch.from_numpy(C.embed(images)).double()).mean())


def test_variety_keeps_the_most_varied_class_members(G, C):
    """variety 4: 4n classifier-checked hits, then n of them by farthest-point selection in the
    classifier's features; they are members and spread wider than n hits taken in order."""
    n = 6
    plain = cz.rejection_sample(G, ["hair:blonde"], n * 4, 0.7, 11, C)
    varied = cz.rejection_sample(G, ["hair:blonde"], n, 0.7, 11, C, variety=4)
    assert varied["kept"] == n and varied["pool"] == n * 4 and varied["ws"].shape[0] == n
    assert (C.probs(varied["images"])[:, C.index(["hair:blonde"])[0]] >= cz.ACCEPT).all()
    pool = {img.tobytes(): i for i, img in enumerate(plain["images"])}      # the same pool, same seed
    assert all(img.tobytes() in pool for img in varied["images"])
    assert _spread(C, varied["images"]) > _spread(C, plain["images"][:n])
    sel = cz.varied_subset(C, plain["images"], n, seed=0)
    assert len(set(sel.tolist())) == n and (sel == cz.varied_subset(C, plain["images"], n, seed=0)).all()
    out = cz.customize(G, "hair:blonde", "zcode", n=3, psi=0.7, seed=2, check="varied")
    assert out["kept"] == 3 and "most varied of 12 hits" in out["note"]
    with pytest.raises(InputError, match="Check must be one of"):
        cz.customize(G, "glasses", "zcode", n=2, check="maybe")
    with pytest.raises(InputError, match="Variety must be between 1 and"):
        cz.rejection_sample(G, ["glasses"], 2, variety=0)


def test_customize_combination_and_errors(G, C):
    out = cz.customize(G, "glasses, smiling", "zcode", n=3, psi=0.7, seed=5)
    assert out["kept"] == 3 and "proposes" in out["note"]
    assert (C.probs(out["images"])[:, C.index(["glasses", "smiling"])] >= 0.5).all()
    with pytest.raises(InputError, match="Count must be between 1 and"):
        cz.customize(G, "glasses", "zcode", n=0)
    with pytest.raises(InputError, match="Method must be one of"):
        cz.customize(G, "glasses", "magic", n=2)
    with pytest.raises(InputError, match="Contradictory"):
        cz.customize(G, "old, young", "rejection", n=2)


# -- fine-tuning hook ----------------------------------------------------------------------------

def test_training_can_start_from_mini_and_its_discriminator(G, tmp_path):
    from facegen.world.training import TrainConfig, Trainer
    tr = Trainer(TrainConfig(outdir=str(tmp_path), init=str(REPO / "assets" / "mini")), np.zeros((4, 64, 64, 3), np.uint8))
    for k, v in G.state_dict().items():
        assert torch.equal(tr.G.state_dict()[k], v) and torch.equal(tr.G_ema.state_dict()[k], v), k
    from safetensors.torch import load_file
    d = load_file(str(REPO / "assets" / "mini" / "discriminator.safetensors"))
    assert all(torch.equal(tr.D.state_dict()[k], v) for k, v in d.items())


def test_conditional_infogan_training_starts_from_an_unconditional_generator(tmp_path):
    """c_dim > 0 with a Q head: G starts as the unconditional one (class part of fc0 zero), steps are finite."""
    from safetensors.torch import save_file
    from facegen.world.training import TrainConfig, Trainer
    tiny = dict(outdir=str(tmp_path), resolution=16, batch=4, z_dim=16, w_dim=16, mapping_layers=2, g_channel_base=128,
                g_channel_max=16, d_channel_base=128, d_channel_max=16, r1_interval=2)
    base = Trainer(TrainConfig(**tiny), np.zeros((4, 16, 16, 3), np.uint8))
    base.G.save_pretrained(tmp_path / "base")
    save_file({k: v.contiguous() for k, v in base.D.state_dict().items()}, str(tmp_path / "base" / "discriminator.safetensors"))
    images = (np.random.default_rng(0).random((8, 16, 16, 3)) * 255).astype(np.uint8)
    labels = np.eye(2, dtype=np.float32)[[0, 1] * 4]
    tr = Trainer(TrainConfig(**tiny, c_dim=2, q_weight=1.0, init=str(tmp_path / "base")), images, labels)
    z = torch.randn(3, 16)
    with torch.no_grad():
        a = tr.G.mapping(z, torch.tensor([[1.0, 0], [0, 1], [1, 0]]))
        b = base.G.mapping(z, None)
    torch.testing.assert_close(a, b)
    for _ in range(2):
        stats = tr.train_step()
        assert {"q_D", "q_fake_G"} <= stats.keys() and all(np.isfinite(v) for v in stats.values())

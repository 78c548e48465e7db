"""Tests for the face-world attribute predictor (facegen.world.predictor).

Tests that need the shipped weights skip (with the rebuild command) when
assets/predictor/model.safetensors is absent; the rest use an untrained network.
"""

import json

import numpy as np
import pytest
import torch

from facegen.world.predictor import (CORRUPTIONS, DEFAULT_PREDICTOR_DIR, TEST_SEED_START, TRAIN_SEED_START, Labeller,
                               WorldPredictor, check_images, load_world_predictor, make_corruptions,
                               train_predictor)
from facegen.world.attributes import ATTRIBUTE_SPEC, VECTOR_DIM
from facegen.world.render import render_batch

torch.set_num_threads(1)

WEIGHTS = DEFAULT_PREDICTOR_DIR / "model.safetensors"
needs_weights = pytest.mark.skipif(
    not WEIGHTS.is_file(),
    reason=f"{WEIGHTS} is absent; rebuild it with `python -m facegen predictor train --n-train 20000 "
           "--n-test 2000 --size 64 --epochs 12 --minutes 12 --out assets/predictor`")

# Held-out faces: inside the test seed range, never used for training.
HELD_OUT = range(TEST_SEED_START + 5000, TEST_SEED_START + 5064)


@pytest.fixture(scope="module")
def model():
    return load_world_predictor()


@pytest.fixture(scope="module")
def held_out():
    return render_batch(HELD_OUT, size=64)


def _circ(a, b):
    d = np.abs(a - b) % 1.0
    return np.minimum(d, 1 - d)


# ---------------------------------------------------------------------------
# shipped weights
# ---------------------------------------------------------------------------

@needs_weights
def test_shipped_predictor_loads_and_is_cached(model):
    assert isinstance(model, WorldPredictor) and isinstance(model, Labeller)
    assert load_world_predictor() is model
    assert not model.training
    assert model.attributes == [s[0] for s in ATTRIBUTE_SPEC]
    assert WEIGHTS.stat().st_size < 5 * 1024 * 1024
    metrics = json.loads((DEFAULT_PREDICTOR_DIR / "metrics.json").read_text())
    for key in ("command", "n_train", "n_test", "epochs", "wall_time_s", "attributes", "validity"):
        assert key in metrics
    assert metrics["command"].startswith("python -m facegen predictor train")
    assert metrics["command"] in (DEFAULT_PREDICTOR_DIR / "README.md").read_text()


@needs_weights
def test_predict_output_shapes(model, held_out):
    x, _ = held_out
    pred = model.predict(x[:5])
    for name, kind, rng in ATTRIBUTE_SPEC:
        if kind == "categorical":
            assert pred[name].shape == (5, len(rng)) and pred[name].dtype == np.float32
            np.testing.assert_allclose(pred[name].sum(1), 1.0, atol=1e-5)
            assert pred[f"{name}_label"].shape == (5,)
            assert set(pred[f"{name}_label"]) <= set(rng)
        else:
            assert pred[name].shape == (5,) and pred[name].dtype == np.float32
            lo, hi = (0.0, 1.0) if kind == "bool" else rng
            assert pred[name].min() >= lo and pred[name].max() <= hi
    assert model.features(x[:5]).shape == (5, 128)
    assert model.validity(x[:5]).shape == (5,)
    assert model.predict_vectors(x[:5]).shape == (5, VECTOR_DIM)
    assert len(model.predict_attributes(x[:2])) == 2
    empty = model.predict(x[:0])
    assert empty["yaw"].shape == (0,) and empty["hair_color"].shape == (0, 5)


@needs_weights
def test_held_out_accuracy(model, held_out):
    x, labels = held_out
    pred = model.predict(x)

    def mae(name):
        return float(np.mean(np.abs(pred[name] - np.array([lab[name] for lab in labels]))))

    def acc(name):
        truth = np.array([lab[name] for lab in labels])
        got = pred[f"{name}_label"] if f"{name}_label" in pred else pred[name] > 0.5
        return float(np.mean(got == truth))

    assert mae("yaw") < 0.15
    assert mae("smile") < 0.15
    assert mae("age") < 0.15
    assert mae("gender") < 0.15
    assert mae("skin_tone") < 0.1
    assert mae("light_direction") < 0.2
    assert float(np.mean(_circ(pred["bg_hue"], np.array([lab["bg_hue"] for lab in labels])))) < 0.05
    assert acc("hair_color") > 0.8
    assert acc("hair_style") > 0.8
    assert acc("glasses") > 0.85
    assert acc("beard") > 0.85


@needs_weights
def test_validity_renders_vs_non_faces(model, held_out):
    x, _ = held_out
    assert np.mean(model.validity(x) > 0.5) >= 0.95
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8)
    flat = np.broadcast_to(rng.integers(0, 256, size=(16, 1, 1, 3), dtype=np.uint8), (16, 64, 64, 3)).copy()
    assert np.mean(model.validity(noise) < 0.5) >= 0.9
    assert np.mean(model.validity(flat) < 0.5) >= 0.9


@needs_weights
@pytest.mark.parametrize("size", [128, 256])
def test_predict_on_larger_inputs(model, size):
    seeds = range(TEST_SEED_START + 6000, TEST_SEED_START + 6008)
    x, labels = render_batch(seeds, size=size, supersample=2)
    pred = model.predict(x)
    yaw = np.array([lab["yaw"] for lab in labels])
    assert float(np.mean(np.abs(pred["yaw"] - yaw))) < 0.2
    hair = np.array([lab["hair_color"] for lab in labels])
    assert np.mean(pred["hair_color_label"] == hair) >= 0.6
    assert np.mean(model.validity(x) > 0.5) >= 0.85
    # agrees with the same faces rendered at the network size
    x64, _ = render_batch(seeds, size=64)
    assert float(np.mean(np.abs(model.predict(x64)["yaw"] - pred["yaw"]))) < 0.1
    # non-square and small inputs are resized too
    assert model.predict(x[:, :, : size * 3 // 4])["yaw"].shape == (8,)
    assert model.predict(x64[:, ::2, ::2])["yaw"].shape == (8,)


# ---------------------------------------------------------------------------
# untrained network: interface, errors, persistence, a tiny training run
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 64, 64, 3), np.float32), "dtype uint8"),
    (np.zeros((64, 64, 3), np.uint8), "images\\[None\\]"),
    (np.zeros((2, 64, 64, 4), np.uint8), "shape \\[N, H, W, 3\\]"),
    (np.zeros((2, 3, 64, 64), np.uint8), "shape \\[N, H, W, 3\\]"),
    (np.zeros((2, 8, 8, 3), np.uint8), "at least 16x16"),
    ([[1, 2, 3]], "numpy uint8 array"),
    (torch.zeros(2, 3, 64, 64), "torch.Tensor"),
])
def test_bad_input_raises_value_error(bad, match):
    net = WorldPredictor()
    with pytest.raises(ValueError, match=match):
        check_images(bad)
    for fn in (net.predict, net.features, net.validity):
        with pytest.raises(ValueError, match=match):
            fn(bad)


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = WorldPredictor()
    x, _ = render_batch(range(TRAIN_SEED_START, TRAIN_SEED_START + 3))
    net.save_pretrained(tmp_path / "p", note="test")
    assert {p.name for p in (tmp_path / "p").iterdir()} == {"config.json", "model.safetensors"}
    back = WorldPredictor.from_pretrained(tmp_path / "p")
    assert back.meta == {"note": "test"}
    np.testing.assert_allclose(net.features(x), back.features(x), rtol=1e-5, atol=1e-6)
    assert load_world_predictor(tmp_path / "p") is load_world_predictor(tmp_path / "p")
    from facegen.engine.errors import ModelNotFoundError
    with pytest.raises(ModelNotFoundError, match="predictor train"):
        WorldPredictor.from_pretrained(tmp_path / "missing")


def test_two_training_steps_give_finite_losses():
    x, labels = render_batch(range(TRAIN_SEED_START, TRAIN_SEED_START + 16))
    net = WorldPredictor()
    before = net.head.weight.detach().clone()
    out = train_predictor(net, x, labels, epochs=1, batch_size=8, max_steps=2, log_every=1, log=lambda s: None)
    assert out["steps"] == 2 and len(out["history"]) == 2
    for rec in out["history"]:
        assert all(np.isfinite(v) for k, v in rec.items())
    assert not torch.equal(before, net.head.weight)
    assert not net.training


def test_corruptions_shapes_and_kinds():
    x, _ = render_batch(range(TRAIN_SEED_START, TRAIN_SEED_START + 4))
    faces = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    g = torch.Generator().manual_seed(0)
    for kind in CORRUPTIONS:
        neg, kinds = make_corruptions(faces, 3, g, kinds=(kind,))
        assert neg.shape == (3, 3, 64, 64) and kinds == [kind] * 3
        assert float(neg.min()) >= 0.0 and float(neg.max()) <= 1.0
        if kind in ("pixel_shuffle", "patch_shuffle", "face_patch_shuffle"):
            assert not any(torch.equal(n, f) for n in neg for f in faces)

"""Tests for the procedural face world (facegen.world.render)."""

import json
from dataclasses import replace

import numpy as np
import pytest

from facegen.world import render as world
from facegen.world.attributes import (ATTRIBUTE_SPEC, VECTOR_DIM, FaceAttributes, attributes_to_vector,
                                      labels_dict, sample_attributes, vector_to_attributes)
from facegen.world.render import render, render_batch, render_seed

BASE = FaceAttributes(yaw=0.0, smile=0.3, age=0.3, gender=0.5, skin_tone=0.3, hair_color="brown",
                      hair_length=0.4, hair_style="straight", eye_color="brown", glasses=False,
                      beard=False, bg_hue=0.6, bg_value=0.7, light_direction=0.0, clothing_hue=0.1)


def test_determinism_by_seed():
    a, b = render_seed(123), render_seed(123)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.labels == b.labels and a.landmarks == b.landmarks


def test_different_seeds_differ():
    imgs = [render_seed(s).image for s in range(6)]
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert not np.array_equal(imgs[i], imgs[j])


@pytest.mark.parametrize("size", [64, 100, 128, 256])
def test_sizes(size):
    r = render_seed(7, size=size, supersample=2 if size == 256 else 4)
    assert r.image.shape == (size, size, 3) and r.image.dtype == np.uint8
    assert r.image.std() > 10  # not blank


def test_landmarks_inside_and_ordered():
    for seed in range(20):
        r = render_seed(seed)
        for name in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right"):
            x, y = r.landmarks[name]
            assert 0 <= x < 64 and 0 <= y < 64, (seed, name, x, y)
        lm = r.landmarks
        assert lm["left_eye"][0] < lm["right_eye"][0]
        assert lm["mouth_left"][0] < lm["mouth_right"][0]
        assert lm["left_eye"][1] < lm["nose"][1] < lm["mouth_left"][1]


def test_alignment_at_yaw_zero():
    r = render(BASE, size=128)
    (lx, ly), (rx, ry) = r.landmarks["left_eye"], r.landmarks["right_eye"]
    assert abs(ly - ry) < 1e-6
    assert abs(ly / 128 - 0.45) < 0.02
    assert abs((lx + rx) / 2 - 64) < 1e-6
    assert abs(r.landmarks["nose"][0] - 64) < 1e-6


def test_landmarks_move_with_yaw_sign():
    left = render(replace(BASE, yaw=-0.8)).landmarks
    mid = render(replace(BASE, yaw=0.0)).landmarks
    right = render(replace(BASE, yaw=0.8)).landmarks
    for name in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right"):
        assert left[name][0] < mid[name][0] < right[name][0], name
    # far eye is foreshortened: eye spacing shrinks when turned
    sep = lambda lm: lm["right_eye"][0] - lm["left_eye"][0]
    assert sep(right) < sep(mid) and sep(left) < sep(mid)


def test_vector_round_trip_and_labels():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = sample_attributes(rng)
        v = attributes_to_vector(a)
        assert v.dtype == np.float32 and v.shape == (VECTOR_DIM,)
        b = vector_to_attributes(v)
        for name, kind, _ in ATTRIBUTE_SPEC:
            if kind == "continuous":
                assert getattr(b, name) == pytest.approx(getattr(a, name), abs=1e-6)
            else:
                assert getattr(b, name) == getattr(a, name)
    r = render_seed(5)
    assert json.loads(json.dumps(r.labels)) == r.labels
    assert r.attrs == sample_attributes(np.random.default_rng(5))      # the seed contract
    # The labels are the values the face was drawn with, written out here (not recomputed by labels_dict).
    assert render(BASE).labels == {
        "yaw": 0.0, "smile": 0.3, "age": 0.3, "gender": 0.5, "skin_tone": 0.3, "hair_color": "brown",
        "hair_length": 0.4, "hair_style": "straight", "eye_color": "brown", "glasses": False, "beard": False,
        "bg_hue": 0.6, "bg_value": 0.7, "light_direction": 0.0, "clothing_hue": 0.1}
    assert render(replace(BASE, glasses=True, hair_color="red", yaw=-0.5)).labels == dict(
        render(BASE).labels, glasses=True, hair_color="red", yaw=-0.5)


def test_spec_layout():
    assert VECTOR_DIM == sum(len(r) if k == "categorical" else 1 for _, k, r in ATTRIBUTE_SPEC)
    assert [n for n, _, _ in ATTRIBUTE_SPEC] == list(labels_dict(BASE))


def test_sampling_is_spread():
    rng = np.random.default_rng(1)
    s = [sample_attributes(rng) for _ in range(600)]
    yaw = np.array([a.yaw for a in s])
    hl = np.array([a.hair_length for a in s])
    assert (np.abs(yaw) > 0.6).mean() > 0.3          # turned heads are common
    assert (hl > 0.7).mean() > 0.2 and (hl < 0.3).mean() > 0.2
    for name in ("hair_color", "hair_style", "eye_color"):
        assert len({getattr(a, name) for a in s}) >= 3
    assert 0.1 < np.mean([a.glasses for a in s]) < 0.6
    assert 0.1 < np.mean([a.beard for a in s]) < 0.5


SWEEPS = [("yaw", -1.0, 1.0), ("smile", 0.0, 1.0), ("age", 0.0, 1.0), ("gender", 0.0, 1.0),
          ("skin_tone", 0.0, 1.0), ("hair_length", 0.0, 1.0), ("bg_hue", 0.0, 0.5),
          ("bg_value", 0.0, 1.0), ("light_direction", -1.0, 1.0), ("clothing_hue", 0.0, 0.5),
          ("hair_color", "black", "blonde"), ("hair_style", "straight", "bald"),
          ("eye_color", "brown", "blue"), ("glasses", False, True), ("beard", False, True)]


@pytest.mark.parametrize("name,lo,hi", SWEEPS)
def test_each_attribute_changes_image(name, lo, hi):
    a = render(replace(BASE, **{name: lo})).image.astype(int)
    b = render(replace(BASE, **{name: hi})).image.astype(int)
    assert np.abs(a - b).mean() > 0.2, name


def test_bad_input_raises():
    with pytest.raises(ValueError, match="size"):
        render(BASE, size=10)
    with pytest.raises(ValueError, match="size"):
        render(BASE, size=1000)
    with pytest.raises(ValueError, match="yaw"):
        render(replace(BASE, yaw=5.0))
    with pytest.raises(ValueError, match="hair_color"):
        render(replace(BASE, hair_color="green"))
    with pytest.raises(ValueError, match="length"):
        vector_to_attributes(np.zeros(3))
    with pytest.raises(ValueError):
        render_batch(["x"])


def test_render_batch_and_cli(tmp_path):
    imgs, labels = render_batch([0, 1, BASE], size=64)
    assert imgs.shape == (3, 64, 64, 3) and len(labels) == 3
    assert np.array_equal(imgs[1], render_seed(1).image)
    out = tmp_path / "w"
    assert world.cli_main(["sample", "--n", "4", "--size", "64", "--outdir", str(out), "--seed", "10"]) == 0
    recs = json.loads((out / "labels.json").read_text())
    assert [r["file"] for r in recs] == [f"{i:06d}.png" for i in range(4)]
    assert recs[2]["seed"] == 12 and recs[2]["labels"] == render_seed(12).labels
    assert (out / "grid.png").exists() and (out / "000003.png").exists()
    assert world.cli_main(["sample", "--n", "2", "--size", "10", "--outdir", str(out)]) == 2

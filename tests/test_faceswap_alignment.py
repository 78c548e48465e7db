"""Alignment templates (facegen.packs.alignment) and faceswap on a generator without a pack: the generic
FFHQ template, the Procrustes mean, templates measured on a generator's own samples, the JSON format,
the per-fingerprint cache, the default identity and the crops aligned onto a template."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facegen.engine.errors import InputError
from facegen.features import faceswap as fs
from facegen.packs import alignment as al

ROOT = Path(__file__).resolve().parent.parent
ADA = ROOT.parent / "shared" / "fixtures" / "stylegan2-ada-tiny" / "G_ema.pkl"


@pytest.fixture(scope="module")
def pack(mini):
    from facegen.packs.pack import find_pack
    return find_pack(mini)


@pytest.fixture(scope="module")
def ada():
    if not ADA.exists():
        pytest.skip(f"the StyleGAN2-ADA golden fixture is absent ({ADA}): it lives in ../shared/fixtures")
    from facegen.engine.loaders import load_generator
    torch.set_num_threads(1)
    return load_generator(str(ADA))


def test_generic_template_is_the_ffhq_crop_of_the_reference_face():
    """Put the generic points back through the FFHQ quad of the reference face: they land on it."""
    from facegen.labels.align import ffhq_quad
    g = al.generic_points()
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[30], lm[48], lm[54] = al.REFERENCE_5
    quad, side = ffhq_quad(lm)
    back = quad[0] + g[:, :1] * (quad[3] - quad[0]) + g[:, 1:] * (quad[1] - quad[0])
    assert np.abs(back - al.REFERENCE_5).max() < 0.05                       # in 112 px reference pixels
    assert abs((g[0, 0] + g[1, 0]) / 2 - 0.5) < 0.01 and abs(g[0, 1] - g[1, 1]) < 0.01   # centred, level
    assert 0.2 < g[1, 0] - g[0, 0] < 0.3 and g[3, 1] > g[2, 1] > g[0, 1]
    world = np.array([[25.9, 28.8], [38.6, 28.8], [32.5, 37.7], [27.5, 43.9], [37.3, 43.9]]) / 64
    assert np.abs(g - world).max() > 0.03                                     # not the face world's layout


def test_procrustes_mean_recovers_the_shape_and_its_place():
    rng = np.random.default_rng(0)
    truth = np.array([[0.40, 0.45], [0.60, 0.45], [0.50, 0.58], [0.42, 0.70], [0.58, 0.70]])
    shapes = []
    for _ in range(200):
        a, s = rng.normal(0, 0.08), np.exp(rng.normal(0, 0.05))
        R = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        c = truth.mean(0)
        shapes.append((truth - c) @ R.T + c + rng.normal(0, 0.02, 2) + rng.normal(0, 0.003, (5, 2)))
    placed, aligned = al.procrustes_mean(np.stack(shapes))
    assert np.abs(placed - truth).max() < 0.01, placed
    assert aligned.shape == (200, 5, 2)


def test_umeyama_and_compose():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 64, (5, 2))
    a, s, t = 0.3, 1.7, np.array([5.0, -3.0])
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    M = al.umeyama(src, s * src @ R.T + t)
    assert np.allclose(M[:, :2], s * R) and np.allclose(M[:, 2], t)
    N = al.umeyama(src, src * 0.5 + 2)
    assert np.allclose(al.apply_affine(al.compose(N, M), src), al.apply_affine(N, al.apply_affine(M, src)))


def test_template_measured_on_a_generators_samples_with_its_packs_localiser(mini, pack):
    """mini's samples through the localiser of its pack: the template agrees with the pack's stored one
    (256 samples) within a pixel and a half at 64 px."""
    loc = fs.pack_localiser(pack)
    d = al.build_alignment_template(mini, n=24, seed=0, detector=loc.detect, detector_name="localiser")
    t = al.AlignmentTemplate.from_json(d)
    assert t.source == "generator" and d["n_detected"] >= 20 and d["detector"] == "localiser"
    assert "own samples" in t.note and d["fingerprint"] == mini.fingerprint
    stored = al.load_alignment(pack.path("alignment"), mini)
    assert np.abs(t.at(64) - stored.at(64)).max() < 1.5
    assert np.abs(stored.points - al.generic_points()).max() > 0.03      # mini does not frame like FFHQ


def test_no_face_on_the_samples_falls_back_to_the_generic_template(ada):
    d = al.build_alignment_template(ada, n=8, seed=0)                   # random weights: noise, no face
    assert d["source"] == "generic" and d["n_detected"] == 0 and "generic FFHQ" in d["note"]
    assert np.allclose(d["template"], al.generic_points().round(5))
    t = al.alignment_for(ada, None, n=8)
    assert t.generic and "dlib found a face on 0 of 8" in t.note
    assert al.alignment_for(ada, None, n=8) is t                          # cached per fingerprint


def test_alignment_json_round_trip_and_refusals(tmp_path, mini, pack, ada):
    t = al.alignment_for(mini, pack)
    assert t.source == "generator" and "pack 'mini'" in t.note
    d = t.to_json()
    path = al.save_alignment(d, tmp_path / "alignment.json")
    assert np.allclose(al.load_alignment(path, mini).points, t.points, atol=1e-5)
    with pytest.raises(InputError, match="not on the active generator"):
        al.load_alignment(path, ada)
    for bad in ({**d, "format": "x"}, {**d, "template": [[0, 0]] * 4}, {**d, "template": [[9, 9]] * 5},
                {**d, "format_version": 99}):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(InputError):
            al.load_alignment(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot be read"):
        al.load_alignment(tmp_path / "junk.json")


def test_crops_are_aligned_onto_the_template():
    """A face whose landmarks are the template under a similarity is cut out with its landmarks exactly
    on the template (eyes and mouth centre), whatever template is asked for."""
    for tmpl in (al.generic_points() * 64, np.array([[26.0, 29], [39, 28], [33, 37], [29, 44], [38, 44]])):
        a, s, t = -0.2, 2.1, np.array([40.0, 25.0])
        R = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        lm = tmpl @ R.T + t
        M = fs.align_transforms(lm[None], tmpl, 64)[0]                   # crop -> frame
        assert np.allclose(fs.align_points(al.apply_affine(M, tmpl)), fs.align_points(lm), atol=1e-6)
        frame = np.zeros((200, 200, 3), np.uint8)
        x, y = np.round(lm[0]).astype(int)
        frame[y - 2:y + 3, x - 2:x + 3] = 255                            # a bright dot on the left eye
        crop = fs.align_crops(frame[None], M[None], 64)[0]
        cy, cx = np.unravel_index(crop[..., 0].argmax(), crop.shape[:2])
        assert np.hypot(cx + 0.5 - tmpl[0, 0], cy + 0.5 - tmpl[0, 1]) < 1.5


def test_a_localisers_framing_ends_in_the_generators_template_frame(pack):
    """With a localiser's head framing (fitted in its own reference frame), a face laid out like the
    localiser's mean face is cut out with its landmarks on the *generator's* template, not the localiser's."""
    loc = fs.pack_localiser(pack)
    ref, generic = loc.points * 64, al.generic_points() * 64
    a, s, t = 0.1, 2.0, np.array([30.0, 20.0])
    lm = ref @ (s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])).T + t
    M = fs.align_transforms(lm[None], generic, 64, loc.framing)[0]
    in_crop = fs.align_points(al.apply_affine(al.invert_affine(M), lm))
    assert np.abs(in_crop - fs.align_points(generic)).max() < 1.0
    assert np.abs(fs.align_points(ref) - fs.align_points(generic)).max() > 3.0     # the two frames differ


def test_default_identity_follows_the_generator(mini, pack, ada):
    from facegen.packs.bank import load_bank
    first = load_bank(pack.paths("banks")[0], mini).names[0]
    assert fs.default_identity(mini, pack) == (f"@{first}", f"identity A: bank face '{first}' of pack 'mini'")
    spec, note = fs.default_identity(ada, None)
    assert spec == "0" and "no feature pack" in note
    assert "no feature pack" in fs.describe_fallbacks(None).lower()
    assert "alignment template from the pack" in fs.describe_fallbacks(pack)

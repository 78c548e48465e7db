"""Measuring a generator against the face world it was trained on.

Because every training image of the world comes with ground truth, quality is measurable
with the world's attribute predictor (:mod:`facegen.world.predictor`) as the judge:

1. **Fréchet distance** between generated samples and renders in the predictor's feature
   space (FID's formula with our own embedding), next to the floor: the distance between two
   disjoint sets of renders of the same size.
2. **Attribute distribution match**: for each attribute, how far the predicted distribution
   on generated faces is from the one on renders (1-D Wasserstein distance for continuous
   values, total variation for categories and booleans), and its spread (every attribute
   must vary across samples).
3. **Valid faces**: the share of samples the predictor's validity head reads as a face.
4. **Style-mixing locality**: copy coarse (or fine) layers from template faces into source
   faces and check which attributes follow the template: in StyleGAN, coarse layers carry
   pose and face shape, fine layers carry colour.

Issue 17's goals are measured by a second network that no training code uses, the independent judge
(:mod:`facegen.world.judge`), in :mod:`facegen.world.quality_goals`; both share :func:`held_out_renders`.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg
from scipy.stats import wasserstein_distance

from facegen.engine import latents as L
from facegen.engine.synthesis import synthesize

TEST_SEED_BASE = 20_000_000  # held-out render seeds (the GAN trains on seeds < 10M, the predictor on 10M+)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def attribute_match(labeller, gen_pred: dict, ref_pred: dict) -> dict:
    out = {}
    for name, kind, rng in labeller.spec:
        g, r = gen_pred[name], ref_pred[name]
        if kind == "categorical":
            gh = np.bincount(g.argmax(1), minlength=len(rng)) / len(g)
            rh = np.bincount(r.argmax(1), minlength=len(rng)) / len(r)
            out[name] = {"total_variation": float(0.5 * np.abs(gh - rh).sum()),
                         "generated": dict(zip(rng, np.round(gh, 3).tolist())),
                         "renders": dict(zip(rng, np.round(rh, 3).tolist())),
                         "classes_seen": int((gh > 0.01).sum())}
        elif kind == "bool":
            out[name] = {"rate_generated": float((g > 0.5).mean()), "rate_renders": float((r > 0.5).mean()),
                         "abs_diff": float(abs((g > 0.5).mean() - (r > 0.5).mean()))}
        else:
            out[name] = {"wasserstein": float(wasserstein_distance(g, r)), "std_generated": float(g.std()),
                         "std_renders": float(r.std())}
    return out


def _circular_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of hue-like values in [0, 1) through their cos/sin embedding."""
    ca = np.stack([np.cos(2 * np.pi * a), np.sin(2 * np.pi * a)], 1)
    cb = np.stack([np.cos(2 * np.pi * b), np.sin(2 * np.pi * b)], 1)
    return float(np.mean([np.corrcoef(ca[:, i], cb[:, i])[0, 1] for i in range(2)]))


def corner_colour(images: np.ndarray, k: int = 0) -> np.ndarray:
    """Mean RGB [N, 3] of the two top corners (k = 1/10 of the side): the background's colour read
    straight from the pixels, a judge that does not depend on the predictor."""
    k = k or max(2, images.shape[1] // 10)
    return np.concatenate([images[:, :k, :k], images[:, :k, -k:]], 2).reshape(len(images), -1, 3).mean(1)


def _rgb_corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(3)]))


def mixing_locality(G, labeller, n: int = 64, seed: int = 1000, psi: float = 0.7) -> dict:
    """Which attributes follow the template when coarse / fine layers are copied from it.

    Predicted attributes (the labeller) plus ``bg_corner_rgb``, the background colour measured
    from the pixels (so a generator trained against the predictor cannot only fool it)."""
    src = L.seeds_to_ws(G, list(range(seed, seed + n)), psi=psi)
    tpl = L.seeds_to_ws(G, list(range(seed + n, seed + 2 * n)), psi=psi)
    x_src, x_tpl = synthesize(G, src), synthesize(G, tpl)
    p_src, p_tpl = labeller.predict(x_src), labeller.predict(x_tpl)
    c_src, c_tpl = corner_colour(x_src), corner_colour(x_tpl)
    res = {}
    for band in ("coarse", "fine"):
        layers = L.preset_layers(band, G.num_ws)
        x_mix = synthesize(G, L.style_mix(src, tpl, layers))
        p_mix = labeller.predict(x_mix)
        c_mix = corner_colour(x_mix)
        follow = {"bg_corner_rgb": {"corr_with_template": _rgb_corr(c_mix, c_tpl),
                                    "corr_with_source": _rgb_corr(c_mix, c_src)}}
        for name in ("yaw", "gender", "hair_length", "skin_tone", "bg_value"):
            follow[name] = {"corr_with_template": float(np.corrcoef(p_mix[name], p_tpl[name])[0, 1]),
                            "corr_with_source": float(np.corrcoef(p_mix[name], p_src[name])[0, 1])}
        for name in ("bg_hue", "clothing_hue"):
            follow[name] = {"corr_with_template": _circular_corr(p_mix[name], p_tpl[name]),
                            "corr_with_source": _circular_corr(p_mix[name], p_src[name])}
        for name in ("hair_color", "eye_color"):
            mix = p_mix[name].argmax(1)
            follow[name] = {"agree_with_template": float((mix == p_tpl[name].argmax(1)).mean()),
                            "agree_with_source": float((mix == p_src[name].argmax(1)).mean())}
        res[band] = {"layers": layers, "follows": follow}
    return res


LAYER_PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


def mixing_by_layers(G, labeller, groups=None, n: int = 128, seed: int = 1000, psi: float = 0.7) -> dict:
    """Finer than :func:`mixing_locality`: copy each group of w+ layers (default two at a time) from a
    template and measure what follows it -> {"0-1": {bg_corner_rgb, skin_tone, yaw, gender,
    hair_length: r with the template; hair_color, eye_color: agreement with it}, ...}."""
    groups = [tuple(g) for g in (groups or [p for p in LAYER_PAIRS if p[-1] < G.num_ws])]
    src = L.seeds_to_ws(G, list(range(seed, seed + n)), psi=psi)
    tpl = L.seeds_to_ws(G, list(range(seed + n, seed + 2 * n)), psi=psi)
    x_tpl = synthesize(G, tpl)
    p_tpl, c_tpl = labeller.predict(x_tpl), corner_colour(x_tpl)
    out = {}
    for layers in groups:
        x_mix = synthesize(G, L.style_mix(src, tpl, list(layers)))
        p_mix = labeller.predict(x_mix)
        r = {"bg_corner_rgb": _rgb_corr(corner_colour(x_mix), c_tpl)}
        for name in ("skin_tone", "yaw", "gender", "hair_length"):
            r[name] = float(np.corrcoef(p_mix[name], p_tpl[name])[0, 1])
        for name in ("hair_color", "eye_color"):
            r[name] = float((p_mix[name].argmax(1) == p_tpl[name].argmax(1)).mean())
        out[f"{layers[0]}-{layers[-1]}" if len(layers) > 1 else str(layers[0])] = r
    return out


def held_out_renders(n: int, size: int) -> tuple:
    """The two disjoint sets of held-out renders the quality measures compare with: ((images, labels)
    of seeds TEST_SEED_BASE + [0, n)), ((images, labels) of TEST_SEED_BASE + [n, 2n))."""
    from facegen.world.render import render_batch
    return (render_batch(range(TEST_SEED_BASE, TEST_SEED_BASE + n), size=size),
            render_batch(range(TEST_SEED_BASE + n, TEST_SEED_BASE + 2 * n), size=size))


def evaluate_generator(G, labeller, n: int = 500, psi: float = 0.7, seed: int = 0, renders=None) -> dict:
    """The predictor-judged measures (module docstring, 1-4). ``renders``: :func:`held_out_renders`
    (n, G.img_resolution), when the caller shares them with another evaluation."""
    gen = synthesize(G, L.seeds_to_ws(G, list(range(seed, seed + n)), psi=psi))
    gen1 = synthesize(G, L.seeds_to_ws(G, list(range(seed, seed + n)), psi=1.0))
    (ref, _), (ref2, _) = renders if renders is not None else held_out_renders(n, G.img_resolution)
    p_gen, f_gen, v_gen = labeller.predict_all(gen)
    p_gen1, f_gen1, v_gen1 = labeller.predict_all(gen1)
    p_ref, f_ref, v_ref = labeller.predict_all(ref)
    f_ref2 = labeller.features(ref2)
    return {
        "n": n, "psi": psi,
        "frechet_distance": {f"psi{psi}": frechet_distance(f_gen, f_ref), "psi1.0": frechet_distance(f_gen1, f_ref),
                             "floor_renders_vs_renders": frechet_distance(f_ref2, f_ref)},
        "valid_face_rate": {f"psi{psi}": float((v_gen > 0.5).mean()), "psi1.0": float((v_gen1 > 0.5).mean()),
                            "renders": float((v_ref > 0.5).mean())},
        "attributes_psi1.0": attribute_match(labeller, p_gen1, p_ref),
        f"attributes_psi{psi}": attribute_match(labeller, p_gen, p_ref),
        "style_mixing": mixing_locality(G, labeller),
    }

"""mini v2's quality goals (issue 17), measured with the independent judge (:mod:`facegen.world.judge`).

:func:`measure_goals` computes the keys ``bench/quality.py`` writes into ``<model>/metrics.json`` under
``quality``; :func:`goal_report` turns them into pass / fail lines against the issue's thresholds.
Generated faces are drawn from z seeds ``0 .. n-1``; the world's faces are renders of seeds
:data:`REF_SEED` + ``0 .. n-1`` (the second set for the floor: ``+ n .. 2n-1``), a range no network
trains on (the predictor tests on it, the judge trains on 40 000 000 +).

Metrics
-------
* ``fd_judge`` / ``fd_judge_v1`` / ``fd_judge_floor``: Fréchet distance (FID's formula) between the
  judge's 96-d penultimate features of n generated faces at ψ 1 and of n renders; the same for the
  baseline generator; and between the two disjoint sets of renders (the floor: what sampling noise
  alone gives at this n).
* ``attribute_rates`` (ψ 1): per boolean, the rate of faces the judge reads as True (p > 0.5) on
  generated faces against the world's ground-truth rate on the renders; per categorical attribute,
  the rate of every class (judge argmax) and the largest gap; per continuous attribute, the std of
  the judge's value on generated faces against the ground-truth std on the renders (hues: the std of
  the value in [0, 1), uniform in the world). ``judge_on_renders`` is the judge's reading of the
  renders themselves: how far the judge alone moves a number (its own bias, the metric's floor).
  Beside each goal's reading, a *same-instrument* one (``gap_points_same_judge``,
  ``std_rel_diff_same_judge``): generated against ``judge_on_renders``, the judge on both sides as in the
  Fréchet distance, so the judge's own bias cancels (it reads the renders' smile spread 7 % narrower than
  their truth, so a generator drawing the world exactly reads -7 % against the truth). Diagnostic only:
  ``pass`` stays the goal as filed (against the world's truth).
* ``w_linear_accuracy``: how linearly w encodes an attribute. Labels from the judge on the generated
  faces (ψ 1): booleans at p = 0.5, continuous attributes split at their median; w (the mapping's
  output) standardised; class-balanced logistic regression (scikit-learn, C = 1) fitted on 80 %;
  **balanced** accuracy on the held-out 20 % (so a rare attribute cannot pass by always saying "no";
  chance is 0.5) -- the protocol of ``facegen.packs.directions``. Beside it (diagnostic, the goal stays
  the one split), ``w_linear_splits``: the mean and standard deviation of the same fit over split seeds
  0-9 of the same faces -- how far the goal's reading moves by the choice of held-out faces alone.
* ``hf_energy_ratio``: luminance (Rec. 601) of each image in [0, 1], its mean removed, times a 2-D
  Hann window; power spectrum |FFT|² / (H W); the **band** is every frequency with radius
  sqrt(fx² + fy²) >= 0.25 cycles per pixel (the upper half of the range up to Nyquist, 0.5, and the
  corners beyond it). The ratio is the mean band energy of generated faces over that of renders, both
  at the generator's resolution. Soft images score below 1; periodic artefacts (streaks, checkerboards)
  add energy there. ``spectrum.hf_peak_ratio`` is the largest per-frequency ratio of the mean spectra
  inside the band: a narrow peak from a periodic pattern shows there even when the total is small.
* ``detector``: MediaPipe's FaceLandmarker (:class:`facegen.labels.landmarker.FaceMesh`) on generated
  faces at ψ 0.7, upsampled to 256 px (Lanczos): the rate of images with a face, and the Pearson r of
  its yaw (pose matrix, / 45°) with the judge's yaw on the same faces; ``renders`` holds the same for
  renders at the same resolution against their ground-truth yaw.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from facegen.engine import latents as L
from facegen.engine.synthesis import synthesize
from facegen.world.attributes import ATTRIBUTE_SPEC
from facegen.world.quality import TEST_SEED_BASE, frechet_distance, held_out_renders

REF_SEED = TEST_SEED_BASE
HF_BAND = 0.25                       # cycles per pixel: the high-frequency band starts here
W_LINEAR_ATTRIBUTES = ("smile", "gender", "beard", "glasses", "age")
DETECTOR_SIZE = 256

#: issue 17's thresholds
GOALS = {"fd_ratio_max": 0.5, "rate_points_max": 5.0, "std_rel_max": 0.15, "w_linear_min": 0.85,
         "hf_ratio_max": 1.2, "detector_found_min": 0.95, "detector_yaw_r_min": 0.9}


# ---------------------------------------------------------------------------
# attribute rates
# ---------------------------------------------------------------------------

def _rates(labels: np.ndarray, classes) -> dict:
    return {c: round(float((labels == c).mean()), 4) for c in classes}


def attribute_rates(gen_pred: dict, world_labels: list[dict], judge_on_renders: dict,
                    spec=ATTRIBUTE_SPEC) -> dict:
    """Per attribute: generated (judge) vs world (ground truth) rate or std, the gap, and pass / fail."""
    out = {}
    for name, kind, rng in spec:
        truth = [lab[name] for lab in world_labels]
        if kind == "bool":
            g, w, j = float((gen_pred[name] > 0.5).mean()), float(np.mean(truth)), \
                float((judge_on_renders[name] > 0.5).mean())
            gap = 100 * abs(g - w)
            out[name] = {"kind": kind, "generated": round(g, 4), "world": round(w, 4), "judge_on_renders": round(j, 4),
                         "gap_points": round(gap, 2), "gap_points_same_judge": round(100 * abs(g - j), 2),
                         "pass": bool(gap <= GOALS["rate_points_max"])}
        elif kind == "categorical":
            g, w = _rates(gen_pred[f"{name}_label"], rng), _rates(np.asarray(truth), rng)
            j = _rates(judge_on_renders[f"{name}_label"], rng)
            gap = 100 * max(abs(g[c] - w[c]) for c in rng)
            out[name] = {"kind": kind, "generated": g, "world": w, "judge_on_renders": j,
                         "gap_points": round(gap, 2),
                         "gap_points_same_judge": round(100 * max(abs(g[c] - j[c]) for c in rng), 2),
                         "pass": bool(gap <= GOALS["rate_points_max"])}
        else:
            g, w, j = float(np.std(gen_pred[name])), float(np.std(truth)), float(np.std(judge_on_renders[name]))
            rel = g / w - 1 if w > 0 else float("inf")
            out[name] = {"kind": kind, "std_generated": round(g, 4), "std_world": round(w, 4),
                         "std_judge_on_renders": round(j, 4), "std_rel_diff": round(rel, 4),
                         "std_rel_diff_same_judge": round(g / j - 1 if j > 0 else float("inf"), 4),
                         "pass": bool(abs(rel) <= GOALS["std_rel_max"])}
    return out


# ---------------------------------------------------------------------------
# linearity of w
# ---------------------------------------------------------------------------

def binary_labels(pred: dict, name: str) -> np.ndarray:
    """Booleans at p = 0.5, continuous values above their median (ties go below)."""
    v = np.asarray(pred[name], np.float64)
    kind = dict((n, k) for n, k, _ in ATTRIBUTE_SPEC).get(name, "continuous")
    return v > (0.5 if kind == "bool" else np.median(v))


def heldout_split(x: np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> tuple:
    """(x standardised with the training part's mean / std, train indices, test indices): one fixed
    shuffled split, the held-out protocol of :func:`w_linear_accuracy`."""
    x = np.asarray(x, np.float64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(test_fraction * len(x))))
    te, tr = order[:n_test], order[n_test:]
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-8
    return (x - mu) / sd, tr, te


def w_linear_accuracy(w: np.ndarray, labels: dict, test_fraction: float = 0.2, seed: int = 0,
                      min_rate: float = 0.02) -> dict:
    """{name: held-out balanced accuracy} of a class-balanced logistic regression w -> label.

    ``w`` float [N, w_dim]; ``labels`` {name: bool [N]}. One fixed shuffled split for all attributes;
    standardisation fitted on the training part. A label whose rarer class holds under ``min_rate`` of the
    faces scores 0.5 (chance): a generator that (almost) never draws glasses does not read glasses from w
    linearly, however well a boundary separates its two or three glasses faces from the rest."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    x, tr, te = heldout_split(w, test_fraction, seed)
    out = {}
    for name, y in labels.items():
        y = np.asarray(y, bool)
        if min(y.mean(), 1 - y.mean()) < min_rate or y[tr].all() or not y[tr].any():
            out[name] = 0.5
            continue
        clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(x[tr], y[tr])
        out[name] = round(float(balanced_accuracy_score(y[te], clf.predict(x[te]))), 4)
    return out


def w_linear_split_spread(w: np.ndarray, labels: dict, splits: int = 10) -> dict:
    """{attribute: [mean, standard deviation]} of :func:`w_linear_accuracy` over split seeds 0..splits-1
    (seed 0 is the goal's own split)."""
    runs = [w_linear_accuracy(w, labels, seed=s) for s in range(splits)]
    return {a: [round(float(np.mean([r[a] for r in runs])), 4), round(float(np.std([r[a] for r in runs])), 4)]
            for a in labels}


# ---------------------------------------------------------------------------
# spectrum
# ---------------------------------------------------------------------------

def power_spectra(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float64 [N, H, W] power spectra of the windowed, mean-free luminance."""
    y = images.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    y -= y.mean((1, 2), keepdims=True)
    h, w = y.shape[1:]
    win = np.outer(np.hanning(h), np.hanning(w))
    return np.abs(np.fft.fft2(y * win)) ** 2 / (h * w)


def hf_mask(h: int, w: int, band: float = HF_BAND) -> np.ndarray:
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    return np.hypot(fy, fx) >= band


def spectrum_ratio(generated: np.ndarray, renders: np.ndarray, band: float = HF_BAND) -> dict:
    """High-frequency band energy of generated / renders (see the module docstring), and the peak ratio."""
    pg, pr = power_spectra(generated), power_spectra(renders)
    m = hf_mask(*pg.shape[1:], band)
    eg, er = pg[:, m].sum(1).mean(), pr[:, m].sum(1).mean()
    per_bin = pg.mean(0)[m] / np.maximum(pr.mean(0)[m], 1e-12)
    return {"band_cycles_per_pixel": [band, 0.5 * 2 ** 0.5], "energy_generated": float(eg),
            "energy_renders": float(er), "hf_energy_ratio": float(eg / max(er, 1e-12)),
            "hf_peak_ratio": float(per_bin.max())}


# ---------------------------------------------------------------------------
# detector
# ---------------------------------------------------------------------------

def upsample(images: np.ndarray, size: int = DETECTOR_SIZE) -> list[np.ndarray]:
    return [np.asarray(Image.fromarray(im).resize((size, size), Image.LANCZOS)) for im in images]


def _pearson(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def detector_agreement(images: np.ndarray, yaw_reference: np.ndarray, mesh=None, size: int = DETECTOR_SIZE) -> dict:
    """MediaPipe FaceLandmarker on images upsampled to ``size``: found rate and the Pearson r of its yaw
    (largest face, degrees / 45) with ``yaw_reference`` on the faces it found."""
    from facegen.labels.landmarker import FaceMesh, model_files, pose_degrees
    mesh = mesh or FaceMesh(model_files()["landmarker"], max_faces=1)
    found, yaw, ref = 0, [], []
    for img, r in zip(upsample(images, size), yaw_reference):
        faces = mesh(img)
        if faces:
            found += 1
            face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
            yaw.append(pose_degrees(face.matrix)[0] / 45.0)
            ref.append(float(r))
    n = len(images)
    return {"n": n, "size": size, "found_rate": round(found / max(n, 1), 4), "yaw_r": round(_pearson(yaw, ref), 4)}


# ---------------------------------------------------------------------------
# everything
# ---------------------------------------------------------------------------

def generated_samples(G, n: int, psi: float, first_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images [n, H, W, 3] uint8, w [n, w_dim]) of seeds first_seed..first_seed+n-1 at ``psi``; seeds 0..n-1
    are the faces every goal reads."""
    with torch.no_grad():
        ws = L.seeds_to_ws(G, list(range(first_seed, first_seed + n)), psi=psi)
    return synthesize(G, ws), ws[:, 0].numpy()


def measure_goals(G, judge, baseline=None, n: int = 1000, renders=None, detector: bool = True,
                  detector_psi: float = 0.7, log=print, first_seed: int = 0) -> dict:
    """The goal keys for generator ``G`` (and ``fd_judge_v1`` for ``baseline``; the same model counts once).

    ``renders``: :func:`facegen.world.quality.held_out_renders` (n, G.img_resolution), when the caller
    shares them with another evaluation. ``first_seed``: the generated faces are seeds first_seed..+n-1
    (0: the faces the goals are read on; another value reads the same goals on other latents)."""
    size = G.img_resolution
    if renders is None:
        renders = held_out_renders(n, size)
    (ref, ref_labels), (ref2, _) = renders
    p_ref, f_ref = judge.predict_all(ref)
    f_ref2 = judge.features(ref2)
    gen, w = generated_samples(G, n, 1.0, first_seed)
    p_gen, f_gen = judge.predict_all(gen)
    q = {"n": n, "first_seed": first_seed, "judge": getattr(judge, "meta", {}).get("command", "facegen.world.judge"),
         "fd_judge": frechet_distance(f_gen, f_ref), "fd_judge_floor": frechet_distance(f_ref2, f_ref)}
    if baseline is None or getattr(baseline, "fingerprint", None) == getattr(G, "fingerprint", ""):
        q["fd_judge_v1"] = q["fd_judge"]
    else:
        gen_b, _ = generated_samples(baseline, n, 1.0, first_seed)
        if baseline.img_resolution != size:
            gen_b = np.stack([np.asarray(Image.fromarray(x).resize((size, size), Image.LANCZOS)) for x in gen_b])
        q["fd_judge_v1"] = frechet_distance(judge.features(gen_b), f_ref)
    q["baseline_fingerprint"] = getattr(baseline or G, "fingerprint", None)
    log(f"  Fréchet distances done (judge features, n={n})")
    q["attribute_rates"] = attribute_rates(p_gen, ref_labels, p_ref)
    w_labels = {k: binary_labels(p_gen, k) for k in W_LINEAR_ATTRIBUTES}
    q["w_linear_accuracy"] = w_linear_accuracy(w, w_labels)
    q["w_linear_splits"] = w_linear_split_spread(w, w_labels)
    spec = spectrum_ratio(gen, ref)
    q["hf_energy_ratio"] = spec.pop("hf_energy_ratio")
    q["spectrum"] = spec
    if detector:
        log("  detector (MediaPipe FaceLandmarker) ...")
        from facegen.labels.landmarker import FaceMesh, model_files
        mesh = FaceMesh(model_files()["landmarker"], max_faces=1)
        try:
            gen07, _ = generated_samples(G, n, detector_psi, first_seed)
            det = detector_agreement(gen07, judge.predict(gen07)["yaw"], mesh)
            det["psi"] = detector_psi
            det["yaw_reference"] = "the judge's yaw"
            det["renders"] = detector_agreement(ref, np.asarray([lab["yaw"] for lab in ref_labels]), mesh)
            det["renders"]["yaw_reference"] = "ground truth"
        finally:
            mesh.close()
        q["detector"] = det
    return q


def goal_report(q: dict) -> list[dict]:
    """[{goal, value, pass}] for every goal of issue 17 this bench measures (pass None: not measured)."""
    g, rows = GOALS, []
    v1 = q.get("fd_judge_v1")
    rows.append({"goal": f"Fréchet distance (judge, psi 1) <= {g['fd_ratio_max']} x baseline",
                 "value": f"{q['fd_judge']:.2f} vs baseline {v1:.2f} (x{q['fd_judge'] / v1:.2f}); "
                          f"floor {q['fd_judge_floor']:.2f}",
                 "pass": bool(q["fd_judge"] <= g["fd_ratio_max"] * v1)})
    for name, a in q["attribute_rates"].items():
        if "std_rel_diff" in a:
            val = f"std {a['std_generated']:.3f} vs world {a['std_world']:.3f} ({100 * a['std_rel_diff']:+.0f} %)"
        elif a["kind"] == "bool":
            val = f"rate {a['generated']:.1%} vs world {a['world']:.1%} ({a['gap_points']:.1f} points)"
        else:
            val = f"largest class gap {a['gap_points']:.1f} points"
        rows.append({"goal": f"attribute {name}", "value": val, "pass": a["pass"]})
    for name, acc in q["w_linear_accuracy"].items():
        rows.append({"goal": f"w linear {name} >= {g['w_linear_min']}", "value": f"{acc:.3f}",
                     "pass": bool(acc >= g["w_linear_min"])})
    rows.append({"goal": f"high-frequency energy ratio <= {g['hf_ratio_max']}",
                 "value": f"{q['hf_energy_ratio']:.2f} (peak bin {q['spectrum']['hf_peak_ratio']:.2f})",
                 "pass": bool(q["hf_energy_ratio"] <= g["hf_ratio_max"])})
    if "detector" in q:
        d = q["detector"]
        rows.append({"goal": f"detector finds >= {g['detector_found_min']:.0%} (psi {d['psi']}, {d['size']} px)",
                     "value": f"{d['found_rate']:.1%} (renders {d['renders']['found_rate']:.1%})",
                     "pass": bool(d["found_rate"] >= g["detector_found_min"])})
        rows.append({"goal": f"detector yaw r >= {g['detector_yaw_r_min']}",
                     "value": f"{d['yaw_r']:.2f} (renders {d['renders']['yaw_r']:.2f})",
                     "pass": bool(d["yaw_r"] >= g["detector_yaw_r_min"])})
    rows.append({"goal": "downstream: editing, customisation, faceswap", "pass": None,
                 "value": "not measured here: bench/edit.py, bench/customize.py, bench/faceswap.py"})
    return rows

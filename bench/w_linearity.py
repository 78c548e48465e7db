"""What limits issue 17's ``w_linear_accuracy`` goal (>= 0.85): the metric's ceiling, noise, non-linearity.

The goal (facegen.world.quality_goals.w_linear_accuracy) labels generated faces with the independent
judge (booleans at p = 0.5, continuous attributes split at their median) and fits a class-balanced
logistic regression from w; the score is the held-out balanced accuracy. The readings, one per cause:

1. **Ceiling** -- the same protocol on world *renders*, with the render's true attribute vector
   (``attributes_to_vector``: every attribute a linear coordinate, the most linear latent there can be)
   in place of w. What stays below 1 is the judge's own error near the split (a continuous attribute
   split at its median is ambiguous for faces near the median).
2. **Noise** -- a generator's judge labels with noise ``const`` against those with ``random`` noise for the
   same w: the share of labels that flip. A label the noise inputs decide cannot be read from w at all.
3. **Non-linearity** -- the held-out balanced accuracy of a small MLP (scikit-learn, 2 x 128, early
   stopping) from w next to the logistic one: information in w that a linear boundary misses (what a
   linear-decodability lever in training could turn into the goal).
4. **Split noise** -- the goal's number comes from one fixed 80 / 20 split; the same fit on ``--splits``
   other shuffles of the first ``--goal-n`` faces (the goal's n, 1000) gives its mean and standard
   deviation: how far one reading may move by the choice of held-out faces alone (a rare attribute has
   few held-out members).
5. **Transfer** -- training may read the world predictor (the linear-decodability lever does), never the
   judge. The same faces labelled by the predictor: the share of labels on which the two agree, and the
   split-noise reading with the predictor's labels. A lever that makes the predictor's labels linear
   moves the goal only as far as the two agree; on renders (the ceiling's) they agree on what the world
   draws unambiguously, and a continuous attribute near its median is where they part.
6. **Ambiguity** -- for the booleans, the share of faces whose judge probability is neither near 0 nor
   near 1 (``AMBIGUOUS``), on the generator's faces and on renders (the ceiling's), and the held-out
   accuracy of the goal's fit on the confident faces only: half-drawn glasses that the judge calls one way
   or the other by a hair are labels no boundary in w can follow, next to a boundary that is not a plane.

    nice -n 5 python bench/w_linearity.py --models assets/mini,runs/v2-mid --n 2000 --out bench/results/w-linearity.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from facegen.engine import latents as L  # noqa: E402
from facegen.engine.loaders import load_generator  # noqa: E402
from facegen.engine.synthesis import synthesize  # noqa: E402
from facegen.world.attributes import ATTRIBUTE_SPEC, attributes_to_vector, seed_attributes  # noqa: E402
from facegen.world.judge import load_judge  # noqa: E402
from facegen.world.predictor import load_world_predictor  # noqa: E402
from facegen.world.quality_goals import (binary_labels, heldout_split, w_linear_accuracy,  # noqa: E402
                                         w_linear_split_spread)
from facegen.world.render import render_batch  # noqa: E402
from results_io import write_json  # noqa: E402

GOAL_ATTRIBUTES = ("smile", "gender", "beard", "glasses", "age")
#: Render seeds for the ceiling: outside mini's data (0..23999), the predictor's, the judge's (40M+) and
#: the quality bench's held-out renders.
CEILING_SEED = 47_000_000


#: A boolean's judge probability counts as ambiguous inside this open interval (reading 6).
AMBIGUOUS = (0.1, 0.9)
BOOLEANS = tuple(a for a in GOAL_ATTRIBUTES if dict((n, k) for n, k, _ in ATTRIBUTE_SPEC)[a] == "bool")


def labels_of(judge, images: np.ndarray, pred: dict | None = None) -> dict:
    pred = judge.predict(images) if pred is None else pred
    return {a: binary_labels(pred, a) for a in GOAL_ATTRIBUTES}


def ambiguity(pred: dict, w: np.ndarray | None = None) -> dict:
    """{boolean: {"ambiguous": share of faces with a probability inside AMBIGUOUS, and with ``w``
    "linear_confident": the goal's held-out accuracy on the other faces only}} (reading 6)."""
    out = {}
    for a in BOOLEANS:
        p = np.asarray(pred[a], np.float64)
        unsure = (p > AMBIGUOUS[0]) & (p < AMBIGUOUS[1])
        out[a] = {"ambiguous": round(float(unsure.mean()), 4)}
        if w is not None:
            out[a]["linear_confident"] = w_linear_accuracy(w[~unsure], {a: p[~unsure] > 0.5})[a]
    return out


def mlp_accuracy(x: np.ndarray, labels: dict, test_fraction: float = 0.2, seed: int = 0) -> dict:
    """Held-out balanced accuracy of an MLP x -> label, with the split of ``w_linear_accuracy``."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.neural_network import MLPClassifier
    x, tr, te = heldout_split(x, test_fraction, seed)
    out = {}
    for name, y in labels.items():
        y = np.asarray(y, bool)
        # balance the classes by resampling the training part (MLPClassifier has no class weights)
        pos, neg = tr[y[tr]], tr[~y[tr]]
        k = max(len(pos), len(neg))
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.choice(pos, k), rng.choice(neg, k)])
        clf = MLPClassifier((128, 128), alpha=1e-3, early_stopping=True, max_iter=500, random_state=seed)
        clf.fit(x[idx], y[idx])
        out[name] = round(float(balanced_accuracy_score(y[te], clf.predict(x[te]))), 4)
    return out


def agreement(labels: dict, other: dict) -> dict:
    """{attribute: share of faces on which two labellings agree}."""
    return {a: round(float((labels[a] == other[a]).mean()), 4) for a in labels}


def ceiling(judge, predictor, n: int, size: int) -> dict:
    images, _ = render_batch(range(CEILING_SEED, CEILING_SEED + n), size=size)
    truth = np.stack([attributes_to_vector(seed_attributes(s)) for s in range(CEILING_SEED, CEILING_SEED + n)])
    pred = judge.predict(images)
    labels = labels_of(judge, images, pred)
    return {"linear": w_linear_accuracy(truth, labels), "rates": {a: round(float(v.mean()), 4) for a, v in labels.items()},
            "predictor_agreement": agreement(labels, labels_of(predictor, images)),
            "ambiguity": ambiguity(pred)}


def generated(G, n: int) -> tuple:
    """(ws, faces) of seeds 0..n-1 at ψ 1 with constant noise: the goal's faces."""
    with torch.no_grad():
        ws = torch.cat([L.seeds_to_ws(G, list(range(i, min(n, i + 1000))), psi=1.0) for i in range(0, n, 1000)])
    return ws, synthesize(G, ws, noise_mode="const")


def generator_readings(G, judge, predictor, n: int, splits: int = 10, goal_n: int = 1000) -> dict:
    ws, faces = generated(G, n)
    pred = judge.predict(faces)
    lab_const = labels_of(judge, faces, pred)
    lab_pred = labels_of(predictor, faces)
    torch.manual_seed(0)
    lab_random = labels_of(judge, synthesize(G, ws, noise_mode="random"))
    w = ws[:, 0].numpy()
    return {"fingerprint": G.fingerprint, "ambiguity": ambiguity(pred, w),
            "linear": w_linear_accuracy(w, lab_const),
            "mlp": mlp_accuracy(w, lab_const),
            "goal_n_splits": w_linear_split_spread(w[:goal_n], {a: v[:goal_n] for a, v in lab_const.items()}, splits),
            "noise_flip_rate": {a: round(float((lab_const[a] != lab_random[a]).mean()), 4) for a in GOAL_ATTRIBUTES},
            "predictor_agreement": agreement(lab_const, lab_pred),
            "goal_n_splits_predictor": w_linear_split_spread(w[:goal_n], {a: v[:goal_n] for a, v in lab_pred.items()}, splits)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="assets/mini", help="comma-separated model folders / registry names")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--splits", type=int, default=10, help="split seeds for the split-noise reading")
    ap.add_argument("--goal-n", type=int, default=1000, help="faces the split-noise reading uses (the goal's n)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    judge, predictor = load_judge(), load_world_predictor()
    result = {"n": a.n, "attributes": list(GOAL_ATTRIBUTES), "models": {}}
    models = [m for m in a.models.split(",") if m]
    first = load_generator(models[0])
    result["ceiling_true_attributes"] = ceiling(judge, predictor, a.n, first.img_resolution)
    print(f"{'':>32}" + "".join(f"{x:>9}" for x in GOAL_ATTRIBUTES))
    print(f"{'ceiling (true attrs)':>32}" + "".join(f"{result['ceiling_true_attributes']['linear'][x]:>9.3f}"
                                                   for x in GOAL_ATTRIBUTES))
    print(f"{'renders: judge = predictor':>32}" + "".join(
        f"{result['ceiling_true_attributes']['predictor_agreement'][x]:>9.3f}" for x in GOAL_ATTRIBUTES))
    for m in models:
        r = generator_readings(load_generator(m), judge, predictor, a.n, a.splits, a.goal_n)
        result["models"][m] = r
        for key in ("linear", "mlp", "noise_flip_rate"):
            print(f"{m + ' ' + key:>32}"[-32:] + "".join(f"{r[key][x]:>9.3f}" for x in GOAL_ATTRIBUTES))
        print(f"{m + ' splits mean +- sd':>32}"[-32:] + "".join(f"{'%.3f+-%.3f' % tuple(r['goal_n_splits'][x]):>14}"
                                                              for x in GOAL_ATTRIBUTES))
        print(f"{m + ' judge = predictor':>32}"[-32:] + "".join(f"{r['predictor_agreement'][x]:>9.3f}"
                                                              for x in GOAL_ATTRIBUTES))
        print(f"{m + ' predictor splits':>32}"[-32:] + "".join(
            f"{'%.3f+-%.3f' % tuple(r['goal_n_splits_predictor'][x]):>14}" for x in GOAL_ATTRIBUTES))
        renders = result["ceiling_true_attributes"]["ambiguity"]
        print(f"{m + ' ambiguous (renders)':>32}"[-32:] + "".join(
            f"{'%.3f (%.3f)' % (r['ambiguity'][x]['ambiguous'], renders[x]['ambiguous']) if x in BOOLEANS else '':>14}"
            for x in GOAL_ATTRIBUTES))
        print(f"{m + ' linear, confident only':>32}"[-32:] + "".join(
            f"{r['ambiguity'][x]['linear_confident'] if x in BOOLEANS else '':>9}" for x in GOAL_ATTRIBUTES))
    if a.out:
        result["command"] = "python bench/w_linearity.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_json(a.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Which attributes a generator draws together that the world draws apart (issue #17: rates, customisation).

A generator can meet every attribute's rate and spread (the goals read marginals) and still couple them:
give the bearded faces one eye colour and the others the rest. Such faces read fine one attribute at a time,
but a class drawn on them (customisation's "beard", "bald") is a narrow set, and a rate tied to another
attribute swings with it. Per labeller (the independent judge and the world predictor) and model, on the same
faces (ψ 1, constant noise, seeds 0..n-1, as ``bench/w_linearity.py`` draws them) and on renders:

1. each face's readings as a row: continuous attributes as read (the two hues, circular, left out), booleans
   as labels (probability >= 0.5), categoricals as one-hot labels ("eye_color:brown");
2. the correlation of every pair of columns of different attributes, on G's faces and on renders;
3. the coupling: the mean over pairs of |r_G - r_renders| (the same labeller on both: its own habits cancel),
   the pairs farthest apart, and three conditional rates that name the coupling in words.

    python bench/attribute_coupling.py --models DIR,DIR --n 2000 --out bench/results/X.json
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

from facegen.engine.loaders import load_generator  # noqa: E402
from facegen.world.judge import load_judge  # noqa: E402
from facegen.world.predictor import load_world_predictor  # noqa: E402
from facegen.world.render import render_batch  # noqa: E402
from results_io import write_json  # noqa: E402
from w_linearity import CEILING_SEED, generated  # noqa: E402

CIRCULAR = ("bg_hue", "clothing_hue")
#: Conditional rates that say a coupling in words: (share of faces with A) among faces with B.
CONDITIONALS = (("eye_color:brown", "beard"), ("beard", "hair_style:bald"), ("glasses", "beard"))
TOP = 8


def table(readings: dict, spec) -> tuple[list, np.ndarray]:
    """(column names, [N, C] float) of one labeller's readings (docstring, 1)."""
    names, cols = [], []
    for name, kind, values in spec:
        if name in CIRCULAR:
            continue
        if kind == "continuous":
            names.append(name)
            cols.append(np.asarray(readings[name], np.float64))
        elif kind == "bool":
            names.append(name)
            cols.append((np.asarray(readings[name]) >= 0.5).astype(np.float64))
        else:
            label = np.asarray(readings[name]).argmax(1)
            for k, v in enumerate(values):
                names.append(f"{name}:{v}")
                cols.append((label == k).astype(np.float64))
    return names, np.stack(cols, 1)


def correlations(x: np.ndarray) -> np.ndarray:
    """Pearson correlations of the columns; 0 where a column is constant."""
    c = x - x.mean(0)
    sd = np.sqrt((c ** 2).mean(0))
    r = (c.T @ c / len(x)) / np.maximum(np.outer(sd, sd), 1e-12)
    return np.where(np.outer(sd, sd) > 1e-12, r, 0.0)


def coupling(names: list, gen: np.ndarray, ren: np.ndarray) -> dict:
    """The coupling of one labeller's tables of G's faces and of renders (docstring, 2-3)."""
    attribute = [n.split(":")[0] for n in names]
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names)) if attribute[i] != attribute[j]]
    rg, rr = correlations(gen), correlations(ren)
    gaps = sorted(pairs, key=lambda p: -abs(rg[p] - rr[p]))
    cond = {}
    for a, b in CONDITIONALS:
        ia, ib = names.index(a), names.index(b)
        cond[f"{a} | {b}"] = {side: round(float(t[t[:, ib] > 0.5, ia].mean()), 3) if (t[:, ib] > 0.5).any() else None
                              for side, t in (("generated", gen), ("renders", ren))}
    return {"mean_abs_gap": round(float(np.mean([abs(rg[p] - rr[p]) for p in pairs])), 4),
            "pairs": len(pairs),
            "top": [{"pair": f"{names[i]} ~ {names[j]}", "generated": round(float(rg[i, j]), 3),
                     "renders": round(float(rr[i, j]), 3)} for i, j in gaps[:TOP]],
            "conditional": cond}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, help="comma-separated model folders / registry names")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    labellers = {"judge": load_judge(), "predictor": load_world_predictor()}
    models = [m for m in a.models.split(",") if m]
    size = load_generator(models[0]).img_resolution
    images, _ = render_batch(range(CEILING_SEED, CEILING_SEED + a.n), size=size)
    renders = {k: table(L.predict(images), L.spec) for k, L in labellers.items()}
    result = {"n": a.n, "models": {}}
    for m in models:
        G = load_generator(m)
        _, faces = generated(G, a.n)
        result["models"][m] = {"fingerprint": G.fingerprint}
        for k, L in labellers.items():
            names, ren = renders[k]
            c = coupling(names, table(L.predict(faces), L.spec)[1], ren)
            result["models"][m][k] = c
            print(f"{m} [{k}]: mean |r_G - r_renders| {c['mean_abs_gap']:.4f} over {c['pairs']} pairs; "
                  + "; ".join(f"P({p}) {v['generated']} vs {v['renders']}" for p, v in c["conditional"].items()))
            for t in c["top"][:4]:
                print(f"    {t['pair']:34s} r {t['generated']:+.3f} vs renders {t['renders']:+.3f}")
    if a.out:
        result["command"] = "python bench/attribute_coupling.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_json(a.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

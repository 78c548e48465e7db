"""Variants of a whitened direction set, to compare whitened and plain editing like for like.

    python bench/whitening_variants.py --src runs/whitened-mini --out runs/whitened-scoresd-mini --steps score-sd
    python bench/whitening_variants.py --src runs/whitened-mini --out runs/half-whitened-mini --power 0.5

A whitened set (facegen.packs.whitening) edits along ``d ~ Sigma a`` where ``a`` is its classifier's
normal in W; the plain set edits along ``a`` itself (on mini the two fits' normals nearly agree:
bench/results/edit-whitened-mini.md, "cos of the classifier normals"). Measurement only, for bench/edit.py; the fitted sets are untouched.

``--power p``: edit along ``d_p ~ Sigma^p a`` (p = 1: whitened, p = 0: the plain normal of the same
fit, p = 0.5 halfway), the boundary normal in the geometry of the metric ``Sigma^-p``. The copy stores
``Sigma^p`` in its ``covariance`` field, so that its conditional directions (inner product
``x^T Sigma^-p y``, facegen.packs.directions) keep the other classifiers' scores fixed as for p = 1.

``--steps``: ``w-sd`` (default, the shipped unit: one SD of ``w . d``, here ``sqrt(d^T Sigma d)`` of
the set's regularised Sigma) or ``score-sd`` (one SD of the classifier score ``a . w``:
``sqrt(a^T Sigma a) / (a . d)``). For the plain normal the two agree; for ``d ~ Sigma a`` one SD of
``w . d`` is longer (>= by Cauchy-Schwarz), so a +-2.5-step sweep moves the classifier score further
than the plain set's sweep does. ``score-sd`` sweeps move every variant's score equally far.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facegen.packs.directions import load_directions  # noqa: E402


def sym_power(S: np.ndarray, p: float) -> np.ndarray:
    e, U = np.linalg.eigh(S)
    return (U * e ** p) @ U.T


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="folder of a whitened directions.npz")
    p.add_argument("--out", required=True)
    p.add_argument("--power", type=float, default=1.0)
    p.add_argument("--steps", choices=("w-sd", "score-sd"), default="w-sd")
    args = p.parse_args(argv)
    ds = load_directions(args.src)
    if ds.covariance is None:
        raise SystemExit(f"{args.src} is not a whitened set (no covariance)")
    S = ds.covariance
    A = np.linalg.solve(S, ds.vectors.astype(np.float64).T).T              # classifier normals a (rows)
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    Sp = sym_power(S, args.power)
    V = A @ Sp                                                               # rows Sigma^p a (symmetric)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    w_sd = np.sqrt(np.einsum("ad,de,ae->a", V, S, V))
    score_sd = np.sqrt(np.einsum("ad,de,ae->a", A, S, A)) / np.einsum("ad,ad->a", A, V)
    scales = w_sd if args.steps == "w-sd" else score_sd
    cos_src = np.einsum("ad,ad->a", V, ds.vectors.astype(np.float64))
    ds.vectors, ds.scales, ds.covariance = V.astype(np.float32), scales.astype(np.float32), Sp
    ds.band_vectors = np.repeat(ds.vectors[:, None], ds.band_vectors.shape[1], 1)  # not benched
    ds.meta["method"] = f"{ds.meta.get('method')} variant: Sigma^{args.power:g} a"
    ds.meta["step_unit"] = {"w-sd": "one standard deviation of w . d", "score-sd": "one standard deviation of the "
                            "classifier score a . w"}[args.steps]
    ds.meta["derived"] = {"command": "python bench/whitening_variants.py " + " ".join(argv or sys.argv[1:]),
                          "from": args.src, "power": args.power, "steps": args.steps,
                          "w_d_sd_over_score_sd": {n: round(float(r), 3) for n, r in zip(ds.names, w_sd / score_sd)},
                          "cosine_with_source": {n: round(float(c), 3) for n, c in zip(ds.names, cos_src)}}
    out = ds.save(args.out)
    print(json.dumps({"out": str(out), **ds.meta["derived"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

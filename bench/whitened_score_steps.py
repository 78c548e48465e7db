"""A whitened direction set with score-SD steps, to compare whitened and plain editing like for like.

    python bench/whitened_score_steps.py --src runs/whitened-mini --out runs/whitened-scoresd-mini

Step units of a direction set are "one standard deviation of w . d over the samples". For a plain set
``d`` is the classifier's normal ``a``, so one step is also one SD of the classifier score ``a . w``.
For a whitened set (facegen.packs.whitening) ``d ~ Sigma a`` leans to W's high-variance axes and one
SD of ``w . d``, ``sqrt(d^T Sigma d)``, is longer than the step that moves the score by one SD,
``1 / sqrt(d^T Sigma^-1 d)`` (one unit of whitened distance along ``n'``; the ratio is >= 1 by
Cauchy-Schwarz). This writes a copy of a whitened set whose ``scales`` are the latter, so that a
bench/edit.py sweep of +-2.5 steps moves each attribute's classifier score as far as the plain set's
sweep does. Measurement only: the shipped unit stays one SD of ``w . d``.
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="folder of a whitened directions.npz")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    ds = load_directions(args.src)
    if ds.covariance is None:
        raise SystemExit(f"{args.src} is not a whitened set (no covariance)")
    V = ds.vectors.astype(np.float64)
    score_sd = 1.0 / np.sqrt(np.einsum("ad,ad->a", V, np.linalg.solve(ds.covariance, V.T).T))
    ratio = ds.scales / score_sd
    ds.meta["step_unit"] = "one standard deviation of the classifier score (whitened length 1 along n')"
    ds.meta["derived"] = {"command": "python bench/whitened_score_steps.py " + " ".join(argv or sys.argv[1:]),
                          "from": args.src, "w_d_sd_over_score_sd": {n: round(float(r), 3) for n, r in zip(ds.names, ratio)}}
    ds.scales = score_sd.astype(np.float32)
    out = ds.save(args.out)
    print(json.dumps({"out": str(out), **ds.meta["derived"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

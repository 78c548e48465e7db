"""Projection without a pack (the Photo encoding tab's fallback) on the official-format ADA fixture.

Targets G(w_true) the generator can make exactly (z from torch seed 7, psi 0.7; 32 px, random weights: the
images look like noise, so this measures the optimiser, not face likeness). For each target, from w_avg:

* ``start``: PSNR of the average face G(w_avg) (the baseline every projection starts from);
* ``W`` / ``w+``: after `--steps` steps of the StyleGAN2 projector's recipe (facegen.features.encode.project,
  default loss: the pickle's own discriminator features + pixel MSE), rendered with G's constant noise;
* ``W, noise maps fixed``: the same in W with ``optimise_noise=False`` (the recipe optimises the noise maps,
  which the studio then drops: this shows what that costs);
* ``mean image``: PSNR of the per-pixel mean of 256 samples (a baseline that knows the distribution).

    python bench/projection.py [--targets 4] [--steps 50] [--out bench/results/projection.json]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import facegen  # noqa: E402
from facegen.engine.synthesis import synthesize  # noqa: E402
from facegen.features import encode as enc  # noqa: E402
from results_io import write_json  # noqa: E402

ADA = ROOT.parent / "shared" / "fixtures" / "stylegan2-ada-tiny" / "G_ema.pkl"


def psnr(a, b) -> float:
    return round(enc.reconstruction_metrics(a, b)["psnr"], 2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ADA))
    p.add_argument("--targets", type=int, default=4)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if not Path(a.model).exists() and a.model == str(ADA):
        print(f"the ADA golden fixture is absent ({ADA})", file=sys.stderr)
        return 2
    G = facegen.load_generator(a.model).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        w_true = G.mapping(torch.randn(a.targets, G.z_dim, generator=g), None, truncation_psi=0.7)
        samples = synthesize(G, G.mapping(torch.randn(256, G.z_dim, generator=g), None))
    targets = synthesize(G, w_true)
    start = synthesize(G, G.mapping.w_avg.expand(1, G.num_ws, G.w_dim))[0]
    mean_image = samples.astype(np.float64).mean(0).round().astype(np.uint8)
    runs = {"W": dict(mode="w"), "w+": dict(mode="w+"), "W, noise maps fixed": dict(mode="w", optimise_noise=False)}
    rows = []
    for i, target in enumerate(targets):
        row = {"target": i, "start": psnr(start, target), "mean image": psnr(mean_image, target)}
        for name, kw in runs.items():
            r = enc.project(G, target, steps=a.steps, time_budget=600, **kw)
            row[name] = psnr(synthesize(G, r.ws[None])[0], target)
            row[f"{name} seconds"] = round(r.seconds, 2)
            loss = r.perceptual
        rows.append(row)
        print(json.dumps(row), flush=True)

    def span(key):
        v = [r[key] for r in rows]
        return [min(v), max(v)]
    summary = {k: span(k) for k in ("start", "mean image", *runs)}
    summary["gain W over start dB"] = [round(min(r["W"] - r["start"] for r in rows), 2),
                                       round(max(r["W"] - r["start"] for r in rows), 2)]
    summary["cost of optimising noise maps dB"] = [round(min(r["W, noise maps fixed"] - r["W"] for r in rows), 2),
                                                   round(max(r["W, noise maps fixed"] - r["W"] for r in rows), 2)]
    summary["seconds per image W"] = span("W seconds")
    res = {"command": "python bench/projection.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "model": Path(a.model).name, "resolution": G.img_resolution, "steps": a.steps, "loss": loss,
           "threads": torch.get_num_threads(), "targets": rows, "summary": summary}
    print(json.dumps(summary, indent=1))
    if a.out:
        write_json(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

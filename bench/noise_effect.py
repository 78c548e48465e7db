"""Does a generator's per-pixel noise move the world predictor's readings? (issue #17, the textured phase)

From scratch with distribution matching on (``facegen/world/distribution_match.py``) the last block's noise
strength of the v3 runs grew from ~0.001 to ~0.1 by 96 kimg and the faces turned to speckle. The lever pushes
the predictor's attribute means and spreads of G's faces toward the reals'; if random noise moves those
readings toward the reals', the lever pays G for noise. This bench reads, per generator:

1. the largest |noise strength| of each synthesis block;
2. on ``--n`` faces (ψ 1, fixed seeds) drawn with random noise and without, the lever's statistics (the
   predictor's continuous values, boolean and class probabilities: ``DistributionMatch.statistics``), and
   their errors against the same statistics of ``--n`` training renders (seeds 0..n-1), in units of the
   renders' spread as the lever measures them: mean |e_mean| and mean |e_sd| with noise and without.

A generator whose errors are clearly smaller with its noise than without draws noise that the lever rewards
(v3lin at step 2500); one whose errors are larger with it grew its noise for another master (the
discriminator: v3nn, whose matching read noise-free faces). ``--g-noise none`` (facegen/world/trainer.py)
draws no noise in training at all; its generators read the same both ways.

    python bench/noise_effect.py --models runs/v3lin-eval/v3lin-m2500,assets/mini-v2 --n 512 \\
        --out bench/results/v3-early/noise-effect.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from facegen.engine.loaders import load_generator  # noqa: E402
from facegen.world.distribution_match import DistributionMatch  # noqa: E402
from facegen.world.render import render_batch  # noqa: E402
from facegen.world.train_data import to_tensor  # noqa: E402
from results_io import write_json  # noqa: E402

BATCH = 128


def noise_strengths(G) -> dict:
    """{block: largest |noise strength| of its layers}."""
    out = {}
    for name, p in G.synthesis.named_parameters():
        if name.endswith("noise_strength"):
            block = name.split(".")[0]
            out[block] = max(out.get(block, 0.0), abs(float(p)))
    return out


@torch.no_grad()
def render_statistics(match: DistributionMatch, n: int) -> torch.Tensor:
    imgs, _ = render_batch(list(range(n)), size=64)
    x = to_tensor(imgs)                              # as the trainer feeds the reals
    return torch.cat([match.statistics(x[i:i + BATCH]) for i in range(0, n, BATCH)])


@torch.no_grad()
def face_statistics(match: DistributionMatch, G, n: int, noise_mode: str, seed: int = 0) -> torch.Tensor:
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed + 1)                      # the random noise draws
    return torch.cat([match.statistics(G.synthesis(G.mapping(z[i:i + BATCH], None), noise_mode=noise_mode))
                      for i in range(0, n, BATCH)])


def errors(f: torch.Tensor, f_real: torch.Tensor, scale_floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(e_mean, e_sd) per statistic, in units of the renders' spread (the lever's errors)."""
    scale = f_real.std(0).clamp_min(scale_floor)
    return (f.mean(0) - f_real.mean(0)) / scale, (f.std(0) - f_real.std(0)) / scale


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, help="comma-separated generator folders or registry names")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the readings as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    match = DistributionMatch(weight=1.0)
    f_real = render_statistics(match, args.n)
    result = {"command": "python bench/noise_effect.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "n": args.n, "statistics": list(match.labels), "models": {}}
    print(f"{'model':42s} {'largest |noise|':>16s} {'|e_mean| noise':>15s} {'|e_mean| none':>14s} "
          f"{'|e_sd| noise':>13s} {'|e_sd| none':>12s}")
    for ref in args.models.split(","):
        G = load_generator(ref).eval()
        row = {"noise_strength": noise_strengths(G)}
        for mode in ("random", "none"):
            e_mean, e_sd = errors(face_statistics(match, G, args.n, mode), f_real, match.scale_floor)
            row[mode] = {"mean_abs_e_mean": round(float(e_mean.abs().mean()), 4),
                         "mean_abs_e_sd": round(float(e_sd.abs().mean()), 4),
                         "e_mean": [round(float(v), 4) for v in e_mean], "e_sd": [round(float(v), 4) for v in e_sd]}
        result["models"][ref] = row
        print(f"{ref:42s} {max(row['noise_strength'].values()):16.4f} {row['random']['mean_abs_e_mean']:15.3f} "
              f"{row['none']['mean_abs_e_mean']:14.3f} {row['random']['mean_abs_e_sd']:13.3f} "
              f"{row['none']['mean_abs_e_sd']:12.3f}")
    if args.out:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

"""Does the discriminator memorise its training renders? D's verdict on seen vs unseen renders.

Why (issue #17): ADA's probability p is driven by the sign of D on the (augmented) reals it trains on; on
the 8-layer-mapping runs it climbed to 0.86-0.98 by 288-320 kimg of ``world:96000`` (3 epochs). A high
p says D is confident on its reals, which is what memorisation looks like -- or just a D that wins. The
two call for different levers: memorisation for more renders (``--data world:192000``, the world is
procedural), a winning D for a stronger G. This bench tells them apart.

Method, per checkpoint (training checkpoint or compact resume file), without augmentation, in batches of
the run's size (D's minibatch-stddev reads its batch):

* D's raw logits on ``n`` renders it trained on (seeds 0..n-1 of ``world:N``, the images the training
  set holds), on ``n`` renders it never saw (the quality bench's held-out seeds), and on ``n`` faces of G
  and of G_ema (psi 1, constant noise).
* The **memorisation gap** = mean logit(seen) - mean logit(unseen), also in ADA's own unit: the mean sign
  (r_t) on each set. A gap near 0 means D judges unseen renders as real as seen ones (no memorisation).
  The spread of logits within the unseen set gives the scale: the gap's standard error is
  sqrt(var_seen / n + var_unseen / n).

CLI::

    python bench/d_overfit.py --checkpoints runs/X/ckpt-18000.pt,runs/X/checkpoint.pt --n 1000 \\
        --out bench/results/mapping-depth/d-overfit.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from facegen.engine.synthesis import to_uint8  # noqa: E402
from facegen.world.quality import TEST_SEED_BASE  # noqa: E402
from facegen.world.render import render_batch  # noqa: E402
from facegen.world.resume import read_resume  # noqa: E402
from facegen.world.train_config import build_networks  # noqa: E402
from facegen.world.train_data import to_tensor  # noqa: E402
from facegen.world.train_export import checkpoint_config  # noqa: E402
from results_io import write_json  # noqa: E402


@torch.no_grad()
def logits(D, images: np.ndarray, batch: int) -> np.ndarray:
    """D's raw logits of uint8 images [n, H, W, 3], in batches of ``batch`` (no augmentation)."""
    return torch.cat([D(to_tensor(images[i:i + batch]), None).flatten()
                      for i in range(0, len(images), batch)]).numpy()


@torch.no_grad()
def faces(G, n: int, batch: int, seed: int = 0) -> np.ndarray:
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return np.concatenate([to_uint8(G.synthesis(G.mapping(z[i:i + batch], None), noise_mode="const"))
                           for i in range(0, n, batch)])


def summary(x: np.ndarray) -> dict:
    return {"mean_logit": round(float(x.mean()), 4), "std_logit": round(float(x.std()), 4),
            "mean_sign": round(float(np.sign(x).mean()), 4)}


def measure(checkpoint: str, n: int, seen: np.ndarray, unseen: np.ndarray) -> dict:
    st = read_resume(checkpoint)
    cfg = checkpoint_config(st)
    n_train = int(cfg.data.split(":", 1)[1]) if cfg.data.startswith("world:") else None
    if n_train is None or n_train < n or n_train > TEST_SEED_BASE:
        raise SystemExit(f"{checkpoint}: trained on {cfg.data!r}, not on at least {n} world renders "
                         f"(and fewer than the held-out seeds' {TEST_SEED_BASE})")
    nets = {}
    for key in ("G", "G_ema"):
        G, D = build_networks(cfg)
        G.load_state_dict(st[key])
        nets[key] = G.eval()
    D.load_state_dict(st["D"])
    D.eval()
    b = cfg.batch
    sets = {"seen": logits(D, seen, b), "unseen": logits(D, unseen, b),
            "G": logits(D, faces(nets["G"], n, b), b), "G_ema": logits(D, faces(nets["G_ema"], n, b), b)}
    gap = float(sets["seen"].mean() - sets["unseen"].mean())
    se = float(np.sqrt(sets["seen"].var() / n + sets["unseen"].var() / n))
    return {"checkpoint": checkpoint, "train_seeds": [0, n_train], "step": int(st["step"]), "kimg": round(st["images_seen"] / 1000, 1),
            "data": cfg.data, "batch": b, **{k: summary(v) for k, v in sets.items()},
            "memorisation_gap": round(gap, 4), "memorisation_gap_se": round(se, 4),
            "sign_gap": round(float(np.sign(sets["seen"]).mean() - np.sign(sets["unseen"]).mean()), 4)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", required=True, help="comma-separated training checkpoints / resume files")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    seen_seeds, unseen_seeds = range(a.n), range(TEST_SEED_BASE, TEST_SEED_BASE + a.n)
    seen = render_batch(seen_seeds, size=a.resolution)[0]
    unseen = render_batch(unseen_seeds, size=a.resolution)[0]
    out = {"n": a.n, "seen_seeds": [seen_seeds.start, seen_seeds.stop],
           "unseen_seeds": [unseen_seeds.start, unseen_seeds.stop], "command": "python bench/d_overfit.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "runs": [measure(c.strip(), a.n, seen, unseen) for c in a.checkpoints.split(",") if c.strip()]}
    print(f"{'checkpoint':48s} {'kimg':>6s} {'seen':>7s} {'unseen':>7s} {'G':>7s} {'G_ema':>7s} "
          f"{'gap':>14s} {'sign seen/unseen':>17s}")
    for r in out["runs"]:
        print(f"{r['checkpoint'][-48:]:48s} {r['kimg']:6.1f} {r['seen']['mean_logit']:7.3f} "
              f"{r['unseen']['mean_logit']:7.3f} {r['G']['mean_logit']:7.3f} {r['G_ema']['mean_logit']:7.3f} "
              f"{r['memorisation_gap']:7.3f} ± {r['memorisation_gap_se']:.3f} "
              f"{r['seen']['mean_sign']:8.3f} / {r['unseen']['mean_sign']:.3f}")
    if a.out:
        write_json(a.out, out)
    return out


if __name__ == "__main__":
    main()

"""The class sampler (facegen.packs.classes) on mini with the world labeller: hit rate and diversity by spread.

Builds a class sampler (n labelled samples at psi 0.7, seed 0; in a temporary folder), then for eight
classes proposes `--per-class` latents per setting from a fresh seed and judges them with the same labeller:

* hit rate: the share of proposals whose face belongs to the class (plain sampling's is the base rate);
* diversity: the mean pairwise distance of the labeller's features over the proposals' faces divided by
  the same for as many unconditional faces.

Settings: spread s = 0 (the members themselves), 0.15, 0.2, 0.3 (the default) and a Gaussian fitted to
the members' z (mean, per-dimension sd), the alternative the method was chosen against.

    python bench/class_sampler.py [--n 2000] [--per-class 64] [--out bench/results/class_sampler.json]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import facegen  # noqa: E402
from facegen.labels.base import load_labeller  # noqa: E402
from facegen.labels.classes import classes_for, label_classes  # noqa: E402
from facegen.packs.classes import ClassSampler, build_class_sampler, generate_from_z  # noqa: E402
from results_io import write_json  # noqa: E402

CLASSES = ("glasses", "hair:red", "smiling", "bald", "beard", "old", "young", "skin:dark")
SPREADS = (0.0, 0.15, 0.2, 0.3)


def spread_of(L, images) -> float:
    f = torch.from_numpy(np.asarray(L.features(images), np.float64))
    return float(torch.pdist(f).mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini")
    p.add_argument("--labeller", default="world")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--per-class", type=int, default=64)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    G = facegen.load_generator(a.model).eval()
    L, rules = load_labeller(a.labeller), classes_for(a.labeller)
    with tempfile.TemporaryDirectory() as tmp:
        build_class_sampler(G, a.labeller, tmp, n=a.n, seed=0, n_eval=0, log=lambda m: None)
        s = ClassSampler.load(Path(tmp) / "classes" / "sampler.npz")
    plain, _ = generate_from_z(G, torch.randn(a.per_class, G.z_dim, generator=torch.Generator().manual_seed(99)), 0.7)
    ref_spread = spread_of(L, plain)
    settings = {f"s={v:g}": v for v in SPREADS}
    settings["gaussian fit"] = None
    rows = []
    for name in CLASSES:
        members = s.z[s.members[:, s.classes.index(name)]]
        row = {"class": name, "base_rate": round(float(s.base_rate[s.classes.index(name)]), 4),
               "members": int(len(members))}
        for label, spread in settings.items():
            g = torch.Generator().manual_seed(1234)
            if spread is None:
                mu, sd = members.mean(0), members.std(0) if len(members) > 1 else np.ones(members.shape[1])
                z = torch.from_numpy(mu + sd * np.random.default_rng(1234).standard_normal((a.per_class, len(mu)))).float()
            else:
                s.spread = spread
                z = s.propose(np.flatnonzero(s.members[:, s.classes.index(name)]), g, a.per_class)
            images, _ = generate_from_z(G, z, 0.7)
            hit, read = label_classes(L, rules, [name], images)
            row[label] = {"hit": round(float((hit[:, 0] & read).mean()), 4),
                          "diversity": round(spread_of(L, images) / ref_spread, 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = {label: {k: round(float(np.mean([r[label][k] for r in rows])), 3) for k in ("hit", "diversity")}
            for label in settings}
    mean["base_rate"] = round(float(np.mean([r["base_rate"] for r in rows])), 3)
    print(json.dumps(mean, indent=1))
    res = {"command": "python bench/class_sampler.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "model": a.model, "fingerprint": G.fingerprint, "labeller": a.labeller, "n": a.n, "psi": 0.7,
           "per_class": a.per_class, "classes": rows, "mean": mean}
    if a.out:
        write_json(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

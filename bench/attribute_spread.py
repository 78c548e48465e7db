"""How wide a generator draws its continuous attributes, as two labellers see it (issue #17's spread goal).

The goal (``bench/quality.py``, ``attribute_rates``) compares the independent judge's standard deviation of
an attribute on generated faces with the world's true one (within 15 %). Training may read the world
predictor, never the judge, so a spread the levers match through the predictor reaches the goal only as far
as the two labellers agree. Per continuous attribute and model, on the same faces (ψ 1, constant noise, seeds
0..n-1) and on renders (the seeds of ``bench/w_linearity.py``'s ceiling):

1. the judge's and the predictor's standard deviation, each relative to the same labeller's on renders (the
   labeller's own compression cancels: a generator that draws the world's spread reads 0 % on both);
2. the two labellers' correlation on the generated faces and on renders (how far they read the same
   attribute into G's faces);
3. the goal's own number: the judge's deviation on generated faces relative to the renders' truth.

``--predictor-read augment`` reads the predictor as a lever does with ``--lin-read`` / ``--match-read
augment`` (through its training augmentation, seeded), so the predictor's columns say what such a lever sees.

    python bench/attribute_spread.py --models DIR,DIR --n 2000 --out bench/results/X.json
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
from facegen.world.attributes import ATTRIBUTE_SPEC  # noqa: E402
from facegen.world.judge import load_judge  # noqa: E402
from facegen.world.predictor import load_world_predictor  # noqa: E402
from facegen.world.predictor_images import READS, lever_input  # noqa: E402
from facegen.world.render import render_batch  # noqa: E402
from results_io import write_json  # noqa: E402
from w_linearity import CEILING_SEED, generated  # noqa: E402

#: The continuous attributes the goals read for linearity; ``--attributes`` takes any continuous ones.
DEFAULT_ATTRIBUTES = ("smile", "gender", "age")


def predicted(predictor, images: np.ndarray, read: str, seed: int = 0, chunk: int = 250) -> dict:
    """The predictor's decoded attributes of uint8 images [N, H, W, 3], read as a lever reads them
    (``facegen.world.predictor_images.lever_input``; "augment" seeded for a repeatable reading)."""
    if read == "plain":
        return predictor.predict(images)
    torch.manual_seed(seed)
    parts = []
    with torch.no_grad():
        for i in range(0, len(images), chunk):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + chunk])).permute(0, 3, 1, 2).float() / 127.5 - 1
            parts.append(predictor.decode(predictor(lever_input(predictor, x, read))[1]))
    return {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}


def spreads(judged: dict, predicted: dict, attributes) -> dict:
    """{attribute: {"judge_std", "predictor_std", "correlation"}} of one set of faces."""
    out = {}
    for a in attributes:
        j, p = np.asarray(judged[a], np.float64), np.asarray(predicted[a], np.float64)
        out[a] = {"judge_std": round(float(j.std()), 4), "predictor_std": round(float(p.std()), 4),
                  "correlation": round(float(np.corrcoef(j, p)[0, 1]), 4)}
    return out


def relative(generated: dict, renders: dict, truth: dict) -> dict:
    """Each labeller's spread on generated faces relative to its own on renders, and the goal's reading."""
    out = {}
    for a, g in generated.items():
        r = renders[a]
        out[a] = {**g, "judge_vs_judge_on_renders": round(g["judge_std"] / r["judge_std"] - 1, 4),
                  "predictor_vs_predictor_on_renders": round(g["predictor_std"] / r["predictor_std"] - 1, 4),
                  "judge_vs_world": round(g["judge_std"] / truth[a] - 1, 4)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, help="comma-separated model folders / registry names")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--attributes", default=",".join(DEFAULT_ATTRIBUTES))
    ap.add_argument("--predictor-read", choices=READS, default="plain")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    attributes = [x for x in a.attributes.split(",") if x]
    kinds = {name: kind for name, kind, _ in ATTRIBUTE_SPEC}
    bad = [x for x in attributes if kinds.get(x) != "continuous"]
    if bad:
        ap.error(f"not continuous world attributes: {bad}")
    judge, predictor = load_judge(), load_world_predictor()
    models = [m for m in a.models.split(",") if m]
    size = load_generator(models[0]).img_resolution
    images, labels = render_batch(range(CEILING_SEED, CEILING_SEED + a.n), size=size)
    truth = {x: float(np.std([d[x] for d in labels])) for x in attributes}
    renders = spreads(judge.predict(images), predicted(predictor, images, a.predictor_read), attributes)
    result = {"n": a.n, "predictor_read": a.predictor_read, "world_std": {x: round(v, 4) for x, v in truth.items()}, "renders": renders, "models": {}}
    print(f"{'':>34}" + "".join(f"{x:>26}" for x in attributes))
    print(f"{'renders: judge / predictor std, r':>34}" + "".join(
        f"{'%.3f / %.3f, %.3f' % (renders[x]['judge_std'], renders[x]['predictor_std'], renders[x]['correlation']):>26}"
        for x in attributes))
    for m in models:
        G = load_generator(m)
        _, faces = generated(G, a.n)
        r = relative(spreads(judge.predict(faces), predicted(predictor, faces, a.predictor_read), attributes),
                     renders, truth)
        result["models"][m] = {"fingerprint": G.fingerprint, **r}
        print(f"{m + ' judge / predictor vs renders, r':>34}"[-34:] + "".join(
            f"{'%+.0f%% / %+.0f%%, %.3f' % (100 * r[x]['judge_vs_judge_on_renders'], 100 * r[x]['predictor_vs_predictor_on_renders'], r[x]['correlation']):>26}"
            for x in attributes))
        print(f"{m + ' goal: judge vs world':>34}"[-34:] + "".join(
            f"{'%+.0f%%' % (100 * r[x]['judge_vs_world']):>26}" for x in attributes))
    if a.out:
        result["command"] = "python bench/attribute_spread.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_json(a.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

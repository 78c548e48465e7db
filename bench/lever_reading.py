"""What the attribute-matching lever reads of a generator, beside what the goal counts (issue #17).

The rate goals (``bench/quality.py``) count the independent judge's top class of each face (categorical),
its p > 0.5 (boolean) and its standard deviation of clamped values (continuous). The matching lever
(``facegen/world/distribution_match.py``) pulls the world predictor's statistics of the generated faces
toward those of real images: by default mean probabilities and raw, unclamped continuous outputs. Where a
generator meets the lever and misses the goal, the readings below say which of the two differences is to
blame -- the statistic (soft mean vs count, raw vs in range) or the labeller (predictor vs judge). Per
model, on the same faces (ψ 1, constant noise, seeds 0..n-1) and on renders (``bench/w_linearity.py``'s
ceiling seeds), each number on generated faces minus the same number on renders:

* continuous attributes: the predictor's raw standard deviation, its clamped one, the share of faces it reads
  out of [0, 1], the judge's standard deviation (relative differences; shares in points) and the upper
  quartile of each labeller;
* boolean and categorical: per class, the predictor's mean probability, the predictor's top-class count, and
  the judge's top-class count (points); and each labeller's mean top probability (how sure it is).

    python bench/lever_reading.py --models DIR,DIR --n 1000 --out bench/results/X.json
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

#: Continuous attributes read by default (those whose spread goals the levers act on).
DEFAULT_CONTINUOUS = ("smile", "gender", "age", "hair_length")


def raw_outputs(predictor, images: np.ndarray, chunk: int = 250) -> torch.Tensor:
    """The predictor's raw head outputs [N, width] of uint8 images [N, H, W, 3] (what the lever reads)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), chunk):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + chunk])).permute(0, 3, 1, 2).float() / 127.5 - 1
            out.append(predictor(predictor.prepare_tensor(x, (-1.0, 1.0)))[1])
    return torch.cat(out)


def readings(predictor, judge, images: np.ndarray, continuous) -> dict:
    """One set of faces' numbers (module docstring)."""
    raw = raw_outputs(predictor, images)
    judged = judge.predict(images)
    cols = {name: (kind, rng, i, width) for name, kind, rng, i, width in predictor.layout}
    out = {"continuous": {}, "classes": {}}
    for a in continuous:
        v = raw[:, cols[a][2]].numpy().astype(np.float64)
        j = np.asarray(judged[a], np.float64)
        c = np.clip(v, 0.0, 1.0)
        out["continuous"][a] = {"predictor_raw_std": float(v.std()), "predictor_clamped_std": float(c.std()),
                                "predictor_out_of_range": float(np.mean((v < 0) | (v > 1))),
                                "judge_std": float(j.std()), "predictor_q75": float(np.quantile(c, 0.75)),
                                "judge_q75": float(np.quantile(j, 0.75))}
    for name, (kind, rng, i, width) in cols.items():
        if kind == "bool":
            p = torch.sigmoid(raw[:, i]).numpy()
            probs, classes = np.stack([1 - p, p], 1), ("no", "yes")
            top_judge = (np.asarray(judged[name]) > 0.5).astype(int)
        elif kind == "categorical":
            probs, classes = raw[:, i:i + width].softmax(1).numpy(), tuple(rng)
            top_judge = np.asarray([classes.index(x) for x in judged[f"{name}_label"]])
        else:
            continue
        top = probs.argmax(1)
        out["classes"][name] = {
            "classes": list(classes),
            "predictor_mean_probability": probs.mean(0).tolist(),
            "predictor_count": (np.bincount(top, minlength=len(classes)) / len(top)).tolist(),
            "judge_count": (np.bincount(top_judge, minlength=len(classes)) / len(top)).tolist(),
            "predictor_sureness": float(probs.max(1).mean())}
    return out


def difference(gen: dict, ren: dict) -> dict:
    """Generated minus renders: relative for standard deviations, points for shares and counts."""
    out = {"continuous": {}, "classes": {}}
    for a, g in gen["continuous"].items():
        r = ren["continuous"][a]
        out["continuous"][a] = {
            **{k: round(g[k] / r[k] - 1, 4) for k in ("predictor_raw_std", "predictor_clamped_std", "judge_std")},
            "predictor_out_of_range_points": round(100 * (g["predictor_out_of_range"] - r["predictor_out_of_range"]), 2),
            **{k: round(g[k] - r[k], 4) for k in ("predictor_q75", "judge_q75")}}
    for name, g in gen["classes"].items():
        r = ren["classes"][name]
        out["classes"][name] = {
            k: {c: round(100 * (a - b), 2) for c, a, b in zip(g["classes"], g[k], r[k])}
            for k in ("predictor_mean_probability", "predictor_count", "judge_count")}
        out["classes"][name]["predictor_sureness"] = round(g["predictor_sureness"] - r["predictor_sureness"], 4)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, help="comma-separated model folders / registry names")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--continuous", default=",".join(DEFAULT_CONTINUOUS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    predictor, judge = load_world_predictor(), load_judge()
    continuous = [x for x in a.continuous.split(",") if x]
    kinds = {name: kind for name, kind, _, _, _ in predictor.layout}
    bad = [x for x in continuous if kinds.get(x) != "continuous"]
    if bad:
        ap.error(f"not continuous predictor attributes: {bad}")
    models = [m for m in a.models.split(",") if m]
    size = load_generator(models[0]).img_resolution
    images, _ = render_batch(range(CEILING_SEED, CEILING_SEED + a.n), size=size)
    renders = readings(predictor, judge, images, continuous)
    result = {"n": a.n, "renders": renders, "models": {}}
    for m in models:
        G = load_generator(m)
        _, faces = generated(G, a.n)
        gen = readings(predictor, judge, faces, continuous)
        diff = difference(gen, renders)
        result["models"][m] = {"fingerprint": G.fingerprint, "generated": gen, "minus_renders": diff}
        print(f"{m}: generated minus renders")
        for x, d in diff["continuous"].items():
            print(f"  {x:12s} std: predictor raw {d['predictor_raw_std']:+.0%}, clamped {d['predictor_clamped_std']:+.0%}, "
                  f"judge {d['judge_std']:+.0%}; out of range {d['predictor_out_of_range_points']:+.1f} points; "
                  f"q75 predictor {d['predictor_q75']:+.3f}, judge {d['judge_q75']:+.3f}")
        for x, d in diff["classes"].items():
            print(f"  {x:12s} " + "; ".join(
                f"{c} {d['predictor_mean_probability'][c]:+.1f}/{d['predictor_count'][c]:+.1f}/{d['judge_count'][c]:+.1f}"
                for c in d["judge_count"]) + f"  (mean p / predictor count / judge count, points); "
                f"sureness {d['predictor_sureness']:+.3f}")
    if a.out:
        result["command"] = "python bench/lever_reading.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_json(a.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Photo encoding quality and speed on face-world renders never used in any training (seeds >= 20_000_000).

For each render: encoder only, then encoder + refinement. Reports reconstruction error (PSNR, MSE,
predictor-feature distance) and attribute error (the world predictor on the reconstruction vs the
render's ground-truth attributes, and vs the predictor on the render itself), the time per image,
and the refined/encoder ratios. Goals on CPU at 64 px: encoder <= 0.1 s per image, refinement
<= 10 s per image and clearly better than the encoder alone.

    python bench/encode.py [--model mini] [--pack PACK] [--encoder assets/packs/mini/encoder] [--n 64] [--refine-n 16]
                           [--steps 200] [--budget 8] [--threads 1] [--write] [--json FILE]

--write stores the result under "bench" in the encoder's metrics.json and writes
<encoder>/reconstructions.png (rows: render, encoder, refined).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import facegen  # noqa: E402
from facegen.features import encode as enc  # noqa: E402
from facegen.packs.encoder import load_encoder  # noqa: E402
from facegen.packs.pack import find_pack, load_pack  # noqa: E402
from facegen.world import encoder_training as wet  # noqa: E402
from facegen.engine.device import configure_cpu_threads  # noqa: E402
from facegen.engine.synthesis import synthesize  # noqa: E402
from facegen.world.render import make_grid, render_batch  # noqa: E402
from results_io import write_json  # noqa: E402

GOAL_ENCODER_S = 0.1
GOAL_REFINE_S = 10.0


def _section(marker, res, command, a) -> str:
    e, r, es = res["encoder"], res.get("refined"), res.get("encoder_on_refined_subset")

    def line(name, m):
        at = m["attr_vs_truth"]
        return (f"| {name} | {m['psnr']:.2f} | {m['mse']:.5f} | {m['feature_dist']:.2f} | "
                f"{at['continuous_mae_mean']:.4f} | {at['label_acc_mean']:.3f} | {m['seconds_per_image']:.3f} |"
                if "seconds_per_image" in m else
                f"| {name} | {m['psnr']:.2f} | {m['mse']:.5f} | {m['feature_dist']:.2f} | "
                f"{at['continuous_mae_mean']:.4f} | {at['label_acc_mean']:.3f} | |")
    rows = [marker, "", f"Face-world renders never used in training (seeds {res['seeds']}); "
            f"{res['threads']} CPU thread(s). `{command}`", "",
            "| | PSNR dB | MSE | predictor-feature dist. | attribute MAE | label accuracy | s / image |",
            "|---|---|---|---|---|---|---|", line(f"encoder only ({a.n} renders)", e)]
    if r:
        q = res["ratio_refined_over_encoder"]
        rows += [line(f"encoder only (first {a.refine_n})", es), line(f"+ refinement (first {a.refine_n})", r), "",
                 f"Refined / encoder: MSE x{q['mse']:.2f}, feature distance x{q['feature_dist']:.2f}, attribute "
                 f"MAE x{q['attr_mae']:.2f}, PSNR {q['psnr_gain_db']:+.2f} dB."]
    po = res["predictor_on_originals"]
    rows += ["", f"Attribute MAE = the world predictor on the reconstruction vs the render's true attributes "
             f"(continuous attributes, hues excluded); label accuracy = hair colour/style, eye colour, glasses, "
             f"beard. The predictor on the renders themselves scores MAE {po['continuous_mae_mean']:.4f}, "
             f"accuracy {po['label_acc_mean']:.3f} (the floor).", "",
             "Goals on CPU at 64 px: encoder <= 0.1 s per image, refinement <= 10 s per image and clearly better "
             "than the encoder alone: " + ", ".join(f"{k} = {v:.3f}" if isinstance(v, float) else f"{k} = {v}"
                                                    for k, v in res["goals"].items()) + ".", "",
             "![renders, encoder, refined](reconstructions.png)", ""]
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini")
    p.add_argument("--pack", default=None, help="the model's pack folder (default: found by fingerprint)")
    p.add_argument("--encoder", default=None, help="encoder folder (default: the pack's)")
    p.add_argument("--n", type=int, default=64, help="renders for the encoder-only numbers")
    p.add_argument("--refine-n", type=int, default=16, help="of those, how many to refine")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--budget", type=float, default=8.0)
    p.add_argument("--start", type=int, default=wet.EVAL_SEED_START)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--write", action="store_true")
    p.add_argument("--json", default=None, help="also write the results (and the command) to this JSON file")
    a = p.parse_args(argv)
    assert a.start >= 20_000_000, "bench seeds must be >= 20_000_000 (never used in training)"
    configure_cpu_threads(a.threads)
    G = facegen.load_generator(a.model).eval()
    pack = load_pack(a.pack, G) if a.pack else find_pack(G)   # the refinement's perceptual loss is the pack's
    folder = Path(a.encoder) if a.encoder else pack.path("encoder") if pack is not None and pack.has("encoder") else None
    if folder is None:
        print(f"no encoder for generator {G.fingerprint}; train one: python -m facegen encoder train", file=sys.stderr)
        return 2
    E = load_encoder(folder, G)
    t0 = time.perf_counter()
    res = wet.evaluate(G, E, n=a.n, refine_n=a.refine_n, start=a.start, pack=pack,
                       refine_kwargs={"steps": a.steps, "time_budget": a.budget}, log=lambda m: print(m, flush=True))
    res.update(model=a.model, fingerprint=G.fingerprint, encoder_dir=str(folder), threads=torch.get_num_threads(),
               wall_s=round(time.perf_counter() - t0, 1))
    e, r, es = res["encoder"], res.get("refined"), res.get("encoder_on_refined_subset")

    def row(name, m):
        at = m["attr_vs_truth"]
        return (f"{name:<26} {m['psnr']:7.2f} {m['mse']:9.5f} {m['feature_dist']:9.3f} "
                f"{at['continuous_mae_mean']:9.4f} {at['label_acc_mean']:8.3f} {m.get('seconds_per_image', float('nan')):9.3f}")
    print(f"\nPhoto encoding bench: {a.model} ({G.fingerprint}), encoder {folder}, {torch.get_num_threads()} thread(s)")
    print(f"held-out face-world renders: seeds {res['seeds']} (refined: first {a.refine_n})\n")
    print(f"{'':<26} {'PSNR dB':>7} {'MSE':>9} {'feat.dist':>9} {'attr MAE':>9} {'label acc':>8} {'s/image':>9}")
    print(row(f"encoder ({a.n} renders)", e))
    if r:
        print(row(f"encoder ({a.refine_n} subset)", es))
        print(row(f"+ refinement ({a.refine_n})", r))
        ratio = {"mse": r["mse"] / es["mse"], "feature_dist": r["feature_dist"] / max(es["feature_dist"], 1e-12),
                 "attr_mae": r["attr_vs_truth"]["continuous_mae_mean"] /
                 max(es["attr_vs_truth"]["continuous_mae_mean"], 1e-12),
                 "psnr_gain_db": r["psnr"] - es["psnr"]}
        res["ratio_refined_over_encoder"] = ratio
        print(f"\nratio refined / encoder: MSE x{ratio['mse']:.2f}, feature distance x{ratio['feature_dist']:.2f}, "
              f"attribute MAE x{ratio['attr_mae']:.2f}; PSNR {ratio['psnr_gain_db']:+.2f} dB")
    print(f"predictor on the renders themselves (floor): attr MAE "
          f"{res['predictor_on_originals']['continuous_mae_mean']:.4f}, "
          f"label acc {res['predictor_on_originals']['label_acc_mean']:.3f}")
    print(f"generator's own samples: latent MSE {res['gan_samples_latent_mse_std_units']:.3f} (w std units), "
          f"PSNR {res['gan_samples_psnr']:.2f} dB")
    goals = {"encoder_s_per_image": e["seconds_per_image"], "encoder_goal_s": GOAL_ENCODER_S,
             "encoder_ok": e["seconds_per_image"] <= GOAL_ENCODER_S}
    if r:
        goals.update(refine_s_per_image=r["seconds_per_image"], refine_goal_s=GOAL_REFINE_S,
                     refine_ok=r["seconds_per_image"] <= GOAL_REFINE_S,
                     refine_better=bool(r["mse"] < es["mse"] and r["feature_dist"] < es["feature_dist"]))
    res["goals"] = goals
    print("goals: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in goals.items()))
    command = "python bench/encode.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if a.json:
        write_json(a.json, {"command": command, "pack": str(pack.root) if pack is not None else None, **res},
                   default=float)
    if a.write:
        imgs, _ = render_batch(range(a.start, a.start + 8), size=G.img_resolution)
        ws_e = enc.encode(E, imgs)
        ws_r = np.stack([enc.refine(G, im, w, steps=a.steps, time_budget=a.budget, pack=pack).ws
                         for im, w in zip(imgs, ws_e)])
        grid = make_grid(np.concatenate([imgs, synthesize(G, ws_e), synthesize(G, ws_r)]), cols=8)
        Image.fromarray(grid).save(folder / "reconstructions.png")
        mpath = folder / "metrics.json"
        m = json.loads(mpath.read_text()) if mpath.exists() else {}
        m["bench"] = {k: v for k, v in res.items()}
        m["bench"]["command"] = command
        mpath.write_text(json.dumps(m, indent=1, default=float) + "\n")
        readme = folder / "README.md"
        if readme.exists():
            marker = "## Bench: encoder alone vs refinement"
            text = readme.read_text().split(marker)[0].rstrip()
            readme.write_text(text + "\n\n" + _section(marker, res, m["bench"]["command"], a) + "\n")
        print(f"wrote {mpath} and {folder / 'reconstructions.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

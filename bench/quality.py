"""Quality of a face-world generator (default: the embedded `mini`), judged by the world predictor and
by the independent judge.

Prints and writes into <model>/metrics.json (key "quality"):

* judged by the world predictor (facegen.world.quality): Fréchet distance in predictor feature space
  (with the render-vs-render floor), per-attribute distribution match, valid-face rate, style-mixing
  locality;
* issue 17's goals, judged by the independent judge (facegen.world.quality_goals, assets/judge):
  `fd_judge`, `fd_judge_v1` (the `--baseline` model, same run), `fd_judge_floor`, `attribute_rates`,
  `w_linear_accuracy`, `hf_energy_ratio` (+ `spectrum`), `detector` (MediaPipe FaceLandmarker), and
  `goals` (each goal with pass / fail, printed too).

Also writes <model>/samples.png (64 faces, psi 0.7) and <model>/style_mixing.png (sources x templates
for coarse, middle and fine layers).

    nice -n 5 python bench/quality.py --model assets/mini --n 1000 [--baseline assets/mini] [--no-detector]
    python bench/quality.py --model DIR --layer-pairs     # only: what copying layers 0-1, 2-3 ... carries
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import facegen  # noqa: E402
from facegen.engine import latents as L  # noqa: E402
from facegen.engine.synthesis import synthesize  # noqa: E402
from facegen.world.predictor import load_world_predictor  # noqa: E402
from facegen.world.judge import DEFAULT_JUDGE_DIR, load_judge  # noqa: E402
from facegen.world.quality import evaluate_generator, held_out_renders, mixing_by_layers  # noqa: E402
from facegen.world.quality_goals import goal_report, measure_goals  # noqa: E402
from facegen.world.render import make_grid  # noqa: E402


def mixing_grid(G, sources, templates, psi=0.7) -> np.ndarray:
    """StyleGAN paper figure: first row templates, first column sources, one block per band."""
    src = L.seeds_to_ws(G, sources, psi=psi)
    tpl = L.seeds_to_ws(G, templates, psi=psi)
    r = G.img_resolution
    blank = np.full((1, r, r, 3), 255, np.uint8)
    blocks = []
    for band in ("coarse", "middle", "fine"):
        layers = L.preset_layers(band, G.num_ws)
        rows = [np.concatenate([blank, synthesize(G, tpl)])]
        for i in range(len(sources)):
            mixed = L.style_mix(src[i:i + 1].repeat(len(templates), 1, 1), tpl, layers)
            rows.append(np.concatenate([synthesize(G, src[i:i + 1]), synthesize(G, mixed)]))
        grid = make_grid(np.concatenate(rows), cols=len(templates) + 1)
        img = Image.fromarray(grid)
        canvas = Image.new("RGB", (img.width, img.height + 14), "white")
        canvas.paste(img, (0, 14))
        ImageDraw.Draw(canvas).text((4, 1), f"{band} layers {layers[0]}-{layers[-1]} from the template (top row)",
                                    fill="black")
        blocks.append(np.asarray(canvas))
    return np.concatenate(blocks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="assets/mini")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--baseline", default="assets/mini", help="the model fd_judge_v1 measures (v1)")
    ap.add_argument("--judge", default=str(DEFAULT_JUDGE_DIR), help="the independent judge's folder")
    ap.add_argument("--no-detector", action="store_true", help="skip the MediaPipe detector goal")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layer-pairs", action="store_true", help="only print what copying two w+ layers at a time "
                    "from a template carries (facegen.world.quality.mixing_by_layers); writes nothing")
    a = ap.parse_args()
    torch.set_num_threads(max(1, a.threads))
    t0 = time.time()
    G = facegen.load_generator(a.model)
    pred = load_world_predictor()
    if a.layer_pairs:
        print(f"model {a.model} ({G.fingerprint}): copy layers from a template; r with the template "
              "(hair/eye colour: agreement)")
        for layers, r in mixing_by_layers(G, pred).items():
            print(f"  layers {layers}: " + "  ".join(f"{k} {v:.2f}" for k, v in r.items()))
        return
    renders = held_out_renders(a.n, G.img_resolution)
    q = evaluate_generator(G, pred, n=a.n, renders=renders)
    print(f"predictor measures done ({time.time() - t0:.0f}s); the judge's goals ...")
    baseline = facegen.load_generator(a.baseline)
    q.update(measure_goals(G, load_judge(a.judge), baseline=baseline, n=a.n, renders=renders,
                           detector=not a.no_detector))
    q["baseline"] = a.baseline
    q["fingerprint"] = G.fingerprint        # the model read (a folder's metrics.json may come from elsewhere)
    q["goals"] = goal_report(q)
    q["eval_seconds"] = round(time.time() - t0, 1)
    model_dir = Path(a.model)
    if model_dir.is_dir():
        Image.fromarray(make_grid(synthesize(G, L.seeds_to_ws(G, list(range(64)), psi=0.7)))).save(
            model_dir / "samples.png")
        Image.fromarray(mixing_grid(G, [1, 2, 3, 4, 5], [10, 11, 12, 13, 14, 15])).save(model_dir / "style_mixing.png")
        mpath = model_dir / "metrics.json"
        metrics = json.loads(mpath.read_text()) if mpath.exists() else {}
        metrics["quality"] = q
        mpath.write_text(json.dumps(metrics, indent=1) + "\n")
    fd = q["frechet_distance"]
    print(f"model {a.model} ({G.fingerprint}), n={a.n}")
    print(f"Fréchet distance (predictor features): psi0.7 {fd['psi0.7']:.2f}, psi1 {fd['psi1.0']:.2f}; "
          f"floor (renders vs renders) {fd['floor_renders_vs_renders']:.2f}; "
          f"ratio psi1/floor {fd['psi1.0'] / max(fd['floor_renders_vs_renders'], 1e-9):.1f}x")
    v = q["valid_face_rate"]
    print(f"valid faces: psi0.7 {v['psi0.7']:.1%}, psi1 {v['psi1.0']:.1%} (renders {v['renders']:.1%}; goal >= 90% at psi 0.7)")
    for name, m in q["attributes_psi1.0"].items():
        print(f"  {name:<16} " + ", ".join(f"{k}={v}" for k, v in m.items() if not isinstance(v, dict)))
    for band, r in q["style_mixing"].items():
        print(f"  mixing {band:<6} " + ", ".join(
            f"{k}: tpl {v['corr_with_template']:+.2f} / src {v['corr_with_source']:+.2f}" if "corr_with_template" in v
            else f"{k}: agrees tpl {v['agree_with_template']:.0%} / src {v['agree_with_source']:.0%}"
            for k, v in r["follows"].items()))
    print(f"issue 17 goals (independent judge, n={a.n}, baseline {a.baseline}):")
    for row in q["goals"]:
        mark = {True: "PASS", False: "FAIL", None: "----"}[row["pass"]]
        print(f"  {mark}  {row['goal']}: {row['value']}")


if __name__ == "__main__":
    main()

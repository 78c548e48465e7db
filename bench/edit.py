"""Benchmark of attribute editing and animation (facegen.packs.directions / editing / video).

    python bench/edit.py [--model mini] [--pack PACK] [--directions assets/packs/mini/directions] [--faces 50]
                         [--write-metrics] [--json FILE] [--fit N]

For every direction, on `--faces` held-out faces (seeds 900000+, psi 0.7), sweep the step from
-amount to +amount (default layers 0-7) and label every frame with the world's predictor:

* monotonicity: Spearman correlation between the step and the predicted target attribute, per
  face; the median and the share of faces with rho >= 0.95, plain and conditional ("keep other
  attributes"). The predictor's unsaturated score is used (continuous values before clipping to
  their range, booleans as logits, see raw_scores), so ends of a range do not tie; the numbers on
  the clipped predictions are stored in the JSON as well;
* leakage: how much the *other* attributes move between the two ends of the sweep (mean absolute
  change, in units of the attribute's range: yaw's range is 2, the others 1; booleans as
  probability), plain vs conditional vs guided, next to the change of the target itself.
  Three ways to edit: **plain** directions, **conditional** directions (the others projected out
  of each direction once) and **guided** (``facegen.features.editing.guided_sweep_ws``: the world
  predictor's gradients of the others projected out at every substep, per face). Because guided
  editing uses the world predictor, which is also the judge here, the leakage is judged a second
  time by an **independent judge**, the customisation classifier (``assets/packs/mini/classifier``:
  other architecture, data and training), on the attributes it knows (smiling, old, male,
  glasses, beard, long-hair, skin:dark probabilities).

Then the speed of a 60-frame, 64 px animation (render + 256 px upscale + mp4 + GIF) on the CPU,
against the plain synthesis of the same 60 frames. Everything runs on one CPU thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from facegen.engine import latents as L  # noqa: E402
from facegen import load_generator
from facegen.features import animate as video  # noqa: E402
from facegen.packs.directions import find_directions, load_directions  # noqa: E402
from facegen.packs.pack import find_pack, load_pack  # noqa: E402
from results_io import write_json  # noqa: E402
from facegen.features.editing import guide_for, guided_sweep_ws, sweep_ws  # noqa: E402
from facegen.engine.synthesis import synthesize  # noqa: E402
from facegen.world.predictor import load_world_predictor  # noqa: E402

BENCH_SEED_START = 900_000
MODES = ("plain", "conditional", "guided")


def attr_value(pred: dict, name: str, spec: dict) -> np.ndarray:
    """Predicted value of a direction's attribute, in units of its range (booleans: probability)."""
    if ":" in name:
        cat, value = name.split(":", 1)
        return pred[cat][:, list(spec[cat][1]).index(value)]
    kind, rng = spec[name]
    v = np.asarray(pred[name], np.float64)
    return (v - rng[0]) / (rng[1] - rng[0]) if kind == "continuous" else v


@torch.no_grad()
def raw_scores(P, images: np.ndarray) -> dict:
    """The predictor's unsaturated estimates: continuous values before clipping to their range,
    booleans and one-vs-rest classes as logits / log-odds. Same network and input pipeline as
    ``P.predict``; only the final clip / sigmoid is left out, so values at the ends of a range
    (e.g. yaw beyond 45 degrees, a beard at p = 0.9999) still rank instead of tying."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    outs = []
    for i in range(0, len(x), 256):
        outs.append(P(P.prepare_tensor(x[i:i + 256]))[1])
    out = torch.cat(outs).double()
    res = {}
    for name, kind, rng, i, w in P.layout:
        o = out[:, i:i + w]
        if kind == "continuous":
            res[name] = o[:, 0].numpy()                       # normalised units, unclipped
        elif kind == "categorical":
            lp = torch.log_softmax(o, 1)
            for j, c in enumerate(rng):
                others = torch.logsumexp(torch.cat([lp[:, :j], lp[:, j + 1:]], 1), 1)
                res[f"{name}:{c}"] = (lp[:, j] - others).numpy()
        elif kind in ("bool", "validity"):
            res[name] = o[:, 0].numpy()
    return res


#: the independent judge's class for each direction (facegen.features.customize classes)
SECOND_JUDGE = {"smile": "smiling", "age": "old", "gender": "male", "glasses": "glasses", "beard": "beard",
                "hair_length": "long-hair", "skin_tone": "skin:dark"}


def run_sweeps(G, ds, P, names, seeds, values, layers, mode, C=None, per_face=False):
    """mode: 'plain', 'conditional' or 'guided'; C: the independent judge (ClassClassifier) or None;
    per_face: also each face's raw target scores along the sweep (what its rho ranks), rounded to 0.01, and
    their summary: the share of faces monotone over each half of the sweep, the median range over the first
    half, how many faces score above 0 (a boolean's logit: drawn) at either end."""
    spec = {n: (k, r) for n, k, r in P.spec}
    ws = L.seeds_to_ws(G, seeds, psi=0.7).numpy()
    out = {}
    for name in names:
        if mode == "guided":
            frames = guided_sweep_ws(G, P, ws, ds, name, values, layers).reshape(-1, *ws.shape[1:])
        else:
            frames = np.concatenate([sweep_ws(w, ds, name, values, layers, mode == "conditional") for w in ws])
        imgs = synthesize(G, frames, batch_size=64)
        pred = P.predict(imgs)
        raw = raw_scores(P, imgs)[name].reshape(len(seeds), len(values))
        vals = {n: attr_value(pred, n, spec).reshape(len(seeds), len(values)) for n in ds.names}

        def rhos(a):
            return np.nan_to_num(np.array([spearmanr(values, v)[0] if np.ptp(v) > 0 else 0.0 for v in a]))
        rho, rho_clipped = rhos(raw), rhos(vals[name])
        change = {n: float(np.mean(np.abs(v[:, -1] - v[:, 0]))) for n, v in vals.items()}
        others = [n for n in ds.names if n != name]
        out[name] = {"rho_median": float(np.median(rho)), "share_rho_ge_0.95": float(np.mean(rho >= 0.95)),
                     "rho_min": float(rho.min()), "rho_median_clipped_predictions": float(np.median(rho_clipped)),
                     "share_rho_ge_0.95_clipped_predictions": float(np.mean(rho_clipped >= 0.95)),
                     "target_change": change[name],
                     "others_change_mean": float(np.mean([change[n] for n in others])),
                     "others_change": {n: round(change[n], 4) for n in others}}
        if per_face:
            out[name]["raw_target_per_face"] = np.round(raw, 2).tolist()
            half = len(values) // 2                  # where the sweep's two halves meet (the unedited face)
            out[name]["per_face_summary"] = {
                "monotone_share_first_half": float(np.mean(np.all(np.diff(raw[:, :half + 1]) >= 0, 1))),
                "monotone_share_second_half": float(np.mean(np.all(np.diff(raw[:, half:]) >= 0, 1))),
                "range_first_half_median": float(np.median(np.ptp(raw[:, :half + 1], 1))),
                "above_zero_at_start": int((raw[:, 0] > 0).sum()), "above_zero_at_end": int((raw[:, -1] > 0).sum())}
        if C is not None:
            probs = C.probs(imgs).reshape(len(seeds), len(values), -1)
            cols = {a: C.index([c])[0] for a, c in SECOND_JUDGE.items() if a in ds.names}
            ch2 = {a: float(np.mean(np.abs(probs[:, -1, k] - probs[:, 0, k]))) for a, k in cols.items()}
            out[name]["independent_judge"] = {
                "target_change": ch2.get(name), "others_change_mean": float(np.mean([v for a, v in ch2.items() if a != name])),
                "others_change": {a: round(v, 4) for a, v in ch2.items() if a != name}}
    return out


def bench_speed(G, ds, reps: int = 3) -> dict:
    w = L.seeds_to_ws(G, [BENCH_SEED_START], psi=0.7)[0].numpy()
    frames_ws = sweep_ws(w, ds, "yaw", np.linspace(-2.5, 2.5, 60))
    synthesize(G, frames_ws[:4])                                      # warm up
    base, full, parts = [], [], None
    with tempfile.TemporaryDirectory() as d:
        for _ in range(reps):
            t = time.perf_counter()
            synthesize(G, frames_ws, batch_size=32)
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = video.animate(G, w, ds, "yaw", frames=60, fps=24, amount=2.5, size=256, outdir=d)
            full.append(time.perf_counter() - t)
            parts = res["timings"]
        ok = video.read_video(res["mp4"]).shape
        t = time.perf_counter()           # "keep other attributes" on a face-world model: guided sweep
        video.animate(G, w, ds, "yaw", frames=60, fps=24, amount=2.5, size=256, outdir=d, conditional=True,
                      guide=guide_for(G, ds))
        guided = time.perf_counter() - t
    return {"frames": 60, "resolution": G.img_resolution, "video_px": 256, "plain_synthesis_s": float(np.median(base)),
            "animation_s": float(np.median(full)), "animation_parts_s": parts, "mp4_decoded_shape": list(ok),
            "animation_guided_s": guided, "threads": torch.get_num_threads()}


BENCH_MARK = "## Editing benchmark"


def bench_markdown(b: dict, names) -> str:
    rows = ["| direction | median ρ (faces ρ ≥ 0.95): plain / conditional / guided | target Δ plain / cond. / guided "
            "| others Δ plain / cond. / guided | others Δ, independent judge: plain / cond. / guided |",
            "|---|---|---|---|---|"]
    for n in names:
        r = {m: b[m][n] for m in MODES}
        rows.append(f"| {n} | " + " / ".join(f"{r[m]['rho_median']:.2f} ({r[m]['share_rho_ge_0.95']:.0%})" for m in MODES)
                    + " | " + " / ".join(f"{r[m]['target_change']:.3f}" for m in MODES)
                    + " | " + " / ".join(f"{r[m]['others_change_mean']:.3f}" for m in MODES)
                    + " | " + " / ".join(f"{r[m]['independent_judge']['others_change_mean']:.3f}" for m in MODES) + " |")
    sp = b.get("speed")
    speed = (f"\n60-frame {sp['resolution']} px animation (render, upscale to {sp['video_px']} px, mp4 + GIF) on one CPU "
             f"thread: **{sp['animation_s']:.2f} s** (plain synthesis of the same 60 frames: "
             f"{sp['plain_synthesis_s']:.2f} s); with guided \"keep other attributes\": "
             f"{sp.get('animation_guided_s', float('nan')):.2f} s.\n") if sp else ""
    small = [n for n in names if b["plain"][n]["target_change"] < 0.1]
    weak = [n for n in names if b["plain"][n]["share_rho_ge_0.95"] < 0.5]
    notes = ""
    if small:
        notes += (f"\n* Small effects ({', '.join(small)}: target Δ < 0.1 of the attribute's range over the whole "
                  "sweep): a direction can only move what the generator has learned, and this generator varies "
                  "these attributes little" + (" (its faces are nearly all frontal, so yaw edits turn the head by "
                                               "a few degrees only)" if "yaw" in small else "") + ".")
    if weak:
        notes += (f"\n* Not monotonic for most faces with plain directions: {', '.join(weak)}. A conditional direction whose target is "
                  "entangled with the others (low conditional cosine, e.g. beard with gender) can lose the effect "
                  "altogether.")
    faint = [n for n in names if b["guided"][n]["target_change"] < 0.01]
    notes += ("\n* Guided editing removes the part of each step that moved the other attributes, so its target moves "
              "less than with plain directions (raise the step for the same change)"
              + (f"; for {', '.join(faint)} almost nothing is left (target Δ < 0.01: monotonic but invisible), "
                 "because this generator draws it only together with the attributes it is entangled with"
                 if faint else "") + ".")
    if notes:
        notes = "\nNotes:\n" + notes + "\n"
    return f"""{BENCH_MARK}

`{b['command']}`: {b['faces']} held-out faces (seeds {b['seeds'][0]}-{b['seeds'][1]}, psi {b['psi']}), each swept
from {b['sweep'][0]:+g} to {b['sweep'][1]:+g} SD in {b['steps']} steps on layers {b['layers'][0]}-{b['layers'][-1]} and
labelled by the world's predictor. ρ: Spearman correlation of the step with the predicted attribute, per face
(the predictor's unsaturated score: continuous values before clipping to their range, booleans as logits).
Δ: mean absolute change between the ends of the sweep, in units of the attribute's range (booleans:
probability); "others" averages the other {len(names) - 1} attributes. Against plain editing, the others moved
less for {b['conditional_less_leakage']} directions with conditional directions and for {b['guided_less_leakage']}
with guided editing (the app's "keep other attributes" for face-world models), judged by the world predictor;
judged by the independent classifier ({b['independent_judge']}; smiling, old, male, glasses, beard, long-hair,
skin:dark probabilities): {b['conditional_less_leakage_independent']} and {b['guided_less_leakage_independent']}.

{chr(10).join(rows)}
{notes}{speed}"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini")
    p.add_argument("--pack", default=None, help="the model's pack folder (default: found by fingerprint)")
    p.add_argument("--directions", default=None, help="directions .npz or folder (default: the pack's)")
    p.add_argument("--faces", type=int, default=50)
    p.add_argument("--steps", type=int, default=9, help="points per sweep")
    p.add_argument("--amount", type=float, default=2.5, help="sweep from -amount to +amount SD")
    p.add_argument("--attributes", default=None, help="comma-separated subset (default: all in the file)")
    p.add_argument("--write-metrics", action="store_true", help="store the results in the directions' metrics.json")
    p.add_argument("--no-speed", action="store_true")
    p.add_argument("--per-face", action="store_true",
                   help="also store each face's raw target scores along each sweep (raw_target_per_face)")
    p.add_argument("--json", default=None, help="also write the results (and the command) to this JSON file")
    p.add_argument("--fit", type=int, default=0, metavar="N",
                   help="fit plain directions on N samples now (the world labeller, no style-mixed bands) instead of "
                        "reading them: a training snapshot without a pack (the independent judge is then mini's "
                        "pack's classifier, the one every face-world pack copies)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    G = load_generator(args.model).eval()
    pack = load_pack(args.pack, G) if args.pack else find_pack(G)
    if args.fit:
        from facegen.labels.base import load_labeller
        from facegen.packs.direction_fitting import fit_directions
        attributes = args.attributes.split(",") if args.attributes else list(load_directions(
            ROOT / "assets" / "packs" / "mini" / "directions").names)
        ds = fit_directions(G, load_labeller("world"), attributes, n=args.fit, mixed=False, log=lambda *a: None)
    else:
        ds = load_directions(args.directions, G) if args.directions else find_directions(G, pack) if pack else None
    if ds is None:
        print(f"no directions for {args.model} ({G.fingerprint}) in its pack; fit them with "
              f"`python -m facegen directions fit --model {args.model} --out assets/packs/mini/directions`", file=sys.stderr)
        return 2
    P = load_world_predictor()
    names = args.attributes.split(",") if args.attributes and not args.fit else list(ds.names)   # --fit: those it fitted
    seeds = list(range(BENCH_SEED_START, BENCH_SEED_START + args.faces))
    values = np.linspace(-args.amount, args.amount, args.steps)
    layers = ds.default_layers
    print(f"generator {G.fingerprint}, directions for {ds.fingerprint}, {args.faces} faces (seeds {seeds[0]}+, "
          f"psi 0.7), sweep {values[0]:+g}..{values[-1]:+g} SD in {args.steps} steps on layers "
          f"{layers[0]}-{layers[-1]}")
    from facegen.packs.classifier import load_classifier
    c_folder = (pack.path("classifier") if pack is not None and pack.has("classifier") else
                ROOT / "assets" / "packs" / "mini" / "classifier")
    C = load_classifier(c_folder)
    t0 = time.perf_counter()
    runs = {m: run_sweeps(G, ds, P, names, seeds, values, layers, m, C, args.per_face) for m in MODES}
    t_sweeps = time.perf_counter() - t0
    print(f"{'':<12} {'median rho (faces >= 0.95)':^39}   {'target Δ':^20}   {'others Δ (world predictor)':^26}   "
          f"{'others Δ (independent)':^22}")
    print(f"{'direction':<12} " + " ".join(f"{m:>12}" for m in MODES) + "   " + " ".join(f"{m[:6]:>6}" for m in MODES)
          + "   " + " ".join(f"{m[:8]:>8}" for m in MODES) + "   " + " ".join(f"{m[:6]:>6}" for m in MODES))
    less = {"conditional": 0, "guided": 0}
    less_indep = {"conditional": 0, "guided": 0}
    for n in names:
        r = {m: runs[m][n] for m in MODES}
        for m in less:
            less[m] += r[m]["others_change_mean"] < r["plain"]["others_change_mean"]
            less_indep[m] += (r[m]["independent_judge"]["others_change_mean"]
                              < r["plain"]["independent_judge"]["others_change_mean"])
        print(f"{n:<12} " + " ".join(f"{r[m]['rho_median']:>6.2f} ({r[m]['share_rho_ge_0.95']:>3.0%})" for m in MODES)
              + "   " + " ".join(f"{r[m]['target_change']:>6.3f}" for m in MODES)
              + "   " + " ".join(f"{r[m]['others_change_mean']:>8.3f}" for m in MODES)
              + "   " + " ".join(f"{r[m]['independent_judge']['others_change_mean']:>6.3f}" for m in MODES))
    for m in less:
        print(f"{m} editing moved the other attributes less than plain for {less[m]}/{len(names)} directions "
              f"(world predictor), {less_indep[m]}/{len(names)} (independent judge)")
    print(f"(sweeps: {t_sweeps:.0f} s)")
    res = {"faces": args.faces, "seeds": [seeds[0], seeds[-1]], "psi": 0.7, "sweep": [float(values[0]), float(values[-1])],
           "steps": args.steps, "layers": layers, **runs,
           "conditional_less_leakage": f"{less['conditional']}/{len(names)}",
           "guided_less_leakage": f"{less['guided']}/{len(names)}",
           "independent_judge": f"{os.path.relpath(c_folder, ROOT)} (ClassClassifier)",
           "conditional_less_leakage_independent": f"{less_indep['conditional']}/{len(names)}",
           "guided_less_leakage_independent": f"{less_indep['guided']}/{len(names)}",
           "sweeps_time_s": round(t_sweeps, 1)}
    if not args.no_speed:
        sp = bench_speed(G, ds)
        print(f"60-frame {sp['resolution']} px animation (render + {sp['video_px']} px upscale + mp4 + GIF): "
              f"{sp['animation_s']:.2f} s (budget 5 s; parts {sp['animation_parts_s']}); plain synthesis of "
              f"the same 60 frames: {sp['plain_synthesis_s']:.2f} s; with guided 'keep other attributes': "
              f"{sp['animation_guided_s']:.2f} s")
        res["speed"] = sp
    command = "python bench/edit.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.json:
        write_json(args.json, {"command": command, "model": args.model, "fingerprint": G.fingerprint,
                               "pack": os.path.relpath(pack.root, ROOT) if pack is not None else None,
                               "directions": f"fitted now on {args.fit} samples" if args.fit else
                               args.directions or "the pack's", **res}, default=float)
    if args.write_metrics and args.fit:
        print("--write-metrics: directions fitted now (--fit) have no folder to write to", file=sys.stderr)
    elif args.write_metrics:
        folder = Path(args.directions) if args.directions else pack.path("directions").parent
        mp = (folder if folder.is_dir() else folder.parent) / "metrics.json"
        m = json.loads(mp.read_text()) if mp.is_file() else {}
        m["bench"] = {"command": command,
                      "fingerprint": G.fingerprint, **res}
        mp.write_text(json.dumps(m, indent=1))
        readme = mp.parent / "README.md"
        if readme.is_file():
            text = readme.read_text().split(BENCH_MARK)[0].rstrip() + "\n\n" + bench_markdown(m["bench"], names)
            readme.write_text(text)
        print(f"wrote {mp} and the benchmark section of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

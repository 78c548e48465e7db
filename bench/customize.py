"""Benchmark of customisation by class (facegen.features.customize): hit rate, diversity, time per face.

    python bench/customize.py [--n 64] [--psi 0.7] [--classes glasses,beard] [--out assets/customize/bench.json]
                              [--model mini] [--pack PACK] [--no-finetuned]

For every class and method, `--n` faces at truncation `--psi`, on one CPU thread:

* **hit rate**, judged by the world predictor (``load_world_predictor()``), which none of the methods
  was trained against: the class predicate (``facegen.world.classes.WORLD_CLASSES``) applied to its
  predictions. The training classifier's own verdict ("self") is listed beside it;
* **diversity**: mean pairwise distance of the world predictor's features among the class's faces,
  divided by the same for unconditional faces of the same generator at the same psi (1.0 = as
  diverse as unconditional sampling; a class is narrower by nature, e.g. all faces with glasses);
* **time per face**: wall time to produce the accepted faces divided by their number (rejection:
  every rejected sample counts; z-code: the MLP + G; with "+check" the training classifier is
  run on every proposal and misses are dropped);
* validity: the share the world predictor reads as a face;
* a **second reading** of the hit rate by the independent quality judge (``facegen.world.judge``, other seeds
  and architecture; ``bench/class_agreement.py`` shows the two judges part on generated faces), and the share
  of faces both judges call members. The goal stays the world predictor's reading; the summary also counts
  the classes that meet it by the second reading and by both.

Methods: ``unconditional`` (the base rate, for reference), ``rejection`` (sample, classify, keep),
``zcode`` (z-code generator, no check: the app's check "none"), ``zcode+check`` (z-code proposals,
rejection by the classifier: the app's default without recipes), ``zcode+check+varied`` (the same, 4x as many hits, the
64 most varied of them kept by ``customize.varied_subset``: the app's "most varied"), and ``finetuned``
(a generator fine-tuned on the class, where the pack names one: ``pack.get("finetuned")``), and ``auto``
(the app's default where the pack has measured recipes, ``facegen.packs.recipes``: the class's recipe, with the
app's own sample budget; the recipes were measured on other seeds). Goals: hit rate
>= 95 % with diversity >= 80 % of unconditional; the z-code generator faster than rejection for rare
classes (base rate < 15 %).

**Ceiling** (per class, not a method): the diversity of the generator's own class members as the judge
itself picks them from `--n-ceiling` unconditional faces (64 members drawn 8 times). A method that
samples the generator's distribution and is judged right can hardly be more varied than this; where
the ceiling is below 0.8, the diversity goal is out of reach for that generator, not for the method.
With ``--world-ceiling`` the same pick among the world's own renders (against the renders' own spread):
where that is below 0.8, no generator that draws the world faithfully reaches the goal for the class.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "assets" / "customize"          # the shipped bench of mini (bench.json, samples.png)
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from facegen.features import customize as cz  # noqa: E402
from facegen.features.customize_recipes import mean_pairwise, reference_spread as reference_diversity  # noqa: E402
from facegen import load_generator  # noqa: E402
from facegen.engine import registry  # noqa: E402
from facegen.labels.classes import label_table  # noqa: E402
from facegen.packs.classifier import load_classifier, load_zcodes  # noqa: E402
from facegen.packs.pack import find_pack, load_pack, require  # noqa: E402
from facegen.packs.recipes import load_recipes  # noqa: E402
from facegen.world.classes import WORLD_CLASSES, label_bank  # noqa: E402
from facegen.world.judge import load_judge  # noqa: E402
from facegen.world.quality import TEST_SEED_BASE  # noqa: E402
from facegen.world.render import render_batch  # noqa: E402
from facegen.world.predictor import load_world_predictor  # noqa: E402
from goals import CLASS_DIVERSITY, class_goal_met  # noqa: E402
from results_io import write_json  # noqa: E402

SEED = 900_000
RARE = 0.15


def class_ceiling(P, pred: dict, feats: np.ndarray, names: list, n: int, ref_div: float, label: str) -> dict:
    """Per class: the diversity of n of the judge's own members among faces the judge read as ``pred`` /
    ``feats`` (drawn 8 times) against ``ref_div``, and how many members there were (``None`` where there are
    fewer than n)."""
    mask = WORLD_CLASSES.mask(label_table(pred, P.spec), names)
    rng = np.random.default_rng(0)
    out = {}
    for k, name in enumerate(names):
        idx = np.flatnonzero(mask[:, k])
        div = (float(np.mean([mean_pairwise(feats[rng.choice(idx, n, replace=False)]) / ref_div
                              for _ in range(8)])) if len(idx) >= n else None)
        out[name] = {"ceiling_diversity": div, "ceiling_members": len(idx)}
        print(f"{label} {name:12s}: {len(idx)} of {len(feats)} faces are members by the judge; "
              f"their diversity {div if div is not None else float('nan'):.2f}", flush=True)
    return out


def judge(P, C, images: np.ndarray, name: str, J=None) -> dict:
    pred, feats, valid = P.predict_all(images)
    hit = WORLD_CLASSES.mask(label_table(pred, P.spec), [name])[:, 0]
    self_hit = C.probs(images)[:, C.index([name])[0]] >= 0.5
    out = {"hit": float(hit.mean()), "self_hit": float(self_hit.mean()), "valid": float((valid > 0.5).mean()),
           "feats": feats}
    if J is not None:       # the second reading: the independent judge, and both judges at once
        second = WORLD_CLASSES.mask(label_table(J.predict(images), J.spec), [name])[:, 0]
        out.update(hit_second_judge=float(second.mean()), hit_both_judges=float((hit & second).mean()))
    return out


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini")
    ap.add_argument("--pack", default=None, help="the model's pack folder (default: found by fingerprint)")
    ap.add_argument("--no-finetuned", action="store_true", help="skip the pack's fine-tuned generators (and do not "
                    "write their metrics.json)")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--n-ref", type=int, default=512, help="unconditional faces for base rates and diversity")
    ap.add_argument("--n-ceiling", type=int, default=8192, help="unconditional faces the judge picks class members "
                    "from for the diversity ceiling (0: skip)")
    ap.add_argument("--ceiling-only", action="store_true", help="only the ceilings of --classes (no pack needed): "
                    "how varied the generator's own class members are")
    ap.add_argument("--world-ceiling", action="store_true", help="also the ceiling of the world's own renders "
                    "(--n-ceiling of them, against their own unconditional spread): is the goal reachable at all?")
    ap.add_argument("--psi", type=float, default=0.7)
    ap.add_argument("--no-second-judge", action="store_true", help="skip the independent judge's second reading")
    ap.add_argument("--classes", default="")
    ap.add_argument("--conditional", default="", help="a class-conditional generator (folder or registry name) to "
                    "bench as method 'conditional' (default: registry '<model>-conditional' if there is one)")
    ap.add_argument("--zcodes", default=None, help="z-code generators folder (default: the model's pack's)")
    ap.add_argument("--out", default=str(SHIPPED / "bench.json"))
    ap.add_argument("--grid", default=None,
                    help="a PNG with 8 z-code faces per class (one row each); '' to skip (default: "
                         "assets/customize/samples.png with the default --out, else --out's name with .png)")
    a = ap.parse_args(argv)
    if a.grid is None:       # a run written elsewhere must not replace the shipped grid
        a.grid = str(SHIPPED / "samples.png") if Path(a.out).resolve() == (SHIPPED / "bench.json").resolve() \
            else str(Path(a.out).with_suffix(".png"))
    torch.set_num_threads(1)
    G = load_generator(a.model).eval()
    names = [n.strip() for n in a.classes.split(",") if n.strip()]
    if a.ceiling_only and not (names and a.n_ceiling and Path(a.out).resolve() != (SHIPPED / "bench.json").resolve()):
        ap.error("--ceiling-only needs --classes, --n-ceiling > 0 and an --out of its own")
    P = load_world_predictor()
    if not a.ceiling_only:
        pack = load_pack(a.pack, G) if a.pack else find_pack(G, hub=False)
        C = load_classifier(require(pack, "classifier", "bench/customize.py"))
        J = None if a.no_second_judge else load_judge()
        bank = load_zcodes(a.zcodes or require(pack, "zcodes", "bench/customize.py"), G=G)
        recipes = load_recipes(pack) is not None
        names = names or bank.classes

    # Unconditional reference: base rates and feature spread.
    z = torch.randn(a.n_ref, G.z_dim, generator=torch.Generator().manual_seed(SEED))
    (ref_images, _), t_ref = timed(lambda: cz.generate_from_z(G, z, a.psi))
    pred, ref_feats, _ = P.predict_all(ref_images)
    ref_mask = WORLD_CLASSES.mask(label_table(pred, P.spec), names)
    ref_div = reference_diversity(ref_feats, a.n)
    print(f"generator {a.model} ({G.fingerprint}), psi {a.psi}, n {a.n}; unconditional: "
          f"{t_ref / a.n_ref * 1000:.1f} ms/face, mean pairwise feature distance {ref_div:.3f}", flush=True)

    # Ceiling: the judge's own pick of class members among many unconditional faces.
    ceiling = {}
    if a.n_ceiling:
        zc = torch.randn(a.n_ceiling, G.z_dim, generator=torch.Generator().manual_seed(SEED + 7))
        cimg = np.concatenate([cz.generate_from_z(G, zc[i:i + 256], a.psi)[0] for i in range(0, a.n_ceiling, 256)])
        cpred, cfeats, _ = P.predict_all(cimg)
        ceiling = class_ceiling(P, cpred, cfeats, names, a.n, ref_div, "ceiling")
    # The world's own ceiling: the same pick among renders, against the renders' own spread.
    if a.n_ceiling and a.world_ceiling:
        renders = render_batch(range(TEST_SEED_BASE, TEST_SEED_BASE + a.n_ceiling), size=G.img_resolution)[0]
        rpred, rfeats, _ = P.predict_all(renders)
        world_ref = reference_diversity(rfeats[:a.n_ref], a.n)
        for name, c in class_ceiling(P, rpred, rfeats, names, a.n, world_ref, "world ceiling").items():
            ceiling[name].update({f"world_{k}": v for k, v in c.items()})

    if a.ceiling_only:
        write_json(a.out, {"command": "python bench/customize.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                           "model": a.model, "fingerprint": G.fingerprint, "psi": a.psi, "n": a.n, "n_ref": a.n_ref,
                           "judge": "world predictor (assets/predictor)", "ref_mean_pairwise": ref_div,
                           "ceilings": ceiling})
        return 0

    finetuned = {}
    for name, reg in ({} if a.no_finetuned else pack.get("finetuned") or {}).items():
        if name in names:
            finetuned[name] = (reg, load_generator(reg).eval())

    conditional = None
    cond_src = a.conditional or (f"{a.model}-conditional" if registry.has(f"{a.model}-conditional") else "")
    if cond_src:
        conditional = (cond_src, load_generator(cond_src).eval())
    rows, grid = [], []
    for k, name in enumerate(names):
        base = float(ref_mask[:, k].mean())
        seed = SEED + 1000 * (k + 1)
        max_tries = int(min(20000, max(512, 4 * a.n / max(base, 0.005))))
        propose = lambda rng, b: bank.net(name)(torch.randn(b, G.z_dim, generator=rng))   # noqa: E731
        runs = {
            "rejection": lambda: cz.rejection_sample(G, [name], a.n, a.psi, seed, C, max_tries=max_tries),
            "zcode": lambda: cz.zcode_sample(G, name, a.n, a.psi, seed, bank),
            "zcode+check": lambda: cz.rejection_sample(G, [name], a.n, a.psi, seed, C, max_tries=max_tries,
                                                       propose=propose),
            "zcode+check+varied": lambda: cz.rejection_sample(G, [name], a.n, a.psi, seed, C, max_tries=4 * max_tries,
                                                              variety=cz.VARIETY, propose=propose),
        }
        if recipes:     # the app's default: the pack's measured recipe for the class
            runs["auto"] = lambda: cz.customize(G, pack, [name], "auto", a.n, a.psi, seed)
        if name in finetuned:
            reg, Gf = finetuned[name]
            zf = torch.randn(a.n, Gf.z_dim, generator=torch.Generator().manual_seed(seed))
            runs[f"finetuned ({reg})"] = lambda: dict(zip(("images", "ws"), cz.generate_from_z(Gf, zf, a.psi)), kept=a.n,
                                                       tries=a.n)
        if conditional is not None:
            src, Gc = conditional
            codes = label_bank(tuple(Gc.meta.get("classes") or ()))
            runs[f"conditional ({Path(src).name})"] = lambda: cz.conditional_sample(Gc, [name], a.n, a.psi, seed,
                                                                                     codes)
        rows.append({"class": name, "method": "unconditional", "base_rate": base, "hit": base,
                     "diversity": 1.0, "ms_per_face": t_ref / a.n_ref * 1000, "kept": a.n_ref, "tries": a.n_ref,
                     **ceiling.get(name, {})})
        for method, fn in runs.items():
            out, secs = timed(fn)
            if out["kept"] == 0:
                rows.append({"class": name, "method": method, "base_rate": base, "hit": 0.0, "kept": 0,
                             "tries": out["tries"], "ms_per_face": float("inf"), "diversity": 0.0})
                continue
            j = judge(P, C, out["images"], name, J)
            rows.append({"class": name, "method": method, "base_rate": base, "hit": j["hit"], "self_hit": j["self_hit"],
                         "valid": j["valid"], "diversity": mean_pairwise(j["feats"]) / ref_div,
                         "ms_per_face": secs / out["kept"] * 1000, "kept": int(out["kept"]), "tries": int(out["tries"]),
                         **({"recipe": out["recipe"]} if "recipe" in out else {}),
                         **{k: j[k] for k in ("hit_second_judge", "hit_both_judges") if k in j}})
        if a.grid:
            grid.append(cz.zcode_sample(G, name, 8, a.psi, 0, bank)["images"])
        for r in rows[-len(runs):]:
            print(f"{name:12s} {r['method']:28s} hit {r['hit']:6.1%} (self {r.get('self_hit', 0):6.1%})  "
                  f"diversity {r['diversity']:5.2f}  {r['ms_per_face']:7.1f} ms/face  "
                  f"kept {r['kept']}/{r['tries']}", flush=True)

    # Summary and goals.
    print("\n| class | base rate | method | hit rate (world predictor) | self-judged | valid | diversity vs uncond. | ms/face | goal |")
    print("|---|---|---|---|---|---|---|---|---|")
    goals = {"hit>=95%&div>=0.8": {}, "zcode faster than rejection (rare classes)": {}}
    by = {(r["class"], r["method"]): r for r in rows}
    for r in rows:
        if r["method"] == "unconditional":
            continue
        ok = class_goal_met(r)
        goals["hit>=95%&div>=0.8"][f"{r['class']}/{r['method']}"] = ok
        print(f"| {r['class']} | {r['base_rate']:.1%} | {r['method']} | {r['hit']:.1%} | {r.get('self_hit', 0):.1%} | "
              f"{r.get('valid', 0):.0%} | {r['diversity']:.2f} | {r['ms_per_face']:.1f} | {'✓' if ok else '✗'} |")
    for name in names:
        if by[(name, "unconditional")]["base_rate"] < RARE:
            z, rj = by[(name, "zcode")], by[(name, "rejection")]
            goals["zcode faster than rejection (rare classes)"][name] = {
                "zcode_ms": round(z["ms_per_face"], 2), "rejection_ms": round(rj["ms_per_face"], 2),
                "speedup": round(rj["ms_per_face"] / z["ms_per_face"], 2), "met": z["ms_per_face"] < rj["ms_per_face"]}
    print()
    for method in dict.fromkeys(r["method"] for r in rows if r["method"] != "unconditional"):
        sel = [r for r in rows if r["method"] == method]
        met = sum(map(class_goal_met, sel))
        print(f"{method:24s}: goal met for {met}/{len(sel)} classes; mean hit {np.mean([r['hit'] for r in sel]):.1%}, "
              f"mean diversity {np.mean([r['diversity'] for r in sel]):.2f}, "
              f"mean {np.mean([r['ms_per_face'] for r in sel]):.1f} ms/face")
        if J is not None:
            met_by = {}
            for key, label in (("hit_second_judge", "the independent judge"), ("hit_both_judges", "both judges")):
                met_by[key] = {f"{r['class']}/{method}": class_goal_met(r, key) for r in sel}
                goals.setdefault(f"hit>=95%&div>=0.8, hit by {label}", {}).update(met_by[key])
            print(f"{'':24s}  the same goal with the hit read by the independent judge: "
                  f"{sum(met_by['hit_second_judge'].values())}/{len(sel)}; "
                  f"by both judges at once: {sum(met_by['hit_both_judges'].values())}/{len(sel)} (mean hit "
                  f"{np.mean([r.get('hit_second_judge', 0.0) for r in sel]):.1%} / {np.mean([r.get('hit_both_judges', 0.0) for r in sel]):.1%})")
    if ceiling:
        div = {n: ceiling[n]["ceiling_diversity"] for n in names}
        reach = [n for n in names if (div[n] or 0) >= CLASS_DIVERSITY]
        goals["diversity ceiling >= 0.8 (goal reachable by sampling the generator)"] = {
            n: round(d, 3) if d is not None else None for n, d in div.items()}
        print(f"ceiling >= 0.8 for {len(reach)}/{len(names)} classes; below: "
              f"{', '.join(f'{n} {div[n]:.3f}' for n in names if n not in reach and div[n] is not None)}")
        if a.world_ceiling:
            wdiv = {n: ceiling[n]["world_ceiling_diversity"] for n in names}
            goals["world diversity ceiling >= 0.8 (goal reachable by a generator that draws the world)"] = {
                n: round(d, 3) if d is not None else None for n, d in wdiv.items()}
            print(f"the world's own renders: ceiling >= 0.8 for "
                  f"{sum((d or 0) >= CLASS_DIVERSITY for d in wdiv.values())}/{len(names)} classes; below: "
                  f"{', '.join(f'{n} {d:.3f}' for n, d in wdiv.items() if d is not None and d < CLASS_DIVERSITY)}")
        for method in dict.fromkeys(r["method"] for r in rows if r["method"] != "unconditional"):
            met = [r["class"] for r in rows if r["method"] == method and r["class"] in reach
                   and class_goal_met(r)]
            print(f"{method:24s}: goal met for {len(met)}/{len(reach)} of the classes whose ceiling reaches 0.8")
    for name, g in goals["zcode faster than rejection (rare classes)"].items():
        print(f"rare class {name}: z-code {g['zcode_ms']} ms/face vs rejection {g['rejection_ms']} ms/face "
              f"-> {g['speedup']}x {'(met)' if g['met'] else '(NOT met)'}")
    result = {"command": "python bench/customize.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "model": a.model, "fingerprint": G.fingerprint, "psi": a.psi, "n": a.n, "n_ref": a.n_ref,
              "judge": "world predictor (assets/predictor)",
              "second_judge": None if J is None else "independent judge (assets/judge)", "trained_against": os.path.relpath(pack.path("classifier"), ROOT),
              "pack": os.path.relpath(pack.root, ROOT),
              "ref_mean_pairwise": ref_div, "rows": rows, "goals": goals, "threads": torch.get_num_threads()}
    for name, (reg, Gf) in finetuned.items():     # the fine-tuned generator's own metrics.json gets its row
        entry = registry.get(reg)
        if entry.get("format") == "embedded":
            mpath = ROOT / entry["path"] / "metrics.json"
            m = json.loads(mpath.read_text()) if mpath.exists() else {}
            r = by[(name, f"finetuned ({reg})")]
            m["customize"] = {"class": name, "psi": a.psi, "n": a.n, "hit_rate_world_predictor": round(r["hit"], 4),
                              "hit_rate_base_generator": round(by[(name, "unconditional")]["base_rate"], 4),
                              "diversity_vs_base_unconditional": round(r["diversity"], 4),
                              "valid": r.get("valid"), "command": "python bench/customize.py"}
            mpath.write_text(json.dumps(m, indent=1) + "\n")
    if a.grid and grid:
        from PIL import Image
        from facegen.world.render import make_grid
        Path(a.grid).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_grid(np.concatenate(grid), cols=8)).save(a.grid)
        print(f"wrote {a.grid} (rows: {', '.join(names)})")
    if a.out:
        write_json(a.out, result, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 17's downstream goals for two generators side by side: editing, customisation, encoding, faceswap.

    python bench/downstream.py [--a assets/mini] [--b assets/mini-v2] [--pack-a PACK] [--pack-b PACK]
                               [--quick] [--only edit,customize,encode,faceswap] [--out bench/results/v1-v2]

For each model it runs the four existing benches as subprocesses (one CPU thread each, one after the
other), each given the model's pack explicitly (``--pack``; by default the pack found for the model by
fingerprint, e.g. ``assets/packs/mini`` for mini and ``assets/packs/mini-v2`` once
``python -m facegen world-pack build --model assets/mini-v2 --out assets/packs/mini-v2`` has run), their raw
JSON into ``<out>-raw/`` (not committed; ``runs/`` by default), then writes ``<out>.json`` (the summary, every
command, every bench's seconds) and ``<out>.md`` (one table, the goals in the last column):

* **editing** (``bench/edit.py``): how many directions are monotone (median Spearman rho >= 0.95) with plain,
  conditional and guided editing; the median of the directions' median rho; leakage: the mean change of the
  other attributes over a sweep (world predictor and the independent classifier) next to the target's change;
* **customisation** (``bench/customize.py``): classes meeting hit >= 95 % with diversity >= 0.8, for the app's
  default (``auto``, the pack's measured recipe per class, where the pack has recipes; else z-code + check), for
  z-code + check, for the best method per class, and how many classes' ceilings reach 0.8;
* **encoding** (``bench/encode.py``): PSNR and attribute error (world predictor vs the render's truth) of
  the encoder alone and after refinement, on held-out renders;
* **faceswap** (``bench/faceswap.py``): likeness (swapped / target distance to A's mean face; lower is better),
  identity attributes moved towards A, pose / smile correlation with the video.

``--quick`` runs every bench at a tiny size (a smoke test of the whole chain: its numbers are noise).

Each bench's raw JSON gets a sidecar ``<bench>-<tag>.run.json`` (the exact command and its seconds). ``--models a``
runs only A's benches (e.g. v1's while v2 is still training); a later run with ``--reuse`` does not rerun a bench
whose sidecar names the identical command (same model, pack, settings and output) on the same inputs (the
model's fingerprint and a digest of its pack's files, so a model or pack rebuilt in place is run again) and
keeps its seconds; the table is written once both models have every bench.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from results_io import write_json  # noqa: E402
from goals import CLASS_DIVERSITY, MONOTONE_RHO, class_goal_met  # noqa: E402

BENCHES = ("edit", "customize", "encode", "faceswap")
#: Bench arguments: full = the settings of the shipped numbers (the benches' defaults), quick = a smoke test.
SETTINGS = {
    "full": {"edit": ["--faces", "50", "--no-speed"],
             "customize": ["--n", "64", "--n-ref", "512", "--n-ceiling", "8192"],
             "encode": ["--n", "64", "--refine-n", "16", "--steps", "200", "--budget", "8", "--threads", "1"],
             "faceswap": ["--seconds", "300"]},
    "quick": {"edit": ["--faces", "6", "--no-speed"],
              "customize": ["--n", "8", "--n-ref", "64", "--n-ceiling", "256"],
              "encode": ["--n", "8", "--refine-n", "2", "--steps", "20", "--budget", "2", "--threads", "1"],
              "faceswap": ["--seconds", "20", "--views", "16"]},
}
GOALS = {"edit_monotone": 8, "customize_classes": 14, "faceswap_likeness_v1": 0.34}


def rel(p) -> str:
    return os.path.relpath(Path(p).resolve(), Path.cwd())


def resolve_pack(model: str, pack: str | None) -> dict:
    """The model's fingerprint, the pack folder to give the benches (`pack`, else the one found for the model
    by fingerprint) and how that pack was built (a world-pack budget, or its components' own commands)."""
    from facegen.engine.loaders import load_generator
    from facegen.packs.pack import find_pack, load_pack
    G = load_generator(model)
    found = load_pack(pack, G) if pack else find_pack(G, hub=False)      # a pack of another G is refused
    if found is None:
        raise SystemExit(f"No pack for {model} ({G.fingerprint}); build one: python -m facegen world-pack build "
                         f"--model {model} --out assets/packs/{Path(model).name}")
    budget = (found.metrics().get("budget") or {}).get("name")
    return {"fingerprint": G.fingerprint, "pack": rel(found.root),
            "pack_built_by": f"world-pack build --budget {budget}" if budget else "its components' own commands"}


def result_path(raw: Path, bench: str, tag: str) -> Path:
    """Where a bench writes its raw JSON for model `tag` (its sidecar: the same name, ``.run.json``)."""
    return raw / f"{bench}-{tag}.json"


def bench_command(bench: str, model: str, pack: str, raw: Path, tag: str, budget: str) -> list:
    out = result_path(raw, bench, tag)
    cmd = [sys.executable, rel(ROOT / "bench" / f"{bench}.py"), "--model", model, "--pack", pack, *SETTINGS[budget][bench]]
    if bench == "customize":
        cmd += ["--no-finetuned", "--out", str(out), "--grid", str(raw / f"customize-{tag}.png")]
    elif bench == "faceswap":
        cmd += ["--out", str(raw / f"faceswap-{tag}"), "--json", str(out)]
    else:
        cmd += ["--json", str(out)]
    return cmd


def inputs_identity(m: dict) -> dict:
    """What a bench's result depends on beyond its command line: the model's fingerprint and a digest of every
    file of its pack (a model or pack rebuilt in place keeps its paths, so the command alone cannot tell)."""
    from facegen.engine.hub import sha256_file
    digest = hashlib.sha256()
    root = Path(m["pack"])
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(root).as_posix()} {sha256_file(f)}\n".encode())
    return {"fingerprint": m["fingerprint"], "pack_sha256": digest.hexdigest()}


def reusable(shown: str, out: Path, inputs: dict) -> float | None:
    """Seconds of an earlier run of exactly this bench command on the same inputs, whose JSON is `out`; else None."""
    side = out.with_suffix(".run.json")
    if not (side.is_file() and out.is_file()):
        return None
    prev = json.loads(side.read_text())
    return prev["seconds"] if prev.get("command") == shown and prev.get("inputs") == inputs else None


def run_bench(cmd: list, log_path: Path) -> float:
    """Run one bench (one CPU thread), its output to `log_path`; -> seconds. A failing bench stops the run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FACEGEN_THREADS": "1"}
    t0 = time.perf_counter()
    with open(log_path, "w") as f:
        rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {rc}); its output: {log_path}")
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------
# What each bench's JSON says about the goals
# ---------------------------------------------------------------------------

def summarise_edit(r: dict) -> dict:
    names = [n for n in r["plain"] if isinstance(r["plain"][n], dict)]
    out = {"directions": len(names)}
    for mode in ("plain", "conditional", "guided"):
        rows = [r[mode][n] for n in names]
        out[mode] = {"monotone": sum(x["rho_median"] >= MONOTONE_RHO for x in rows),
                     "median_rho": float(np.median([x["rho_median"] for x in rows])),
                     "target_change": float(np.mean([x["target_change"] for x in rows])),
                     "others_change": float(np.mean([x["others_change_mean"] for x in rows])),
                     "others_change_independent": float(np.mean([x["independent_judge"]["others_change_mean"]
                                                                 for x in rows])),
                     "rho_median_per_direction": {n: round(r[mode][n]["rho_median"], 3) for n in names}}
    return out


def summarise_customize(r: dict) -> dict:
    rows = [x for x in r["rows"] if x["method"] != "unconditional"]
    classes = list(dict.fromkeys(x["class"] for x in r["rows"]))
    per_method = {}
    for m in dict.fromkeys(x["method"] for x in rows):
        sel = [x for x in rows if x["method"] == m]
        per_method[m] = {"met": sum(map(class_goal_met, sel)), "mean_hit": float(np.mean([x["hit"] for x in sel])),
                         "mean_diversity": float(np.mean([x["diversity"] for x in sel]))}
    ceil = [x.get("ceiling_diversity") for x in r["rows"] if x["method"] == "unconditional"]
    out = {"classes": len(classes), "per_method": per_method,
           "app_default": "auto" if "auto" in per_method else "zcode+check",     # auto: the pack has recipes
           "met_any_method": sum(any(class_goal_met(x) for x in rows if x["class"] == c) for c in classes),
           "ceiling_ge_0.8": sum((c or 0) >= CLASS_DIVERSITY for c in ceil)}
    if rows and all("hit_second_judge" in x for x in rows if x["kept"]):     # benches run with the second judge
        for m in per_method:
            per_method[m]["met_second_judge"] = sum(class_goal_met(x, "hit_second_judge") for x in rows
                                                    if x["method"] == m)
        out["met_any_method_second_judge"] = sum(any(class_goal_met(x, "hit_second_judge") for x in rows
                                                     if x["class"] == c) for c in classes)
    return out


def summarise_encode(r: dict) -> dict:
    def part(m):
        return {"psnr": m["psnr"], "attr_mae": m["attr_vs_truth"]["continuous_mae_mean"],
                "label_acc": m["attr_vs_truth"]["label_acc_mean"], "seconds_per_image": m.get("seconds_per_image")}
    out = {"n": r["n"], "encoder": part(r["encoder"])}
    if r.get("refined"):
        out.update(refined=part(r["refined"]), encoder_same_subset=part(r["encoder_on_refined_subset"]))
    return out


def summarise_faceswap(r: dict) -> dict:
    return {"likeness": r["likeness_swapped_over_target"], "likeness_A_views": r["likeness_A_views"],
            "moved_towards_A": sum(x["swapped_to_A"] < x["target_to_A"] for x in r["identity"]),
            "identity_attributes": len(r["identity"]), "pearson_yaw": r["pearson_target_vs_swapped"]["yaw"],
            "pearson_smile": r["pearson_target_vs_swapped"]["smile"], "train_steps": r["steps"],
            "end_to_end_s": r["end_to_end_s"]}


SUMMARISE = {"edit": summarise_edit, "customize": summarise_customize, "encode": summarise_encode,
             "faceswap": summarise_faceswap}


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

def table_rows(s: dict) -> list:
    """(measure, getter(summary of one model) -> text, goal) rows of the markdown table."""
    def g(*keys, fmt="{:.3f}"):
        def get(m):
            v = m
            for k in keys:
                if not isinstance(v, dict) or k not in v:
                    return "-"
                v = v[k]
            return fmt.format(v) if v is not None else "-"
        return get
    def app_default(key, fmt):
        def get(m):
            c = m.get("customize") or {}
            return g("customize", "per_method", c.get("app_default", "zcode+check"), key, fmt=fmt)(m)
        return get
    return [
        ("editing: directions monotone (median rho >= 0.95), plain", g("edit", "plain", "monotone", fmt="{}"), "8 / 8"),
        ("editing: directions monotone, conditional", g("edit", "conditional", "monotone", fmt="{}"), ""),
        ("editing: directions monotone, guided", g("edit", "guided", "monotone", fmt="{}"), ""),
        ("editing: median of the directions' median rho, plain", g("edit", "plain", "median_rho", fmt="{:.2f}"), ">= 0.95"),
        ("editing: target change, plain (mean over directions)", g("edit", "plain", "target_change"), "higher"),
        ("editing: leakage (others' change), plain", g("edit", "plain", "others_change"), "lower"),
        ("editing: leakage, guided", g("edit", "guided", "others_change"), "lower"),
        ("editing: leakage, plain, independent judge", g("edit", "plain", "others_change_independent"), "lower"),
        ("customisation: classes with hit >= 95 % and diversity >= 0.8, the app's default (auto: the pack's "
         "recipes; without them z-code + check)", app_default("met", "{}"), ">= 14 / 17"),
        ("customisation: the app's default method", g("customize", "app_default", fmt="{}"), ""),
        ("customisation: the same, by any method", g("customize", "met_any_method", fmt="{}"), ">= 14 / 17"),
        ("customisation: the same two, hit read by the independent judge (app default / any method)",
         lambda m: "-" if "met_any_method_second_judge" not in m.get("customize", {}) else
         f"{app_default('met_second_judge', '{}')(m)} / {m['customize']['met_any_method_second_judge']}", ""),
        ("customisation: classes whose diversity ceiling reaches 0.8", g("customize", "ceiling_ge_0.8", fmt="{}"), ""),
        ("customisation: z-code + check (the app's default without recipes)",
         g("customize", "per_method", "zcode+check", "met", fmt="{}"), ""),
        ("customisation: mean hit / diversity, the app's default", lambda m: "-" if "customize" not in m else
         f"{app_default('mean_hit', '{:.0%}')(m)} / {app_default('mean_diversity', '{:.2f}')(m)}", ""),
        ("encoding: PSNR dB, encoder", g("encode", "encoder", "psnr", fmt="{:.2f}"), "higher"),
        ("encoding: attribute MAE, encoder", g("encode", "encoder", "attr_mae", fmt="{:.4f}"), "lower"),
        ("encoding: PSNR dB, refined", g("encode", "refined", "psnr", fmt="{:.2f}"), "higher"),
        ("encoding: attribute MAE, refined", g("encode", "refined", "attr_mae", fmt="{:.4f}"), "lower"),
        ("faceswap: likeness (lower is better)", g("faceswap", "likeness"), f"< {GOALS['faceswap_likeness_v1']} (v1)"),
        ("faceswap: identity attributes moved towards A", lambda m: "-" if "faceswap" not in m else
         f"{m['faceswap']['moved_towards_A']} / {m['faceswap']['identity_attributes']}", ""),
        ("faceswap: r(yaw) / r(smile) swapped vs target", lambda m: "-" if "faceswap" not in m else
         f"{m['faceswap']['pearson_yaw']:.2f} / {m['faceswap']['pearson_smile']:.2f}", "high"),
    ]


def markdown(result: dict) -> str:
    a, b = result["a"], result["b"]
    s = result["summary"]
    lines = [f"# Downstream goals: {a['label']} vs {b['label']}", ""]
    if result.get("note"):
        lines += [f"**{result['note']}**", ""]
    lines += [f"`{result['command']}` ({result['budget']} settings; {result['seconds']:.0f} s). "
              f"A = `{a['model']}` ({a['fingerprint']}, pack `{a['pack']}`, built by {a['pack_built_by']}), "
              f"B = `{b['model']}` ({b['fingerprint']}, pack `{b['pack']}`, built by {b['pack_built_by']}).", "",
              f"| measure | {a['label']} | {b['label']} | goal |", "|---|---|---|---|"]
    for name, get, goal in table_rows(s):
        lines.append(f"| {name} | {get(s['a'])} | {get(s['b'])} | {goal} |")
    lines += ["", "Bench commands (raw outputs in `" + result["raw"] + "`, not committed):", ""]
    lines += [f"* `{c['command']}` ({c['seconds']:.0f} s{', an earlier run, reused' if c.get('reused') else ''})"
              for c in result["runs"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", default="assets/mini")
    ap.add_argument("--b", default="assets/mini-v2")
    ap.add_argument("--pack-a", default=None, help="A's pack folder (default: found by A's fingerprint)")
    ap.add_argument("--pack-b", default=None, help="B's pack folder (default: found by B's fingerprint)")
    ap.add_argument("--label-a", default="v1")
    ap.add_argument("--label-b", default="v2")
    ap.add_argument("--quick", action="store_true", help="tiny bench sizes: a smoke test of the chain")
    ap.add_argument("--only", default=",".join(BENCHES))
    ap.add_argument("--note", default="", help="a line printed in bold above the table")
    ap.add_argument("--out", default="bench/results/v1-v2", help="writes OUT.json and OUT.md")
    ap.add_argument("--raw", default=None, help="the benches' own outputs (default: runs/downstream/<out's name>)")
    ap.add_argument("--models", default="ab", choices=("ab", "a", "b"),
                    help="whose benches to run now (the table needs both: see --reuse)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep a bench's raw result written earlier by the identical command")
    a = ap.parse_args(argv)
    benches = [x.strip() for x in a.only.split(",") if x.strip()]
    if set(benches) - set(BENCHES):
        raise SystemExit(f"--only: choose from {', '.join(BENCHES)}")
    budget = "quick" if a.quick else "full"
    raw = Path(rel(a.raw or ROOT / "runs" / "downstream" / Path(a.out).name))     # relative: no absolute path in
    raw.mkdir(parents=True, exist_ok=True)                                           # the written commands
    models = {tag: {"label": label, "model": model, **resolve_pack(model, pack)}
              for tag, model, pack, label in (("a", a.a, a.pack_a, a.label_a), ("b", a.b, a.pack_b, a.label_b))
              if tag in a.models}
    inputs = {tag: inputs_identity(m) for tag, m in models.items()}         # read each pack once
    t0 = time.perf_counter()
    runs, summary = [], {"a": {}, "b": {}}
    for bench in benches:
        for tag, m in models.items():
            cmd = bench_command(bench, m["model"], m["pack"], raw, tag, budget)
            shown = "python " + shlex.join(cmd[1:])
            out = result_path(raw, bench, tag)
            secs = reusable(shown, out, inputs[tag]) if a.reuse else None
            reused = secs is not None
            if not reused:
                print(f"[downstream] {m['label']}: {shown}", flush=True)
                secs = run_bench(cmd, raw / f"{bench}-{tag}.log")
                write_json(out.with_suffix(".run.json"), {"command": shown, "seconds": round(secs, 1),
                                                           "inputs": inputs[tag]})
            r = json.loads(out.read_text())
            summary[tag][bench] = SUMMARISE[bench](r)
            runs.append({"model": tag, "bench": bench, "command": shown, "seconds": round(secs, 1), "reused": reused})
            print(f"[downstream] {m['label']} {bench}: {secs:.0f} s{' (reused)' if reused else ''} "
                  f"{json.dumps(summary[tag][bench])[:300]}", flush=True)
    if len(models) < 2:
        print(f"[downstream] only {', '.join(m['label'] for m in models.values())} ran; raw results in {rel(raw)}. "
              "Run again with both models and --reuse for the table.")
        return 0
    result = {"command": "python bench/downstream.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "budget": budget, "note": a.note, "a": models["a"], "b": models["b"], "raw": rel(raw),
              "seconds": round(time.perf_counter() - t0, 1), "runs": runs, "summary": summary, "goals": GOALS}
    write_json(f"{a.out}.json", result, default=float)
    md = markdown(result)
    Path(f"{a.out}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Two direction sets of one generator side by side on bench/edit.py's numbers, and the adoption rule.

    python bench/edit_compare.py --a runs/plain-shipped-mini --b runs/whitened-mini \\
        --out bench/results/edit-whitened-mini

Each folder holds a ``directions.npz`` and the ``metrics.json`` that
``python bench/edit.py --directions FOLDER --faces 50 --write-metrics`` wrote (section ``bench``). Per
direction and editing mode (plain steps, conditional "keep other attributes"), from those files:

* monotone: median Spearman rho of step vs the predicted target (bench/edit.py); the goal of issue #17 is
  median rho >= 0.95 for every direction;
* leakage: mean change of the *other* attributes between the ends of the sweep, by the world predictor and
  by the independent judge, and per unit of the target's own change (``others / target``, both judges'
  others over the world predictor's target, which is the only judge of all directions). The two sets'
  steps differ in length (one SD of ``w . d`` along different d), so the ratio is the like-for-like
  number;
* adoption rule (B replaces A): B is monotone for every direction in both modes, and B's leakage ratio is
  no higher than A's for every direction, mode and judge.

Writes OUT.json (every number, the commands) and OUT.md (the table).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.goals import MONOTONE_RHO as RHO_GOAL  # noqa: E402
from bench.results_io import write_json  # noqa: E402
from facegen.packs.directions import load_directions  # noqa: E402

MODES = ("plain", "conditional")


def load_set(folder: Path) -> dict:
    ds = load_directions(folder)
    b = json.loads((folder / "metrics.json").read_text())["bench"]
    m = ds.meta
    fit = f"`{m.get('command')}`" + (f" then `{m['derived']['command']}`" if m.get("derived") else "")
    return {"folder": str(folder), "method": m.get("method", "plain"), "fit_command": fit,
            "bench_command": b["command"], "fingerprint": ds.fingerprint, "whitening": m.get("whitening"),
            "step_size": {n: round(float(s), 4) for n, s in zip(ds.names, ds.scales)},
            "heldout_accuracy": {n: round(float(a), 4) for n, a in zip(ds.names, ds.accuracy)},
            "conditional_cosine": {r["attribute"]: r["conditional_cosine"] for r in ds.summary()},
            "vectors": ds.vectors, "normals": normals(ds), "names": list(ds.names), "bench": b,
            "covariance": ds.covariance}


def normals(ds) -> np.ndarray:
    """Unit classifier normals in W: M d (M = I for plain sets, Sigma^-1 for whitened ones)."""
    A = ds.metric(ds.vectors.T).T
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def per_direction(s: dict, name: str, mode: str) -> dict:
    r = s["bench"][mode][name]
    target = r["target_change"]
    return {"rho_median": round(r["rho_median"], 4), "share_rho_ge_0.95": r["share_rho_ge_0.95"],
            "target_change": round(target, 4), "others_change": round(r["others_change_mean"], 4),
            "others_change_independent": round(r["independent_judge"]["others_change_mean"], 4),
            "leakage_ratio": round(r["others_change_mean"] / target, 4),
            "leakage_ratio_independent": round(r["independent_judge"]["others_change_mean"] / target, 4)}


def copy_check(a: Path, src: Path) -> dict:
    import hashlib
    h = [hashlib.sha256((f / "directions.npz").read_bytes()).hexdigest() for f in (a, src)]
    ba, bs = (json.loads((f / "metrics.json").read_text())["bench"] for f in (a, src))
    keys = ("rho_median", "share_rho_ge_0.95", "target_change", "others_change_mean")
    diff = max(abs(ba[m][n][k] - bs[m][n][k]) for m in ("plain", "conditional", "guided") for n in bs[m] for k in keys)
    return {"source": str(src), "same_bytes": h[0] == h[1], "same_bench": diff <= 1e-3, "max_abs_difference": diff,
            "sha256": h[1]}


def compare(a: dict, b: dict) -> dict:
    if a["fingerprint"] != b["fingerprint"] or a["names"] != b["names"]:
        raise SystemExit("the two sets must be for the same generator and attributes")
    rows, monotone, less_leak = {}, {}, {}
    top = None
    if b["covariance"] is not None:          # Sigma (or Sigma^p): eigenvectors by decreasing variance
        e, U = np.linalg.eigh(b["covariance"])
        top = U[:, np.argsort(e)[::-1][:10]]
    for n in a["names"]:
        i = a["names"].index(n)
        rows[n] = {"cosine_a_b": round(float(a["vectors"][i] @ b["vectors"][i]), 4),
                   "classifier_normal_cosine_a_b": round(float(a["normals"][i] @ b["normals"][i]), 4),
                   **({} if top is None else {"share_on_top10_variance_axes": {
                       "a": round(float(np.sum((a["vectors"][i] @ top) ** 2)), 4),
                       "b": round(float(np.sum((b["vectors"][i] @ top) ** 2)), 4)}}),
                   **{f"{mode}": {"a": per_direction(a, n, mode), "b": per_direction(b, n, mode)} for mode in MODES}}
        for mode in MODES:
            ra, rb = rows[n][mode]["a"], rows[n][mode]["b"]
            monotone.setdefault(mode, {"a": 0, "b": 0})
            monotone[mode]["a"] += ra["rho_median"] >= RHO_GOAL
            monotone[mode]["b"] += rb["rho_median"] >= RHO_GOAL
            for k in ("leakage_ratio", "leakage_ratio_independent"):
                less_leak.setdefault(f"{mode}/{k}", 0)
                less_leak[f"{mode}/{k}"] += rb[k] <= ra[k]
    A = len(a["names"])
    adopt = all(monotone[m]["b"] == A for m in MODES) and all(v == A for v in less_leak.values())
    return {"directions": rows, "monotone_count": monotone, "b_leaks_no_more_count": less_leak,
            "n_directions": A, "adopt_b": bool(adopt)}


def markdown(a: dict, b: dict, c: dict, la: str, lb: str, command: str, note: str = "") -> str:
    A = c["n_directions"]
    top = "share_on_top10_variance_axes" in next(iter(c["directions"].values()))
    head = ("| direction | cos(a, b) | cos of the classifier normals | " + ("|d|² on W's top 10 axes a / b | " if top else "")
            + "step size a / b | median ρ plain steps a / b | median ρ conditional a / b "
            "| target Δ a / b | others Δ world a / b | others Δ indep. a / b | others/target world a / b "
            "| others/target indep. a / b |")
    rows = [head, "|" + "---|" * (11 + top)]
    for n, r in c["directions"].items():
        p, q = r["plain"], r["conditional"]
        rows.append(f"| {n} | {r['cosine_a_b']:.2f} | {r['classifier_normal_cosine_a_b']:.3f} | "
                    + (f"{r['share_on_top10_variance_axes']['a']:.2f} / {r['share_on_top10_variance_axes']['b']:.2f} | " if top else "")
                    + f"{a['step_size'][n]:.2f} / {b['step_size'][n]:.2f} "
                    f"| {p['a']['rho_median']:.2f} ({p['a']['share_rho_ge_0.95']:.0%}) / "
                    f"{p['b']['rho_median']:.2f} ({p['b']['share_rho_ge_0.95']:.0%}) "
                    f"| {q['a']['rho_median']:.2f} / {q['b']['rho_median']:.2f} "
                    f"| {p['a']['target_change']:.3f} / {p['b']['target_change']:.3f} "
                    f"| {p['a']['others_change']:.3f} / {p['b']['others_change']:.3f} "
                    f"| {p['a']['others_change_independent']:.3f} / {p['b']['others_change_independent']:.3f} "
                    f"| {p['a']['leakage_ratio']:.2f} / {p['b']['leakage_ratio']:.2f} "
                    f"| {p['a']['leakage_ratio_independent']:.2f} / {p['b']['leakage_ratio_independent']:.2f} |")
    mono = c["monotone_count"]
    leak = c["b_leaks_no_more_count"]
    return f"""# Editing: {la} (a) vs {lb} (b) directions

`{command}`, from the files bench/edit.py wrote:

* a = {la}: `{a['folder']}` (fitted by {a['fit_command']}; benched by `{a['bench_command']}`)
* b = {lb}: `{b['folder']}` (fitted by {b['fit_command']}; benched by `{b['bench_command']}`)
{note and chr(10) + note + chr(10)}
cos(a, b): the two edit directions; classifier normals: the fitted boundaries' normals in W (a plain set's
direction is its normal; a whitened set's normal is Sigma^-1 d); |d|² on W's top 10 axes: the share of the
direction on the 10 eigenvectors of b's Sigma with the largest variance (of {a['vectors'].shape[1]}). Other columns are for plain steps unless named (conditional = "keep other attributes"); ρ: median Spearman ρ
over {a['bench']['faces']} faces (share of faces with ρ ≥ 0.95); Δ: mean change between the ends of the sweep (a: ±{a['bench']['sweep'][1]:g}
steps, b: ±{b['bench']['sweep'][1]:g} steps, {a['bench']['steps']} / {b['bench']['steps']} points) in
units of the attribute's range; others/target: leakage per unit of the target's change (both judges'
others over the world predictor's target).

{chr(10).join(rows)}

Monotone (median ρ ≥ {RHO_GOAL}): plain steps a {mono['plain']['a']}/{A}, b {mono['plain']['b']}/{A};
conditional a {mono['conditional']['a']}/{A}, b {mono['conditional']['b']}/{A}.
b leaks no more than a (others/target): plain steps {leak['plain/leakage_ratio']}/{A} (world predictor),
{leak['plain/leakage_ratio_independent']}/{A} (independent judge); conditional {leak['conditional/leakage_ratio']}/{A},
{leak['conditional/leakage_ratio_independent']}/{A}.
Adoption rule (b monotone for all directions in both modes and leaking no more than a everywhere):
**{'adopt b' if c['adopt_b'] else 'keep a'}**.
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="folder of the current set (directions.npz + metrics.json)")
    p.add_argument("--b", required=True, help="folder of the candidate set")
    p.add_argument("--labels", default="plain,whitened")
    p.add_argument("--out", required=True, help="path without extension: writes OUT.json and OUT.md")
    p.add_argument("--a-copy-of", default=None, help="folder whose directions.npz A copies: checked byte for byte, and "
                   "its metrics.json bench numbers against A's")
    args = p.parse_args(argv)
    command = "python bench/edit_compare.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    la, lb = args.labels.split(",")
    a, b = load_set(Path(args.a)), load_set(Path(args.b))
    c = compare(a, b)
    out = Path(args.out)
    note = ""
    if args.a_copy_of:
        c["a_copy_of"] = copy_check(Path(args.a), Path(args.a_copy_of))
        k = c["a_copy_of"]
        note = (f"a's directions.npz is {'a byte-for-byte copy' if k['same_bytes'] else 'NOT a copy'} of "
                f"`{args.a_copy_of}`; bench/edit.py's numbers on it {'equal (within 1e-3)' if k['same_bench'] else 'DIFFER from'} "
                f"the ones stored there (ρ and Δ of every direction and mode; largest difference {k['max_abs_difference']:.1e}).")
    md = markdown(a, b, c, la, lb, command, note)
    strip = ("vectors", "normals", "bench", "covariance")
    write_json(out.with_suffix(".json"), {"command": command, "a": {"label": la, **{k: v for k, v in a.items() if k not in strip}},
                                          "b": {"label": lb, **{k: v for k, v in b.items() if k not in strip}},
                                          "a_bench": a["bench"], "b_bench": b["bench"], **c})
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

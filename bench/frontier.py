"""Issue #17's two contested goals side by side, over every committed reading of them.

The goals: the independent judge's Fréchet distance at ψ 1 at most 0.5 x v1's, and a held-out logistic
read-out from w at least 0.85 accurate for each of smile, gender, beard, glasses and age (both as
`bench/quality.py` and `bench/branch_compare.py` measure them, 1000 samples). Every committed run, branch
and lever of mini v2 was read that way somewhere under `bench/results/` or in a model's `metrics.json`; this
bench gathers those readings and asks one question of them: has any generator met both?

1. A *reading* is every JSON object holding `fd_judge`, `w_linear_accuracy` and `goals` with n = 1000
   (readings at n 500 are the early-run protocol and are left out). Its model is its `fingerprint` (or its
   file's), its latents the seeds it started from (`first_seed`, else the file's `seeds_from`, else 0); the
   same model read on the same latents in several files counts once.
2. The FD goal is 0.5 x v1's FD as `--v1` records it (`assets/mini/metrics.json`, read at seeds 0: readings
   on other seeds are compared with the same number and say so).
3. A reading is on the *frontier* when no other reading is at least as good on both FD (lower) and the
   least of the five w-linearities (higher: the least is what the goal binds) and better on one.

python bench/frontier.py --out bench/results/frontier.json     # writes frontier.md beside it
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results_io import write_json  # noqa: E402
from facegen.world.quality_goals import GOALS, W_LINEAR_ATTRIBUTES as ATTRIBUTES  # noqa: E402

W_LINEAR_GOAL = GOALS["w_linear_min"]
FD_GOAL_RATIO = GOALS["fd_ratio_max"]
N_GOAL = 1000
DEFAULT_INPUTS = ("assets/*/metrics.json", "bench/results/**/*.json")


def find_readings(path: Path, root: Path):
    """Every reading in one JSON file, with where it sits (`file#key/key`), its model and latents."""
    try:
        top = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return []
    found = []

    def walk(obj, keys, parent):
        if isinstance(obj, dict):
            if {"fd_judge", "w_linear_accuracy", "goals"} <= obj.keys() and obj.get("n") == N_GOAL:
                found.append(reading(obj, keys, parent))
            for k, v in obj.items():
                walk(v, keys + [k], obj)
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, keys + [str(i)], obj)

    def reading(obj, keys, parent):
        parent = parent if isinstance(parent, dict) else {}
        seeds = obj.get("first_seed", top.get("seeds_from", 0) if isinstance(top, dict) else 0)
        rates = [g for g in obj["goals"] if str(g.get("goal", "")).startswith("attribute ")]
        return {
            "reading": f"{path.relative_to(root)}#{'/'.join(keys)}",
            "fingerprint": obj.get("fingerprint") or parent.get("fingerprint"),
            "seeds_from": seeds or 0,
            "step": obj.get("step", parent.get("steps")),
            "fd_judge": round(float(obj["fd_judge"]), 2),
            "w_linear": {a: round(float(obj["w_linear_accuracy"][a]), 3) for a in ATTRIBUTES},
            "rate_goals_met": [sum(bool(g.get("pass")) for g in rates), len(rates)],
        }

    walk(top, [], None)
    return found


def gather(patterns, root: Path):
    """Readings of every file the patterns match, in file order, one per (model, latents)."""
    files = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    seen, readings = set(), []
    for f in files:
        for r in find_readings(f, root):
            key = (r["fingerprint"], r["seeds_from"]) if r["fingerprint"] else r["reading"]
            if key not in seen:
                seen.add(key)
                readings.append(r)
    return readings


def judge(readings, fd_goal: float):
    """Mark each reading's goals and whether it is on the (FD, least w-linearity) frontier."""
    for r in readings:
        r["least_w_linear"] = min(r["w_linear"].values())
        r["w_linear_met"] = sum(v >= W_LINEAR_GOAL for v in r["w_linear"].values())
        r["fd_goal_met"] = r["fd_judge"] <= fd_goal
        r["both_met"] = r["fd_goal_met"] and r["w_linear_met"] == len(ATTRIBUTES)

    def dominates(o, r):
        return (o["fd_judge"] <= r["fd_judge"] and o["least_w_linear"] >= r["least_w_linear"]
                and (o["fd_judge"], o["least_w_linear"]) != (r["fd_judge"], r["least_w_linear"]))

    for r in readings:
        r["frontier"] = not any(dominates(o, r) for o in readings)
    return sorted(readings, key=lambda r: r["fd_judge"])


def table(readings, fd_goal: float) -> str:
    lines = [f"FD goal <= {fd_goal:.2f} ({FD_GOAL_RATIO} x v1); w-linear goal >= {W_LINEAR_GOAL} for each of "
             f"{' / '.join(ATTRIBUTES)}; n {N_GOAL}.", "",
             "| reading | seeds from | step | FD judge | FD goal | w-linear " + " / ".join(ATTRIBUTES)
             + " | w goals met | rate goals met | frontier |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in readings:
        w = " / ".join(f"{r['w_linear'][a]:.2f}" for a in ATTRIBUTES)
        lines.append(f"| {r['reading']} | {r['seeds_from']} | {r['step'] if r['step'] is not None else '-'} "
                     f"| {r['fd_judge']:.2f} | {'met' if r['fd_goal_met'] else '-'} | {w} "
                     f"| {r['w_linear_met']} / {len(ATTRIBUTES)} | {r['rate_goals_met'][0]} / {r['rate_goals_met'][1]} "
                     f"| {'yes' if r['frontier'] else ''} |")
    return "\n".join(lines)


def summary(readings) -> dict:
    return {"readings": len(readings),
            "fd_goal_met": sum(r["fd_goal_met"] for r in readings),
            "all_w_linear_goals_met": sum(r["w_linear_met"] == len(ATTRIBUTES) for r in readings),
            "both_met": sum(r["both_met"] for r in readings),
            "frontier": [r["reading"] for r in readings if r["frontier"]]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", nargs="+", default=list(DEFAULT_INPUTS),
                    help="glob patterns, relative to --root, of the JSON files to read")
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--v1", default="assets/mini/metrics.json", help="v1's metrics.json (its quality.fd_judge)")
    ap.add_argument("--out", required=True, help="JSON to write; the table goes beside it as .md")
    args = ap.parse_args(argv)
    root = Path(args.root)
    v1_fd = float(json.loads((root / args.v1).read_text())["quality"]["fd_judge"])
    fd_goal = FD_GOAL_RATIO * v1_fd
    readings = judge(gather(args.inputs, root), fd_goal)
    text = table(readings, fd_goal)
    print(text)
    result = {"command": "python bench/frontier.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "v1_fd_judge": round(v1_fd, 2), "fd_goal": round(fd_goal, 2), "w_linear_goal": W_LINEAR_GOAL,
              "summary": summary(readings), "readings": readings}
    print(json.dumps(result["summary"], indent=1))
    out = write_json(args.out, result)
    out.with_suffix(".md").write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()

"""Side by side: issue 17's goals for several generators or training checkpoints, measured in one run.

Used to decide between branches of the v2 run (e.g. the run continued as it was vs. continued with a new
lever from the same resume point, compared at the same step). Each arm is ``name=PATH``: a model folder /
registry name, or a training checkpoint (``checkpoint.pt``; its G_ema is exported to ``--workdir/<name>``
first; ``PATH#G`` exports the training G instead). Every arm is measured by
:func:`facegen.world.quality_goals.measure_goals` with the same held-out renders, the same latents and
the same independent judge (``--seeds-from K``: the latents are seeds K..K+n-1 instead of the goals'
0..n-1, to read the goals on other faces); ``fd_judge_v1`` is not repeated per arm (add
``v1=assets/mini`` as an arm to see v1 under the same conditions).

    nice -n 5 python bench/branch_compare.py --arm v1=assets/mini --arm plain=runs/v2/ckpt.pt \\
        --arm lin=runs/v2-lin/ckpt.pt --n 1000 --out bench/results/v2-branches.json

Writes the JSON (every arm's goal keys + the goal report; for a checkpoint, the start / resume events of
the run's log.jsonl beside it: the training commands) and a Markdown table beside it (.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import facegen  # noqa: E402
from facegen.world.judge import DEFAULT_JUDGE_DIR, load_judge  # noqa: E402
from facegen.world.quality import held_out_renders  # noqa: E402
from facegen.world.quality_goals import goal_report, measure_goals  # noqa: E402
from facegen.world.resume import read_resume  # noqa: E402
from facegen.world.train_export import export_checkpoint  # noqa: E402
from results_io import write_json  # noqa: E402


def load_arm(name: str, path: str, workdir: Path):
    """(generator, where it came from): a checkpoint's or compact resume file's G_ema exported first (its
    training G with a ``#G`` suffix on the path), else the model itself (with the step its metrics.json
    records, when it has one)."""
    path, _, which = path.partition("#")
    p = Path(path)
    if p.is_file() and p.suffix in (".pt", ".safetensors"):   # a checkpoint or a compact resume file
        ckpt = read_resume(p)
        folder = workdir / name
        if which == "G":                    # the training G in place of G_ema, exported the same way
            ckpt["G_ema"] = ckpt["G"]
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(ckpt, folder / "training_G.pt")
            export_checkpoint(folder / "training_G.pt", folder)
            (folder / "training_G.pt").unlink()
        else:
            export_checkpoint(p, folder)
        log = p.parent / "log.jsonl"
        history = [{k: e.get(k) for k in ("event", "step", "command", "from", "config_changes")}
                   for e in (json.loads(line) for line in log.read_text().splitlines() if '"event"' in line)
                   ] if log.exists() else None
        return facegen.load_generator(str(folder)), {"checkpoint": str(p), "step": ckpt["step"],
                                                     "kimg": ckpt["images_seen"] / 1000, "exported_to": str(folder),
                                                     "network": "G (training)" if which == "G" else "G_ema",
                                                     "run_history": history}
    metrics = Path(path) / "metrics.json"          # a model folder: the step its training command recorded
    step = json.loads(metrics.read_text()).get("steps") if metrics.is_file() else None
    return facegen.load_generator(path), {"model": path, **({"step": step} if step is not None else {})}


def summary_rows(arms: dict) -> list[str]:
    names = list(arms)
    lines = ["| goal | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines.append("| Fréchet distance (judge, psi 1; floor) | " + " | ".join(
        f"{arms[n]['fd_judge']:.2f} ({arms[n]['fd_judge_floor']:.2f})" for n in names) + " |")
    keys = [row["goal"] for row in arms[names[0]]["goals"]]
    for k in keys:
        cells = []
        for n in names:
            row = next((r for r in arms[n]["goals"] if r["goal"] == k), None)
            mark = {True: " ✓", False: " ✗", None: ""}[row["pass"]] if row else ""
            cells.append(f"{row.get('value', '-') if row else '-'}{mark}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("| w-linear (smile/gender/beard/glasses/age) | " + " | ".join(
        "/".join(f"{v:.2f}" for v in arms[n]["w_linear_accuracy"].values()) for n in names) + " |")
    rates = [a for a, r in arms[names[0]]["attribute_rates"].items() if "gap_points" in r]
    for a in rates:
        lines.append(f"| {a} rate gap (points) | " + " | ".join(
            str(arms[n]["attribute_rates"][a]["gap_points"]) for n in names) + " |")
    for a in rates:         # the judge on both sides: its own bias cancels (diagnostic, not the goal)
        lines.append(f"| {a} rate gap vs the judge on renders (points) | " + " | ".join(
            str(arms[n]["attribute_rates"][a]["gap_points_same_judge"]) for n in names) + " |")
    spreads = [a for a, r in arms[names[0]]["attribute_rates"].items() if "std_rel_diff" in r]
    for a in spreads:
        lines.append(f"| {a} spread vs world | " + " | ".join(
            f"{arms[n]['attribute_rates'][a]['std_rel_diff']:+.0%}" for n in names) + " |")
    for a in spreads:
        lines.append(f"| {a} spread vs the judge on renders | " + " | ".join(
            f"{arms[n]['attribute_rates'][a]['std_rel_diff_same_judge']:+.0%}" for n in names) + " |")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", action="append", required=True, help="name=model folder or checkpoint.pt (repeat)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--judge", default=str(DEFAULT_JUDGE_DIR))
    ap.add_argument("--detector", action="store_true", help="also the MediaPipe detector goal (slower)")
    ap.add_argument("--seeds-from", type=int, default=0,
                    help="generate from seeds K..K+n-1 (default 0: the latents the goals are read on)")
    ap.add_argument("--workdir", default="runs/compare", help="where checkpoints' G_ema are exported")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/v2-branches.json")
    a = ap.parse_args()
    torch.set_num_threads(max(1, a.threads))
    judge = load_judge(a.judge)
    arms, renders = {}, None
    for spec in a.arm:
        name, _, path = spec.partition("=")
        t0 = time.time()
        G, source = load_arm(name, path, Path(a.workdir))
        renders = renders or held_out_renders(a.n, G.img_resolution)
        q = measure_goals(G, judge, baseline=None, n=a.n, renders=renders, detector=a.detector,
                          first_seed=a.seeds_from)
        q.pop("fd_judge_v1", None)
        q["goals"] = [row for row in goal_report({**q, "fd_judge_v1": q["fd_judge"]})
                      if not row["goal"].startswith(("Fréchet distance", "downstream"))]
        arms[name] = {**source, "fingerprint": G.fingerprint, **q, "eval_seconds": round(time.time() - t0, 1)}
        print(f"{name}: fd_judge {q['fd_judge']:.2f}, w-linear {q['w_linear_accuracy']} ({time.time() - t0:.0f}s)")
    command = "python bench/branch_compare.py " + " ".join(sys.argv[1:])
    write_json(a.out, {"what": "issue 17 goals per arm, same renders / latents / judge", "command": command,
                       "n": a.n, "seeds_from": a.seeds_from, "arms": arms})
    md = [f"# {Path(a.out).stem}", "", f"`{command}`", "",
          f"n {a.n}, generated from seeds {a.seeds_from}-{a.seeds_from + a.n - 1}; the same renders for every arm.", "",
          *summary_rows(arms), ""]
    Path(a.out).with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()

"""The v2 recipe's levers measured one against another in short runs (issue #17, item 1).

Every run in ``bench/levers_runs.json`` (name, outdir, the exact training command) is evaluated at the
same number of images (``--kimg``): its G_ema from the checkpoint written at that kimg (the run's
``checkpoint.pt`` when it stopped there, else the ``ckpt-<step>.pt`` copy of a snapshot).

Measures per run:

* **fd_predictor**: Fréchet distance to held-out renders in the world predictor's features
  (:func:`facegen.world.quality.evaluate_generator`, n samples, psi 1), with the render-vs-render floor.
  The projected-D lever trains against the predictor's trunk, so this number flatters it;
* **fd_judge** (+ floor), **hf_energy_ratio**, **w_linear_accuracy**: from the independent judge
  (:func:`facegen.world.quality_goals.measure_goals`, no detector) when ``assets/judge`` exists;
* **glasses / beard rates** of the samples (predictor, psi 1) next to the held-out renders' and the
  world's ground truth on the training seeds 0..23999 (``facegen.world.classes.world_labels``);
* **speed**: seconds per kimg from ``log.jsonl`` (mean ``s_per_step`` up to ``--kimg``, wall-clock of a
  nice-10 process on a shared 2-core machine: noisy), and with ``--speed`` the CPU time per step of
  every run's config measured here in one process, configs interleaved, as a ratio to the first run.

    nice -n 5 python bench/levers.py --kimg 16 --n 500 --json bench/results/levers.json \\
        --md bench/results/levers.md [--speed]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facegen.world.resume import read_resume  # noqa: E402
from facegen.world.train_export import checkpoint_config  # noqa: E402
from facegen.world.training import TrainConfig, Trainer, build_networks  # noqa: E402
from results_io import write_json  # noqa: E402


def checkpoint_at(outdir: Path, kimg: float) -> Path:
    """The checkpoint of ``outdir`` written when it had seen ``kimg`` thousand images."""
    cfg = json.loads((outdir / "config.json").read_text())
    step = int(round(kimg * 1000 / cfg["batch"]))
    for p in (outdir / f"ckpt-{step:07d}.pt", outdir / "checkpoint.pt"):
        if p.exists() and torch.load(p, map_location="cpu", weights_only=True)["step"] == step:
            return p
    raise FileNotFoundError(f"{outdir}: no checkpoint at step {step} ({kimg} kimg)")


def load_g_ema(path: Path):
    """(G_ema in eval mode, the checkpoint) of a training checkpoint or compact resume file; options of the
    writing run that this TrainConfig no longer has are left out (:func:`checkpoint_config`)."""
    st = read_resume(path)
    G, _ = build_networks(checkpoint_config(st))
    G.load_state_dict(st["G_ema"])
    return G.eval().requires_grad_(False), st


def log_speed(outdir: Path, kimg: float, batch: int) -> dict:
    recs = [json.loads(l) for l in (outdir / "log.jsonl").read_text().splitlines() if l.strip()]
    recs = [r for r in recs if "s_per_step" in r and r["kimg"] <= kimg + 1e-9]
    sps = float(np.mean([r["s_per_step"] for r in recs]))
    return {"s_per_kimg_log": round(sps * 1000 / batch, 1), "s_per_step_log": round(sps, 3),
            "s_per_step_log_min": min(r["s_per_step"] for r in recs),
            "elapsed_s_at_kimg": recs[-1]["elapsed_s"] if recs else None}


def renders(n: int, size: int):
    try:
        from facegen.world.quality import held_out_renders
    except ImportError:
        return None
    return held_out_renders(n, size)


def evaluate(G, n: int, shared) -> dict:
    from facegen.world.predictor import load_world_predictor
    from facegen.world.quality import evaluate_generator
    kw = {"renders": shared} if shared is not None else {}
    q = evaluate_generator(G, load_world_predictor(), n=n, psi=1.0, **kw)
    a = q["attributes_psi1.0"]
    out = {"fd_predictor": q["frechet_distance"]["psi1.0"],
           "fd_predictor_floor": q["frechet_distance"]["floor_renders_vs_renders"],
           "valid_face_rate": q["valid_face_rate"]["psi1.0"]}
    for k in ("glasses", "beard"):
        out[f"{k}_rate"] = a[k]["rate_generated"]
        out[f"{k}_rate_renders"] = a[k]["rate_renders"]
    for k in ("age", "gender", "smile", "yaw"):
        out[f"{k}_std_ratio"] = a[k]["std_generated"] / max(a[k]["std_renders"], 1e-9)
    out["hair_style_tv"] = a["hair_style"]["total_variation"]
    judge_dir = REPO / "assets" / "judge"
    if judge_dir.exists():
        try:
            from facegen.world.judge import load_judge
            from facegen.world.quality_goals import measure_goals
        except ImportError as e:
            out["judge"] = f"not measured: {e}"
        else:
            g = measure_goals(G, load_judge(judge_dir), n=n, renders=shared, detector=False, log=lambda s: None)
            out.update({"fd_judge": g["fd_judge"], "fd_judge_floor": g["fd_judge_floor"],
                        "hf_energy_ratio": g["hf_energy_ratio"], "w_linear_accuracy": g["w_linear_accuracy"]})
    return out


def cpu_speed(runs: list, images: np.ndarray, rounds: int = 8) -> dict:
    """CPU seconds per training step of each run's config (steps 1..rounds after one warm-up, so the
    lazy regularisers run at their share), configs interleaved to share the machine's mood."""
    torch.set_num_threads(1)
    trainers = {}
    for r in runs:
        cfg = json.loads((REPO / r["outdir"] / "config.json").read_text())
        trainers[r["name"]] = Trainer(TrainConfig(**{**cfg, "outdir": "/tmp/levers-speed"}), images)
    for t in trainers.values():
        t.train_step()
    cpu = {k: [] for k in trainers}
    for _ in range(rounds):
        for k, t in trainers.items():
            t0 = time.process_time()
            t.train_step()
            cpu[k].append(time.process_time() - t0)
    base = float(np.mean(cpu[runs[0]["name"]]))
    return {k: {"cpu_s_per_step": round(float(np.mean(v)), 3), "ratio_to_first": round(float(np.mean(v)) / base, 2)}
            for k, v in cpu.items()}


def markdown(res: dict) -> str:
    world = res["world_rates"]
    judge = any("fd_judge" in r for r in res["runs"].values())
    head = ["run", "levers", "FD pred. (floor %.1f)" % res["fd_predictor_floor"]]
    if judge:
        head += ["FD judge (floor %.1f)" % next(r["fd_judge_floor"] for r in res["runs"].values() if "fd_judge" in r),
                 "HF ratio", "w-linear acc. (mean of 5)"]
    head += ["glasses %", "beard %", "valid %", "s/kimg (log)", "CPU ratio"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in res["runs"].items():
        cells = [name, r["levers"], f"{r['fd_predictor']:.1f}"]
        if judge:
            cells += [f"{r['fd_judge']:.2f}" if "fd_judge" in r else "-",
                      f"{r['hf_energy_ratio']:.2g}" if "hf_energy_ratio" in r else "-",
                      f"{np.mean(list(r['w_linear_accuracy'].values())):.2f}" if "w_linear_accuracy" in r else "-"]
        cells += [f"{100 * r['glasses_rate']:.0f}", f"{100 * r['beard_rate']:.0f}", f"{100 * r['valid_face_rate']:.0f}",
                  f"{r['s_per_kimg_log']:.0f}", str(r.get("cpu_ratio", "-"))]
        rows.append("| " + " | ".join(cells) + " |")
    rows.append("")
    rows.append(f"At {res['kimg']} kimg, n = {res['n']} samples at psi 1. World ground truth (training seeds): glasses "
                f"{100 * world['glasses']:.0f} %, beard {100 * world['beard']:.0f} % (held-out renders as the "
                f"predictor reads them: {100 * res['renders_rates']['glasses']:.0f} % / "
                f"{100 * res['renders_rates']['beard']:.0f} %). s/kimg from log.jsonl is wall-clock under "
                "contention (noisy); the CPU ratio is CPU time per step measured in one process, configs "
                "interleaved (bench/levers.py --speed).")
    return "\n".join(rows) + "\n"


def summary(files: list, json_out: str, md_out: str) -> dict:
    """Merge per-kimg results (``levers-<K>kimg.json``) into one table: each run's FD (judge and predictor)
    at every kimg it was measured, its glasses / beard rates at each, and the CPU ratio."""
    tables = sorted((json.loads(Path(f).read_text()) for f in files), key=lambda t: t["kimg"])
    names = list(dict.fromkeys(n for t in tables for n in t["runs"]))
    merged = {"files": [str(f) for f in files], "world_rates": tables[0]["world_rates"], "runs": {},
              "cpu_speed": next((t["cpu_speed"] for t in tables if "cpu_speed" in t), None)}
    for n in names:
        per = {str(t["kimg"]): {k: t["runs"][n].get(k) for k in ("fd_judge", "fd_predictor", "glasses_rate",
                                                                   "beard_rate", "valid_face_rate", "hf_energy_ratio",
                                                                   "w_linear_accuracy", "s_per_kimg_log", "step")}
               for t in tables if n in t["runs"]}
        first = next(t["runs"][n] for t in tables if n in t["runs"])
        cpu = next((t["cpu_speed"][n]["ratio_to_first"] for t in tables if n in t.get("cpu_speed", {})), None)
        merged["runs"][n] = {"levers": first["levers"], "command": first["command"], "cpu_ratio": cpu, "at_kimg": per}
    merged["floors"] = {"fd_judge": next((r.get("fd_judge_floor") for t in tables for r in t["runs"].values()), None),
                        "fd_predictor": tables[0]["fd_predictor_floor"]}
    Path(json_out).write_text(json.dumps(merged, indent=1) + "\n")
    ks = [str(t["kimg"]) for t in tables]
    head = ["run", "levers"] + [f"FD judge @{float(k):g}" for k in ks] + [f"FD pred. @{float(k):g}" for k in ks] + \
           [f"glasses / beard % @{float(k):g}" for k in ks] + ["CPU s/step ratio"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda v, f: "-" if v is None else format(v, f)
    for n, r in merged["runs"].items():
        a = r["at_kimg"]
        cells = [n, r["levers"]] + [fmt(a.get(k, {}).get("fd_judge"), ".1f") for k in ks] + \
                [fmt(a.get(k, {}).get("fd_predictor"), ".0f") for k in ks] + \
                [(f"{100 * a[k]['glasses_rate']:.0f} / {100 * a[k]['beard_rate']:.0f}" if k in a else "-") for k in ks] + \
                [fmt(r["cpu_ratio"], ".2f")]
        rows.append("| " + " | ".join(cells) + " |")
    w = merged["world_rates"]
    rows += ["", f"Fréchet distances at psi 1, n = {tables[0]['n']} (floors, renders vs renders: judge "
             f"{fmt(merged['floors']['fd_judge'], '.1f')}, predictor {merged['floors']['fd_predictor']:.1f}). World "
             f"ground truth: glasses {100 * w['glasses']:.0f} %, beard {100 * w['beard']:.0f} %. CPU ratio: CPU time "
             "per training step of the run's config against base, measured in one process, configs interleaved "
             "(--speed). Commands: bench/levers_runs.json. Made by: python bench/levers.py --summary " + " ".join(files)]
    Path(md_out).write_text("\n".join(rows) + "\n")
    return merged


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=str(REPO / "bench" / "levers_runs.json"))
    ap.add_argument("--only", nargs="*", help="names of runs to evaluate (default: all)")
    ap.add_argument("--kimg", type=float, default=30.0)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--speed", action="store_true", help="also time every run's config (all runs, the first as 1)")
    ap.add_argument("--no-eval", action="store_true", help="evaluate nothing (e.g. with --speed)")
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "levers.json"))
    ap.add_argument("--md", default=str(REPO / "bench" / "results" / "levers.md"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary", nargs="*", help="only merge these per-kimg result files into --json / --md")
    args = ap.parse_args(argv)
    if args.summary:
        print(Path(args.md).read_text() if summary(args.summary, args.json, args.md) else "")
        return 0
    torch.set_num_threads(args.threads)
    all_runs = json.loads(Path(args.runs).read_text())["runs"]
    runs = [] if args.no_eval else [r for r in all_runs if not args.only or r["name"] in args.only]
    res = {"kimg": args.kimg, "n": args.n, "psi": 1.0, "runs": {}, "skipped": {}}
    old = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else {}
    if old.get("kimg") == args.kimg and old.get("n") == args.n:
        res["runs"] = old.get("runs", {})          # keep runs evaluated before (--only adds / refreshes)
    from facegen.world.classes import world_labels
    truth = world_labels(range(24000))              # the training set: world seeds 0..23999
    res["world_rates"] = {k: float(np.mean([t[k] for t in truth])) for k in ("glasses", "beard")}
    shared = renders(args.n, 64)
    for r in runs:
        out = REPO / r["outdir"]
        try:
            ckpt = checkpoint_at(out, args.kimg)
        except FileNotFoundError as e:
            res["skipped"][r["name"]] = str(e)
            print(f"skip {r['name']}: {e}", flush=True)
            continue
        t0 = time.time()
        G, st = load_g_ema(ckpt)
        m = evaluate(G, args.n, shared)
        m.update(log_speed(out, args.kimg, st["cfg"]["batch"]))
        res["runs"][r["name"]] = {"levers": r["levers"], "command": r["command"], "checkpoint": str(ckpt.relative_to(REPO)),
                                  "step": st["step"], "kimg": st["images_seen"] / 1000, **m}
        print(f"{r['name']}: FD {m['fd_predictor']:.2f} glasses {m['glasses_rate']:.2f} beard {m['beard_rate']:.2f} "
              f"({time.time() - t0:.0f}s)", flush=True)
    any_run = next(iter(res["runs"].values()), None)
    res["fd_predictor_floor"] = any_run["fd_predictor_floor"] if any_run else None
    res["renders_rates"] = {k: any_run[f"{k}_rate_renders"] for k in ("glasses", "beard")} if any_run else {}
    if args.speed:
        imgs = np.load(REPO / all_runs[0]["outdir"] / "data" / "world_24000_64.npy", mmap_mode="r")[:512]
        sp = cpu_speed([r for r in all_runs if (REPO / r["outdir"] / "config.json").exists()], np.ascontiguousarray(imgs))
        res["cpu_speed"] = sp
        for k, v in sp.items():
            if k in res["runs"]:
                res["runs"][k]["cpu_ratio"] = v["ratio_to_first"]
    res["command"] = "python bench/levers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_json(args.json, res)
    if res["runs"]:
        Path(args.md).write_text(markdown(res))
        print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

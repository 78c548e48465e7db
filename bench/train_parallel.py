"""Seconds per training step of mini's recipe: one process (1 and 2 threads) against torchrun with 2 processes.

Method: the same config (mini v1's options by default, global batch 16), the same pre-rendered world data
(rendered once, the cache copied into every run directory), ``--steps`` steps per run; a run's time is the
median of rank 0's per-step wall times in log.jsonl after ``--warmup`` steps. The variants run interleaved
for ``--rounds`` rounds (their order rotated each round), so a busy machine slows all of them alike; the
summary gives each variant's median over rounds and its ratio to one process on one thread, measured in
the same run. The load average before each run is recorded beside it.

    python bench/train_parallel.py --json bench/results/train_parallel.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from results_io import write_json  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MINI = ["--resolution", "64", "--batch", "16", "--z-dim", "128", "--w-dim", "128", "--mapping-layers", "4",
        "--g-channel-base", "1024", "--g-channel-max", "128", "--d-channel-base", "1024", "--d-channel-max", "128"]
VARIANTS = {  # name -> (launcher argv, threads per process)
    "1 process x 1 thread": ([sys.executable, "-m", "facegen", "train"], 1),
    "1 process x 2 threads": ([sys.executable, "-m", "facegen", "train"], 2),
    "2 processes x 1 thread": ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                "2", "-m", "facegen", "train"], 1),
}


def run_variant(name, outdir: Path, data: str, cache: Path, steps: int, warmup: int) -> dict:
    launcher, threads = VARIANTS[name]
    (outdir / "data").mkdir(parents=True)
    for f in cache.iterdir():
        shutil.copy(f, outdir / "data" / f.name)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    load = os.getloadavg()[0]
    cmd = [*launcher, "--outdir", str(outdir), "--data", data, *MINI, "--kimg", str(steps * 16 / 1000),
           "--log-steps", "1", "--snapshot-steps", "100000", "--threads", str(threads)]
    t0 = time.time()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{name} failed:\n{(r.stdout + r.stderr)[-3000:]}")
    rows = [json.loads(l) for l in (outdir / "log.jsonl").read_text().splitlines()]
    per_step = [row["s_per_step"] for row in rows if "event" not in row][warmup:]
    return {"variant": name, "s_per_step": round(statistics.median(per_step), 4), "steps": len(per_step),
            "wall_s": round(time.time() - t0, 1), "loadavg_1min_before": round(load, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data", default="world:512")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import torch
    from facegen.world.train_data import load_dataset
    work = Path(tempfile.mkdtemp(prefix="train-parallel-"))
    try:
        load_dataset(args.data, 64, cache_dir=work / "cache")
        names = list(VARIANTS)
        rows = []
        for rnd in range(args.rounds):
            for name in names[rnd % len(names):] + names[:rnd % len(names)]:
                row = run_variant(name, work / f"r{rnd}-{names.index(name)}", args.data, work / "cache",
                                  args.steps, args.warmup)
                rows.append({"round": rnd, **row})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {n: statistics.median(r["s_per_step"] for r in rows if r["variant"] == n) for n in names}
    base = med[names[0]]
    summary = {n: {"s_per_step": round(v, 4), "speed_vs_1x1": round(base / v, 2)} for n, v in med.items()}
    out = {"command": "python bench/train_parallel.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "config": "mini v1 (64 px, batch 16, 128 channels)", "data": args.data, "cpus": os.cpu_count(),
           "torch": torch.__version__, "summary": summary, "runs": rows}
    print(json.dumps(summary, indent=1))
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

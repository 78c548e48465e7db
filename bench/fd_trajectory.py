"""The judge's Fréchet distance along training runs: one number per checkpoint, cheap enough for every 500 steps.

Issue 17's FD goal (``fd_judge``, psi 1) is what swings most between checkpoints of the v2 run, so a branch
is judged by its FD *trajectory*, not one checkpoint. This measures exactly ``measure_goals``' ``fd_judge``
(the same held-out renders, the same latents: seeds 0..n-1 at psi 1, the same judge) for each checkpoint's
G_ema, and nothing else (``bench/branch_compare.py`` gives every goal, ~10x slower). Arms are
``name=CKPT,CKPT,...`` (checkpoints, compact resume files, or a model folder, which counts as its
metrics.json's step); the table has one row per step and one column per arm. ``--seeds-from K`` generates from another latent set (seeds K..K+n-1; the reference
renders stay the same), to tell a checkpoint's FD from its latent set's luck.

    nice -n 5 python bench/fd_trajectory.py --arm v2=runs/v2/ckpt-22000.pt,runs/v2/ckpt-22500.pt \\
        --arm ema=runs/v2-ema/ckpt-22500.pt --n 1000 --out bench/results/v2-fd-trajectory.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from facegen.world.judge import load_judge  # noqa: E402
from facegen.world.quality import frechet_distance, held_out_renders  # noqa: E402
from facegen.world.quality_goals import generated_samples  # noqa: E402
from branch_compare import load_arm  # noqa: E402
from results_io import write_json  # noqa: E402


def checkpoint_fd(path: str, judge, f_ref, n: int, seeds_from: int = 0) -> tuple[int, float]:
    """(step, judge FD of the checkpoint's G_ema at psi 1 over seeds seeds_from..seeds_from+n-1).

    A model folder (or registry name) counts too: its step is the one its metrics.json records (-1 if none)."""
    with tempfile.TemporaryDirectory() as workdir:
        G, source = load_arm("G_ema", path, Path(workdir))
        gen, _ = generated_samples(G, n, 1.0, seeds_from)        # seeds_from 0: exactly measure_goals' latents
    return source.get("step", -1), frechet_distance(judge.features(gen), f_ref)


def table(arms: dict) -> str:
    names = list(arms)
    steps = sorted({s for a in arms.values() for s in a})
    rows = ["| step | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for s in steps:
        rows.append(f"| {s} | " + " | ".join(f"{arms[n][s]:.2f}" if s in arms[n] else "" for n in names) + " |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arm", action="append", required=True, help="name=CKPT[,CKPT...]")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64, help="the checkpoints' resolution (the renders' size)")
    ap.add_argument("--seeds-from", type=int, default=0,
                    help="generate from seeds K..K+n-1 (0: the goal's own latents; others: another latent set)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, a.threads))
    judge = load_judge()
    (ref, _), (ref2, _) = held_out_renders(a.n, a.size)
    f_ref = judge.features(ref)
    arms = {}
    for spec in a.arm:
        name, _, paths = spec.partition("=")
        arms[name] = {}
        for p in paths.split(","):
            step, fd = checkpoint_fd(p, judge, f_ref, a.n, a.seeds_from)
            arms[name][step] = fd
            print(f"{name} step {step}: FD {fd:.2f}", flush=True)
    floor = frechet_distance(judge.features(ref2), f_ref)
    cmd = "python bench/fd_trajectory.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = write_json(a.out, {"command": cmd, "n": a.n, "seeds_from": a.seeds_from, "floor": floor,
                             "arms": {k: {str(s): v for s, v in d.items()} for k, d in arms.items()}})
    latents = f"generated from seeds {a.seeds_from}-{a.seeds_from + a.n - 1}"
    Path(out).with_suffix(".md").write_text(f"# {Path(out).stem}\n\n`{cmd}`\n\nJudge FD at psi 1, n {a.n}, {latents} "
                                            f"(floor, renders vs renders: {floor:.2f}).\n\n{table(arms)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

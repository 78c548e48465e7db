"""What the long-job thread budget buys short jobs: one-face /generate latency while a faceswap trains, with the
long job on 1 thread (the app's default on 2 cores: the cores but one) against all cores; A/B interleaved.

    .venv/bin/python bench/thread_budget.py [--rounds 5] [--long-seconds 30] [--unloaded 8]
                                            [--out bench/results/thread-budget.json]

Method. Two servers (``python app.py``, mini) run side by side, arm A with ``FACEGEN_LONG_THREADS=1`` and
arm B with ``FACEGEN_LONG_THREADS=<cores>``; only one works at a time. Each round runs A then B (the
order alternates every round: A B, B A, A B, ... so a drift in the machine's background load falls on
both arms): on the arm's server a lone visitor times --unloaded one-face generates (nothing else
running), then a fresh visitor starts a faceswap training of --long-seconds and the lone visitor times
one-face generates back to back until the training ends (each checked pixel for pixel against the
unloaded one); the training's status gives the steps it made (what the budget costs the long job).
Per round and arm: median latency unloaded and during the faceswap, their ratio, and the steps; per
round: the ratio of A's median during the faceswap to B's (paired within the round). Printed and
written as JSON: per-arm medians over the rounds with min / max, the paired ratio's median and range.
The machine's other work (a training run, other engineers) adds noise: compare the ratios, not the
seconds, and read the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import ROOT, launch, pixels  # noqa: E402
from results_io import write_json  # noqa: E402

GEN = dict(seeds="0", count=1, psi=0.7, cutoff=0, noise_mode="const", model="mini", api_name="/generate")
SWAP = dict(face="3", psi=0.7, video=None, sample="short-silent", views=50, detector="auto", model="mini",
            api_name="/faceswap_train")


def timed_generate(client) -> tuple:
    t = time.monotonic()
    gallery, _, _ = client.predict(**GEN)
    return time.monotonic() - t, pixels(gallery[0]["image"])


def one_arm(url: str, long_seconds: float, unloaded_n: int, reference) -> dict:
    """Unloaded generates, then generates while a fresh visitor's faceswap trains -> the arm's numbers."""
    from gradio_client import Client
    lone = Client(url, verbose=False)
    unloaded = []
    for _ in range(unloaded_n):
        dt, img = timed_generate(lone)
        unloaded.append(dt)
        assert np.array_equal(img, reference), "generate is not reproducible"
    trainer = Client(url, verbose=False)              # a fresh session: training starts from scratch
    job = trainer.submit(budget=long_seconds, **SWAP)
    while not lone.predict(api_name="/jobs")["running"]:
        if job.done():
            raise SystemExit(f"the faceswap ended before it ran: {job.result()}")
        time.sleep(0.1)
    during = []
    while not job.done():
        dt, img = timed_generate(lone)
        if not job.done():                           # count only generates that ended while it trained
            during.append(dt)
        assert np.array_equal(img, reference), "a generate during the faceswap differs from the unloaded one"
    _, status = job.result()
    steps = re.search(r"Trained (\d+) steps", status)
    for c in (lone, trainer):
        c.close()
    return {"unloaded_s": unloaded, "during_s": during, "steps": int(steps.group(1)) if steps else None,
            "unloaded_p50": statistics.median(unloaded), "during_p50": statistics.median(during) if during else None,
            "during_over_unloaded": (statistics.median(during) / statistics.median(unloaded)) if during else None}


def spread(xs) -> dict:
    xs = [x for x in xs if x is not None]
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)} if xs else {"n": 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--long-seconds", type=float, default=30.0, help="faceswap training budget per arm and round")
    ap.add_argument("--unloaded", type=int, default=8, help="unloaded generates per arm and round")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "thread-budget.json"))
    a = ap.parse_args()
    from gradio_client import Client

    cores = os.cpu_count() or 1
    arms = {"A": {"FACEGEN_LONG_THREADS": "1"}, "B": {"FACEGEN_LONG_THREADS": str(cores)}}
    procs, urls = {}, {}
    try:
        for name, env in arms.items():
            tmp = Path(tempfile.mkdtemp(prefix=f"facegen-budget-{name}-")) / "tmp"
            tmp.mkdir()
            procs[name], urls[name] = launch(tmp, env)
            print(f"arm {name} ({env}) at {urls[name]}", flush=True)
        warm = Client(urls["A"], verbose=False)
        reference = pixels(warm.predict(**GEN)[0][0]["image"])
        Client(urls["B"], verbose=False).predict(**GEN)       # warm B too
        rounds = []
        for r in range(a.rounds):
            order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
            res = {"order": "".join(order)}
            for name in order:
                res[name] = one_arm(urls[name], a.long_seconds, a.unloaded, reference)
            res["during_ratio_A_over_B"] = (res["A"]["during_p50"] / res["B"]["during_p50"]
                                            if res["A"]["during_p50"] and res["B"]["during_p50"] else None)
            rounds.append(res)
            print(f"round {r + 1} ({res['order']}): " + "; ".join(
                f"{n} generate p50 {res[n]['unloaded_p50']:.3f} s unloaded, {res[n]['during_p50'] or float('nan'):.3f} s "
                f"during ({len(res[n]['during_s'])} calls), {res[n]['steps']} steps" for n in "AB")
                + f"; A/B during {res['during_ratio_A_over_B'] or float('nan'):.2f}", flush=True)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(timeout=30)

    summary = {n: {"long_threads": int(arms[n]["FACEGEN_LONG_THREADS"]),
                   "unloaded_p50_s": spread([r[n]["unloaded_p50"] for r in rounds]),
                   "during_p50_s": spread([r[n]["during_p50"] for r in rounds]),
                   "during_over_unloaded": spread([r[n]["during_over_unloaded"] for r in rounds]),
                   "faceswap_steps": spread([r[n]["steps"] for r in rounds])} for n in "AB"}
    result = {"command": "python bench/thread_budget.py " + " ".join(sys.argv[1:]), "cores": cores,
              "rounds_n": a.rounds, "long_seconds": a.long_seconds,
              "arms": summary,
              "during_ratio_A_over_B": spread([r["during_ratio_A_over_B"] for r in rounds]),
              "loadavg_end": os.getloadavg(), "rounds": rounds}
    write_json(a.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

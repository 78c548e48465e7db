"""Soak / load test of the studio as a hosted Space (issue #16): many visitors while one long job runs.

    .venv/bin/python bench/load.py [--visitors 20] [--minutes 1] [--long-seconds 120] [--long-threads N]
                                   [--warmup 60] [--env KEY=VALUE ...] [--out bench/results/load.json]

1. Starts ``python app.py`` (mini) in its own process with a private temp folder (TMPDIR) and a short
   temp age (--temp-max-age, default 20 s; sweep every 5 s) so the sweep shows within a short run.
2. Unloaded: one lone visitor times each short request kind (--baseline times each) and keeps its
   results as the reference: generate (1 face), mix (2 x 2 grid), edit (one step), encode (a face-world
   render, 5 refinement steps: a step limit, not a time budget, so the result is reproducible).
3. Loaded: one visitor starts a faceswap training of --long-seconds (the long job); then --visitors
   visitors connect one by one, each its own gradio_client session, and loop over the four kinds for
   --minutes, all at once (a random
   order per visitor, fixed seed) and check every image against the lone visitor's, pixel for pixel.
   Each visitor also keeps its own face on its shelf (seed 1000 + i) and checks its shelf holds exactly
   that face: shelves are private per session. A sampler records the server's RSS and the temp
   folder's size every 2 s.
4. Prints and writes JSON: requests, errors, wrong results, per-kind p50 / p95 unloaded and loaded and
   their ratio, RSS and temp size at start / end / max, the long job's outcome; and, when the long job
   is a faceswap, the worst one-face /generate while it ran next to the issue's 5 s bound; and the RSS
   trend (``rss_trend``): least-squares slopes in MB/min over the load after --warmup seconds, over the
   whole window and each half (a soak: ``--minutes 5``; flat means both halves near 0).

--env passes settings to the app, e.g. FACEGEN_MEMWATCH=mem.jsonl (facegen/memwatch.py: a line about the
server's memory every FACEGEN_MEMWATCH_EVERY s) or FACEGEN_MALLOC_ARENAS=0 FACEGEN_HEAP_TRIM_EVERY=0 (glibc's
defaults, no heap trim: how RSS grew before). --long-threads sets FACEGEN_LONG_THREADS (default: the app's
own budget, the cores but one); bench/thread_budget.py compares the two budgets A/B interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facegen.hosting import folder_bytes  # noqa: E402
from results_io import write_json  # noqa: E402

KINDS = ["generate", "mix", "edit", "encode"]


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp: Path, env_extra: dict) -> tuple:
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               TMPDIR=str(tmp), **env_extra)
    env.pop("FACEGEN_MODEL", None)
    log = open(tmp.parent / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=str(ROOT), env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(720):
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited: {(tmp.parent / 'app.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit("app.py did not start within 180 s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


class Requests:
    """The four short request kinds: each call returns the image that must match the lone visitor's."""

    def __init__(self, photo: Path):
        self.photo = str(photo)

    def call(self, client, kind: str, seed: int) -> np.ndarray:
        from gradio_client import handle_file
        if kind == "generate":
            gallery, _, _ = client.predict(seeds=str(seed), count=1, psi=0.7, cutoff=0, noise_mode="const",
                                           model="mini", api_name="/generate")
            return pixels(gallery[0]["image"])
        if kind == "mix":
            grid, _, _, _ = client.predict(sources=f"{seed},{seed + 1}", templates=f"{seed + 10},{seed + 11}",
                                           layer_start=5, layer_end=8, psi=0.7, noise_mode="const", model="mini",
                                           api_name="/mix")
            return pixels(grid)
        if kind == "edit":
            _, after, _, _ = client.predict(face=str(seed), psi=0.7, steps='{"yaw": 1.5}', keep_others=False,
                                            layer_start=0, layer_end=7, latent_file=None, directions_file=None,
                                            noise_mode="const", model="mini", api_name="/edit")
            return pixels(after)
        if kind == "encode":
            out = client.predict(photo=handle_file(self.photo), face=1, mode="auto", refine_steps=5,
                                 time_budget=10, model="mini", space="W", api_name="/encode")
            return pixels(out[3])
        raise ValueError(kind)


def pcts(xs) -> dict:
    a = np.asarray(xs, float)
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "max": float(a.max())} if a.size else {"n": 0}


def slope_mb_per_min(points) -> Optional[float]:
    """Least-squares slope of (t s, rss MB) points in MB per minute (None under 3 points)."""
    if len(points) < 3:
        return None
    t, y = np.asarray(points, float).T
    return float(np.polyfit(t / 60.0, y, 1)[0])


def rss_trend(samples, start: float, end: float) -> dict:
    """RSS from `start` (after the warm-up) to `end` (the load's end), in the sampler's seconds: the
    least-squares slope over the whole window and over each half, and the RSS at its ends."""
    pts = [(s["t"], s["rss_mb"]) for s in samples if start <= s["t"] <= end]
    mid = (start + end) / 2
    first, second = [p for p in pts if p[0] < mid], [p for p in pts if p[0] >= mid]
    return {"window_s": [round(start, 1), round(end, 1)], "samples": len(pts),
            "rss_mb_at_window": [pts[0][1], pts[-1][1]] if pts else None,
            "slope_mb_per_min": {"all": slope_mb_per_min(pts), "first_half": slope_mb_per_min(first),
                                 "second_half": slope_mb_per_min(second)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--visitors", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--long-seconds", type=float, default=120.0, help="faceswap training budget (0: no long job)")
    ap.add_argument("--long-threads", type=int, default=0, help="FACEGEN_LONG_THREADS for the app (0: its default)")
    ap.add_argument("--baseline", type=int, default=8, help="unloaded calls per kind")
    ap.add_argument("--temp-max-age", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=60.0, help="s of load before the RSS slopes are fitted")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the app (e.g. FACEGEN_MEMWATCH=/tmp/mem.jsonl); repeatable")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "load.json"))
    a = ap.parse_args()
    from gradio_client import Client
    from facegen.world.render import render_seed

    work = Path(tempfile.mkdtemp(prefix="facegen-load-"))
    tmp = work / "tmp"
    tmp.mkdir()
    photo = work / "face.png"
    Image.fromarray(render_seed(20_000_007, size=128).image).save(photo)
    env = {"FACEGEN_TEMP_MAX_AGE": str(a.temp_max_age), "FACEGEN_TEMP_SWEEP_EVERY": "5"}
    if a.long_threads:
        env["FACEGEN_LONG_THREADS"] = str(a.long_threads)
    env.update(kv.split("=", 1) for kv in a.env)
    t_start = time.monotonic()
    proc, url = launch(tmp, env)
    print(f"app up in {time.monotonic() - t_start:.1f} s at {url} (temp folder {tmp})")
    req = Requests(photo)
    samples, stop_sampling = [], threading.Event()
    t0 = time.monotonic()              # the samples' clock (reset when sampling starts)

    def sampler():
        nonlocal t0
        t0 = time.monotonic()
        while not stop_sampling.is_set():
            samples.append({"t": round(time.monotonic() - t0, 1), "rss_mb": round(rss_mb(proc.pid), 1),
                            "temp_mb": round(folder_bytes(tmp) / 2**20, 2)})
            stop_sampling.wait(2)
    try:
        lone = Client(url, verbose=False)
        seeds = list(range(8))
        reference = {(k, s): req.call(lone, k, s) for k in KINDS for s in seeds}      # warm and reference
        unloaded = {k: [] for k in KINDS}
        for k in KINDS:
            for i in range(a.baseline):
                t = time.monotonic()
                img = req.call(lone, k, seeds[i % len(seeds)])
                unloaded[k].append(time.monotonic() - t)
                assert np.array_equal(img, reference[(k, seeds[i % len(seeds)])]), f"{k} is not reproducible"
        print("unloaded:", {k: round(pcts(v)["p50"], 3) for k, v in unloaded.items()})

        threading.Thread(target=sampler, daemon=True).start()
        visitors, errors = [], []
        for i in range(a.visitors):      # visitors arrive one by one (a Client fetches the app's config and API)
            try:
                visitors.append(Client(url, verbose=False))
            except Exception as e:
                errors.append(f"visitor {i} could not connect: {type(e).__name__}: {e}")
        long_job, long_client = None, Client(url, verbose=False)
        if a.long_seconds > 0:
            long_job = long_client.submit(face="3", psi=0.7, video=None, sample="short-silent", budget=a.long_seconds,
                                          views=50, detector="auto", model="mini", api_name="/faceswap_train")
            for _ in range(600):
                if long_client.predict(api_name="/jobs")["running"]:
                    break
                time.sleep(0.2)
        t_load = time.monotonic()
        load_window = [t_load - t0, None]
        deadline = t_load + a.minutes * 60
        loaded = {k: [] for k in KINDS}
        during_long = []            # (kind, latency) of requests that started and ended while the long job ran
        wrong, shelf_bad, lock = [], [], threading.Lock()

        def visitor(i: int, c):
            rng = random.Random(i)
            try:
                c.predict(faces=str(1000 + i), psi=0.7, model="mini", api_name="/shelf_add")
            except Exception as e:
                with lock:
                    errors.append(f"visitor {i} shelf_add: {e}")
            while time.monotonic() < deadline:
                k, s = rng.choice(KINDS), rng.choice(seeds)
                long_running = long_job is not None and not long_job.done()
                t = time.monotonic()
                try:
                    img = req.call(c, k, s)
                except Exception as e:
                    with lock:
                        errors.append(f"visitor {i} {k} {s}: {type(e).__name__}: {e}")
                    continue
                dt = time.monotonic() - t
                with lock:
                    loaded[k].append(dt)
                    if long_running and not long_job.done():
                        during_long.append((k, dt))
                    if not np.array_equal(img, reference[(k, s)]):
                        wrong.append(f"visitor {i} {k} seed {s}")
            try:
                gallery, status = c.predict(api_name="/shelf_list")
                caps = [g["caption"] for g in gallery]
                if caps != [f"#1 seed {1000 + i}"]:
                    with lock:
                        shelf_bad.append(f"visitor {i}: {caps}")
            except Exception as e:
                with lock:
                    errors.append(f"visitor {i} shelf_list: {e}")

        threads = [threading.Thread(target=visitor, args=(i, c)) for i, c in enumerate(visitors)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        load_s = time.monotonic() - t_load
        load_window[1] = time.monotonic() - t0
        long_out = None
        if long_job is not None:
            try:
                _, status = long_job.result()
                long_out = {"finished": True, "status": status[:200]}
            except Exception as e:
                long_out = {"finished": False, "error": str(e)[:300]}
        time.sleep(a.temp_max_age + 6)  # everything is stale now; the next request sweeps (Gradio's cache too)
        lone.predict(seeds="0", count=1, psi=0.7, cutoff=0, noise_mode="const", model="mini", api_name="/generate")
        time.sleep(2.5)                 # one more sample after the sweep this request triggers
    finally:
        stop_sampling.set()
        time.sleep(0.1)
        proc.terminate()
        proc.wait(timeout=30)

    gen_long = [dt for k, dt in during_long if k == "generate"]
    result = {
        "command": "python bench/load.py " + " ".join(sys.argv[1:]),
        "visitors": a.visitors, "minutes": a.minutes, "load_seconds": round(load_s, 1),
        "long_job": {"kind": "faceswap training", "budget_s": a.long_seconds, **(long_out or {})}
        if a.long_seconds > 0 else None,
        "long_threads": a.long_threads or "app default (cores - 1)", "cores": os.cpu_count(),
        "requests": sum(len(v) for v in loaded.values()), "errors": len(errors), "error_samples": errors[:5],
        "wrong_results": len(wrong), "wrong_samples": wrong[:5], "shelves_not_private": shelf_bad[:5],
        "latency_s": {k: {"unloaded": pcts(unloaded[k]), "loaded": pcts(loaded[k]),
                          "p95_ratio": (pcts(loaded[k])["p95"] / pcts(unloaded[k])["p95"]) if loaded[k] else None}
                      for k in KINDS},
        "generate_1_face_during_long_job": {**pcts(gen_long), "bound_s": 5.0},
        "rss_mb": {"start": samples[0]["rss_mb"], "end": samples[-1]["rss_mb"],
                   "max": max(s["rss_mb"] for s in samples)},
        "temp_mb": {"start": samples[0]["temp_mb"], "end": samples[-1]["temp_mb"],
                    "max": max(s["temp_mb"] for s in samples), "max_age_s": a.temp_max_age},
        "rss_trend": rss_trend(samples, load_window[0] + a.warmup, load_window[1]),
        "samples": samples,
    }
    write_json(a.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    return 0 if not errors and not wrong and not shelf_bad else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the studio app: cold start and /generate latency, against a direct facegen baseline.

    .venv/bin/python bench/app.py [--requests 30] [--faces 4]

* cold start: `python app.py` process start -> first /generate image received via gradio_client;
  baseline: a fresh `python -c` that imports facegen, loads the model and generates the same faces.
* latency: p50/p95 of /generate with --faces faces (different seeds each call) through the
  running server, with gradio_client fetching the result files (4 PNGs + 4 latents) as it does by
  default, and without (download_files=False: server, queue and SSE only); baseline: facegen.features.generate.generate_seeds in this process (no server).
Ratios (app / baseline) are printed so runs on different machines compare. Goals on CPU with
mini: cold start <= 10 s, p50 <= 0.5 s. Uses FACEGEN_MODEL if set, else mini (or, before mini
exists, a random generator of the same shape).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_model() -> tuple:
    if os.environ.get("FACEGEN_MODEL"):
        return os.environ["FACEGEN_MODEL"], "FACEGEN_MODEL"
    if (ROOT / "assets" / "mini" / "config.json").exists():
        return "mini", "embedded mini"
    import torch
    from facegen.engine.networks import Generator
    torch.manual_seed(0)
    G = Generator(z_dim=128, c_dim=0, w_dim=128, img_resolution=64, mapping_kwargs=dict(num_layers=4),
                  synthesis_kwargs=dict(channel_base=1024, channel_max=128))
    folder = Path(tempfile.mkdtemp(prefix="facegen-bench-")) / "random64"
    G.save_pretrained(folder)
    return str(folder), "random stand-in (mini not built yet)"


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--faces", type=int, default=4)
    args = ap.parse_args()
    model, why = pick_model()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    if model != "mini":
        env["FACEGEN_MODEL"] = model
    n = args.faces
    seeds = f"0-{n - 1}"

    # Baseline cold: fresh interpreter -> facegen -> first images.
    code = ("import time,facegen;from facegen.features.generate import generate_seeds;"
            f"G=facegen.load_generator({model!r});generate_seeds(G,{seeds!r},psi=0.7)")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
    base_cold = time.perf_counter() - t0

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gradio"], check=True, env=env, cwd=ROOT)
    import_gradio = time.perf_counter() - t0

    # App cold: python app.py -> first image through the API.
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env={**env, "GRADIO_SERVER_PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from gradio_client import Client
        url = f"http://127.0.0.1:{port}/"
        client = None
        while client is None:
            if proc.poll() is not None:
                raise SystemExit(f"app.py exited with {proc.returncode}")
            try:
                client = Client(url, verbose=False)
            except Exception:
                time.sleep(0.1)
        kw = dict(count=n, psi=0.7, cutoff=0, noise_mode="const", model=model, api_name="/generate")
        first = client.predict(seeds=seeds, **kw)
        app_cold = time.perf_counter() - t0
        assert len(first[0]) == n

        # Warm latency through the server.
        lat = []
        for i in range(args.requests):
            t = time.perf_counter()
            client.predict(seeds=f"{(i + 1) * n}-{(i + 2) * n - 1}", **kw)
            lat.append(time.perf_counter() - t)
        # The same without fetching the result files (server + queue + SSE only).
        bare = Client(url, verbose=False, download_files=False)
        lat_bare = []
        for i in range(args.requests):
            t = time.perf_counter()
            bare.predict(seeds=f"{(i + 1) * n}-{(i + 2) * n - 1}", **kw)
            lat_bare.append(time.perf_counter() - t)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    # Baseline warm: the same work in-process, no server.
    import facegen
    from facegen.features.generate import generate_seeds
    G = facegen.load_generator(model)
    from facegen.studio import cpu_threads   # the app's thread policy, so both sides do the same work
    cpu_threads(G)
    generate_seeds(G, seeds, psi=0.7)
    direct = []
    for i in range(args.requests):
        t = time.perf_counter()
        generate_seeds(G, f"{(i + 1) * n}-{(i + 2) * n - 1}", psi=0.7)
        direct.append(time.perf_counter() - t)

    res = {
        "model": model, "model_kind": why, "faces": n, "requests": args.requests, "cpus": os.cpu_count(),
        "cold_start_s": round(app_cold, 2), "baseline_cold_s": round(base_cold, 2),
        "cold_ratio": round(app_cold / base_cold, 2), "import_gradio_s": round(import_gradio, 2),
        "generate_p50_s": round(pct(lat, 50), 3), "generate_p95_s": round(pct(lat, 95), 3),
        "direct_p50_s": round(pct(direct, 50), 3), "direct_p95_s": round(pct(direct, 95), 3),
        "p50_ratio": round(pct(lat, 50) / pct(direct, 50), 2),
        "no_download_p50_s": round(pct(lat_bare, 50), 3), "no_download_p95_s": round(pct(lat_bare, 95), 3),
        "p50_overhead_s": round(pct(lat, 50) - pct(direct, 50), 3),
        "goals": {"cold_start_le_10s": app_cold <= 10, "p50_le_0.5s": pct(lat, 50) <= 0.5},
    }
    print(f"cold start      {res['cold_start_s']:.2f} s  (baseline {res['baseline_cold_s']:.2f} s, "
          f"ratio {res['cold_ratio']:.2f}; `import gradio` alone {res['import_gradio_s']:.2f} s; goal <= 10 s)")
    print(f"/generate x{n}    p50 {res['generate_p50_s']:.3f} s  p95 {res['generate_p95_s']:.3f} s  "
          f"(direct p50 {res['direct_p50_s']:.3f} s, ratio {res['p50_ratio']:.2f}, "
          f"server overhead {res['p50_overhead_s'] * 1000:.0f} ms; goal p50 <= 0.5 s)")
    print(f"  without downloading result files: p50 {res['no_download_p50_s']:.3f} s  "
          f"p95 {res['no_download_p95_s']:.3f} s")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

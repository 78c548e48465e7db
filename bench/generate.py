"""Generation speed and memory: facegen's path vs the plain fused fp32 formulation.

A 256 px generator at official config-f width (z = w = 512, 8 mapping layers,
channel_base 32768, channel_max 512; random weights). Both paths run in this same
process on the same latents:

* baseline: the plain fused formulation (per-sample weights, one grouped conv per layer,
  as the reference code runs inference), fp32;
* facegen: the defaults -- the engine picks the faster arrangement for the device and batch (on
  CPU: one sample at a time, shared-weight convs with activation scaling and a fused epilogue).

Prints images/s, peak memory (RSS growth measured in a fresh subprocess per path) and the
ratio, and checks the two outputs agree to <= 1e-4.

    python bench/generate.py [--batch 8] [--iters 3] [--res 256]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from facegen.engine.networks import Generator  # noqa: E402

# synthesis kwargs of each path: the baseline is the reference arrangement (whole batch, fused).
PATHS = {"baseline-fused-fp32": dict(fused_modconv=True, micro_batch=0), "facegen-auto": dict()}


def build(res: int) -> Generator:
    torch.manual_seed(0)
    return Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res,
                     synthesis_kwargs=dict(channel_base=32768, channel_max=512)).eval().requires_grad_(False)


def run_path(path: str, res: int, batch: int, iters: int) -> dict:
    G = build(res)
    kw = PATHS[path]
    ws = G.mapping(torch.randn(batch, 512, generator=torch.Generator().manual_seed(1)), None, truncation_psi=0.7)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.inference_mode():
        img = G.synthesis(ws, noise_mode="const", **kw)  # warm-up
        for _ in range(iters):
            t = time.perf_counter()
            img = G.synthesis(ws, noise_mode="const", **kw)
            times.append(time.perf_counter() - t)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Best of `iters`: the least disturbed run on a shared machine.
    return {"path": path, "images_per_s": batch / min(times), "peak_mem_mb": (rss1 - rss0) / 1024,
            "img": img}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:  # measure one path in a clean process (for peak memory)
        r = run_path(a.child, a.res, a.batch[0], a.iters)
        torch.save(r.pop("img"), f"/tmp/facegen_bench_{a.child}.pt")
        print(json.dumps(r))
        return
    print(f"generator: {a.res}px, config-f width, best of {a.iters} timed runs, {torch.get_num_threads()} threads, cpu")
    worst = 0.0
    for batch in a.batch:
        results = {}
        for path in PATHS:
            out = subprocess.run([sys.executable, __file__, "--child", path, "--res", str(a.res), "--batch",
                                  str(batch), "--iters", str(a.iters)], capture_output=True, text=True, check=True)
            results[path] = json.loads(out.stdout.strip().splitlines()[-1])
        base, ours = results["baseline-fused-fp32"], results["facegen-auto"]
        diff = (torch.load("/tmp/facegen_bench_baseline-fused-fp32.pt")
                - torch.load("/tmp/facegen_bench_facegen-auto.pt")).abs().max().item()
        worst = max(worst, diff)
        print(f"batch {batch}:")
        for r in results.values():
            print(f"  {r['path']:<22} {r['images_per_s']:7.2f} images/s   peak +{r['peak_mem_mb']:7.1f} MB")
        print(f"  speed ratio facegen / baseline: {ours['images_per_s'] / base['images_per_s']:.2f}x (goal >= 2x); "
              f"memory ratio {ours['peak_mem_mb'] / max(base['peak_mem_mb'], 1e-9):.2f}x; max abs diff {diff:.2e}")
    assert worst <= 1e-4, worst


if __name__ == "__main__":
    main()

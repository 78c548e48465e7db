"""Generation speed: facegen's path vs the plain fused formulation, and vs NVIDIA's own code.

A 256 px generator at official config-f width (z = w = 512, 8 mapping layers,
channel_base 32768, channel_max 512; random weights: ``KWARGS``).

Default mode -- both paths run in this same process on the same latents:

* baseline: the fused formulation over the whole batch (per-sample weights, one grouped conv
  per layer, as the reference code runs inference; facegen's own code for it), fp32 -- at
  batch 1 this is the path facegen picks, so the ratio is 1 up to noise;
* facegen: the defaults -- the engine picks the arrangement for the device and batch (on
  CPU: one sample at a time, each a plain conv per layer with the modulation folded into
  its weight and an in-place epilogue).

Prints images/s, peak memory (RSS growth measured in a fresh subprocess per path) and the
ratio, and checks the two outputs agree to <= 1e-4.

    python bench/generate.py [--batch 8] [--iters 3] [--res 256]

Reference mode (``--reference DIR``): NVIDIA's official StyleGAN2-ADA PyTorch code, checked out
in DIR (never vendored: ``git clone https://github.com/NVlabs/stylegan2-ada-pytorch DIR``), builds
its own Generator with the same kwargs and loads facegen's state dict (same parameter names).
On CPU its custom ops fall back to their ``_ref`` implementations (their CUDA plugins are only
built for CUDA tensors; the bench checks that neither plugin was initialised). Both generators
synthesise the same w (noise_mode const) at batch 1 and 8, with one thread and with all threads;
runs are interleaved (order alternating each round) after one warm-up each, and the medians of
wall-clock and process CPU time are compared. Prints the speed ratio (reference time / facegen
time; > 1 = facegen faster) and the max abs difference of the images (must be <= 1e-4).

    python bench/generate.py --reference /tmp/ref-ada --json bench/results/generate-vs-reference.json
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from facegen.engine.networks import Generator  # noqa: E402
from results_io import write_json  # noqa: E402

# synthesis kwargs of each path: the baseline is the reference arrangement (whole batch, fused).
PATHS = {"baseline-fused-fp32": dict(fused_modconv=True, micro_batch=0), "facegen-auto": dict()}


def kwargs_for(res: int) -> dict:
    """Generator kwargs shared by facegen and the reference code: config-f width at `res` px."""
    return dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                mapping_kwargs=dict(num_layers=8), synthesis_kwargs=dict(channel_base=32768, channel_max=512))


def build(res: int) -> Generator:
    torch.manual_seed(0)
    return Generator(**kwargs_for(res)).eval().requires_grad_(False)


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


# ---------------------------------------------------------------------------
# Reference mode: NVIDIA's StyleGAN2-ADA code in a folder you name
# ---------------------------------------------------------------------------

def load_reference(folder: str):
    """Import ``training.networks`` (and its op modules) from the official code checked out in `folder`."""
    root = Path(folder).resolve()
    if not (root / "training" / "networks.py").is_file() or not (root / "torch_utils" / "ops").is_dir():
        sys.exit(f"--reference {folder}: no StyleGAN2-ADA PyTorch code there (expected training/networks.py and "
                 f"torch_utils/ops/); clone https://github.com/NVlabs/stylegan2-ada-pytorch into it")
    sys.path.insert(0, str(root))
    import training.networks as ref_networks
    from torch_utils.ops import bias_act, upfirdn2d
    if Path(ref_networks.__file__).resolve().parent != root / "training":
        sys.exit(f"--reference {folder}: 'training' was imported from {ref_networks.__file__}, not from {root}")
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return ref_networks, (bias_act, upfirdn2d), commit.stdout.strip() or None


def time_interleaved(fns: dict, runs: int) -> dict:
    """One warm-up call each, then `runs` rounds calling every function once per round, the order
    reversed every other round (drift on a shared machine hits both alike). Returns per name the
    lists of wall-clock and process CPU seconds."""
    out = {k: {"wall": [], "cpu": []} for k in fns}
    names = list(fns)
    for f in fns.values():
        f()
    for r in range(runs):
        for k in (names if r % 2 == 0 else names[::-1]):
            w0, c0 = time.perf_counter(), time.process_time()
            fns[k]()
            out[k]["cpu"].append(time.process_time() - c0)
            out[k]["wall"].append(time.perf_counter() - w0)
    return out


def compare_with_reference(folder: str, res: int, batches, iters: int, json_path: str = None):
    ref_networks, ops, commit = load_reference(folder)
    kw = kwargs_for(res)
    G = build(res)
    R = ref_networks.Generator(**kw).eval().requires_grad_(False)
    R.load_state_dict(G.state_dict(), strict=True)       # same parameter names, key for key
    all_threads = torch.get_num_threads()
    print(f"reference: {Path(folder).resolve()} (commit {commit}); kwargs {json.dumps(kw)}")
    print(f"synthesis, noise_mode const, psi 0.7, interleaved runs, medians; cpu, all threads = {all_threads}")
    rows, worst = [], 0.0
    for threads in sorted({1, all_threads}):
        torch.set_num_threads(threads)
        for batch in batches:
            runs = iters if batch == 1 else max(3, iters // 2)
            z = torch.randn(batch, 512, generator=torch.Generator().manual_seed(batch))
            load_before = os.getloadavg()[0]
            with torch.inference_mode():
                ws = G.mapping(z, None, truncation_psi=0.7)
                fns = {"facegen": lambda: G.synthesis(ws, noise_mode="const"),
                       "reference": lambda: R.synthesis(ws, noise_mode="const")}
                diff = (fns["facegen"]() - fns["reference"]()).abs().max().item()
                t = time_interleaved(fns, runs)
            med = {k: {m: statistics.median(v[m]) for m in ("wall", "cpu")} for k, v in t.items()}
            row = dict(threads=threads, batch=batch, runs=runs, max_abs_diff=diff,
                       facegen_wall_s=med["facegen"]["wall"], reference_wall_s=med["reference"]["wall"],
                       facegen_cpu_s=med["facegen"]["cpu"], reference_cpu_s=med["reference"]["cpu"],
                       speed_ratio_wall=med["reference"]["wall"] / med["facegen"]["wall"],
                       speed_ratio_cpu=med["reference"]["cpu"] / med["facegen"]["cpu"],
                       walls={k: v["wall"] for k, v in t.items()},
                       loadavg_1min=[load_before, os.getloadavg()[0]])   # other processes on the machine
            rows.append(row)
            worst = max(worst, diff)
            print(f"threads {threads} batch {batch}: facegen {row['facegen_wall_s']:.3f} s, reference "
                  f"{row['reference_wall_s']:.3f} s (wall, median of {runs}) -> speed ratio reference/facegen "
                  f"{row['speed_ratio_wall']:.2f}x wall, {row['speed_ratio_cpu']:.2f}x cpu time; max abs diff {diff:.1e}",
                  flush=True)
    plugins = {m.__name__.rsplit(".", 1)[-1]: bool(m._inited) for m in ops}
    print(f"reference custom ops initialised (CUDA plugin build attempted): {plugins} -- False = their _ref path ran")
    b1 = [r for r in rows if r["batch"] == 1]
    print("batch-1 speed ratio (reference / facegen, wall; goal >= 1.0): "
          + ", ".join(f"{r['threads']} thread(s) {r['speed_ratio_wall']:.2f}x" for r in b1))
    if json_path:
        doc = dict(command="python " + " ".join([os.path.relpath(__file__, Path.cwd())] + sys.argv[1:]),
                   reference=dict(repo="NVlabs/stylegan2-ada-pytorch", commit=commit, custom_ops_initialised=plugins),
                   kwargs=kw, noise_mode="const", truncation_psi=0.7, torch=torch.__version__,
                   cpu_count=os.cpu_count(), all_threads=all_threads,
                   speed_ratio="reference time / facegen time (> 1: facegen faster)", results=rows)
        write_json(json_path, doc)
    assert not any(plugins.values()), "the reference code initialised a CUDA plugin on a CPU run"
    assert worst <= 1e-4, f"facegen and the reference disagree: max abs diff {worst}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--child", default=None)
    ap.add_argument("--reference", metavar="DIR", default=None,
                    help="compare with NVIDIA's StyleGAN2-ADA PyTorch code checked out in DIR (batch 1 and 8)")
    ap.add_argument("--json", default=None, help="with --reference: write the results here")
    a = ap.parse_args()
    if a.reference:
        batches = a.batch if "--batch" in sys.argv else [1, 8]
        iters = a.iters if "--iters" in sys.argv else 7
        return compare_with_reference(a.reference, a.res, batches, iters, a.json)
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

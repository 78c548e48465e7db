"""Branch a training run on a lent GPU for a few minutes: several arms side by side, packed to bring home.

A lent GPU machine (one H200, 16 cores) is held for minutes, not hours, and sends back at most 8 files of
16 MiB. This script spends such a lease on one question: which continuation of a resume point
(``assets/mini-v2-run``) goes furthest in the same wall time. It

1. renders the world data set once on every core (the same images ``--data world:N`` renders serially, in
   the same order; :func:`facegen.world.train_data.load_dataset` finds them in each arm's cache);
2. starts one ``python -m facegen train --device cuda --resume-from RESUME`` per arm at once, with the
   resume point's own recipe (:func:`recipe_options`, read from its config) followed by the arm's options (small
   networks leave the GPU mostly idle, so arms run side by side at nearly full speed), each stopped by
   ``--minutes`` after the same wall time;
3. keeps the G_ema of every checkpoint an arm writes (a training snapshot: step, images, config; float16
   to fit) for the judge's FD trajectory at home (``bench/fd_trajectory.py``);
4. packs per arm one tar under ``--pack``: the final compact resume file (G, G_ema, D, levers; no Adam),
   the snapshots, ``log.jsonl`` and the last sample grid.

    python bench/gpu_branch.py --resume assets/mini-v2-run --data world:96000 --budget-s 540 \\
        --arm b16="--batch 16" --arm b32="--batch 32" --pack $OUT

Unpack at home with ``python bench/gpu_branch.py --unpack ARM.tar --into runs/gpu`` (and the same for
``more-snapshots.tar``, the snapshots the arms' tars had no room for): it writes ``runs/gpu/ARM/ckpt-<step>.pt``
per snapshot (G_ema in float32 again), which fd_trajectory and branch_compare read.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PACK_LIMIT = 16 * 2 ** 20                # one file the lease sends back
#: Fields of the resume point's training config the branch sets itself (everything else is its recipe).
RUN_CONTROL = ("outdir", "data", "kimg", "minutes", "snapshot_steps", "log_steps", "device")


def recipe_options(cfg: dict) -> str:
    """The resume point's recipe as ``python -m facegen train`` options: every TrainConfig field its config
    sets away from the default, except :data:`RUN_CONTROL`. An arm's own options come after these and win
    (argparse keeps the last), so an arm names only what it changes -- a lever the resume point trained with
    stays on unless an arm turns it off."""
    from dataclasses import fields
    from facegen.world.train_config import TrainConfig
    out = []
    for f in fields(TrainConfig):
        if f.name in RUN_CONTROL or f.name not in cfg or cfg[f.name] == f.default:
            continue
        out.append(f"--{f.name.replace('_', '-')} {shlex.quote(str(cfg[f.name]))}")
    return " ".join(out)


def prerender(n: int, size: int, path: Path, workers: int) -> float:
    """World seeds 0..n-1 at ``size`` px into ``path`` (load_dataset's cache file) on ``workers`` processes
    -> seconds."""
    from facegen.world.train_data import load_dataset
    t0 = time.time()
    load_dataset(f"world:{n}", size, cache_dir=path.parent, workers=workers)
    return time.time() - t0


def snapshot(ckpt: Path) -> dict:
    """A checkpoint's G_ema (float16) and what fd_trajectory's loader reads beside it."""
    st = torch.load(ckpt, map_location="cpu", weights_only=True)
    return {"G_ema": {k: v.half() if v.is_floating_point() else v for k, v in st["G_ema"].items()},
            "cfg": st["cfg"], "step": st["step"], "images_seen": st["images_seen"], "elapsed": st["elapsed"]}


def spread(steps: list, k: int) -> list:
    """At most k of the sorted steps, evenly spaced, the last one always among them."""
    steps = sorted(steps)
    if k <= 0:
        return []
    if len(steps) <= k:
        return steps
    idx = np.linspace(len(steps) - 1, 0, k).round().astype(int)
    return sorted({steps[i] for i in idx})


def _blob(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _write_tar(path: Path, files: list, blobs: dict) -> Path:
    with tarfile.open(path, "w") as tar:
        for f in files:
            if f.exists():
                tar.add(f, arcname=f.name)
        for name, blob in sorted(blobs.items()):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def pack(arm: str, outdir: Path, snaps: dict, dest: Path) -> tuple[Path, list]:
    """One tar per arm under the lease's file limit: resume file, log, grid, and evenly spaced snapshots as
    many as fit -> (tar, the steps left out)."""
    from facegen.world.resume import export_resume
    folder = outdir / "resume"
    export_resume(outdir / "checkpoint.pt", folder, with_optimizer=False)
    files = [folder / "resume.safetensors", folder / "resume.json", outdir / "log.jsonl",
             outdir / "samples" / "final.png"]
    room = PACK_LIMIT - sum(f.stat().st_size for f in files if f.exists()) - 64 * 1024
    one = len(_blob(snaps[max(snaps)])) + 1024
    chosen = spread(list(snaps), room // one)
    blobs = {f"{arm}-snap-{s:07d}.pt": _blob(snaps[s]) for s in chosen}
    return _write_tar(dest / f"{arm}.tar", files, blobs), sorted(set(snaps) - set(chosen))


def pack_rest(rest: dict, dest: Path) -> Path:
    """Snapshots the arms' tars left out, evenly spaced per arm, into one more tar (same limit)."""
    sizes = {arm: len(_blob(snaps[max(snaps)])) + 1024 for arm, snaps in rest.items() if snaps}
    k = int(PACK_LIMIT - 64 * 1024) // max(sizes.values()) // max(1, len(sizes)) if sizes else 0
    blobs = {f"{arm}-snap-{s:07d}.pt": _blob(snaps[s]) for arm, snaps in rest.items() if snaps
             for s in spread(list(snaps), k)}
    return _write_tar(dest / "more-snapshots.tar", [], blobs)


def unpack(tar_path: Path, into: Path) -> list:
    """A tar -> ``into/<arm>/``: the arm's resume files, log, grid, and ckpt-<step>.pt (float32 G_ema)."""
    into.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(tar_path) as tar:
        for m in tar.getmembers():
            data = tar.extractfile(m).read()
            if "-snap-" in m.name:
                st = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
                st["G_ema"] = {k: v.float() if v.is_floating_point() else v for k, v in st["G_ema"].items()}
                arm = m.name.split("-snap-")[0]
                (into / arm).mkdir(exist_ok=True)
                out = into / arm / f"ckpt-{st['step']}.pt"
                torch.save(st, out)
            else:
                out = into / tar_path.stem / Path(m.name).name
                out.parent.mkdir(exist_ok=True)
                out.write_bytes(data)
            written.append(out)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resume", default="assets/mini-v2-run")
    ap.add_argument("--data", default="world:96000")
    ap.add_argument("--arm", action="append", default=[], metavar='NAME="OPTIONS"',
                    help="train options of one arm, after the resume point's recipe (recipe_options): only what changes")
    ap.add_argument("--budget-s", type=float, default=540, help="wall seconds for everything, packing included")
    ap.add_argument("--pack-s", type=float, default=60, help="seconds kept back for the final save and packing")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workdir", default="runs/gpu")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--snapshot-steps", type=int, default=1000)
    ap.add_argument("--pack", default=None, help="folder for the arms' tars")
    ap.add_argument("--unpack", default=None, metavar="TAR")
    ap.add_argument("--into", default=None)
    args = ap.parse_args(argv)
    if args.unpack:
        for p in unpack(Path(args.unpack), Path(args.into or args.workdir)):
            print(p)
        return 0

    t0 = time.time()
    from facegen.world.resume import read_resume
    point = read_resume(args.resume)                        # a resume folder or file, or a checkpoint.pt
    elapsed, recipe = point["elapsed"], recipe_options(point["cfg"])
    print(f"recipe of the resume point: {recipe}", flush=True)
    work = Path(args.workdir)
    n, size = int(args.data.split(":", 1)[1]), int(point["cfg"].get("resolution", 64))
    shared = work / "data" / f"world_{n}_{size}.npy"       # load_dataset's cache name
    if not shared.exists():
        print(f"rendered {n} world images in {prerender(n, size, shared, args.workers):.0f} s "
              f"on {args.workers} processes", flush=True)
    arms = dict(a.split("=", 1) for a in args.arm) or {"base": ""}
    train_s = args.budget_s - args.pack_s - (time.time() - t0)
    minutes = elapsed / 60 + train_s / 60            # --minutes counts the run's whole time
    procs = {}
    for name, extra in arms.items():
        out = work / name
        (out / "data").mkdir(parents=True, exist_ok=True)
        link = out / "data" / shared.name
        if not link.exists():
            link.symlink_to(shared.resolve())
        cmd = (f"{sys.executable} -m facegen train --outdir {out} --data {args.data} {recipe} "
               f"--device {args.device} --threads 2 --kimg 100000 --minutes {minutes:.2f} "
               f"--snapshot-steps {args.snapshot_steps} --log-steps 100 --resume-from {args.resume} {extra}")
        print(f"[{name}] {cmd}", flush=True)
        procs[name] = subprocess.Popen(shlex.split(cmd), stdout=open(out / "train.out", "w"),
                                       stderr=subprocess.STDOUT, cwd=ROOT)
    snaps = {name: {} for name in arms}
    seen = {name: 0.0 for name in arms}
    while any(p.poll() is None for p in procs.values()):
        time.sleep(5)
        for name in arms:
            ck = work / name / "checkpoint.pt"
            if ck.exists() and ck.stat().st_mtime != seen[name]:
                seen[name] = ck.stat().st_mtime
                try:
                    s = snapshot(ck)
                except Exception as e:  # a checkpoint replaced while read: the next one comes
                    print(f"[{name}] snapshot skipped: {e}", flush=True)
                    continue
                snaps[name][s["step"]] = s
                print(f"[{name}] step {s['step']} kimg {s['images_seen'] / 1000:.0f} "
                      f"at {time.time() - t0:.0f} s", flush=True)
    dest = Path(args.pack) if args.pack else work
    dest.mkdir(parents=True, exist_ok=True)
    status, rest = 0, {}
    for name, p in procs.items():
        tail = (work / name / "train.out").read_text().splitlines()[-3:]
        print(f"[{name}] exit {p.returncode}: " + " | ".join(tail), flush=True)
        if p.returncode != 0 or not (work / name / "checkpoint.pt").exists():
            status = 1
            continue
        last = snapshot(work / name / "checkpoint.pt")
        snaps[name][last["step"]] = last
        tar, left = pack(name, work / name, snaps[name], dest)
        rest[name] = {s: snaps[name][s] for s in left}
        print(f"[{name}] packed {tar} ({tar.stat().st_size / 2 ** 20:.1f} MiB) at {time.time() - t0:.0f} s",
              flush=True)
    if any(rest.values()):
        tar = pack_rest(rest, dest)
        print(f"packed {tar} ({tar.stat().st_size / 2 ** 20:.1f} MiB) at {time.time() - t0:.0f} s", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""StyleGAN2 training: the loop that made the embedded ``mini`` generator.

Method (StyleGAN2, Karras et al. 2020, with the StyleGAN2-ADA defaults scaled down):

* **Networks**: the engine's :class:`~facegen.engine.networks.Generator` and the residual
  :class:`~facegen.engine.networks.Discriminator` (minibatch std).
* **Loss**: non-saturating logistic. G minimises softplus(-D(G(z))); D minimises
  softplus(D(G(z))) + softplus(-D(x)).
* **Regularisation**: lazy R1 on reals every ``r1_interval`` D steps,
  (gamma / 2) * ||grad_x D(x)||^2 * interval; optimiser hyper-parameters corrected for the
  lazy schedule (lr * c, beta ** c with c = interval / (interval + 1)).
* **Style mixing** with probability 0.9: a random crossover layer switches to a second z.
* **EMA generator** with a half-life of ``ema_kimg`` thousand images (ramped up early on).
* **Data**: rendered from the face world (pre-rendered in memory, cached as .npy) or read from
  an image folder (so the same command fine-tunes on real faces on a GPU machine); random
  horizontal flips.
* **Checkpoints** hold G, D, G_ema, both optimisers, the step and every RNG state: a resumed
  run continues bit for bit. ``log.jsonl`` has losses and speed; ``samples/`` has grids.
* **Several sessions / processes**: compact resume files to carry a run to another machine, and a
  start / resume event in ``log.jsonl`` per invocation (:mod:`facegen.world.resume`); under ``torchrun``
  the global batch is split over the processes with one process's draws (:mod:`facegen.world.distributed`).

CLI::

    python -m facegen train --outdir runs/mini --data world:24000 --resolution 64 \\
        --minutes 90 --export assets/mini
    torchrun --standalone --nproc_per_node 2 -m facegen train --outdir runs/X --batch 16 --threads 1 ...
    python -m facegen train --export-resume runs/X/checkpoint.pt --export assets/X-resume [--with-optimizer]
    python -m facegen train --outdir runs/X --resume-from assets/X-resume ...
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from facegen.world.train_config import TrainConfig, build_levers, build_networks, build_q_head
from facegen.world.train_data import load_dataset, to_tensor, world_class_labels
from facegen.world.train_export import DISCRIMINATOR_NAME, export_checkpoint, export_discriminator, init_from_folder
from facegen.world.trainer import Trainer

__all__ = [
    "train", "sample_grid", "cli_main",
    # re-exported from the modules this one was split into (their names stay importable from here)
    "TrainConfig", "build_networks", "build_q_head", "build_levers", "load_dataset", "to_tensor",
    "world_class_labels", "DISCRIMINATOR_NAME", "init_from_folder", "export_discriminator", "export_checkpoint",
    "Trainer",
]

# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------

@torch.no_grad()
def sample_grid(G, path: Path, n: int = 32, seed: int = 0, psi: float = 0.7):
    from PIL import Image
    from facegen.engine.synthesis import synthesize
    from facegen.engine.latents import seeds_to_ws
    from facegen.world.render import make_grid
    ws = seeds_to_ws(G, list(range(seed, seed + n)), psi=psi) if G.c_dim == 0 else None
    if ws is None:
        return
    Image.fromarray(make_grid(synthesize(G, ws), cols=8)).save(path)


def train(cfg: TrainConfig, resume: bool = True, export: Optional[str] = None, log=print,
          command: Optional[str] = None, resume_from: Optional[str] = None) -> Trainer:
    from facegen.world import distributed, resume as resuming
    dp = distributed.DataParallel.from_env(cfg.device)     # torchrun with several processes, else None
    main = dp is None or dp.rank == 0                       # only the main process writes
    log = log if main else (lambda s: None)
    out = Path(cfg.outdir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with distributed.main_first(dp):
        images = load_dataset(cfg.data, cfg.resolution, cache_dir=out / "data")
    log(f"data: {len(images)} images at {cfg.resolution}px ({time.time() - t0:.0f}s)")
    labels = None
    if cfg.c_dim > 0:
        if not (cfg.classes and cfg.data.startswith("world:")):
            raise ValueError("a conditional run (c_dim > 0) needs --classes and --data world:N (labels from the world)")
        labels = world_class_labels(cfg.classes, len(images))
        if labels.shape[1] != cfg.c_dim:
            raise ValueError(f"--c-dim {cfg.c_dim} but --classes names {labels.shape[1]} classes")
        log(f"class code: {cfg.classes} (rates {np.round(labels.mean(0), 3).tolist()})")
    trainer = Trainer(cfg, images, labels)
    ckpt = out / "checkpoint.pt"
    source = ckpt if resume and ckpt.exists() else resume_from     # the run's own checkpoint wins
    optimizer_restored = resuming.load_resume(trainer, source) if source else None
    if source:
        log(f"resumed at step {trainer.step} ({trainer.images_seen / 1000:.1f} kimg) from {source}")
    if dp is not None:
        dp.attach(trainer)
    if main:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    nparams = sum(p.numel() for p in trainer.G.parameters())
    log(f"G {nparams / 1e6:.2f}M params, D {sum(p.numel() for p in trainer.D.parameters()) / 1e6:.2f}M params")
    start_elapsed, t_start = trainer.elapsed, time.time()
    window = []
    window_stats = {}  # every stat of the window: lazy ones (R1, path length, levers) are logged as window means
    last = {}
    with open(out / "log.jsonl" if main else os.devnull, "a") as logf:
        logf.write(json.dumps(resuming.run_event(trainer, command, dp.world if dp else 1, source,
                                                 optimizer_restored)) + "\n")     # start / resume: the history
        while trainer.images_seen < cfg.kimg * 1000:
            if cfg.minutes and distributed.any_process(dp, trainer.elapsed >= cfg.minutes * 60):
                break
            ts = time.time()
            stats = distributed.after_step(dp, trainer, trainer.train_step())
            window.append(time.time() - ts)
            for k, v in stats.items():
                window_stats.setdefault(k, []).append(v)
            trainer.elapsed = start_elapsed + (time.time() - t_start)
            if not all(math.isfinite(v) for v in stats.values()):
                raise FloatingPointError(f"non-finite loss at step {trainer.step}: {stats}")
            if trainer.step % cfg.log_steps == 0:
                rec = last = {"step": trainer.step, "kimg": trainer.images_seen / 1000, "elapsed_s": round(trainer.elapsed, 1),
                       "s_per_step": round(float(np.mean(window)), 3), **{k: round(v, 4) for k, v in stats.items()},
                       **{k: round(float(np.mean(v)), 4) for k, v in window_stats.items() if k not in stats}}
                window, window_stats = [], {}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                log(json.dumps(rec))
            if main and trainer.step % cfg.snapshot_steps == 0:
                trainer.save_checkpoint(ckpt)
                sample_grid(trainer.G_ema, out / "samples" / f"step{trainer.step:07d}.png")
        if dp is not None:   # every process must still hold rank 0's weights
            logf.write(json.dumps({"event": "data_parallel", "step": trainer.step, "world_size": dp.world,
                                   "max_divergence": dp.max_divergence(trainer)}) + "\n")
            dp.close()
    if not main:
        return trainer
    trainer.save_checkpoint(ckpt)
    sample_grid(trainer.G_ema, out / "samples" / "final.png")
    if export:
        G = copy.deepcopy(trainer.G_ema).eval()
        G.meta = {"name": Path(export).name, "trained_kimg": round(trainer.images_seen / 1000, 1),
                  "train_minutes": round(trainer.elapsed / 60, 1), "data": cfg.data,
                  **({"classes": cfg.classes.split(",")} if cfg.c_dim > 0 else {})}
        G.save_pretrained(export)
        metrics = {"command": command, "config": asdict(cfg), "fingerprint": G.fingerprint,
                   "steps": trainer.step, "kimg": round(trainer.images_seen / 1000, 2),
                   "wall_minutes": round(trainer.elapsed / 60, 1),
                   "params_G": sum(p.numel() for p in G.parameters()),
                   "params_D": sum(p.numel() for p in trainer.D.parameters()),
                   "weights_mb": round((Path(export) / "model.safetensors").stat().st_size / 2 ** 20, 2),
                   "last_log": last, "history": resuming.history(out / "log.jsonl"),
                   "torch": torch.__version__, "threads": torch.get_num_threads()}
        mpath = Path(export) / "metrics.json"
        old = json.loads(mpath.read_text()) if mpath.exists() else {}
        mpath.write_text(json.dumps({**old, **metrics}, indent=1) + "\n")
        log(f"exported G_ema to {export} (fingerprint {G.fingerprint})")
    return trainer


def cli_main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m facegen train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in TrainConfig.__dataclass_fields__.values():
        kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str, "bool": str}[f.type]
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--export", default=None, help="write G_ema as a Hub-native folder here at the end")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--export-checkpoint", default=None, metavar="CKPT",
                   help="only export the G_ema of CKPT to --export, no training")
    p.add_argument("--export-network", default="G_ema", choices=("G_ema", "G"),
                   help="--export-checkpoint: the weight average (default) or the training G")
    p.add_argument("--export-discriminator", default=None, metavar="CKPT",
                   help="only write the D of CKPT to --export/discriminator.safetensors, no training")
    p.add_argument("--export-resume", default=None, metavar="CKPT",
                   help="only write CKPT as a compact resume file --export/resume.safetensors, no training")
    p.add_argument("--with-optimizer", action="store_true", help="--export-resume: keep the Adam state too")
    p.add_argument("--resume-from", default=None, metavar="PATH",
                   help="start this run directory from a resume file / folder / checkpoint.pt (facegen.world.resume)")
    p.add_argument("--history", default=None, metavar="PATH",
                   help="only print the command history of a run folder, its log.jsonl or an exported model, no training")
    args = vars(p.parse_args(argv))
    history_of = args.pop("history")
    if history_of:
        from facegen.world.resume import history_table, read_events
        print(history_table(read_events(history_of)))
        return 0
    r_ckpt, with_optimizer, resume_from = args.pop("export_resume"), args.pop("with_optimizer"), args.pop("resume_from")
    if r_ckpt:
        from facegen.world.resume import export_resume
        print(export_resume(r_ckpt, args["export"] or "exported", with_optimizer=with_optimizer))
        return 0
    d_ckpt = args.pop("export_discriminator")
    if d_ckpt:
        print(export_discriminator(d_ckpt, args["export"] or "exported"))
        return 0
    network = args.pop("export_network")
    if args.get("export_checkpoint"):
        print(export_checkpoint(args["export_checkpoint"], args["export"] or "exported", network=network))
        return 0
    args.pop("export_checkpoint")
    threads = args.pop("threads")
    if threads:
        torch.set_num_threads(threads)
    resume = not args.pop("no_resume")
    export = args.pop("export")
    if isinstance(args.get("xflip"), str):
        args["xflip"] = args["xflip"].lower() in ("1", "true", "yes")
    cfg = TrainConfig(**args)
    from facegen.world.distributed import launcher
    command = launcher() + " -m facegen train " + shlex.join(argv)   # quoted: an empty option (--augment "") survives
    train(cfg, resume=resume, export=export, log=lambda s: print(s, flush=True), command=command,
          resume_from=resume_from)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))

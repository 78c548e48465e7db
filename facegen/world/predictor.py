"""The face world's attribute predictor: a small CNN that labels face images.

Purpose
-------
The predictor is the face world's *labeller*.  Given images (renders, GAN
samples, reconstructions) it estimates every attribute of
:data:`facegen.world.attributes.ATTRIBUTE_SPEC` and says whether an image reads as a
face at all.  It is used to

* label generated images for fitting latent directions,
* judge customisation hit rates and encoder attribute error,
* measure GAN quality: a Frechet distance in its 128-d feature space
  (:meth:`Labeller.features`) and a "valid face" rate (:meth:`Labeller.validity`).

Everything that consumes it should program against :class:`Labeller`, the
interface a real-photo labeller (e.g. a CelebA attribute classifier plus a
face detector) would also implement.

Interface (:class:`Labeller`)
-----------------------------
``images`` are always a numpy ``uint8`` array ``[N, H, W, 3]`` (RGB), any
``H, W >= 16``; they are resized to the network input (64 x 64) inside
(area averaging when shrinking, bilinear when enlarging).

``predict(images) -> dict[str, np.ndarray]``, keyed by attribute name:

* continuous ``name``      -> ``float32 [N]``, clipped to the attribute's range
  (``bg_hue`` / ``clothing_hue`` are circular, predicted as sin/cos and decoded
  to ``[0, 1)``);
* categorical ``name``     -> ``float32 [N, K]`` class probabilities, classes in
  ``categories[name]`` order; ``f"{name}_label"`` -> ``str [N]`` argmax labels;
* bool ``name``            -> ``float32 [N]`` probability of ``True``.

``features(images) -> float32 [N, D]`` penultimate features (D = 128) for
Frechet distance / diversity.  ``validity(images) -> float32 [N]`` probability
that the image is a face.

:class:`WorldPredictor` adds ``predict_vectors`` (the
:func:`facegen.world.render.attributes_to_vector` layout, for comparing with ground
truth) and ``predict_attributes`` (``FaceAttributes`` records), and a
differentiable torch path (``forward`` / ``decode`` / ``prepare_tensor``, and ``attribute_scores``
for guided editing, :mod:`facegen.features.editing`).

The predictor in four modules, in reading order:

* :mod:`facegen.world.predictor_network` -- the CNN, its heads and their decoding, persistence;
* :mod:`facegen.world.predictor_images` -- resize, blur, training augmentation, non-face corruptions;
* :mod:`facegen.world.predictor_training` -- seed ranges, targets, losses, the training loop, evaluation;
* here -- the shipped weights (:func:`load_world_predictor`, cached) and the command line
  (``python -m facegen predictor train / eval``). The names of the other three are re-exported here.

Rebuild the shipped model (see ``assets/predictor/README.md``)::

    python -m facegen predictor train --n-train 20000 --n-test 2000 --size 64 \\
        --epochs 12 --minutes 12 --out assets/predictor
"""


from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from facegen.engine.paths import ASSETS
from facegen.labels.base import INPUT_SIZE, MIN_INPUT_SIZE, ImageArray, Labeller, check_images
from facegen.world.predictor_images import CORRUPTIONS, augment, make_corruptions
from facegen.world.predictor_network import (CIRCULAR, CONFIG_NAME, DEFAULT_ARCH, FORMAT_VERSION, WEIGHTS_NAME,
                                             WorldPredictor)
from facegen.world.predictor_training import TEST_SEED_START, TRAIN_SEED_START, evaluate, train_predictor
from facegen.world.render import render_batch

__all__ = [
    "Labeller", "WorldPredictor", "load_world_predictor", "frozen_world_predictor", "DEFAULT_PREDICTOR_DIR",
    "TRAIN_SEED_START", "TEST_SEED_START", "CIRCULAR", "make_corruptions", "evaluate", "cli_main",
    # re-exported from the modules this one was split into (their names stay importable from here)
    "INPUT_SIZE", "MIN_INPUT_SIZE", "ImageArray", "check_images", "CORRUPTIONS", "augment", "DEFAULT_ARCH",
    "CONFIG_NAME", "WEIGHTS_NAME", "FORMAT_VERSION", "train_predictor",
]

#: Shipped weights (``config.json`` + ``model.safetensors`` + ``metrics.json`` + README.md).
DEFAULT_PREDICTOR_DIR = ASSETS / "predictor"


@lru_cache(maxsize=None)
def _load_cached(folder: str) -> WorldPredictor:
    return WorldPredictor.from_pretrained(folder)


def load_world_predictor(folder: Union[str, Path, None] = None) -> WorldPredictor:
    """The shipped predictor (``assets/predictor/``), loaded once per process and cached (CPU, eval mode).

    Treat the returned module as read-only (it is shared); ``copy.deepcopy`` it to fine-tune or move it.
    """
    return _load_cached(str(Path(folder).resolve() if folder is not None else DEFAULT_PREDICTOR_DIR))


def frozen_world_predictor(predictor: Optional[WorldPredictor] = None, device="cpu") -> WorldPredictor:
    """A private, frozen copy (eval mode, no gradients to its weights) of ``predictor`` or of the shipped one,
    on ``device``: for a training lever that scores G's faces. Loading the shipped one builds a network,
    which draws initial weights: the global RNG is left as it was, so switching a lever on does not move a
    run's random stream."""
    if predictor is None:
        with torch.random.fork_rng(devices=[]):
            predictor = load_world_predictor()
    return copy.deepcopy(predictor).to(device).eval().requires_grad_(False)


# ---------------------------------------------------------------------------
# Command line: python -m facegen predictor train / eval
# ---------------------------------------------------------------------------

def _render_set(start: int, n: int, size: int, log=print) -> tuple[np.ndarray, list[dict]]:
    imgs, labs = [], []
    t0 = time.perf_counter()
    chunk = 1000
    for i in range(0, n, chunk):
        x, l = render_batch(range(start + i, start + min(n, i + chunk)), size=size)
        imgs.append(x)
        labs += l
        log(f"  rendered {min(n, i + chunk)}/{n} ({time.perf_counter() - t0:.0f}s)")
    return np.concatenate(imgs), labs


def _fmt_metrics_md(m: dict) -> str:
    lines = ["| metric | held-out |", "|---|---|"]
    for k, v in m["attributes"].items():
        lines.append(f"| {k} | {v:.4f} |")
    for k in ("accuracy", "renders_valid_rate", "corruptions_rejected_rate"):
        lines.append(f"| validity {k} | {m['validity'][k]:.4f} |")
    return "\n".join(lines)


def cli_main(argv: list[str]) -> int:
    """``train --n-train 20000 --n-test 2000 --size 64 --epochs 12 --out assets/predictor [--minutes 12]``
    and ``eval [--model DIR] [--n-test 2000]``."""
    p = argparse.ArgumentParser(prog="python -m facegen predictor",
                                description="Face-world attribute predictor (labeller): train / evaluate.")
    sub = p.add_subparsers(dest="cmd", required=True)
    pt = sub.add_parser("train", help="render face-world data, train, evaluate, save")
    pt.add_argument("--n-train", type=int, default=20000)
    pt.add_argument("--n-test", type=int, default=2000)
    pt.add_argument("--size", type=int, default=64, help="render size (the network input is 64 px)")
    pt.add_argument("--epochs", type=int, default=12)
    pt.add_argument("--batch-size", type=int, default=128)
    pt.add_argument("--lr", type=float, default=2e-3)
    pt.add_argument("--minutes", type=float, default=None,
                    help="wall-clock budget for the whole command (render + train + eval); training is "
                         "cut short, with a fully decayed learning rate, to fit")
    pt.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--out", default=str(DEFAULT_PREDICTOR_DIR))
    pe = sub.add_parser("eval", help="evaluate a saved predictor on held-out renders")
    pe.add_argument("--model", default=str(DEFAULT_PREDICTOR_DIR))
    pe.add_argument("--n-test", type=int, default=2000)
    pe.add_argument("--size", type=int, default=64)
    pe.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.n_test < 1 or (args.cmd == "train" and (args.n_train < 1 or args.epochs < 1)):
        print("error: --n-train, --n-test and --epochs must be >= 1", file=sys.stderr)
        return 2
    if args.n_test > TRAIN_SEED_START or (args.cmd == "train" and args.n_train > TEST_SEED_START - TRAIN_SEED_START):
        print("error: too many faces for the disjoint seed ranges", file=sys.stderr)
        return 2
    if args.cmd == "eval":
        model = WorldPredictor.from_pretrained(args.model)
        x, labs = _render_set(TEST_SEED_START, args.n_test, args.size)
        print(json.dumps(evaluate(model, x, labs), indent=1))
        return 0

    command = "python -m facegen predictor " + shlex.join(argv)
    t_start = time.perf_counter()
    print(f"rendering {args.n_train} training faces (seeds {TRAIN_SEED_START}+) ...")
    x_tr, l_tr = _render_set(TRAIN_SEED_START, args.n_train, args.size)
    t_render = time.perf_counter() - t_start
    print(f"rendering {args.n_test} held-out faces (seeds {TEST_SEED_START}+) ...")
    x_te, l_te = _render_set(TEST_SEED_START, args.n_test, args.size)
    t_render_all = time.perf_counter() - t_start
    budget = None
    if args.minutes is not None:
        reserve = 15.0 + 0.01 * args.n_test      # evaluation + saving
        budget = args.minutes * 60 - (time.perf_counter() - t_start) - reserve
        if budget < 10:
            print(f"error: --minutes {args.minutes} leaves no time to train after rendering "
                  f"({t_render_all:.0f}s)", file=sys.stderr)
            return 2
        print(f"training budget {budget:.0f}s")
    model = WorldPredictor()
    summary = train_predictor(model, x_tr, l_tr, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              time_budget_s=budget, seed=args.seed)
    t_eval = time.perf_counter()
    metrics = evaluate(model, x_te, l_te)
    wall = time.perf_counter() - t_start
    record = {
        "command": command,
        "n_train": args.n_train, "n_test": args.n_test, "size": args.size, "epochs": args.epochs,
        "epochs_done": summary["epochs_done"], "steps": summary["steps"], "stopped_by": summary["stopped_by"],
        "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads,
        "train_seeds": [TRAIN_SEED_START, TRAIN_SEED_START + args.n_train - 1],
        "test_seeds": [TEST_SEED_START, TEST_SEED_START + args.n_test - 1],
        "wall_time_s": round(wall, 1), "render_time_s": round(t_render_all, 1), "render_train_s": round(t_render, 1),
        "train_time_s": summary["train_time_s"], "eval_time_s": round(time.perf_counter() - t_eval, 1),
        "n_params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        **metrics,
        "history": summary["history"],
    }
    out = model.save_pretrained(args.out, command=command, train_seeds=record["train_seeds"],
                                test_seeds=record["test_seeds"], wall_time_s=record["wall_time_s"])
    (out / "metrics.json").write_text(json.dumps(record, indent=1))
    (out / "README.md").write_text(_readme(record, metrics))
    print(json.dumps({k: v for k, v in record.items() if k != "history"}, indent=1))
    print(f"saved to {out} in {wall:.0f}s")
    return 0


def _readme(record: dict, metrics: dict) -> str:
    return f"""# Face-world attribute predictor (shipped weights)

`config.json` + `model.safetensors`: the `facegen.world.predictor.WorldPredictor` small CNN
({record['n_params']:,} parameters, 64x64 input) that labels face-world images: every attribute of
`facegen.world.attributes.ATTRIBUTE_SPEC`, a face-validity score and 128-d features for Frechet distance.
Load it with `facegen.world.predictor.load_world_predictor()`.

## Rebuild

From the repository root (one CPU thread, {record['wall_time_s']:.0f} s wall on the build machine,
rendering included):

```
{record['command']}
```

Training faces use world seeds {record['train_seeds'][0]}..{record['train_seeds'][1]}, held-out test faces
{record['test_seeds'][0]}..{record['test_seeds'][1]}; the GAN trains on seeds below 10000000, so the
three sets are disjoint. Training stopped after {record['epochs_done']} epochs ({record['stopped_by']} limit).
Re-evaluate with `python -m facegen predictor eval`.

## Held-out metrics ({record['n_test']} renders)

MAE is in the attribute's own units (yaw and light_direction span [-1, 1], the rest [0, 1];
hues use circular distance). Validity accuracy is the mean of the rate of renders scored valid
and the rate of corrupted images (noise, pixel/patch shuffles, blobs, colour fields) rejected.

{_fmt_metrics_md(metrics)}

Full numbers (per corruption kind, on renders blurred with sigma 1, loss history): `metrics.json`.

`--minutes` caps the whole command (rendering + training + evaluation); the learning-rate schedule
follows the elapsed fraction of that budget, so a slower or busier machine trains fewer epochs
(here {record['epochs_done']} of {record['epochs']}) but still ends fully annealed.

## Limitations

* Validity separates faces from non-faces (noise, blobs, shuffled pixels/patches, colour fields).
  It is not a sharpness or artefact score: blurred renders and the average of two faces still
  score as valid.
* Eye colour is 1-2 pixels at 64 px; it degrades on blurry inputs (Gaussian sigma >= 1.5 px).
* Trained on face-world renders only; on anything else the attribute outputs are meaningless.
"""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli_main(sys.argv[1:]))

"""The face world's part of encoding: render pools for encoder training, held-out evaluation, the CLI.

The encoder itself and its training loop are generic (:mod:`facegen.packs.encoder`), photo encoding
is generic (:mod:`facegen.features.encode`). What only the face world can do lives here:

* **Render pool** (:func:`render_pool`, ``--real-pool N``): face-world renders from the GAN's own
  training seed range (0 .. N-1) mixed into a quarter of the pixel/perceptual batches. No latent is known
  for them, so they only get the reconstruction losses; this closes the gap between the generator's samples
  and the "photos" the encoder will see. Evaluation seeds (>= 20 000 000) are never used in training.
* **Evaluation** (:func:`evaluate`, shared with ``bench/encode.py``): encode held-out renders (ground truth
  known), report PSNR / MSE, the predictor-feature distance and the attribute error of the reconstructions
  (world predictor vs the renders' true attributes), optionally after refinement; plus the latent error on the
  generator's own samples (known w+).
* **Command line** ``python -m facegen encoder``: ``train`` (the pack builder's recipe; the perceptual term is
  the one :func:`facegen.labels.perceptual.perceptual_for` picks for the generator's pack, for ``mini`` the
  world predictor's features) and ``encode`` (:func:`facegen.features.encode.cli_encode`).

Rebuild the shipped encoder for ``mini`` (about 10 minutes on one CPU core; see
``assets/packs/mini/encoder/README.md``, and ``bench/encode.py`` for the held-out numbers)::

    python -m facegen encoder train --model mini --out assets/packs/mini/encoder --minutes 9 --real-pool 2000 --threads 1
    python bench/encode.py --n 64 --refine-n 16 --steps 200 --budget 8 --threads 1 --write
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from facegen.features.encode import encode, reconstruction_metrics, refine
from facegen.packs.encoder import WEIGHTS_NAME, TrainConfig, sample_batch, train_encoder
from facegen.world.attributes import ATTRIBUTE_SPEC
from facegen.world.render import render_batch

EVAL_SEED_START = 20_000_000        # face-world renders never used for any training (predictor test range)
REAL_SEED_START = 0                 # optional render pool: the GAN's own training range (< 10_000_000)


def render_pool(n: int, size: int, start: int = REAL_SEED_START, log=print) -> torch.Tensor:
    """n face-world renders (seeds start ..) as a float tensor [-1, 1] [n, 3, size, size]."""
    t0 = time.perf_counter()
    imgs, _ = render_batch(range(start, start + n), size=size)
    log(f"rendered {n} face-world images (seeds {start}..{start + n - 1}) in {time.perf_counter() - t0:.0f}s")
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------

def attribute_errors(pred_a: dict, pred_b: dict) -> dict:
    """Disagreement between two predictor outputs (or predictions vs ground-truth label dicts per key):
    mean abs difference of continuous attributes (circular for hues), agreement of categorical/bool labels."""
    out = {}
    for name, kind, rng in ATTRIBUTE_SPEC:
        a, b = np.asarray(pred_a[name]), np.asarray(pred_b[name])
        if kind == "continuous":
            d = np.abs(a.astype(np.float64) - b.astype(np.float64))
            if name in ("bg_hue", "clothing_hue"):
                d = np.minimum(d % 1.0, 1 - d % 1.0)
            out[f"{name}_mae"] = float(d.mean())
        elif kind == "categorical":
            la = a if a.dtype.kind in "US" else np.asarray(rng)[a.argmax(-1)]
            lb = b if b.dtype.kind in "US" else np.asarray(rng)[b.argmax(-1)]
            out[f"{name}_acc"] = float(np.mean(la == lb))
        else:
            out[f"{name}_acc"] = float(np.mean((a > 0.5) == (b > 0.5)))
    cont = [v for k, v in out.items() if k.endswith("_mae") and not k.startswith(("bg_hue", "clothing_hue"))]
    acc = [v for k, v in out.items() if k.endswith("_acc")]
    out["continuous_mae_mean"] = float(np.mean(cont))
    out["label_acc_mean"] = float(np.mean(acc))
    return out


def labels_to_pred(labels: list) -> dict:
    """Ground-truth label dicts -> the predictor's output layout (continuous arrays, category labels)."""
    out = {}
    for name, kind, rng in ATTRIBUTE_SPEC:
        v = [lab[name] for lab in labels]
        out[name] = np.asarray(v, dtype=str if kind == "categorical" else np.float32)
    return out


def _pred_labels(pred: dict) -> dict:
    return {name: (pred[f"{name}_label"] if kind == "categorical" else pred[name]) for name, kind, _ in ATTRIBUTE_SPEC}


def evaluate(G, E, n: int = 64, refine_n: int = 0, start: int = EVAL_SEED_START, refine_kwargs=None, pack=None,
             log=print) -> dict:
    """Encode face-world renders (seeds start..start+n-1, never used in training) -> metrics; refine the first
    `refine_n` of them too (with `pack`'s perceptual loss). Also the generator's own samples (known w+)."""
    from facegen.engine.synthesis import synthesize, to_uint8
    from facegen.world.predictor import load_world_predictor
    P = load_world_predictor()
    imgs, labels = render_batch(range(start, start + n), size=G.img_resolution)
    truth = labels_to_pred(labels)
    t = time.perf_counter()
    ws = np.concatenate([encode(E, imgs[i:i + 1]) for i in range(n)])
    enc_s = (time.perf_counter() - t) / n
    rec = synthesize(G, ws)
    res = {"n": n, "seeds": f"{start}-{start + n - 1}"}

    def block(rec_imgs, idx):
        m = reconstruction_metrics(rec_imgs, imgs[idx])
        pr = P.predict(rec_imgs)
        po = P.predict(imgs[idx])
        fr, fo = P.features(rec_imgs), P.features(imgs[idx])
        m["feature_dist"] = float(np.mean(np.sum((fr - fo) ** 2, 1)))
        m["attr_vs_truth"] = attribute_errors(_pred_labels(pr), {k: v[idx] for k, v in truth.items()})
        m["attr_vs_original"] = attribute_errors(_pred_labels(pr), _pred_labels(po))
        return m

    res["encoder"] = {**block(rec, np.arange(n)), "seconds_per_image": enc_s}
    res["predictor_on_originals"] = attribute_errors(_pred_labels(P.predict(imgs)), truth)
    with torch.no_grad():
        g = torch.Generator().manual_seed(123)
        x, wt = sample_batch(G, 64, g, psi_min=0.7, mix_prob=0.0, noise_mode="const")
        we = E.eval()(x)
        res["gan_samples_latent_mse_std_units"] = float(((we - wt) / E.w_std).square().mean())
        res["gan_samples_psnr"] = reconstruction_metrics(to_uint8(G.synthesis(we, noise_mode="const")),
                                                         to_uint8(x))["psnr"]
    if refine_n:
        idx = np.arange(min(refine_n, n))
        kw = dict(refine_kwargs or {})
        outs, secs, steps = [], [], []
        for i in idx:
            r = refine(G, imgs[i], ws[i], pack=pack, **kw)
            outs.append(r.ws)
            secs.append(r.seconds)
            steps.append(r.steps)
            log(f"  refined {i + 1}/{len(idx)}: {r.steps} steps, {r.seconds:.1f}s ({r.stopped_by})")
        rr = synthesize(G, np.stack(outs))
        res["refined"] = {**block(rr, idx), "seconds_per_image": float(np.mean(secs)),
                          "steps_mean": float(np.mean(steps)), "kwargs": kw}
        res["encoder_on_refined_subset"] = block(rec[idx], idx)
    return res


def _readme(record: dict) -> str:
    m = record.get("metrics", {})
    enc = m.get("encoder", {})
    nan = float("nan")
    lines = [
        f"# Encoder for the `{record['generator']}` generator",
        "",
        "A ResNet encoder (aligned face -> w+) for one StyleGAN2, trained on the generator's own samples "
        "(image -> known w+) with latent + pixel + perceptual loss; see `facegen/packs/encoder.py` for the "
        "method. The generator's pack names it as its `encoder`; used by the app's *Photo encoding* tab and by "
        "`python -m facegen bank build`.",
        "",
        f"* generator fingerprint: `{record['generator_fingerprint']}` (the encoder refuses any other generator)",
        f"* parameters: {record['params']:,}; weights {record['weights_mb']} MB (float32 safetensors)",
        f"* training: {record['train']['steps']} steps, {record['train']['images_seen']:,} generated images, "
        f"{record['train']['train_seconds'] / 60:.1f} min on {record['threads']} CPU thread(s)",
        f"* perceptual term: {record['train'].get('perceptual', 'see metrics.json')}",
        "",
        "## Exact command",
        "",
        "```",
        record["command"],
        "```",
        "",
        "## Held-out metrics (face-world renders, seeds >= 20 000 000, never used in any training)",
        "",
        f"* encoder only: PSNR {enc.get('psnr', nan):.2f} dB, MSE {enc.get('mse', nan):.5f}, "
        f"{enc.get('seconds_per_image', nan) * 1000:.1f} ms per image",
        f"* attribute error (world predictor on reconstruction vs ground truth): continuous MAE "
        f"{enc.get('attr_vs_truth', {}).get('continuous_mae_mean', nan):.3f}, label accuracy "
        f"{enc.get('attr_vs_truth', {}).get('label_acc_mean', nan):.3f}",
        f"* generator's own samples: latent MSE {m.get('gan_samples_latent_mse_std_units', nan):.3f} "
        f"(in w std units), PSNR {m.get('gan_samples_psnr', nan):.2f} dB",
        "",
        "Refinement numbers (encoder + per-image optimisation) come from `bench/encode.py`; see metrics.json.",
        "",
        "## Perceptual loss",
        "",
        "LPIPS/VGG weights cannot be downloaded in facegen's offline setting; `facegen.labels.perceptual` picks "
        "the pack's choice: for face-world generators (`mini`) the squared distance between the face-world "
        "predictor's 128-d features (`assets/predictor`), which encode exactly the attributes the world is made "
        "of; for other generators their own discriminator's features (LPIPS-style) or pixels + MS-SSIM.",
        "",
        "## Recipe for FFHQ-size generators (1024 px, 18 x 512 w+) on a GPU",
        "",
        "1. Align training/eval photos exactly as FFHQ (`facegen.labels.align`, dlib 68 landmarks; the generator's "
        "samples are aligned by construction, so the encoder is trained on samples only).",
        "2. Train at an input of 256 px (`MAX_INPUT`; images are area-downsampled), with wider stages, e.g.",
        "   ```",
        "   python -m facegen encoder train --model ffhq-config-f --out encoders/ffhq --minutes 600 \\",
        "       --batch 16 --channels 64,128,256,512 --blocks 2 --hidden 1024 --pixel-every 1 --feature-weight 0",
        "   ```",
        "   on one GPU (FACEGEN_DEVICE=cuda; no `--real-pool`: face-world renders are for mini only); expect "
        "roughly 10-20 GPU-hours for a usable encoder, as with pSp/e4e. Without one, photo encoding projects "
        "from w_avg (the StyleGAN2 projector's recipe) within its time budget.",
        "",
    ]
    return "\n".join(lines)


def train_and_save(G, cfg: TrainConfig, out, perceptual, command: str, model: str = "", eval_n: int = 64,
                   log=print) -> dict:
    """Train an encoder for G (``cfg``; face-world render pool of ``cfg.real_pool`` images), save it to `out`
    with metrics.json (held-out :func:`evaluate`, `command`; an old "bench" entry is dropped) and README.md
    -> the record written. The ``encoder train`` command and the face-world pack builder both end here."""
    pool = render_pool(cfg.real_pool, G.img_resolution, log=log) if cfg.real_pool else None
    E, stats = train_encoder(G, cfg, perceptual=perceptual, real_pool=pool, log=log)
    E.meta.update(generator_fingerprint=G.fingerprint, generator=model, generator_resolution=G.img_resolution)
    out = Path(out)
    E.save_pretrained(out, generator_fingerprint=G.fingerprint)
    metrics = evaluate(G, E, n=eval_n, log=log)
    fields = TrainConfig.__dataclass_fields__
    record = {"command": command, "generator": model, "generator_fingerprint": G.fingerprint,
              "config": {k: getattr(cfg, k) for k in fields}, "train": stats,
              "params": sum(p.numel() for p in E.parameters()),
              "weights_mb": round((out / WEIGHTS_NAME).stat().st_size / 2 ** 20, 2),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "metrics": metrics}
    mpath = out / "metrics.json"
    old = json.loads(mpath.read_text()) if mpath.exists() else {}
    old.pop("bench", None)
    mpath.write_text(json.dumps({**old, **record}, indent=1) + "\n")
    (out / "README.md").write_text(_readme(record))
    return record


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def cli_main(argv) -> int:
    from facegen.features.encode import add_encode_arguments, cli_encode
    p = argparse.ArgumentParser(prog="python -m facegen encoder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train an encoder for a generator on its own samples")
    t.add_argument("--model", default="mini")
    t.add_argument("--out", required=True)
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--eval-n", type=int, default=64)
    t.add_argument("--perceptual", default="auto", choices=["auto", "labeller", "discriminator", "pixels"])
    t.add_argument("--device", default=None, help="cpu, cuda, mps (default: FACEGEN_DEVICE or the best available)")
    for f in TrainConfig.__dataclass_fields__.values():
        kind = {"int": int, "float": float, "str": str}[f.type] if isinstance(f.type, str) else f.type
        t.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    e = sub.add_parser("encode", help="align + encode photos to latent .npz files")
    add_encode_arguments(e)
    e.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    from facegen.engine.device import configure_cpu_threads
    if args.threads:
        configure_cpu_threads(args.threads)
    if args.cmd == "encode":
        return cli_encode(args)
    from facegen.engine.device import pick_device
    from facegen.engine.loaders import load_generator
    from facegen.labels.perceptual import perceptual_for
    from facegen.packs.pack import find_pack
    G = load_generator(args.model).to(pick_device(args.device))
    pack = find_pack(G)
    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: getattr(args, k) for k in fields})
    command = "python -m facegen encoder " + " ".join(shlex.quote(a) for a in argv)
    dev = G.mapping.w_avg.device
    perc = perceptual_for(G, pack, args.perceptual, dev) if cfg.feature_weight > 0 else None
    record = train_and_save(G, cfg, args.out, perc, command, model=args.model, eval_n=args.eval_n,
                            log=lambda m: print(m, flush=True))
    metrics, out = record["metrics"], Path(args.out)
    print(json.dumps({"out": str(out), "fingerprint": G.fingerprint, "psnr": metrics["encoder"]["psnr"],
                      "attr_continuous_mae": metrics["encoder"]["attr_vs_truth"]["continuous_mae_mean"]}))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))

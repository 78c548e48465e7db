"""Command line: ``python -m facegen COMMAND ...``

    convert SRC OUTDIR                       any supported generator -> Hub-native folder
    generate --model SRC --seeds 0-7 --psi 0.7 --outdir DIR    PNGs + latents
    world sample --n 64 --size 128 --outdir DIR                 face-world renders + labels
    train ...                    train a StyleGAN2 (facegen.world.training)
    predictor train ...          train the face world's attribute predictor (facegen.world.predictor)
    directions fit ...           fit attribute directions (facegen.packs.direction_fitting)
    world-pack build --model M --out DIR [--budget quick|full]   a face-world generator's full pack
    label --labeller photo IMAGE...     one JSON line per face (photo) or per image (world, module:factory)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def cmd_convert(args) -> int:
    from facegen import load_generator
    G = load_generator(args.src)
    out = G.save_pretrained(args.outdir)
    print(json.dumps({"outdir": str(out), "fingerprint": G.fingerprint, "resolution": G.img_resolution,
                      "num_ws": G.num_ws, "format": G.meta.get("format")}))
    return 0


def cmd_generate(args) -> int:
    from PIL import Image
    from facegen import load_generator
    from facegen.features.generate import generate_seeds
    from facegen.engine.latents import save_latent
    G = load_generator(args.model, device=args.device)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    images, ws, seeds = generate_seeds(G, args.seeds, psi=args.psi, cutoff=args.cutoff, noise_mode=args.noise_mode)
    for img, w, seed in zip(images, ws, seeds):
        Image.fromarray(img).save(outdir / f"seed{seed:04d}.png")
        save_latent(outdir / f"seed{seed:04d}.npz", w, fingerprint=G.fingerprint, seed=seed, psi=args.psi,
                    cutoff=args.cutoff, model=str(args.model))
    print(f"wrote {len(seeds)} images and latents to {outdir} (generator {G.fingerprint})")
    return 0


def _label_rows(lab, img) -> list:
    """Rows for one image: every face (labellers with detect(), e.g. photo), else the image's attributes
    (none when its validity is under 0.5)."""
    if hasattr(lab, "detect"):
        return [{"face": i + 1, **f.record()} for i, f in enumerate(lab.detect(img))]
    batch = img[None]
    preds, validity = lab.predict(batch), float(lab.validity(batch)[0])
    if validity < 0.5:
        return []
    row = {"validity": round(validity, 3)}
    for name, kind, _ in lab.spec:
        row[name] = str(preds[f"{name}_label"][0]) if kind == "categorical" else round(float(preds[name][0]), 3)
    return [row]


def cmd_label(args) -> int:
    from facegen.engine.errors import InputError
    from facegen.labels.align import load_image
    from facegen.labels.base import load_labeller
    lab = load_labeller(args.labeller)
    failed = 0
    for path in args.images:
        try:
            rows = _label_rows(lab, load_image(path))
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        if not rows:
            print(f"error: no face found in {path} by the '{args.labeller}' labeller"
                  + (" (it reads roughly frontal to half-profile faces at least ~20 px wide)"
                     if hasattr(lab, "detect") else " (validity under 0.5)"), file=sys.stderr)
            failed += 1
        for row in rows:
            print(json.dumps({"file": str(path), **row}), flush=True)
    return 2 if failed else 0


# Commands implemented by a facegen module's own cli_main(argv).
SUBMODULE_COMMANDS = {"world": "facegen.world.render", "train": "facegen.world.training",
                      "predictor": "facegen.world.predictor", "directions": "facegen.packs.direction_fitting",
                      "encoder": "facegen.world.encoder_training", "bank": "facegen.world.characters",
                      "customize": "facegen.world.class_training", "faceswap": "facegen.features.faceswap.cli",
                      "faceswap-world": "facegen.world.videos",
                      "pack": "facegen.packs.cli", "world-pack": "facegen.world.pack_build"}


def main(argv=None) -> int:
    from facegen.engine.errors import FacegenError
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBMODULE_COMMANDS:
        module = SUBMODULE_COMMANDS[argv[0]]
        import importlib
        mod = importlib.import_module(module)
        try:
            return mod.cli_main(argv[1:])
        except FacegenError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    p = argparse.ArgumentParser(prog="python -m facegen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="convert a generator to a Hub-native folder")
    c.add_argument("src")
    c.add_argument("outdir")
    c.set_defaults(fn=cmd_convert)
    g = sub.add_parser("generate", help="generate images and latents from seeds")
    g.add_argument("--model", default="mini")
    g.add_argument("--seeds", default="0-7")
    g.add_argument("--psi", type=float, default=0.7)
    g.add_argument("--cutoff", type=int, default=None)
    g.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    g.add_argument("--device", default=None)
    g.add_argument("--outdir", required=True)
    g.set_defaults(fn=cmd_generate)
    lb = sub.add_parser("label", help="label faces in images: one JSON line per face (exit 2: no face / unreadable)")
    lb.add_argument("--labeller", default="photo", help="photo (real photos), world, or module:factory")
    lb.add_argument("images", nargs="+")
    lb.set_defaults(fn=cmd_label)
    for name, module in SUBMODULE_COMMANDS.items():
        sub.add_parser(name, help=f"see `python -m facegen {name} --help` (facegen.{module})")
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except FacegenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    rc = main()
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        # A torchrun worker whose work is done and whose process group is destroyed: leave without running
        # native static destructors. Gloo's threads made 2 of ~12 two-process test runs abort at exit
        # (SIGABRT, "terminate called without an active exception") after training had finished and written
        # everything; the launcher then reports the whole run as failed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc or 0)
    sys.exit(rc)

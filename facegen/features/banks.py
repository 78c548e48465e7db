"""Building latent banks: a folder of photos of named people -> one bank file for one generator.

Every photo goes through photo encoding (:func:`facegen.features.encode.encode_photo`): aligned, then
encoded with the generator pack's encoder and refined -- or, without an encoder, projected from w_avg
within the time budget. The result is a :class:`facegen.packs.bank.Bank` (the file format, loading and
finding banks live in :mod:`facegen.packs.bank`).

Names come from ``names.json`` in PHOTOS_DIR (``{"file.png": "Name"}``) when present, else from the
file names (``ada_quill.png`` -> ``Ada Quill``).

Commands (``python -m facegen bank``; the face world adds ``world-characters``, see
:mod:`facegen.world.characters`)::

    python -m facegen bank build PHOTOS_DIR OUT.npz --model mini [--name NAME] [--mode auto]
    python -m facegen bank push OUT.npz OWNER/REPO [--private] [--repo-type model|dataset]
    python -m facegen bank show OUT.npz
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from facegen.engine.errors import FacegenError, InputError
from facegen.packs.bank import FORMAT, THUMB, VERSION, Bank, load_bank, push_bank

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
MAX_BANK = 1000


def _thumb(img: np.ndarray, size: int = THUMB) -> np.ndarray:
    if img.shape[0] <= size:
        return img
    from PIL import Image
    return np.asarray(Image.fromarray(img).resize((size, size), Image.LANCZOS))


def name_from_file(path: Path) -> str:
    return " ".join(w.capitalize() for w in path.stem.replace("-", "_").split("_") if w) or path.stem


def list_photos(photos_dir) -> list:
    d = Path(photos_dir)
    if not d.is_dir():
        raise InputError(f"{d} is not a folder of photos.")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise InputError(f"{d} holds no photos ({', '.join(sorted(IMAGE_EXTS))}).")
    if len(files) > MAX_BANK:
        raise InputError(f"{d} holds {len(files)} photos; a bank holds at most {MAX_BANK}.")
    return files


def build_bank(G, pack, photos_dir, name: Optional[str] = None, description: str = "", mode: str = "auto",
               refine_steps: int = 200, time_budget: float = 8.0, model: str = "", log: Callable = print) -> tuple:
    """Align + encode + refine (or project) every photo in `photos_dir` -> (Bank, [(file, error) skipped])."""
    from facegen.features.encode import encode_photo
    from facegen.packs.encoder import encoder_for
    E = encoder_for(G, pack)          # checks the pack belongs to G before any photo is read
    files = list_photos(photos_dir)
    names_file = Path(photos_dir) / "names.json"
    names_map = json.loads(names_file.read_text()) if names_file.is_file() else {}
    names, ws, thumbs, srcs, entries, skipped = [], [], [], [], [], []
    for i, f in enumerate(files):
        try:
            r = encode_photo(G, pack, f, mode=mode, refine_steps=refine_steps, time_budget=time_budget)
        except FacegenError as e:
            skipped.append((f.name, str(e)))
            log(f"skip {f.name}: {e}")
            continue
        nm = str(names_map.get(f.name) or name_from_file(f))
        names.append(nm)
        ws.append(r["ws"])
        thumbs.append(_thumb(r["refined_image"]))
        srcs.append(_thumb(r["aligned"]))
        entries.append({"name": nm, "file": f.name, "method": r["align"].method, "start": r["start"],
                        "psnr_encoder": round(r["encoder_metrics"]["psnr"], 2),
                        "psnr_refined": round(r["refined_metrics"]["psnr"], 2),
                        "refine_steps": r["refine"].steps})
        log(f"[{i + 1}/{len(files)}] {nm}: {r['align'].summary()}; PSNR {entries[-1]['psnr_encoder']} -> "
            f"{entries[-1]['psnr_refined']} dB ({r['seconds']:.1f}s)")
    if not names:
        raise InputError(f"No face could be encoded from {photos_dir}: " +
                         "; ".join(f"{a}: {b}" for a, b in skipped[:5]))
    meta = {"format": FORMAT, "version": VERSION, "fingerprint": G.fingerprint, "model": model or
            G.meta.get("name", ""), "resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim,
            "name": name or Path(photos_dir).name, "description": description,
            "encoder_fingerprint": E.fingerprint if E is not None else None, "refine_steps": refine_steps,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "entries": entries}
    bank = Bank(names, np.stack(ws).astype(np.float32), np.stack(thumbs), np.stack(srcs), meta)
    return bank, skipped


def cli_main(argv, extra: Optional[dict] = None) -> int:
    """``python -m facegen bank``. `extra`: {subcommand: (help, add_arguments(parser), run(args) -> rc)}
    added by higher layers (the face world's ``world-characters``)."""
    p = argparse.ArgumentParser(prog="python -m facegen bank", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="align + encode a folder of photos into one bank file")
    b.add_argument("photos_dir")
    b.add_argument("out")
    b.add_argument("--model", default="mini")
    b.add_argument("--pack", default=None, help="pack folder (default: the generator's pack, found by fingerprint)")
    b.add_argument("--no-pack", action="store_true", help="ignore the generator's pack (projection from w_avg)")
    b.add_argument("--name", default=None)
    b.add_argument("--description", default="")
    b.add_argument("--mode", default="auto", choices=["auto", "detect", "pre-aligned"])
    b.add_argument("--refine-steps", type=int, default=200)
    b.add_argument("--time-budget", type=float, default=8.0)
    b.add_argument("--threads", type=int, default=0)
    u = sub.add_parser("push", help="upload a bank file to the Hugging Face Hub")
    u.add_argument("bank")
    u.add_argument("repo_id")
    u.add_argument("--private", action="store_true")
    u.add_argument("--repo-type", default="model", choices=["model", "dataset"])
    u.add_argument("--path-in-repo", default=None)
    u.add_argument("--token", default=None)
    s = sub.add_parser("show", help="print a bank's names and metadata")
    s.add_argument("bank")
    runners = {}
    for cmd, (help_, add_args, run) in (extra or {}).items():
        add_args(sub.add_parser(cmd, help=help_))
        runners[cmd] = run
    args = p.parse_args(argv)
    if args.cmd in runners:
        return runners[args.cmd](args)
    if args.cmd == "build":
        from facegen.engine.device import configure_cpu_threads
        from facegen.engine.loaders import load_generator
        from facegen.packs.pack import find_pack, load_pack
        if args.threads:
            configure_cpu_threads(args.threads)
        G = load_generator(args.model)
        pack = None if args.no_pack else load_pack(args.pack, G) if args.pack else find_pack(G)
        bank, skipped = build_bank(G, pack, args.photos_dir, name=args.name, description=args.description,
                                   mode=args.mode, refine_steps=args.refine_steps, time_budget=args.time_budget,
                                   model=args.model)
        out = bank.save(args.out)
        print(json.dumps({"out": str(out), "faces": len(bank), "skipped": skipped, "fingerprint": G.fingerprint,
                          "bytes": out.stat().st_size}))
        return 0
    if args.cmd == "push":
        print(push_bank(args.bank, args.repo_id, private=args.private, token=args.token, repo_type=args.repo_type,
                        path_in_repo=args.path_in_repo))
        return 0
    bank = load_bank(args.bank)
    meta = {k: v for k, v in bank.meta.items() if k != "entries"}
    print(json.dumps({**meta, "names": bank.names, "ws": list(bank.ws.shape)}, indent=1))
    return 0

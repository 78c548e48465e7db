"""Latent banks: a folder of photos of named people -> one file of named w+ latents for one generator.

A bank is a single ``.npz`` (read with ``allow_pickle=False``; no object arrays anywhere):

    names    str  [N]                        display names
    ws       float32 [N, num_ws, w_dim]      w+ latents (aligned, encoded and refined)
    thumbs   uint8 [N, T, T, 3]              the reconstructions (T = min(resolution, 128))
    sources  uint8 [N, T, T, 3]              the aligned photo crops they were made from
    meta     str (JSON)                      {"format": "facegen-bank", "version", "fingerprint",
                                              "model", "resolution", "num_ws", "w_dim", "name",
                                              "description", "created", "entries": [{name, file,
                                              method, psnr_encoder, psnr_refined}, ...]}

The generator fingerprint in ``meta`` ties the bank to one generator: :func:`banks_for` finds the
banks (shipped in ``assets/banks/``, in ``FACEGEN_BANKS`` folders, or Hub files ``hf://OWNER/REPO/
FILE.npz`` listed in ``FACEGEN_BANKS``) that match the active generator.

Commands::

    python -m facegen bank build PHOTOS_DIR OUT.npz --model mini [--name NAME] [--mode auto]
    python -m facegen bank push OUT.npz OWNER/REPO [--private] [--repo-type model|dataset]
    python -m facegen bank show OUT.npz
    python -m facegen bank world-characters DIR    # render the shipped face-world characters

Names come from ``names.json`` in PHOTOS_DIR (``{"file.png": "Name"}``) when present, else from the
file names (``ada_quill.png`` -> ``Ada Quill``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from facegen.engine.errors import FacegenError, InputError, LatentError

FORMAT = "facegen-bank"
VERSION = 1
THUMB = 128
from facegen.engine.paths import REPO_ROOT  # noqa: E402
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
MAX_BANK = 1000


class BankError(LatentError):
    """A bank file is missing, malformed, or belongs to another generator."""


@dataclass
class Bank:
    names: list
    ws: np.ndarray                  # [N, num_ws, w_dim] float32
    thumbs: np.ndarray              # [N, T, T, 3] uint8 reconstructions
    sources: Optional[np.ndarray] = None
    meta: dict = field(default_factory=dict)
    path: Optional[str] = None

    def __len__(self):
        return len(self.names)

    @property
    def fingerprint(self) -> Optional[str]:
        return self.meta.get("fingerprint")

    @property
    def title(self) -> str:
        return self.meta.get("name") or (Path(self.path).stem if self.path else "bank")

    def matches(self, G) -> bool:
        return self.fingerprint == G.fingerprint and tuple(self.ws.shape[1:]) == (G.num_ws, G.w_dim)

    def index(self, key) -> int:
        """A name (case-insensitive) or a 0-based index -> index."""
        if isinstance(key, (int, np.integer)):
            if not 0 <= int(key) < len(self):
                raise InputError(f"The bank '{self.title}' has {len(self)} faces (0-{len(self) - 1}); no #{key}.")
            return int(key)
        low = [n.lower() for n in self.names]
        k = str(key).strip().lower()
        if k in low:
            return low.index(k)
        raise InputError(f"'{key}' is not in the bank '{self.title}' (it has: {', '.join(self.names)}).")

    def gallery(self) -> list:
        return [(t, n) for t, n in zip(self.thumbs, self.names)]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays = dict(names=np.asarray(self.names, dtype=str), ws=self.ws.astype(np.float32),
                      thumbs=self.thumbs.astype(np.uint8), meta=np.array(json.dumps(self.meta)))
        if self.sources is not None:
            arrays["sources"] = self.sources.astype(np.uint8)
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    def save(self, path) -> Path:
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_bytes())
        self.path = str(path)
        return path


def read_meta(path) -> dict:
    """Only the JSON metadata of a bank file (cheap: the other arrays are not read)."""
    try:
        with np.load(path, allow_pickle=False) as d:
            if "meta" not in d.files:
                raise BankError(f"{Path(path).name} is not a facegen bank (no 'meta').")
            meta = json.loads(str(d["meta"]))
    except FacegenError:
        raise
    except Exception as e:
        raise BankError(f"{Path(path).name} is not a readable bank file ({type(e).__name__}: {e}).") from None
    if meta.get("format") != FORMAT:
        raise BankError(f"{Path(path).name} is not a facegen bank (format {meta.get('format')!r}).")
    return meta


def load_bank(source, G=None) -> Bank:
    """Read a bank (.npz path or ``hf://OWNER/REPO/FILE.npz``); with G, it must be made for G."""
    source = str(source)
    if source.startswith("hf://") or (not Path(source).exists() and source.count("/") >= 2
                                      and not source.startswith((".", "/", "~"))):
        from facegen.engine.hub import download, parse_reference
        ref = parse_reference(source)
        if not ref.filename:
            raise BankError(f"'{source}' names no file: use hf://OWNER/REPO/FILE.npz.")
        path = download(ref, ref.filename)
    else:
        path = Path(source)
        if not path.is_file():
            raise BankError(f"No bank file at {path}.")
    meta = read_meta(path)
    try:
        with np.load(path, allow_pickle=False) as d:
            names = [str(n) for n in d["names"]]
            ws = np.asarray(d["ws"], np.float32)
            thumbs = np.asarray(d["thumbs"])
            sources = np.asarray(d["sources"]) if "sources" in d.files else None
    except Exception as e:
        raise BankError(f"{Path(path).name} is corrupt or holds object arrays ({type(e).__name__}: {e}).") from None
    n = len(names)
    if ws.ndim != 3 or ws.shape[0] != n or thumbs.shape[0] != n or thumbs.dtype != np.uint8 or thumbs.ndim != 4:
        raise BankError(f"{Path(path).name}: arrays do not agree (names {n}, ws {list(ws.shape)}, "
                        f"thumbs {list(thumbs.shape)}).")
    if not np.all(np.isfinite(ws)):
        raise BankError(f"{Path(path).name}: latents contain NaN or infinite values.")
    bank = Bank(names, ws, thumbs, sources, meta, str(path))
    if G is not None and not bank.matches(G):
        raise BankError(f"The bank '{bank.title}' was made for generator {bank.fingerprint} "
                        f"({list(ws.shape[1:])}); the active generator is {G.fingerprint}. Build one for it: "
                        "python -m facegen bank build PHOTOS_DIR OUT.npz --model MODEL")
    return bank


def bank_sources(extra=None, pack=None) -> list:
    """Where banks are looked for: `extra`, FACEGEN_BANKS (os.pathsep-separated folders, files or hf://
    references), then the banks of the generator's pack."""
    out = []
    items = list(extra or []) + [s for s in os.environ.get("FACEGEN_BANKS", "").split(os.pathsep) if s]
    for s in items:
        p = Path(s)
        if p.is_dir():
            out += sorted(p.glob("*.npz"))
        else:
            out.append(s)
    if pack is not None:
        out += pack.paths("banks")
    return out


def banks_for(G, extra=None, pack=None) -> list:
    """Every bank made for G (by fingerprint): `extra`, FACEGEN_BANKS, then G's pack (default: found by
    :func:`facegen.packs.pack.find_pack`); unreadable or foreign ones are skipped."""
    from facegen.packs.pack import find_pack
    found = []
    for s in bank_sources(extra, pack if pack is not None else find_pack(G)):
        try:
            if isinstance(s, Path) or Path(str(s)).is_file():
                if read_meta(s).get("fingerprint") != G.fingerprint:
                    continue
            b = load_bank(s, G)
        except FacegenError:
            continue
        found.append(b)
    return found


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------

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


def build_bank(G, E, photos_dir, name: Optional[str] = None, description: str = "", mode: str = "auto",
               refine_steps: int = 200, time_budget: float = 8.0, model: str = "", log: Callable = print) -> tuple:
    """Align + encode + refine every photo in `photos_dir` -> (Bank, list of (file, error) skipped)."""
    from facegen.features.encode import check_pair, encode_photo
    check_pair(E, G)
    files = list_photos(photos_dir)
    names_file = Path(photos_dir) / "names.json"
    names_map = json.loads(names_file.read_text()) if names_file.is_file() else {}
    names, ws, thumbs, srcs, entries, skipped = [], [], [], [], [], []
    for i, f in enumerate(files):
        try:
            r = encode_photo(G, E, f, mode=mode, refine_steps=refine_steps, time_budget=time_budget)
        except FacegenError as e:
            skipped.append((f.name, str(e)))
            log(f"skip {f.name}: {e}")
            continue
        nm = str(names_map.get(f.name) or name_from_file(f))
        names.append(nm)
        ws.append(r["ws"])
        thumbs.append(_thumb(r["refined_image"]))
        srcs.append(_thumb(r["aligned"]))
        entries.append({"name": nm, "file": f.name, "method": r["align"].method,
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
            "encoder_fingerprint": E.fingerprint, "refine_steps": refine_steps,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "entries": entries}
    bank = Bank(names, np.stack(ws).astype(np.float32), np.stack(thumbs), np.stack(srcs), meta)
    return bank, skipped


def push_bank(path, repo_id: str, private: bool = False, token: Optional[str] = None, repo_type: str = "model",
              path_in_repo: Optional[str] = None, commit_message: str = "Upload facegen latent bank") -> str:
    """Upload a bank file to a Hub repo (created if needed); returns the commit URL. Load it back with
    ``load_bank("hf://REPO/FILE.npz")`` or by listing it in FACEGEN_BANKS."""
    from huggingface_hub import HfApi
    path = Path(path)
    read_meta(path)   # refuse to upload something that is not a bank
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    info = api.upload_file(path_or_fileobj=str(path), path_in_repo=path_in_repo or path.name, repo_id=repo_id,
                           repo_type=repo_type, commit_message=commit_message)
    return str(info)


# ---------------------------------------------------------------------------
# The shipped face-world characters
# ---------------------------------------------------------------------------

#: A dozen named characters of the face world (fictional people), rendered with chosen attributes.
WORLD_CHARACTERS = {
    "ada_quill": dict(gender=0.15, age=0.25, skin_tone=0.15, hair_color="red", hair_length=0.8,
                      hair_style="curly", eye_color="green", smile=0.7, bg_hue=0.55, bg_value=0.8),
    "bruno_castell": dict(gender=0.9, age=0.55, skin_tone=0.45, hair_color="black", hair_length=0.1,
                          hair_style="straight", beard=True, smile=0.2, bg_hue=0.08, bg_value=0.6),
    "chioma_reyes": dict(gender=0.1, age=0.2, skin_tone=0.9, hair_color="black", hair_length=0.55,
                         hair_style="curly", eye_color="brown", smile=0.95, bg_hue=0.15, bg_value=0.85),
    "dmitri_holm": dict(gender=0.95, age=0.85, skin_tone=0.1, hair_color="blonde", hair_length=0.0,
                        hair_style="bald", glasses=True, smile=0.4, bg_hue=0.62, bg_value=0.35),
    "elena_marsh": dict(gender=0.2, age=0.6, skin_tone=0.3, hair_color="auburn", hair_length=0.45,
                        hair_style="fringe", glasses=True, eye_color="blue", smile=0.5, bg_hue=0.8, bg_value=0.7),
    "farid_okoye": dict(gender=0.8, age=0.3, skin_tone=0.75, hair_color="black", hair_length=0.2,
                        hair_style="curly", beard=True, smile=0.85, bg_hue=0.33, bg_value=0.75),
    "greta_lind": dict(gender=0.05, age=0.1, skin_tone=0.05, hair_color="blonde", hair_length=1.0,
                       hair_style="straight", eye_color="blue", smile=0.3, bg_hue=0.5, bg_value=0.9),
    "hiro_tanabe": dict(gender=0.75, age=0.4, skin_tone=0.35, hair_color="black", hair_length=0.35,
                        hair_style="fringe", smile=0.1, yaw=0.3, bg_hue=0.0, bg_value=0.55),
    "imani_brooks": dict(gender=0.25, age=0.45, skin_tone=0.65, hair_color="brown", hair_length=0.7,
                         hair_style="straight", eye_color="brown", smile=0.6, yaw=-0.3, bg_hue=0.9, bg_value=0.6),
    "jonas_weber": dict(gender=0.85, age=0.7, skin_tone=0.2, hair_color="brown", hair_length=0.25,
                        hair_style="straight", glasses=True, beard=True, eye_color="grey", smile=0.55,
                        bg_hue=0.45, bg_value=0.45),
    "kiri_moana": dict(gender=0.35, age=0.05, skin_tone=0.55, hair_color="black", hair_length=0.9,
                       hair_style="curly", smile=1.0, bg_hue=0.25, bg_value=0.9, light_direction=0.5),
    "lucia_ferro": dict(gender=0.1, age=0.95, skin_tone=0.4, hair_color="brown", hair_length=0.5,
                        hair_style="straight", eye_color="green", smile=0.45, bg_hue=0.7, bg_value=0.3,
                        light_direction=-0.5),
}


def render_world_characters(outdir, size: int = 128) -> list:
    """Render :data:`WORLD_CHARACTERS` to PNGs (+ names.json, attributes.json) in `outdir`."""
    from PIL import Image
    from facegen.world.render import FaceAttributes, labels_dict, render
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    names, attrs, files = {}, {}, []
    for key, kw in WORLD_CHARACTERS.items():
        a = FaceAttributes(**kw)
        r = render(a, size=size)
        f = out / f"{key}.png"
        Image.fromarray(r.image).save(f)
        names[f.name] = name_from_file(f)
        attrs[f.name] = labels_dict(a)
        files.append(f)
    (out / "names.json").write_text(json.dumps(names, indent=1) + "\n")
    (out / "attributes.json").write_text(json.dumps(attrs, indent=1) + "\n")
    return files


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def cli_main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m facegen bank", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="align + encode a folder of photos into one bank file")
    b.add_argument("photos_dir")
    b.add_argument("out")
    b.add_argument("--model", default="mini")
    b.add_argument("--encoder", default=None, help="encoder folder (default: the one made for the model)")
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
    w = sub.add_parser("world-characters", help="render the shipped face-world characters to a folder")
    w.add_argument("outdir")
    w.add_argument("--size", type=int, default=128)
    args = p.parse_args(argv)
    if args.cmd == "build":
        from facegen.engine.device import configure_cpu_threads
        from facegen.features.encode import find_encoder, load_encoder
        from facegen.engine.loaders import load_generator
        if args.threads:
            configure_cpu_threads(args.threads)
        G = load_generator(args.model)
        enc = args.encoder or find_encoder(G)
        if enc is None:
            raise BankError(f"No encoder for generator {G.fingerprint}; train one (python -m facegen encoder "
                            "train) and pass --encoder DIR.")
        E = load_encoder(enc, G)
        bank, skipped = build_bank(G, E, args.photos_dir, name=args.name, description=args.description,
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
    if args.cmd == "show":
        bank = load_bank(args.bank)
        meta = {k: v for k, v in bank.meta.items() if k != "entries"}
        print(json.dumps({**meta, "names": bank.names, "ws": list(bank.ws.shape)}, indent=1))
        return 0
    files = render_world_characters(args.outdir, size=args.size)
    print(json.dumps({"outdir": args.outdir, "files": [f.name for f in files]}))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))

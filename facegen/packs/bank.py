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

Banks are *built* from photos by :mod:`facegen.features.banks` (``python -m facegen bank build``,
through photo encoding); this module holds the format only: :class:`Bank`, :func:`load_bank`,
:func:`banks_for`, :func:`push_bank`.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from facegen.engine.errors import FacegenError, InputError, LatentError

FORMAT = "facegen-bank"
VERSION = 1
THUMB = 128


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
# Publishing
# ---------------------------------------------------------------------------

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

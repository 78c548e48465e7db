"""Services behind the studio app (``app.py`` + ``demos/``), with no Gradio in them.

* :class:`ModelManager` -- which generator is active and why, a small thread-safe cache of
  loaded generators, the list the model dropdown shows.
* :class:`Face` / :class:`Shelf` -- the per-session face shelf: w+ latent, thumbnail, generator
  fingerprint and (when the face came from a seed) a share token that recreates it; export and
  import as ``.npz`` via :mod:`facegen.engine.latents`.
* Face specs -- the text the tabs accept for "which faces": ``"0-3, 12, 7@0.5, #2"`` (seeds, seed
  ranges, a seed at its own truncation ψ[/cutoff], shelf faces by number).
* Share links -- :func:`encode_link` / :func:`decode_link` turn a tab's inputs into a query string
  and back, validated (a hand-edited link never crashes the app; bad values fall back to defaults).
* Computation (``generate_faces``, ``mix_grid``, ``fuse_faces``, ``interpolate``) takes and returns
  picklable values (str, float, list, numpy), so the app can wrap it in ``spaces.GPU`` unchanged.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence
from urllib.parse import urlencode

import numpy as np
import torch

from facegen.engine import latents as L
from facegen.engine import registry
from facegen.engine.errors import (FacegenError, FingerprintMismatchWarning, InputError, LatentError,
                                   UnsupportedModelError)

MAX_FACES = 32          # images per request
MAX_GRID = 8            # sources / templates in a style-mixing grid
MAX_FUSE = 8            # faces in one fusion
MAX_STEPS = 16          # interpolation strip length
MAX_SHELF = 48          # faces on one session's shelf
THUMB = 128             # shelf thumbnail size (px)

# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


class ModelManager:
    """Resolves the default model, loads and caches generators (at most `capacity` at a time)."""

    def __init__(self, capacity: int = 2, env: Optional[Mapping] = None):
        self.capacity = capacity
        self._env = dict(os.environ if env is None else env)
        self._cache: "OrderedDict[str, object]" = OrderedDict()
        self._lock = threading.RLock()
        self._load_locks: dict = {}
        self._packs: dict = {}          # fingerprint -> Pack or None

    # -- what is on offer -----------------------------------------------------------------------
    @property
    def env_model(self) -> Optional[str]:
        return self._env.get("FACEGEN_MODEL") or None

    def default(self) -> str:
        return self.env_model or registry.default_name()

    def reason(self, name: str) -> str:
        """Why `name` is (or would be) the active model, for the banner."""
        if name == self.env_model:
            return "chosen by FACEGEN_MODEL"
        try:
            e = registry.get(name)
        except FacegenError:
            return "loaded from a path or Hub reference"
        kind, licence = registry.where(name), e.get("license", "licence: see registry")
        if kind == "embedded":
            why = "HF_HUB_OFFLINE is set" if hub_offline() else "no download needed"
            what = "embedded offline default" if name == registry.default_name() else "embedded, works offline"
            return f"{what} ({why}; Hub models load from the Hub or its local cache)"
        if kind == "hub":
            rev = e["revision"][:7] if len(e["revision"]) == 40 else e["revision"]
            return f"from the Hugging Face Hub ({e['repo']}@{rev}), {licence}"
        if kind == "local":
            return f"from the local file {registry.local_path(name)}, {licence}"
        return f"local copy needed (not on the Hub; published at {e.get('upstream')}), {licence}"

    def choices(self) -> list:
        """(label, value) pairs for the dropdown: the env model first, then the registry."""
        out = []
        if self.env_model and not registry.has(self.env_model):
            out.append((f"{Path(self.env_model).name or self.env_model} (FACEGEN_MODEL)", self.env_model))
        for n in registry.names():
            e = registry.get(n)
            res = e.get("resolution")
            where = {"embedded": "embedded", "hub": "Hub", "local": "local file",
                     "missing": "local copy needed"}[registry.where(n)]
            out.append((f"{n} ({res} px, {where})" if res else n, n))
        return out

    # -- loading --------------------------------------------------------------------------------
    def loaded(self, name: str) -> bool:
        return name in self._cache

    def get(self, name: Optional[str] = None):
        """The generator for `name` (registry name, folder, pickle or hf:// reference), cached."""
        name = (name or self.default()).strip()
        with self._lock:
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
            lock = self._load_locks.setdefault(name, threading.Lock())
        with lock:  # one load per name at a time; others wait for it
            with self._lock:
                if name in self._cache:
                    return self._cache[name]
            from facegen.engine.loaders import load_generator
            try:
                G = load_generator(name)
            except FacegenError:
                raise
            except Exception as e:   # a load that breaks unexpectedly (bad config, out of memory): nothing cached
                raise UnsupportedModelError(f"Loading '{name}' failed ({type(e).__name__}: {e}); nothing was "
                                            "loaded from it.") from e
            G.meta.setdefault("name", name)
            G.fingerprint  # compute once, now
            with self._lock:
                self._cache[name] = G
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
            return G

    def pack(self, name_or_G=None):
        """The feature pack of a model (:func:`facegen.packs.pack.find_pack`, by fingerprint), cached per
        fingerprint; None when it has none (the tabs then use their no-pack fallbacks)."""
        from facegen.packs.pack import find_pack
        G = name_or_G if hasattr(name_or_G, "fingerprint") else self.get(name_or_G)
        fp = G.fingerprint
        with self._lock:
            if fp in self._packs:
                return self._packs[fp]
        pack = find_pack(G)
        with self._lock:
            self._packs[fp] = pack
        return pack

    def describe(self, name: str) -> str:
        """One line for the banner: name, size, fingerprint, reason, pack."""
        G = self.get(name)
        label = Path(name).name if name == self.env_model else name
        pack = self.pack(G)
        side = pack.describe() if pack is not None else "no feature pack: the tabs use their generic fallbacks"
        return (f"{label} — {G.img_resolution}×{G.img_resolution} px, {G.num_ws} style layers, "
                f"fingerprint {G.fingerprint} — {self.reason(name)} — {side}")


_MODELS: Optional[ModelManager] = None


def models() -> ModelManager:
    """The process-wide manager (created on first use, reading the environment then)."""
    global _MODELS
    if _MODELS is None:
        _MODELS = ModelManager()
    return _MODELS


def device_for(G):
    """Move G to the best device (inside a spaces.GPU call on ZeroGPU) and return it."""
    from facegen.engine.device import pick_device
    dev = pick_device()
    if G.mapping.w_avg.device != dev:
        G.to(dev)
    return G


def cpu_threads(G) -> int:
    """FACEGEN_THREADS, else 1 thread for small generators (<= 128 px): their convolutions are too
    small to split, and extra threads only spin against other work on a shared CPU (measured: 4 faces
    of 64 px took 0.03 s with 1 thread, 1.1 s with 2 threads on 2 busy cores); all cores otherwise."""
    from facegen.engine.device import configure_cpu_threads
    n = int(os.environ.get("FACEGEN_THREADS", "0")) or (1 if G.img_resolution <= 128 else os.cpu_count() or 1)
    return configure_cpu_threads(n)


def default_layer_range(num_ws: int) -> tuple:
    """5-8, as the seeprettyface site recommends, clipped for small generators."""
    return min(5, num_ws - 1), min(8, num_ws - 1)


# ---------------------------------------------------------------------------
# Faces and the shelf
# ---------------------------------------------------------------------------


def thumbnail(img: np.ndarray, size: int = THUMB) -> np.ndarray:
    if img.shape[0] <= size:
        return img
    from PIL import Image
    return np.asarray(Image.fromarray(img).resize((size, size), Image.LANCZOS))


@dataclass
class Face:
    ws: np.ndarray                       # [num_ws, w_dim] float32
    thumb: np.ndarray                    # uint8 [h, w, 3]
    fingerprint: Optional[str]
    model: str = ""
    label: str = ""
    token: Optional[str] = None          # share token that recreates it ("12@0.7"), None if not seed-made
    warning: str = ""

    def caption(self, index: int) -> str:
        return f"#{index} {self.label}" + (" ⚠ other generator" if self.warning else "")


@dataclass
class Shelf:
    """A session's faces. Lives in a per-session gr.State; never shared between sessions."""
    faces: list = field(default_factory=list)

    def __len__(self):
        return len(self.faces)

    def add(self, face: Face) -> int:
        if len(self.faces) >= MAX_SHELF:
            raise InputError(f"The shelf is full ({MAX_SHELF} faces); remove some first.")
        self.faces.append(face)
        return len(self.faces)

    def get(self, number: int) -> Face:
        if not 1 <= number <= len(self.faces):
            have = f"#1 to #{len(self.faces)}" if self.faces else "none yet"
            raise InputError(f"There is no face #{number} on the shelf ({have}).")
        return self.faces[number - 1]

    def remove(self, number: int) -> Face:
        face = self.get(int(number))
        del self.faces[int(number) - 1]
        return face

    def clear(self):
        self.faces.clear()

    def gallery(self) -> list:
        return [(f.thumb, f.caption(i + 1)) for i, f in enumerate(self.faces)]

    # -- files ----------------------------------------------------------------------------------
    def export_bytes(self) -> bytes:
        if not self.faces:
            raise InputError("The shelf is empty: nothing to export.")
        shapes = {f.ws.shape for f in self.faces}
        if len(shapes) != 1:
            raise LatentError("The shelf holds faces from generators of different sizes; remove those that "
                              "do not belong to the active model before exporting.")
        ws = np.stack([f.ws for f in self.faces])
        fps = [f.fingerprint for f in self.faces]
        common = fps[0] if len(set(fps)) == 1 else None
        return L.latent_bytes(ws, fingerprint=common, faces=[
            {"label": f.label, "model": f.model, "fingerprint": f.fingerprint, "token": f.token} for f in self.faces])

    def import_file(self, path, G, model: str, synth) -> list:
        """Add every latent in a .npz/.npy file; returns warning strings (fingerprint mismatches).

        `synth(ws) -> uint8 images` renders the thumbnails."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FingerprintMismatchWarning)
            ws, meta = L.load_latent(path, G)
        notes = [str(w.message) for w in caught if issubclass(w.category, FingerprintMismatchWarning)]
        ws = ws.reshape(-1, G.num_ws, G.w_dim)
        room = MAX_SHELF - len(self.faces)
        if ws.shape[0] > room:
            raise InputError(f"{Path(path).name} holds {ws.shape[0]} faces but the shelf has room for {room}.")
        per_face = meta.get("faces") if isinstance(meta.get("faces"), list) else []
        fp_file = meta.get("fingerprint")
        name = Path(path).name
        if not fp_file and not per_face:
            notes.append(f"{name} carries no generator fingerprint: if it was made with another generator, "
                         "the face will not be the same.")
        for i, img in enumerate(synth(ws)):
            info = per_face[i] if i < len(per_face) and isinstance(per_face[i], dict) else {}
            fp = info.get("fingerprint") or fp_file
            warn = ""
            if fp and fp != G.fingerprint:
                warn = f"made with generator {fp}, active is {G.fingerprint}"
                if not notes:
                    notes.append(f"{name} was made with generator {fp}, but the active generator is "
                                 f"{G.fingerprint}: the face will not be the same.")
            label = str(info.get("label") or (f"{name}[{i}]" if ws.shape[0] > 1 else name))[:40]
            token = info.get("token") if fp == G.fingerprint else None
            self.add(Face(ws[i].copy(), thumbnail(img), fp, model, label, token if isinstance(token, str) else None, warn))
        return notes


# ---------------------------------------------------------------------------
# Face specs: "0-3, 12, 7@0.5c4, #2"
# ---------------------------------------------------------------------------

_TOKEN = re.compile(r"@(?P<bank>[A-Za-z][\w .'-]*)|#(?P<shelf>\d+)|(?P<seed>\d+)\s*(?:-\s*(?P<end>\d+)|@\s*(?P<psi>[-+]?\d*\.?\d+)(?:c(?P<cut>\d+))?)?")


@dataclass
class FaceRef:
    seed: Optional[int] = None
    psi: Optional[float] = None          # None: the tab's ψ
    cutoff: Optional[int] = None
    shelf: Optional[int] = None          # 1-based shelf number
    bank: Optional[str] = None           # a named face of a latent bank made for the active generator

    def label(self) -> str:
        """How a person reads this face: '@Name', '#2' or 'seed 7'."""
        if self.bank is not None:
            return "@" + self.bank
        return f"#{self.shelf}" if self.shelf is not None else f"seed {self.seed}"

    def token(self, tab_psi: float, shelf: Optional[Shelf] = None) -> Optional[str]:
        """The share token for this face, or None when it cannot be recreated from a seed or bank name."""
        if self.bank is not None:
            return "@" + self.bank
        if self.shelf is not None:
            tok = shelf.get(self.shelf).token if shelf is not None else None
            m = re.fullmatch(r"(\d+)@([-+]?[\d.]+)", tok or "")
            return m.group(1) if m and float(m.group(2)) == float(tab_psi) else tok
        if self.psi is None or (self.psi == tab_psi and self.cutoff is None):
            return str(self.seed)
        return seed_token(self.seed, self.psi, self.cutoff)


def seed_token(seed: int, psi: float, cutoff: Optional[int] = None) -> str:
    return f"{seed}@{psi:g}" + (f"c{cutoff}" if cutoff else "")


def parse_faces(text, max_count: int = MAX_FACES, what: str = "faces") -> list:
    text = str(text if text is not None else "").strip()
    if not text:
        raise InputError(f"No {what} given: type seeds like '0-3' or shelf faces like '#1'.")
    refs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = _TOKEN.fullmatch(part)
        if not m:
            raise InputError(f"Cannot read '{part}' in {what} '{text}': use seeds ('12'), ranges ('0-3'), "
                             "a seed at its own ψ ('12@0.5'), shelf faces ('#2') or bank faces ('@Name').")
        if m.group("bank"):
            refs.append(FaceRef(bank=m.group("bank").strip()))
            continue
        if m.group("shelf"):
            refs.append(FaceRef(shelf=int(m.group("shelf"))))
            continue
        a = int(m.group("seed"))
        b = int(m.group("end")) if m.group("end") else a
        if b < a:
            raise InputError(f"Seed range '{part}' runs backwards.")
        if len(refs) + b - a + 1 > max_count:
            raise InputError(f"Too many {what} in '{text}' (at most {max_count}).")
        if b > L.MAX_SEED:
            raise InputError(f"Seed {b} is out of range (0 to {L.MAX_SEED}).")
        psi = L.check_psi(float(m.group("psi"))) if m.group("psi") else None
        cut = int(m.group("cut")) if m.group("cut") else None
        refs.extend(FaceRef(seed=s, psi=psi, cutoff=cut) for s in range(a, b + 1))
    if len(refs) > max_count:
        raise InputError(f"Too many {what} (at most {max_count}).")
    return refs


def resolve_faces(G, refs: Sequence[FaceRef], psi: float, shelf: Optional[Shelf] = None) -> tuple:
    """-> (ws float32 [N, num_ws, w_dim], warnings). Seeds go through the mapping network."""
    psi = L.check_psi(psi)
    out, notes = [], []
    for r in refs:
        if r.bank is not None:
            out.append(torch.from_numpy(bank_face(G, r.bank)).unsqueeze(0))
        elif r.shelf is not None:
            face = (shelf or Shelf()).get(r.shelf)
            if face.ws.shape != (G.num_ws, G.w_dim):
                raise LatentError(f"Shelf face #{r.shelf} has shape {list(face.ws.shape)}, which does not fit the "
                                  f"active generator ([{G.num_ws}, {G.w_dim}]); it was made with another model.")
            if face.fingerprint and face.fingerprint != G.fingerprint:
                notes.append(f"Shelf face #{r.shelf} was made with generator {face.fingerprint}, but the active "
                             f"generator is {G.fingerprint}: it will not look the same.")
            out.append(torch.from_numpy(face.ws).unsqueeze(0))
        else:
            p = psi if r.psi is None else r.psi
            out.append(L.seeds_to_ws(G, [r.seed], psi=p, cutoff=r.cutoff).cpu())
    return torch.cat(out).numpy().astype(np.float32), notes


def bank_face(G, name: str) -> np.ndarray:
    """w+ of the face called `name` in any latent bank made for G (assets/banks, FACEGEN_BANKS)."""
    from facegen.packs.bank import banks_for
    banks = banks_for(G)
    for b in banks:
        if name.lower() in (n.lower() for n in b.names):
            return b.ws[b.index(name)].astype(np.float32)
    known = ", ".join(n for b in banks for n in b.names) or "none: no bank was made for this generator"
    raise InputError(f"No bank face called '{name}' for the active generator (bank faces: {known}).")


def link_tokens(refs: Sequence[FaceRef], psi: float, shelf: Optional[Shelf]) -> Optional[str]:
    toks = [r.token(psi, shelf) for r in refs]
    return None if any(t is None for t in toks) else ",".join(compress_seeds(toks))


def compress_seeds(tokens: Sequence[str]) -> list:
    """['0','1','2','7@0.5'] -> ['0-2','7@0.5'] (plain consecutive seeds become ranges)."""
    out, run = [], []

    def flush():
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
            run.clear()
    for t in tokens:
        if t.isdigit() and (not run or int(t) == run[-1] + 1):
            run.append(int(t))
        else:
            flush()
            if t.isdigit():
                run.append(int(t))
            else:
                out.append(t)
    flush()
    return out


# ---------------------------------------------------------------------------
# Computation (picklable in, picklable out)
# ---------------------------------------------------------------------------


def check_noise(noise_mode: str) -> str:
    from facegen.engine.synthesis import NOISE_MODES
    if noise_mode not in NOISE_MODES:
        raise InputError(f"Noise mode must be one of {', '.join(NOISE_MODES)} (got '{noise_mode}').")
    return noise_mode


def expand_seeds(seeds, count: int, rng: Optional[np.random.Generator] = None) -> list:
    """The generate tab's seeds: a list/range as typed; one seed with count N -> N consecutive seeds;
    empty -> N random seeds."""
    count = int(count)
    if not 1 <= count <= MAX_FACES:
        raise InputError(f"Count must be between 1 and {MAX_FACES} (got {count}).")
    text = str(seeds if seeds is not None else "").strip()
    if not text:
        rng = rng or np.random.default_rng()
        return sorted(int(s) for s in rng.choice(100_000, size=count, replace=False))
    seeds = L.parse_seeds(text, max_count=MAX_FACES)
    if len(seeds) == 1 and count > 1:
        if seeds[0] + count - 1 > L.MAX_SEED:
            raise InputError(f"Seeds {seeds[0]}+{count} run past {L.MAX_SEED}.")
        seeds = list(range(seeds[0], seeds[0] + count))
    if len(seeds) > MAX_FACES:
        raise InputError(f"Too many faces ({len(seeds)}; at most {MAX_FACES} per run).")
    return seeds


def synth(G, ws, noise_mode: str = "const", transform: Optional[np.ndarray] = None) -> np.ndarray:
    from facegen.engine.synthesis import synthesize
    return synthesize(G, ws, check_noise(noise_mode), transform=transform)


MAX_TRANSLATE = 1.0     # image widths, either way
MAX_ROTATE = 180.0      # degrees, either way


def takes_transform(G) -> bool:
    """Whether G's synthesis takes a per-call translate / rotate (StyleGAN3: its Fourier input has a
    3x3 ``transform``)."""
    return hasattr(getattr(G.synthesis, "input", None), "transform")


def check_transform(G, translate_x=0.0, translate_y=0.0, rotate=0.0) -> Optional[np.ndarray]:
    """The 3x3 input transform for translate (image widths, + moves the content right / down) and
    rotate (degrees, + counter-clockwise), or None when all three are 0: the generator's stored
    transform is used then (the identity in NVIDIA's published files), so 0 gives the plain image.
    Non-zero values replace the stored transform, as the published generate scripts do. Raises
    InputError for values out of range or a generator that cannot move its image (StyleGAN2)."""
    vals = {"translate x": translate_x, "translate y": translate_y, "rotate": rotate}
    try:
        tx, ty, rot = (float(v or 0.0) for v in vals.values())
    except (TypeError, ValueError):
        raise InputError(f"Translate and rotate must be numbers (got {list(vals.values())}).") from None
    for (name, v), lim, unit in zip(zip(vals, (tx, ty, rot)), (MAX_TRANSLATE, MAX_TRANSLATE, MAX_ROTATE),
                                    ("image widths", "image widths", "degrees")):
        if not np.isfinite(v) or abs(v) > lim:
            raise InputError(f"{name.capitalize()} must be between -{lim:g} and {lim:g} {unit} (got {v:g}).")
    if tx == ty == rot == 0.0:
        return None
    if not takes_transform(G):
        raise InputError("Translate and rotate need a StyleGAN3 generator (its input can be moved); this "
                         "generator is StyleGAN2: set them to 0.")
    from facegen.engine.stylegan3 import transform_matrix
    return transform_matrix((tx, ty), rot).astype(np.float32)


def generate_faces(model: str, seeds: list, psi: float, cutoff: Optional[int], noise_mode: str,
                   class_index: int = 0, translate_x: float = 0.0, translate_y: float = 0.0,
                   rotate: float = 0.0) -> tuple:
    """-> (images uint8 [N, R, R, 3], ws float32 [N, num_ws, w_dim]); `class_index` is used by
    class-conditional generators only; translate / rotate (:func:`check_transform`) by StyleGAN3 ones,
    passed to this call's synthesis (the shared generator is never changed)."""
    G = device_for(models().get(model))
    transform = check_transform(G, translate_x, translate_y, rotate)
    ws = L.seeds_to_ws(G, seeds, psi=psi, cutoff=L.check_cutoff(G, cutoff), c=int(class_index or 0))
    return synth(G, ws, noise_mode, transform), ws.cpu().numpy().astype(np.float32)


def render(model: str, ws: np.ndarray, noise_mode: str = "const") -> np.ndarray:
    return synth(device_for(models().get(model)), ws, noise_mode)


def mix_grid(model: str, src_ws: np.ndarray, tpl_ws: np.ndarray, layers: list, noise_mode: str) -> tuple:
    """StyleGAN-paper grid: rows = sources, columns = templates, cell = source with the
    template's `layers`. -> (grid uint8, cells uint8 [S*T, R, R, 3], cell ws [S*T, num_ws, w_dim])."""
    G = device_for(models().get(model))
    src, tpl = torch.from_numpy(src_ws), torch.from_numpy(tpl_ws)
    cells = torch.cat([L.style_mix(src[i:i + 1].expand(len(tpl), -1, -1), tpl, layers) for i in range(len(src))])
    imgs = synth(G, torch.cat([src, tpl, cells]), noise_mode)
    s, t = len(src), len(tpl)
    src_img, tpl_img, cell_img = imgs[:s], imgs[s:s + t], imgs[s + t:]
    R = imgs.shape[1]
    grid = np.full(((s + 1) * R, (t + 1) * R, 3), 255, np.uint8)
    for j in range(t):
        grid[:R, (j + 1) * R:(j + 2) * R] = tpl_img[j]
    for i in range(s):
        grid[(i + 1) * R:(i + 2) * R, :R] = src_img[i]
        for j in range(t):
            grid[(i + 1) * R:(i + 2) * R, (j + 1) * R:(j + 2) * R] = cell_img[i * t + j]
    return grid, cell_img, cells.numpy()


def fuse_faces(model: str, ws: np.ndarray, weights: Optional[list], layers: Optional[list], steps: int,
               noise_mode: str) -> tuple:
    """-> (fused image uint8 [R, R, 3], fused ws [num_ws, w_dim], strip uint8 [R, steps*R, 3] or None)."""
    G = device_for(models().get(model))
    lat = [torch.from_numpy(w) for w in ws]
    fused = L.fuse(lat, weights, layers)
    batch = [fused.unsqueeze(0)]
    steps = int(steps)
    if steps:
        ts = np.linspace(0, 1, steps)
        batch.append(torch.stack([L.lerp(lat[0], lat[1], float(t)) for t in ts]))
    imgs = synth(G, torch.cat(batch), noise_mode)
    strip = np.concatenate(list(imgs[1:]), axis=1) if steps else None
    return imgs[0], fused.numpy(), strip


def parse_weights(text, n: int) -> Optional[list]:
    text = str(text if text is not None else "").strip()
    if not text:
        return None
    try:
        w = [float(x) for x in re.split(r"[,\s]+", text) if x]
    except ValueError:
        raise InputError(f"Cannot read weights '{text}': use numbers separated by commas, e.g. '1, 1, 2'.") from None
    if len(w) != n:
        raise InputError(f"{len(w)} weights for {n} faces: give one weight per face (or none for equal weights).")
    return w


# ---------------------------------------------------------------------------
# Share links
# ---------------------------------------------------------------------------

# Every parameter a link may carry, per tab, with its type and default. Anything else is ignored.
LINK_SCHEMA = {
    "generate": {"seeds": (str, "0-3"), "psi": (float, 0.7), "cutoff": (int, 0), "noise": (str, "const"),
                 "cls": (int, 0), "tx": (float, 0.0), "ty": (float, 0.0), "rot": (float, 0.0)},
    "mix": {"src": (str, "0-3"), "tpl": (str, "10-12"), "lo": (int, None), "hi": (int, None),
            "psi": (float, 0.7), "noise": (str, "const")},
    "fuse": {"faces": (str, "1,2"), "weights": (str, ""), "lo": (int, None), "hi": (int, None),
             "psi": (float, 0.7), "steps": (int, 7), "noise": (str, "const")},
}


def encode_link(tab: str, model: Optional[str] = None, **params) -> str:
    """-> '?tab=mix&model=mini&src=0-3&...' (model omitted when None)."""
    if tab not in LINK_SCHEMA:
        raise InputError(f"Unknown tab '{tab}' for a share link.")
    q = {"tab": tab}
    if model:
        q["model"] = model
    for k, (typ, _) in LINK_SCHEMA[tab].items():
        v = params.get(k)
        if v is None or v == "":
            continue
        q[k] = f"{v:g}" if isinstance(v, float) else str(v)
    return "?" + urlencode(q, safe=",@#-")


def decode_link(query: Mapping) -> Optional[dict]:
    """Query params -> {'tab', 'model', params..., 'problems': [...]} or None when no tab is named.
    Values that do not parse fall back to the defaults and are listed in 'problems'."""
    q = {str(k): str(v) for k, v in dict(query).items()}
    tab = q.get("tab")
    if not tab:
        return None
    if tab not in LINK_SCHEMA:
        return {"tab": None, "problems": [f"unknown tab '{tab}'"]}
    out, problems = {"tab": tab, "model": q.get("model") or None}, []
    for k, (typ, default) in LINK_SCHEMA[tab].items():
        if k not in q:
            out[k] = default
            continue
        try:
            v = typ(q[k])
            if typ is float and not np.isfinite(v):
                raise ValueError
            out[k] = v[:200] if isinstance(v, str) else v
        except ValueError:
            problems.append(f"{k}={q[k]!r} is not a valid {typ.__name__}")
            out[k] = default
    out["problems"] = problems
    return out


def npz_bytes(ws: np.ndarray, G, **meta) -> bytes:
    return L.latent_bytes(ws, fingerprint=G.fingerprint, **meta)


__all__ = ["ModelManager", "models", "Face", "Shelf", "FaceRef", "parse_faces", "resolve_faces", "encode_link",
           "decode_link", "generate_faces", "mix_grid", "fuse_faces", "expand_seeds", "default_layer_range"]

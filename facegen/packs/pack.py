"""Feature packs: everything a tab needs for one generator beyond its weights.

A pack is a folder (or a Hub repo with the same files) keyed by the generator fingerprint
(:mod:`facegen.engine.fingerprint`). Its manifest, ``pack.json``::

    {
      "format": "facegen-pack", "format_version": 1,
      "name": "mini",                                  # a title; the fingerprint is the key
      "generator": {"fingerprint": "2c0e...", "name": "mini", "resolution": 64, "num_ws": 10, "w_dim": 128},
      "labeller": "world",                             # facegen.labels.base.LABELLERS name the pack was built with
      "perceptual": "labeller",                        # the encoder's refinement loss: labeller | discriminator | pixels
      "components": {                                   # every path relative to the pack folder
        "directions": "directions/directions.npz",     # facegen.packs.directions.DirectionSet
        "encoder": "encoder",                           # facegen.packs.encoder.Encoder folder
        "classifier": "classifier",                     # class sampler: classifier over the labeller's classes,
        "zcodes": "zcode",                              #   z-code nets and fine-tuned siblings (registry names)
        "finetuned": {"glasses": "mini-glasses"},
        "classes": "classes/sampler.npz",              # facegen.packs.classes.ClassSampler (any labeller)
        "banks": ["banks/mini-world-characters.npz"],  # latent banks ("celebrities")
        "alignment": "alignment.json",                  # faceswap / encoder alignment template (5 landmarks)
        "recipes": "recipes.json",                      # facegen.packs.recipes: best customisation recipe per class
        "discriminator": "discriminator.safetensors"
      },
      "provenance": {"command": "python -m facegen pack build ...", "upstream": "..."},
      "metrics": "metrics.json"
    }

Packs are found (:func:`find_pack`) in this order: the folders in ``FACEGEN_PACKS`` (``os.pathsep``
separated; a pack folder or a folder of pack folders), the shipped ``assets/packs/*``, then the Hub
repo a registry entry names as its ``pack`` (``{"repo": ..., "revision": ...}``), through the same
``huggingface_hub`` code path as generators. A pack whose fingerprint is not the active generator's is
refused with :class:`PackMismatchError`. Manifests hold relative paths only; a path that leaves the
pack folder is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from facegen.engine.errors import InputError, ModelNotFoundError
from facegen.engine.paths import ASSETS

FORMAT = "facegen-pack"
FORMAT_VERSION = 1
MANIFEST = "pack.json"
PACKS_DIR = ASSETS / "packs"
#: Components a manifest may name, and whether each is a path (file / folder), a list of paths, or data.
COMPONENTS = {"directions": "path", "encoder": "path", "classifier": "path", "zcodes": "path",
              "finetuned": "data", "conditional": "data", "banks": "paths", "alignment": "path",
              "discriminator": "path", "localiser": "path", "classes": "path", "recipes": "path"}
PERCEPTUAL = ("labeller", "discriminator", "pixels")


class PackError(ModelNotFoundError):
    """A pack folder or manifest that cannot be used."""


class PackMismatchError(PackError):
    """The pack belongs to another generator (its fingerprint differs)."""


@dataclass
class Pack:
    """A pack folder and its manifest. Components are read by the modules that own their formats
    (``pack.path("directions")`` -> :func:`facegen.packs.directions.load_directions`)."""
    root: Path
    manifest: dict = field(default_factory=dict)

    # -- identity -----------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.root.name)

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["generator"]["fingerprint"])

    @property
    def labeller(self) -> Optional[str]:
        return self.manifest.get("labeller")

    @property
    def perceptual(self) -> str:
        return self.manifest.get("perceptual") or "pixels"

    @property
    def components(self) -> dict:
        return dict(self.manifest.get("components") or {})

    # -- components ----------------------------------------------------------
    def has(self, component: str) -> bool:
        value = self.components.get(component)
        if value in (None, "", [], {}):
            return False
        if COMPONENTS.get(component) == "path":
            return self.path(component).exists()
        return True

    def get(self, component: str, default=None):
        return self.components.get(component, default)

    def _inside(self, rel: str) -> Path:
        if Path(rel).is_absolute():
            raise PackError(f"Pack '{self.name}' names an absolute path ({rel}); manifests hold relative paths only.")
        p = (self.root / rel).resolve()
        if self.root.resolve() not in (p, *p.parents):
            raise PackError(f"Pack '{self.name}' names a path outside its folder ({rel}).")
        return p

    def path(self, component: str) -> Path:
        rel = self.components.get(component)
        if not isinstance(rel, str) or not rel:
            raise PackError(f"Pack '{self.name}' has no {component}.")
        return self._inside(rel)

    def paths(self, component: str) -> list:
        rels = self.components.get(component) or []
        return [self._inside(r) for r in ([rels] if isinstance(rels, str) else rels)]

    def metrics(self) -> dict:
        rel = self.manifest.get("metrics")
        p = self._inside(rel) if rel else None
        return json.loads(p.read_text()) if p is not None and p.is_file() else {}

    # -- checks -------------------------------------------------------------
    def matches(self, G) -> bool:
        return self.fingerprint == G.fingerprint

    def check_generator(self, G) -> "Pack":
        if not self.matches(G):
            gen = self.manifest["generator"]
            raise PackMismatchError(
                f"The pack '{self.name}' ({self.root}) was built for generator {self.fingerprint} "
                f"('{gen.get('name', '?')}', {gen.get('resolution', '?')} px), but the active generator is "
                f"{G.fingerprint} ('{G.meta.get('name', '?')}'). Build one for it: python -m facegen pack build "
                f"--model MODEL --labeller LABELLER --out DIR.")
        return self

    def describe(self) -> str:
        have = [c for c in COMPONENTS if self.has(c)]
        return f"pack '{self.name}' ({', '.join(have) or 'no components'}; labeller {self.labeller or 'none'})"

    # -- reading / writing --------------------------------------------------------
    @classmethod
    def load(cls, folder: Union[str, Path]) -> "Pack":
        folder = Path(folder)
        f = folder / MANIFEST
        if not f.is_file():
            raise PackError(f"{folder} is not a facegen pack (no {MANIFEST}).")
        try:
            manifest = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PackError(f"{f} is not valid JSON ({e}).") from None
        check_manifest(manifest, f)
        return cls(folder, manifest)

    def save(self) -> Path:
        check_manifest(self.manifest, self.root / MANIFEST)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MANIFEST).write_text(json.dumps(self.manifest, indent=2) + "\n")
        return self.root / MANIFEST


def new_manifest(G, name: str, labeller: Optional[str], perceptual: str = "pixels", **extra) -> dict:
    """A manifest for generator G with no components yet."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "name": name,
            "generator": {"fingerprint": G.fingerprint, "name": G.meta.get("name"), "resolution": G.img_resolution,
                          "num_ws": G.num_ws, "w_dim": G.w_dim},
            "labeller": labeller, "perceptual": perceptual, "components": {}, **extra}


def check_manifest(m: dict, where) -> None:
    """Refuse manifests that are not facegen packs or that hold unknown / absolute paths."""
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise PackError(f"{where} is not a facegen pack manifest (format must be '{FORMAT}').")
    if int(m.get("format_version", 0)) > FORMAT_VERSION:
        raise PackError(f"{where} has pack format version {m.get('format_version')}; this facegen reads up to "
                        f"{FORMAT_VERSION}: update facegen.")
    fp = (m.get("generator") or {}).get("fingerprint")
    if not isinstance(fp, str) or len(fp) != 16:
        raise PackError(f"{where} names no generator fingerprint (generator.fingerprint, 16 hex digits).")
    if m.get("perceptual", "pixels") not in PERCEPTUAL:
        raise PackError(f"{where}: perceptual must be one of {', '.join(PERCEPTUAL)}.")
    comps = m.get("components") or {}
    unknown = sorted(set(comps) - set(COMPONENTS))
    if unknown:
        raise PackError(f"{where} names unknown components {unknown} (known: {', '.join(COMPONENTS)}).")
    for k, v in comps.items():
        for rel in ([v] if isinstance(v, str) else v if COMPONENTS[k] == "paths" else []):
            if COMPONENTS[k] != "data" and (Path(rel).is_absolute() or ".." in Path(rel).parts):
                raise PackError(f"{where}: component '{k}' path {rel!r} must be relative and inside the pack.")


# ---------------------------------------------------------------------------
# Finding a generator's pack
# ---------------------------------------------------------------------------

def pack_folders() -> list:
    """Candidate pack folders in search order: FACEGEN_PACKS entries, then assets/packs/*."""
    out = []
    for s in [s for s in os.environ.get("FACEGEN_PACKS", "").split(os.pathsep) if s.strip()] + [str(PACKS_DIR)]:
        p = Path(s)
        if (p / MANIFEST).is_file():
            out.append(p)
        elif p.is_dir():
            out += sorted(d for d in p.iterdir() if (d / MANIFEST).is_file())
    return out


_READ: dict = {}


def _read(folder: Path) -> Optional[Pack]:
    f = folder / MANIFEST
    key = (str(f.resolve()), f.stat().st_mtime_ns)
    if key not in _READ:
        try:
            _READ[key] = Pack.load(folder)
        except PackError:
            _READ[key] = None   # a broken pack elsewhere must not stop the search
    return _READ[key]


def hub_pack_reference(G) -> Optional[dict]:
    """The pack repo the registry names for G's registry entry ({"repo", "revision"}), if any."""
    from facegen.engine import registry
    name = G.meta.get("name")
    if not name or not registry.has(name):
        return None
    return registry.get(name).get("pack")


def load_pack(source: Union[str, Path], G=None, **hub_kwargs) -> Pack:
    """A pack from a folder or a Hub reference (``hf://OWNER/REPO[@REVISION]``); with G, it must match G."""
    from facegen.engine import hub
    s = str(source)
    if not Path(s).exists() and hub.is_hub_reference(s):
        ref = hub.parse_reference(s)
        folder = hub.snapshot(ref.repo_id, ref.revision, **hub_kwargs)
        pack = Pack.load(Path(folder) / ref.filename if ref.filename else folder)
    else:
        pack = Pack.load(s)
    return pack.check_generator(G) if G is not None else pack


def find_pack(G, hub: bool = True) -> Optional[Pack]:
    """G's pack (matched by fingerprint): FACEGEN_PACKS, assets/packs/, then the Hub repo its registry
    entry names. None when there is none (the features then use their no-pack fallbacks)."""
    for folder in pack_folders():
        pack = _read(folder)
        if pack is not None and pack.matches(G):
            return pack
    ref = hub_pack_reference(G) if hub else None
    if ref:
        source = f"hf://{ref['repo']}" + (f"@{ref['revision']}" if ref.get("revision") else "")
        try:
            return load_pack(source, G)
        except PackMismatchError:
            raise
        except ModelNotFoundError:   # offline / missing: the fallbacks say so
            return None
    return None


def require(pack: Optional[Pack], component: str, feature: str) -> Path:
    """The path of `component` in `pack`, or InputError naming the feature that needs it."""
    if pack is None or not pack.has(component):
        raise InputError(f"{feature} needs a pack with {component} for this generator"
                         + (f" (its pack '{pack.name}' has none)" if pack is not None else " (it has no pack)") + ".")
    return pack.path(component)

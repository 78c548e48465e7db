"""The model registry: known generators and assets by name (data in ``registry.json``).

``load_generator("mini")`` resolves here. An entry names its format, where its file lives, its
licence and upstream, and -- where known -- the sha256 and byte size of that file, which are
checked after download and *before* anything is unpickled (a mismatch is a ``ChecksumError``).

Entry fields (``models`` and ``assets`` alike):

* ``name`` -- unique; ``format`` -- ``embedded`` | ``hub-native`` | ``stylegan2-tf-pkl`` |
  ``stylegan2-ada-pkl`` for models, ``dlib-shape-predictor`` for assets (the pickle loader tells
  TF from PyTorch pickles by their content, so ``format`` only documents the release);
* the location, at most one of
  - ``repo`` + ``file`` + ``revision``: a file in a Hugging Face Hub repo; ``revision`` is a full
    40-hex commit id where known, else a branch such as ``"main"`` (required);
  - ``path``: a local file or folder (embedded models: relative to the repository root; in a
    ``FACEGEN_REGISTRY`` file: relative to that file);
  - neither: the file is not on the Hub (e.g. seeprettyface's Google Drive releases); the entry
    names its ``upstream`` and loading it says how to supply a local copy;
* ``sha256`` (64 hex) and ``size`` (bytes) of the file, where known;
* ``pack``: optional ``{"repo": OWNER/NAME, "revision": ...}``, the Hub repo of its feature pack;
* descriptive: ``upstream``, ``license``, ``description``, ``resolution``, ``default``.

Assets (e.g. dlib's landmark model) are not generators: :func:`names` and the app's dropdown list
models only; :func:`fetch_asset` downloads and checks an asset.

``FACEGEN_REGISTRY`` may name a JSON file of the same shape whose entries take precedence. An entry
with a known name updates that entry: a new ``repo`` or ``path`` replaces the old location (and,
when the old entry had one, its checksums); other fields are kept; ``null`` removes a field. A new
name adds an entry. The merged registry is validated on load; a bad entry is an ``InputError``
naming the file, the entry and what to fix.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

from facegen.engine.errors import InputError, ModelNotFoundError
from facegen.engine.folder import CONFIG_NAME, WEIGHTS_NAME
from facegen.engine.paths import REPO_ROOT

REGISTRY_FILE = Path(__file__).with_name("registry.json")
FORMATS = ("embedded", "hub-native", "stylegan2-tf-pkl", "stylegan2-ada-pkl", "rosinality-pt")
ASSET_FORMATS = ("dlib-shape-predictor", "e4e-checkpoint")
FOLDER_FORMATS = ("embedded", "hub-native")
DEAD_REPOS = ("facegen-studio/",)   # repo ids (prefixes) that never existed on the Hub; refused on load
_WHERE = ("repo", "file", "revision", "path")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


# ---------------------------------------------------------------------------
# Reading, merging, validating
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Registry:
    models: dict     # name -> entry
    assets: dict     # name -> entry
    roots: dict      # (section, name) -> folder that relative `path`s resolve against
    origin: dict     # (section, name) -> the file(s) the entry came from, for messages


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"The registry file {path} does not exist (check FACEGEN_REGISTRY).") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"The registry file {path} is not valid JSON ({e}).") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(s, []), list) for s in ("models", "assets")):
        raise InputError(f"The registry file {path} must hold an object with a 'models' list "
                         "(and optionally an 'assets' list).")
    return data


def _merge(base: Optional[dict], over: dict) -> dict:
    """`over` on top of `base`: a new location replaces the old one (and its checksums, which
    describe the old file); null removes a field."""
    out = dict(base or {})
    if base is not None and ("repo" in over or "path" in over):
        if "repo" in base or "path" in base:
            out.pop("sha256", None)
            out.pop("size", None)
        for k in _WHERE:
            out.pop(k, None)
    out.update(over)
    return {k: v for k, v in out.items() if v is not None}


def _check(e: dict, section: str, where: str) -> None:
    """Validate one merged entry; raise InputError saying which field is wrong and how to fix it."""
    name = e["name"]

    def bad(msg):
        return InputError(f"Registry entry '{name}' ({where}): {msg}")

    formats = FORMATS if section == "models" else ASSET_FORMATS
    fmt = e.get("format")
    if fmt not in formats:
        raise bad(f"format {fmt!r} is not one of {', '.join(formats)}.")
    if "repo" in e and "path" in e:
        raise bad("give either 'repo' (a Hub file) or 'path' (a local copy), not both.")
    if fmt == "embedded" and "path" not in e:
        raise bad("an embedded model needs 'path', its folder in this repository.")
    if "repo" in e:
        _check_repo(e["repo"], bad)
        if not isinstance(e.get("revision"), str) or not e["revision"].strip():
            raise bad("a Hub entry needs 'revision': a full commit id where known, else a branch such as \"main\".")
        if fmt != "hub-native" and not (isinstance(e.get("file"), str) and e["file"].strip()):
            raise bad("a Hub entry needs 'file', the path of the file inside the repo.")
    elif "path" in e:
        if not isinstance(e["path"], str) or not e["path"].strip():
            raise bad(f"'path' must be a file or folder path (got {e['path']!r}).")
    elif not e.get("upstream"):
        raise bad("give 'repo' + 'file' + 'revision' (a Hub file), 'path' (a local copy), or at least "
                  "'upstream' (where the file is published).")
    if "sha256" in e and not (isinstance(e["sha256"], str) and _SHA256.match(e["sha256"])):
        raise bad(f"'sha256' must be 64 hex digits (got {e['sha256']!r}).")
    if "size" in e and not (type(e["size"]) is int and e["size"] > 0):
        raise bad(f"'size' must be the file's size in bytes, a positive integer (got {e['size']!r}).")
    if fmt in FOLDER_FORMATS and ("sha256" in e or "size" in e):
        raise bad(f"'sha256' / 'size' describe one file, but a {fmt} model is a folder.")
    if "resolution" in e and not (type(e["resolution"]) is int and e["resolution"] > 0):
        raise bad(f"'resolution' must be a positive integer (got {e['resolution']!r}).")
    if "pack" in e:
        p = e["pack"]
        if not isinstance(p, dict) or set(p) - {"repo", "revision"}:
            raise bad("'pack' must be an object {\"repo\": \"OWNER/NAME\", \"revision\": \"...\"}.")
        _check_repo(p.get("repo"), bad, "pack repo")
        if not isinstance(p.get("revision"), str) or not p["revision"].strip():
            raise bad("'pack' needs 'revision': a full commit id where known, else a branch such as \"main\".")


def _check_repo(repo, bad, what: str = "repo") -> None:
    if not isinstance(repo, str) or not _REPO_ID.match(repo):
        raise bad(f"{what} {repo!r} is not a Hub repo id (OWNER/NAME).")
    if repo.startswith(DEAD_REPOS):
        raise bad(f"{what} '{repo}' does not exist on the Hub (an invented id); name the real repo.")


@lru_cache(maxsize=8)
def _load(extra: str, stamp: int) -> _Registry:
    """registry.json, then the FACEGEN_REGISTRY file (`stamp`: its mtime, so an edit is re-read)."""
    found = {"models": {}, "assets": {}}
    roots, origin = {}, {}
    sources = [(REGISTRY_FILE, REPO_ROOT)]
    if extra:
        sources.append((Path(extra), Path(extra).expanduser().resolve().parent))
    for file, root in sources:
        data = _read_json(Path(file).expanduser())
        for section, table in found.items():
            seen = set()
            for raw in data.get(section, []):
                if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"].strip():
                    raise InputError(f"The registry file {file}: every entry in '{section}' needs a 'name' "
                                     f"(got {str(raw)[:80]}).")
                name = raw["name"]
                if name in seen:
                    raise InputError(f"The registry file {file} lists '{name}' twice in '{section}'.")
                seen.add(name)
                key = (section, name)
                if "repo" in raw or "path" in raw or name not in table:
                    roots[key] = root
                origin[key] = f"{origin[key]} + {file}" if name in table else str(file)
                table[name] = _merge(table.get(name), raw)
    for section, table in found.items():
        for name, e in table.items():
            _check(e, section, origin[(section, name)])
    return _Registry(found["models"], found["assets"], roots, origin)


def _registry() -> _Registry:
    extra = os.environ.get("FACEGEN_REGISTRY", "")
    try:
        stamp = Path(extra).expanduser().stat().st_mtime_ns if extra else 0
    except OSError:
        stamp = -1   # missing file: _read_json says so
    return _load(extra, stamp)


# ---------------------------------------------------------------------------
# Lookup
# ---------------------------------------------------------------------------

def entries() -> dict:
    """Generator entries by name (assets excluded)."""
    return _registry().models


def names() -> list:
    return list(entries())


def has(name: str) -> bool:
    return name in entries()


def get(name: str) -> dict:
    try:
        return dict(entries()[name])
    except KeyError:
        raise ModelNotFoundError(f"'{name}' is not in the model registry (known: {', '.join(names())}).") from None


def default_name() -> str:
    return next((n for n, e in entries().items() if e.get("default")), names()[0])


def asset_names() -> list:
    return list(_registry().assets)


def get_asset(name: str) -> dict:
    try:
        return dict(_registry().assets[name])
    except KeyError:
        raise ModelNotFoundError(f"'{name}' is not a registry asset (known: {', '.join(asset_names())}).") from None


def where(name: str) -> str:
    """Where a generator entry lives: 'embedded', 'hub', 'local' (a path) or 'missing' (no copy known:
    not on the Hub, a local copy is needed)."""
    e = get(name)
    if e["format"] == "embedded":
        return "embedded"
    return "hub" if "repo" in e else "local" if "path" in e else "missing"


def local_path(name: str, section: str = "models") -> Optional[Path]:
    """The absolute local path an entry names (None for Hub and missing entries)."""
    e = get(name) if section == "models" else get_asset(name)
    if "path" not in e:
        return None
    p = Path(e["path"]).expanduser()
    return p if p.is_absolute() else (_registry().roots[(section, name)] / p).resolve()


def pack(name: str) -> Optional[dict]:
    """The feature-pack repo an entry names ({"repo", "revision"}), or None."""
    p = get(name).get("pack")
    return dict(p) if p else None


def sha256_file(path) -> str:
    """sha256 of a file (hex), cached per (path, size, mtime); see :func:`facegen.engine.hub.sha256_file`."""
    from facegen.engine import hub
    return hub.sha256_file(path)


# ---------------------------------------------------------------------------
# Fetch (download + check) and load
# ---------------------------------------------------------------------------

def _fetch(e: dict, section: str, **hub_kwargs) -> Path:
    """The entry's file (or folder) on this machine: downloaded through the Hub cache or found at its
    path, then checked against its size and sha256 where the entry names them."""
    from facegen.engine import hub
    name, fmt = e["name"], e["format"]
    if "repo" in e:
        ref = hub.HubReference(e["repo"], e.get("file"), e["revision"])
        if fmt == "hub-native":
            hub.download(ref, CONFIG_NAME, **hub_kwargs)
            return hub.download(ref, WEIGHTS_NAME, **hub_kwargs).parent
        return hub.download(ref, e["file"], sha256=e.get("sha256"), size=e.get("size"), **hub_kwargs)
    if "path" in e:
        p = local_path(name, section)
        if fmt == "embedded":
            if not (p / CONFIG_NAME).exists():
                raise ModelNotFoundError(f"The embedded model '{name}' is missing from {p}; rebuild it with the "
                                         "command in assets/README.md or check out the repository with its assets.")
            return p
        if not p.exists():
            raise ModelNotFoundError(f"Registry entry '{name}' points to {p}, which does not exist. Copy the file "
                                     "there or fix the entry's 'path' (FACEGEN_REGISTRY).")
        if p.is_file() and ("sha256" in e or "size" in e):
            hub.verify_file(p, sha256=e.get("sha256"), size=e.get("size"), what=f"'{name}'",
                            fix=(f"Replace it with the original file ({e.get('upstream', 'see the registry')}), "
                                 "or correct 'sha256' / 'size' in your FACEGEN_REGISTRY entry."))
        return p
    file = e.get("file") or "the file"
    example = json.dumps({"models": [{"name": name, "path": f"/path/to/{e.get('file', name)}"}]})
    raise ModelNotFoundError(
        f"'{name}' is not on the Hugging Face Hub: it is published only at {e['upstream']}. Download {file} "
        f"from there, then load it with FACEGEN_MODEL=/path/to/{e.get('file', 'file')} (or pass the path to "
        f"load_generator), or register the copy: put {example} in a JSON file and set FACEGEN_REGISTRY to it.")


def fetch(name: str, **hub_kwargs) -> Path:
    """A generator's checked local file or folder (downloading it through the Hub cache if needed)."""
    return _fetch(get(name), "models", **hub_kwargs)


def fetch_asset(name: str, **hub_kwargs) -> Path:
    """An asset's checked local file, e.g. ``fetch_asset("dlib-68-landmarks")``."""
    return _fetch(get_asset(name), "assets", **hub_kwargs)

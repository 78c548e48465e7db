"""The model registry: known generators by name (data in ``registry.json``).

``load_generator("mini")`` resolves here. Entries name where a generator lives (a folder
shipped in this repo, or a Hub repo + file + revision), its format, resolution, licence and,
where known, the checksum of the original file. ``FACEGEN_REGISTRY`` may point to an extra
JSON file with more entries (same schema), which take precedence.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from facegen.engine.errors import ModelNotFoundError, UnsupportedModelError

REGISTRY_FILE = Path(__file__).with_name("registry.json")
from facegen.engine.paths import REPO_ROOT  # noqa: E402


@lru_cache(maxsize=None)
def _entries(extra: str = "") -> dict:
    entries = {e["name"]: e for e in json.loads(REGISTRY_FILE.read_text())["models"]}
    if extra:
        entries.update({e["name"]: e for e in json.loads(Path(extra).read_text())["models"]})
    return entries


def entries() -> dict:
    return _entries(os.environ.get("FACEGEN_REGISTRY", ""))


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


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(name: str, **hub_kwargs):
    from facegen.engine import hub
    from facegen.engine.loaders import load_pickle
    e = get(name)
    fmt = e.get("format")
    if fmt == "embedded":
        folder = (REPO_ROOT / e["path"]).resolve()
        if not (folder / hub.CONFIG_NAME).exists():
            raise ModelNotFoundError(f"The embedded model '{name}' is missing from {folder}; rebuild it with the "
                                     "command in assets/README.md or check out the repository with its assets.")
        G = hub.from_pretrained(folder)
    elif fmt in ("stylegan2-tf-pkl", "stylegan2-ada-pkl", "hub-native"):
        ref = hub.HubReference(e["repo"], e.get("file") if fmt != "hub-native" else None, e.get("revision"))
        if fmt == "hub-native":
            G = hub.load_from_hub(ref, **hub_kwargs)
        else:
            path = hub.download(ref, e["file"], **hub_kwargs)
            if e.get("sha256") and sha256_file(path) != e["sha256"]:
                raise UnsupportedModelError(f"{path} does not match the registry checksum of '{name}'.")
            G = load_pickle(path)
    else:
        raise UnsupportedModelError(f"registry entry '{name}' has unknown format {fmt!r}.")
    G.meta.update(name=name, license=e.get("license"), registry_format=fmt)
    return G

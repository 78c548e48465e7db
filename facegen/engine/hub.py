"""Hub-native weights: ``config.json`` + ``model.safetensors``, through ``huggingface_hub``.

Layout of a facegen model folder (and Hub repo), as in ``diffusers``::

    config.json          {"_class_name": "Generator", "_facegen_version": ..., init kwargs..., "meta": {...}}
    model.safetensors    the state dict (official StyleGAN2-ADA parameter names), float32

Hub references name a repo, optionally a file inside it and a revision::

    hf://OWNER/REPO                       a Hub-native repo
    hf://OWNER/REPO@REVISION              ... at a branch, tag or commit
    hf://OWNER/REPO/path/network.pkl      a network pickle inside the repo (converted on load)
    OWNER/REPO                            shorthand for hf://OWNER/REPO

Every download goes through the Hub cache (``HF_HUB_CACHE``), so a repo fetched once loads
offline later. Offline and not cached, or missing, the error says what is missing and how
to get it -- never a traceback. :func:`download` checks a file's size and sha256 (when the
caller knows them) before anyone opens it: a mismatch is a ``ChecksumError`` and the file is
never unpickled. :func:`snapshot` fetches a whole repo folder (feature packs) the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from facegen.engine.errors import ChecksumError, ModelNotFoundError, OfflineError

from facegen.engine.folder import CONFIG_NAME, WEIGHTS_NAME, read_folder, save_pretrained, write_folder  # noqa: F401,E501 (read_folder / write_folder: until every caller imports facegen.engine.folder)

_REF = re.compile(r"^(?:hf://)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?P<path>(?:/[^@]+)?)(?:@(?P<rev>[\w./-]+))?$")


@dataclass
class HubReference:
    repo_id: str
    filename: Optional[str] = None
    revision: Optional[str] = None

    def __str__(self):
        s = f"hf://{self.repo_id}"
        if self.filename:
            s += f"/{self.filename}"
        if self.revision:
            s += f"@{self.revision}"
        return s


def parse_reference(ref: str) -> HubReference:
    m = _REF.match(ref.strip())
    if not m:
        raise ModelNotFoundError(f"'{ref}' is not a Hub reference; expected hf://OWNER/REPO[/FILE][@REVISION].")
    path = m.group("path").lstrip("/") or None
    return HubReference(m.group("repo"), path, m.group("rev"))


def is_hub_reference(ref: str) -> bool:
    if ref.startswith("hf://"):
        return True
    return bool(_REF.match(ref)) and ref.count("/") == 1 and not ref.startswith((".", "/", "~"))


# ---------------------------------------------------------------------------
# The Hub
# ---------------------------------------------------------------------------

def _hub_errors(ref: HubReference, filename: Optional[str], exc: Exception):
    """huggingface_hub's exception -> our typed error with a message that says what to do."""
    from huggingface_hub import errors as hf_errors
    what = f"{filename} from {ref}" if filename else f"the repo {ref}"
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return ModelNotFoundError(f"Hub repo '{ref.repo_id}' does not exist or is private (log in with "
                                  "`hf auth login` for private repos).")
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return ModelNotFoundError(f"Hub repo '{ref.repo_id}' has no revision '{ref.revision}'.")
    if isinstance(exc, hf_errors.EntryNotFoundError) and not isinstance(exc, hf_errors.LocalEntryNotFoundError):
        return ModelNotFoundError(f"Hub repo '{ref.repo_id}' has no file '{filename}'.")
    if isinstance(exc, (hf_errors.LocalEntryNotFoundError, OSError)) or offline:
        how = ("HF_HUB_OFFLINE=1 is set; unset it" if offline else "the Hub cannot be reached; connect to the internet")
        cmd = " ".join(["hf download", ref.repo_id] + ([filename] if filename else [])
                       + ([f"--revision {ref.revision}"] if ref.revision else []))
        return OfflineError(f"Cannot get {what}: it is not in the local Hub cache and {how}, or download it on a "
                            f"connected machine with `{cmd}` and copy the cache "
                            f"(HF_HUB_CACHE={_cache_dir()}).")
    return ModelNotFoundError(f"Cannot get {what}: {type(exc).__name__}: {exc}")


def _cache_dir() -> str:
    from huggingface_hub import constants
    return str(constants.HF_HUB_CACHE)


_REACHABLE: dict = {}


def hub_reachable(timeout: float = 2.0) -> bool:
    """One quick TCP probe of the Hub endpoint (cached for a minute), so that an offline machine
    falls back to the local cache at once instead of waiting through HTTP retries."""
    import socket
    import time
    from urllib.parse import urlparse
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    hit = _REACHABLE.get((host, port))
    if hit and time.monotonic() - hit[1] < 60:
        return hit[0]
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        ok = True
    except OSError:
        ok = False
    _REACHABLE[(host, port)] = (ok, time.monotonic())
    return ok


def download(ref: HubReference, filename: str, sha256: Optional[str] = None, size: Optional[int] = None,
             **hub_kwargs) -> Path:
    """One file of a Hub repo through the Hub cache -> its local path. With `size` / `sha256` the file
    is checked (size first, then the hash) before it is returned, so a wrong file is never opened."""
    from huggingface_hub import hf_hub_download
    if not hub_kwargs.get("local_files_only") and not hub_reachable():
        hub_kwargs["local_files_only"] = True
    try:
        path = Path(hf_hub_download(ref.repo_id, filename, revision=ref.revision, **hub_kwargs))
    except Exception as e:
        raise _hub_errors(ref, filename, e) from None
    if sha256 or size is not None:
        blob = path.resolve()
        rev = f" --revision {ref.revision}" if ref.revision else ""
        verify_file(path, sha256=sha256, size=size, what=f"{filename} from {ref}",
                    fix=(f"Delete the cached copy ({blob}{'' if blob == path else f', linked from {path}'}) and "
                         f"load it again to re-download it, or run `hf download {ref.repo_id} {filename}{rev} "
                         "--force-download`. If it fails again, the Hub file changed: check the registry entry."))
    return path


def snapshot(repo_id: str, revision: Optional[str] = None, allow_patterns=None, **hub_kwargs) -> Path:
    """A whole Hub repo (e.g. a feature pack) through the Hub cache -> its local snapshot folder.

    Same habits as :func:`download`: an unreachable Hub falls back to the cache at once, and a repo
    that is neither cached nor reachable is an ``OfflineError`` that says how to get it."""
    from huggingface_hub import snapshot_download
    if not hub_kwargs.get("local_files_only") and not hub_reachable():
        hub_kwargs["local_files_only"] = True
    ref = HubReference(repo_id, None, revision)
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=allow_patterns, **hub_kwargs))
    except Exception as e:
        raise _hub_errors(ref, None, e) from None


# ---------------------------------------------------------------------------
# File checks (size, sha256)
# ---------------------------------------------------------------------------

_SHA256: dict = {}
_SHA256_LOCK = threading.Lock()


def sha256_file(path) -> str:
    """The file's sha256 (hex), read in 1 MiB chunks. Cached per (real path, size, mtime), so a
    380 MB generator is hashed once per process however often it is loaded; a file rewritten in
    place gets a new mtime and is hashed again."""
    real = Path(path).resolve()
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns)
    with _SHA256_LOCK:
        if key in _SHA256:
            return _SHA256[key]
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _SHA256_LOCK:
        _SHA256[key] = digest
    return digest


def verify_file(path, sha256: Optional[str] = None, size: Optional[int] = None, what: str = "",
                fix: str = "Replace it with the original file.") -> Path:
    """Check `path` against an expected byte size, then sha256 (each only if given); returns the path.

    Raises ChecksumError naming the file, the expected and actual values and `fix` (how to repair it).
    The size is checked first: it costs one stat() and catches truncated downloads at once."""
    path = Path(path)
    what = what or str(path)
    actual = path.stat().st_size
    if size is not None and actual != int(size):
        raise ChecksumError(f"{what} ({path}) has {actual:,} bytes, expected {int(size):,}: it is truncated, "
                            f"corrupt or not the file the registry names. Nothing was loaded from it. {fix}")
    if sha256:
        digest = sha256_file(path)
        if digest != sha256.lower():
            raise ChecksumError(f"{what} ({path}) has sha256 {digest}, expected {sha256.lower()}: it is corrupt "
                                f"or not the file the registry names. Nothing was loaded from it. {fix}")
    return path


def push_to_hub(G, repo_id: str, private: bool = False, token: Optional[str] = None,
                commit_message: str = "Upload facegen generator", **meta) -> str:
    """Save to a temporary folder and upload it as a Hub-native model repo; returns the commit URL."""
    import tempfile
    from huggingface_hub import HfApi
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(G, tmp, **meta)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
    return str(info)

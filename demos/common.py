"""What every tab shares: the GPU decorator, error mapping, the UI context, share-link widgets.

A tab module (``demos/<tab>.py``) defines ``TAB`` (its id, also the ``tab=`` of share links),
``TITLE``, ``available() -> bool`` and ``build(ctx)``, which lays out the tab and wires its
events; ``build`` may register a share-link handler with ``ctx.on_link`` and model-change
updates with ``ctx.on_model``. Event handlers are plain functions; facegen does the work.
"""

from __future__ import annotations

import functools
import os
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import gradio as gr
import numpy as np
from PIL import Image

from facegen import studio
from facegen.engine.errors import FacegenError, FingerprintMismatchWarning, InputError

try:  # ZeroGPU: spaces.GPU(duration=...) schedules a GPU; elsewhere it returns the function unchanged.
    import spaces

    def gpu(duration: int):
        return spaces.GPU(duration=duration)
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    def gpu(duration: int):
        return lambda fn: fn

GPU_QUEUE = "gpu"          # concurrency_id shared by every GPU-bound event
GPU_LIMIT = int(os.environ.get("FACEGEN_GPU_CONCURRENCY", "1"))
GPU_EVENT = dict(concurrency_id=GPU_QUEUE, concurrency_limit=GPU_LIMIT)
NOISE_MODES = ["const", "random", "none"]
NO_PROGRESS = lambda *a, **k: None  # noqa: E731  (for handlers called outside an event)
OUT_DIR = Path(tempfile.gettempdir()) / "facegen-studio"


def ui_errors(fn):
    """facegen's typed errors -> gr.Error with their message (shown in the UI, passed to API clients);
    fingerprint warnings -> gr.Warning toasts."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", FingerprintMismatchWarning)
                out = fn(*args, **kwargs)
            for w in caught:
                if issubclass(w.category, FingerprintMismatchWarning):
                    gr.Warning(str(w.message))
            return out
        except FacegenError as e:
            raise gr.Error(str(e), title="facegen") from None
    return wrapper


def warn_all(notes):
    for n in notes:
        gr.Warning(n)


def out_dir() -> Path:
    """A fresh folder for this request's files (Gradio copies outputs into its cache)."""
    d = OUT_DIR / uuid.uuid4().hex[:12]
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_png(img: np.ndarray, path: Path) -> str:
    Image.fromarray(img).save(path, compress_level=1)
    return str(path)


def save_bytes(data: bytes, path: Path) -> str:
    path.write_bytes(data)
    return str(path)


def share_url(request: Optional[gr.Request], query: Optional[str]) -> str:
    """Absolute link for `query` ('?tab=...'): the page the browser is on, else the server address."""
    if not query:
        return ""
    base = ""
    if request is not None:
        h = request.headers
        ref = h.get("referer") or ""
        if ref.startswith(("http://", "https://")):
            base = ref.split("#")[0].split("?")[0]
        elif h.get("host"):
            proto = h.get("x-forwarded-proto") or "http"
            base = f"{proto}://{h['host']}/"
    return base + query


def not_shareable(reason: str) -> str:
    return f"(no share link: {reason})"


COPY_JS = """(link) => {
  if (link && !link.startsWith('(')) {
    if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(link); }
    else { const t = document.createElement('textarea'); t.value = link; document.body.appendChild(t);
           t.select(); try { document.execCommand('copy'); } catch (e) {} t.remove(); }
  }
  return link;
}"""


def share_row(tab: str) -> gr.Textbox:
    """Textbox with the share link (copyable) plus an explicit copy button (JS clipboard)."""
    with gr.Row(equal_height=True):
        box = gr.Textbox(label="Share link (opens this result)", interactive=False, buttons=["copy"], scale=5,
                         elem_id=f"{tab}-share")
        btn = gr.Button("Copy link", scale=1, size="sm", elem_id=f"{tab}-copy")
    btn.click(None, inputs=box, outputs=box, js=COPY_JS, api_name=f"{tab}_copy_link", api_visibility="private")
    return box


@dataclass
class Ctx:
    """Shared UI pieces handed to every tab's build()."""
    model: gr.Dropdown
    active: gr.State            # name of the model this session really uses (for reverting a failed load)
    banner: gr.Markdown
    shelf: gr.State             # studio.Shelf, one per session
    shelf_gallery: gr.Gallery
    shelf_selected: gr.State    # 1-based number of the selected shelf face (or None)
    num_ws: int                 # of the default model (initial slider ranges)
    c_dim: int = 0              # of the default model (> 0: class-conditional, the generate tab shows a class)
    stylegan3: bool = False     # the default model takes translate / rotate: the generate tab shows them
    link_handlers: dict = field(default_factory=dict)   # tab -> (fn(params, request, shelf) -> dict, outputs)
    model_listeners: list = field(default_factory=list)  # (outputs, fn(G) -> dict)

    def on_link(self, tab: str, fn: Callable, outputs: list):
        self.link_handlers[tab] = (fn, outputs)

    def on_model(self, fn: Callable, outputs: list):
        self.model_listeners.append((outputs, fn))


def load_model(name: str, progress=None):
    """Load (cached) on CPU, outside any GPU slot; typed errors pass through."""
    if progress is not None and not studio.models().loaded(name):
        progress(0.05, desc=f"Loading {name} (a Hub model downloads on first use)")
    return studio.models().get(name)


def banner_text(name: str, error: Optional[str] = None) -> str:
    if error:
        return f"**Model:** ⚠ {error}"
    return f"**Model:** {studio.models().describe(name)}"


def add_faces(shelf: studio.Shelf, images, ws, G, model: str, labels, tokens) -> studio.Shelf:
    for img, w, lab, tok in zip(images, ws, labels, tokens):
        shelf.add(studio.Face(np.asarray(w, np.float32).copy(), studio.thumbnail(np.asarray(img)), G.fingerprint,
                              model, lab, tok))
    return shelf


def last_result_to_shelf(last: Optional[dict], shelf: studio.Shelf, first: str) -> tuple:
    """Put a tab's last result on the shelf -> (shelf, gallery): one face ({model, ws, image, label}) or
    several ({model, ws, images, label}: ws holds one latent per image, all with the same label).
    `first` says what to do when there is no result yet ("Edit a face first.")."""
    if not last:
        raise InputError(first)
    G = load_model(last["model"])
    images, ws = (last["images"], last["ws"]) if "images" in last else ([last["image"]], [last["ws"]])
    add_faces(shelf, images, ws, G, last["model"], [last["label"]] * len(images), [None] * len(images))
    return shelf, shelf.gallery()

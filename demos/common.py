"""What every tab shares: the GPU decorator, the short / long event queues, error mapping, the UI context,
share-link widgets.

A tab module (``demos/<tab>.py``) defines ``TAB`` (its id, also the ``tab=`` of share links),
``TITLE``, ``available() -> bool`` and ``build(ctx)``, which lays out the tab and wires its
events; ``build`` may register a share-link handler with ``ctx.on_link`` and model-change
updates with ``ctx.on_model``. Event handlers are plain functions; facegen does the work.

Scheduling (:mod:`facegen.hosting` does the bookkeeping): short work (generate, mix, fuse, edit,
customise, shelf renders) is wired with ``**SHORT_EVENT``, its own Gradio queue; long work (faceswap,
encoding, animation) with ``**LONG_EVENT`` and :func:`long_job`, which puts the requests that really are
long in the long-job line (one per session, a few slots, a bounded thread budget, cooperative cancel).
"""

from __future__ import annotations

import functools
import inspect
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

from facegen import hosting, studio
from facegen.engine.errors import FacegenError, FingerprintMismatchWarning, InputError



def _short_budget(fn):
    """Run `fn` on the short-job thread budget (inside a long job: the long job's, the smaller)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with hosting.intra_op_threads(hosting.BUDGETS.for_short()):
            return fn(*args, **kwargs)
    return run


try:  # ZeroGPU: spaces.GPU(duration=...) schedules a GPU; elsewhere it returns the function unchanged.
    import spaces

    def gpu(duration):
        """`duration`: seconds, or a function of the call's arguments (ZeroGPU asks for that much time)."""
        return lambda fn: spaces.GPU(duration=duration)(_short_budget(fn))
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    def gpu(duration):
        return _short_budget

ZERO_GPU = bool(os.environ.get("SPACES_ZERO_GPU"))
ZERO_GPU_MAX = int(os.environ.get("FACEGEN_ZERO_GPU_MAX", "120"))   # longest spaces.GPU call asked for (s)


def gpu_seconds(seconds: float) -> int:
    """A ZeroGPU duration for work of about `seconds`: + 30 s for loading, at most ZERO_GPU_MAX."""
    return int(min(ZERO_GPU_MAX, max(10, float(seconds) + 30)))


# Short work: its own queue, never behind a long job. Long work: its own queue; the requests that are
# long wait in the long-job line (FACEGEN_LONG_JOBS slots) while the rest run at once.
SHORT_EVENT = dict(concurrency_id="short",
                   concurrency_limit=int(os.environ.get("FACEGEN_SHORT_CONCURRENCY",
                                                        os.environ.get("FACEGEN_GPU_CONCURRENCY", "2"))))
GPU_EVENT = SHORT_EVENT    # the old name
LONG_EVENT = dict(concurrency_id="long", concurrency_limit=int(os.environ.get("FACEGEN_LONG_QUEUE", "8")))
LONG_JOBS = hosting.LongJobs(slots=int(os.environ.get("FACEGEN_LONG_JOBS", "1")))
NOISE_MODES = ["const", "random", "none"]
NO_PROGRESS = lambda *a, **k: None  # noqa: E731  (for handlers called outside an event)
OUT_DIR = Path(tempfile.gettempdir()) / "facegen-studio"
TEMP_MAX_AGE = float(os.environ.get("FACEGEN_TEMP_MAX_AGE", str(6 * 3600)))   # s since a folder's last write
TEMP_SWEEP_EVERY = float(os.environ.get("FACEGEN_TEMP_SWEEP_EVERY", "600"))
SWEEPER = hosting.TempSweeper(OUT_DIR, TEMP_MAX_AGE, TEMP_SWEEP_EVERY)


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


def current_session() -> str:
    """The session hash of the request this thread serves (each browser tab / gradio_client Client is one);
    a fresh id outside a request. Gradio sets the request in a context variable before it calls a handler."""
    from gradio.context import LocalContext
    req = LocalContext.request.get(None)
    return getattr(req, "session_hash", None) or f"no-session-{uuid.uuid4().hex}"


def _event_alive():
    """A probe: is the Gradio event this thread serves still wanted? False once it was cancelled (Stop's
    ``cancels=``, a client's ``job.cancel()``: Gradio drops it from the queue's active jobs) or its session
    closed (``alive`` cleared). None outside a queued event."""
    from gradio.context import LocalContext
    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or event_id is None:
        return None

    def alive() -> bool:
        for job in list(queue.active_jobs):
            for ev in job or ():
                if ev._id == event_id:
                    return bool(ev.alive)
        return False
    return alive


def long_job(fn, kind: str, when: Optional[Callable[[dict], bool]] = None):
    """Wire handler `fn` as long work (``.click(long_job(fn, "faceswap training"), ..., **LONG_EVENT)``).

    A request for which ``when(arguments)`` is true (always, without `when`) joins the long-job line
    (:data:`LONG_JOBS`): refused with its place when the session already has a long job, else it waits
    (the progress bar says its place), then runs on the long thread budget; its progress callback checks
    for cancellation, so Stop ends it at the next report and frees the slot. Other requests (small ones,
    and invalid ones, which `fn`'s own checks then refuse at once) run immediately on the long thread
    budget. The wrapper keeps `fn`'s name, docstring and signature (Gradio and MCP read them)."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = sig.bind_partial(*args, **kwargs)
        try:
            is_long = when is None or bool(when(dict(bound.arguments)))
        except Exception:      # unreadable input: fn's own checks give the message
            is_long = False
        if not is_long:
            with hosting.intra_op_threads(hosting.BUDGETS.for_long(LONG_JOBS.slots)):
                return fn(*args, **kwargs)
        progress = bound.arguments.get("progress", sig.parameters["progress"].default
                                       if "progress" in sig.parameters else None)

        def on_wait(position, running):
            if progress is not None:
                progress(0, desc=f"Waiting for a long-job slot: {hosting.ordinal(position)} in line "
                                 f"({running} running). Short jobs (generate, mix, edit ...) still run now.")
        with LONG_JOBS.run(current_session(), kind, _event_alive(), on_wait) as ticket:
            if "progress" in sig.parameters:
                bound.arguments["progress"] = ticket.checked(progress)
            return fn(*bound.args, **bound.kwargs)
    return ui_errors(wrapper)


def stop_long_job() -> str:
    """Stop this session's long job (running or waiting); its slot is freed at its next progress report.

    Returns:
        what was stopped, or that there was nothing to stop
    """
    session = current_session()
    mine = LONG_JOBS.status(session)["mine"]
    if LONG_JOBS.cancel(session):
        return f"Stopped: {mine}."
    return "No long job of yours is running or waiting."


def long_jobs_status() -> dict:
    """Where the long-job line stands (faceswap, long encodings, large animations).

    Returns:
        {"slots": long jobs that run at once, "running": kinds of the running jobs, "waiting": jobs in line,
        "mine": this session's job and its place, or null}
    """
    return LONG_JOBS.status(current_session())


def warn_all(notes):
    for n in notes:
        gr.Warning(n)


def out_dir() -> Path:
    """A fresh folder for this request's files (Gradio copies outputs into its cache); stale folders are
    swept first (:data:`SWEEPER`: nothing written for FACEGEN_TEMP_MAX_AGE s, checked every
    FACEGEN_TEMP_SWEEP_EVERY s)."""
    SWEEPER.maybe_sweep()
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

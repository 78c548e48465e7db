"""facegen studio -- the Gradio app (Hugging Face Space entry point; ``python app.py``).

Serves on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override). Each tab is a module
in ``demos/``; to add one, write ``demos/<tab>.py`` (TAB, TITLE, available(), build(ctx)) and add it
to ``TABS`` below. The model is FACEGEN_MODEL if set, else the registry default ("mini-v2", embedded,
works offline).

Hosting (a Space that stays up for everyone): short and long work have separate queues
(``demos/common.py``: SHORT_EVENT, LONG_EVENT, long_job); uploads over FACEGEN_MAX_UPLOAD are refused
while they arrive; request folders and Gradio's cache are swept after FACEGEN_TEMP_MAX_AGE seconds;
the documented endpoints are MCP tools (``demos/tools.py``; FACEGEN_MCP=0 turns the MCP server off);
memory stays flat under load: at most FACEGEN_MALLOC_ARENAS malloc arenas and a heap trim every
FACEGEN_HEAP_TRIM_EVERY s (``facegen/memwatch.py``), closed sessions dropped (``demos/sessions.py``).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

try:  # ZeroGPU needs `spaces` imported before anything touches CUDA.
    import spaces  # noqa: F401
except ImportError:  # pragma: no cover
    spaces = None

from facegen import memwatch  # noqa: E402  (before any server thread: the malloc arena limit applies to new ones)

memwatch.limit_arenas(int(os.environ.get("FACEGEN_MALLOC_ARENAS", "2")))   # RSS stays flat under load (README)
HEAP_TRIM = memwatch.HeapTrimmer(float(os.environ.get("FACEGEN_HEAP_TRIM_EVERY", "10"))).start()

import gradio as gr  # noqa: E402

from demos import animate, customize, edit, encode, faceswap, fusion, generate, mixing, shelf  # noqa: E402
from demos import sessions, tools  # noqa: E402
from demos.common import (TEMP_MAX_AGE, TEMP_SWEEP_EVERY, Ctx, banner_text, load_model, long_jobs_status,  # noqa: E402
                          stop_long_job, ui_errors)
from facegen import hosting, studio  # noqa: E402
from facegen.engine.errors import FacegenError  # noqa: E402

TABS = [generate, customize, mixing, encode, edit, fusion, animate, faceswap]   # a new tab: a module in demos/ + one entry here

QUEUE_SIZE = int(os.environ.get("FACEGEN_QUEUE_SIZE", "32"))
MAX_UPLOAD = os.environ.get("FACEGEN_MAX_UPLOAD", "200mb")   # refused while it arrives, before any decoding
MCP_SERVER = os.environ.get("FACEGEN_MCP", "1") != "0"
THEME = gr.themes.Default(primary_hue="violet", secondary_hue="slate")   # built-in: bundled fonts, no CDN
CSS = """
#banner { padding: 6px 12px; border-radius: 8px; background: var(--block-background-fill); }
#mix-grid img, #fuse-strip img { width: 100%; object-fit: contain; image-rendering: pixelated; }
#faceswap-preview img, #cz-gallery img { image-rendering: pixelated; }
#fuse-image img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
#edit-before img, #edit-after img, #anim-gif img, #anim-grid img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
footer { display: none !important; }
#tabs .tab-container button { padding: 0 var(--size-3); }
@media (max-width: 640px) { #tabs .tab-container button { padding: 0 var(--size-2); font-size: var(--text-sm); } }
"""
INTRO = ("# facegen studio\nStyleGAN2 faces: random faces from seeds, faces of a chosen class, style mixing, "
         "photo encoding, attribute editing, face fusion, animation and faceswap videos. "
         "Everything you make can go on your **face shelf** and be reused in any tab; "
         "most results have a **share link** that recreates them.")


def _model_values() -> list:
    return [v for _, v in studio.models().choices()]


def build_demo() -> gr.Blocks:
    manager = studio.models()
    default = manager.default()
    try:
        G = load_model(default)
        hosting.BUDGETS.short = studio.cpu_threads(G)   # short jobs' threads; long jobs get the cores but one
        num_ws, c_dim, sg3 = G.num_ws, G.c_dim, studio.takes_transform(G)
        banner_value = banner_text(default)
    except FacegenError as e:
        num_ws, c_dim, sg3, banner_value = 18, 0, False, banner_text(default, str(e))

    with gr.Blocks(title="facegen studio", analytics_enabled=False,
                   delete_cache=(int(TEMP_SWEEP_EVERY), int(TEMP_MAX_AGE))) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            model = gr.Dropdown(manager.choices(), value=default, label="Model", scale=1, elem_id="model")
            with gr.Column(scale=3):
                banner = gr.Markdown(banner_value, label="Model banner", elem_id="banner")
        active = gr.State(default)
        ctx = Ctx(model=model, active=active, banner=banner, shelf=gr.State(studio.Shelf()),
                  shelf_gallery=gr.Gallery(label="Shelf", format="png", columns=2, height=300, render=False,
                                           object_fit="contain", elem_id="shelf-gallery"),
                  shelf_selected=gr.Number(None, label="Selected shelf face #", precision=0, minimum=0, render=False,
                                           elem_id="shelf-selected"),
                  num_ws=num_ws, c_dim=c_dim, stylegan3=sg3)
        with gr.Row():
            with gr.Column(scale=4):
                with gr.Tabs(overflow_behavior="wrap", elem_id="tabs") as tabs:   # every title shown, no "…" menu
                    for mod in TABS:
                        if mod.available():   # never show a tab that cannot work here
                            mod.build(ctx)
            with gr.Column(scale=1, min_width=260):
                shelf.build(ctx)

        listener_outputs = [c for outs, _ in ctx.model_listeners for c in outs]

        def model_updates(G) -> dict:
            out = {}
            for _, fn in ctx.model_listeners:
                out.update(fn(G))
            return out

        @ui_errors
        def load_model_event(model, progress=gr.Progress()):
            """Switch the session to `model` (a name from the dropdown); errors keep the current model."""
            G = load_model(model, progress)
            return {active: model, banner: banner_text(model), **model_updates(G)}

        model.input(load_model_event, model, [active, banner, *listener_outputs], api_name="load_model",
                    concurrency_id="load", concurrency_limit=2).failure(
            lambda name: (name, banner_text(name) + "  \n⚠ The model you picked could not be loaded (the message "
                          "says why); this one is still in use."),
            active, [model, banner], api_name="revert_model", api_visibility="private")

        link_outputs = [tabs, model, active, banner, *listener_outputs]
        for _, outs in ctx.link_handlers.values():
            link_outputs += [c for c in outs if c not in link_outputs]

        def open_link(shelf_state, request: gr.Request):
            """Apply a share link (?tab=...&model=...&...): select the tab, fill it, show the result."""
            p = studio.decode_link(request.query_params if request is not None else {})
            if p is None:
                return {active: gr.skip()}   # a plain visit: nothing to restore
            if p["tab"] not in ctx.link_handlers:
                gr.Warning(f"Share link ignored: {'; '.join(p['problems']) or 'this tab is not available here'}.")
                return {active: gr.skip()}
            if p["problems"]:
                gr.Warning("Share link: " + "; ".join(p["problems"]) + " (defaults used).")
            name = p["model"] or default
            if name not in _model_values():
                gr.Warning(f"Share link names model '{name}', which this app does not offer; using {default}.")
                name = default
            try:
                G = load_model(name)
            except FacegenError as e:
                gr.Warning(f"Share link model '{name}' cannot be loaded ({e}); using {default}.")
                name, G = default, load_model(default)
            p["model"] = name
            fn, _ = ctx.link_handlers[p["tab"]]
            out = {tabs: gr.Tabs(selected=p["tab"]), model: name, active: name, banner: banner_text(name),
                   **model_updates(G)}
            out.update(fn(p, request, shelf_state))
            return out

        demo.load(open_link, ctx.shelf, link_outputs, api_name="open_link", api_visibility="undocumented")
        gr.api(long_jobs_status, api_name="jobs", queue=False)
        gr.api(stop_long_job, api_name="stop", queue=False)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=2)
    tools.document(demo)
    return demo


def launch_kwargs() -> dict:
    return dict(theme=THEME, css=CSS, show_error=True, max_file_size=MAX_UPLOAD, mcp_server=MCP_SERVER,
                state_session_capacity=sessions.MAX_SESSIONS)


demo = build_demo()
SESSIONS = sessions.SessionReaper(demo).start()   # closed sessions dropped after FACEGEN_SESSION_GRACE s


def _gradio_counters() -> dict:
    """Per-session bookkeeping Gradio keeps (for FACEGEN_MEMWATCH): live session states, pending messages."""
    holder, queue = getattr(demo, "state_holder", None), getattr(demo, "_queue", None)
    return {"sessions": len(holder.session_data) if holder is not None else None,
            "state_values": sum(len(s.state_data) for s in holder.session_data.values()) if holder else None,
            "pending_sessions": len(getattr(queue, "pending_event_ids_session", {}) or {}),
            "events": len(getattr(queue, "event_ids_to_events", {}) or {})}


# FACEGEN_MEMWATCH=path.jsonl: a line about the server's memory every FACEGEN_MEMWATCH_EVERY s (a diagnosis)
MEMWATCH = memwatch.MemWatch.from_env({"gradio": _gradio_counters, "heap_trim": HEAP_TRIM.stats})
if MEMWATCH is not None:
    MEMWATCH.start()

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), **launch_kwargs())

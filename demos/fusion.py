"""Face fusion: a weighted blend of two or more faces in w+, and an interpolation strip."""

from __future__ import annotations

import gradio as gr

from facegen.engine import latents as L
from facegen import studio
from facegen.engine.errors import InputError

from .common import (
    SHORT_EVENT, last_result_to_shelf, NO_PROGRESS, NOISE_MODES, Ctx, gpu, load_model, not_shareable, out_dir,
    save_bytes, save_png, share_row, share_url, ui_errors, warn_all)
from .mixing import FACES_INFO, append_shelf_ref

TAB = "fuse"
TITLE = "Face fusion"


def available() -> bool:
    return True


@gpu(duration=30)
def _fuse_gpu(model, ws, weights, layers, steps, noise_mode):
    return studio.fuse_faces(model, ws, weights, layers, steps, noise_mode)


@ui_errors
def fuse(faces, weights, layer_start, layer_end, psi, interp_steps, noise_mode, model, shelf,
         request: gr.Request, progress=gr.Progress()):
    """Blend `faces` (2-8) with `weights` (blank = equal) on layers layer_start..layer_end (the other
    layers come from the first face); plus an interpolation strip of `interp_steps` images from the
    first face to the second (0 = none)."""
    G = load_model(model, progress)
    refs = studio.parse_faces(faces, studio.MAX_FUSE, "faces")
    if len(refs) < 2:
        raise InputError("Fusion needs at least two faces, e.g. '1, 2' or '#1, #2'.")
    w = studio.parse_weights(weights, len(refs))
    layers = L.layer_range(layer_start, layer_end, G.num_ws)
    steps = int(interp_steps)
    if not (steps == 0 or 2 <= steps <= studio.MAX_STEPS):
        raise InputError(f"Interpolation steps must be 0 (none) or between 2 and {studio.MAX_STEPS} (got {steps}).")
    ws, notes = studio.resolve_faces(G, refs, psi, shelf)
    warn_all(notes)
    progress(0.3, desc="Fusing")
    img, fused_ws, strip = _fuse_gpu(model, ws, w, None if len(layers) == G.num_ws else layers, steps, noise_mode)
    d = out_dir()
    fused_png = save_png(img, d / "fused.png")
    strip_png = save_png(strip, d / "interpolation.png") if strip is not None else None
    npz = save_bytes(studio.npz_bytes(fused_ws, G, kind="fusion", faces=faces, weights=w, layers=layers,
                                      psi=float(psi), model=model), d / "fused.npz")
    tok = studio.link_tokens(refs, psi, shelf)
    if tok:
        link = share_url(request, studio.encode_link(
            TAB, model, faces=tok, weights=",".join(f"{x:g}" for x in w) if w else "", lo=layers[0], hi=layers[-1],
            psi=float(psi), steps=steps, noise=noise_mode))
    else:
        link = not_shareable("a shelf face that was not made from a seed (imported or mixed) cannot go in a link")
    last = {"model": model, "ws": fused_ws, "image": img, "label": f"fusion of {faces}"[:40]}
    return fused_png, strip_png, [fused_png, npz] + ([strip_png] if strip_png else []), link, last


@ui_errors
def fused_to_shelf(last, shelf):
    """Put the last fused face on the shelf."""
    return last_result_to_shelf(last, shelf, "Fuse some faces first.")


def build(ctx: Ctx):
    with gr.Tab(TITLE, id=TAB):
        gr.Markdown("Blend faces by averaging their w+ latents. Restrict the layer range to blend only "
                    "part of the style (the other layers come from the first face).")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                with gr.Row(equal_height=True):
                    faces = gr.Textbox("1, 2", label="Faces", info=FACES_INFO, scale=4, elem_id="fuse-faces")
                    add = gr.Button("+ shelf face", size="sm", scale=1)
                weights = gr.Textbox("", label="Weights", info="one per face, e.g. '1, 2'; blank = equal",
                                     elem_id="fuse-weights")
                with gr.Row():
                    layer_start = gr.Slider(0, ctx.num_ws - 1, value=0, step=1, label="From layer")
                    layer_end = gr.Slider(0, ctx.num_ws - 1, value=ctx.num_ws - 1, step=1, label="To layer (inclusive)")
                psi = gr.Slider(-1, 1.5, value=0.7, step=0.05, label="Truncation ψ (for seeds)")
                steps = gr.Slider(0, studio.MAX_STEPS, value=7, step=1, label="Interpolation steps (face 1 → face 2)",
                                  info="0 = no strip")
                noise = gr.Radio(NOISE_MODES, value="const", label="Noise mode")
                run = gr.Button("Fuse", variant="primary", elem_id="fuse-run")
            with gr.Column(scale=2):
                fused = gr.Image(label="Fused face", format="png", type="filepath", interactive=False,
                                 height=320, elem_id="fuse-image")
                strip = gr.Image(label="Interpolation in w+ (face 1 → face 2)", format="png", type="filepath",
                                 interactive=False, elem_id="fuse-strip")
                to_shelf = gr.Button("Send fused face to shelf", size="sm")
                files = gr.File(label="Downloads (PNG + latent .npz)", file_count="multiple")
                link = share_row(TAB)
        last = gr.State(None)

    inputs = [faces, weights, layer_start, layer_end, psi, steps, noise, ctx.model, ctx.shelf]
    outputs = [fused, strip, files, link, last]
    run.click(fuse, inputs, outputs, api_name="fuse", **SHORT_EVENT)
    to_shelf.click(fused_to_shelf, [last, ctx.shelf], [ctx.shelf, ctx.shelf_gallery], api_name="fuse_to_shelf")
    add.click(append_shelf_ref, [faces, ctx.shelf_selected], faces, api_name="fuse_add_face",
              api_visibility="undocumented")
    ctx.on_model(lambda G: {layer_start: gr.Slider(maximum=G.num_ws - 1),
                            layer_end: gr.Slider(maximum=G.num_ws - 1, value=G.num_ws - 1)}, [layer_start, layer_end])

    def from_link(p, request, shelf):
        G = load_model(p["model"])
        a = 0 if p["lo"] is None else p["lo"]
        b = G.num_ws - 1 if p["hi"] is None else p["hi"]
        vals = fuse(p["faces"], p["weights"], a, b, p["psi"], p["steps"], p["noise"], p["model"], shelf, request,
                    progress=NO_PROGRESS)
        return {faces: p["faces"], weights: p["weights"], layer_start: a, layer_end: b, psi: p["psi"],
                steps: p["steps"], noise: p["noise"], **dict(zip(outputs, vals))}
    ctx.on_link(TAB, from_link, [faces, weights, layer_start, layer_end, psi, steps, noise, *outputs])

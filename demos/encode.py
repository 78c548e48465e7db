"""Photo encoding: a photo -> aligned crop -> w+ latent (encoder + refinement); the latent bank."""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import numpy as np

from facegen import studio
from facegen.engine.errors import InputError

from .common import (
    GPU_EVENT, last_result_to_shelf, Ctx, add_faces, gpu, load_model, out_dir, save_bytes, save_png, ui_errors)

TAB = "encode"
TITLE = "Photo encoding"
MODES = ["auto", "detect", "pre-aligned"]
MAX_REFINE_STEPS = 500
MAX_BUDGET = 30.0


def example_photo():
    """A public-domain photo that ships inside scikit-image (NASA's astronaut portrait), if installed."""
    import importlib.util
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "data" / "astronaut.png"
    return str(p) if p.is_file() else None


def available() -> bool:
    """Shown when an encoder ships with the app (assets/packs/mini/encoder*)."""
    from facegen.features.encode import REPO_ROOT, CONFIG_NAME
    return any((d / CONFIG_NAME).is_file() for d in REPO_ROOT.glob("assets/packs/mini/encoder*"))


def _encoder_for(G):
    from facegen.features.encode import EncoderMismatchError, find_encoder, load_encoder
    d = find_encoder(G)
    if d is None:
        raise EncoderMismatchError(f"No photo encoder matches the active generator ({G.fingerprint}); photo encoding "
                                   "works with the embedded 'mini' model. Train one with "
                                   "`python -m facegen encoder train --model MODEL --out assets/packs/mini/encoder-NAME`.")
    return load_encoder(d, G)


@gpu(duration=60)
def _encode_gpu(model, aligned, refine_steps, time_budget, progress=None):
    """Aligned crop (uint8) -> encoder + refinement on the device; picklable in and out."""
    from facegen.features.encode import encode_photo
    G = studio.device_for(studio.models().get(model))
    E = _encoder_for(G).to(G.mapping.w_avg.device)
    r = encode_photo(G, E, None, aligned=aligned, refine_steps=refine_steps, time_budget=time_budget,
                     progress=progress)
    return {k: r[k] for k in ("encoder_ws", "encoder_image", "ws", "refined_image", "encoder_metrics",
                              "refined_metrics", "encoder_seconds")} | {
        "history": r["refine"].history, "steps": r["refine"].steps, "refine_seconds": r["refine"].seconds,
        "stopped_by": r["refine"].stopped_by}


def _metrics_md(al, out, total_s: float) -> str:
    e, f = out["encoder_metrics"], out["refined_metrics"]
    stop = {"early": "converged (early stop)", "time": "time budget reached", "steps": "step limit reached",
            "no-steps": "refinement off"}[out["stopped_by"]]
    return "\n".join([
        f"**Face:** {al.summary()} — source {al.source_size[0]}×{al.source_size[1]} px",
        "",
        "| | PSNR (dB) ↑ | MSE ↓ | mean abs error (0-255) ↓ | time |",
        "|---|---|---|---|---|",
        f"| encoder only | {e['psnr']:.2f} | {e['mse']:.5f} | {e['mae']:.1f} | {out['encoder_seconds'] * 1000:.0f} ms |",
        f"| + refinement ({out['steps']} steps) | {f['psnr']:.2f} | {f['mse']:.5f} | {f['mae']:.1f} | "
        f"{out['refine_seconds']:.1f} s |",
        "",
        f"Refinement: {stop}. Alignment {al.seconds:.2f} s; total {total_s:.1f} s.",
    ])


@ui_errors
def encode(photo, face, mode, refine_steps, time_budget, model, progress=gr.Progress()):
    """Encode the face in `photo` (an image file) into the active generator's w+: detect and FFHQ-align face
    number `face` (1 = largest), run the encoder, then refine for up to `refine_steps` steps / `time_budget`
    seconds. Returns the detection preview, aligned crop, reconstructions, comparison and error figures,
    metrics and the downloadable latent."""
    import time
    from facegen.labels.align import align_face, draw_faces
    from facegen.features.encode import comparison_figure, error_map, loss_curve
    t0 = time.perf_counter()
    if not photo:
        raise InputError("Upload a photo with a face first.")
    if mode not in MODES:
        raise InputError(f"Alignment must be one of {', '.join(MODES)} (got '{mode}').")
    steps = int(refine_steps if refine_steps is not None else 0)
    if not 0 <= steps <= MAX_REFINE_STEPS:
        raise InputError(f"Refinement steps must be between 0 and {MAX_REFINE_STEPS} (got {steps}).")
    budget = float(time_budget if time_budget is not None else 0)
    if not 0.5 <= budget <= MAX_BUDGET:
        raise InputError(f"The time budget must be between 0.5 and {MAX_BUDGET:g} seconds (got {budget:g}).")
    face = int(face) if face not in (None, "") else 1
    if face < 1:
        raise InputError("Face numbers start at 1 (1 = the largest face).")
    G = load_model(model, progress)
    _encoder_for(G)                      # fail fast, before the photo work, if this model has no encoder
    progress(0.05, desc="Finding and aligning the face")
    al = align_face(photo, G.img_resolution, index=face - 1, mode=mode)
    prog = None if os.environ.get("SPACES_ZERO_GPU") else (lambda f, s: progress(0.1 + 0.85 * f, desc=s))
    out = _encode_gpu(model, al.image, steps, budget, prog)
    total = time.perf_counter() - t0
    d = out_dir()
    preview = save_png(draw_faces(al.source, al.faces, al.index, al.quad), d / "detected.png")
    aligned = save_png(al.image, d / "aligned.png")
    rec_e = save_png(out["encoder_image"], d / "encoder.png")
    rec_r = save_png(out["refined_image"], d / "reconstruction.png")
    compare = save_png(comparison_figure([("photo (aligned)", al.image), ("encoder", out["encoder_image"]),
                                          ("refined", out["refined_image"])]), d / "before-after.png")
    errors = save_png(comparison_figure([("error: encoder", error_map(al.image, out["encoder_image"])),
                                         ("error: refined", error_map(al.image, out["refined_image"])),
                                         ("loss", loss_curve(out["history"]))]), d / "errors.png")
    name = Path(str(photo)).stem[:40] or "photo"
    npz = save_bytes(studio.npz_bytes(out["ws"], G, kind="encoded-photo", source=Path(str(photo)).name,
                                      face=face, refine_steps=out["steps"], model=model,
                                      psnr=round(out["refined_metrics"]["psnr"], 2)), d / f"{name}-latent.npz")
    last = {"model": model, "ws": out["ws"], "image": out["refined_image"], "label": f"photo {name}"[:40]}
    return (preview, aligned, rec_e, rec_r, compare, errors, _metrics_md(al, out, total),
            [npz, aligned, rec_r], last)


@ui_errors
def encoded_to_shelf(last, shelf):
    """Put the last encoded photo's latent on the shelf."""
    return last_result_to_shelf(last, shelf, "Encode a photo first.")


def _bank_for(G):
    from facegen.packs.bank import banks_for
    banks = banks_for(G)
    return banks[0] if banks else None


@ui_errors
def bank_list(model):
    """The latent bank that matches `model`: gallery of (reconstruction, name) and a description."""
    return _bank_view(load_model(model))


@ui_errors
def bank_to_shelf(name, model, shelf):
    """Put the bank face `name` (its name, or its number from 1) on the shelf."""
    G = load_model(model)
    b = _bank_for(G)
    if b is None:
        raise InputError(f"No latent bank matches the active generator ({G.fingerprint}).")
    if name is None or str(name).strip() == "":
        raise InputError("Click a face in the bank (or type its name) first.")
    key = str(name).strip()
    i = b.index(int(key) - 1 if key.isdigit() else key)
    img = studio.render(model, b.ws[i:i + 1])[0]
    add_faces(shelf, [img], [b.ws[i]], G, model, [b.names[i][:40]], [None])
    return shelf, shelf.gallery()


def _bank_view(G) -> tuple:
    b = _bank_for(G)
    if b is None:
        return [], f"No latent bank matches this generator ({G.fingerprint})."
    return b.gallery(), f"**{b.title}** — {len(b)} faces. {b.meta.get('description', '')}"


def build(ctx: Ctx):
    example = example_photo()
    try:   # the bank of the default model
        bank0 = _bank_view(load_model(studio.models().default()))
    except Exception:   # the default model may not load here; a model switch fills it in
        bank0 = ([], "")
    with gr.Tab(TITLE, id=TAB):
        gr.Markdown("Upload a photo: facegen finds the faces (dlib, offline), aligns one the way FFHQ was "
                    "aligned, encodes it into the generator's w+ with its encoder and refines the latent by "
                    "optimisation. Faces from the face world work too. Send the result to your shelf to mix, "
                    "fuse or edit it.")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                photo = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="enc-photo")
                if example:
                    ex_btn = gr.Button("Use the example photo (NASA astronaut, public domain)", size="sm")
                face = gr.Number(1, label="Face #", precision=0, minimum=1, info="1 = the largest face found")
                mode = gr.Radio(MODES, value="auto", label="Alignment",
                                info="auto: detect + FFHQ-align, or keep an already aligned square crop")
                steps = gr.Slider(0, MAX_REFINE_STEPS, value=200, step=10, label="Refinement steps (0 = encoder only)")
                budget = gr.Slider(0.5, MAX_BUDGET, value=8, step=0.5, label="Refinement time budget (s)")
                run = gr.Button("Encode", variant="primary", elem_id="enc-run")
            with gr.Column(scale=2):
                with gr.Row():
                    preview = gr.Image(label="Faces found (yellow: used; red: crop)", format="png", type="filepath",
                                       interactive=False, height=256)
                    aligned = gr.Image(label="Aligned crop", format="png", type="filepath", interactive=False,
                                       height=256, elem_id="enc-aligned")
                with gr.Row():
                    rec_e = gr.Image(label="Encoder only", format="png", type="filepath", interactive=False, height=256)
                    rec_r = gr.Image(label="Encoder + refinement", format="png", type="filepath", interactive=False,
                                     height=256, elem_id="enc-refined")
                compare = gr.Image(label="Before / after", format="png", type="filepath", interactive=False)
                errors = gr.Image(label="Error maps and refinement loss", format="png", type="filepath",
                                  interactive=False)
                metrics = gr.Markdown(label="Metrics", elem_id="enc-metrics")
                to_shelf = gr.Button("Send to shelf", size="sm", elem_id="enc-to-shelf")
                files = gr.File(label="Downloads (latent .npz, aligned crop, reconstruction)", file_count="multiple")
        with gr.Accordion("Latent bank: named faces for this generator", open=False) as bank_box:
            bank_info = gr.Markdown(bank0[1])
            bank_gallery = gr.Gallery(bank0[0], label="Bank", format="png", columns=6, height="auto",
                                      object_fit="contain", elem_id="enc-bank")
            with gr.Row(equal_height=True):
                bank_name = gr.Textbox(label="Face (name or number)", scale=3)
                bank_btn = gr.Button("Send bank face to shelf", size="sm", scale=1)
        last = gr.State(None)

    outputs = [preview, aligned, rec_e, rec_r, compare, errors, metrics, files, last]
    run.click(encode, [photo, face, mode, steps, budget, ctx.model], outputs, api_name="encode", **GPU_EVENT)
    if example:
        ex_btn.click(lambda: example, None, photo, api_name="encode_example", api_visibility="undocumented")
    to_shelf.click(encoded_to_shelf, [last, ctx.shelf], [ctx.shelf, ctx.shelf_gallery], api_name="encode_to_shelf")

    def on_bank_select(evt: gr.SelectData):
        return str(evt.index + 1)
    bank_gallery.select(on_bank_select, None, bank_name, api_name="encode_bank_select", api_visibility="undocumented")
    bank_btn.click(bank_to_shelf, [bank_name, ctx.model, ctx.shelf], [ctx.shelf, ctx.shelf_gallery],
                   api_name="encode_bank_to_shelf")
    bank_box.expand(bank_list, ctx.model, [bank_gallery, bank_info], api_name="encode_bank_list")

    ctx.on_model(lambda G: dict(zip((bank_gallery, bank_info), _bank_view(G))), [bank_gallery, bank_info])

"""Photo encoding on every generator: a photo -> aligned crop -> w+ latent; the latent bank.

The generator's pack decides the start: its encoder (then refinement), or, without a pack or an encoder,
projection from the average face within the time budget (:func:`facegen.features.encode.encode_photo`).
The tab says which (a line under the title, and the ``note`` in the metrics, which the API returns too)."""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import numpy as np

from facegen import studio
from facegen.engine.errors import InputError

from .common import (
    LONG_EVENT, last_result_to_shelf, Ctx, add_faces, gpu, gpu_seconds, load_model, long_job, out_dir, save_bytes,
    save_png, ui_errors)

TAB = "encode"
TITLE = "Photo encoding"
MODES = ["auto", "detect", "pre-aligned"]
SPACES = ["W", "w+"]
MAX_REFINE_STEPS = 500
MAX_BUDGET = 30.0
LONG_ENCODE_S = 10.0        # encodings with a longer time budget wait in the long-job line


def example_photo():
    """A public-domain photo that ships inside scikit-image (NASA's astronaut portrait), if installed."""
    import importlib.util
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "data" / "astronaut.png"
    return str(p) if p.is_file() else None


def available() -> bool:
    """Every generator can encode photos: with its pack's encoder, else by projection from w_avg."""
    return True


def start_text(G, pack) -> str:
    """One line for the tab: how photos are encoded into this generator."""
    from facegen.labels.perceptual import perceptual_for
    from facegen.packs.encoder import encoder_for
    try:
        has_encoder = encoder_for(G, pack) is not None
    except Exception as e:      # a broken encoder folder: say so, projection still works
        has_encoder, broken = False, f" (its encoder cannot be used: {e})"
    else:
        broken = ""
    try:
        loss = perceptual_for(G, pack).note
    except Exception as e:      # shown, not raised: the tab must still build
        loss = f"unavailable ({e})"
    if has_encoder:
        return f"**This generator's pack has an encoder:** one pass, then refinement in w+ within the time budget. Loss: {loss}."
    why = "no feature pack for this generator" if pack is None else f"pack '{pack.name}' has no encoder{broken}"
    return (f"**No encoder** ({why}): the projection fallback starts at the average face (w_avg) and optimises "
            f"the latent for the **whole time budget** (StyleGAN2 projector recipe; more seconds, closer "
            f"likeness). Loss: {loss}.")


@gpu(duration=lambda model, aligned, refine_steps, time_budget, space="w", progress=None: gpu_seconds(time_budget))
def _encode_gpu(model, aligned, refine_steps, time_budget, space="w", progress=None):
    """Aligned crop (uint8) -> the pack's encoder + refinement, or projection from w_avg, on the device;
    picklable in and out."""
    from facegen.features.encode import encode_photo
    G = studio.device_for(studio.models().get(model))
    pack = studio.models().pack(G)
    r = encode_photo(G, pack, None, aligned=aligned, refine_steps=refine_steps, time_budget=time_budget,
                     progress=progress, space=space)
    return {k: r[k] for k in ("encoder_ws", "encoder_image", "ws", "refined_image", "encoder_metrics",
                              "refined_metrics", "encoder_seconds", "start", "note", "perceptual")} | {
        "history": r["refine"].history, "steps": r["refine"].steps, "refine_seconds": r["refine"].seconds,
        "stopped_by": r["refine"].stopped_by}


def _metrics_md(al, out, total_s: float) -> str:
    e, f = out["encoder_metrics"], out["refined_metrics"]
    stop = {"early": "converged (early stop)", "time": "time budget reached", "steps": "step limit reached",
            "no-steps": "optimisation off"}[out["stopped_by"]]
    enc = out["start"] == "encoder"
    first = "encoder only" if enc else "start: average face (w_avg)"
    second = "+ refinement" if enc else "+ projection"
    return "\n".join([
        f"**Face:** {al.summary()} — source {al.source_size[0]}×{al.source_size[1]} px",
        "",
        f"**Method:** {out['note']}",
        "",
        "| | PSNR (dB) ↑ | MSE ↓ | mean abs error (0-255) ↓ | time |",
        "|---|---|---|---|---|",
        f"| {first} | {e['psnr']:.2f} | {e['mse']:.5f} | {e['mae']:.1f} | {out['encoder_seconds'] * 1000:.0f} ms |",
        f"| {second} ({out['steps']} steps) | {f['psnr']:.2f} | {f['mse']:.5f} | {f['mae']:.1f} | "
        f"{out['refine_seconds']:.1f} s |",
        "",
        f"{'Refinement' if enc else 'Projection'}: {stop}. Alignment {al.seconds:.2f} s; total {total_s:.1f} s.",
    ])


@ui_errors
def encode(photo, face, mode, refine_steps, time_budget, model, space="W", progress=gr.Progress()):
    """Encode the face in `photo` (an image file) into the active generator's w+: detect and FFHQ-align face
    number `face` (1 = largest), run the generator pack's encoder and refine for up to `refine_steps` steps /
    `time_budget` seconds -- or, without an encoder, project from the average face in `space` (W or w+) for
    the time budget. Returns the detection preview, aligned crop, start and final reconstructions, comparison
    and error figures, metrics (with a line naming the method and loss) and the downloadable latent."""
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
        raise InputError(f"Refinement / projection steps must be between 0 and {MAX_REFINE_STEPS} (got {steps}).")
    budget = float(time_budget if time_budget is not None else 0)
    if not 0.5 <= budget <= MAX_BUDGET:
        raise InputError(f"The time budget must be between 0.5 and {MAX_BUDGET:g} seconds (got {budget:g}).")
    face = int(face) if face not in (None, "") else 1
    if face < 1:
        raise InputError("Face numbers start at 1 (1 = the largest face).")
    if space not in SPACES:
        raise InputError(f"The projection space must be one of {', '.join(SPACES)} (got '{space}').")
    G = load_model(model, progress)
    pack = studio.models().pack(G)
    progress(0.05, desc="Finding and aligning the face")
    al = align_face(photo, G.img_resolution, index=face - 1, mode=mode,
                    validity=pack.labeller if pack is not None else None)
    prog = None if os.environ.get("SPACES_ZERO_GPU") else (lambda f, s: progress(0.1 + 0.85 * f, desc=s))
    out = _encode_gpu(model, al.image, steps, budget, space.lower(), prog)
    total = time.perf_counter() - t0
    d = out_dir()
    preview = save_png(draw_faces(al.source, al.faces, al.index, al.quad), d / "detected.png")
    aligned = save_png(al.image, d / "aligned.png")
    rec_e = save_png(out["encoder_image"], d / "encoder.png")
    rec_r = save_png(out["refined_image"], d / "reconstruction.png")
    first = "encoder" if out["start"] == "encoder" else "start (w_avg)"
    second = "refined" if out["start"] == "encoder" else "projected"
    compare = save_png(comparison_figure([("photo (aligned)", al.image), (first, out["encoder_image"]),
                                          (second, out["refined_image"])]), d / "before-after.png")
    errors = save_png(comparison_figure([(f"error: {first}", error_map(al.image, out["encoder_image"])),
                                         (f"error: {second}", error_map(al.image, out["refined_image"])),
                                         ("loss", loss_curve(out["history"], title=f"{second} loss (1 = start)"))]),
                      d / "errors.png")
    name = Path(str(photo)).stem[:40] or "photo"
    npz = save_bytes(studio.npz_bytes(out["ws"], G, kind="encoded-photo", source=Path(str(photo)).name,
                                      face=face, refine_steps=out["steps"], model=model, start=out["start"],
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


def _start_view(G) -> str:
    return start_text(G, studio.models().pack(G))


def build(ctx: Ctx):
    example = example_photo()
    try:   # the bank and the encoding method of the default model
        G0 = load_model(studio.models().default())
        bank0, start0 = _bank_view(G0), _start_view(G0)
    except Exception:   # the default model may not load here; a model switch fills them in
        bank0, start0 = ([], ""), ""
    with gr.Tab(TITLE, id=TAB):
        gr.Markdown("Upload a photo: facegen finds the faces (dlib, offline), aligns one the way FFHQ was "
                    "aligned, encodes it into the generator's w+ — with the encoder of the generator's pack, "
                    "else by projection from the average face — and refines the latent by optimisation. Faces "
                    "from the face world work too. Send the result to your shelf to mix, fuse or edit it.")
        start_info = gr.Markdown(start0, elem_id="enc-start")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                photo = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="enc-photo")
                if example:
                    ex_btn = gr.Button("Use the example photo (NASA astronaut, public domain)", size="sm")
                face = gr.Number(1, label="Face #", precision=0, minimum=1, info="1 = the largest face found")
                mode = gr.Radio(MODES, value="auto", label="Alignment",
                                info="auto: detect + FFHQ-align, or keep an already aligned square crop")
                steps = gr.Slider(0, MAX_REFINE_STEPS, value=200, step=10,
                                  label="Optimisation steps (0 = encoder / start only)")
                budget = gr.Slider(0.5, MAX_BUDGET, value=8, step=0.5, label="Time budget (s)",
                                   info="without an encoder, the projection uses all of it")
                space = gr.Radio(SPACES, value="W", label="Projection space (without an encoder)",
                                 info="W: one w for every layer (most editable); w+: one per layer (closer)")
                run = gr.Button("Encode", variant="primary", elem_id="enc-run")
            with gr.Column(scale=2):
                with gr.Row():
                    preview = gr.Image(label="Faces found (yellow: used; red: crop)", format="png", type="filepath",
                                       interactive=False, height=256)
                    aligned = gr.Image(label="Aligned crop", format="png", type="filepath", interactive=False,
                                       height=256, elem_id="enc-aligned")
                with gr.Row():
                    rec_e = gr.Image(label="Start (encoder, or the average face)", format="png", type="filepath",
                                     interactive=False, height=256)
                    rec_r = gr.Image(label="After refinement / projection", format="png", type="filepath",
                                     interactive=False,
                                     height=256, elem_id="enc-refined")
                compare = gr.Image(label="Before / after", format="png", type="filepath", interactive=False)
                errors = gr.Image(label="Error maps and optimisation loss", format="png", type="filepath",
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
    run.click(long_job(encode, "photo encoding",
                       when=lambda a: LONG_ENCODE_S < float(a["time_budget"]) <= MAX_BUDGET),
              [photo, face, mode, steps, budget, ctx.model, space], outputs, api_name="encode", **LONG_EVENT)
    if example:
        ex_btn.click(lambda: example, None, photo, api_name="encode_example", api_visibility="undocumented")
    to_shelf.click(encoded_to_shelf, [last, ctx.shelf], [ctx.shelf, ctx.shelf_gallery], api_name="encode_to_shelf")

    def on_bank_select(evt: gr.SelectData):
        return str(evt.index + 1)
    bank_gallery.select(on_bank_select, None, bank_name, api_name="encode_bank_select", api_visibility="undocumented")
    bank_btn.click(bank_to_shelf, [bank_name, ctx.model, ctx.shelf], [ctx.shelf, ctx.shelf_gallery],
                   api_name="encode_bank_to_shelf")
    bank_box.expand(bank_list, ctx.model, [bank_gallery, bank_info], api_name="encode_bank_list")

    ctx.on_model(lambda G: {**dict(zip((bank_gallery, bank_info), _bank_view(G))), start_info: _start_view(G)},
                 [bank_gallery, bank_info, start_info])

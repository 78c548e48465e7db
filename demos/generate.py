"""Random faces: seeds -> images + latents; send them to the shelf."""

from __future__ import annotations

import gradio as gr
import numpy as np

from facegen import studio
from facegen.engine import latents as L
from facegen.engine.errors import InputError

from .common import GPU_EVENT, NO_PROGRESS, NOISE_MODES, Ctx, add_faces, gpu, load_model, out_dir, save_bytes, save_png, \
    share_row, share_url, ui_errors

TAB = "generate"
TITLE = "Random faces"


def available() -> bool:
    return True


@gpu(duration=30)
def _generate_gpu(model, seeds, psi, cutoff, noise_mode, class_index, translate_x, translate_y, rotate):
    return studio.generate_faces(model, seeds, psi, cutoff, noise_mode, class_index, translate_x, translate_y,
                                 rotate)


@ui_errors
def generate(seeds, count, psi, cutoff, noise_mode, model, class_index=0, translate_x=0.0, translate_y=0.0,
             rotate=0.0, request: gr.Request = None, progress=gr.Progress()):
    """Faces for `seeds` ('0-7', '1,5,9-11'; one seed + count N = N consecutive seeds; empty = random);
    `class_index` picks the class of a class-conditional generator (ignored by unconditional ones);
    `translate_x`, `translate_y` (image widths, + = right / down) and `rotate` (degrees, + =
    counter-clockwise) move a StyleGAN3 generator's image (all 0: the plain image; an error elsewhere)."""
    seed_list = studio.expand_seeds(seeds, count)
    cutoff = int(cutoff or 0) or None
    G = load_model(model, progress)
    class_index = int(class_index or 0) if G.c_dim else 0
    if G.c_dim:
        L.class_vector(G, class_index)   # a clear message for a class out of range
    moved = studio.check_transform(G, translate_x, translate_y, rotate) is not None
    move = {"tx": float(translate_x or 0), "ty": float(translate_y or 0), "rot": float(rotate or 0)} if moved else {}
    progress(0.3, desc=f"Generating {len(seed_list)} faces")
    images, ws = _generate_gpu(model, seed_list, float(psi), cutoff, noise_mode, class_index,
                               *(move.get(k, 0.0) for k in ("tx", "ty", "rot")))
    d = out_dir()
    gallery, files = [], []
    for s, img, w in zip(seed_list, images, ws):
        png = save_png(img, d / f"seed{s:05d}.png")
        gallery.append((png, f"seed {s}"))
        files += [save_bytes(studio.npz_bytes(w, G, seed=s, psi=float(psi), cutoff=cutoff, model=model,
                                              **({"class_index": class_index} if G.c_dim else {}),
                                              **({"translate": [move["tx"], move["ty"]], "rotate": move["rot"]}
                                                 if move else {})),
                             d / f"seed{s:05d}.npz")]
    seed_text = ",".join(studio.compress_seeds([str(s) for s in seed_list]))
    link = share_url(request, studio.encode_link(TAB, model, seeds=seed_text, psi=float(psi), cutoff=cutoff or 0,
                                                 noise=noise_mode, **({"cls": class_index} if G.c_dim else {}),
                                                 **{k: v for k, v in move.items() if v}))
    last = {"model": model, "seeds": seed_list, "psi": float(psi), "cutoff": cutoff, "ws": ws, "images": images}
    return gallery, files, link, last, None


@ui_errors
def send_to_shelf(which, last, selected, shelf):
    """Put the last generated faces ('all' or the 'selected' one) on the shelf."""
    if not last:
        raise InputError("Generate some faces first.")
    idx = list(range(len(last["seeds"])))
    if which == "selected":
        if selected is None:
            raise InputError("Click a face in the gallery first, then 'Send selected to shelf'.")
        idx = [selected]
    G = load_model(last["model"])
    add_faces(shelf, [last["images"][i] for i in idx], [last["ws"][i] for i in idx], G, last["model"],
              [f"seed {last['seeds'][i]}" for i in idx],
              [studio.seed_token(last["seeds"][i], last["psi"], last["cutoff"]) for i in idx])
    return shelf, shelf.gallery()


def send_all_to_shelf(last, selected, shelf):
    return send_to_shelf("all", last, selected, shelf)


def send_selected_to_shelf(last, selected, shelf):
    return send_to_shelf("selected", last, selected, shelf)


def random_seed():
    return str(int(np.random.default_rng().integers(0, 100_000)))


def build(ctx: Ctx):
    with gr.Tab(TITLE, id=TAB):
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                seeds = gr.Textbox("0-3", label="Seeds", info="'0-7', '1,5,9-11'; one seed + count N = N "
                                   "consecutive seeds; empty = random", elem_id="gen-seeds")
                count = gr.Slider(1, studio.MAX_FACES, value=4, step=1, label="Count",
                                  info="used with a single seed or an empty box")
                psi = gr.Slider(-1, 1.5, value=0.7, step=0.05, label="Truncation ψ",
                                info="lower = more average, cleaner faces; 1 = no truncation")
                cutoff = gr.Slider(0, 18, value=0, step=1, label="Truncation cutoff (layers)",
                                   info="truncate only the first N layers; 0 = all")
                noise = gr.Radio(NOISE_MODES, value="const", label="Noise mode",
                                 info="const = reproducible; random = new hair/skin detail each run")
                klass = gr.Number(0, label="Class", precision=0, minimum=0, visible=ctx.c_dim > 0, elem_id="gen-class",
                                  info="this generator is class-conditional: which class to draw (other tabs "
                                       "draw class 0)")
                with gr.Row(visible=ctx.stylegan3, elem_id="gen-move") as move_row:   # StyleGAN3 only: its input moves
                    tx = gr.Slider(-studio.MAX_TRANSLATE, studio.MAX_TRANSLATE, value=0, step=0.005,
                                   label="Translate x", info="image widths; + moves the face right",
                                   elem_id="gen-tx")
                    ty = gr.Slider(-studio.MAX_TRANSLATE, studio.MAX_TRANSLATE, value=0, step=0.005,
                                   label="Translate y", info="image widths; + moves the face down",
                                   elem_id="gen-ty")
                    rot = gr.Slider(-studio.MAX_ROTATE, studio.MAX_ROTATE, value=0, step=1, label="Rotate",
                                    info="degrees; + turns counter-clockwise", elem_id="gen-rot")
                with gr.Row():
                    run = gr.Button("Generate", variant="primary", elem_id="gen-run")
                    dice = gr.Button("Random seed", elem_id="gen-random")
            with gr.Column(scale=2):
                gallery = gr.Gallery(label="Faces", format="png", columns=4, object_fit="contain",
                                     height="auto", elem_id="gen-gallery")
                with gr.Row():
                    to_shelf_all = gr.Button("Send all to shelf", size="sm", elem_id="gen-shelf-all")
                    to_shelf_sel = gr.Button("Send selected to shelf", size="sm", elem_id="gen-shelf-sel")
                files = gr.File(label="Latents (.npz per face; images: download button on the gallery)",
                                file_count="multiple")
                link = share_row(TAB)
        last = gr.State(None)
        selected = gr.State(None)

    inputs = [seeds, count, psi, cutoff, noise, ctx.model, klass, tx, ty, rot]
    outputs = [gallery, files, link, last, selected]
    run.click(generate, inputs, outputs, api_name="generate", **GPU_EVENT)
    seeds.submit(generate, inputs, outputs, api_name="generate_submit", api_visibility="undocumented", **GPU_EVENT)
    dice.click(random_seed, None, seeds, api_name="generate_random_seeds", api_visibility="undocumented").then(
        generate, inputs, outputs, api_name="generate_random", api_visibility="undocumented", **GPU_EVENT)

    def on_select(evt: gr.SelectData):
        return evt.index
    gallery.select(on_select, None, selected, api_name="generate_select", api_visibility="undocumented")
    to_shelf_all.click(send_all_to_shelf, [last, selected, ctx.shelf], [ctx.shelf, ctx.shelf_gallery],
                       api_name="generate_to_shelf")
    to_shelf_sel.click(send_selected_to_shelf, [last, selected, ctx.shelf], [ctx.shelf, ctx.shelf_gallery],
                       api_name="generate_selected_to_shelf")

    ctx.on_model(lambda G: {cutoff: gr.Slider(maximum=G.num_ws),
                            klass: gr.Number(visible=G.c_dim > 0, maximum=max(G.c_dim - 1, 0),
                                             label=f"Class (0-{G.c_dim - 1})" if G.c_dim else "Class"),
                            move_row: gr.Row(visible=studio.takes_transform(G)),
                            **{m: gr.Slider(value=0) for m in (tx, ty, rot)}},   # a new model starts unmoved
                 [cutoff, klass, move_row, tx, ty, rot])

    def from_link(p, request, shelf):
        vals = generate(p["seeds"], 1, p["psi"], p["cutoff"], p["noise"], p["model"], p["cls"], p["tx"], p["ty"],
                        p["rot"], request, progress=NO_PROGRESS)
        return {seeds: p["seeds"], count: 1, psi: p["psi"], cutoff: p["cutoff"], noise: p["noise"], klass: p["cls"],
                tx: p["tx"], ty: p["ty"], rot: p["rot"], **dict(zip(outputs, vals))}
    ctx.on_link(TAB, from_link, [seeds, count, psi, cutoff, noise, klass, tx, ty, rot, *outputs])

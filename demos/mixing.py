"""Style mixing: copy a layer range of template faces into source faces (the StyleGAN-paper grid)."""

from __future__ import annotations

import gradio as gr

from facegen.engine import latents as L
from facegen import studio
from facegen.engine.errors import InputError

from .common import SHORT_EVENT, NO_PROGRESS, NOISE_MODES, Ctx, add_faces, gpu, load_model, not_shareable, out_dir, \
    save_bytes, save_png, share_row, share_url, ui_errors, warn_all

TAB = "mix"
TITLE = "Style mixing"
PRESETS = ["coarse", "middle", "fine", "custom"]
FACES_INFO = "seeds ('0-3', '7'), a seed at its own ψ ('7@0.5'), shelf faces ('#1') or bank faces ('@Name')"


def available() -> bool:
    return True


@gpu(duration=40)
def _mix_gpu(model, src_ws, tpl_ws, layers, noise_mode):
    return studio.mix_grid(model, src_ws, tpl_ws, layers, noise_mode)


@ui_errors
def preset_range(preset, model):
    """Layer range of a preset (coarse 0-3, middle 4-7, fine 8+) for the model."""
    G = load_model(model)
    if preset == "custom":
        return gr.skip(), gr.skip()
    layers = L.preset_layers(preset, G.num_ws)
    return layers[0], layers[-1]


@ui_errors
def mix(sources, templates, layer_start, layer_end, psi, noise_mode, model, shelf, request: gr.Request,
        progress=gr.Progress()):
    """Grid: rows = sources, columns = templates; each cell = source with the template's layers
    layer_start..layer_end (inclusive)."""
    G = load_model(model, progress)
    layers = L.layer_range(layer_start, layer_end, G.num_ws)
    src = studio.parse_faces(sources, studio.MAX_GRID, "sources")
    tpl = studio.parse_faces(templates, studio.MAX_GRID, "templates")
    src_ws, n1 = studio.resolve_faces(G, src, psi, shelf)
    tpl_ws, n2 = studio.resolve_faces(G, tpl, psi, shelf)
    warn_all(n1 + n2)
    progress(0.3, desc=f"Mixing {len(src)}×{len(tpl)} faces")
    grid, cells, cell_ws = _mix_gpu(model, src_ws, tpl_ws, layers, noise_mode)
    d = out_dir()
    grid_png = save_png(grid, d / "style-mix-grid.png")
    labels = [f"src {i + 1} × tpl {j + 1}" for i in range(len(src)) for j in range(len(tpl))]
    gallery = [(c, lab) for c, lab in zip(cells, labels)]
    npz = save_bytes(studio.npz_bytes(cell_ws, G, kind="style-mix", sources=sources, templates=templates,
                                      layers=layers, psi=float(psi), model=model), d / "style-mix-latents.npz")
    s_tok, t_tok = studio.link_tokens(src, psi, shelf), studio.link_tokens(tpl, psi, shelf)
    if s_tok and t_tok:
        link = share_url(request, studio.encode_link(TAB, model, src=s_tok, tpl=t_tok, lo=layers[0], hi=layers[-1],
                                                     psi=float(psi), noise=noise_mode))
    else:
        link = not_shareable("a shelf face that was not made from a seed (imported or mixed) cannot go in a link")
    last = {"model": model, "ws": cell_ws, "images": cells, "labels": labels}
    return grid_png, gallery, [grid_png, npz], link, last


@ui_errors
def mixes_to_shelf(last, shelf):
    """Put every cell of the last grid on the shelf."""
    if not last:
        raise InputError("Mix some faces first.")
    G = load_model(last["model"])
    add_faces(shelf, last["images"], last["ws"], G, last["model"], [f"mix {lab}" for lab in last["labels"]],
              [None] * len(last["labels"]))
    return shelf, shelf.gallery()


def custom_preset():
    return "custom"


def append_shelf_ref(text, selected):
    if not selected:
        raise gr.Error("Click a face on the shelf first.")
    selected = int(selected)
    text = (text or "").strip()
    return f"{text}, #{selected}" if text else f"#{selected}"


def build(ctx: Ctx):
    lo, hi = studio.default_layer_range(ctx.num_ws)
    with gr.Tab(TITLE, id=TAB):
        gr.Markdown("Each cell takes the **source** face (rows) and copies the **template**'s styles "
                    "(columns) on the chosen layers: coarse layers carry pose and face shape, middle ones "
                    "features and hair style, fine ones colours and texture. 5–8 is a good start.")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                with gr.Row(equal_height=True):
                    sources = gr.Textbox("0-3", label="Sources (rows)", info=FACES_INFO, scale=4, elem_id="mix-src")
                    add_src = gr.Button("+ shelf face", size="sm", scale=1)
                with gr.Row(equal_height=True):
                    templates = gr.Textbox("10-12", label="Templates (columns)", info=FACES_INFO, scale=4,
                                           elem_id="mix-tpl")
                    add_tpl = gr.Button("+ shelf face", size="sm", scale=1)
                preset = gr.Radio(PRESETS, value="custom", label="Layers preset")
                with gr.Row():
                    layer_start = gr.Slider(0, ctx.num_ws - 1, value=lo, step=1, label="From layer")
                    layer_end = gr.Slider(0, ctx.num_ws - 1, value=hi, step=1, label="To layer (inclusive)")
                psi = gr.Slider(-1, 1.5, value=0.7, step=0.05, label="Truncation ψ (for seeds)")
                noise = gr.Radio(NOISE_MODES, value="const", label="Noise mode")
                run = gr.Button("Mix", variant="primary", elem_id="mix-run")
            with gr.Column(scale=2):
                grid = gr.Image(label="Style-mixing grid (rows: sources, columns: templates)", format="png",
                                type="filepath", interactive=False, elem_id="mix-grid")
                cells = gr.Gallery(label="Mixed faces", format="png", columns=6, height="auto", elem_id="mix-cells")
                to_shelf = gr.Button("Send mixes to shelf", size="sm")
                files = gr.File(label="Downloads (grid PNG + latents .npz)", file_count="multiple")
                link = share_row(TAB)
        last = gr.State(None)

    inputs = [sources, templates, layer_start, layer_end, psi, noise, ctx.model, ctx.shelf]
    outputs = [grid, cells, files, link, last]
    run.click(mix, inputs, outputs, api_name="mix", **SHORT_EVENT)
    preset.input(preset_range, [preset, ctx.model], [layer_start, layer_end], api_name="mix_preset")
    for slider in (layer_start, layer_end):
        slider.input(custom_preset, None, preset, api_name="mix_custom_range", api_visibility="private")
    to_shelf.click(mixes_to_shelf, [last, ctx.shelf], [ctx.shelf, ctx.shelf_gallery], api_name="mix_to_shelf")
    add_src.click(append_shelf_ref, [sources, ctx.shelf_selected], sources, api_name="mix_add_source",
                  api_visibility="undocumented")
    add_tpl.click(append_shelf_ref, [templates, ctx.shelf_selected], templates, api_name="mix_add_template",
                  api_visibility="undocumented")

    ctx.on_model(lambda G: {layer_start: gr.Slider(maximum=G.num_ws - 1), layer_end: gr.Slider(maximum=G.num_ws - 1)},
                 [layer_start, layer_end])

    def from_link(p, request, shelf):
        G = load_model(p["model"])
        d_lo, d_hi = studio.default_layer_range(G.num_ws)
        a = d_lo if p["lo"] is None else p["lo"]
        b = d_hi if p["hi"] is None else p["hi"]
        vals = mix(p["src"], p["tpl"], a, b, p["psi"], p["noise"], p["model"], shelf, request,
                   progress=NO_PROGRESS)
        return {sources: p["src"], templates: p["tpl"], layer_start: a, layer_end: b, psi: p["psi"],
                noise: p["noise"], preset: "custom", **dict(zip(outputs, vals))}
    ctx.on_link(TAB, from_link, [sources, templates, layer_start, layer_end, psi, noise, preset, *outputs])

"""Attribute editing: move a face along attribute directions (yaw, smile, age, ...), one slider each."""

from __future__ import annotations

import re
from typing import Optional

import gradio as gr
import numpy as np

from facegen.engine import latents as L
from facegen import studio
from facegen.packs.directions import DEFAULT_ATTRIBUTES, MAX_STEP, DirectionSet, find_directions, \
    load_directions
from facegen.engine.errors import InputError

from .common import (
    GPU_EVENT, last_result_to_shelf, Ctx, gpu, load_model, out_dir, save_bytes, save_png, ui_errors, warn_all)

TAB = "edit"
TITLE = "Attribute editing"
ATTRS = list(DEFAULT_ATTRIBUTES)             # one slider each; any other fitted attribute via "More steps"
SLIDER_MAX = 3.0                             # the UI range; the API accepts up to +-MAX_STEP
FACE_INFO = ("a seed ('12'), a seed at its own ψ ('12@0.5'), a shelf face ('#2') or a bank face ('@Name'); "
             "an uploaded latent wins")


def available() -> bool:
    return True


# ---------------------------------------------------------------------------
# Shared with the animation tab
# ---------------------------------------------------------------------------


def directions_for(G, model: str, directions_file: Optional[str] = None) -> DirectionSet:
    """An uploaded directions file (must match G) or the shipped directions for G."""
    if directions_file:
        return load_directions(directions_file, G)
    ds = find_directions(G)
    if ds is None:
        raise InputError(f"No attribute directions for model '{model}' (generator {G.fingerprint}) in "
                         "assets/packs/mini/directions/ or FACEGEN_DIRECTIONS. Fit them with `python -m facegen directions "
                         f"fit --model {model} --out assets/packs/mini/directions`, or upload a directions .npz fitted for "
                         "this generator.")
    return ds


def resolve_face(G, face: str, psi: float, shelf, latent_file: Optional[str]) -> tuple:
    """-> (w+ [num_ws, w_dim] float32, label, notes). An uploaded latent takes precedence."""
    if latent_file:
        ws, _ = L.load_latent(latent_file, G)        # shape check; fingerprint mismatch warns (toast)
        notes = []
        if ws.ndim == 3:
            if ws.shape[0] > 1:
                notes.append(f"The latent file holds {ws.shape[0]} faces; using the first.")
            ws = ws[0]
        return ws.astype(np.float32), str(latent_file).rsplit("/", 1)[-1][:30], notes
    refs = studio.parse_faces(face, 1, "face")
    ws, notes = studio.resolve_faces(G, refs, psi, shelf)
    return ws[0], refs[0].label(), notes


def directions_info(ds: DirectionSet, names=None) -> str:
    rows = ["| attribute | accuracy | bands (coarse/middle/fine) | cos(plain, kept) |", "|---|---|---|---|"]
    for r in ds.summary():
        if names is not None and r["attribute"] not in names:
            continue
        rows.append(f"| {r['attribute']} | {r['heldout_accuracy']:.2f} | "
                    + " / ".join(f"{v:.2f}" for v in r["band_accuracy"].values()) + f" | {r['conditional_cosine']:.2f} |")
    m = ds.meta
    return (f"Directions for generator `{ds.fingerprint}` ({m.get('model') or '?'}), labeller `{m.get('labeller')}`, "
            f"{m.get('n_used')} samples. Steps are in standard deviations.\n\n" + "\n".join(rows))


def parse_more(text) -> dict:
    """'hair_color:black=1.5, age=-1' -> {name: step}."""
    out = {}
    for part in filter(None, (p.strip() for p in str(text or "").split(","))):
        m = re.fullmatch(r"([A-Za-z_][\w:.-]*)\s*=\s*([-+]?[\d.]+(?:e[-+]?\d+)?)", part)
        if not m:
            raise InputError(f"Cannot read '{part}' in more steps: use 'attribute=step', e.g. "
                             "'hair_color:black=1.5'.")
        out[m.group(1)] = float(m.group(2))
    return out


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


def keep_method(G, ds) -> str:
    """How 'keep other attributes' works for this generator: guided by a differentiable labeller
    (facegen.features.editing.guide_for: the face world's predictor for mini) or conditional directions."""
    from facegen.features.editing import guide_for
    return "guided by the world predictor" if guide_for(G, ds) is not None else "with conditional directions"


@gpu(duration=20)
def _edit_gpu(model, ws, ds, steps, layers, conditional, noise_mode):
    from facegen.features import editing
    from facegen.engine.synthesis import synthesize
    G = studio.device_for(studio.models().get(model))
    guide = editing.guide_for(G, ds) if conditional else None
    if guide is not None:
        edited = editing.guided_edit_ws(G, guide, ws, ds, steps, layers)
    else:
        edited = editing.edit_ws(ws, ds, steps, layers, conditional)
    imgs = synthesize(G, np.stack([ws, edited]), studio.check_noise(noise_mode))
    return imgs[0], imgs[1], edited


@ui_errors
def edit(face, psi, yaw, smile, age, gender, glasses, beard, hair_length, skin_tone, keep_others, layer_start,
         layer_end, more, latent_file, directions_file, noise_mode, model, shelf, progress=gr.Progress()):
    """Edit one face: a step (in standard deviations, -5..5) per attribute, applied on layers
    layer_start..layer_end; keep_others projects the other attributes out of each direction
    (conditional editing). `more`: extra steps 'name=step, ...' for other fitted attributes
    (e.g. 'hair_color:black=1.5'). Returns the original, the edit, downloads, a note and the state."""
    G = load_model(model, progress)
    ds = directions_for(G, model, directions_file)
    values = dict(zip(ATTRS, (yaw, smile, age, gender, glasses, beard, hair_length, skin_tone)))
    steps = {k: float(v or 0) for k, v in values.items() if v}
    for k, v in parse_more(more).items():
        steps[k] = steps.get(k, 0.0) + v
    for k in steps:
        ds.index(k)                                    # unknown attribute -> clear error
    layers = L.layer_range(layer_start, layer_end, G.num_ws)
    ws, label, notes = resolve_face(G, face, psi, shelf, latent_file)
    warn_all(notes)
    progress(0.3, desc="Editing")
    before, after, edited = _edit_gpu(model, ws, ds, steps, layers, bool(keep_others), noise_mode)
    d = out_dir()
    before_png = save_png(before, d / "original.png")
    after_png = save_png(after, d / "edited.png")
    desc = ", ".join(f"{k} {v:+g}" for k, v in steps.items()) or "no change"
    npz = save_bytes(studio.npz_bytes(edited, G, kind="edit", face=label, steps=steps, layers=layers,
                                      conditional=bool(keep_others), directions=ds.fingerprint, model=model),
                     d / "edited.npz")
    note = (f"**{label}**: {desc} on layers {layers[0]}-{layers[-1]}"
            + (f" keeping the other attributes ({keep_method(G, ds)})" if keep_others and steps else "") + ".")
    last = {"model": model, "ws": edited, "image": after, "label": f"{label} {desc}"[:40]}
    return before_png, after_png, [after_png, npz], note, last


@ui_errors
def edited_to_shelf(last, shelf):
    """Put the last edited face on the shelf."""
    return last_result_to_shelf(last, shelf, "Edit a face first.")


@ui_errors
def show_directions(directions_file, model):
    """The directions the tab uses for `model` (or the uploaded file): accuracies per attribute."""
    G = load_model(model)
    return directions_info(directions_for(G, model, directions_file))


def shelf_face(selected):
    if not selected:
        raise gr.Error("Click a face on the shelf first.")
    return f"#{int(selected)}"


def reset():
    return [0.0] * len(ATTRS) + [""]


def model_directions_note(G) -> str:
    ds = find_directions(G)
    if ds is None:
        return (f"⚠ No shipped directions for this generator ({G.fingerprint}): upload a directions file or fit "
                "them (`python -m facegen directions fit`).")
    return directions_info(ds)


def _initial_info() -> str:
    try:
        return model_directions_note(studio.models().get(studio.models().default()))
    except Exception:  # the banner already reports a model that cannot load
        return ""


def build(ctx: Ctx):
    lo, hi = 0, min(8, ctx.num_ws) - 1
    with gr.Tab(TITLE, id=TAB):
        gr.Markdown("Move a face along **attribute directions** found in the generator's latent space. "
                    "Steps are in standard deviations of the attribute. **Keep other attributes** holds the "
                    "others fixed, so that e.g. *older* does not also mean *turned* or *male*: for face-world "
                    "models the world predictor guides every small step of the edit, for other models the "
                    "directions are made orthogonal to the other attributes' (conditional directions).")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                with gr.Row(equal_height=True):
                    face = gr.Textbox("0", label="Face", info=FACE_INFO, scale=4, elem_id="edit-face")
                    pick = gr.Button("Use shelf face", size="sm", scale=1)
                psi = gr.Slider(-1, 1.5, value=0.7, step=0.05, label="Truncation ψ (for seeds)")
                sliders = [gr.Slider(-SLIDER_MAX, SLIDER_MAX, value=0, step=0.1, label=a.replace("_", " "),
                                     elem_id=f"edit-{a}") for a in ATTRS]
                keep = gr.Checkbox(False, label="Keep other attributes",
                                   elem_id="edit-keep")
                with gr.Row():
                    run = gr.Button("Edit", variant="primary", elem_id="edit-run")
                    clear = gr.Button("Reset sliders", size="sm")
                with gr.Accordion("More", open=False):
                    with gr.Row():
                        layer_start = gr.Slider(0, ctx.num_ws - 1, value=lo, step=1, label="From layer")
                        layer_end = gr.Slider(0, ctx.num_ws - 1, value=hi, step=1, label="To layer (inclusive)",
                                              info="default: coarse + middle layers")
                    more = gr.Textbox("", label="More steps", info=f"'attribute=step, ...' (|step| ≤ {MAX_STEP:g}), "
                                      "e.g. 'hair_color:black=1.5' when fitted")
                    noise = gr.Radio(["const", "random", "none"], value="const", label="Noise mode")
                    upload = gr.File(label="Face latent (.npz / .npy), optional", file_types=[".npz", ".npy"],
                                     type="filepath")
                    dfile = gr.File(label="Directions (.npz), optional: default = shipped for this model",
                                    file_types=[".npz"], type="filepath")
            with gr.Column(scale=2):
                with gr.Row():
                    before = gr.Image(label="Original", format="png", type="filepath", interactive=False,
                                      height=300, elem_id="edit-before")
                    after = gr.Image(label="Edited", format="png", type="filepath", interactive=False,
                                     height=300, elem_id="edit-after")
                note = gr.Markdown("", elem_id="edit-note")
                to_shelf = gr.Button("Send result to shelf", size="sm", elem_id="edit-shelf")
                files = gr.File(label="Downloads (PNG + latent .npz)", file_count="multiple")
                with gr.Accordion("Directions", open=False):
                    info = gr.Markdown(_initial_info(), elem_id="edit-directions")
        last = gr.State(None)

    inputs = [face, psi, *sliders, keep, layer_start, layer_end, more, upload, dfile, noise, ctx.model, ctx.shelf]
    outputs = [before, after, files, note, last]
    run.click(edit, inputs, outputs, api_name="edit", **GPU_EVENT)
    gr.on([s.release for s in sliders] + [keep.input, face.submit], edit, inputs, outputs, api_name="edit_live",
          api_visibility="private", trigger_mode="always_last", **GPU_EVENT)
    clear.click(reset, None, [*sliders, more], api_name="edit_reset", api_visibility="private")
    pick.click(shelf_face, ctx.shelf_selected, face, api_name="edit_pick_shelf", api_visibility="undocumented")
    to_shelf.click(edited_to_shelf, [last, ctx.shelf], [ctx.shelf, ctx.shelf_gallery], api_name="edit_to_shelf")
    dfile.change(show_directions, [dfile, ctx.model], info, api_name="edit_directions")
    ctx.on_model(lambda G: {layer_start: gr.Slider(maximum=G.num_ws - 1, value=0),
                            layer_end: gr.Slider(maximum=G.num_ws - 1, value=min(8, G.num_ws) - 1),
                            info: model_directions_note(G)}, [layer_start, layer_end, info])

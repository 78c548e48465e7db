"""Attribute editing: move a face along the active model's directions, one slider per direction.

The directions are the model's pack's attribute directions (yaw, smile, age ... for mini) or, for a
generator without them, its principal components (GANSpace; named by the pack's labeller where it has
one) -- :func:`facegen.features.editing.directions_for` decides, and its note is shown in the tab and
returned by the API. The sliders follow the active set: :data:`N_SLOTS` slots, relabelled and hidden
on model change; further directions go in "More steps". The API (``/edit``) takes one ``steps`` text:
JSON ``'{"yaw": 1.5, "component 3": -2}'`` or ``'yaw=1.5, component 3=-2'``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import gradio as gr
import numpy as np

from facegen.engine import latents as L
from facegen.engine.errors import FacegenError
from facegen import studio
from facegen.features import editing
from facegen.packs.directions import MAX_STEP, DirectionSet, load_directions
from facegen.packs.unsupervised import is_unsupervised

from .common import (
    SHORT_EVENT, last_result_to_shelf, Ctx, gpu, load_model, out_dir, save_bytes, save_png, ui_errors, warn_all)

TAB = "edit"
TITLE = "Attribute editing"
N_SLOTS = 8                                  # slider slots; further directions via "More steps"
SLIDER_MAX = 3.0                             # the UI range; the API accepts up to +-MAX_STEP
FACE_INFO = ("a seed ('12'), a seed at its own ψ ('12@0.5'), a shelf face ('#2') or a bank face ('@Name'); "
             "an uploaded latent wins")


def available() -> bool:
    return True


# ---------------------------------------------------------------------------
# Shared with the animation tab
# ---------------------------------------------------------------------------


def active_directions(G, model: str, directions_file: Optional[str] = None) -> tuple:
    """-> (DirectionSet, where it comes from): an uploaded directions file (must match G), else
    :func:`facegen.features.editing.directions_for` on the model's pack (pack directions or the fallback)."""
    if directions_file:
        return load_directions(directions_file, G), f"uploaded directions ({Path(directions_file).name})"
    return editing.directions_for(G, studio.models().pack(G))


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


def keep_method(G, ds) -> str:
    """How 'keep other attributes' works for this set: guided by a differentiable labeller
    (facegen.features.editing.guide_for: the face world's predictor for mini), conditional directions,
    or nothing to do (principal components are orthonormal)."""
    if is_unsupervised(ds):
        return "principal components are orthogonal: the others stay as they are"
    guide = editing.guide_for(G, ds)
    if guide is None:
        return "with conditional directions"
    name = getattr(guide, "name", "") or "a labeller"
    return "guided by the world predictor" if name == "world" else f"guided by the '{name}' labeller"


def directions_info(ds: DirectionSet, source: str = "") -> str:
    """Markdown: where the directions come from and one row per direction."""
    m = ds.meta
    head = f"**Directions:** {source}.\n\n" if source else ""
    if is_unsupervised(ds):
        ev = m.get("explained_variance_ratio") or []
        named = {c["component"]: c for c in (m.get("naming") or {}).get("components", [])}
        rows = ["| direction | explained variance | step (1 SD) | strongest attribute effect |", "|---|---|---|---|"]
        for i, n in enumerate(ds.names):
            top = (named.get(i + 1) or {}).get("top") or []
            eff = f"{top[0]['attribute']} {top[0]['effect']:+.2f}" if top else "—"
            rows.append(f"| {n} | {ev[i]:.1%} | {float(ds.scales[i]):.3f} | {eff} |" if i < len(ev) else
                        f"| {n} | — | {float(ds.scales[i]):.3f} | {eff} |")
        return (head + f"{m.get('method', '?')} components of generator `{ds.fingerprint}` from {m.get('n_samples')} "
                f"samples (seed {m.get('seed')}). Steps are in standard deviations along each component.\n\n"
                + "\n".join(rows))
    rows = ["| attribute | accuracy | bands (coarse/middle/fine) | cos(plain, kept) |", "|---|---|---|---|"]
    for r in ds.summary():
        rows.append(f"| {r['attribute']} | {r['heldout_accuracy']:.2f} | "
                    + " / ".join(f"{v:.2f}" for v in r["band_accuracy"].values()) + f" | {r['conditional_cosine']:.2f} |")
    return (head + f"Directions for generator `{ds.fingerprint}` ({m.get('model') or '?'}), labeller "
            f"`{m.get('labeller')}`, {m.get('n_used')} samples. Steps are in standard deviations.\n\n" + "\n".join(rows))


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


@gpu(duration=20)
def _edit_gpu(model, ws, ds, steps, layers, conditional, noise_mode):
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
def edit(face, psi, steps, keep_others, layer_start, layer_end, latent_file, directions_file, noise_mode, model,
         shelf, progress=gr.Progress()):
    """Edit one face: `steps` moves it along the active model's directions (standard deviations, -5..5),
    as JSON '{"yaw": 1.5, "component 3": -2}' or text 'yaw=1.5, component 3=-2', on layers
    layer_start..layer_end; keep_others holds the other directions fixed. The directions are the model's
    pack's (or an uploaded file's); without them, the generator's principal components (the note says
    which). Returns the original, the edit, downloads, a note and the state."""
    G = load_model(model, progress)
    ds, source = active_directions(G, model, directions_file)
    steps = {k: v for k, v in editing.check_steps(ds, editing.parse_steps(steps)).items() if v}
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
                                      conditional=bool(keep_others), directions=ds.fingerprint,
                                      method=ds.meta.get("method", "fitted"), model=model),
                     d / "edited.npz")
    note = (f"**{label}**: {desc} on layers {layers[0]}-{layers[-1]}"
            + (f" keeping the other attributes ({keep_method(G, ds)})" if keep_others and steps else "")
            + f".\n\nDirections: {source}.")
    last = {"model": model, "ws": edited, "image": after, "label": f"{label} {desc}"[:40]}
    return before_png, after_png, [after_png, npz], note, last


@ui_errors
def compose_steps(names, *values_and_more):
    """The sliders (named by `names`, the active set's first N_SLOTS directions) and the "More steps" text
    -> the `steps` JSON the edit endpoint takes."""
    *values, more = values_and_more
    steps: dict = {}
    for n, v in zip(names or [], values):
        if n and v:
            steps[n] = float(v)
    for k, v in editing.parse_steps(more).items():
        steps[k] = steps.get(k, 0.0) + float(v)
    return json.dumps(steps)


@ui_errors
def edited_to_shelf(last, shelf):
    """Put the last edited face on the shelf."""
    return last_result_to_shelf(last, shelf, "Edit a face first.")


@ui_errors
def show_directions(directions_file, model):
    """The directions the tab uses for `model` (or the uploaded file): where from, and one row each."""
    G = load_model(model)
    return directions_info(*active_directions(G, model, directions_file))


def shelf_face(selected):
    if not selected:
        raise gr.Error("Click a face on the shelf first.")
    return f"#{int(selected)}"


def reset():
    return [0.0] * N_SLOTS + [""]


def slot_updates(ds: Optional[DirectionSet]) -> list:
    """N_SLOTS slider updates: the set's first directions as labels, the other slots hidden."""
    names = list(ds.names[:N_SLOTS]) if ds is not None else []
    return [gr.Slider(label=names[i], visible=True, value=0) if i < len(names) else gr.Slider(visible=False, value=0)
            for i in range(N_SLOTS)]


def _initial() -> tuple:
    """(names, info) for the default model, before any session exists."""
    try:
        G = studio.models().get(studio.models().default())
        ds, source = active_directions(G, studio.models().default())
        return list(ds.names[:N_SLOTS]), directions_info(ds, source)
    except FacegenError:   # the banner already reports a model that cannot load
        return [], ""


def build(ctx: Ctx):
    lo, hi = 0, min(8, ctx.num_ws) - 1
    names0, info0 = _initial()
    with gr.Tab(TITLE, id=TAB):
        gr.Markdown("Move a face along the model's **directions**: its attribute directions (yaw, smile, age …) "
                    "when its feature pack has them, else the directions its latent space varies most (principal "
                    "components, named after the attribute they move where the pack's labeller can tell). "
                    "Steps are in standard deviations. **Keep other attributes** holds the others fixed, so that "
                    "e.g. *older* does not also mean *turned* or *male*: for face-world models the world predictor "
                    "guides every small step of the edit, for other models the directions are made orthogonal to "
                    "the other attributes' (conditional directions).")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                with gr.Row(equal_height=True):
                    face = gr.Textbox("0", label="Face", info=FACE_INFO, scale=4, elem_id="edit-face")
                    pick = gr.Button("Use shelf face", size="sm", scale=1)
                psi = gr.Slider(-1, 1.5, value=0.7, step=0.05, label="Truncation ψ (for seeds)")
                sliders = [gr.Slider(-SLIDER_MAX, SLIDER_MAX, value=0, step=0.1,
                                     label=names0[i] if i < len(names0) else f"direction {i + 1}",
                                     visible=i < len(names0), elem_id=f"edit-slot-{i}") for i in range(N_SLOTS)]
                keep = gr.Checkbox(False, label="Keep other attributes", elem_id="edit-keep")
                with gr.Row():
                    run = gr.Button("Edit", variant="primary", elem_id="edit-run")
                    clear = gr.Button("Reset sliders", size="sm")
                with gr.Accordion("More", open=False):
                    with gr.Row():
                        layer_start = gr.Slider(0, ctx.num_ws - 1, value=lo, step=1, label="From layer")
                        layer_end = gr.Slider(0, ctx.num_ws - 1, value=hi, step=1, label="To layer (inclusive)",
                                              info="default: coarse + middle layers")
                    more = gr.Textbox("", label="More steps", info=f"'direction=step, ...' (|step| ≤ {MAX_STEP:g}) for "
                                      "directions without a slider, e.g. 'component 9=1.5' or 'hair_color:black=1'")
                    noise = gr.Radio(["const", "random", "none"], value="const", label="Noise mode")
                    upload = gr.File(label="Face latent (.npz / .npy), optional", file_types=[".npz", ".npy"],
                                     type="filepath")
                    dfile = gr.File(label="Directions (.npz), optional: default = the model's pack, else its "
                                    "principal components", file_types=[".npz"], type="filepath")
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
                    info = gr.Markdown(info0, elem_id="edit-directions")
        names = gr.State(names0)                      # the direction each slider slot stands for
        steps = gr.Textbox("", visible=False, label="Steps")   # the API's `steps` (the UI composes it)
        last = gr.State(None)

    inputs = [face, psi, steps, keep, layer_start, layer_end, upload, dfile, noise, ctx.model, ctx.shelf]
    outputs = [before, after, files, note, last]
    compose_inputs = [names, *sliders, more]
    run.click(compose_steps, compose_inputs, steps, api_name="edit_compose", api_visibility="private").success(
        edit, inputs, outputs, api_name="edit", **SHORT_EVENT)
    gr.on([s.release for s in sliders] + [keep.input, face.submit], compose_steps, compose_inputs, steps,
          api_name="edit_live_compose", api_visibility="private", trigger_mode="always_last").success(
        edit, inputs, outputs, api_name="edit_live", api_visibility="private", **SHORT_EVENT)
    clear.click(reset, None, [*sliders, more], api_name="edit_reset", api_visibility="private")
    pick.click(shelf_face, ctx.shelf_selected, face, api_name="edit_pick_shelf", api_visibility="undocumented")
    to_shelf.click(edited_to_shelf, [last, ctx.shelf], [ctx.shelf, ctx.shelf_gallery], api_name="edit_to_shelf")

    @ui_errors
    def slots_for(directions_file, model):
        ds, _ = active_directions(load_model(model), model, directions_file)
        return [list(ds.names[:N_SLOTS]), *slot_updates(ds)]

    dfile.change(show_directions, [dfile, ctx.model], info, api_name="edit_directions").success(
        slots_for, [dfile, ctx.model], [names, *sliders], api_name="edit_slots", api_visibility="private")

    def on_model(G):
        try:
            ds, source = active_directions(G, "")
            text = directions_info(ds, source)
        except FacegenError as e:   # a broken pack must not stop the model switch; the tab says why
            ds, text = None, f"⚠ No directions for this generator: {e}"
        return {layer_start: gr.Slider(maximum=G.num_ws - 1, value=0),
                layer_end: gr.Slider(maximum=G.num_ws - 1, value=min(8, G.num_ws) - 1),
                info: text, names: list(ds.names[:N_SLOTS]) if ds is not None else [],
                **dict(zip(sliders, slot_updates(ds)))}

    ctx.on_model(on_model, [layer_start, layer_end, info, names, *sliders])

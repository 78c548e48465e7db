"""The face shelf: a per-session collection of faces shared by every tab (not a tab itself)."""

from __future__ import annotations

import gradio as gr

from facegen import studio
from facegen.engine.errors import InputError

from .common import Ctx, add_faces, gpu, load_model, out_dir, save_bytes, ui_errors, warn_all


@gpu(duration=20)
def _render_gpu(model, ws, noise_mode="const"):
    return studio.render(model, ws, noise_mode)


def _status(shelf, notes=()):
    head = f"{len(shelf)} face(s) on the shelf." if len(shelf) else "The shelf is empty."
    return "\n\n".join([head] + [f"⚠ {n}" for n in notes])


@ui_errors
def shelf_add(faces, psi, model, shelf):
    """Add faces by spec (seeds '0-3', '7@0.5', or copies of shelf faces '#1') to the shelf."""
    G = load_model(model)
    refs = studio.parse_faces(faces, studio.MAX_FACES, "faces")
    ws, notes = studio.resolve_faces(G, refs, psi, shelf)
    imgs = _render_gpu(model, ws)
    add_faces(shelf, imgs, ws, G, model,
              [f"copy of #{r.shelf}" if r.shelf is not None else r.label() for r in refs],
              [shelf.get(r.shelf).token if r.shelf is not None else "@" + r.bank if r.bank is not None else
               studio.seed_token(r.seed, float(psi) if r.psi is None else r.psi, r.cutoff) for r in refs])
    warn_all(notes)
    return shelf, shelf.gallery(), _status(shelf, notes)


@ui_errors
def shelf_import(latent_file, model, shelf):
    """Add the latents of a .npz/.npy file (one face or a batch) to the shelf; warns when they were
    made with another generator."""
    if not latent_file:
        raise InputError("Choose a latent file (.npz or .npy) to import.")
    G = load_model(model)
    notes = shelf.import_file(latent_file, G, model, lambda ws: _render_gpu(model, ws))
    warn_all(notes)
    return shelf, shelf.gallery(), _status(shelf, notes)


@ui_errors
def shelf_export(shelf):
    """All shelf faces as one .npz (ws [N, num_ws, w_dim] + per-face fingerprints)."""
    return save_bytes(shelf.export_bytes(), out_dir() / "facegen-shelf.npz")


@ui_errors
def shelf_remove(number, shelf):
    """Remove face #number (1-based, as the captions show)."""
    if number is None or int(number) < 1:
        raise InputError("Click a face on the shelf (or type its number) first.")
    shelf.remove(int(number))
    return shelf, shelf.gallery(), _status(shelf), None


def shelf_clear(shelf):
    """Empty the shelf."""
    shelf.clear()
    return shelf, [], _status(shelf), None


def shelf_list(shelf):
    """The shelf's faces (thumbnails with captions '#n label')."""
    return shelf.gallery(), _status(shelf)


def build(ctx: Ctx):
    with gr.Column(variant="panel", elem_id="shelf"):
        gr.Markdown("### Face shelf\nYour faces for this session (private to you). Use them in any tab as "
                    "`#1`, `#2` …")
        ctx.shelf_gallery.render()
        status = gr.Markdown(_status(studio.Shelf()), label="Shelf status", elem_id="shelf-status")
        ctx.shelf_selected.render()
        with gr.Row():
            remove = gr.Button("Remove", size="sm")
            clear = gr.Button("Clear all", size="sm")
            refresh = gr.Button("Refresh", size="sm")
        with gr.Accordion("Add / import / export", open=False):
            with gr.Row(equal_height=True):
                add_spec = gr.Textbox(label="Add seeds", placeholder="e.g. 5, 9-11", scale=3)
                add_psi = gr.Slider(-1, 1.5, value=0.7, step=0.05, label="ψ", scale=2)
            add_btn = gr.Button("Add to shelf", size="sm")
            upload = gr.File(label="Import latent (.npz / .npy)", file_types=[".npz", ".npy"], type="filepath")
            export_btn = gr.Button("Export shelf (.npz)", size="sm")
            export_file = gr.File(label="Shelf latents", interactive=False)

    def on_select(evt: gr.SelectData):
        return evt.index + 1
    ctx.shelf_gallery.select(on_select, None, ctx.shelf_selected, api_name="shelf_select",
                             api_visibility="undocumented")
    outs = [ctx.shelf, ctx.shelf_gallery, status]
    add_btn.click(shelf_add, [add_spec, add_psi, ctx.model, ctx.shelf], outs, api_name="shelf_add")
    upload.upload(shelf_import, [upload, ctx.model, ctx.shelf], outs, api_name="shelf_import")
    export_btn.click(shelf_export, ctx.shelf, export_file, api_name="shelf_export")
    remove.click(shelf_remove, [ctx.shelf_selected, ctx.shelf], outs + [ctx.shelf_selected], api_name="shelf_remove")
    clear.click(shelf_clear, ctx.shelf, outs + [ctx.shelf_selected], api_name="shelf_clear")
    # Keep the status line in step when another tab sends faces here.
    ctx.shelf_gallery.change(lambda s: _status(s), ctx.shelf, status, api_name="shelf_status",
                             api_visibility="private")
    refresh.click(shelf_list, ctx.shelf, [ctx.shelf_gallery, status], api_name="shelf_list")

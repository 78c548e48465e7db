"""Animation: a face moving along one of the active model's directions, or a grid of two, as mp4 and GIF.

The choices follow the active direction set (:func:`demos.edit.active_directions`): yaw / smile ... for
mini's pack, "component 1" ... (or labeller-named components) for a generator without directions.
"""

from __future__ import annotations

from typing import Optional

import gradio as gr

from facegen.engine import latents as L
from facegen import studio
from facegen.engine.errors import FacegenError, InputError
from facegen.features.animate import GRID, MAX_FPS, MAX_FRAMES, default_grid
from facegen.features.editing import resolve_direction
from facegen.packs.directions import MAX_STEP, DirectionSet

from .common import LONG_EVENT, Ctx, gpu, load_model, long_job, out_dir, save_bytes, ui_errors, warn_all
from .edit import FACE_INFO, active_directions, keep_method, resolve_face, shelf_face

TAB = "animate"
TITLE = "Animation"
SIZES = [128, 256, 512]
LONG_PIXELS = 120 * 256 ** 2    # animations with more frames x pixels wait in the long-job line


def available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401  (ships the ffmpeg with libx264 the mp4 needs)
        return True
    except ImportError:  # pragma: no cover
        return False


def mode_choices(ds: Optional[DirectionSet]) -> list:
    """(label, value) pairs: a sweep per direction, then the grid."""
    names = list(ds.names) if ds is not None else []
    return [(f"{n} sweep", n) for n in names] + ([("Grid of two directions", GRID)] if len(names) > 1 else [])


def grid_defaults(ds: Optional[DirectionSet]) -> tuple:
    try:
        return default_grid(ds) if ds is not None else ("", "")
    except InputError:
        return ds.names[0], ""


@gpu(duration=60)
def _animate_gpu(model, ws, ds, mode, frames, fps, amount, layers, conditional, pingpong, size, grid, grid_attrs,
                 outdir, noise_mode):
    from facegen.features.editing import guide_for
    from facegen.features.animate import animate as run
    G = studio.device_for(studio.models().get(model))
    res = run(G, ws, ds, mode, frames, fps, amount, layers, conditional, pingpong, size, "nearest", grid, outdir,
              noise_mode=studio.check_noise(noise_mode), guide=guide_for(G, ds) if conditional else None,
              grid_attrs=grid_attrs)
    res.pop("frames"), res.pop("grid", None)
    return res


@ui_errors
def animate(face, psi, mode, frames, fps, amount, pingpong, keep_others, size, grid_size, grid_rows, grid_cols,
            layer_start, layer_end, latent_file, directions_file, noise_mode, model, shelf, progress=gr.Progress()):
    """Animate one face: `mode` names a direction of the active model (e.g. 'yaw', 'smile' for mini, 'component 1'
    for a generator without directions) and sweeps it from -amount to +amount standard deviations over
    `frames` frames (pingpong: there and back); 'grid' renders the grid_rows x grid_cols grid of two
    directions (grid_size x grid_size, PNG; blank = the set's second and first direction) and a video
    walking it. -> (mp4, GIF, grid PNG or None, downloads, note)."""
    G = load_model(model, progress)
    ds, source = active_directions(G, model, directions_file)
    grid_attrs = None
    if mode == GRID:
        rows, cols = grid_defaults(ds)
        grid_attrs = (resolve_direction(ds, str(grid_rows or "").strip() or rows),
                      resolve_direction(ds, str(grid_cols or "").strip() or cols))
    else:
        try:
            mode = resolve_direction(ds, mode)
        except InputError:
            raise InputError(f"Unknown animation '{mode}': use a direction of this model ({', '.join(ds.names)}) "
                             f"or '{GRID}'.") from None
    if int(size) not in SIZES:
        raise InputError(f"Video size must be one of {', '.join(map(str, SIZES))} px (got {size}).")
    layers = L.layer_range(layer_start, layer_end, G.num_ws)
    ws, label, notes = resolve_face(G, face, psi, shelf, latent_file)
    warn_all(notes)
    progress(0.2, desc=f"Rendering {int(frames)} frames")
    d = out_dir()
    res = _animate_gpu(model, ws, ds, mode, int(frames), float(fps), float(amount), layers, bool(keep_others),
                       bool(pingpong), int(size), int(grid_size), grid_attrs, str(d), noise_mode)
    what = f"{grid_attrs[0]} × {grid_attrs[1]} grid" if grid_attrs else f"{mode} sweep"
    npz = save_bytes(studio.npz_bytes(res["ws"], G, kind="animation", face=label, mode=mode,
                                      directions=list(grid_attrs) if grid_attrs else [mode],
                                      values=[list(map(float, v)) if hasattr(v, "__len__") else float(v)
                                              for v in res["values"]],
                                      conditional=bool(keep_others), layers=layers, model=model),
                     d / "frames-latents.npz")
    t = res["timings"]
    note = (f"**{label}**: {what}, {int(frames)} frames at {float(fps):g} fps "
            f"({int(frames) / float(fps):.1f} s), ±{float(amount):g} SD on layers {layers[0]}-{layers[-1]}"
            + (f", keeping other attributes ({'with conditional directions' if grid_attrs else keep_method(G, ds)})"
               if keep_others else "")
            + f". Rendered in {t['render_s']:.2f} s, encoded in {t.get('mp4_s', 0) + t.get('gif_s', 0):.2f} s."
            + f"\n\nDirections: {source}.")
    files = [res["mp4"], res["gif"]] + ([res["grid_png"]] if "grid_png" in res else []) + [npz]
    return res["mp4"], res["gif"], res.get("grid_png"), files, note


def _controls(ds: Optional[DirectionSet]) -> tuple:
    """(mode update, rows update, cols update) for a direction set."""
    choices = mode_choices(ds)
    names = list(ds.names) if ds is not None else []
    rows, cols = grid_defaults(ds)
    return (gr.Dropdown(choices=choices, value=choices[0][1] if choices else None),
            gr.Dropdown(choices=names, value=rows), gr.Dropdown(choices=names, value=cols))


def _initial() -> Optional[DirectionSet]:
    try:
        G = studio.models().get(studio.models().default())
        return active_directions(G, studio.models().default())[0]
    except FacegenError:   # the banner reports a model that cannot load
        return None


def build(ctx: Ctx):
    ds0 = _initial()
    choices0, names0 = mode_choices(ds0), list(ds0.names) if ds0 is not None else []
    rows0, cols0 = grid_defaults(ds0)
    with gr.Tab(TITLE, id=TAB):
        gr.Markdown("Animate a face along one of the model's **directions** (a head turn, a smile … or, for a "
                    "generator without attribute directions, its principal components), or walk a grid of two. "
                    "Videos are H.264 mp4 (plays in any browser) and a looping GIF.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                with gr.Row(equal_height=True):
                    face = gr.Textbox("0", label="Face", info=FACE_INFO, scale=4, elem_id="anim-face")
                    pick = gr.Button("Use shelf face", size="sm", scale=1)
                psi = gr.Slider(-1, 1.5, value=0.7, step=0.05, label="Truncation ψ (for seeds)")
                mode = gr.Dropdown(choices0, value=choices0[0][1] if choices0 else None, label="Animation",
                                   allow_custom_value=True, elem_id="anim-mode")
                with gr.Row():
                    frames = gr.Slider(2, MAX_FRAMES, value=60, step=1, label="Frames")
                    fps = gr.Slider(1, MAX_FPS, value=24, step=1, label="Frames per second")
                amount = gr.Slider(0.5, MAX_STEP, value=2.5, step=0.1, label="Amount (± standard deviations)")
                with gr.Row():
                    pingpong = gr.Checkbox(False, label="There and back (loop)")
                    keep = gr.Checkbox(False, label="Keep other attributes")
                run = gr.Button("Animate", variant="primary", elem_id="anim-run")
                with gr.Accordion("More", open=False):
                    size = gr.Dropdown(SIZES, value=256, label="Video size (px, upscaled)")
                    grid_size = gr.Slider(2, 9, value=5, step=1, label="Grid size (grid mode)")
                    with gr.Row():
                        grid_rows = gr.Dropdown(names0, value=rows0, label="Grid rows (direction)",
                                                allow_custom_value=True, elem_id="anim-grid-rows")
                        grid_cols = gr.Dropdown(names0, value=cols0, label="Grid columns (direction)",
                                                allow_custom_value=True, elem_id="anim-grid-cols")
                    with gr.Row():
                        layer_start = gr.Slider(0, ctx.num_ws - 1, value=0, step=1, label="From layer")
                        layer_end = gr.Slider(0, ctx.num_ws - 1, value=min(8, ctx.num_ws) - 1, step=1,
                                              label="To layer (inclusive)")
                    noise = gr.Radio(["const", "random", "none"], value="const", label="Noise mode")
                    upload = gr.File(label="Face latent (.npz / .npy), optional", file_types=[".npz", ".npy"],
                                     type="filepath")
                    dfile = gr.File(label="Directions (.npz), optional", file_types=[".npz"], type="filepath")
            with gr.Column(scale=2):
                with gr.Row():
                    video = gr.Video(label="Video (mp4)", format="mp4", autoplay=True, loop=True, height=320,
                                     elem_id="anim-video", interactive=False)
                    gif = gr.Image(label="GIF", type="filepath", interactive=False, height=320, elem_id="anim-gif")
                grid = gr.Image(label="Grid (rows: high → low, columns: low → high)",
                                type="filepath", format="png", interactive=False, elem_id="anim-grid")
                note = gr.Markdown("", elem_id="anim-note")
                files = gr.File(label="Downloads (mp4, GIF, grid PNG, frame latents .npz)", file_count="multiple")

    inputs = [face, psi, mode, frames, fps, amount, pingpong, keep, size, grid_size, grid_rows, grid_cols,
              layer_start, layer_end, upload, dfile, noise, ctx.model, ctx.shelf]
    run.click(long_job(animate, "animation",
                       when=lambda a: 2 <= int(a["frames"]) <= MAX_FRAMES and int(a["size"]) in SIZES
                       and int(a["frames"]) * int(a["size"]) ** 2 > LONG_PIXELS),
              inputs, [video, gif, grid, files, note], api_name="animate", **LONG_EVENT)
    pick.click(shelf_face, ctx.shelf_selected, face, api_name="animate_pick_shelf", api_visibility="undocumented")

    @ui_errors
    def on_directions(directions_file, model):
        return list(_controls(active_directions(load_model(model), model, directions_file)[0]))

    dfile.change(on_directions, [dfile, ctx.model], [mode, grid_rows, grid_cols], api_name="animate_directions",
                 api_visibility="private")

    def on_model(G):
        try:
            ds = active_directions(G, "")[0]
        except FacegenError:   # the editing tab says why
            ds = None
        m, r, c = _controls(ds)
        return {layer_start: gr.Slider(maximum=G.num_ws - 1, value=0),
                layer_end: gr.Slider(maximum=G.num_ws - 1, value=min(8, G.num_ws) - 1),
                mode: m, grid_rows: r, grid_cols: c}

    ctx.on_model(on_model, [layer_start, layer_end, mode, grid_rows, grid_cols])

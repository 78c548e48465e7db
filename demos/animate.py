"""Animation: a face turning its head (yaw), smiling, or walking a yaw x smile grid, as mp4 and GIF."""

from __future__ import annotations

import gradio as gr

from facegen.engine import latents as L
from facegen import studio
from facegen.packs.directions import MAX_STEP
from facegen.engine.errors import InputError
from facegen.features.animate import MAX_FPS, MAX_FRAMES

from .common import GPU_EVENT, Ctx, gpu, load_model, out_dir, save_bytes, ui_errors, warn_all
from .edit import FACE_INFO, directions_for, keep_method, resolve_face, shelf_face

TAB = "animate"
TITLE = "Animation"
MODES = [("Head turn (yaw sweep)", "yaw"), ("Smile sweep", "smile"), ("Yaw × smile grid", "grid")]
SIZES = [128, 256, 512]


def available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401  (ships the ffmpeg with libx264 the mp4 needs)
        return True
    except ImportError:  # pragma: no cover
        return False


@gpu(duration=60)
def _animate_gpu(model, ws, ds, mode, frames, fps, amount, layers, conditional, pingpong, size, grid, outdir,
                 noise_mode):
    from facegen.features.editing import guide_for
    from facegen.features.animate import animate as run
    G = studio.device_for(studio.models().get(model))
    res = run(G, ws, ds, mode, frames, fps, amount, layers, conditional, pingpong, size, "nearest", grid, outdir,
              noise_mode=studio.check_noise(noise_mode), guide=guide_for(G, ds) if conditional else None)
    res.pop("frames"), res.pop("grid", None)
    return res


@ui_errors
def animate(face, psi, mode, frames, fps, amount, pingpong, keep_others, size, grid_size, layer_start, layer_end,
            latent_file, directions_file, noise_mode, model, shelf, progress=gr.Progress()):
    """Animate one face: mode 'yaw' or 'smile' sweeps the attribute from -amount to +amount standard
    deviations over `frames` frames (pingpong: there and back); 'grid' renders the yaw x smile grid
    (grid_size x grid_size, PNG) and a video walking it. -> (mp4, GIF, grid PNG or None, downloads, note)."""
    G = load_model(model, progress)
    ds = directions_for(G, model, directions_file)
    if mode not in ("yaw", "smile", "grid"):
        raise InputError(f"Unknown animation '{mode}': use yaw, smile or grid.")
    for a in (("yaw", "smile") if mode == "grid" else (mode,)):
        if a not in ds:
            raise InputError(f"The directions for this model have no '{a}' direction ({', '.join(ds.names)}).")
    if int(size) not in SIZES:
        raise InputError(f"Video size must be one of {', '.join(map(str, SIZES))} px (got {size}).")
    layers = L.layer_range(layer_start, layer_end, G.num_ws)
    ws, label, notes = resolve_face(G, face, psi, shelf, latent_file)
    warn_all(notes)
    progress(0.2, desc=f"Rendering {int(frames)} frames")
    d = out_dir()
    res = _animate_gpu(model, ws, ds, mode, int(frames), float(fps), float(amount), layers, bool(keep_others),
                       bool(pingpong), int(size), int(grid_size), str(d), noise_mode)
    npz = save_bytes(studio.npz_bytes(res["ws"], G, kind="animation", face=label, mode=mode,
                                      values=[list(map(float, v)) if hasattr(v, "__len__") else float(v)
                                              for v in res["values"]],
                                      conditional=bool(keep_others), layers=layers, model=model),
                     d / "frames-latents.npz")
    t = res["timings"]
    note = (f"**{label}**: {mode} animation, {int(frames)} frames at {float(fps):g} fps "
            f"({int(frames) / float(fps):.1f} s), ±{float(amount):g} SD on layers {layers[0]}-{layers[-1]}"
            + (f", keeping other attributes ({'with conditional directions' if mode == 'grid' else keep_method(G, ds)})"
               if keep_others else "")
            + f". Rendered in {t['render_s']:.2f} s, encoded in {t.get('mp4_s', 0) + t.get('gif_s', 0):.2f} s.")
    files = [res["mp4"], res["gif"]] + ([res["grid_png"]] if "grid_png" in res else []) + [npz]
    return res["mp4"], res["gif"], res.get("grid_png"), files, note


def build(ctx: Ctx):
    with gr.Tab(TITLE, id=TAB):
        gr.Markdown("Animate a face along the **yaw** (head turn) and **smile** directions: a sweep, or a "
                    "yaw × smile grid. Videos are H.264 mp4 (plays in any browser) and a looping GIF.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                with gr.Row(equal_height=True):
                    face = gr.Textbox("0", label="Face", info=FACE_INFO, scale=4, elem_id="anim-face")
                    pick = gr.Button("Use shelf face", size="sm", scale=1)
                psi = gr.Slider(-1, 1.5, value=0.7, step=0.05, label="Truncation ψ (for seeds)")
                mode = gr.Radio(MODES, value="yaw", label="Animation", elem_id="anim-mode")
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
                grid = gr.Image(label="Yaw × smile grid (rows: smile high → low, columns: yaw left → right)",
                                type="filepath", format="png", interactive=False, elem_id="anim-grid")
                note = gr.Markdown("", elem_id="anim-note")
                files = gr.File(label="Downloads (mp4, GIF, grid PNG, frame latents .npz)", file_count="multiple")

    inputs = [face, psi, mode, frames, fps, amount, pingpong, keep, size, grid_size, layer_start, layer_end, upload,
              dfile, noise, ctx.model, ctx.shelf]
    run.click(animate, inputs, [video, gif, grid, files, note], api_name="animate", **GPU_EVENT)
    pick.click(shelf_face, ctx.shelf_selected, face, api_name="animate_pick_shelf", api_visibility="undocumented")
    ctx.on_model(lambda G: {layer_start: gr.Slider(maximum=G.num_ws - 1, value=0),
                            layer_end: gr.Slider(maximum=G.num_ws - 1, value=min(8, G.num_ws) - 1)},
                 [layer_start, layer_end])

"""The studio as an MCP server: its documented endpoints as tools an agent can call.

Gradio's MCP server (``launch(mcp_server=True)``, at ``/gradio_api/mcp/``) makes a tool of every public
endpoint, named after its handler and described by the handler's docstring (``Args:`` one line per
parameter, ``Returns:``). The handlers' own docstrings are written for this code's readers, so the text an
agent reads lives here, one entry per endpoint, and :func:`document` hands each documented endpoint's
handler a thin wrapper that carries its tool name (the endpoint's) and that text. Endpoints that only
make sense with a session's state (the face shelf, resuming faceswap training, stopping a job) are
hidden from MCP: an MCP call starts from a fresh session every time. Images come back as PNG files: a
single image as MCP image content plus its URL, galleries and videos as URLs on this server.
"""

from __future__ import annotations

import functools

MODEL = "model: a model name from the app's model dropdown, e.g. 'mini-v2' (the embedded 64 px default) or 'mini'"
NOISE = "noise_mode: 'const' (reproducible), 'random' or 'none'"
PSI = "psi: truncation psi, -1 to 1.5 (lower = closer to the average face)"
FACE = ("face: one face spec: a seed '7', a seed at its own psi '7@0.5', or a bank face '@Ada Quill' "
        "(shelf faces '#1' need a browser session)")
LAYERS = ("layer_start: first style layer, 0-based\n"
          "    layer_end: last style layer, inclusive (the model has num_ws layers: 10 for mini)")

TOOLS = {
    "generate": f"""Generate random faces from seeds with a StyleGAN generator.

Args:
    seeds: seeds like '0-7' or '1,5,9-11'; one seed with count N gives N consecutive seeds; empty = random
    count: faces to make when one seed or no seed is given, 1-32
    {PSI}
    cutoff: truncate only the first N style layers (0 = all)
    {NOISE}
    {MODEL}
    class_index: the class of a class-conditional generator (ignored by others)
    translate_x: StyleGAN3 only: shift in image widths (+ = right); 0 elsewhere
    translate_y: StyleGAN3 only: shift in image widths (+ = down); 0 elsewhere
    rotate: StyleGAN3 only: degrees counter-clockwise; 0 elsewhere
Returns:
    a gallery of PNG faces (URLs, captioned 'seed N'), one latent .npz per face, a share link
""",
    "mix": f"""Style mixing grid (as in the StyleGAN paper): each cell is a source face with a template's styles on the chosen layers.

Args:
    sources: face specs for the rows, e.g. '0-3' (at most 8)
    templates: face specs for the columns, e.g. '10-12' (at most 8)
    {LAYERS}
    {PSI}
    {NOISE}
    {MODEL}
Returns:
    the grid PNG, a gallery of the mixed faces, downloadable files (grid PNG, latents .npz), a share link
""",
    "mix_preset": f"""The layer range of a style-mixing preset for a model.

Args:
    preset: 'coarse' (layers 0-3: pose, face shape), 'middle' (4-7: features) or 'fine' (8+: colours)
    {MODEL}
Returns:
    layer_start, layer_end (inclusive), clipped to the model's layers
""",
    "fuse": f"""Fuse two to eight faces into one (a weighted average of their latents), plus an interpolation strip from the first face to the second.

Args:
    faces: face specs, e.g. '1, 2' (2-8 faces)
    weights: one weight per face, e.g. '1, 1, 2'; empty = equal weights
    {LAYERS}
    {PSI}
    interp_steps: faces in the interpolation strip: 0 (none) or 2-16
    {NOISE}
    {MODEL}
Returns:
    the fused face PNG, the strip PNG (or nothing), files (PNG, latent .npz, strip), a share link
""",
    "customize": f"""Faces of chosen classes (smiling, old, glasses, a hair colour ...; all must hold), made by one of several methods.

Args:
    classes: class names, e.g. ['glasses', 'smiling']; customize_info lists a model's classes
    method: 'zcode' (per-class code generator), 'sampler' (class sampler), 'rejection' (sample and judge) or 'finetuned'
    count: faces to return, 1-64
    psi: truncation psi, 0 to 1.2
    seed: random seed (the same seed gives the same faces)
    check: 'check' (a classifier keeps faces of the classes), 'varied' (the most different of 4x as many) or 'none'
    {MODEL}
Returns:
    a gallery of PNG faces (URLs), a note naming the path that ran and the time per face
""",
    "customize_info": f"""What the customize tool does on a model: its classes, methods, who checks, what falls back.

Args:
    {MODEL}
Returns:
    one line of text
""",
    "edit": f"""Edit a face's attributes (yaw, smile, age ... or principal components) by steps along the model's directions.

Args:
    {FACE}
    {PSI}
    steps: JSON like '{{"yaw": 1.5, "age": 1}}' or text 'yaw=1.5, age=1'; steps in standard deviations, -5 to 5; edit_directions lists the names
    keep_others: hold the other attributes fixed while editing
    {LAYERS}
    latent_file: optional .npz/.npy latent to edit instead of `face` (upload it first)
    directions_file: optional directions .npz for this generator
    {NOISE}
    {MODEL}
Returns:
    the original PNG, the edited PNG, files (PNG, latent .npz), a note saying which directions were used
""",
    "edit_directions": f"""The attribute directions the edit and animate tools use for a model: where they come from, one row each.

Args:
    directions_file: optional directions .npz to describe instead
    {MODEL}
Returns:
    markdown text
""",
    "animate": f"""Animate a face along one direction (a sweep) or a grid of two, as an H.264 mp4 and a GIF.

Args:
    {FACE}
    {PSI}
    mode: a direction name of the model (e.g. 'yaw', 'smile'; 'component 1' ...) or 'grid'
    frames: frames in the video, 2-240
    fps: frames per second, 1-60
    amount: the sweep goes from -amount to +amount standard deviations
    pingpong: go there and back
    keep_others: hold the other attributes fixed
    size: video size in px: 128, 256 or 512
    grid_size: grid mode: faces per side, 2-9
    grid_rows: grid mode: the direction down the rows (empty = the default)
    grid_cols: grid mode: the direction across the columns (empty = the default)
    {LAYERS}
    latent_file: optional .npz/.npy latent to animate instead of `face`
    directions_file: optional directions .npz for this generator
    {NOISE}
    {MODEL}
Returns:
    the mp4 URL, the GIF, the grid PNG (grid mode) or nothing, downloadable files, a note
""",
    "encode": f"""Encode the face in a photo into the generator's latent space (detect, align, encode, refine) and show the reconstruction.

Args:
    photo: an image file with a face (upload it first)
    face: which face, 1 = the largest
    mode: alignment: 'auto', 'detect' (find and FFHQ-align the face) or 'pre-aligned' (the photo is an aligned face crop)
    refine_steps: optimisation steps after the encoder, 0-500
    time_budget: seconds of optimisation, 0.5-30 (over 10 s waits for a long-job slot)
    {MODEL}
    space: without an encoder: project in 'W' (one latent) or 'w+' (one per layer)
Returns:
    detections PNG, aligned crop, start image, final reconstruction, before/after figure, error figure, metrics (markdown, names the method and loss), files (latent .npz, aligned.png, reconstruction.png)
""",
    "encode_bank_list": f"""The named faces of the latent bank made for a model (usable as '@Name' face specs).

Args:
    {MODEL}
Returns:
    a gallery of (reconstruction, name), a description
""",
    "faceswap": f"""Put identity A (a face spec) into a video: train a faceswap autoencoder for the budget, then swap every frame (audio kept). A long job: it waits for a slot; one per session at a time (all MCP calls share one session).

Args:
    face: identity A: a seed, a seed at its own psi '7@0.5' or a bank face '@Imani Brooks'; empty = the model's default
    {PSI}
    video: a video file (mp4/webm/mov/m4v/mkv, at most 20 s, 600 frames, 1920 px; upload it first) or nothing to use `sample`
    sample: a sample video name, e.g. 'sample-lena' (used when no video is given)
    budget: training seconds, 1-600
    views: rendered views of A to train on, 50-200
    detector: face detector: 'auto', 'localiser' or 'dlib'
    color: colour matching: 'none', 'reinhard' or 'seamless'
    region: swapped region: 'head' or 'face'
    {MODEL}
Returns:
    the swapped mp4 URL, files (mp4, preview PNG), a note, the training preview PNG, a status line
""",
    "load_model": f"""Load a model (downloads a Hub model on first use) and describe it; an error says why it cannot be loaded.

Args:
    {MODEL}
Returns:
    the banner text (size, style layers, fingerprint, source, feature pack), and slider updates for the UI
""",
    "jobs": """Where the long-job line stands (faceswap, long encodings, large animations): short tools never wait for it.

Returns:
    {"slots": long jobs that run at once, "running": the kinds running, "waiting": jobs in line, "mine": this session's job and its place, or null}
""",
}


def _state_free_outputs(components, data) -> list:
    """The outputs an MCP client gets: `data` without the values of gr.State outputs.

    Replaces gradio 6.31's ``GradioMCPServer.pop_returned_state``, which breaks on every studio endpoint
    (they keep their last result in a gr.State): its queued path hands over the gradio_client result --
    a tuple with one value per output when there are several -- wrapped in a one-element list, and it
    pops State positions one by one by their original index (IndexError, or the wrong value once one is
    gone). Here: the client's tuple is unpacked, then a full-length list drops the State positions
    (highest first, by keeping the others); anything else is already free of State values."""
    from gradio.components import State
    keep = [i for i, c in enumerate(components) if not isinstance(c, State)]
    data = list(data)
    if len(data) == 1 and len(components) > 1 and isinstance(data[0], (tuple, list)):
        data = list(data[0])          # the client's result: one value per output
    if len(data) == len(components):
        return [data[i] for i in keep]
    return data


def _tool(fn, name: str, doc: str):
    """`fn` under the tool name `name` with the docstring `doc` (same signature: Gradio's special arguments
    and MCP's parameter list still come from `fn`)."""
    @functools.wraps(fn)
    def tool(*args, **kwargs):
        return fn(*args, **kwargs)
    tool.__name__ = tool.__qualname__ = name
    tool.__doc__ = doc
    return tool


def _hidden(fn):
    """`fn`, left out of the MCP tool list (gradio lists only functions whose _mcp_type is 'tool' or unset)."""
    @functools.wraps(fn)
    def hidden(*args, **kwargs):
        return fn(*args, **kwargs)
    hidden._mcp_type = "session-only"
    return hidden


def document(demo) -> list:
    """Give every public endpoint of `demo` its MCP text (TOOLS) or hide it from MCP; -> the tool names.
    Call after the Blocks are built and before launch (the MCP server reads them at launch)."""
    import warnings
    from gradio.mcp import GradioMCPServer
    GradioMCPServer.pop_returned_state = staticmethod(_state_free_outputs)
    # the State inputs (the shelf) start empty in every MCP call; the tool texts say so ("need a browser session")
    warnings.filterwarnings("ignore", message="This MCP server includes a tool that has a gr.State input")
    tools = []
    for block_fn in demo.fns.values():
        if block_fn.fn is None or block_fn.api_visibility != "public" or not block_fn.api_name:
            continue
        if block_fn.api_name in TOOLS:
            block_fn.fn = _tool(block_fn.fn, block_fn.api_name, TOOLS[block_fn.api_name])
            tools.append(block_fn.api_name)
        else:
            block_fn.fn = _hidden(block_fn.fn)
    return tools

"""Faceswap video: train a shared-encoder / two-decoder autoencoder on identity A (views of one latent) and
the faces of a video, then put A's face into every frame (facegen.features.faceswap does the work).

Works on any generator: the active model's pack (``studio.models().pack``) is passed to every faceswap
call; where it lacks a part (alignment template, landmark localiser, directions, a bank for the default
identity) the fallback used is named in the tab (under the title), in the note and in the status that
the API returns."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import gradio as gr
import numpy as np

from facegen import studio
from facegen.engine.errors import FacegenError, InputError
from facegen.features import faceswap as fs

from .common import LONG_EVENT, SWEEPER, ZERO_GPU, ZERO_GPU_MAX, Ctx, gpu, gpu_seconds, load_model, long_job, \
    out_dir, save_png, stop_long_job, ui_errors, warn_all
from .edit import FACE_INFO, resolve_face, shelf_face

TAB = "faceswap"
TITLE = "Faceswap video"
NO_SAMPLE = "(use the uploaded video)"
MAX_BUDGET = 600
DEFAULT_BUDGET = 300
COLORS = [("None (keep A's colours)", "none"), ("Reinhard colour transfer (LAB)", "reinhard"),
          ("Seamless clone (Poisson)", "seamless")]
REGIONS = [("Head (face + hair top)", "head"), ("Inner face (classic)", "face")]


def available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
        return True
    except ImportError:  # pragma: no cover - imageio-ffmpeg is in requirements.txt
        return False


def default_face(G) -> tuple:
    """Identity A's default on G -> (face spec, note): the first bank face of its pack, else seed 0."""
    return fs.default_identity(G, studio.models().pack(G))


def fallbacks_line(G) -> str:
    return fs.describe_fallbacks(studio.models().pack(G)) + f" Default identity A: {default_face(G)[1]}."


def sample_choices() -> list:
    return [NO_SAMPLE] + [p.stem for p in fs.sample_videos()]


def pick_video(video: Optional[str], sample: Optional[str]) -> str:
    """The uploaded video, else the chosen sample video."""
    if video:
        return str(video)
    if sample and sample != NO_SAMPLE:
        for p in fs.sample_videos():
            if p.stem == sample:
                return str(p)
        raise InputError(f"Unknown sample video '{sample}' ({', '.join(p.stem for p in fs.sample_videos())}).")
    raise InputError("No video: upload an mp4 / webm / mov file or pick a sample video.")


def _key(model: str, ws: np.ndarray, video: str, views: int, detector: str) -> str:
    h = hashlib.sha1(model.encode() + np.ascontiguousarray(ws, np.float32).tobytes())
    h.update(f"{fs.video_key(video)}|{int(views)}|{detector}".encode())
    return h.hexdigest()[:16]


def ensure_prepared(G, model: str, face, psi, shelf, video: str, views, detector, session: Optional[dict],
                    progress) -> dict:
    """The session's training data for (A, video): reused when unchanged (so training resumes), else made:
    identity set, tracking, aligned crops -> a session folder (faces.npz, track.npz, session.json)."""
    if not 50 <= int(views) <= 200:
        raise InputError(f"Identity A needs 50 to 200 views (got {views}).")
    if detector not in fs.DETECTORS:
        raise InputError(f"Unknown face detector '{detector}' ({', '.join(fs.DETECTORS)}).")
    pre = []
    if not str(face or "").strip():
        face, id_note = default_face(G)
        pre.append(id_note)
    ws, label, notes = resolve_face(G, face, psi, shelf, None)
    warn_all(notes)
    fs.probe_video(video)                      # typed errors before any work
    key = _key(model, ws, video, views, detector)
    if session and session.get("key") == key and Path(session["dir"], "faces.npz").exists():
        return session
    progress(0.05, desc="Alignment template, identity set, face tracking and alignment")
    p = fs.prepare(G, studio.models().pack(G), ws, video, int(views), detector, log=lambda *a: None)
    d = out_dir()
    fs.save_prepared(p, d)
    sess = {"key": key, "dir": str(d), "label": label, "video": video, "has_audio": p.info.has_audio,
            "frames": int(len(p.frames)), "found": int(p.track.found.sum()), "detector": p.track.detector,
            "fps": p.info.fps, "views": int(views), "notes": pre + p.notes,
            "template": p.template.source, "timings": {k: round(v, 1) for k, v in p.timings.items()}}
    Path(d, "session.json").write_text(json.dumps(sess))
    return sess


@gpu(duration=lambda folder, seconds, progress=None: gpu_seconds(seconds))
def _train_gpu(folder: str, seconds: float, progress=None) -> dict:
    """Train (resuming from the folder's checkpoint) for `seconds`; save; -> preview and figures."""
    import torch
    from facegen.engine.device import pick_device
    d = Path(folder)
    ckpt = d / "checkpoint.pt"
    st = fs.TrainState.load(ckpt) if ckpt.exists() else fs.TrainState.new()
    st.model.to(pick_device())
    data = np.load(d / "faces.npz", allow_pickle=False)
    fa, fb, points = data["faces_a"], data["faces_b"], data["points"]

    def cb(s, el):
        if progress is not None:
            progress(min(0.99, el / max(seconds, 1e-6)),
                     desc=f"Training: step {s.step}, loss A {s.losses[-1][1]:.3f}, B {s.losses[-1][2]:.3f}")
    with torch.enable_grad():
        fs.train(st, fa, fb, seconds, callback=cb, points=points)
    st.model.cpu()
    st.save(ckpt)
    last = np.mean(np.asarray(st.losses[-50:])[:, 1:], 0) if st.losses else np.array([np.nan, np.nan])
    return {"preview": fs.preview(st.model, fa, fb), "step": st.step, "seconds": st.seconds,
            "loss_a": float(last[0]), "loss_b": float(last[1])}


def _train(folder: str, seconds: float, progress=None) -> dict:
    """Train for `seconds`: one call, or on ZeroGPU chunks of at most ZERO_GPU_MAX - 60 s (each its own
    spaces.GPU call, resuming from the checkpoint), with progress (and the Stop check) between chunks."""
    if not ZERO_GPU:
        return _train_gpu(folder, seconds, progress)
    chunk, done, res = max(10, ZERO_GPU_MAX - 60), 0.0, None
    while res is None or done < seconds:
        step = min(chunk, seconds - done)
        if progress is not None:
            progress(done / max(seconds, 1e-6), desc=f"Training: {done:.0f} of {seconds:.0f} s")
        res = _train_gpu(folder, step)
        done += step
    return res


@gpu(duration=lambda folder, video, color, region: gpu_seconds(90))
def _convert_gpu(folder: str, video: str, color: str, region: str) -> dict:
    d = Path(folder)
    st = fs.TrainState.load(d / "checkpoint.pt")
    frames, info = fs.read_video_checked(video)
    points = np.load(d / "faces.npz", allow_pickle=False)["points"]
    out, _, _ = fs.convert(frames, fs.load_track(d), st.model, points, color, region)
    path, audio = fs.write_result(out, info, d / f"faceswap-{st.step}.mp4")
    return {"path": str(path), "audio": audio, "step": st.step}


def _status(sess: dict, res: dict) -> str:
    return (f"**{sess['label']}** → `{Path(sess['video']).name}`: faces in {sess['found']}/{sess['frames']} frames "
            f"({sess['detector']} detector), {sess['views']} views of A. Trained {res['step']} steps "
            f"({res['seconds']:.0f} s in all); loss A {res['loss_a']:.3f}, B {res['loss_b']:.3f}. "
            "Press **Train** again to continue from here. " + _notes(sess))


def _notes(sess: dict) -> str:
    """The fallbacks and sources this session used (alignment template first), one sentence each."""
    return " ".join(n[0].upper() + n[1:] + "." for n in sess.get("notes", []))


@ui_errors
def train_event(face, psi, video, sample, budget, views, detector, model, shelf, session,
                progress=gr.Progress()):
    """Train (or continue training) the faceswap model for identity A and the video, for `budget` seconds.
    -> (preview PNG: rows = video faces, their swap, A's views, A's reconstructions; status; session)."""
    G = load_model(model, progress)
    budget = _check_budget(budget)
    sess = ensure_prepared(G, model, face, psi, shelf, pick_video(video, sample), views, detector, session, progress)
    with SWEEPER.pinned(sess["dir"]):                 # kept by the temp sweep while it trains
        res = _train(sess["dir"], budget, progress)
        png = save_png(res["preview"], Path(sess["dir"]) / f"preview-{res['step']}.png")
    return png, _status(sess, res), sess


def _check_budget(budget) -> float:
    try:
        b = float(budget)
    except (TypeError, ValueError):
        raise InputError("The training budget must be a number of seconds.") from None
    if not 1 <= b <= MAX_BUDGET:
        raise InputError(f"The training budget must be 1 to {MAX_BUDGET} seconds (got {budget}).")
    return b


@ui_errors
def swap_event(face, psi, video, sample, budget, views, detector, color, region, model, shelf, session,
               progress=gr.Progress()):
    """Put identity A into the video: trains first (for `budget` s) when this session has no model for these
    inputs yet, else uses the trained one. -> (mp4, downloads, note, preview PNG, status, session)."""
    G = load_model(model, progress)
    budget = _check_budget(budget)
    if color not in fs.COLOR_MODES:
        raise InputError(f"Colour mode must be one of {', '.join(fs.COLOR_MODES)} (got '{color}').")
    if region not in fs.REGIONS:
        raise InputError(f"Region must be one of {', '.join(fs.REGIONS)} (got '{region}').")
    path = pick_video(video, sample)
    sess = ensure_prepared(G, model, face, psi, shelf, path, views, detector, session, progress)
    res = None
    with SWEEPER.pinned(sess["dir"]):                 # kept by the temp sweep while it trains and converts
        if not Path(sess["dir"], "checkpoint.pt").exists():
            res = _train(sess["dir"], budget, progress)
        progress(0.9, desc="Converting frames")
        out = _convert_gpu(sess["dir"], path, color, region)
        if res is None:
            res = _train_gpu(sess["dir"], 0)          # zero seconds: preview and figures of the trained model
        png = save_png(res["preview"], Path(sess["dir"]) / f"preview-{res['step']}.png")
    note = (f"Swapped **{sess['label']}** into {sess['found']} of {sess['frames']} frames "
            f"(model after {out['step']} steps, region: {region}, colour: {color}). ")
    if out["audio"]:
        note += "The original audio is kept."
    else:
        note += "This video has no audio track, so the result is silent."
        gr.Warning("The video has no audio track: the result is silent.")
    if sess["found"] < sess["frames"]:
        note += f" {sess['frames'] - sess['found']} frames without a detected face are left unchanged."
    note += " " + _notes(sess)
    return out["path"], [out["path"], png], note, png, _status(sess, res), sess


def _valid_job(a: dict) -> bool:
    """A faceswap request within the caps (budget, views, an uploaded video's length and size: its header
    is read) goes to the long-job line; others are refused at once, by the handler's own checks."""
    if a.get("video"):
        fs.probe_video(a["video"])
    return 1 <= float(a["budget"]) <= MAX_BUDGET and 50 <= int(a["views"]) <= 200


def _initial(ctx: Ctx) -> tuple:
    """(default face spec, fallbacks line) for the app's default model; seed 0 if it cannot be loaded."""
    try:
        G = studio.models().get(studio.models().default())
        return default_face(G)[0], fallbacks_line(G)
    except FacegenError as e:
        return "0", f"(the default model is not available: {e})"


def build(ctx: Ctx):
    session = gr.State(None)
    face0, fallbacks0 = _initial(ctx)
    with gr.Tab(TITLE, id=TAB):
        gr.Markdown("Put a face (identity **A**: a seed, a shelf face — e.g. an encoded photo — or a bank face) "
                    "into a video. facegen renders A turning and smiling, finds and aligns the faces of the "
                    "video, trains a faceswap autoencoder (shared encoder, one decoder per identity) for the "
                    "time budget, then swaps A's face into every frame and keeps the audio. "
                    f"Videos up to {fs.MAX_SECONDS:g} s ({', '.join(fs.VIDEO_EXTS)}).")
        fallbacks = gr.Markdown(fallbacks0, elem_id="faceswap-fallbacks")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                with gr.Row(equal_height=True):
                    face = gr.Textbox(face0, label="Identity A", info=FACE_INFO + "; empty: the model's default",
                                      scale=4, elem_id="faceswap-face")
                    pick = gr.Button("Use shelf face", size="sm", scale=1)
                psi = gr.Slider(-1, 1.5, value=0.7, step=0.05, label="Truncation ψ (for seeds)")
                video = gr.File(label="Target video (mp4 / webm / mov)", type="filepath", elem_id="faceswap-video")
                samples = sample_choices()
                sample = gr.Dropdown(samples, value=samples[1] if len(samples) > 1 else NO_SAMPLE,
                                     label="…or a sample video (face world)", elem_id="faceswap-sample")
                budget = gr.Slider(5, MAX_BUDGET, value=DEFAULT_BUDGET, step=5, label="Training budget (seconds)")
                color = gr.Radio(COLORS, value="none", label="Colour matching")
                with gr.Row():
                    train_btn = gr.Button("Train", elem_id="faceswap-train")
                    swap_btn = gr.Button("Swap", variant="primary", elem_id="faceswap-run")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="faceswap-stop")
                with gr.Accordion("More", open=False):
                    region = gr.Radio(REGIONS, value="head", label="Swapped region")
                    views = gr.Slider(50, 200, value=120, step=10, label="Views of A (training set size)")
                    detector = gr.Radio(list(fs.DETECTORS), value="auto",
                                        label="Face detector (auto: the pack's landmark localiser when it fits the "
                                              "video, else dlib)")
            with gr.Column(scale=2):
                result = gr.Video(label="Result (mp4)", format="mp4", autoplay=True, loop=True, height=320,
                                  interactive=False, elem_id="faceswap-result")
                note = gr.Markdown("", elem_id="faceswap-note")
                preview = gr.Image(label="Training preview (rows: video faces, swapped to A, A, A reconstructed)",
                                   type="filepath", format="png", interactive=False, elem_id="faceswap-preview")
                status = gr.Markdown("", elem_id="faceswap-status")
                files = gr.File(label="Downloads (mp4, preview PNG)", file_count="multiple")

    common = [face, psi, video, sample, budget, views, detector]
    train_ev = train_btn.click(long_job(train_event, "faceswap training", when=_valid_job),
                               common + [ctx.model, ctx.shelf, session], [preview, status, session],
                               api_name="faceswap_train", **LONG_EVENT)
    swap_ev = swap_btn.click(long_job(swap_event, "faceswap", when=_valid_job),
                             common + [color, region, ctx.model, ctx.shelf, session],
                             [result, files, note, preview, status, session], api_name="faceswap", **LONG_EVENT)
    stop_btn.click(stop_long_job, None, status, cancels=[train_ev, swap_ev], queue=False, api_name="faceswap_stop",
                   api_visibility="private")
    pick.click(shelf_face, ctx.shelf_selected, face, api_name="faceswap_pick_shelf", api_visibility="undocumented")
    ctx.on_model(lambda G: {face: gr.Textbox(value=default_face(G)[0]), fallbacks: fallbacks_line(G)},
                 [face, fallbacks])

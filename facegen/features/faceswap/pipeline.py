"""Faceswap end to end: identity A's training set, preparing a video, converting it, the whole swap.

Every function takes the generator G and its feature pack (:mod:`facegen.packs.pack`, or None) and says
in its notes which fallback it used where the pack lacks something:

* **Alignment template** (:func:`facegen.packs.alignment.alignment_for`): the pack's ``alignment``, else
  measured now on G's own samples, else the generic FFHQ 5-point layout.
* **Detector** (:func:`facegen.features.faceswap.tracking.track_faces`): the pack's ``localiser`` when
  ``auto`` finds it fits the video, else dlib.
* **Identity A's views** (:func:`identity_set`): yaw and smile steps along the pack's ``directions``;
  without them, coarse-layer noise only.
* **Default identity** (:func:`default_identity`): the first bank face of the pack, else seed 0.

Method
------
1. **Identity A** (:func:`identity_set`): one w+ latent. Its *views* are the latent with Gaussian noise
   on the coarse layers (0-3, pose and layout) plus random steps along the yaw and smile directions,
   rendered by G: 50-200 pictures of the same person turning and smiling, framed as G frames its
   samples -- which the alignment template describes.
2. **The video** (:mod:`~facegen.features.faceswap.video_io`) is checked and decoded; its faces are
   tracked (:mod:`~facegen.features.faceswap.tracking`) and aligned onto the template
   (:mod:`~facegen.features.faceswap.geometry`).
3. **Model** (:mod:`~facegen.features.faceswap.autoencoder`), trained for a time budget.
4. **Conversion** (:func:`convert`): each aligned face -> encoder -> decoder A -> optional colour transfer
   or seamless clone -> pasted back with the feathered mask (:mod:`~facegen.features.faceswap.blend`).
   Frames without a face pass through; the mp4 keeps the source's audio.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from facegen.engine.errors import FacegenError, InputError
from facegen.features.faceswap.autoencoder import CROP, TrainState, swap_faces, train
from facegen.features.faceswap.blend import COLOR_MODES, face_mask, paste_back, poisson_blend, reinhard_lab
from facegen.features.faceswap.geometry import align_crops, align_transforms, resize_faces
from facegen.features.faceswap.tracking import Track, pack_localiser, track_faces
from facegen.features.faceswap.video_io import VideoInfo, read_video_checked, write_result
from facegen.packs.alignment import AlignmentTemplate, alignment_for


# ---------------------------------------------------------------------------
# 1. Identity A
# ---------------------------------------------------------------------------

def w_std(G, n: int = 2000, seed: int = 0) -> np.ndarray:
    """Per-dimension standard deviation of w (from `n` random z through the mapping network)."""
    with torch.no_grad():
        z = torch.from_numpy(np.random.RandomState(seed).randn(n, G.z_dim).astype(np.float32))
        w = G.mapping(z.to(G.mapping.w_avg.device), None)[:, 0]
    return w.std(0).cpu().numpy()


def identity_set(G, ws: np.ndarray, ds=None, n: int = 120, coarse: Sequence[int] = (0, 1, 2, 3),
                 sigma: float = 0.3, yaw: float = 3.0, smile: tuple = (-1.5, 2.0), seed: int = 0,
                 noise_mode: str = "const") -> tuple:
    """`n` views of the face `ws` [num_ws, w_dim] -> (images uint8 [n, R, R, 3], their ws).

    View i = ws + sigma * std(w) * N(0, 1) on the `coarse` layers (one draw shared by those layers) +
    yaw step ~ U(-yaw, yaw) and smile step ~ U(*smile) standard deviations along the directions of `ds`
    on its default layers, when `ds` has them. View 0 is the face itself."""
    from facegen.engine.synthesis import synthesize
    ws = np.asarray(ws, np.float32)
    if ws.shape != (G.num_ws, G.w_dim):
        raise InputError(f"Identity A must be a w+ latent of shape [{G.num_ws}, {G.w_dim}] (got {list(ws.shape)}).")
    if not 8 <= int(n) <= 400:
        raise InputError(f"The identity set needs 8 to 400 views (got {n}).")
    rng = np.random.RandomState(seed)
    out = np.repeat(ws[None], int(n), 0)
    layers = [l for l in coarse if l < G.num_ws]
    noise = rng.randn(int(n), 1, G.w_dim).astype(np.float32) * (sigma * w_std(G))[None, None]
    noise[0] = 0
    out[:, layers] += noise
    if ds is not None:
        edit_layers = [l for l in ds.default_layers if l < G.num_ws]
        for name, (lo, hi) in (("yaw", (-yaw, yaw)), ("smile", smile)):
            if name in ds:
                steps = rng.uniform(lo, hi, size=int(n)).astype(np.float32)
                steps[0] = 0
                out[:, edit_layers] += steps[:, None, None] * ds.step_vector(name, 1.0)[None, None]
    return synthesize(G, out, noise_mode), out


def pack_directions(G, pack) -> tuple:
    """-> (the pack's DirectionSet or None, a note saying which)."""
    if pack is not None and pack.has("directions"):
        from facegen.packs.directions import load_directions
        ds = load_directions(pack.path("directions"), G)
        have = [a for a in ("yaw", "smile") if a in ds]
        if have:
            return ds, f"views of A: coarse-layer noise + {' and '.join(have)} steps (pack '{pack.name}')"
    where = f"pack '{pack.name}' has no yaw / smile directions" if pack is not None else "no feature pack"
    return None, f"views of A: coarse-layer noise only ({where})"


def default_identity(G, pack) -> tuple:
    """The face spec identity A starts as on G -> (spec, note): the first bank face of its pack, else seed 0."""
    if pack is not None:
        from facegen.packs.bank import load_bank
        for path in pack.paths("banks"):
            try:
                bank = load_bank(path, G)
            except FacegenError:
                continue
            if bank.names:
                return f"@{bank.names[0]}", f"identity A: bank face '{bank.names[0]}' of pack '{pack.name}'"
    why = "its pack has no latent bank" if pack is not None else "it has no feature pack"
    return "0", f"identity A: seed 0 of the active generator ({why})"


def describe_fallbacks(pack) -> str:
    """One line: what a swap on this pack's generator will use, and the fallbacks where it lacks a part."""
    if pack is None:
        return ("No feature pack for this generator: the alignment template is measured on its own samples at "
                "first use (the generic FFHQ template if no face is found on them), faces are tracked by dlib, "
                "and A's views vary by coarse-layer noise only.")
    parts = ["alignment template from the pack" if pack.has("alignment") else
             "alignment template measured on the generator's samples at first use (no 'alignment' in the pack)",
             "faces tracked by the pack's landmark localiser or dlib" if pack.has("localiser") else
             "faces tracked by dlib (no 'localiser' in the pack)",
             "yaw / smile views along the pack's directions" if pack.has("directions") else
             "A's views vary by coarse-layer noise only (no 'directions' in the pack)"]
    return f"Pack '{pack.name}': " + "; ".join(parts) + "."


# ---------------------------------------------------------------------------
# 2. Preparing a (identity A, video) pair
# ---------------------------------------------------------------------------

@dataclass
class Prepared:
    """Training data for one (identity A, video) pair, and how it was made."""
    faces_a: np.ndarray          # aligned crops of A's views, uint8 [N, S, S, 3]
    faces_b: np.ndarray          # aligned crops of the video's faces (frames with a face)
    frames: np.ndarray
    info: VideoInfo
    track: Track                 # with .transforms: crop -> frame [T, 2, 3] (frames with a face)
    template: AlignmentTemplate
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def points(self) -> np.ndarray:
        return self.template.at(self.faces_a.shape[1])


def track_transforms(track: Track, template: AlignmentTemplate, size: int = CROP) -> np.ndarray:
    """Crop -> frame matrices [T, 2, 3] of the track's frames (frames without a face: NaN)."""
    out = np.full((len(track.found), 2, 3), np.nan)
    fi = np.nonzero(track.found)[0]
    out[fi] = align_transforms(track.landmarks[fi], template.at(size), size, track.framing)
    return out


def detector_note(track: Track, pack) -> str:
    if track.detector == "localiser":
        return f"faces tracked by the landmark localiser of pack '{pack.name}'"
    why = "no feature pack" if pack is None else ("no landmark localiser in pack " f"'{pack.name}'"
                                                  if not pack.has("localiser") else "its localiser did not fit")
    return f"faces tracked by dlib ({why})"


def prepare(G, pack, ws_a: np.ndarray, video, n_views: int = 120, detector: str = "auto", sigma: float = 1.0,
            size: int = CROP, template: Optional[AlignmentTemplate] = None, log=print) -> Prepared:
    """Identity set + video reading + tracking + aligned crops for both identities (module docstring)."""
    t = {}
    t0 = time.time()
    frames, info = read_video_checked(video)
    t["read_s"] = time.time() - t0
    t0 = time.time()
    template = template or alignment_for(G, pack)
    t["template_s"] = time.time() - t0
    t0 = time.time()
    localiser = pack_localiser(pack)
    labeller = None
    if localiser is not None and pack.labeller:
        from facegen.labels.base import load_labeller
        try:
            labeller = load_labeller(pack.labeller)
        except FacegenError:
            labeller = None
    track = track_faces(frames, detector, localiser, labeller, sigma)
    track.transforms = track_transforms(track, template, size)
    t["track_s"] = time.time() - t0
    log(f"faces in {int(track.found.sum())}/{len(frames)} frames ({track.detector}) in {t['track_s']:.1f} s")
    t0 = time.time()
    ds, views_note = pack_directions(G, pack)
    views, _ = identity_set(G, ws_a, ds, n_views)
    faces_a = resize_faces(views, size)          # G's own framing, which the template describes
    t["identity_s"] = time.time() - t0
    log(f"identity set: {len(views)} views in {t['identity_s']:.1f} s")
    fi = track.found
    faces_b = align_crops(frames[fi], track.transforms[fi], size)
    notes = [template.note, detector_note(track, pack), views_note]
    return Prepared(faces_a, faces_b, frames, info, track, template, notes, t)


def save_prepared(p: Prepared, folder) -> None:
    """Cache the training crops, the template and the track (npz, no pickles) so a session can resume."""
    from pathlib import Path
    folder = Path(folder)
    np.savez(folder / "faces.npz", faces_a=p.faces_a, faces_b=p.faces_b, points=p.points)
    np.savez(folder / "track.npz", landmarks=p.track.landmarks, found=p.track.found, transforms=p.track.transforms,
             detector=np.array(p.track.detector))


def load_track(folder) -> Track:
    from pathlib import Path
    d = np.load(Path(folder) / "track.npz", allow_pickle=False)
    tr = Track(d["landmarks"], d["found"], str(d["detector"]))
    tr.transforms = d["transforms"]
    return tr


# ---------------------------------------------------------------------------
# 3. Conversion and the whole swap
# ---------------------------------------------------------------------------

def convert(frames: np.ndarray, track: Track, model, points: np.ndarray, color: str = "none",
            region: str = "head", color_strength: float = 1.0, feather: float = 2.5,
            progress: Optional[Callable] = None) -> tuple:
    """Swap identity A into every frame with a face -> (frames uint8 [T, H, W, 3], swapped crops, crops).

    Per frame: aligned crop (``track.transforms``) -> encoder -> decoder A -> colour transfer ('reinhard'),
    seamless clone ('seamless') or nothing ('none') -> pasted back with the feathered mask of `region`,
    laid out on the template `points` [5, 2] (pixels of the model's crop)."""
    if color not in COLOR_MODES:
        raise InputError(f"Colour mode must be one of {', '.join(COLOR_MODES)} (got '{color}').")
    S = model.size
    hard, soft = face_mask(S, points, region=region), face_mask(S, points, feather=1.0, region=region)
    alpha = face_mask(S, points, feather=feather, region=region)
    fi = np.nonzero(track.found)[0]
    crops = np.zeros((len(frames), S, S, 3), np.uint8)
    crops[fi] = align_crops(frames[fi], track.transforms[fi], S)
    swapped = crops.copy()
    swapped[fi] = swap_faces(model, crops[fi], 0)
    out = frames.copy()
    for k, i in enumerate(fi):
        face = swapped[i]
        if color == "reinhard":
            face = reinhard_lab(face, crops[i], hard, color_strength)
        elif color == "seamless":
            face = poisson_blend(face, crops[i], soft)
        swapped[i] = face
        paste_back(out[i], face, alpha, track.transforms[i])
        if progress is not None and k % 10 == 0:
            progress(k / max(1, len(fi)))
    return out, swapped, crops


def swap_video(G, pack, ws_a: np.ndarray, video, out_path, seconds: float = 300, n_views: int = 120,
               color: str = "none", region: str = "head", detector: str = "auto",
               state: Optional[TrainState] = None, log=print, ssim_weight: float = 0.0) -> dict:
    """Everything: prepare, train for `seconds` (from `state` if given), convert, write. -> dict of results
    (path, audio, frames, swapped, crops, prepared, state, notes, timings)."""
    t_all = time.time()
    p = prepare(G, pack, ws_a, video, n_views, detector, log=log)
    state = state or TrainState.new()
    t0 = time.time()
    train(state, p.faces_a, p.faces_b, seconds, ssim_weight=ssim_weight, points=p.points,
          callback=lambda s, el: (s.step % 100 == 0) and log(f"step {s.step} loss A {s.losses[-1][1]:.4f} "
                                                             f"B {s.losses[-1][2]:.4f} ({el:.0f} s)"))
    train_s = time.time() - t0
    t0 = time.time()
    out, swapped, crops = convert(p.frames, p.track, state.model, p.points, color, region)
    path, audio = write_result(out, p.info, out_path)
    convert_s = time.time() - t0
    return {"path": str(path), "audio": audio, "frames": out, "swapped": swapped, "crops": crops, "prepared": p,
            "state": state, "notes": p.notes, "timings": {**p.timings, "train_s": train_s, "convert_s": convert_s,
                                                          "total_s": time.time() - t_all}}

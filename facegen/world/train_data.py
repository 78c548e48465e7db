"""A StyleGAN2 training run's data: face-world renders or an image folder, and class codes from the world.

``--data world:N`` renders world seeds 0..N-1 (the GAN's seed range; the predictor and the judge use
others) once and caches them as ``.npy`` in the run directory; ``--data FOLDER`` reads every image in it
(so the same command fine-tunes on real faces). Images are uint8 ``[N, H, W, 3]`` in memory;
:func:`to_tensor` maps a batch to [-1, 1]. A conditional run's class code (:func:`world_class_labels`)
is a 0/1 vector per seed from :mod:`facegen.world.classes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

__all__ = ["load_dataset", "to_tensor", "world_class_labels"]


def _render_chunk(bounds: tuple) -> np.ndarray:
    from facegen.world.render import render_batch
    a, b, size = bounds
    return render_batch(range(a, b), size=size)[0]


def load_dataset(spec: str, resolution: int, cache_dir: Optional[Path] = None, workers: int = 1) -> np.ndarray:
    """'world:N' -> N face-world renders (seeds 0..N-1) | folder -> its images, as uint8 [N, H, W, 3].

    ``workers`` > 1 renders the world's chunks of 500 seeds on that many processes (the same images)."""
    if spec.startswith("world:"):
        n = int(spec.split(":", 1)[1])
        cache = cache_dir / f"world_{n}_{resolution}.npy" if cache_dir else None
        if cache is not None and cache.exists():
            return np.load(cache)
        chunks = [(i, min(i + 500, n), resolution) for i in range(0, n, 500)]
        if workers > 1:
            from multiprocessing import Pool
            with Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                images = np.concatenate(pool.map(_render_chunk, chunks))
        else:
            images = np.concatenate([_render_chunk(c) for c in chunks])
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, images)
        return images
    from PIL import Image
    folder = Path(spec)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not files:
        raise FileNotFoundError(f"no images found in {folder}")
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((resolution, resolution), Image.LANCZOS))
                     for p in files])


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1


def world_class_labels(classes: str, n: int) -> np.ndarray:
    """Class code of world seeds 0..n-1: float32 [n, K], 1 where the seed's face satisfies the class."""
    from facegen.world.classes import WORLD_CLASSES, world_labels, world_table
    return WORLD_CLASSES.mask(world_table(world_labels(range(n))), WORLD_CLASSES.parse_list(classes)).astype(np.float32)

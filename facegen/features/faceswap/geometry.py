"""Faceswap geometry: similarities between landmark sets, warps, and aligned face crops.

A face is aligned by the similarity (rotation, uniform scale, translation; :func:`umeyama`) that takes
three of its landmarks -- the eye centres and the mouth centre (:func:`align_points`) -- onto the same
points of the generator's alignment template (:mod:`facegen.packs.alignment`: where the generator
puts the landmarks in its own pictures). The crop is then framed as the generator frames identity A's
views, so the autoencoder sees both identities the same way.

A landmark localiser trained on a synthetic domain may bring a *framing* (:class:`Framing`): a linear
regression from the five aligned landmarks to the similarity that re-centres the crop on the *head*
rather than on the features (features slide sideways when a head turns; rendered pictures stay
head-centred). Its weights are defined in the localiser's own reference frame (its template); the
head-centred crop is then mapped into the generator's template frame by one more similarity.

Warps sample with ``torch.nn.functional.grid_sample`` (bilinear, border-clamped) at pixel centres;
matrices map *output* pixel coordinates to *input* pixel coordinates (pixel i spans [i, i + 1)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from facegen.packs.alignment import apply_affine, compose, invert_affine, umeyama

__all__ = ["umeyama", "invert_affine", "apply_affine", "align_points", "warp_affine", "Framing",
           "align_transforms", "align_crops", "resize_faces"]


def align_points(lm: np.ndarray) -> np.ndarray:
    """[..., 5, 2] -> [..., 3, 2]: left eye, right eye, mouth centre (the points alignment uses)."""
    lm = np.asarray(lm, np.float64)
    return np.stack([lm[..., 0, :], lm[..., 1, :], 0.5 * (lm[..., 3, :] + lm[..., 4, :])], -2)


def warp_affine(imgs: torch.Tensor, M: np.ndarray, out_hw: tuple) -> torch.Tensor:
    """Sample imgs [N, C, H, W] at M @ (x, y, 1) for each output pixel centre -> [N, C, h, w].
    M [N, 2, 3] maps output pixel coordinates to input pixel coordinates."""
    N, C, H, W = imgs.shape
    h, w = out_hw
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                            indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, -1, 3)
    Mt = torch.as_tensor(np.asarray(M, np.float32)).reshape(-1, 2, 3)
    src = pts @ Mt.transpose(1, 2)                                 # [N, h*w, 2] input pixel coordinates
    grid = torch.stack([2 * src[..., 0] / W - 1, 2 * src[..., 1] / H - 1], -1).reshape(-1, h, w, 2)
    return F.grid_sample(imgs, grid.to(imgs.dtype), mode="bilinear", padding_mode="border", align_corners=False)


@dataclass
class Framing:
    """A localiser's head framing: ridge weights [11, 4] from the aligned landmarks to a similarity, in
    the frame of `points` (the localiser's template, [5, 2] fractions of the side)."""
    weights: np.ndarray
    points: np.ndarray

    def features(self, lm_aligned: np.ndarray, size: int) -> np.ndarray:
        """Landmarks in the framing's template frame [..., 5, 2] -> regression features [..., 11]
        (offsets from the template in units of the crop side, and 1)."""
        f = ((lm_aligned - self.points * size) / size).reshape(*lm_aligned.shape[:-2], 10)
        return np.concatenate([f, np.ones(f.shape[:-1] + (1,))], -1)

    def head_transform(self, lm_aligned: np.ndarray, size: int) -> np.ndarray:
        """The 2 x 3 similarity taking the template frame to the head-centred frame of this face."""
        a, b, tx, ty = self.features(lm_aligned, size) @ self.weights
        return np.array([[a + 1, -b, tx * size], [b, a + 1, ty * size]])


def align_transforms(landmarks: np.ndarray, template: np.ndarray, size: int,
                     framing: Optional[Framing] = None) -> np.ndarray:
    """Crop -> frame similarity matrices [T, 2, 3] for landmarks [T, 5, 2] and the generator's template
    [5, 2] (pixels of a `size` crop). Without `framing`: eyes and mouth centre fitted to the template.
    With it: fitted to the framing's template, moved onto the head, then mapped into the template frame."""
    tm = align_points(template)
    if framing is not None:
        ref = framing.points * size
        to_template = umeyama(align_points(ref), tm)                  # framing frame -> generator frame
    out = []
    for lm in np.asarray(landmarks, np.float64):
        if framing is None:
            M = umeyama(align_points(lm), tm)                         # frame -> template frame
        else:
            M = umeyama(align_points(lm), align_points(ref))          # frame -> framing's template frame
            M = compose(framing.head_transform(apply_affine(M, lm), size), M)
            M = compose(to_template, M)
        out.append(invert_affine(M))
    return np.stack(out) if out else np.zeros((0, 2, 3))


def align_crops(frames: np.ndarray, transforms: np.ndarray, size: int, batch: int = 64) -> np.ndarray:
    """Aligned face crops uint8 [T, size, size, 3] cut out of frames uint8 [T, H, W, 3] with the
    crop -> frame matrices [T, 2, 3] of :func:`align_transforms`."""
    if len(frames) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    crops = torch.cat([warp_affine(x[i:i + batch], transforms[i:i + batch], (size, size))
                       for i in range(0, len(x), batch)])
    return crops.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def resize_faces(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, R, R, 3] -> [N, size, size, 3] (Lanczos; unchanged when R == size)."""
    if images.shape[1] == size:
        return images
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.LANCZOS)) for im in images])

"""Faceswap blending: the swapped region (mask), colour transfer, seamless cloning, pasting back.

* :func:`face_mask`: the region of an aligned crop that is swapped, laid out on the template's
  landmarks: the classic inner ``face``, or the ``head`` (face + forehead + top of the hair + cheeks).
* :func:`reinhard_lab`: Reinhard colour transfer -- per-channel mean and standard deviation matched in
  CIE L*a*b* inside the mask.
* :func:`poisson_blend`: seamless clone (Perez et al. 2003) -- the Poisson equation with the swapped
  face's Laplacian as guidance and the target's pixels as boundary values.
* :func:`paste_back`: the swapped crop warped back into the frame by the inverse alignment and
  alpha-blended with the feathered mask; pixels outside the mask's footprint are untouched.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from facegen.engine.errors import InputError
from facegen.features.faceswap.geometry import invert_affine, warp_affine
from facegen.packs.alignment import generic_points

REGIONS = ("face", "head")
COLOR_MODES = ("none", "reinhard", "seamless")


def face_mask(size: int, landmarks: Optional[np.ndarray] = None, feather: float = 0.0,
              region: str = "face") -> np.ndarray:
    """The swapped region of an aligned crop [size, size] in [0, 1]: the convex hull of an ellipse laid out
    on the landmarks [5, 2] (pixels; default: the generic template at `size`). Axes: eye to eye (ex) and eye
    centre to mouth centre (ey). 'face': from the brows (0.7 ey above the eyes) to the chin (0.65 ey below
    the mouth), 1.05 ex to each side (the classic faceswap region); 'head': also the forehead, the top of
    the hair and the cheeks (1.35 ey above the eyes, 1.45 ex to each side), so hair colour and face shape
    are swapped too. Optionally feathered (eroded by ~feather px, Gaussian-blurred by feather px)."""
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull
    if region not in REGIONS:
        raise InputError(f"Region must be one of {', '.join(REGIONS)} (got '{region}').")
    lm = generic_points() * size if landmarks is None else np.asarray(landmarks, np.float64)
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


def paste_back(frame: np.ndarray, face: np.ndarray, alpha: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Blend the crop `face` uint8 [S, S, 3] into `frame` uint8 [H, W, 3] (in place, also returned) through
    the crop -> frame similarity M [2, 3], weighted by `alpha` [S, S] in [0, 1]. Only the crop's bounding
    box in the frame is resampled; alpha is 0 outside the crop (the border-clamped sampler repeats the
    crop's edge there, and the mask is 0 at the edge)."""
    H, W = frame.shape[:2]
    S = face.shape[0]
    corners = np.array([[0, 0], [S, 0], [0, S], [S, S]], np.float64) @ M[:, :2].T + M[:, 2]
    x0, y0 = np.floor(corners.min(0)).astype(int).clip(0, [W, H])
    x1, y1 = np.ceil(corners.max(0)).astype(int).clip(0, [W, H])
    if x1 <= x0 or y1 <= y0:
        return frame
    Mb = invert_affine(M)                                         # frame -> crop
    Mb[:, 2] += Mb[:, :2] @ np.array([x0, y0])                    # box pixel -> crop pixel
    src = torch.from_numpy(np.concatenate([face.astype(np.float32), alpha[..., None].astype(np.float32) * 255], -1))
    back = warp_affine(src.permute(2, 0, 1)[None], Mb[None], (y1 - y0, x1 - x0))[0].permute(1, 2, 0).numpy()
    a = back[..., 3:] / 255
    patch = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (patch * (1 - a) + back[..., :3] * a).round().clip(0, 255).astype(np.uint8)
    return frame

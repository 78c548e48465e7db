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
3. *Geometry*: the head is a stack of horizontal elliptical cross-sections
   (half width ``a(y)``, half depth ``b(y)``, centre pushed forward by
   ``z0(y)`` in the jaw) in units of ``A`` = 0.29 x canvas width, with ``y``
   measured downwards from the eye line.  Yaw rotates this solid about the
   vertical axis by ``yaw * 45 deg``; features sit on the surface and are
   projected orthographically, so they slide sideways, foreshorten on the far
   side, the nose tip (which protrudes) moves further than the cheeks, the
   jaw swings towards the turn, and the far ear disappears behind the head.
4. *Drawing* (:func:`render`): back to front - background, shoulders, ears,
   back hair, neck, head, age lines, brows, eyes, nose, beard, mouth,
   glasses, front hair; then a horizontal light ramp over the figure
   (``light_direction``); then downsampling by the supersampling factor.
   Landmarks are returned in output-pixel coordinates (continuous, the
   top-left corner of the image is (0, 0), pixel ``i`` spans [i, i+1)).

Conventions: ``yaw > 0`` turns the face towards the viewer's right (the
features move right in the image); ``light_direction > 0`` lights the face
from the viewer's right.  "left_eye" is the eye on the viewer's left.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Iterable, Union

import numpy as np
from PIL import Image, ImageDraw

from facegen.world.attributes import ATTRIBUTE_SPEC, FaceAttributes, labels_dict, seed_attributes, validate_attributes

__all__ = ["RenderResult", "render", "render_seed", "render_batch", "make_grid", "cli_main"]

# ---------------------------------------------------------------------------
# 3. Colours
# ---------------------------------------------------------------------------

_SKIN_RAMP = np.array([
    (255, 226, 204), (241, 194, 160), (214, 156, 112), (165, 108, 70),
    (112, 70, 45), (74, 46, 32)], dtype=np.float64)
_HAIR_RGB = {"black": (38, 32, 32), "brown": (105, 66, 38), "blonde": (226, 190, 112),
             "red": (196, 82, 38), "auburn": (128, 48, 34)}
_EYE_RGB = {"brown": (104, 62, 30), "blue": (62, 128, 206), "green": (64, 146, 84),
            "grey": (128, 140, 152)}
_GREY_HAIR = (214, 214, 218)

Color = tuple[int, int, int]


def _mix(c1, c2, t: float) -> Color:
    t = min(1.0, max(0.0, float(t)))
    return tuple(int(round(a + (b - a) * t)) for a, b in zip(c1, c2))  # type: ignore[return-value]


def _scale(c, f: float) -> Color:
    return tuple(int(min(255, max(0, round(x * f)))) for x in c)  # type: ignore[return-value]


def _skin_rgb(tone: float) -> Color:
    x = tone * (len(_SKIN_RAMP) - 1)
    i = min(int(x), len(_SKIN_RAMP) - 2)
    return _mix(_SKIN_RAMP[i], _SKIN_RAMP[i + 1], x - i)


def _hsv(h: float, s: float, v: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (int(r * 255), int(g * 255), int(b * 255))


# ---------------------------------------------------------------------------
# 4. Geometry: the head solid and its projection
# ---------------------------------------------------------------------------

class _Head:
    """Head solid in units of A (y down from the eye line, X right, Z towards the viewer)."""

    TOP = -1.12      # crown
    Y_WIDEST = 0.15  # widest cross-section (cheekbones)

    def __init__(self, at: FaceAttributes, S: int):
        self.S = S
        self.A = 0.29 * S
        self.cx = S / 2.0
        self.y0 = 0.45 * S
        self.phi = float(at.yaw) * math.pi / 4.0
        self.c, self.s = math.cos(self.phi), math.sin(self.phi)
        self.g = float(at.gender)
        self.age = float(at.age)
        self.chin = 1.26 + 0.08 * self.g
        self.n = 1.9 + 3.2 * self.g        # jaw super-ellipse exponent: round -> square

    # cross-section profile -------------------------------------------------
    def a(self, y):
        y = np.asarray(y, dtype=np.float64)
        yc = self.Y_WIDEST
        up = np.sqrt(np.clip(1.0 - ((y - yc) / (yc - self.TOP)) ** 2, 0.0, 1.0))
        t = np.clip((y - yc) / (self.chin - yc), 0.0, 1.0)
        low = (1.0 - t ** self.n) ** (1.0 / self.n) * (1.0 + 0.1 * (self.g - 0.3) * t)
        low = low - 0.06 * self.age * np.exp(-(((y - 0.6) / 0.2) ** 2))   # sunken cheeks
        return np.where(y < yc, up, np.maximum(low, 0.0))

    def b(self, y):
        return 0.9 * self.a(y)

    def z0(self, y):
        t = np.clip(np.asarray(y, dtype=np.float64) / self.chin, 0.0, 1.0)
        return 0.55 * t * t * (3 - 2 * t)

    def silhouette(self, y):
        """Projected (left, right) x of the head outline at height y (A units)."""
        a, b = self.a(y), self.b(y)
        xc = self.z0(y) * self.s
        half = np.sqrt((a * self.c) ** 2 + (b * self.s) ** 2)
        return xc - half, xc + half

    def surf_z(self, X, y):
        a = np.maximum(self.a(y), 1e-6)
        return self.z0(y) + self.b(y) * np.sqrt(np.clip(1.0 - (np.asarray(X) / a) ** 2, 0.0, 1.0))

    def facing(self, X, y):
        """(cos of the surface angle to the viewer after yaw, same before yaw)."""
        th = np.arcsin(np.clip(np.asarray(X) / np.maximum(self.a(y), 1e-6), -1.0, 1.0))
        return np.cos(th + self.phi), np.cos(th)

    # projection ---------------------------------------------------------
    def proj(self, X, Y, dz=0.0, Z=None, clip=True):
        """Project surface points (X, Y) (+dz outwards) to canvas pixels (arrays)."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.broadcast_to(np.asarray(Y, dtype=np.float64), X.shape)
        if Z is None:
            Z = self.surf_z(X, Y) + dz
        xp = X * self.c + Z * self.s
        if clip:
            lo, hi = self.silhouette(Y)
            xp = np.clip(xp, lo, hi)
        return self.cx + self.A * xp, self.y0 + self.A * Y

    def px(self, xu, yu):
        """A-unit (already projected) coordinates to canvas pixels."""
        return self.cx + self.A * np.asarray(xu), self.y0 + self.A * np.asarray(yu)

    def w(self, u: float) -> int:
        """Line width in canvas pixels for a width of u A-units."""
        return max(1, int(round(u * self.A)))


def _pts(x, y) -> list[tuple[float, float]]:
    return list(zip(np.asarray(x, dtype=np.float64).ravel().tolist(),
                    np.asarray(y, dtype=np.float64).ravel().tolist()))


def _ell(d: ImageDraw.ImageDraw, cx, cy, rx, ry, **kw) -> None:
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], **kw)


# ---------------------------------------------------------------------------
# 5. Drawing
# ---------------------------------------------------------------------------

@dataclass
class RenderResult:
    image: np.ndarray            # H x W x 3 uint8
    landmarks: dict              # name -> (x, y) in output pixels
    labels: dict                 # labels_dict(attrs)
    attrs: FaceAttributes


MIN_SIZE, MAX_SIZE = 64, 256


def _hair_outline(h: _Head, th: float, y_bottom: float, flare: float, n: int = 40):
    """Outer outline of the hair mass (A units, projected), left-bottom -> top -> right-bottom."""
    yc = h.Y_WIDEST
    k = math.sqrt(h.c ** 2 + 0.81 * h.s ** 2)      # cranium silhouette narrowing under yaw
    shift = -0.1 * h.s                              # back of the head comes into view
    ang = np.linspace(math.pi, 0.0, n)
    rx, ry = (1.0 + th), (yc - h.TOP + th)
    ax, ay = np.cos(ang) * rx * k + shift, yc - np.sin(ang) * ry
    side = np.linspace(yc, max(y_bottom, yc), 12)[1:]
    sw = (1.0 + th + flare * (side - yc)) * k
    lx = np.concatenate([(-sw + shift)[::-1], ax, sw + shift])
    ly = np.concatenate([side[::-1], ay, side])
    keep = ly <= y_bottom + 1e-9
    return lx[keep], ly[keep]


def _draw_face(at: FaceAttributes, S: int):
    h = _Head(at, S)
    A = h.A
    g, age, smile = h.g, h.age, float(at.smile)
    L = float(at.hair_length)
    style = at.hair_style

    skin = _skin_rgb(at.skin_tone)
    skin_dark = _scale(skin, 0.72)
    line_col = _mix(_scale(skin, 0.45), (40, 25, 20), 0.3)
    grey = min(1.0, max(0.0, (age - 0.4) / 0.5)) * 0.92
    hair = _mix(_HAIR_RGB[at.hair_color], _GREY_HAIR, grey)
    hair_out = _scale(hair, 0.6) if sum(hair) > 200 else _mix(hair, (0, 0, 0), 0.4)
    bg = _hsv(at.bg_hue, 0.35, 0.22 + 0.72 * float(at.bg_value))
    cloth = _hsv(at.clothing_hue, 0.55, 0.62)
    age_s = min(1.0, max(0.0, (age - 0.3) / 0.6))

    img = Image.new("RGB", (S, S), bg)
    d = ImageDraw.Draw(img)
    ow = h.w(0.028)                                 # outline width

    # shoulders ------------------------------------------------------------
    sx = 0.12 * h.s
    x0, y0 = h.px(sx - 2.05 - 0.15 * g, 1.5)
    x1, y1 = h.px(sx + 2.05 + 0.15 * g, 3.6)
    d.ellipse([x0, y0, x1, y1], fill=cloth, outline=_scale(cloth, 0.6), width=ow)

    # ears (behind hair and head; the far ear slides behind the head) ---------
    for side in (-1, 1):
        t = -side * h.s                             # > 0 near ear, < 0 far ear
        lo, hi = h.silhouette(0.15)
        edge = float(hi if side > 0 else lo)
        ex = edge + side * (0.03 + 0.45 * min(t, 0.0)) - side * 0.08 * max(t, 0.0)
        ecx, ecy = h.px(ex, 0.13)
        erx, ery = 0.13 * A * (1.0 - 0.35 * max(t, 0.0)), 0.27 * A
        _ell(d, ecx, ecy, erx, ery, fill=_scale(skin, 0.93), outline=line_col, width=ow)
        _ell(d, ecx + side * 0.02 * A, ecy + 0.02 * A, erx * 0.45, ery * 0.55, outline=skin_dark, width=ow)

    # back hair (behind neck and head) ------------------------------------------
    th = 0.1 + 0.1 * L + (0.14 if style == "curly" else 0.0)
    y_bottom = -0.05 + 1.8 * L
    flare = 0.12 * L + (0.1 if style == "curly" else 0.0)
    if style == "bald":
        yb = min(y_bottom, 0.25)
        for side in (-1, 1):
            ys = np.linspace(-0.5, yb, 8)
            lo, hi = h.silhouette(ys)
            e = hi if side > 0 else lo
            xs = np.concatenate([e + side * 0.08, (e - side * 0.25)[::-1]])
            bx, by = h.px(xs, np.concatenate([ys, ys[::-1]]))
            d.polygon(_pts(bx, by), fill=hair, outline=hair_out, width=ow)
    else:
        hx, hy = _hair_outline(h, th, y_bottom, flare)
        bx, by = h.px(hx, hy)
        d.polygon(_pts(bx, by), fill=hair, outline=hair_out, width=ow)
        if style == "curly":
            r = 0.13 * A
            for x, y in _pts(bx, by)[::2]:
                _ell(d, x, y, r, r, fill=hair)

    # neck (with a V neckline into the shirt) -----------------------------------
    nw = 0.4 + 0.1 * g
    ns = 0.3 * h.s
    nx, ny = h.px(np.array([-nw, nw, nw, 0.0, -nw]) + ns, np.array([0.6, 0.6, 1.55, 1.9, 1.55]))
    d.polygon(_pts(nx, ny), fill=_scale(skin, 0.85), outline=line_col, width=ow)

    # head ----------------------------------------------------------------------
    ys = np.concatenate([np.linspace(h.TOP, 0.8, 18), np.linspace(0.8, h.chin, 14)[1:]])
    lo, hi = h.silhouette(ys)
    hx = np.concatenate([hi, lo[::-1]])
    hy = np.concatenate([ys, ys[::-1]])
    px_, py_ = h.px(hx, hy)
    d.polygon(_pts(px_, py_), fill=skin, outline=line_col, width=ow)

    # cheeks: blush (feminine) and hollows (age) --------------------------------
    for side in (-1, 1):
        X = side * 0.55
        fc, _ = h.facing(X, 0.45)
        if fc > 0.2:
            bxp, byp = h.proj(X, 0.45)
            if g < 0.5:
                _ell(d, float(bxp), float(byp), 0.16 * A * fc, 0.09 * A,
                     fill=_mix(skin, (232, 120, 130), 0.35 * (1 - 2 * g)))
            if age_s > 0:
                cx_, cy_ = h.proj(np.array([side * 0.72, side * 0.62, side * 0.55]), np.array([0.38, 0.62, 0.85]))
                d.line(_pts(cx_, cy_), fill=_mix(skin, skin_dark, age_s * 0.8), width=h.w(0.025), joint="curve")

    # forehead lines (age) -----------------------------------------------------
    if age_s > 0:
        col = _mix(skin, _scale(skin, 0.6), age_s)
        for k, yl in enumerate((-0.52, -0.63, -0.74)):
            X = np.linspace(-0.42 + 0.05 * k, 0.42 - 0.05 * k, 7)
            fx, fy = h.proj(X, yl + 0.05 * (X / 0.42) ** 2)
            d.line(_pts(fx, fy), fill=col, width=h.w(0.03), joint="curve")

    # eyebrows -----------------------------------------------------------------
    brow_col = _mix(_scale(hair, 0.7) if at.hair_color != "blonde" else _scale(hair, 0.6), _GREY_HAIR, grey * 0.7)
    bth = 0.04 + 0.09 * g
    for side in (-1, 1):
        X = side * np.linspace(0.18, 0.62, 7)
        fc, _ = h.facing(side * 0.4, -0.3)
        if fc < 0.1:
            continue
        arch = -0.29 - 0.09 * np.sin(np.linspace(0.2, math.pi - 0.5, 7)) + 0.03 * g
        taper = np.array([0.8, 1, 1, 1, 0.9, 0.7, 0.4]) * bth * 0.5
        tx, ty = h.proj(X, arch - taper)
        bx2, by2 = h.proj(X[::-1], (arch + taper)[::-1])
        d.polygon(_pts(np.concatenate([tx, bx2]), np.concatenate([ty, by2])), fill=brow_col)

    # eyes ---------------------------------------------------------------------
    landmarks: dict[str, tuple[float, float]] = {}
    iris_col = _EYE_RGB[at.eye_color]
    lid_col = (45, 30, 30)
    ew, eh = 0.17 + 0.02 * (1 - g), (0.1 + 0.015 * (1 - g)) * (1.0 - 0.3 * smile)
    for side, name in ((-1, "left_eye"), (1, "right_eye")):
        X = side * 0.38
        fc, f0 = h.facing(X, 0.0)
        ex, ey = h.proj(X, 0.0)
        ex, ey = float(ex), float(ey)
        landmarks[name] = (ex, ey)
        comp = max(0.0, float(fc) / float(f0))
        if comp < 0.15:
            continue
        rx, ry = ew * A * comp, eh * A
        if age_s > 0:   # bags under the eyes
            ux, uy = h.proj(X + side * np.linspace(-0.13, 0.13, 5), 0.13 + 0.04 * np.sin(np.linspace(0, math.pi, 5)))
            d.line(_pts(ux, uy), fill=_mix(skin, skin_dark, age_s), width=h.w(0.025), joint="curve")
        _ell(d, ex, ey, rx, ry, fill=(250, 250, 250))
        ix = ex + 0.04 * A * h.s
        ir = 0.082 * A
        _ell(d, ix, ey, ir * comp, min(ir, ry * 0.98), fill=iris_col)
        _ell(d, ix, ey, 0.04 * A * comp, min(0.04 * A, ry * 0.6), fill=(15, 12, 12))
        _ell(d, ix + 0.025 * A, ey - 0.025 * A, 0.018 * A, 0.018 * A, fill=(255, 255, 255))
        # upper lid (thicker with lashes for feminine faces), lower lid hint
        lid_w = h.w(0.03 + 0.035 * (1 - g))
        d.arc([ex - rx, ey - ry, ex + rx, ey + ry], 180, 360, fill=lid_col, width=lid_w)
        d.arc([ex - rx, ey - ry, ex + rx, ey + ry], 20, 160, fill=_scale(skin, 0.75), width=h.w(0.02))
        if g < 0.45:
            for k in range(3):
                ang = math.radians(-20 - 22 * k) if side > 0 else math.radians(-160 + 22 * k)
                sx0, sy0 = ex + rx * math.cos(ang), ey + ry * math.sin(ang)
                d.line([(sx0, sy0), (sx0 + side * 0.06 * A * comp, sy0 - 0.06 * A)], fill=lid_col, width=h.w(0.025))
        if age_s > 0.2:  # crow's feet
            for k in (-1, 0, 1):
                cxp = ex + side * (rx + 0.04 * A)
                d.line([(cxp, ey + k * 0.04 * A), (cxp + side * 0.1 * A * comp, ey + k * 0.08 * A)],
                       fill=_mix(skin, skin_dark, age_s), width=h.w(0.02))

    # nose ------------------------------------------------------------------
    nose_shade = _scale(skin, 0.86)
    nX = np.array([-0.07, -0.16, -0.07, 0.0, 0.07, 0.16, 0.07])
    nY = np.array([0.1, 0.5, 0.56, 0.55, 0.56, 0.5, 0.1])
    ndz = np.array([0.02, 0.05, 0.14, 0.24, 0.14, 0.05, 0.02])
    nx_, ny_ = h.proj(nX, nY, dz=ndz, clip=False)
    d.polygon(_pts(nx_, ny_), fill=nose_shade)
    tipx, tipy = h.proj(0.0, 0.48, dz=0.26, clip=False)
    landmarks["nose"] = (float(tipx), float(tipy))
    bX = np.array([-0.16, -0.09, 0.0, 0.09, 0.16])
    bxn, byn = h.proj(bX, np.array([0.49, 0.55, 0.56, 0.55, 0.49]), dz=np.array([0.05, 0.12, 0.2, 0.12, 0.05]), clip=False)
    d.line(_pts(bxn, byn), fill=line_col, width=h.w(0.03), joint="curve")
    if abs(h.s) > 0.05:   # ridge line against the far cheek
        sgn = 1 if h.s > 0 else -1
        rx_, ry_ = h.proj(np.array([sgn * 0.06, sgn * 0.05, sgn * 0.04]), np.array([0.08, 0.3, 0.47]),
                          dz=np.array([0.03, 0.12, 0.24]), clip=False)
        d.line(_pts(rx_, ry_), fill=_mix(skin, line_col, min(1.0, abs(h.s) * 2.5)), width=h.w(0.028), joint="curve")

    # smile / age folds -----------------------------------------------------------
    fold = max(age_s * 0.9, smile * 0.55)
    if fold > 0.05:
        for side in (-1, 1):
            fc, _ = h.facing(side * 0.3, 0.7)
            if fc < 0.1:
                continue
            fx, fy = h.proj(side * np.array([0.22, 0.36, 0.42]), np.array([0.5, 0.7, 0.92]), dz=0.02)
            d.line(_pts(fx, fy), fill=_mix(skin, skin_dark, fold), width=h.w(0.03), joint="curve")

    # beard ------------------------------------------------------------------
    beard_col = _mix(_scale(_HAIR_RGB[at.hair_color], 0.85), _GREY_HAIR, grey)
    if at.beard:
        y_top = 0.4
        yb = np.linspace(y_top, h.chin, 12)
        lo, hi = h.silhouette(yb)
        a_top = float(h.a(y_top))
        Xu = np.linspace(-1.0, 1.0, 13) * a_top * 0.999
        Yu = y_top + 0.24 * (1 - (Xu / a_top) ** 2) ** 1.5
        ux, uy = h.proj(Xu, Yu)                          # left -> right
        chin_x, chin_y = h.px(float(h.z0(h.chin)) * h.s, h.chin + 0.12)
        rx_, ry_ = h.px(hi + 0.03, yb)
        lx_, ly_ = h.px(lo - 0.03, yb)
        poly = (_pts(rx_, ry_) + [(float(chin_x), float(chin_y))] + _pts(lx_[::-1], ly_[::-1]) + _pts(ux, uy))
        d.polygon(poly, fill=beard_col, outline=_scale(beard_col, 0.7), width=ow)

    # mouth -----------------------------------------------------------------------
    ym = 0.86
    mw = 0.26 + 0.07 * smile
    X = np.linspace(-mw, mw, 11)
    u = X / mw
    lift = 0.13 * smile - 0.05 * age_s * (1 - smile)
    upper = ym - lift * u ** 2 + 0.02 * smile
    opn = max(0.0, (smile - 0.45) / 0.55) * 0.2
    lower = upper + opn * (1 - u ** 2)
    lip_th = (0.035 + 0.045 * (1 - g)) * (1 - 0.35 * age_s)
    lip_col = _mix(_mix(skin, (150, 70, 70), 0.35), (205, 70, 95), (1 - g) * 0.85)
    ux, uy = h.proj(X, upper - lip_th * (1 - u ** 2) * 0.8 - 0.01, dz=0.02)
    lx, ly = h.proj(X[::-1], (lower + lip_th * 1.3 * (1 - u ** 2) + 0.01)[::-1], dz=0.02)
    d.polygon(_pts(np.concatenate([ux, lx]), np.concatenate([uy, ly])), fill=lip_col)
    ml_x, ml_y = h.proj(X, upper, dz=0.02)
    if opn > 0.005:
        ol_x, ol_y = h.proj(X[::-1], lower[::-1], dz=0.02)
        d.polygon(_pts(np.concatenate([ml_x, ol_x]), np.concatenate([ml_y, ol_y])), fill=(95, 28, 36))
        tl_x, tl_y = h.proj(X[1:-1][::-1], (upper + np.minimum(opn * 0.5, 0.06) * (1 - u ** 2))[1:-1][::-1], dz=0.02)
        d.polygon(_pts(np.concatenate([ml_x[1:-1], tl_x]), np.concatenate([ml_y[1:-1], tl_y])), fill=(245, 245, 240))
    d.line(_pts(ml_x, ml_y), fill=_mix(lip_col, (60, 20, 25), 0.6), width=h.w(0.03), joint="curve")
    landmarks["mouth_left"] = (float(ml_x[0]), float(ml_y[0]))
    landmarks["mouth_right"] = (float(ml_x[-1]), float(ml_y[-1]))
    if at.beard:  # moustache
        mX = np.linspace(-mw - 0.04, mw + 0.04, 9)
        mu = mX / (mw + 0.04)
        top = ym - 0.17 - 0.02 * (1 - mu ** 2)
        bot = ym - 0.03 - lift * mu ** 2 + 0.05 * np.abs(mu) ** 3
        tx, ty = h.proj(mX, top, dz=0.03)
        bx_, by_ = h.proj(mX[::-1], bot[::-1], dz=0.03)
        d.polygon(_pts(np.concatenate([tx, bx_]), np.concatenate([ty, by_])), fill=beard_col)

    # glasses ------------------------------------------------------------------------
    if at.glasses:
        frame = (30, 28, 32)
        fw = h.w(0.045)
        rims = []
        for side in (-1, 1):
            X = side * 0.38
            fc, f0 = h.facing(X, 0.0)
            comp = float(fc) / float(f0)
            gx, gy = h.proj(X, 0.0, dz=0.08, clip=False)
            rims.append((float(gx), float(gy), comp))
            if comp > 0.12:
                r = 0.25 * A
                d.ellipse([gx - r * comp, gy - r * 0.85, gx + r * comp, gy + r * 0.85], outline=frame, width=fw)
        (lx0, ly0, lc), (rx0, ry0, rc) = rims
        br0 = (lx0 + 0.25 * A * max(lc, 0), ly0 - 0.05 * A)
        br1 = (rx0 - 0.25 * A * max(rc, 0), ry0 - 0.05 * A)
        d.line([br0, br1], fill=frame, width=fw)
        for side, (gx, gy, comp) in zip((-1, 1), rims):
            if comp > 0.12:   # temple arm towards the ear
                lo, hi = h.silhouette(-0.02)
                ex_, _ = h.px(float(hi if side > 0 else lo), 0.0)
                d.line([(gx + side * 0.25 * A * comp, gy - 0.05 * A), (float(ex_), gy - 0.02 * A)], fill=frame, width=fw)

    # front hair: cap, hairline, curtains beside the face ----------------------------------
    if style != "bald":
        y_fb = min(y_bottom, 0.9)
        ox, oy = _hair_outline(h, th, y_fb, flare)
        K = 17
        Xh = np.linspace(-0.96, 0.96, K)
        yh = -0.62 + 0.3 * Xh ** 2
        if style == "straight":
            yh = yh + 0.13 * (Xh + 1) / 2 - 0.04 - 0.1 * np.exp(-(((Xh + 0.35) / 0.1) ** 2))
        elif style == "fringe":
            yh = yh + 0.22 + 0.05 * (np.arange(K) % 2) - 0.1 * Xh ** 2
        else:
            yh = yh + 0.05
        Xh = Xh * h.a(yh)
        hlx, hly = h.proj(Xh, yh, dz=0.03)
        hlx, hly = (hlx - h.cx) / A, (hly - h.y0) / A
        inset = 0.08 + 0.1 * L
        in_r = inset * float(np.clip(1 - 1.2 * h.s, 0.25, 1.5))   # far side of the face is foreshortened
        in_l = inset * float(np.clip(1 + 1.2 * h.s, 0.25, 1.5))
        ys_r = np.linspace(y_fb, float(yh[-1]), 8)
        lo_r, hi_r = h.silhouette(ys_r)
        ys_l = np.linspace(float(yh[0]), y_fb, 8)
        lo_l, hi_l = h.silhouette(ys_l)
        inner_x = np.concatenate([np.maximum(hi_r - in_r, hlx[-1]), hlx[::-1], np.minimum(lo_l + in_l, hlx[0])])
        inner_y = np.concatenate([ys_r, hly[::-1], ys_l])
        fx, fy = h.px(np.concatenate([ox, inner_x]), np.concatenate([oy, inner_y]))
        d.polygon(_pts(fx, fy), fill=hair, outline=hair_out, width=ow)
        if style == "curly":
            r = 0.12 * A
            for x, y in _pts(*h.px(hlx, hly))[1:-1:2]:
                _ell(d, x, y, r, r, fill=hair)
                d.arc([x - r, y - r, x + r, y + r], 20, 160, fill=hair_out, width=ow)
            for x, y in _pts(*h.px(ox, oy))[::3]:
                _ell(d, x, y, r, r, fill=hair)
        # a few strands for texture
        strand = _mix(hair, (255, 255, 255), 0.18) if sum(hair) < 400 else _scale(hair, 0.82)
        for k in (-0.45, 0.0, 0.45):
            sx_, sy_ = h.proj(np.array([k * 0.8, k, k * 1.15]), np.array([-1.0, -0.85, -0.68]) + 0.05 * abs(k), dz=0.08)
            d.line(_pts(sx_, sy_), fill=strand, width=h.w(0.03), joint="curve")
    return img, bg, landmarks, h


def _apply_light(img: Image.Image, bg: Color, h: _Head, light: float) -> np.ndarray:
    arr = np.asarray(img)
    if abs(light) < 1e-6:
        return np.array(arr)
    mask = np.any(arr != np.asarray(bg, dtype=np.uint8), axis=2)
    xs = (np.arange(arr.shape[1], dtype=np.float32) + 0.5 - h.cx) / (1.1 * h.A)
    ramp = 0.3 * light * np.tanh(1.6 * xs)              # -0.3 .. +0.3
    factor = 1.0 + mask * ramp[None, :]
    out = arr.astype(np.float32) * factor[:, :, None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def render(attrs: FaceAttributes, size: int = 64, supersample: int = 4) -> RenderResult:
    """Render one face at ``size`` x ``size`` (64..256), drawn at ``size*supersample`` and box-filtered."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if isinstance(supersample, bool) or not isinstance(supersample, (int, np.integer)) or not 1 <= supersample <= 8:
        raise ValueError(f"supersample must be an integer in [1, 8], got {supersample!r}")
    validate_attributes(attrs)
    size, ss = int(size), int(supersample)
    S = size * ss
    img, bg, lm, h = _draw_face(attrs, S)
    arr = _apply_light(img, bg, h, float(attrs.light_direction))
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
# 6. Command line
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

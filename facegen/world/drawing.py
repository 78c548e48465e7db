"""The face world's painting: a face drawn back to front with PIL on a supersampled canvas, then lit.

:func:`draw_face` paints, in the coordinates of :class:`facegen.world.head.Head`: background,
shoulders, ears, back hair, neck, head, cheeks and age lines, brows, eyes, nose, folds, beard, mouth,
glasses, front hair -- each a few PIL primitives whose colour and shape follow the attributes (skin
tone on a ramp, hair greying with age, feminine blush / lashes / lips, masculine brows and jaw). It
returns the eye, nose and mouth-corner landmarks in canvas pixels. :func:`apply_light` then multiplies
the figure (everything that is not background) by a horizontal ramp, ``light_direction > 0`` lighting
it from the viewer's right. Downsampling and the public API: :mod:`facegen.world.render`.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw

from facegen.world.attributes import FaceAttributes
from facegen.world.head import Head

__all__ = ["draw_face", "apply_light", "Color"]

# ---------------------------------------------------------------------------
# 1. Colours
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


def _pts(x, y) -> list[tuple[float, float]]:
    return list(zip(np.asarray(x, dtype=np.float64).ravel().tolist(),
                    np.asarray(y, dtype=np.float64).ravel().tolist()))


def _ell(d: ImageDraw.ImageDraw, cx, cy, rx, ry, **kw) -> None:
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], **kw)


# ---------------------------------------------------------------------------
# 2. Drawing, back to front
# ---------------------------------------------------------------------------

def _hair_outline(h: Head, th: float, y_bottom: float, flare: float, n: int = 40):
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


def draw_face(at: FaceAttributes, S: int):
    h = Head(at, S)
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


def apply_light(img: Image.Image, bg: Color, h: Head, light: float) -> np.ndarray:
    arr = np.asarray(img)
    if abs(light) < 1e-6:
        return np.array(arr)
    mask = np.any(arr != np.asarray(bg, dtype=np.uint8), axis=2)
    xs = (np.arange(arr.shape[1], dtype=np.float32) + 0.5 - h.cx) / (1.1 * h.A)
    ramp = 0.3 * light * np.tanh(1.6 * xs)              # -0.3 .. +0.3
    factor = 1.0 + mask * ramp[None, :]
    out = arr.astype(np.float32) * factor[:, :, None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)

"""The face world's geometry: the head solid and its orthographic projection under yaw.

The head is a stack of horizontal elliptical cross-sections (half width ``a(y)``, half depth ``b(y)``,
centre pushed forward by ``z0(y)`` in the jaw) in units of ``A`` = 0.29 x canvas width, with ``y``
measured downwards from the eye line (at 0.45 of the canvas height; the head is centred). Yaw rotates
this solid about the vertical axis by ``yaw * 45 deg``; features sit on the surface and are projected
orthographically, so they slide sideways, foreshorten on the far side, the nose tip (which protrudes)
moves further than the cheeks, the jaw swings towards the turn, and the far ear disappears behind the
head. Gender squares the jaw (super-ellipse exponent) and lowers the chin; age sinks the cheeks.

:mod:`facegen.world.drawing` paints the face with these coordinates.
"""

from __future__ import annotations

import math

import numpy as np

from facegen.world.attributes import FaceAttributes

__all__ = ["Head"]


class Head:
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

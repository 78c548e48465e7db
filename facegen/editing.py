"""Attribute editing: move a w+ latent along attribute directions on a layer range.

    >>> from facegen.directions import load_directions
    >>> ds = load_directions("assets/directions", G)
    >>> ws2, img = edit(G, ws, ds, {"age": 2.0, "smile": -1.0}, conditional=True)

Steps are in standard deviations of the attribute (see :mod:`facegen.directions`), limited to
+-``MAX_STEP``. ``layers`` defaults to the direction set's default (the first 8 layers: coarse +
middle, as the original seeprettyface site edited 8 of 18); ``conditional=True`` uses directions with
the other attributes projected out ("keep other attributes").

Sweeps (for animation): :func:`sweep_ws` (one attribute, T values), :func:`grid_ws` (two attributes,
rows x cols) and :func:`serpentine` (a continuous path through a 2-D grid of values).
Everything takes and returns numpy arrays, so it can run inside ``spaces.GPU`` unchanged.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from .directions import MAX_STEP, DirectionSet, check_step
from .errors import InputError, LatentError

__all__ = ["edit_ws", "edit", "sweep_ws", "grid_ws", "serpentine", "resolve_layers", "offset", "check_steps"]


def resolve_layers(ds: DirectionSet, num_ws: int, layers: Optional[Sequence[int]] = None) -> list:
    """Validated layer list: `layers` or the direction set's default (clipped to num_ws)."""
    if layers is None:
        layers = [l for l in ds.default_layers if l < num_ws] or list(range(num_ws))
    layers = sorted({int(l) for l in layers})
    if not layers:
        raise InputError("Choose at least one layer to edit.")
    if layers[0] < 0 or layers[-1] >= num_ws:
        raise InputError(f"Layers {layers[0]}-{layers[-1]} are not valid for a generator with {num_ws} layers "
                         f"(use 0-{num_ws - 1}).")
    return layers


def check_steps(ds: DirectionSet, steps: Mapping[str, float]) -> dict:
    """{name: step} validated: known attributes, finite steps within +-MAX_STEP."""
    if not isinstance(steps, Mapping):
        raise InputError("Steps must be a mapping {attribute: step}.")
    return {ds.names[ds.index(str(k))]: check_step(str(k), v) for k, v in steps.items()}


def offset(ds: DirectionSet, steps: Mapping[str, float], conditional: bool = False,
           condition_on: Optional[Sequence[str]] = None) -> np.ndarray:
    """Sum of the step vectors: the w offset [w_dim] for all `steps`."""
    steps = check_steps(ds, steps)
    out = np.zeros(ds.w_dim, np.float32)
    for name, s in steps.items():
        if s:
            out += ds.step_vector(name, s, conditional, condition_on)
    return out


def _as_wplus(ws, ds: DirectionSet) -> np.ndarray:
    ws = np.asarray(ws.detach().cpu().numpy() if hasattr(ws, "detach") else ws, np.float32)
    if ws.ndim not in (2, 3) or ws.shape[-1] != ds.w_dim:
        raise LatentError(f"Cannot edit a latent of shape {list(ws.shape)} with directions of width {ds.w_dim} "
                          "(expected w+ [num_ws, w_dim] or [N, num_ws, w_dim]).")
    if not np.all(np.isfinite(ws)):
        raise LatentError("The latent contains NaN or infinite values.")
    return ws


def edit_ws(ws, ds: DirectionSet, steps: Mapping[str, float], layers: Optional[Sequence[int]] = None,
            conditional: bool = False, condition_on: Optional[Sequence[str]] = None) -> np.ndarray:
    """w+ [num_ws, w_dim] or [N, num_ws, w_dim] -> edited copy (same shape), steps applied on `layers`."""
    ws = _as_wplus(ws, ds)
    layers = resolve_layers(ds, ws.shape[-2], layers)
    out = ws.copy()
    out[..., layers, :] += offset(ds, steps, conditional, condition_on)
    return out


def edit(G, ws, ds: DirectionSet, steps: Mapping[str, float], layers: Optional[Sequence[int]] = None,
         conditional: bool = False, condition_on: Optional[Sequence[str]] = None, noise_mode: str = "const",
         strict: bool = True) -> tuple:
    """Edit and render: -> (edited ws, uint8 images [N, R, R, 3] (or [R, R, 3] for a single w+)).

    Checks that `ds` was fitted for `G` (LatentError otherwise, or a warning with strict=False)."""
    from .generate import synthesize
    ds.check_generator(G, strict=strict)
    ws = _as_wplus(ws, ds)
    if ws.shape[-2] != G.num_ws:
        raise LatentError(f"Latent of shape {list(ws.shape)} does not fit this generator "
                          f"([{G.num_ws}, {G.w_dim}]).")
    out = edit_ws(ws, ds, steps, layers, conditional, condition_on)
    imgs = synthesize(G, out.reshape(-1, G.num_ws, G.w_dim), noise_mode)
    return out, (imgs[0] if out.ndim == 2 else imgs)


def sweep_ws(ws, ds: DirectionSet, name: str, values: Sequence[float], layers: Optional[Sequence[int]] = None,
             conditional: bool = False, base: Optional[Mapping[str, float]] = None) -> np.ndarray:
    """One w+ [num_ws, w_dim] -> [T, num_ws, w_dim]: attribute `name` at each step in `values`
    (on top of the `base` steps of other attributes)."""
    ws = _as_wplus(ws, ds)
    if ws.ndim != 2:
        raise LatentError("A sweep starts from one face: w+ [num_ws, w_dim].")
    layers = resolve_layers(ds, ws.shape[0], layers)
    ds.index(name)
    values = [check_step(name, v) for v in values]
    b = offset(ds, base or {}, conditional) if base else 0.0
    unit = ds.step_vector(name, 1.0, conditional)          # linear in the step
    out = np.repeat(ws[None], len(values), 0)
    out[:, layers, :] += (np.asarray(values, np.float32)[:, None] * unit[None] + b)[:, None, :]
    return out


def grid_ws(ws, ds: DirectionSet, row: tuple, col: tuple, layers: Optional[Sequence[int]] = None,
            conditional: bool = False) -> np.ndarray:
    """-> [R, C, num_ws, w_dim]: rows = (name, values) of one attribute, columns of another."""
    ws = _as_wplus(ws, ds)
    (rn, rv), (cn, cv) = row, col
    if rn == cn:
        raise InputError(f"A grid needs two different attributes (got '{rn}' twice).")
    layers = resolve_layers(ds, ws.shape[0], layers)
    ds.index(rn), ds.index(cn)
    rv = [check_step(rn, v) for v in rv]
    cv = [check_step(cn, v) for v in cv]
    ur, uc = ds.step_vector(rn, 1.0, conditional), ds.step_vector(cn, 1.0, conditional)
    off = np.asarray(rv, np.float32)[:, None, None] * ur + np.asarray(cv, np.float32)[None, :, None] * uc
    out = np.broadcast_to(ws, (len(rv), len(cv)) + ws.shape).copy()
    out[:, :, layers, :] += off[:, :, None, :]
    return out


def serpentine(rows: Sequence[float], cols: Sequence[float], n: int) -> np.ndarray:
    """`n` (row value, col value) points evenly spaced along a boustrophedon path through the grid:
    the column value sweeps across, the row value steps, the column sweeps back ... (a path that
    visits every grid row without jumps, for a video of a 2-D grid)."""
    rows, cols = np.asarray(rows, np.float64), np.asarray(cols, np.float64)
    if len(rows) < 1 or len(cols) < 2 or n < 2:
        raise InputError("A grid path needs at least 1 row, 2 columns and 2 frames.")
    pts = []
    for i, r in enumerate(rows):
        c = cols if i % 2 == 0 else cols[::-1]
        pts += [(r, c[0]), (r, c[-1])]
    pts = np.asarray(pts)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0], np.cumsum(seg)])
    t = np.linspace(0, cum[-1], n)
    return np.stack([np.interp(t, cum, pts[:, 0]), np.interp(t, cum, pts[:, 1])], 1)


def clamp_sweep(amount: float) -> float:
    amount = float(amount)
    if not np.isfinite(amount) or not 0 < amount <= MAX_STEP:
        raise InputError(f"Sweep amount must be between 0 and {MAX_STEP:g} (got {amount:g}).")
    return amount

"""Attribute editing: move a w+ latent along attribute directions on a layer range.

    >>> from facegen.packs.pack import find_pack
    >>> ds, note = directions_for(G, find_pack(G))      # the pack's directions, or the fallback
    >>> ws2, img = edit(G, ws, ds, {"age": 2.0, "smile": -1.0}, conditional=True)

**Which directions** (:func:`directions_for`, the one place that decides): the attribute directions of
the generator's pack when it has them (:func:`facegen.packs.directions.find_directions`), else its
unsupervised principal components (:func:`facegen.packs.unsupervised.unsupervised_directions`,
GANSpace, computed from the generator in well under a second and cached), named by the pack's
labeller when the pack names one. The returned note says which, for the tab and the API output.
Step names are the set's names; ``"component k"`` also reaches a labeller-named ``"yaw (component k)"``
and an attribute name reaches the one component named after it (:func:`resolve_direction`).
Text steps (the app's API) are parsed by :func:`parse_steps`: JSON ``{"yaw": 1.5}`` or ``"yaw=1.5, age=-1"``.

Steps are in standard deviations of the attribute (see :mod:`facegen.packs.directions`), limited to
+-``MAX_STEP``. ``layers`` defaults to the direction set's default (the first 8 layers: coarse +
middle, as the original seeprettyface site edited 8 of 18); ``conditional=True`` uses directions with
the other attributes projected out ("keep other attributes").

Sweeps (for animation): :func:`sweep_ws` (one attribute, T values), :func:`grid_ws` (two attributes,
rows x cols) and :func:`serpentine` (a continuous path through a 2-D grid of values).
Everything takes and returns numpy arrays, so it can run inside ``spaces.GPU`` unchanged.

**Guided conditional editing** (:func:`guided_edit_ws`, :func:`guided_sweep_ws`). A conditional
direction is one fixed vector for every face: it removes the *average* dependence of the other
attributes on w, and where the generator encodes them non-linearly (as the small ``mini`` does) the
others still move. When a differentiable labeller of the generator's faces is at hand (the face
world's predictor for ``mini``, :func:`guide_for`), the edit is integrated instead: the path from
the face to its edit is cut into substeps of at most ``substep`` standard deviations, and at every
substep the step vector v (on the edited layers) is projected onto the orthogonal complement of
the gradients g_j = d score_j / d w+ of the kept attributes *at the current face*,

    v' = v - J^T (J J^T)^-1 J v,      J = [g_1 .. g_k]  (k kept attributes)

and rescaled so that its component along v is |v| again (the same progress along the direction,
the gain capped at ``MAX_GAIN``, as for conditional directions). To first order no kept attribute
changes at any point of the path. The result is still a w+ latent of the same generator; it costs
one generator pass and k backward passes per substep.
"""

from __future__ import annotations

import json
import re
from typing import Mapping, Optional, Sequence

import numpy as np

from facegen.packs.directions import MAX_GAIN, MAX_STEP, DirectionSet, check_step
from facegen.engine.errors import FacegenError, InputError, LatentError

__all__ = ["directions_for", "resolve_direction", "parse_steps", "edit_ws", "edit", "sweep_ws", "grid_ws",
           "serpentine", "resolve_layers", "offset", "check_steps", "guide_for", "guided_edit_ws", "guided_sweep_ws",
           "FALLBACK_NOTE"]

FALLBACK_NOTE = "no attribute directions for this generator: editing along its principal components (GANSpace)"


# ---------------------------------------------------------------------------
# Which directions, and their names
# ---------------------------------------------------------------------------


def directions_for(G, pack) -> tuple:
    """-> (DirectionSet, note): `pack`'s attribute directions, else G's unsupervised components (named by
    the pack's labeller when it has one), with a note that says which was used."""
    from facegen.packs.directions import find_directions
    from facegen.packs.unsupervised import unsupervised_directions
    if pack is not None and pack.has("directions"):
        ds = find_directions(G, pack)
        lab = ds.meta.get("labeller")
        return ds, f"attribute directions from the pack '{pack.name}' (labeller {LEGACY_LABELLER_NAMES.get(lab, lab) or '?'})"
    where = (f"its pack '{pack.name}' has no attribute directions" if pack is not None
             else "no attribute directions for this generator")
    note = FALLBACK_NOTE.replace("no attribute directions for this generator", where)
    labeller = pack.labeller if pack is not None else None
    if labeller:
        try:
            ds = unsupervised_directions(G, labeller=labeller)
            named = sum(n != f"component {i + 1}" for i, n in enumerate(ds.names))
            return ds, note + (f", {named} of {len(ds.names)} named by the '{labeller}' labeller "
                               "after the attribute each moves most")
        except FacegenError as e:
            return unsupervised_directions(G), note + f" (the labeller '{labeller}' could not name them: {e})"
    return unsupervised_directions(G), note


def resolve_direction(ds: DirectionSet, name) -> str:
    """The set's name for `name`: itself, ``"component k"`` for ``"<attribute> (component k)"``, or an
    attribute that names exactly one component. Unknown names raise InputError listing the valid ones."""
    name = str(name).strip()
    if name in ds.names:
        return name
    low = name.lower()
    hits = [n for n in ds.names if n.lower() == low or n.lower().endswith(f"({low})")
            or n.lower().startswith(f"{low} (component ")]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise InputError(f"'{name}' is ambiguous here: it names {', '.join(hits)}; use one of those names.")
    raise InputError(f"Unknown direction '{name}': this generator's directions are {', '.join(ds.names)}.")


_STEP = re.compile(r"\s*(.+?)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")


def parse_steps(text) -> dict:
    """Steps as text -> {name: step}: a JSON object ``'{"yaw": 1.5, "component 3": -2}'`` or
    ``'yaw=1.5, component 3=-2'``; empty -> {}. Names are checked against a set by :func:`check_steps`."""
    if isinstance(text, Mapping):
        return dict(text)
    text = str(text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            out = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"Cannot read the steps as JSON ({e.msg} at character {e.pos}): write "
                             '\'{"yaw": 1.5, "component 3": -2}\' or \'yaw=1.5, component 3=-2\'.') from None
        if not isinstance(out, dict):
            raise InputError("Steps in JSON must be an object {direction: step}.")
        return out
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = _STEP.fullmatch(part)
        if not m:
            raise InputError(f"Cannot read '{part}' in the steps: write 'direction=step', e.g. 'yaw=1.5' or "
                             "'component 3=-2'.")
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


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
    """{name: step} validated: known directions (:func:`resolve_direction`; steps for the same direction
    add up), finite steps within +-MAX_STEP."""
    if not isinstance(steps, Mapping):
        raise InputError("Steps must be a mapping {direction: step}.")
    out: dict = {}
    for k, v in steps.items():
        name = resolve_direction(ds, k)
        out[name] = check_step(name, out.get(name, 0.0) + check_step(str(k), v))
    return out


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
    from facegen.engine.synthesis import synthesize
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
    name = resolve_direction(ds, name)
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
    rn, cn = resolve_direction(ds, rn), resolve_direction(ds, cn)
    if rn == cn:
        raise InputError(f"A grid needs two different directions (got '{rn}' twice).")
    layers = resolve_layers(ds, ws.shape[0], layers)
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


# ---------------------------------------------------------------------------
# Guided conditional editing (see the module docstring)
# ---------------------------------------------------------------------------

LEGACY_LABELLER_NAMES = {"WorldPredictor": "world"}   # direction sets fitted before labellers had names


def guide_for(G, ds: DirectionSet):
    """The differentiable labeller that can guide edits of `G`'s faces, or None.

    Directions carry the name of the labeller they were fitted with (``ds.meta["labeller"]``); when that
    labeller is differentiable (it has ``attribute_scores``, as the face world's predictor does) it guides
    the edit. Other labellers (the photo labeller, published directions) keep the conditional path, and
    so do unsupervised components (their labeller only named them; they are orthonormal anyway)."""
    from facegen.labels.base import LABELLERS, load_labeller
    from facegen.packs.unsupervised import is_unsupervised
    if is_unsupervised(ds):
        return None
    name = ds.meta.get("labeller")
    name = LEGACY_LABELLER_NAMES.get(name, name)
    if name not in LABELLERS:
        return None
    lab = load_labeller(name)
    return lab if hasattr(lab, "attribute_scores") else None


def _kept(ds: DirectionSet, edited: Sequence[str], keep: Optional[Sequence[str]]) -> list:
    names = [resolve_direction(ds, n) for n in (ds.names if keep is None else keep)]
    return [n for n in names if n not in edited]


def _guided_path(G, guide, ws: np.ndarray, v: np.ndarray, layers: Sequence[int], ts: Sequence[float],
                 keep: Sequence[str], substep: float) -> dict:
    """Integrate w+ [B, num_ws, w_dim] along step vector v [w_dim] on `layers`, projected away from
    the kept attributes' gradients; -> {t: w+ at t * v} for every t in `ts` (0 included)."""
    import torch
    if substep <= 0:
        raise InputError("The guided substep must be positive.")
    w0 = torch.from_numpy(np.ascontiguousarray(ws, np.float32))
    dev = next(G.parameters()).device
    w0 = w0.to(dev)
    layers = list(layers)
    vrow = torch.from_numpy(np.asarray(v, np.float32)).to(dev)
    vflat = vrow.repeat(len(layers))                       # the step on the edited layers, flattened [L * w_dim]
    vv = float(vflat @ vflat)
    g_dev = next(guide.parameters()).device
    was_training = guide.training
    guide.eval()
    # Knots every `substep` out to the extreme values; the path is straight between knots (one
    # projected direction per substep), so every other value is interpolated between its two knots.
    ts = [float(t) for t in ts]
    knots = {0.0: w0.clone()}
    try:
        for sign in (1.0, -1.0):
            far = max([abs(t) for t in ts if t * sign > 0], default=0.0)
            w, pos = w0.clone(), 0.0
            while far - abs(pos) > 1e-9:
                nxt = sign * min(far, abs(pos) + substep)
                step = vflat[None].expand(len(w), -1)
                if keep and vv > 0:
                    wv = w.clone().requires_grad_(True)
                    with torch.enable_grad():     # (the guide may live on another device than G)
                        img = G.synthesis(wv, noise_mode="const").to(g_dev)
                        scores = guide.attribute_scores(img, keep)
                        J = torch.stack([torch.autograd.grad(scores[:, j].sum(), wv, retain_graph=j < len(keep) - 1)[0]
                                         [:, layers].flatten(1) for j in range(len(keep))], 1)   # [B, k, L*w_dim]
                    gram = J @ J.transpose(1, 2)
                    gram = gram + 1e-6 * gram.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] * torch.eye(
                        len(keep), device=dev)
                    coef = torch.linalg.solve(gram, J @ vflat)                               # [B, k]
                    step = vflat[None] - (coef[:, None, :] @ J)[:, 0]
                    gain = (vv / (step @ vflat).clamp_min(1e-12)).clamp(max=MAX_GAIN)
                    step = step * gain[:, None]
                w = w.clone()
                w[:, layers] += (nxt - pos) * step.view(len(w), len(layers), -1)
                pos = nxt
                knots[pos] = w.clone()
    finally:
        guide.train(was_training)
    ks = sorted(knots)
    out = {}
    for t in ts:
        if t in knots:
            out[t] = knots[t]
            continue
        i = int(np.clip(np.searchsorted(ks, t), 1, len(ks) - 1)) if len(ks) > 1 else 0
        lo, hi = ks[max(i - 1, 0)], ks[i]
        a = 0.0 if hi == lo else (t - lo) / (hi - lo)
        out[t] = knots[lo] + a * (knots[hi] - knots[lo])
    return {t: x.cpu().numpy() for t, x in out.items()}


def guided_edit_ws(G, guide, ws, ds: DirectionSet, steps: Mapping[str, float], layers: Optional[Sequence[int]] = None,
                   keep: Optional[Sequence[str]] = None, substep: float = 0.5) -> np.ndarray:
    """Like :func:`edit_ws` with ``conditional=True``, but guided by `guide` (a labeller with
    ``attribute_scores``, see :func:`guide_for`): the kept attributes (default: every attribute of
    `ds` not being edited) stay fixed to first order along the whole path."""
    ws = _as_wplus(ws, ds)
    layers = resolve_layers(ds, ws.shape[-2], layers)
    steps = {k: v for k, v in check_steps(ds, steps).items() if v}
    if not steps:
        return ws.copy()
    v = offset(ds, steps)
    batch = ws.reshape(-1, *ws.shape[-2:])
    res = _guided_path(G, guide, batch, v, layers, [1.0], _kept(ds, list(steps), keep), substep)[1.0]
    return res.reshape(ws.shape)


def guided_sweep_ws(G, guide, ws, ds: DirectionSet, name: str, values: Sequence[float],
                    layers: Optional[Sequence[int]] = None, keep: Optional[Sequence[str]] = None,
                    substep: float = 0.5) -> np.ndarray:
    """Like :func:`sweep_ws` with ``conditional=True``, guided: w+ [num_ws, w_dim] (or a batch
    [N, num_ws, w_dim]) -> [T, num_ws, w_dim] (or [N, T, num_ws, w_dim]) at each step in `values`."""
    ws = _as_wplus(ws, ds)
    layers = resolve_layers(ds, ws.shape[-2], layers)
    name = resolve_direction(ds, name)
    values = [check_step(name, v) for v in values]
    batch = ws.reshape(-1, *ws.shape[-2:])
    path = _guided_path(G, guide, batch, ds.step_vector(name, 1.0), layers, values, _kept(ds, [name], keep), substep)
    out = np.stack([path[float(v)] for v in values], 1)                  # [N, T, num_ws, w_dim]
    return out[0] if ws.ndim == 2 else out

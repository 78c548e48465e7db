"""Unsupervised directions: what a generator varies most, found from the generator itself in seconds.

A generator without attribute directions (no pack, or a pack without ``directions``) can still be
edited and animated along the directions its own latent space varies most. Both methods below return
a :class:`facegen.packs.directions.DirectionSet`, so editing and animation have one code path:

* **GANSpace** (Härkönen et al., 2020; ``method="ganspace"``, the default). ``n_samples`` z are drawn
  (``numpy.random.default_rng(seed)``, class 0 for class-conditional generators) and mapped to w at
  psi = 1; the principal components of ``w - mean(w)`` (eigenvectors of its covariance, float64) are the directions, ordered
  by explained variance. Component k's step is the standard deviation of the samples' projections on
  it, so "+2" means two standard deviations, as for fitted attribute directions. The edit applies a
  W direction to a layer range (the set's default: the first 8 layers, coarse + middle), as GANSpace
  does; its band vectors are the component itself on every band.
* **SeFa**, closed-form factorisation (Shen & Zhou, 2021; ``method="sefa"``). A style layer i computes
  ``s_i = A_i w + b_i``; the W directions that change the styles of a set of layers most are the
  eigenvectors of ``A^T A``, A stacking those layers' affine weights (every output channel's weight row
  normalised, as SeFa does; on StyleGAN3, w+ entry 0's "style" is the Fourier input's affine, the 4
  numbers of its rotation and translation, see :func:`style_affines`). The directions come from the set's edit layers; band b's vectors are
  the factorisation of the layers of that band alone (coarse / middle / fine,
  :func:`facegen.packs.directions.band_layers`), each sign-aligned with the whole-range component of
  the same rank. Step sizes are measured on sampled w as for GANSpace. No sampling is needed for the
  directions themselves, only for their step sizes.

Signs are fixed deterministically (each vector's largest coordinate is positive), names are
``"component k"`` (1-based, by explained variance or eigenvalue), held-out ``accuracy`` is NaN (nothing
was fitted against labels) and ``meta["method"]`` says which method made the set.

**Naming by a labeller** (:func:`name_components`). Where a labeller knows the generator's domain
(the face world's predictor for face-world generators; :mod:`facegen.labels.base`), ``n`` faces
(psi 0.7) are rendered at -``step`` and +``step`` standard deviations along each component (on the
set's edit layers) and labelled at both ends. For every continuous or boolean attribute, the effect
is the mean change over the faces divided by the attribute's spread over the unedited faces (floored
at 5 % of its range); agreement is the share of faces that change in the mean's direction. A
component is named after the attribute with the largest |effect| among those with agreement >=
``min_agreement``, if that |effect| >= ``min_effect``: ``"yaw (component 1)"``, its vector flipped if
needed so that + increases the attribute. Other components keep ``"component k"``.

Results are cached in memory per generator fingerprint (and method, sizes, seed, labeller).
"""

from __future__ import annotations

import threading
from typing import Optional, Sequence

import numpy as np
import torch

from facegen.engine import latents as L
from facegen.engine.errors import InputError
from facegen.packs.directions import MAX_STEP, DirectionSet, band_layers, default_edit_layers

__all__ = ["METHODS", "unsupervised_directions", "ganspace_directions", "sefa_directions", "name_components",
           "is_unsupervised", "component_name", "sample_w", "style_affines", "clear_cache"]

METHODS = ("ganspace", "sefa")
N_COMPONENTS = 10
N_SAMPLES = 10000
SEED = 0
NAME_SAMPLES = 16
NAME_STEP = 2.0
NAME_PSI = 0.7
MIN_EFFECT = 1.0            # mean change / spread over unedited faces
MIN_AGREEMENT = 0.8         # share of faces whose attribute moves in the mean's direction
SPREAD_FLOOR = 0.05         # of the attribute's range

_CACHE: dict = {}
_LOCK = threading.Lock()


def component_name(k: int) -> str:
    """The name of component k (1-based)."""
    return f"component {int(k)}"


def is_unsupervised(ds: DirectionSet) -> bool:
    return ds.meta.get("method") in METHODS


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


# ---------------------------------------------------------------------------
# Ingredients
# ---------------------------------------------------------------------------


def sample_w(G, n: int = N_SAMPLES, seed: int = SEED, batch: int = 2000) -> np.ndarray:
    """n w vectors [n, w_dim] (float64) of z ~ N(0, I) from ``default_rng(seed)`` at psi 1 (class 0)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(0, n, batch):
        z = torch.from_numpy(rng.standard_normal((min(batch, n - i), G.z_dim)).astype(np.float32))
        out.append(L.z_to_ws(G, z, psi=1.0)[:, 0].cpu().numpy().astype(np.float64))
    return np.concatenate(out)


def _fix_signs(V: np.ndarray) -> np.ndarray:
    """Flip each row so that its largest-magnitude coordinate is positive (a deterministic sign)."""
    idx = np.abs(V).argmax(1)
    return V * np.where(V[np.arange(len(V)), idx] < 0, -1.0, 1.0)[:, None]


def style_affines(G) -> dict:
    """{w+ layer index: [effective affine weight [channels, w_dim], ...]}: every style layer's
    ``A`` (weight * weight_gain) grouped by the w+ entry it reads.

    * StyleGAN2 (``synthesis.block_resolutions``): a block's convolutions read consecutive entries, its
      toRGB reads the entry of the next block's first convolution.
    * StyleGAN3 (``synthesis.layers()``): entry 0 drives the Fourier input's affine (the 4 numbers of
      its rotation and translation), entry 1 + i the style affine of layer i (the ToRGB last).
    """
    syn = G.synthesis
    out: dict = {}
    if hasattr(syn, "block_resolutions"):
        idx = 0
        for res in syn.block_resolutions:
            block = getattr(syn, f"b{res}")
            layers = [getattr(block, n) for n in ("conv0", "conv1") if hasattr(block, n)]
            for j, layer in enumerate(layers):
                out.setdefault(idx + j, []).append(layer.affine)
            if hasattr(block, "torgb"):
                out.setdefault(idx + block.num_conv, []).append(block.torgb.affine)
            idx += block.num_conv
    elif hasattr(syn, "layers") and hasattr(syn, "input"):
        out[0] = [syn.input.affine]
        for i, layer in enumerate(syn.layers()):
            out.setdefault(1 + i, []).append(layer.affine)
    else:
        raise InputError(f"SeFa does not know the style layers of {type(syn).__name__}: use GANSpace instead.")
    return {i: [(a.weight.detach().double() * a.weight_gain).cpu().numpy() for a in affs]
            for i, affs in out.items()}


def _sefa_basis(affines: dict, layers: Sequence[int], k: int) -> tuple:
    """Top-k eigenvectors [k, w_dim] and eigenvalues of A^T A over `layers` (rows normalised)."""
    A = np.concatenate([a for i in layers for a in affines.get(i, [])])
    A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
    vals, vecs = np.linalg.eigh(A.T @ A)
    order = np.argsort(vals)[::-1][:k]
    return _fix_signs(vecs[:, order].T), vals[order]


def _meta(G, method: str, n_samples: int, seed: int, k: int) -> dict:
    from facegen.engine import __version__
    return {"fingerprint": G.fingerprint, "model": G.meta.get("name", ""), "num_ws": G.num_ws, "w_dim": G.w_dim,
            "resolution": G.img_resolution, "method": method, "labeller": None, "n_samples": n_samples,
            "n_used": n_samples, "seed": seed, "psi": 1.0, "n_components": k,
            "bands": [{"name": b, "layers": lay} for b, lay in band_layers(G.num_ws)],
            "default_layers": default_edit_layers(G.num_ws), "step_unit": "one standard deviation of w . d",
            "max_step": MAX_STEP, "facegen_version": __version__}


def _direction_set(G, V: np.ndarray, band_V: np.ndarray, w: np.ndarray, meta: dict) -> DirectionSet:
    mean = w.mean(0)
    scales = ((w - mean) @ V.T).std(0)
    K, B = band_V.shape[:2]
    return DirectionSet([component_name(i + 1) for i in range(K)], V.astype(np.float32),
                        scales.astype(np.float32), np.full(K, np.nan, np.float32), band_V.astype(np.float32),
                        np.full((K, B), np.nan, np.float32), mean.astype(np.float32), meta)


def _check_sizes(G, n_components: int, n_samples: int) -> tuple:
    k, n = int(n_components), int(n_samples)
    if not 1 <= k <= G.w_dim:
        raise InputError(f"Ask for 1 to {G.w_dim} components (got {k}).")
    if n < 2 * G.w_dim:
        raise InputError(f"Unsupervised directions need at least {2 * G.w_dim} samples for w_dim {G.w_dim} "
                         f"(got {n}).")
    return k, n


# ---------------------------------------------------------------------------
# The two methods
# ---------------------------------------------------------------------------


@torch.no_grad()
def ganspace_directions(G, n_components: int = N_COMPONENTS, n_samples: int = N_SAMPLES,
                        seed: int = SEED) -> DirectionSet:
    """GANSpace: principal components of sampled w (see the module docstring)."""
    k, n = _check_sizes(G, n_components, n_samples)
    w = sample_w(G, n, seed)
    X = w - w.mean(0)
    var, vecs = np.linalg.eigh(X.T @ X / (n - 1))          # the covariance's eigenvectors (= the SVD's, faster)
    order = np.argsort(var)[::-1]
    var = np.clip(var[order], 0, None)
    V = _fix_signs(vecs[:, order[:k]].T)
    meta = _meta(G, "ganspace", n, seed, k)
    meta["explained_variance_ratio"] = [round(float(v), 6) for v in (var / var.sum())[:k]]
    meta["band_vectors"] = "the component itself on every band (GANSpace applies a W direction to a layer range)"
    band_V = np.repeat(V[:, None], len(meta["bands"]), 1)
    return _direction_set(G, V, band_V, w, meta)


@torch.no_grad()
def sefa_directions(G, n_components: int = N_COMPONENTS, layers: Optional[Sequence[int]] = None,
                    n_samples: int = N_SAMPLES, seed: int = SEED) -> DirectionSet:
    """SeFa: eigenvectors of A^T A of the style affines of `layers` (default: the edit layers)."""
    k, n = _check_sizes(G, n_components, n_samples)
    layers = sorted({int(i) for i in (default_edit_layers(G.num_ws) if layers is None else layers)})
    if not layers or layers[0] < 0 or layers[-1] >= G.num_ws:
        raise InputError(f"SeFa layers must lie in 0-{G.num_ws - 1} (got {layers}).")
    aff = style_affines(G)
    V, vals = _sefa_basis(aff, layers, k)
    meta = _meta(G, "sefa", n, seed, k)
    meta["default_layers"] = layers
    band_V = []
    for band in meta["bands"]:
        Vb, _ = _sefa_basis(aff, band["layers"], k)
        band_V.append(Vb * np.where(np.sum(Vb * V, 1) < 0, -1.0, 1.0)[:, None])
    meta["eigenvalues"] = [round(float(v), 6) for v in vals]
    meta["explained_variance_ratio"] = [round(float(v), 6) for v in vals / vals.sum()]   # of the top k
    meta["band_vectors"] = "each band's own factorisation, rank by rank, sign-aligned with the whole-range one"
    return _direction_set(G, V, np.stack(band_V, 1), sample_w(G, n, seed), meta)


# ---------------------------------------------------------------------------
# Naming by a labeller
# ---------------------------------------------------------------------------


def _spread_floor(kind: str, rng: tuple) -> float:
    if kind == "continuous" and len(rng) == 2:
        return SPREAD_FLOOR * abs(float(rng[1]) - float(rng[0]))
    return SPREAD_FLOOR


@torch.no_grad()
def name_components(ds: DirectionSet, G, labeller, n: int = NAME_SAMPLES, step: float = NAME_STEP,
                    seed: int = 1, psi: float = NAME_PSI, min_effect: float = MIN_EFFECT,
                    min_agreement: float = MIN_AGREEMENT, batch: int = 32) -> DirectionSet:
    """A copy of an unsupervised set with components named (and sign-aligned) by `labeller` (a
    :class:`facegen.labels.base.Labeller` or its name); see the module docstring for the rule."""
    from facegen.engine.synthesis import synthesize
    from facegen.labels.base import load_labeller
    ds.check_generator(G)
    lab = load_labeller(labeller)
    attrs = [(a, k, tuple(r)) for a, k, r in lab.spec if k in ("continuous", "bool")]
    if not attrs:
        raise InputError(f"The labeller '{lab.name}' has no continuous or boolean attributes to name components by.")
    n, K = int(n), len(ds.names)
    z = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, G.z_dim)).astype(np.float32))
    base = L.z_to_ws(G, z, psi=psi).cpu().numpy()                          # [n, num_ws, w_dim]
    layers = [i for i in ds.default_layers if i < G.num_ws]
    ws = np.repeat(base[None], 1 + 2 * K, 0)                               # [1 + 2K, n, num_ws, w_dim]
    for k in range(K):
        v = ds.vectors[k] * (step * float(ds.scales[k]))
        ws[1 + 2 * k][:, layers] -= v
        ws[2 + 2 * k][:, layers] += v
    imgs = synthesize(G, ws.reshape(-1, G.num_ws, G.w_dim), batch_size=batch)
    pred = {a: [] for a, _, _ in attrs}
    valid = []
    for i in range(0, len(imgs), batch):
        p = lab.predict(imgs[i:i + batch])
        for a, _, _ in attrs:
            pred[a].append(np.asarray(p[a], np.float64).reshape(-1))
        valid.append(np.asarray(lab.validity(imgs[i:i + batch]), np.float64))
    valid = np.concatenate(valid).reshape(1 + 2 * K, n) >= 0.5
    names, V, BV, report = list(ds.names), ds.vectors.copy(), ds.band_vectors.copy(), []
    for k in range(K):
        ok = valid[0] & valid[1 + 2 * k] & valid[2 + 2 * k]
        rows = []
        for a, kind, rng in attrs:
            y = np.concatenate(pred[a]).reshape(1 + 2 * K, n)
            lo, hi, y0 = y[1 + 2 * k], y[2 + 2 * k], y[0]
            m = ok & np.isfinite(lo) & np.isfinite(hi) & np.isfinite(y0)
            if m.sum() < 3:
                continue
            d = hi[m] - lo[m]
            effect = float(d.mean() / max(float(y0[m].std()), _spread_floor(kind, rng)))
            agreement = float(np.mean(np.sign(d) == np.sign(d.mean())))
            rows.append({"attribute": a, "effect": round(effect, 3), "agreement": round(agreement, 3),
                         "faces": int(m.sum())})
        rows.sort(key=lambda r: -abs(r["effect"]))
        best = next((r for r in rows if r["agreement"] >= min_agreement), None)
        entry = {"component": k + 1, "top": rows[:3], "named": None}
        if best is not None and abs(best["effect"]) >= min_effect:
            names[k] = f"{best['attribute']} ({component_name(k + 1)})"
            entry["named"] = best["attribute"]
            if best["effect"] < 0:
                V[k], BV[k] = -V[k], -BV[k]
                entry["flipped"] = True
        report.append(entry)
    meta = dict(ds.meta, labeller=lab.name, naming={
        "labeller": lab.name, "faces": n, "psi": psi, "step": step, "seed": seed, "min_effect": min_effect,
        "min_agreement": min_agreement, "layers": layers, "components": report,
        "rule": "effect = mean change (+step vs -step) / spread over the unedited faces"})
    return DirectionSet(names, V, ds.scales.copy(), ds.accuracy.copy(), BV, ds.band_accuracy.copy(),
                        ds.mean_w.copy(), meta)


# ---------------------------------------------------------------------------
# The cached entry point
# ---------------------------------------------------------------------------


def unsupervised_directions(G, method: str = "ganspace", labeller=None, n_components: int = N_COMPONENTS,
                            n_samples: int = N_SAMPLES, seed: int = SEED) -> DirectionSet:
    """G's unsupervised directions (cached per fingerprint): GANSpace or SeFa components, named by
    `labeller` (a name or Labeller) when one is given."""
    if method not in METHODS:
        raise InputError(f"Unknown method '{method}': use {' or '.join(METHODS)}.")
    lab_key = labeller if isinstance(labeller, (str, type(None))) else getattr(labeller, "name", id(labeller))
    key = (G.fingerprint, method, int(n_components), int(n_samples), int(seed), lab_key)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    raw_key = key[:-1] + (None,)
    with _LOCK:
        ds = _CACHE.get(raw_key)
    if ds is None:
        make = ganspace_directions if method == "ganspace" else sefa_directions
        ds = make(G, n_components=n_components, n_samples=n_samples, seed=seed)
        with _LOCK:
            _CACHE[raw_key] = ds
    if labeller is not None:
        ds = name_components(ds, G, labeller)
        with _LOCK:
            _CACHE[key] = ds
    return ds

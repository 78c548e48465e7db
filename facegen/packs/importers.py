"""Published attribute directions -> a :class:`~facegen.packs.directions.DirectionSet` for one generator.

Files are read without executing anything: ``.npy`` with ``numpy.load(allow_pickle=False)``, ``.pt``
with ``torch.load(weights_only=True, map_location="cpu")`` (e4e's ``pose.pt`` was saved from a CUDA
tensor, so the map is needed on CPU machines). A file holding pickled Python objects, a wrong shape
or a width that is not the generator's is refused with :class:`~facegen.engine.errors.LatentError`
saying what was expected.

Formats (``FORMATS``; layouts checked against the upstream files)
-----------------------------------------------------------------
``interfacegan``
    genforce/interfacegan @ 150882e69130f90f2e3bc4a6477a498ff03ab1e0,
    ``boundaries/stylegan2_ffhq_z/boundary_<Attribute>.npy``: float32 ``(1, 512)`` unit normals of
    linear SVM boundaries **in Z** (InterFaceGAN edits ``z + a * n``). Converted to W by the
    averaged finite difference (:func:`z_direction_to_w`).
``seeprettyface``
    a312863063/generators-with-stylegan2 ``latent_directions/<name>.npy``: float64 ``(18, 512)`` with
    18 identical rows (or ``(1, 512)``), **in W**, not unit length; its ``edit_photo.py`` adds
    ``coeff * direction`` to the first 8 w+ layers only (coeffs -15 ... 12). Imported with
    ``default_layers`` = layers 0-7, so the editing code applies it there.
``e4e-interfacegan``
    omertov/encoder4editing ``editings/interfacegan_directions/{age,pose,smile}.pt``: tensors
    ``[1, 512]`` (age, smile) or ``[1, 18, 512]`` with identical unit rows (pose), **in W**; e4e adds
    ``factor * direction`` to every w+ layer.
``e4e-ganspace``
    omertov/encoder4editing ``editings/ganspace_pca/ffhq_pca.pt``: a dict ``{"mean": [1, 512],
    "comp": [80, 1, 512] (orthonormal rows), "std": [80]}`` (shapes read from the shipped file;
    ``comp`` ``[k, 512]`` is accepted too). Its ``editings/ganspace.py`` (``get_delta``) moves a
    latent's coordinate along ``comp[i]`` -- measured from ``mean`` in units of ``std[i]`` -- to a
    target strength on a layer range ``start:end``. Imported as one direction per component
    (``pc<i>``, all of them or ``components``), added on every layer unless ``layers`` is given;
    facegen steps are relative (``+step * scale * comp[i]``) rather than e4e's absolute target.

Z -> W (InterFaceGAN's Z boundaries)
------------------------------------
``d_W = normalise( mean_i [ mapping(z_i + a n) - mapping(z_i) ] )`` over ``n_samples`` seeded
``z_i ~ N(0, I)``, ``a = 1`` (one unit along the boundary normal, the size of InterFaceGAN's edit
steps). For a linear mapping ``M z + b`` every difference is ``a M n``, so this is exactly
``M n / |M n|``; for StyleGAN2's mapping (which normalises z first) it is the mean local effect.
The mean cosine between the per-sample differences and ``d_W`` is recorded as
``z_to_w_agreement`` (1 = the mapping acts linearly along n).

Step units: as for fitted directions, one step is one standard deviation of ``(w - mean_w) . d``
over ``n_samples`` of the generator's own w (seeds 0..n-1, psi 1), so steps mean the same for
imported and fitted sets; the file's native length (``native_norm``) is recorded per attribute.
Accuracy arrays hold 0: nothing was measured (``meta["accuracy_measured"] = False``).
"""

from __future__ import annotations

import datetime
import re
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from facegen.engine import latents as L
from facegen.engine.errors import InputError, LatentError
from facegen.packs.directions import MAX_STEP, DirectionSet, band_layers

__all__ = ["FORMATS", "import_directions", "z_direction_to_w", "read_npy", "read_pt"]

#: format -> (space, upstream, how it is applied upstream)
FORMATS = {
    "interfacegan": ("z", "genforce/interfacegan@150882e69130f90f2e3bc4a6477a498ff03ab1e0 "
                          "boundaries/stylegan2_ffhq_z/boundary_*.npy",
                     "z + a * n (every layer); here mapped to W by the averaged finite difference, "
                     "added to every w+ layer"),
    "seeprettyface": ("w", "a312863063/generators-with-stylegan2 latent_directions/*.npy",
                      "w + coeff * direction on the first 8 w+ layers"),
    "e4e-interfacegan": ("w", "omertov/encoder4editing editings/interfacegan_directions/*.pt",
                         "w+ + factor * direction on every layer"),
    "e4e-ganspace": ("w", "omertov/encoder4editing editings/ganspace_pca/ffhq_pca.pt",
                     "w+ moved along a principal component on a layer range (editings/ganspace.py)"),
}
SEEPRETTYFACE_LAYERS = 8      # edit_photo.py: new_latent[0][:8] = (latent + coeff * direction)[:8]
Z_STEP = 1.0                  # a in mapping(z + a n) - mapping(z)


# ---------------------------------------------------------------------------
# Reading files without executing code
# ---------------------------------------------------------------------------


def read_npy(path: Union[str, Path]) -> np.ndarray:
    """A float array from an .npy file, never unpickled."""
    path = Path(path)
    if not path.is_file():
        raise LatentError(f"No such file: {path.name}.")
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise LatentError(f"{path.name} holds pickled Python objects; facegen never unpickles direction "
                              "files. Save the vector as a plain float array.") from None
        raise LatentError(f"{path.name} is not a readable .npy file ({e}).") from None
    except Exception as e:
        raise LatentError(f"{path.name} is not a readable .npy file ({type(e).__name__}).") from None
    if not isinstance(a, np.ndarray):
        raise LatentError(f"{path.name} is an .npz archive; this format expects one .npy array per direction.")
    return _floats(a, path.name)


def read_pt(path: Union[str, Path]):
    """A tensor or a dict of tensors from a .pt file (weights_only: tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise LatentError(f"No such file: {path.name}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise LatentError(f"{path.name} cannot be read as tensors only (torch.load weights_only=True refused "
                          f"it: {type(e).__name__}); facegen never executes code from a direction file.") from None


def _floats(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise LatentError(f"{name} holds {a.dtype} values; directions must be floats.")
    if not np.all(np.isfinite(a)):
        raise LatentError(f"{name} holds NaN or infinite values.")
    return a.astype(np.float64)


def _one_row(a: np.ndarray, name: str, width: int, what: str, rows: Optional[int] = None) -> np.ndarray:
    """(w,), (1, w), (k, w) or (1, k, w) with identical rows -> (w,), else a LatentError saying why."""
    shape = tuple(a.shape)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[-1] != width:
        raise LatentError(f"{name} has shape {shape}; expected {what} of width {width} (the generator's), e.g. "
                          f"(1, {width}).")
    used = a[:rows] if rows else a
    if np.abs(used - used[:1]).max() > 1e-6 * (np.abs(used).max() + 1e-12):
        raise LatentError(f"{name} has {a.shape[0]} different per-layer rows; facegen imports one direction "
                          "per attribute (a file with identical rows, as published).")
    v = a[0]
    if np.linalg.norm(v) < 1e-8:
        raise LatentError(f"{name} is a zero vector.")
    return v


# ---------------------------------------------------------------------------
# Z -> W
# ---------------------------------------------------------------------------


def mapping_of(G) -> Callable:
    """z [N, z_dim] -> w [N, w_dim] at psi 1 (layer 0 of the mapping's w+)."""
    return lambda z: L.z_to_ws(G, z)[:, 0].detach().cpu()


@torch.no_grad()
def z_direction_to_w(mapping: Callable, n: np.ndarray, z_dim: int, n_samples: int = 1000, seed: int = 0,
                     a: float = Z_STEP) -> tuple:
    """A unit Z direction n -> (unit W direction, mean cosine of the per-sample differences with it).

    ``d = normalise(mean_i [mapping(z_i + a n) - mapping(z_i)])``, z_i ~ N(0, I) (seeded); exact for a
    linear mapping (see the module docstring)."""
    n = np.asarray(n, np.float64).reshape(-1)
    if n.shape != (z_dim,):
        raise LatentError(f"The Z direction has width {n.size}, but the generator's z_dim is {z_dim}.")
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(int(n_samples), z_dim, generator=g)
    step = torch.as_tensor(n / np.linalg.norm(n) * a, dtype=torch.float32)
    diffs, s = [], 250
    for i in range(0, len(z), s):
        zi = z[i:i + s]
        diffs.append((torch.as_tensor(mapping(zi + step)) - torch.as_tensor(mapping(zi))).double())
    diff = torch.cat(diffs).numpy()
    d = diff.mean(0)
    norm = np.linalg.norm(d)
    if norm < 1e-12:
        raise LatentError("The Z direction does not move w at all through this generator's mapping.")
    d = d / norm
    cos = diff @ d / np.maximum(np.linalg.norm(diff, axis=1), 1e-12)
    return d, float(cos.mean())


# ---------------------------------------------------------------------------
# Per-format readers -> [(name, vector [dim], space, details)]
# ---------------------------------------------------------------------------


def _name(path: Path, prefix: str = "") -> str:
    stem = path.stem[len(prefix):] if prefix and path.stem.startswith(prefix) else path.stem
    return re.sub(r"[^0-9a-z_]+", "_", stem.lower()).strip("_") or "direction"


def _read_interfacegan(files, G, **_):
    out = []
    for f in files:
        if f.suffix != ".npy":
            raise LatentError(f"{f.name}: InterFaceGAN boundaries are .npy files (boundary_<Attribute>.npy).")
        v = _one_row(read_npy(f), f.name, G.z_dim, "a Z boundary (1, z_dim)")
        out.append((_name(f, "boundary_"), v, "z", {"file": f.name, "native_norm": float(np.linalg.norm(v))}))
    return out


def _read_seeprettyface(files, G, **_):
    out = []
    for f in files:
        if f.suffix != ".npy":
            raise LatentError(f"{f.name}: seeprettyface directions are .npy files (latent_directions/<name>.npy).")
        v = _one_row(read_npy(f), f.name, G.w_dim, "a W direction (18, w_dim) or (1, w_dim)",
                     rows=SEEPRETTYFACE_LAYERS)
        out.append((_name(f), v, "w", {"file": f.name, "native_norm": float(np.linalg.norm(v))}))
    return out


def _read_e4e_interfacegan(files, G, **_):
    out = []
    for f in files:
        x = read_pt(f)
        if not isinstance(x, torch.Tensor):
            raise LatentError(f"{f.name} holds a {type(x).__name__}; e4e InterFaceGAN directions are one tensor "
                              "[1, 512] (or [1, 18, 512]). Use --format e4e-ganspace for ffhq_pca.pt.")
        v = _one_row(_floats(x, f.name), f.name, G.w_dim, "a W direction [1, w_dim] or [1, num_ws, w_dim]")
        out.append((_name(f), v, "w", {"file": f.name, "native_norm": float(np.linalg.norm(v))}))
    return out


def _read_e4e_ganspace(files, G, components: Optional[Sequence[int]] = None, **_):
    if len(files) != 1:
        raise InputError("e4e-ganspace takes one file (editings/ganspace_pca/ffhq_pca.pt).")
    f = files[0]
    x = read_pt(f)
    if not isinstance(x, dict) or not {"mean", "comp", "std"} <= set(x):
        raise LatentError(f"{f.name} is not a GANSpace PCA file: expected a dict with 'mean', 'comp' and 'std'"
                          + (f" (it has {', '.join(map(str, x))})" if isinstance(x, dict) else "") + ".")
    comp, std, mean = (_floats(x[k], f"{f.name}['{k}']") for k in ("comp", "std", "mean"))
    if comp.ndim == 3 and comp.shape[1] == 1:
        comp = comp[:, 0]
    if comp.ndim != 2 or comp.shape[1] != G.w_dim or std.shape != (comp.shape[0],) or mean.size != G.w_dim:
        raise LatentError(f"{f.name}: comp {tuple(x['comp'].shape)}, std {tuple(x['std'].shape)}, mean "
                          f"{tuple(x['mean'].shape)}; expected comp [k, 1, {G.w_dim}] or [k, {G.w_dim}], std [k], "
                          f"mean [1, {G.w_dim}] (the generator's w_dim is {G.w_dim}).")
    idx = list(range(len(comp))) if components is None else [int(i) for i in components]
    bad = [i for i in idx if not 0 <= i < len(comp)]
    if bad:
        raise InputError(f"Components {bad} do not exist: {f.name} has {len(comp)} (0-{len(comp) - 1}).")
    return [(f"pc{i}", comp[i], "w", {"file": f.name, "component": i, "pca_std": float(std[i]),
                                       "native_norm": float(np.linalg.norm(comp[i]))}) for i in idx]


READERS = {"interfacegan": _read_interfacegan, "seeprettyface": _read_seeprettyface,
           "e4e-interfacegan": _read_e4e_interfacegan, "e4e-ganspace": _read_e4e_ganspace}


# ---------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------


def parse_layers(text: Optional[str], num_ws: int) -> Optional[list]:
    """'0-7' / '2,4-5' -> sorted layers (inside the generator), None for empty."""
    if text is None or not str(text).strip():
        return None
    try:
        layers = sorted(set(L.parse_seeds(str(text), max_count=num_ws + 1)))
    except InputError:
        raise InputError(f"Cannot read layers '{text}': use a range like '0-7' or a list like '2,4-5'.") from None
    if layers[-1] >= num_ws:
        raise InputError(f"Layers {text} are not valid for a generator with {num_ws} layers (0-{num_ws - 1}).")
    return layers


def import_directions(fmt: str, files: Sequence[Union[str, Path]], G, n_samples: int = 2000,
                      components: Optional[Sequence[int]] = None, layers: Optional[Sequence[int]] = None,
                      model: str = "", log: Optional[Callable] = None) -> DirectionSet:
    """Published direction files of format `fmt` -> a DirectionSet for G (see the module docstring).

    `components`: e4e-ganspace principal components to import (default all); `layers`: the layers the
    edits apply to (default: the format's own -- 0-7 for seeprettyface, every layer otherwise)."""
    if fmt not in READERS:
        raise InputError(f"Unknown direction format '{fmt}': use one of {', '.join(READERS)}.")
    files = [Path(f) for f in files]
    if not files:
        raise InputError("No direction files given.")
    log = log or (lambda *_: None)
    t0 = time.perf_counter()
    entries = READERS[fmt](files, G, components=components)
    names = [e[0] for e in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"Two files give the same attribute name {dup}: import them separately.")
    space, upstream, applied = FORMATS[fmt]
    n_samples = int(n_samples)
    if n_samples < 100:
        raise InputError(f"Step sizes need at least 100 samples of w (got {n_samples}).")
    with torch.no_grad():
        w = torch.cat([L.z_to_ws(G, L.seeds_to_z(range(i, min(i + 1000, n_samples)), G.z_dim))[:, 0].cpu()
                       for i in range(0, n_samples, 1000)]).double().numpy()
    mean_w = w.mean(0)
    vecs, scales, details = [], [], {}
    mapping = mapping_of(G)
    for name, v, sp, det in entries:
        if sp == "z":
            d, agree = z_direction_to_w(mapping, v, G.z_dim)
            det = {**det, "space": "z", "z_to_w": "averaged finite difference", "z_to_w_agreement": round(agree, 4)}
            log(f"  {name}: Z -> W, agreement of the per-sample differences {agree:.3f}")
        else:
            if v.size != G.w_dim:
                raise LatentError(f"{det['file']}: width {v.size}, but the generator's w_dim is {G.w_dim}.")
            d = v / np.linalg.norm(v)
            det = {**det, "space": "w"}
        scale = float(((w - mean_w) @ d).std())
        vecs.append(d), scales.append(scale)
        details[name] = {"kind": "imported", **det, "step_size": round(scale, 6)}
    default = (list(layers) if layers is not None else
               list(range(min(SEEPRETTYFACE_LAYERS, G.num_ws))) if fmt == "seeprettyface" else list(range(G.num_ws)))
    bands = band_layers(G.num_ws)
    V = np.stack(vecs).astype(np.float32)
    A, B = len(names), len(bands)
    from facegen.engine import __version__
    meta = {
        "fingerprint": G.fingerprint, "model": model or G.meta.get("name", ""), "num_ws": G.num_ws,
        "w_dim": G.w_dim, "resolution": G.img_resolution, "labeller": None, "imported": True,
        "source": {"format": fmt, "files": [f.name for f in files], "upstream": upstream, "space": space,
                   "applied_upstream": applied},
        "applied": f"w+ += step * step_size * direction on layers {default[0]}-{default[-1]}",
        "accuracy_measured": False, "n_samples": n_samples, "n_used": n_samples, "n_mixed_used": 0,
        "seeds": [0, n_samples - 1], "psi": 1.0, "min_validity": 0.0,
        "bands": [{"name": b, "layers": ls} for b, ls in bands], "default_layers": default,
        "step_unit": "one standard deviation of w . d over the generator's own samples", "max_step": MAX_STEP,
        "attributes": details, "skipped": {},
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "render_time_s": 0.0, "fit_time_s": round(time.perf_counter() - t0, 1), "facegen_version": __version__,
    }
    return DirectionSet(names, V, np.asarray(scales, np.float32), np.zeros(A, np.float32),
                        np.repeat(V[:, None], B, axis=1), np.zeros((A, B), np.float32),
                        mean_w.astype(np.float32), meta)


def readme(ds: DirectionSet, command: str) -> str:
    """The README of an imported directions folder."""
    m, src = ds.meta, ds.meta["source"]
    rows = ["| attribute | file | space | native length | step size (w units) |", "|---|---|---|---|---|"]
    for n in ds.names:
        d = m["attributes"][n]
        rows.append(f"| {n} | {d['file']} | {d['space']}" + (f" (Z->W agreement {d['z_to_w_agreement']:.3f})"
                    if d["space"] == "z" else "") + f" | {d['native_norm']:.4f} | {d['step_size']:.4f} |")
    return f"""# Imported directions for generator {ds.fingerprint}

`directions.npz`: {len(ds.names)} directions imported from **{src['format']}** ({src['upstream']}) by
`facegen.packs.importers` (files read without unpickling). Upstream they live in {src['space'].upper()} and are
applied as: {src['applied_upstream']}. Here: {m['applied']}. One step is one standard deviation of
`w . d` over {m['n_samples']} of this generator's own samples; held-out accuracy was not measured (0 in
the tables).

```
{command}
```

{chr(10).join(rows)}
"""

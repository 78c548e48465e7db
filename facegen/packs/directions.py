"""Attribute directions in W and w+: the set, its step units and conditioning, save and load.

A :class:`DirectionSet` holds one unit vector per attribute in W (and per layer band in w+), with its
step scale (one step = one standard deviation of ``w . d`` over the fitting samples, so "+2 age" means
the same for every generator; steps limited to +-:data:`MAX_STEP`) and held-out accuracy. How the
vectors are fitted from labelled samples is :mod:`facegen.packs.direction_fitting`; published sets
are imported by :mod:`facegen.packs.importers`; unsupervised ones come from :mod:`facegen.packs.unsupervised`.

Conditional directions (InterFaceGAN): ``d_cond = d - P^T (P P^T)^-1 P d`` with ``P`` the other
attributes' directions (least-squares projection, equivalent to Gram-Schmidt against their span),
so moving along ``d_cond`` leaves every other attribute's linear score unchanged: "older" no longer
also means "turned" or "male". To keep a step's effect on the target attribute the same, the
conditional vector is scaled by ``1 / (d . d_cond_unit)`` (capped at :data:`MAX_GAIN`).
Whitened sets (:mod:`facegen.packs.whitening`) store the covariance ``Sigma`` of W and do the same
projection and gain in the inner product ``<x, y> = x^T Sigma^-1 y``, which keeps the other
attributes' *classifier* scores fixed for directions that are not the classifiers' normals in W.

Files (``.npz``, read with ``allow_pickle=False``): arrays ``names``, ``vectors`` [A, w_dim],
``scales`` [A], ``accuracy`` [A], ``band_vectors`` [A, B, w_dim], ``band_accuracy`` [A, B], ``mean_w``
[w_dim] and ``meta`` (JSON: generator fingerprint, labeller, sample counts, seeds, layer bands,
default edit layers, per-attribute details, the fitting ``method``, the command); whitened sets add
``covariance`` [w_dim, w_dim] and are format version 2 (older readers refuse them rather than
condition them in the wrong geometry). Loading against another generator
raises :class:`~facegen.engine.errors.LatentError` (directions do not transfer between generators).

Where the app finds directions: in the generator's feature pack (:func:`find_directions` ->
:func:`facegen.packs.pack.find_pack`, matched by fingerprint, its ``directions`` component). A generator
without them is edited along its unsupervised principal components instead
(:mod:`facegen.packs.unsupervised`, chosen by :func:`facegen.features.editing.directions_for`).
"""


from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from facegen.engine import latents as L
from facegen.engine.errors import FingerprintMismatchWarning, InputError, LatentError

__all__ = ["DirectionSet", "load_directions", "find_directions", "default_edit_layers", "band_layers",
           "check_step", "FILE_NAME", "MAX_STEP", "MAX_GAIN", "BANDS"]

FILE_NAME = "directions.npz"
FORMAT = "facegen-directions"
FORMAT_VERSION = 2          # 2: optional `covariance` (whitened sets); plain sets are still written as 1
#: Largest step allowed, in standard deviations of the attribute's latent score.
MAX_STEP = 5.0
#: Largest amplification of a conditional direction (see the module docstring).
MAX_GAIN = 3.0
BANDS = ("coarse", "middle", "fine")


def default_edit_layers(num_ws: int) -> list:
    """Layers edited by default: the first 8 (coarse + middle bands; the original site edited 8 of
    18), all of them for generators with 8 layers or fewer."""
    return list(range(min(8, num_ws)))


def band_layers(num_ws: int) -> list:
    """[(band name, layers)] for the coarse / middle / fine bands of a generator (distinct, non-empty)."""
    out, seen = [], set()
    for b in BANDS:
        layers = [i for i in L.preset_layers(b, num_ws) if i not in seen]
        if layers:
            out.append((b, layers))
            seen.update(layers)
    return out


# ---------------------------------------------------------------------------
# The direction set
# ---------------------------------------------------------------------------


@dataclass
class DirectionSet:
    """Unit attribute directions in W for one generator (plus per-band directions in w+)."""
    names: list
    vectors: np.ndarray                   # [A, w_dim] unit, fitted in W
    scales: np.ndarray                    # [A] std of (w - mean) . d over the samples: one step
    accuracy: np.ndarray                  # [A] held-out accuracy of the W fit
    band_vectors: np.ndarray              # [A, B, w_dim] unit, fitted on one band's w of mixed samples
    band_accuracy: np.ndarray             # [A, B]
    mean_w: np.ndarray                    # [w_dim] mean w of the samples
    meta: dict = field(default_factory=dict)
    covariance: Optional[np.ndarray] = None   # [w_dim, w_dim] Sigma of a whitened set, else None (Euclidean)

    # -- basics ---------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> Optional[str]:
        return self.meta.get("fingerprint")

    @property
    def w_dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def bands(self) -> list:
        """[(band name, layers)] the band directions belong to."""
        return [(b["name"], list(b["layers"])) for b in self.meta.get("bands", [])]

    @property
    def default_layers(self) -> list:
        return list(self.meta.get("default_layers") or default_edit_layers(int(self.meta.get("num_ws", 8))))

    def __contains__(self, name) -> bool:
        return name in self.names

    def index(self, name: str) -> int:
        if name not in self.names:
            raise InputError(f"Unknown attribute '{name}': these directions have {', '.join(self.names)}.")
        return self.names.index(name)

    def vector(self, name: str) -> np.ndarray:
        return self.vectors[self.index(name)]

    def check_generator(self, G, strict: bool = True) -> None:
        """Directions belong to one generator: a different fingerprint raises LatentError
        (``strict``) or warns with FingerprintMismatchWarning; a different w_dim always raises."""
        if G.w_dim != self.w_dim:
            raise LatentError(f"These directions have width {self.w_dim}, but the generator's w_dim is {G.w_dim}: "
                              "they were fitted for another generator.")
        fp = self.fingerprint
        if fp and fp != G.fingerprint:
            msg = (f"These directions were fitted for generator {fp} ({self.meta.get('model', 'unknown model')}), "
                   f"but the active generator is {G.fingerprint}: directions do not transfer between generators. "
                   f"Fit new ones with `python -m facegen directions fit --model <model> --out <folder>`.")
            if strict:
                raise LatentError(msg)
            warnings.warn(msg, FingerprintMismatchWarning, stacklevel=2)

    # -- conditional directions -----------------------------------------------------------------
    def metric(self, x: np.ndarray) -> np.ndarray:
        """M x for the inner product <x, y> = x^T M y of this set: M = Sigma^-1 (whitened), else I."""
        x = np.asarray(x, np.float64)
        return x if self.covariance is None else np.linalg.solve(self.covariance.astype(np.float64), x)

    def conditional(self, name: str, condition_on: Optional[Sequence[str]] = None) -> tuple:
        """(unit vector that keeps the other attributes' scores fixed, gain, cosine with the plain
        direction). ``condition_on``: the attributes to hold fixed (default: every other one).
        Plain sets: orthogonal to the other directions; whitened sets: orthogonal in <x, y> = x^T Sigma^-1 y
        (the cosine is measured in that inner product too)."""
        i = self.index(name)
        others = [n for n in (self.names if condition_on is None else condition_on) if n != name]
        for n in others:
            self.index(n)
        d = self.vectors[i].astype(np.float64)
        if not others:
            return d.astype(np.float32), 1.0, 1.0
        P = np.stack([self.vectors[self.index(n)] for n in others]).astype(np.float64)   # [k, w_dim]
        MP, Md = self.metric(P.T), self.metric(d)                                       # [w_dim, k], [w_dim]
        coef = np.linalg.lstsq(P @ MP, MP.T @ d, rcond=None)[0]
        dc = d - P.T @ coef
        norm = np.linalg.norm(dc)
        if norm < 1e-6 * np.linalg.norm(d):
            raise InputError(f"'{name}' cannot be edited while keeping {', '.join(others)} fixed: its direction "
                             "lies in their span.")
        u = dc / norm
        dMd, dMu = float(d @ Md), float(Md @ u)
        cos = dMu / np.sqrt(dMd * float(u @ self.metric(u)))
        gain = float(min(MAX_GAIN, dMd / max(dMu, 1e-12)))
        return u.astype(np.float32), gain, cos

    def step_vector(self, name: str, step: float, conditional: bool = False,
                    condition_on: Optional[Sequence[str]] = None) -> np.ndarray:
        """The w offset [w_dim] for `step` (in standard deviations) along attribute `name`."""
        step = check_step(name, step)
        i = self.index(name)
        if conditional:
            u, gain, _ = self.conditional(name, condition_on)
            return (u * (step * float(self.scales[i]) * gain)).astype(np.float32)
        return (self.vectors[i] * (step * float(self.scales[i]))).astype(np.float32)

    def band_vector(self, name: str, band: str) -> np.ndarray:
        names = [b for b, _ in self.bands]
        if band not in names:
            raise InputError(f"Unknown band '{band}' (these directions have {', '.join(names)}).")
        return self.band_vectors[self.index(name), names.index(band)]

    def suggested_layers(self, name: str, margin: float = 0.05) -> list:
        """Layers of the bands whose own fit is within `margin` of the best band's held-out accuracy
        (the bands that decide the attribute)."""
        acc = self.band_accuracy[self.index(name)]
        best = float(np.max(acc))
        return sorted(l for (b, layers), a in zip(self.bands, acc) if a >= best - margin for l in layers)

    # -- summaries, files -----------------------------------------------------------------------
    def summary(self) -> list:
        """One dict per attribute: name, accuracy, band accuracies, conditional cosine, step size."""
        out = []
        for i, n in enumerate(self.names):
            _, gain, cos = self.conditional(n)
            row = {"attribute": n, "heldout_accuracy": round(float(self.accuracy[i]), 4),
                   "step_size": round(float(self.scales[i]), 4), "conditional_cosine": round(cos, 4),
                   "band_accuracy": {b: round(float(a), 4) for (b, _), a in zip(self.bands, self.band_accuracy[i])},
                   "suggested_layers": self.suggested_layers(n)}
            row.update({k: v for k, v in (self.meta.get("attributes", {}).get(n) or {}).items() if k not in row})
            out.append(row)
        return out

    def to_bytes(self) -> bytes:
        import io
        buf = io.BytesIO()
        self._write(buf)
        return buf.getvalue()

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        if path.suffix != ".npz":
            path = path / FILE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            self._write(f)
        return path

    def _write(self, f):
        meta = {"format": FORMAT, "version": 1 if self.covariance is None else 2,
                **{k: v for k, v in self.meta.items() if k not in ("format", "version")}}
        extra = {} if self.covariance is None else {"covariance": self.covariance.astype(np.float64)}
        np.savez(f, names=np.asarray(self.names, dtype=str), vectors=self.vectors.astype(np.float32),
                 scales=self.scales.astype(np.float32), accuracy=self.accuracy.astype(np.float32),
                 band_vectors=self.band_vectors.astype(np.float32),
                 band_accuracy=self.band_accuracy.astype(np.float32), mean_w=self.mean_w.astype(np.float32),
                 meta=np.array(json.dumps(meta)), **extra)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "DirectionSet":
        """Read a directions .npz (or a folder holding directions.npz), validated, never unpickled."""
        path = Path(path)
        if path.is_dir():
            path = path / FILE_NAME
        name = path.name
        if not path.is_file():
            raise LatentError(f"No directions file at {path}. Fit one with `python -m facegen directions fit "
                              "--model <model> --out <folder>`.")
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as e:
            raise LatentError(f"{name} is not a readable directions file ({type(e).__name__}).") from None
        need = ("names", "vectors", "scales", "accuracy", "band_vectors", "band_accuracy", "mean_w", "meta")
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise LatentError(f"{name} is not a directions file (expected an .npz with {', '.join(need)}).")
        with data:
            missing = [k for k in need if k not in data.files]
            if missing:
                kind = "a latent file, not directions" if "ws" in data.files else "not a directions file"
                raise LatentError(f"{name} is {kind} (missing {', '.join(missing)}).")
            try:
                arrs = {k: data[k] for k in need}
                cov = data["covariance"] if "covariance" in data.files else None
                meta = json.loads(str(arrs.pop("meta")))
            except ValueError as e:
                raise LatentError(f"{name} holds object arrays or bad metadata, which facegen refuses ({e}).") from None
            except Exception as e:
                raise LatentError(f"{name} is corrupt ({type(e).__name__}: {e}).") from None
        if meta.get("format") != FORMAT:
            raise LatentError(f"{name} is not a facegen directions file (format {meta.get('format')!r}).")
        if int(meta.get("version", 0)) > FORMAT_VERSION:
            raise LatentError(f"{name} uses directions format {meta['version']}; this facegen reads up to "
                              f"{FORMAT_VERSION}. Upgrade facegen.")
        if arrs["names"].dtype.kind != "U":
            raise LatentError(f"{name}: 'names' must be an array of strings.")
        names = [str(n) for n in arrs["names"].reshape(-1)]
        A = len(names)
        v, bv = arrs["vectors"], arrs["band_vectors"]
        ok = (A > 0 and v.ndim == 2 and v.shape[0] == A and bv.ndim == 3 and bv.shape[0] == A
              and bv.shape[2] == v.shape[1] and arrs["scales"].shape == (A,) and arrs["accuracy"].shape == (A,)
              and arrs["band_accuracy"].shape == bv.shape[:2] and arrs["mean_w"].shape == (v.shape[1],))
        if not ok:
            raise LatentError(f"{name} has inconsistent array shapes; it is damaged.")
        for k, a in arrs.items():
            if k == "names":
                continue
            # accuracies are NaN for unsupervised sets (facegen.packs.unsupervised: nothing was fitted)
            if a.dtype.kind != "f" or not np.all(np.isfinite(a) | (np.isnan(a) if "accuracy" in k else False)):
                raise LatentError(f"{name}: array '{k}' must hold finite floats.")
        if cov is not None:
            D = v.shape[1]
            if (cov.shape != (D, D) or cov.dtype.kind != "f" or not np.all(np.isfinite(cov))
                    or not np.allclose(cov, cov.T, atol=1e-8 * max(1.0, float(np.abs(cov).max())))
                    or np.linalg.eigvalsh(cov.astype(np.float64))[0] <= 0):
                raise LatentError(f"{name}: 'covariance' must be a symmetric positive definite [{D}, {D}] matrix.")
            cov = cov.astype(np.float64)
        return cls(names, v.astype(np.float32), arrs["scales"].astype(np.float32),
                   arrs["accuracy"].astype(np.float32), bv.astype(np.float32),
                   arrs["band_accuracy"].astype(np.float32), arrs["mean_w"].astype(np.float32), meta, cov)


def check_step(name: str, step) -> float:
    try:
        step = float(step)
    except (TypeError, ValueError):
        raise InputError(f"Step for '{name}' must be a number (got {step!r}).") from None
    if not np.isfinite(step) or abs(step) > MAX_STEP:
        raise InputError(f"Step {step:g} for '{name}' is out of range: use -{MAX_STEP:g} to {MAX_STEP:g} "
                         "(standard deviations of the attribute).")
    return step


def load_directions(path: Union[str, Path], G=None, strict: bool = True) -> DirectionSet:
    """Load directions; with G, check they were fitted for it (see DirectionSet.check_generator)."""
    ds = DirectionSet.load(path)
    if G is not None:
        ds.check_generator(G, strict=strict)
    return ds


_FOUND: dict = {}


def _read_set(p: Path) -> Optional[DirectionSet]:
    key = (str(p.resolve()), p.stat().st_mtime_ns)
    if key not in _FOUND:
        try:
            _FOUND[key] = DirectionSet.load(p)
        except LatentError:
            _FOUND[key] = None
    return _FOUND[key]


def find_directions(G, source=None) -> Optional[DirectionSet]:
    """The directions fitted for G, or None when there are none.

    `source`: None (G's pack, :func:`facegen.packs.pack.find_pack`), a :class:`facegen.packs.pack.Pack`
    (its ``directions`` component), or a folder / ``.npz`` path (every ``.npz`` in a folder is matched
    by fingerprint). A pack's directions that belong to another generator raise LatentError (the pack
    is broken); a folder's are skipped."""
    from facegen.packs.pack import Pack, find_pack
    if source is None:
        source = find_pack(G)
        if source is None:
            return None
    if isinstance(source, Pack):
        if not source.has("directions"):
            return None
        return load_directions(source.path("directions"), G)
    d = Path(source)
    for p in ([d] if d.suffix == ".npz" and d.is_file() else sorted(d.glob("*.npz")) if d.is_dir() else []):
        ds = _read_set(p)
        if ds is not None and ds.fingerprint == G.fingerprint and ds.w_dim == G.w_dim:
            return ds
    return None

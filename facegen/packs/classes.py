"""The class sampler: a pack component that proposes latents of a class, for any generator with a labeller.

Customisation by class needs, for "smiling" or "older", latents whose faces belong to the class. Plain
rejection sampling (draw z ~ N(0, I), label, keep) wastes 1 / base-rate samples per face. The class
sampler is built once, offline, from the generator and a labeller alone (nothing trained, no gradients),
so :mod:`facegen.packs.build` can add it to any pack in minutes.

Method (:func:`build_class_sampler`)
------------------------------------
1. **Label**: draw ``n`` latents z ~ N(0, I) (torch, seeded), render them at truncation ``psi``
   (0.7, the app's default), label the faces with the labeller and test every class of its rule set
   (:func:`facegen.labels.classes.classes_for`). The *base rate* of a class is the fraction of the
   ``n`` samples that belong to it: plain rejection sampling's expected hit rate.
2. **Keep the members**: the z of every sample that belongs to at least one class, with its class
   memberships (bool [M, K]); any combination of classes can later be served from the rows that
   belong to all of them.
3. **Proposal**: pick a member z_m of the requested classes at random and resample around it,
   ``z = sqrt(1 - s^2) z_m + s e``, e ~ N(0, I), with ``spread`` s (default :data:`SPREAD`), so the
   proposals keep the N(0, I) scale, stay near known members and still differ from them (s = 0
   repeats the members; s = 1 is plain sampling). For a combination without common members the
   rarest class proposes and the check keeps the faces that satisfy the rest.

   Measured on mini with the world labeller by ``python bench/class_sampler.py``
   (``bench/results/class_sampler.json``: n = 2000 at psi 0.7, 64 proposals per class over 8 classes of
   mean base rate 0.15; diversity = mean pairwise distance of the labeller's features / that of
   unconditional faces): at s = 0.3 the proposal hits the class 59 % of the time at 0.94 of unconditional
   diversity. s = 0 repeats the members; a Gaussian fitted to the members' z does worse (class
   membership is not a blob in z); 0.3 keeps faces new (not near-copies of members).
4. **Metrics**: per class, ``n_eval`` fresh proposals (another seed) are rendered and judged by the
   labeller: the proposal's *hit rate*, stored beside the base rate in the file and in
   ``classes/metrics.json``. Customisation still checks every proposal with the labeller.

File: ``classes/sampler.npz`` (read with ``allow_pickle=False``): ``format``, ``labeller``,
``fingerprint``, ``classes`` [K], ``z`` float32 [M, z_dim], ``members`` bool [M, K], ``base_rate``
[K], ``hit_rate`` [K] (NaN where not measured), ``psi``, ``spread``, ``n``, ``read_rate``, ``seed``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from facegen.engine.errors import InputError
from facegen.labels.base import load_labeller
from facegen.labels.classes import classes_for, label_classes
from facegen.packs.pack import PackError, PackMismatchError

__all__ = ["ClassSampler", "build_class_sampler", "load_class_sampler", "generate_from_z", "SAMPLER_FILE", "SPREAD"]

FORMAT = "facegen-class-sampler/1"
SAMPLER_FILE = "classes/sampler.npz"
METRICS_FILE = "classes/metrics.json"
#: Noise share of a proposal around a member (see the module docstring, step 3).
SPREAD = 0.3
#: Seed offset of the fresh proposals that measure the hit rate (disjoint from the labelled samples).
EVAL_SEED_OFFSET = 1_000_003


def generate_from_z(G, z: torch.Tensor, psi: float, noise_mode: str = "const") -> tuple:
    """z [N, z_dim] -> (uint8 images [N, H, W, 3], ws float32 [N, num_ws, w_dim]) at truncation psi."""
    from facegen.engine.synthesis import to_uint8
    with torch.no_grad():
        ws = G.mapping(z.to(G.mapping.w_avg.device), None, truncation_psi=psi)
        return to_uint8(G.synthesis(ws, noise_mode=noise_mode)), ws.cpu().numpy()


@dataclass
class ClassSampler:
    """Member latents of every class of one labeller's rule set for one generator (by fingerprint)."""
    labeller: str
    fingerprint: str
    classes: list
    z: np.ndarray                 # float32 [M, z_dim]
    members: np.ndarray           # bool [M, K]
    base_rate: np.ndarray         # float [K]
    hit_rate: np.ndarray          # float [K], NaN where not measured
    psi: float = 0.7
    spread: float = SPREAD
    n: int = 0
    read_rate: float = 1.0
    seed: int = 0

    # -- proposing --------------------------------------------------------------------------------
    def check_generator(self, G) -> "ClassSampler":
        if G.fingerprint != self.fingerprint:
            raise PackMismatchError(f"The class sampler was built for generator {self.fingerprint}, not for "
                                    f"this one ({G.fingerprint}).")
        if G.z_dim != self.z.shape[1]:
            raise PackError(f"The class sampler holds z of {self.z.shape[1]} dims; the generator takes {G.z_dim}.")
        return self

    def count(self, names: Sequence[str]) -> int:
        """How many kept samples belong to every class of `names`."""
        return int(self._all(names).sum())

    def _all(self, names: Sequence[str]) -> np.ndarray:
        missing = [c for c in names if c not in self.classes]
        if missing:
            raise InputError(f"The class sampler has no class {', '.join(map(repr, missing))} "
                             f"(it knows: {', '.join(self.classes)}).")
        return self.members[:, [self.classes.index(c) for c in names]].all(1)

    def plan(self, names: Sequence[str]) -> tuple:
        """-> (rows to propose from, what they are): members of every class, else of the rarest class."""
        rows = np.flatnonzero(self._all(names))
        if len(rows):
            return rows, " + ".join(names)
        lead = min(names, key=lambda c: self.base_rate[self.classes.index(c)])
        rows = np.flatnonzero(self._all([lead]))
        if not len(rows):
            why = (f"the {self.labeller} labeller read no face in any of its {self.n} samples" if self.read_rate == 0
                   else f"none of its {self.n} samples is '{lead}' by the {self.labeller} labeller: this generator "
                        "rarely or never makes it")
            raise InputError(f"The class sampler has no face to propose from: {why}.")
        return rows, lead

    def propose(self, rows: np.ndarray, rng: torch.Generator, b: int) -> torch.Tensor:
        """b latents around members `rows`: sqrt(1 - s^2) z_m + s e."""
        pick = torch.from_numpy(np.asarray(rows))[torch.randint(len(rows), (b,), generator=rng)]
        e = torch.randn(b, self.z.shape[1], generator=rng)
        s = float(self.spread)
        return math.sqrt(1 - s * s) * torch.from_numpy(self.z)[pick] + s * e

    def rates(self, name: str) -> tuple:
        k = self.classes.index(name)
        return float(self.base_rate[k]), float(self.hit_rate[k])

    # -- file -----------------------------------------------------------------------------------
    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, format=np.array(FORMAT), labeller=np.array(self.labeller),
                            fingerprint=np.array(self.fingerprint), classes=np.array(self.classes, dtype=str),
                            z=self.z.astype(np.float32), members=self.members.astype(bool),
                            base_rate=np.asarray(self.base_rate, np.float64),
                            hit_rate=np.asarray(self.hit_rate, np.float64), psi=np.float64(self.psi),
                            spread=np.float64(self.spread), n=np.int64(self.n), read_rate=np.float64(self.read_rate),
                            seed=np.int64(self.seed))
        return path

    @classmethod
    def load(cls, path) -> "ClassSampler":
        path = Path(path)
        if not path.is_file():
            raise PackError(f"No class sampler at {path} (build one with `python -m facegen pack build`).")
        try:
            with np.load(path, allow_pickle=False) as f:
                d = {k: f[k] for k in f.files}
        except (ValueError, OSError) as e:
            raise PackError(f"{path} is not a readable class sampler ({e}).") from None
        need = {"format", "labeller", "fingerprint", "classes", "z", "members", "base_rate", "hit_rate", "psi",
                "spread", "n"}
        if not need <= set(d) or str(d["format"]) != FORMAT:
            raise PackError(f"{path} is not a facegen class sampler ({FORMAT}; missing: {sorted(need - set(d))}).")
        classes = [str(c) for c in d["classes"]]
        z, members = d["z"], d["members"]
        if z.ndim != 2 or members.shape != (len(z), len(classes)) or members.dtype != bool \
                or d["base_rate"].shape != (len(classes),) or not 0 <= float(d["spread"]) < 1:
            raise PackError(f"{path}: inconsistent class sampler arrays (z {z.shape}, members {members.shape}, "
                            f"{len(classes)} classes).")
        return cls(str(d["labeller"]), str(d["fingerprint"]), classes, z.astype(np.float32), members,
                   d["base_rate"].astype(np.float64), d["hit_rate"].astype(np.float64), float(d["psi"]),
                   float(d["spread"]), int(d["n"]), float(d.get("read_rate", 1.0)), int(d.get("seed", 0)))


def load_class_sampler(pack, G=None) -> Optional[ClassSampler]:
    """The pack's class sampler (component ``classes``), checked against G; None when the pack has none."""
    if pack is None or not pack.has("classes"):
        return None
    s = ClassSampler.load(pack.path("classes"))
    return s.check_generator(G) if G is not None else s


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------

def _label_batches(G, L, rules, names, z: torch.Tensor, psi: float, batch: int) -> tuple:
    masks, reads = [], []
    for i in range(0, len(z), batch):
        images, _ = generate_from_z(G, z[i:i + batch], psi)
        m, r = label_classes(L, rules, names, images)
        masks.append(m & r[:, None])
        reads.append(r)
    return np.concatenate(masks), np.concatenate(reads)


def build_class_sampler(G, labeller, out_dir, n: int = 2000, seed: int = 0, log=print, psi: float = 0.7,
                        spread: float = SPREAD, n_eval: int = 64, batch: int = 32) -> dict:
    """Label n samples of G with `labeller`, keep every class's member z, measure the proposal's hit rate.

    Writes ``out_dir/classes/sampler.npz`` and ``out_dir/classes/metrics.json`` (out_dir is the pack
    folder) and returns the manifest ``components`` entry, ``{"classes": "classes/sampler.npz"}``."""
    if G.c_dim:
        raise InputError("A class sampler needs an unconditional generator (this one takes a class vector).")
    if not 0 <= spread < 1:
        raise InputError(f"spread must be in [0, 1) (got {spread}).")
    n, n_eval = int(n), int(n_eval)
    if n < 1 or n_eval < 0:
        raise InputError(f"n must be >= 1 and n_eval >= 0 (got {n}, {n_eval}).")
    rules = classes_for(labeller)               # a labeller without class rules fails before any work
    L = load_labeller(labeller)
    names = rules.names()
    t0 = time.time()
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(int(seed)))
    mask, read = _label_batches(G, L, rules, names, z, psi, batch)
    base = mask.mean(0)
    log(json.dumps({"class_sampler": "labelled", "n": n, "read_rate": round(float(read.mean()), 4),
                    "elapsed_s": round(time.time() - t0, 1)}))
    keep = mask.any(1)
    sampler = ClassSampler(L.name, G.fingerprint, names, z[keep].numpy(), mask[keep], base,
                           np.full(len(names), np.nan), psi, spread, n, float(read.mean()), int(seed))
    rng = torch.Generator().manual_seed(int(seed) + EVAL_SEED_OFFSET)
    per_class = {}
    for k, name in enumerate(names):
        rec = {"base_rate": round(float(base[k]), 4), "members": int(mask[:, k].sum())}
        if n_eval and rec["members"]:
            zk = sampler.propose(np.flatnonzero(sampler.members[:, k]), rng, n_eval)
            hits, _ = _label_batches(G, L, rules, [name], zk, psi, batch)
            sampler.hit_rate[k] = hits[:, 0].mean()
            rec["hit_rate"] = round(float(sampler.hit_rate[k]), 4)
        per_class[name] = rec
        log(json.dumps({"class_sampler": name, **rec}))
    out_dir = Path(out_dir)
    sampler.save(out_dir / SAMPLER_FILE)
    metrics = {"labeller": L.name, "generator": G.fingerprint, "n": n, "n_eval": n_eval, "seed": int(seed),
               "psi": psi, "spread": spread, "read_rate": round(float(read.mean()), 4), "kept": int(keep.sum()),
               "seconds": round(time.time() - t0, 1), "classes": per_class}
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=1) + "\n")
    return {"classes": SAMPLER_FILE}

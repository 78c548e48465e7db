"""Customisation by class: faces that are smiling, older, looking left, bearded ... on demand, on any generator.

The original site (seeprettyface, 2019) let a visitor ask for "a smiling face". Its code shipped
rejection sampling; its write-up described better methods. This module is the inference side, for
any generator ``G`` and its feature pack (``pack``, :mod:`facegen.packs.pack`; None when it has none):

* **Classes** are rules over a labeller's table (:mod:`facegen.labels.classes`): the pack's labeller
  (mini: ``"world"``, the face world's 17 classes), else :data:`FOREIGN_LABELLER` (``"photo"``: smiling,
  older, looking-left ...). Several classes mean all of them; unknown classes, contradictions and
  classes the labeller does not know are refused with an :class:`~facegen.engine.errors.InputError`
  that lists the classes it knows.
* **Judge** (the check): the pack's class classifier when it has one (mini;
  :class:`~facegen.packs.classifier.ClassClassifier`, accept at p >= :data:`ACCEPT` for every class),
  else the labeller itself (:class:`LabellerJudge`: predict, apply the rules). A face the labeller
  cannot read (the photo labeller finds no face) is never a hit; when none of the first
  :data:`NO_READ_STOP` samples can be read the search stops and says so.
* **Methods** (:func:`customize`), each falling back, with a note that says so, when the pack lacks
  what it needs:

  - ``auto`` (the tab's default): the pack's measured recipe -- method and check -- for the rarest chosen
    class (:mod:`facegen.packs.recipes`, measured by :mod:`facegen.features.customize_recipes`). Without
    recipes: ``zcode`` with the check asked for.

  - ``zcode``: the pack's z-code generator (:class:`~facegen.packs.classifier.ZCodeBank`) of the rarest
    chosen class proposes, the classifier checks (mini). Without z-codes: ``sampler``, else ``rejection``.
  - ``sampler``: the pack's class sampler (:mod:`facegen.packs.classes`) proposes latents around
    known members of the classes, its labeller checks. Without one: ``rejection``.
  - ``rejection``: z ~ N(0, I), generate, judge, keep (the baseline; cost 1 / base rate per face).
  - ``finetuned``: a generator fine-tuned on one class (``pack.get("finetuned")``: class -> registry
    name, see :func:`finetuned_for`) proposes; the judge checks.
  - ``conditional``: a class-conditional generator draws every class at once from a class code taken
    from its training faces' codes (:func:`conditional_sample`).

* **Check and variety** (``check``): ``check`` keeps only judged hits; ``varied`` keeps
  :data:`VARIETY` x n hits and returns the n most varied (:func:`varied_subset`: farthest-point
  selection in the judge's features); ``none`` returns z-code, sampler or fine-tuned proposals unchecked.

Training of mini's classifier and z-codes lives with the face world (:mod:`facegen.world.classes`);
the class sampler is built by :func:`facegen.packs.classes.build_class_sampler`.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import torch

from facegen.engine.errors import InputError
from facegen.engine.latents import check_psi
from facegen.labels.base import Labeller, load_labeller
from facegen.labels.classes import ClassRules, classes_for, label_classes
from facegen.packs.classes import generate_from_z, load_class_sampler
from facegen.packs.classifier import ClassClassifier, load_classifier, load_zcodes
from facegen.packs.recipes import recipe_for

__all__ = ["customize", "rejection_sample", "zcode_sample", "conditional_sample", "varied_subset", "rules_for",
           "ClassifierJudge", "LabellerJudge", "finetuned_for", "available_methods", "METHODS", "CHECKS",
           "FOREIGN_LABELLER", "generate_from_z"]

METHODS = ("auto", "zcode", "sampler", "rejection", "finetuned", "conditional")
CHECKS = ("check", "varied", "none")
MAX_FACES = 64
#: The labeller of a generator without a pack (published generators of real faces).
FOREIGN_LABELLER = "photo"
#: Acceptance threshold on every chosen class's classifier probability. 0.5 keeps many borderline faces
#: that the independent judge rejects (glasses: about half); 0.9 costs more samples, keeps clearer members.
ACCEPT = 0.9
#: Pool size (x the faces asked for) of the "more varied" check, and the most a caller may ask for.
VARIETY = 4
MAX_VARIETY = 16
#: Default sample budgets: the classifier judges fast; a labeller (MediaPipe ...) is slower.
CLASSIFIER_TRIES = 4096
LABELLER_TRIES = 512
#: Stop early when the labeller could read none of this many samples (it finds no face in them).
NO_READ_STOP = 64


# ---------------------------------------------------------------------------
# Judges: who decides that a face belongs to the classes
# ---------------------------------------------------------------------------

class ClassifierJudge:
    """A pack's class classifier: a face is a hit when p >= threshold for every chosen class."""

    def __init__(self, C: ClassClassifier, threshold: float = ACCEPT):
        self.C, self.threshold = C, float(threshold)
        self.name = "the classifier"

    def check(self, images: np.ndarray, names: Sequence[str]) -> tuple:
        """-> (hit bool [N], read bool [N]); the classifier reads every image."""
        hit = (self.C.probs(images)[:, self.C.index(names)] >= self.threshold).all(1)
        return hit, np.ones(len(images), bool)

    def embed(self, images: np.ndarray) -> np.ndarray:
        return self.C.embed(images)


class LabellerJudge:
    """A labeller and its class rules: a face is a hit when the labeller reads it and every rule holds."""

    def __init__(self, labeller, rules: Optional[ClassRules] = None):
        self.L = load_labeller(labeller)
        self.rules = rules or classes_for(self.L)
        self.name = f"the {self.L.name} labeller"

    def check(self, images: np.ndarray, names: Sequence[str]) -> tuple:
        mask, read = label_classes(self.L, self.rules, names, images)
        return mask.all(1) & read, read

    def embed(self, images: np.ndarray) -> np.ndarray:
        return np.nan_to_num(self.L.features(images))


def _judge(judge, threshold: float = ACCEPT):
    if isinstance(judge, ClassClassifier):
        return ClassifierJudge(judge, threshold)
    if isinstance(judge, (Labeller, str)):
        return LabellerJudge(judge)
    if judge is None or not hasattr(judge, "check"):
        raise InputError("Rejection sampling needs a judge: a class classifier or a labeller.")
    return judge


# ---------------------------------------------------------------------------
# Rejection sampling (and every proposal + check)
# ---------------------------------------------------------------------------

def _check_G(G):
    if G.c_dim:
        raise InputError("Customisation needs an unconditional generator (this one takes a class vector).")


def rejection_sample(G, names: Sequence[str], n: int, psi: float = 0.7, seed: int = 0, judge=None,
                     threshold: float = ACCEPT, batch: int = 32, max_tries: int = CLASSIFIER_TRIES, propose=None,
                     variety: int = 1) -> dict:
    """Draw z ~ N(0, I) (or from ``propose(rng, batch)``), generate, judge, keep hits.

    ``judge``: a :class:`ClassifierJudge` / :class:`LabellerJudge`, a ClassClassifier or a labeller.
    ``variety`` > 1: keep ``variety * n`` hits, then the ``n`` most varied of them (:func:`varied_subset`).
    Returns {images uint8 [M, H, W, 3], ws [M, num_ws, w_dim], tries, kept, pool, read, seconds};
    M <= n (fewer if ``max_tries`` proposals were not enough, or none could be read)."""
    _check_G(G)
    psi = check_psi(psi)
    if not 1 <= int(variety) <= MAX_VARIETY:
        raise InputError(f"Variety must be between 1 and {MAX_VARIETY} (got {variety}).")
    judge = _judge(judge, threshold)
    rng = torch.Generator().manual_seed(int(seed))
    want = n * int(variety)
    images, ws, tries, read, t0 = [], [], 0, 0, time.time()
    while sum(len(i) for i in images) < want and tries < max_tries:
        if tries >= NO_READ_STOP and read == 0:
            break                                     # the labeller reads none of them: no point going on
        b = min(batch, max_tries - tries)
        z = propose(rng, b) if propose is not None else torch.randn(b, G.z_dim, generator=rng)
        img, w = generate_from_z(G, z, psi)
        keep, ok = judge.check(img, names)
        images.append(img[keep])
        ws.append(w[keep])
        tries, read = tries + b, read + int(ok.sum())
    images = np.concatenate(images)[:want] if images else np.zeros((0,) + (G.img_resolution,) * 2 + (3,), np.uint8)
    ws = np.concatenate(ws)[:want] if ws else np.zeros((0, G.num_ws, G.w_dim), np.float32)
    pool = len(images)
    if pool > n:
        keep = varied_subset(judge, images, n, seed)
        images, ws = images[keep], ws[keep]
    return {"images": images, "ws": ws, "tries": tries, "kept": len(images), "pool": pool, "read": read,
            "seconds": time.time() - t0}


def varied_subset(judge, images: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of n faces of ``images`` spread as widely as the pool allows: farthest-point selection in
    the judge's features (start at a random face; then, again and again, the face farthest from all
    chosen so far).

    Measured on mini (``bench/customize.py``, 4x pools, the classifier's features): diversity up by about
    0.06 of unconditional, the independent judge's hit rate down by about 2 points."""
    if len(images) <= n:
        return np.arange(len(images))
    judge = _judge(judge)
    f = torch.from_numpy(judge.embed(images)).double()
    d = torch.cdist(f, f)
    chosen = [int(torch.randint(len(f), (1,), generator=torch.Generator().manual_seed(int(seed))))]
    nearest = d[chosen[0]].clone()                       # distance of every face to the chosen set
    while len(chosen) < n:
        i = int(nearest.argmax())
        chosen.append(i)
        nearest = torch.minimum(nearest, d[i])
    return np.array(chosen)


# ---------------------------------------------------------------------------
# Proposals: z-codes, conditional generators
# ---------------------------------------------------------------------------

def zcode_sample(G, name: str, n: int, psi: float = 0.7, seed: int = 0, bank=None) -> dict:
    """n faces from the class's z-code net: u ~ N(0, I) by seed, z = net(u), generate (no rejection)."""
    if bank is None:
        raise InputError("z-code sampling needs the pack's z-code generators (pack.path('zcodes')).")
    psi = check_psi(psi)
    t0 = time.time()
    u = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(int(seed)))
    with torch.no_grad():
        z = bank.net(name)(u)
    images, ws = generate_from_z(G, z, psi)
    return {"images": images, "ws": ws, "tries": n, "kept": n, "seconds": time.time() - t0}


def conditional_sample(Gc, names: Sequence[str], n: int, psi: float = 0.7, seed: int = 0, codes=None) -> dict:
    """A class-conditional generator (c_dim = len(Gc.meta["classes"])): class codes are drawn from
    ``codes`` (float [M, K], its training faces' codes, e.g. ``facegen.world.classes.label_bank``) among
    the rows that satisfy every chosen class, so the other entries follow the training joint; no rejection."""
    classes = tuple(Gc.meta.get("classes") or ())
    if Gc.c_dim == 0 or len(classes) != Gc.c_dim:
        raise InputError("This generator is not a class-conditional facegen generator (no class list in its meta).")
    missing = [c for c in names if c not in classes]
    if missing:
        raise InputError(f"The conditional generator has no class {', '.join(missing)} (it knows: {', '.join(classes)}).")
    if codes is None or np.shape(codes)[1:] != (len(classes),):
        raise InputError(f"The conditional generator needs the class codes of its training faces ([M, {len(classes)}]).")
    psi = check_psi(psi)
    t0 = time.time()
    codes = np.asarray(codes, np.float32)
    rows = np.flatnonzero(codes[:, [classes.index(c) for c in names]].all(1))
    if len(rows) == 0:
        raise InputError(f"No training face has {' + '.join(names)}, so the conditional generator has no code for it.")
    rng = torch.Generator().manual_seed(int(seed))
    c = torch.from_numpy(codes[rows[torch.randint(len(rows), (n,), generator=rng).numpy()]])
    z = torch.randn(n, Gc.z_dim, generator=rng)
    dev = Gc.mapping.w_avg.device
    from facegen.engine.synthesis import to_uint8
    with torch.no_grad():
        ws = Gc.mapping(z.to(dev), c.to(dev), truncation_psi=psi)
        images = to_uint8(Gc.synthesis(ws, noise_mode="const"))
    return {"images": images, "ws": ws.cpu().numpy(), "tries": n, "kept": n, "seconds": time.time() - t0}


# ---------------------------------------------------------------------------
# One entry point: classes x method, with the pack's components or the fallbacks
# ---------------------------------------------------------------------------

def labeller_name(pack=None, labeller=None) -> str:
    """The labeller that judges for this generator: explicit, else the pack's, else :data:`FOREIGN_LABELLER`."""
    name = getattr(labeller, "name", labeller) or (pack.labeller if pack is not None else None)
    return str(name or FOREIGN_LABELLER)


def rules_for(pack=None, labeller=None) -> ClassRules:
    """The class rules offered for a generator with this pack (its labeller's; the photo labeller's without)."""
    return classes_for(labeller_name(pack, labeller))


def available_methods(pack) -> list:
    """The methods this pack serves without a fallback (``finetuned`` / ``conditional`` need generators too)."""
    have = ["rejection"]
    if pack is not None and pack.has("classifier") and pack.has("zcodes"):
        have.insert(0, "zcode")
    if pack is not None and pack.has("classes"):
        have.insert(len(have) - 1, "sampler")
    if pack is not None and pack.get("finetuned"):
        have.append("finetuned")
    return have


def finetuned_for(pack, names: Sequence[str], model: str = "this model") -> tuple:
    """-> (registry name, class) of the pack's fine-tuned generator for one of `names`, or InputError."""
    have = dict((pack.get("finetuned") if pack is not None else None) or {})
    for n in names:
        if n in have:
            return str(have[n]), n
    raise InputError(f"No fine-tuned generator for {' + '.join(names)} with model '{model}' "
                     f"(fine-tuned: {', '.join(have) or 'none'}); use the z-code generator or rejection sampling.")


def _why(pack, what: str) -> str:
    return f"no {what} for this generator (" + ("it has no pack)" if pack is None else f"its pack '{pack.name}' has none)")


def auto_recipe(pack, names: Sequence[str], check: str) -> tuple:
    """``auto`` -> (method, check, note): the pack's recipe for ``names``, else z-code with ``check``."""
    r = recipe_for(pack, names)
    if r is None and pack is not None and pack.has("recipes"):
        return "zcode", check, (f"no measured recipe for {' + '.join(names)} in pack '{pack.name}', "
                                "so the z-code generator; ")
    if r is None:
        return "zcode", check, _why(pack, "measured recipes") + ", so the z-code generator; "
    return r["method"], r["check"], (f"the pack's recipe for '{r['class']}' ({r['method']} + {r['check']}: "
                                     f"{r['hit']:.0%} in the class, diversity {r['diversity']:.2f} when measured); ")


def customize(G, pack, classes, method: str = "zcode", n: int = 8, psi: float = 0.7, seed: int = 0,
              check: str = "check", max_tries: Optional[int] = None, labeller=None, G_finetuned=None,
              finetuned_class: Optional[str] = None, G_conditional=None, codes=None) -> dict:
    """Faces of `classes` (AND) by `method` (:data:`METHODS`) -> {images, ws, classes, method, path, note,
    tries, kept, pool, read, seconds}; ``method`` is what was asked, ``path`` what ran (after fallbacks);
    with ``auto`` the pack's recipe picks the method and the check (``recipe``: "method+check").

    ``labeller`` overrides the judging labeller (default: the pack's, else the photo labeller). With
    ``finetuned``, ``G_finetuned`` (fine-tuned on ``finetuned_class``, see :func:`finetuned_for`)
    proposes and its ws belong to it; ``conditional`` draws from ``G_conditional`` with ``codes``."""
    if pack is not None:
        pack.check_generator(G)
    rules = rules_for(pack, labeller)
    names = rules.parse(classes)
    n = int(n)
    if not 1 <= n <= MAX_FACES:
        raise InputError(f"Count must be between 1 and {MAX_FACES} (got {n}).")
    if method not in METHODS:
        raise InputError(f"Method must be one of {', '.join(METHODS)} (got '{method}').")
    if check not in CHECKS:
        raise InputError(f"Check must be one of {', '.join(CHECKS)} (got '{check}').")
    _check_G(G)
    path, fallback = method, ""
    if method == "auto":
        path, check, fallback = auto_recipe(pack, names, check)
    variety = VARIETY if check == "varied" else 1
    has_classifier = pack is not None and pack.has("classifier")
    sampler = load_class_sampler(pack, G)
    if path == "zcode" and not (has_classifier and pack.has("zcodes")):
        path, fallback = ("sampler" if sampler else "rejection"), _why(pack, "z-code generators") + "; "
    if path == "sampler" and sampler is None:
        path, fallback = "rejection", fallback or _why(pack, "class sampler") + "; "
    lab = labeller_name(pack, labeller)
    if path == "sampler" or not has_classifier or labeller is not None:
        judge = LabellerJudge(sampler.labeller if path == "sampler" else lab)
    else:
        judge = ClassifierJudge(load_classifier(pack.path("classifier")))
    tries = int(max_tries or (CLASSIFIER_TRIES if isinstance(judge, ClassifierJudge) else LABELLER_TRIES))
    sample = dict(n=n, psi=psi, seed=seed, judge=judge, max_tries=tries, variety=variety)
    who = "the classifier" if isinstance(judge, ClassifierJudge) else judge.name

    if path == "rejection":
        out = rejection_sample(G, names, **sample)
        by = "" if isinstance(judge, ClassifierJudge) else f" judged by {who}"
        note = f"rejection sampling{by}: kept {out['pool']} of {out['tries']} samples"
    elif path == "conditional":
        if G_conditional is None:
            raise InputError("The conditional method needs a class-conditional generator (none is shipped for this "
                             "model); use the z-code generator or rejection sampling.")
        out = conditional_sample(G_conditional, names, n, psi, seed, codes)
        note = f"conditional generator: class code {' + '.join(names)}, {n} faces, no rejection"
    elif path == "finetuned":
        if G_finetuned is None or finetuned_class not in names:
            raise InputError("The fine-tuned method needs the fine-tuned generator of one of the chosen classes.")
        if len(names) == 1 and check == "none":
            t0 = time.time()
            z = torch.randn(n, G_finetuned.z_dim, generator=torch.Generator().manual_seed(int(seed)))
            images, ws = generate_from_z(G_finetuned, z, check_psi(psi))
            out = {"images": images, "ws": ws, "tries": n, "kept": n, "seconds": time.time() - t0}
            note = f"generator fine-tuned on '{finetuned_class}': {n} faces, no rejection"
        else:
            out = rejection_sample(G_finetuned, names, **sample)
            note = (f"generator fine-tuned on '{finetuned_class}' proposes, {who} checks {' + '.join(names)}: "
                    f"kept {out['pool']} of {out['tries']}")
    elif path == "sampler":
        rows, lead = sampler.plan(names)
        about = f"class sampler of pack '{pack.name}' ({len(rows)} known faces of {lead} among {sampler.n} samples"
        if len(names) == 1:
            base, hit = sampler.rates(names[0])
            about += f"; base rate {base:.0%}" + (f", proposal hit rate {hit:.0%}" if np.isfinite(hit) else "")
        about += ")"
        propose = lambda rng, b: sampler.propose(rows, rng, b)  # noqa: E731
        if len(names) == 1 and check == "none":
            t0 = time.time()
            images, ws = generate_from_z(G, propose(torch.Generator().manual_seed(int(seed)), n), check_psi(psi))
            out = {"images": images, "ws": ws, "tries": n, "kept": n, "seconds": time.time() - t0}
            note = f"{about}: {n} faces, no check"
        else:
            out = rejection_sample(G, names, propose=propose, **sample)
            note = f"{about} proposes, {who} checks {' + '.join(names)}: kept {out['pool']} of {out['tries']}"
    else:
        C = judge.C
        bank = load_zcodes(pack.path("zcodes"), G=G)
        rates = {c: C.meta.get("test", {}).get(c, {}).get("base_rate", 0.5) for c in C.classes}
        lead = min(names, key=lambda c: rates.get(c, 0.5))
        if len(names) == 1 and check == "none":
            out = zcode_sample(G, lead, n, psi, seed, bank)
            note = f"z-code generator '{lead}': {n} faces, no rejection"
        else:
            net = bank.net(lead)
            out = rejection_sample(G, names, propose=lambda rng, b: net(torch.randn(b, G.z_dim, generator=rng)),
                                   **sample)
            note = (f"z-code generator '{lead}' proposes, the classifier checks {' + '.join(names)}: "
                    f"kept {out['pool']} of {out['tries']}")
    out.setdefault("pool", out["kept"])
    out.setdefault("read", out["tries"])
    note = fallback + note
    if variety > 1 and path != "conditional":
        note += f"; the {out['kept']} most varied of {out['pool']} hits"
    if out["read"] == 0:
        note += (f" ({who} found no face in any of the {out['tries']} samples: this generator's images do not "
                 "read as faces to it)")
    elif out["kept"] < n:
        note += f" (only {out['kept']} of {n} found within {out['tries']} samples: the combination is rare)"
    return {**out, "classes": names, "method": method, "path": path, "check": check,
            "recipe": f"{path}+{check}", "judge": who, "note": note}

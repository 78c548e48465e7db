"""Customisation recipes: the pack's measured best way to draw each class (component ``recipes``).

The customise tab can draw a class several ways -- a *method* (z-code generator, class sampler, rejection
sampling) and a *check* (every face checked; checked and the most varied kept; unchecked). A recipe is a
method and one of the two checks (:data:`facegen.features.customize_recipes.CANDIDATES`). Which one
meets the customisation goal -- at least :data:`HIT_TARGET` of the faces belong to the class, and they
vary at least :data:`DIVERSITY_TARGET` as much as unconditional faces -- depends on the generator and
the class: on mini v2's candidates the z-code generator with a check met it for smiling or glasses, the
"most varied" check for beard or dark skin, and only rejection sampling for red hair
(``bench/customize.py``). A pack therefore measures every recipe it can serve on its own seeds
(:mod:`facegen.features.customize_recipes`) and stores, per class, what each measured and the one it
chose; the tab's ``auto`` method draws a class with that recipe (:func:`recipe_for`).

Choice (:func:`choose`)
-----------------------
The recipe with the widest margin: the largest ``min(hit / HIT_TARGET, diversity / DIVERSITY_TARGET)``
(at least 1 where both targets are met). A recipe that found under :data:`DELIVERED` of the faces asked
for (its tries ran out) is not chosen while another found them. The cheapest recipe that met both targets
was the first rule; on mini v2 it chose recipes just over the line (unchecked z-codes at 95-97 %), and
three of them missed on the customisation bench's own seeds (``bench/results/customize-mini-v2-auto.json``;
the main README's *Customise by class* has the rules compared).

File: ``recipes.json``: ``{"format", "fingerprint", "labeller", "n", "psi", "seed", "command",
"classes": {class: {"base_rate", "chosen", "recipes": {"zcode+check": {"method", "check", "hit",
"diversity", "kept", "tries", "seconds"}, ...}}}}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from facegen.packs.pack import PackError

__all__ = ["HIT_TARGET", "DIVERSITY_TARGET", "DELIVERED", "RECIPES_FILE", "recipe_key", "meets", "choose", "load_recipes",
           "save_recipes", "recipe_for"]

FORMAT = "facegen-recipes/1"
RECIPES_FILE = "recipes.json"
#: The customisation goal (issue #17): share of faces in the class, and their spread against unconditional faces.
HIT_TARGET = 0.95
DIVERSITY_TARGET = 0.8
#: A recipe that found fewer than this share of the faces asked for (its tries ran out) is not chosen
#: while another found them.
DELIVERED = 0.9


def recipe_key(method: str, check: str) -> str:
    return f"{method}+{check}"


def delivered(row: dict, n: int) -> bool:
    """Did a measured recipe find at least :data:`DELIVERED` of the ``n`` faces asked for within its tries?"""
    return row["kept"] >= DELIVERED * n


def meets(row: dict, n: int) -> bool:
    """Did a measured recipe deliver its faces, and do they meet both targets?"""
    return delivered(row, n) and row["hit"] >= HIT_TARGET and row["diversity"] >= DIVERSITY_TARGET


def closeness(row: dict) -> float:
    """The margin of a measured recipe: >= 1 where it meets both targets."""
    return min(row["hit"] / HIT_TARGET, row["diversity"] / DIVERSITY_TARGET)


def choose(measured: dict, n: int) -> str:
    """The chosen recipe's key among ``measured`` (key -> row with hit, diversity, kept, tries)."""
    if not measured:
        raise PackError("No recipe was measured, so none can be chosen.")
    full = [k for k, r in measured.items() if delivered(r, n)] or list(measured)
    return max(full, key=lambda k: closeness(measured[k]))


def load_recipes(pack) -> Optional[dict]:
    """The pack's recipes file (checked against its fingerprint), or None when it has none."""
    if pack is None or not pack.has("recipes"):
        return None
    path = pack.path("recipes")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackError(f"{path} is not a readable recipes file ({e}).") from None
    if data.get("format") != FORMAT or not isinstance(data.get("classes"), dict):
        raise PackError(f"{path} is not a facegen recipes file (format must be '{FORMAT}').")
    if data.get("fingerprint") != pack.fingerprint:
        raise PackError(f"{path} was measured on generator {data.get('fingerprint')}, not on the pack's "
                        f"{pack.fingerprint}: measure it again (python -m facegen customize recipes).")
    return data


def recipe_for(pack, names: Sequence[str]) -> Optional[dict]:
    """The recipe for drawing all of ``names``: the chosen recipe of the rarest of them that has one
    (by its measured base rate) -> {class, method, check, hit, diversity, ...}; None without recipes."""
    data = load_recipes(pack)
    have = [c for c in names if data is not None and c in data["classes"]]
    if not have:
        return None
    lead = min(have, key=lambda c: data["classes"][c].get("base_rate", 0.5))
    entry = data["classes"][lead]
    return {"class": lead, **entry["recipes"][entry["chosen"]]}


def save_recipes(pack, table: dict, labeller: str, n: int, psi: float, seed: int, command: str = "") -> Path:
    """Write ``table`` (class -> {base_rate, recipes}) with each class's choice as the pack's recipes and
    name it in the manifest."""
    classes = {c: {**e, "chosen": choose(e["recipes"], n)} for c, e in table.items()}
    data = {"format": FORMAT, "fingerprint": pack.fingerprint, "labeller": labeller, "n": int(n), "psi": float(psi),
            "seed": int(seed), "command": command, "targets": {"hit": HIT_TARGET, "diversity": DIVERSITY_TARGET},
            "classes": classes}
    path = Path(pack.root) / RECIPES_FILE
    path.write_text(json.dumps(data, indent=1) + "\n")
    pack.manifest.setdefault("components", {})["recipes"] = RECIPES_FILE
    pack.save()
    return path

"""Classes over a labeller's table: "smiling", "older", "glasses" ... as rules on predicted attributes.

Customisation by class (:mod:`facegen.features.customize`) and the class sampler of a pack
(:mod:`facegen.packs.classes`) ask "is this face smiling?". The answer is a *rule* on the attributes a
labeller (:mod:`facegen.labels.base`) predicts, so every rule set belongs to one labeller:

* ``"world"``: the face world's 17 classes (smile, age, gender, glasses, beard, skin, hair ...), defined
  in :mod:`facegen.world.classes` and found here by an import string (:data:`RULE_SETS`), the way
  :data:`facegen.labels.base.LABELLERS` finds labellers, so this layer never imports the world;
* ``"photo"``: :data:`PHOTO_CLASSES`, on the real-photo labeller's attributes (yaw, pitch, smile,
  eyes_open, mouth_open, age in years, male = P(male)).

Method
------
1. **Table**: :func:`label_table` turns a labeller's ``predict`` output into ``{attribute: array [N]}``:
   continuous values as they are, bool attributes as their probability, categorical attributes as the
   argmax label. A face a labeller cannot read (the photo labeller finds no face) has NaN values.
2. **Rules**: a :class:`CustomClass` is a predicate on the table, ``rule(table) -> bool [N]``. Every
   comparison with NaN is False, so an unreadable face belongs to no class.
3. **Combinations**: several classes mean AND (:func:`class_mask`). Classes of one *group* exclude
   each other (young + older, two hair colours) and each rule set lists the pairs that never occur
   together (:attr:`ClassRules.impossible`, e.g. the face world has no bearded feminine faces);
   :meth:`ClassRules.parse` refuses both with an :class:`~facegen.engine.errors.InputError` naming the
   clash, and an unknown class with the list of classes the labeller knows.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np

from facegen.engine.errors import InputError, ModelNotFoundError

__all__ = ["CustomClass", "ClassRules", "PHOTO_CLASSES", "RULE_SETS", "classes_for", "class_mask", "label_table",
           "at_least", "at_most", "flag", "label_classes"]


@dataclass(frozen=True)
class CustomClass:
    """One selectable class: ``rule(table) -> bool [N]`` on a label table (:func:`label_table`).

    ``attribute`` names the attribute(s) the rule reads (comma-separated), ``group`` the classes it
    excludes (one group = at most one class of it per request)."""
    name: str
    description: str
    attribute: str
    rule: Callable[[dict], np.ndarray]
    group: Optional[str] = None

    @property
    def attributes(self) -> list:
        return [a.strip() for a in self.attribute.split(",") if a.strip()]

    def test(self, table: dict) -> np.ndarray:
        return np.asarray(self.rule(table), bool)


def _values(table: dict, attr: str) -> np.ndarray:
    if attr not in table:
        raise InputError(f"The label table has no attribute '{attr}' (it has: {', '.join(table)}).")
    return np.asarray(table[attr], np.float64)


def at_least(attr: str, t: float) -> Callable[[dict], np.ndarray]:
    """Rule: ``table[attr] >= t`` (NaN: False)."""
    return lambda tb: _values(tb, attr) >= t


def at_most(attr: str, t: float) -> Callable[[dict], np.ndarray]:
    """Rule: ``table[attr] <= t`` (NaN: False)."""
    return lambda tb: _values(tb, attr) <= t


def flag(attr: str) -> Callable[[dict], np.ndarray]:
    """Rule for a bool attribute: ``table[attr] > 0.5`` (a ground-truth bool or a probability; NaN: False)."""
    return lambda tb: _values(tb, attr) > 0.5


@dataclass
class ClassRules:
    """The classes of one labeller: names -> :class:`CustomClass`, plus the pairs that never occur."""
    labeller: str
    classes: dict
    impossible: dict = field(default_factory=dict)     # frozenset({a, b}) -> why

    def __post_init__(self):
        if not isinstance(self.classes, dict):
            self.classes = {c.name: c for c in self.classes}
        for pair in self.impossible:
            unknown = set(pair) - set(self.classes)
            if unknown:
                raise ValueError(f"impossible pair {sorted(pair)} names unknown classes {sorted(unknown)}")

    def names(self) -> list:
        return list(self.classes)

    def __contains__(self, name) -> bool:
        return name in self.classes

    def __getitem__(self, name) -> CustomClass:
        return self.classes[name]

    def unknown_message(self, unknown: Sequence[str]) -> str:
        s = "es" if len(unknown) > 1 else ""
        return (f"Unknown class{s} {', '.join(map(repr, unknown))} for the {self.labeller} labeller; "
                f"it knows: {', '.join(self.classes)}.")

    def parse(self, spec: Union[str, Sequence[str], None]) -> list:
        """'smiling, older' or ['smiling', 'older'] -> validated class names (AND), in order, deduplicated.

        An empty choice, unknown names and contradictory combinations raise InputError."""
        names = []
        for it in (spec.split(",") if isinstance(spec, str) else list(spec or [])):
            n = str(it).strip().lower()
            if n and n not in names:
                names.append(n)
        if not names:
            raise InputError(f"Pick at least one class (one of: {', '.join(self.classes)}).")
        unknown = [n for n in names if n not in self.classes]
        if unknown:
            raise InputError(self.unknown_message(unknown))
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                ga, gb = self.classes[a].group, self.classes[b].group
                if ga is not None and ga == gb:
                    raise InputError(f"Contradictory classes: '{a}' and '{b}' exclude each other ({ga}); pick one.")
                why = self.impossible.get(frozenset({a, b}))
                if why:
                    raise InputError(f"Contradictory classes: '{a}' and '{b}' never occur together ({why}).")
        return names

    def parse_list(self, spec: Union[str, Sequence[str]]) -> list:
        """Known class names in order, exclusive ones allowed (e.g. a conditional GAN's class code)."""
        names = [str(n).strip().lower() for n in (spec.split(",") if isinstance(spec, str) else spec) if str(n).strip()]
        unknown = [n for n in names if n not in self.classes]
        if unknown or not names:
            raise InputError(f"Unknown or missing classes {unknown}; choose from: {', '.join(self.classes)}.")
        return names

    def mask(self, table: dict, names: Sequence[str]) -> np.ndarray:
        """bool [N, K]: does each face satisfy each of `names`?"""
        return class_mask(table, [self.classes[n] for n in names])

    def attributes(self, names: Sequence[str]) -> list:
        """The attributes the rules of `names` read (in first-use order)."""
        out = []
        for n in names:
            out += [a for a in self.classes[n].attributes if a not in out]
        return out


# ---------------------------------------------------------------------------
# Rule sets: the photo labeller's here, the face world's by import string
# ---------------------------------------------------------------------------

PHOTO_CLASSES = ClassRules("photo", [
    CustomClass("smiling", "smile >= 0.5 (mouthSmile blendshapes)", "smile", at_least("smile", 0.5), "smile"),
    CustomClass("neutral", "smile <= 0.1", "smile", at_most("smile", 0.1), "smile"),
    CustomClass("male", "P(male) >= 0.6 (a noisy CC0 network)", "male", at_least("male", 0.6), "gender"),
    CustomClass("female", "P(male) <= 0.4 (a noisy CC0 network)", "male", at_most("male", 0.4), "gender"),
    CustomClass("young", "age < 30 years", "age", lambda tb: _values(tb, "age") < 30, "age"),
    CustomClass("older", "age > 50 years", "age", lambda tb: _values(tb, "age") > 50, "age"),
    CustomClass("looking-left", "head turned to the viewer's left (yaw <= -0.3, about 13 deg)", "yaw",
                at_most("yaw", -0.3), "yaw"),
    CustomClass("looking-right", "head turned to the viewer's right (yaw >= 0.3, about 13 deg)", "yaw",
                at_least("yaw", 0.3), "yaw"),
    CustomClass("frontal", "|yaw| <= 0.1 (within about 4.5 deg)", "yaw",
                lambda tb: np.abs(_values(tb, "yaw")) <= 0.1, "yaw"),
    CustomClass("mouth-open", "jawOpen >= 0.3", "mouth_open", at_least("mouth_open", 0.3)),
    CustomClass("eyes-closed", "eyes_open <= 0.4 (1 - eyeBlink)", "eyes_open", at_most("eyes_open", 0.4)),
], impossible={})    # the photo labeller's classes that cannot co-occur all share a group

#: labeller name -> "module:attribute" of its ClassRules (resolved lazily: the world lives in a layer above).
RULE_SETS = {
    "world": "facegen.world.classes:WORLD_CLASSES",
    "photo": "facegen.labels.classes:PHOTO_CLASSES",
}


def classes_for(labeller) -> ClassRules:
    """The rule set of a labeller (a :class:`~facegen.labels.base.Labeller` or its name)."""
    name = getattr(labeller, "name", labeller)
    spec = RULE_SETS.get(str(name))
    if spec is None:
        raise InputError(f"No class rules for the labeller '{name}': customisation by class knows the rules of "
                         f"{', '.join(RULE_SETS)}.")
    module, attr = spec.split(":", 1)
    try:
        rules = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ModelNotFoundError(f"The class rules of the {name} labeller cannot be loaded "
                                 f"({type(e).__name__}: {e}).") from None
    return rules


def class_mask(table: dict, classes: Sequence[CustomClass]) -> np.ndarray:
    """bool [N, K]: does each face (row of `table`) satisfy each class (:class:`CustomClass`)?"""
    if not classes:
        n = len(next(iter(table.values()))) if table else 0
        return np.zeros((n, 0), bool)
    return np.stack([c.test(table) for c in classes], 1)


def label_table(pred: dict, spec: Sequence[tuple]) -> dict:
    """A Labeller's ``predict`` output + its ``spec`` -> {attribute: array [N]}: continuous values,
    bool probabilities (NaN stays NaN) and categorical argmax labels."""
    out = {}
    for name, kind, _ in spec:
        if kind == "categorical":
            out[name] = np.asarray(pred[f"{name}_label"])
        else:
            out[name] = np.asarray(pred[name], np.float64)
    return out


def label_classes(labeller, rules: ClassRules, names: Sequence[str], images: np.ndarray) -> tuple:
    """Label `images` and test `names` -> (mask bool [N, K], read bool [N]): ``read`` is False where the
    labeller could not read an attribute the classes need (NaN: e.g. the photo labeller found no face)."""
    table = label_table(labeller.predict(images), labeller.spec)
    read = np.ones(len(images), bool)
    for a in rules.attributes(names):
        v = table[a]
        if v.dtype.kind == "f":
            read &= np.isfinite(v)
    return rules.mask(table, names), read

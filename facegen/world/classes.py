"""The face world's classes: smiling, old, glasses, red hair ... as rules on face-world attributes.

:data:`WORLD_CLASSES` is the rule set (:class:`facegen.labels.classes.ClassRules`) of the ``"world"``
labeller; ``facegen.labels.classes.classes_for("world")`` finds it here by an import string, so
generic code never imports the face world.

Each class is a predicate on face-world attributes (:mod:`facegen.world.render`): ``smiling`` is
smile >= 0.6, ``old`` is age >= 0.6, ``hair:red`` is red base hair on a head that is not bald, and so
on. The same predicate applies to ground-truth labels of renders (:func:`world_table`, to train mini's
class classifier in :mod:`facegen.world.class_training`) and to the world predictor's predictions
(``facegen.labels.classes.label_table``, to judge samples). Classes of one group exclude each other,
and two pairs never occur in the world (female + beard, bald + long hair).

:func:`label_bank` gives the class codes of the world's training faces, from which
:func:`facegen.features.customize.conditional_sample` draws a conditional generator's codes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from facegen.labels.classes import ClassRules, CustomClass, at_least, at_most, flag

__all__ = ["WORLD_CLASSES", "world_table", "world_labels", "label_bank"]


def _hair(colour):
    return lambda tb: (np.asarray(tb["hair_color"]) == colour) & (np.asarray(tb["hair_style"]) != "bald")


WORLD_CLASSES = ClassRules("world", [
    CustomClass("smiling", "smile >= 0.6", "smile", at_least("smile", 0.6), "smile"),
    CustomClass("neutral", "smile <= 0.2", "smile", at_most("smile", 0.2), "smile"),
    CustomClass("old", "age >= 0.6", "age", at_least("age", 0.6), "age"),
    CustomClass("young", "age <= 0.2", "age", at_most("age", 0.2), "age"),
    CustomClass("male", "gender >= 0.6 (masculine)", "gender", at_least("gender", 0.6), "gender"),
    CustomClass("female", "gender <= 0.4 (feminine)", "gender", at_most("gender", 0.4), "gender"),
    CustomClass("glasses", "wears glasses", "glasses", flag("glasses")),
    CustomClass("beard", "has a beard", "beard", flag("beard")),
    CustomClass("skin:dark", "skin tone >= 0.65", "skin_tone", at_least("skin_tone", 0.65), "skin"),
    CustomClass("skin:light", "skin tone <= 0.3", "skin_tone", at_most("skin_tone", 0.3), "skin"),
    CustomClass("bald", "hair style bald", "hair_style", lambda tb: np.asarray(tb["hair_style"]) == "bald", "hair"),
    CustomClass("long-hair", "hair length >= 0.6, not bald", "hair_length, hair_style",
                lambda tb: (np.asarray(tb["hair_length"], np.float64) >= 0.6) & (np.asarray(tb["hair_style"]) != "bald")),
    *[CustomClass(f"hair:{c}", f"{c} hair (not bald)", "hair_color, hair_style", _hair(c), "hair")
      for c in ("black", "brown", "blonde", "red", "auburn")],
], impossible={frozenset({"female", "beard"}): "the face world has no bearded feminine faces",
               frozenset({"bald", "long-hair"}): "long hair needs hair"})


def world_table(labels: Sequence[dict]) -> dict:
    """Ground-truth label dicts (``world.render_batch``) -> {attribute: array [N]}."""
    keys = labels[0].keys() if labels else []
    return {k: np.asarray([lab[k] for lab in labels]) for k in keys}


def world_labels(seeds) -> list:
    """Ground-truth labels of world seeds without rendering (:func:`facegen.world.attributes.seed_attributes`)."""
    from facegen.world.attributes import labels_dict, seed_attributes
    return [labels_dict(seed_attributes(s)) for s in seeds]


LABEL_BANK_SEEDS = 6000


@lru_cache(maxsize=4)
def label_bank(classes: tuple) -> np.ndarray:
    """Class codes of world seeds 0..5,999 (a conditional GAN's training faces): the empirical joint."""
    return WORLD_CLASSES.mask(world_table(world_labels(range(LABEL_BANK_SEEDS))), list(classes)).astype(np.float32)

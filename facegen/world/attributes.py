"""The face world's attributes: what a face is, how faces are drawn at random, and the seed contract.

Every face of the world is an explicit :class:`FaceAttributes` record (:data:`ATTRIBUTE_SPEC`:
continuous values in fixed ranges, categorical values from fixed lists, booleans), mapped to a fixed
float vector (continuous raw value, categorical one-hot, bool 0/1) by :func:`attributes_to_vector` /
:func:`vector_to_attributes`. :func:`sample_attributes` draws from a diverse, loosely realistic joint
distribution (yaw uniform over [-1, 1], hair length spread over its range, so turned heads and long hair
are not rare).

**The seed contract** (one place): world seed ``s`` is the face
``sample_attributes(np.random.default_rng(s))`` -- :func:`seed_attributes`. Seed ranges are assigned by
use: GAN training below 10_000_000, the predictor's training from 10_000_000, held-out tests from
20_000_000, the encoder's evaluation from 20_000_000, customisation tests from 30_000_000.

Conventions: ``yaw > 0`` turns the face towards the viewer's right; ``light_direction > 0`` lights the
face from the viewer's right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

# ---------------------------------------------------------------------------
# 1. Attributes
# ---------------------------------------------------------------------------

HAIR_COLORS = ("black", "brown", "blonde", "red", "auburn")
HAIR_STYLES = ("straight", "fringe", "curly", "bald")
EYE_COLORS = ("brown", "blue", "green", "grey")

#: Fixed attribute layout: (name, kind, range-or-categories).  kind is one of
#: "continuous" (range (lo, hi), 1 vector slot holding the raw value),
#: "categorical" (tuple of categories, one-hot slots in that order) or
#: "bool" (1 slot, 0.0 / 1.0).  The vector layout follows this order.
ATTRIBUTE_SPEC: list[tuple[str, str, tuple]] = [
    ("yaw", "continuous", (-1.0, 1.0)),            # head turn, +-1 = +-45 deg, + = to viewer's right
    ("smile", "continuous", (0.0, 1.0)),           # 0 neutral .. 1 open smile with teeth
    ("age", "continuous", (0.0, 1.0)),             # 0 young adult .. 1 elderly
    ("gender", "continuous", (0.0, 1.0)),          # presentation: 0 feminine .. 1 masculine
    ("skin_tone", "continuous", (0.0, 1.0)),       # 0 light .. 1 dark
    ("hair_color", "categorical", HAIR_COLORS),    # base colour; greying with age on top
    ("hair_length", "continuous", (0.0, 1.0)),     # 0 short crop .. 1 below the shoulders
    ("hair_style", "categorical", HAIR_STYLES),
    ("eye_color", "categorical", EYE_COLORS),
    ("glasses", "bool", (False, True)),
    ("beard", "bool", (False, True)),
    ("bg_hue", "continuous", (0.0, 1.0)),          # background hue
    ("bg_value", "continuous", (0.0, 1.0)),        # background 0 dark .. 1 light
    ("light_direction", "continuous", (-1.0, 1.0)),  # -1 lit from viewer's left .. +1 from right
    ("clothing_hue", "continuous", (0.0, 1.0)),    # shirt colour (nuisance variable)
]


def _spec_width(kind: str, rng: tuple) -> int:
    return len(rng) if kind == "categorical" else 1


#: Length of the vector produced by :func:`attributes_to_vector` (25).
VECTOR_DIM = sum(_spec_width(k, r) for _, k, r in ATTRIBUTE_SPEC)


@dataclass(frozen=True)
class FaceAttributes:
    """Everything that determines one face.  See :data:`ATTRIBUTE_SPEC`."""

    yaw: float = 0.0
    smile: float = 0.3
    age: float = 0.3
    gender: float = 0.5
    skin_tone: float = 0.3
    hair_color: str = "brown"
    hair_length: float = 0.4
    hair_style: str = "straight"
    eye_color: str = "brown"
    glasses: bool = False
    beard: bool = False
    bg_hue: float = 0.6
    bg_value: float = 0.7
    light_direction: float = 0.0
    clothing_hue: float = 0.1


def validate_attributes(attrs: FaceAttributes) -> None:
    """Raise ValueError naming the first attribute that is out of range."""
    if not isinstance(attrs, FaceAttributes):
        raise ValueError(f"expected FaceAttributes, got {type(attrs).__name__}")
    for name, kind, rng in ATTRIBUTE_SPEC:
        v = getattr(attrs, name)
        if kind == "continuous":
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise ValueError(f"attribute {name!r} must be a number, got {v!r}")
            if not (math.isfinite(float(v)) and rng[0] <= float(v) <= rng[1]):
                raise ValueError(f"attribute {name!r}={v!r} outside its range [{rng[0]}, {rng[1]}]")
        elif kind == "categorical":
            if v not in rng:
                raise ValueError(f"attribute {name!r}={v!r} is not one of {list(rng)}")
        else:
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"attribute {name!r} must be a bool, got {v!r}")


def attributes_to_vector(attrs: FaceAttributes) -> np.ndarray:
    """Fixed-layout float32 vector (length :data:`VECTOR_DIM`), see ATTRIBUTE_SPEC."""
    validate_attributes(attrs)
    out: list[float] = []
    for name, kind, rng in ATTRIBUTE_SPEC:
        v = getattr(attrs, name)
        if kind == "continuous":
            out.append(float(v))
        elif kind == "categorical":
            out.extend(1.0 if c == v else 0.0 for c in rng)
        else:
            out.append(1.0 if v else 0.0)
    return np.asarray(out, dtype=np.float32)


def vector_to_attributes(v: Sequence[float]) -> FaceAttributes:
    """Inverse of :func:`attributes_to_vector`.

    Continuous slots are clipped into range, categorical blocks are decoded
    by argmax, bool slots by ``> 0.5`` - so it also decodes noisy predictions.
    """
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.shape[0] != VECTOR_DIM:
        raise ValueError(f"attribute vector must have length {VECTOR_DIM}, got {v.shape[0]}")
    kw: dict = {}
    i = 0
    for name, kind, rng in ATTRIBUTE_SPEC:
        if kind == "continuous":
            kw[name] = float(np.clip(v[i], rng[0], rng[1]))
            i += 1
        elif kind == "categorical":
            kw[name] = rng[int(np.argmax(v[i:i + len(rng)]))]
            i += len(rng)
        else:
            kw[name] = bool(v[i] > 0.5)
            i += 1
    return FaceAttributes(**kw)


def labels_dict(attrs: FaceAttributes) -> dict:
    """JSON-serialisable dict of the attributes (plain float/str/bool values)."""
    d = {}
    for f in fields(FaceAttributes):
        v = getattr(attrs, f.name)
        if isinstance(v, (bool, np.bool_)):
            d[f.name] = bool(v)
        elif isinstance(v, str):
            d[f.name] = v
        else:
            d[f.name] = float(v)
    return d


# ---------------------------------------------------------------------------
# 2. Sampling
# ---------------------------------------------------------------------------

def _choice(rng: np.random.Generator, options: Sequence[str], p: Sequence[float]) -> str:
    p = np.asarray(p, dtype=np.float64)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def sample_attributes(rng: np.random.Generator) -> FaceAttributes:
    """Draw one face from a diverse, loosely realistic distribution.

    * yaw ~ U(-1, 1) (pose must not be under-represented), light ~ U(-1, 1)
    * gender bimodal (Beta(2,6) or Beta(6,2)), age skewed slightly young
    * hair length spread over [0, 1] for everyone (longer on average for
      feminine faces), bald mostly for older masculine faces
    * beard probability grows with masculinity; glasses with age
    * hair/eye colour priors depend on skin tone.
    """
    yaw = float(rng.uniform(-1.0, 1.0))
    smile = float(rng.uniform(0.0, 1.0))
    age = float(rng.beta(1.2, 1.4))
    gender = float(rng.beta(2, 6) if rng.random() < 0.5 else rng.beta(6, 2))
    skin = float(rng.uniform(0.0, 1.0))
    if skin > 0.6:
        hair_color = _choice(rng, HAIR_COLORS, [0.62, 0.3, 0.02, 0.02, 0.04])
        eye_color = _choice(rng, EYE_COLORS, [0.85, 0.03, 0.04, 0.08])
    else:
        hair_color = _choice(rng, HAIR_COLORS, [0.22, 0.33, 0.22, 0.1, 0.13])
        eye_color = _choice(rng, EYE_COLORS, [0.4, 0.3, 0.15, 0.15])
    hair_length = float(rng.beta(1.3, 0.9) if gender < 0.5 else rng.beta(0.9, 1.4))
    p_bald = 0.45 * max(0.0, gender - 0.5) * 2 * (0.3 + age)
    p_rest = 1.0 - p_bald
    hair_style = _choice(rng, HAIR_STYLES, [0.45 * p_rest, 0.3 * p_rest, 0.25 * p_rest, p_bald])
    glasses = bool(rng.random() < 0.15 + 0.3 * age)
    beard = bool(rng.random() < 0.6 * max(0.0, gender - 0.45) / 0.55)
    return FaceAttributes(
        yaw=yaw, smile=smile, age=age, gender=gender, skin_tone=skin,
        hair_color=hair_color, hair_length=hair_length, hair_style=hair_style,
        eye_color=eye_color, glasses=glasses, beard=beard,
        bg_hue=float(rng.uniform()), bg_value=float(rng.uniform()),
        light_direction=float(rng.uniform(-1.0, 1.0)),
        clothing_hue=float(rng.uniform()),
    )


def seed_attributes(seed: int) -> FaceAttributes:
    """The attributes of world seed `seed` (drawn with ``np.random.default_rng(seed)``), without rendering."""
    return sample_attributes(np.random.default_rng(int(seed)))

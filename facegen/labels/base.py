"""The labeller interface: what facegen needs from anything that labels face images.

A labeller is the domain knowledge a generator-agnostic feature borrows: the face world's CNN for
face-world generators (:mod:`facegen.world.predictor`), the real-photo labeller for published
generators (:mod:`facegen.labels.photo`), or any other model that implements :class:`Labeller`.

``images`` are always a numpy ``uint8`` array ``[N, H, W, 3]`` (RGB), any ``H, W >= 16``.

``spec``: ``[(name, kind, range_or_categories)]`` with kind ``"continuous"``, ``"categorical"`` or
``"bool"``. ``predict(images) -> dict[str, np.ndarray]``, keyed by attribute name:

* continuous ``name``  -> ``float32 [N]`` in the attribute's range (NaN where it cannot be read);
* categorical ``name`` -> ``float32 [N, K]`` class probabilities in ``categories[name]`` order, and
  ``f"{name}_label"`` -> ``str [N]`` argmax labels;
* bool ``name``        -> ``float32 [N]`` probability of ``True``.

``features(images) -> float32 [N, D]`` an embedding (Frechet distance, diversity);
``validity(images) -> float32 [N]`` the probability that each image reads as a face.

Labellers are named (``"world"``, ``"photo"``) and found through :data:`LABELLERS`, a table of
import strings, so that a pack can name the labeller it was built with and this layer never imports
the layers that implement one.
"""

from __future__ import annotations

import abc
import importlib
from typing import Optional

import numpy as np
import torch

from facegen.engine.errors import InputError, ModelNotFoundError

ImageArray = np.ndarray
INPUT_SIZE = 64
MIN_INPUT_SIZE = 16

#: name -> "module:factory" (the factory takes no arguments and returns a Labeller, cached by it).
LABELLERS = {
    "world": "facegen.world.predictor:load_world_predictor",
    "photo": "facegen.labels.photo:load_photo_labeller",
}


def check_images(images) -> np.ndarray:
    """Validate a batch of images; raise :class:`facegen.engine.errors.InputError` (a ValueError) if bad."""
    if isinstance(images, torch.Tensor):
        raise InputError("images must be a numpy uint8 array [N, H, W, 3], got a torch.Tensor; for "
                         "differentiable use call WorldPredictor.prepare_tensor / forward instead")
    if not isinstance(images, np.ndarray):
        raise InputError(f"images must be a numpy uint8 array [N, H, W, 3], got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise InputError(f"images must have dtype uint8 (0..255), got {images.dtype}; convert floats in "
                         "[0, 1] with (np.clip(x, 0, 1) * 255).round().astype(np.uint8)")
    if images.ndim != 4 or images.shape[-1] != 3:
        hint = " (for a single image use images[None])" if images.ndim == 3 and images.shape[-1] == 3 else ""
        raise InputError(f"images must have shape [N, H, W, 3] (RGB), got {tuple(images.shape)}{hint}")
    if min(images.shape[1], images.shape[2]) < MIN_INPUT_SIZE:
        raise InputError(f"images must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels, "
                         f"got {images.shape[1]}x{images.shape[2]}")
    return images


class Labeller(abc.ABC):
    """What facegen needs from an image labeller (see the module docstring for the exact shapes)."""

    #: registry name (``LABELLERS``) of this labeller, recorded in the packs built with it
    name: str = ""
    #: side of the square network input; images of any size are resized to it
    input_size: int = INPUT_SIZE

    @property
    @abc.abstractmethod
    def spec(self) -> list[tuple[str, str, tuple]]:
        """Predicted attributes: ``[(name, kind, range_or_categories)]``."""

    @property
    def attributes(self) -> list[str]:
        """Names of the predicted attributes, in spec order."""
        return [s[0] for s in self.spec]

    @property
    def categories(self) -> dict[str, tuple]:
        """Class names of every categorical attribute (column order of its probabilities)."""
        return {n: tuple(r) for n, k, r in self.spec if k == "categorical"}

    @abc.abstractmethod
    def predict(self, images: ImageArray) -> dict[str, np.ndarray]:
        """uint8 [N, H, W, 3] -> {continuous: [N], categorical: [N, K] + name_label: str [N], bool: [N] prob}."""

    @abc.abstractmethod
    def features(self, images: ImageArray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 [N, D] embedding (Frechet distance, diversity)."""

    @abc.abstractmethod
    def validity(self, images: ImageArray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 [N] probability that each image reads as a face."""


def labeller_names() -> list[str]:
    return list(LABELLERS)


def load_labeller(name: Optional[str]) -> Labeller:
    """The labeller registered as `name` (``"world"``, ``"photo"``), or a ``"module:factory"`` string."""
    if isinstance(name, Labeller):
        return name
    spec = LABELLERS.get(str(name), str(name))
    if ":" not in spec:
        raise InputError(f"Unknown labeller '{name}': use one of {', '.join(LABELLERS)} or 'module:factory'.")
    module, factory = spec.split(":", 1)
    try:
        fn = getattr(importlib.import_module(module), factory)
    except (ImportError, AttributeError) as e:
        raise ModelNotFoundError(f"The labeller '{name}' cannot be loaded ({type(e).__name__}: {e}).") from None
    lab = fn()
    if not getattr(lab, "name", ""):
        lab.name = str(name)
    return lab

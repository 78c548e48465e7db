"""An allow-list unpickler for published StyleGAN network pickles.

Network pickles written by the official StyleGAN2 code are ordinary Python
pickles: loading them with ``pickle.load`` imports and runs whatever the file
names (the official loaders even execute the network source embedded in the
file). This unpickler resolves only the globals listed below. Classes of the
original code become inert stand-ins that just hold their state; embedded
source text is kept as a string and never executed; any other global stops
the load with :class:`UnsafePickleError` naming it, before it can be called.
"""

from __future__ import annotations

import collections
import io
import pickle
from typing import Any

import numpy as np
import torch

from facegen.engine.errors import UnsafePickleError


class PersistentObject:
    """Stand-in for an object saved by ``torch_utils.persistence`` (StyleGAN2-ADA / StyleGAN3).

    ``meta`` holds: type, version, module_src (never executed), class_name, state (the object's
    ``__dict__``: init_kwargs, _parameters, _buffers, _modules ...).
    """

    def __init__(self, meta: dict):
        self.meta = meta

    @property
    def class_name(self) -> str:
        return str(self.meta.get("class_name", "?"))

    @property
    def state(self) -> dict:
        return self.meta.get("state") or {}

    def tensors(self, prefix: str = "") -> dict:
        """Flatten _parameters / _buffers of this module tree into a state dict."""
        out = {}
        st = self.state
        for kind in ("_parameters", "_buffers"):
            for name, t in (st.get(kind) or {}).items():
                if t is not None and name not in (st.get("_non_persistent_buffers_set") or ()):
                    out[prefix + name] = t
        for name, child in (st.get("_modules") or {}).items():
            if isinstance(child, PersistentObject):
                out.update(child.tensors(prefix + name + "."))
        return out

    def __repr__(self):
        return f"<persistent {self.class_name}>"


class TFNetwork:
    """Stand-in for ``dnnlib.tflib.network.Network`` (original TensorFlow StyleGAN/StyleGAN2)."""

    def __setstate__(self, state: dict):
        self.state = state

    @property
    def name(self) -> str:
        return self.state.get("name", "?")

    @property
    def build_func_name(self) -> str:
        return self.state.get("build_func_name", "?")

    @property
    def static_kwargs(self) -> dict:
        return dict(self.state.get("static_kwargs") or {})

    @property
    def components(self) -> dict:
        return dict(self.state.get("components") or {})

    def variables(self, prefix: str = "") -> dict:
        """All variables of this network and its components as '<component>/<name>' -> ndarray."""
        out = {prefix + name: np.asarray(value) for name, value in self.state.get("variables", [])}
        for key, comp in self.components.items():
            out.update(comp.variables(prefix + key + "/"))
        return out

    def __repr__(self):
        return f"<TF network {self.name} ({self.build_func_name})>"


class EasyDict(dict):
    """``dnnlib.util.EasyDict``: a dict with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafePickleError("torch_utils.persistence._reconstruct_persistent_obj(<non-class meta>)")
    return PersistentObject(meta)


def _load_storage_from_bytes(b: bytes):
    """torch.storage._load_from_bytes, but through torch's weights-only loader."""
    try:
        return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(f"torch.storage._load_from_bytes(<a payload that is not a plain storage: {str(e)[:200]}>)")


def _numpy_reconstruct(*args):
    return np.ndarray.__new__(*args)


def _numpy_scalar(dtype, data=None):
    if data is None:
        return dtype.type(0)
    return np.frombuffer(data, dtype=dtype)[0].copy()


ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib.EasyDict", "EasyDict"): EasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch", "Size"): torch.Size,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}
_TORCH_DTYPES = {("torch", n) for n in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool")}


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        fn = ALLOWED.get((module, name))
        if fn is not None:
            return fn
        if (module, name) in _TORCH_DTYPES:
            return getattr(torch, name)
        if module == "numpy" and name.endswith("dtype") or module == "numpy.dtypes" and name.endswith("DType"):
            # numpy >= 1.25 pickles dtypes as numpy.dtypes.Float32DType etc.
            return getattr(__import__("numpy.dtypes", fromlist=[name]), name)
        raise UnsafePickleError(f"{module}.{name}")

    def persistent_load(self, pid):
        raise UnsafePickleError(f"persistent id {pid!r}")


def safe_load(f) -> Any:
    """Unpickle a file object with the allow-list; raises UnsafePickleError on anything else."""
    return SafeUnpickler(f).load()

"""Device selection: CUDA, then Apple MPS, then CPU -- and ZeroGPU-friendly habits.

On a ZeroGPU Space, ``spaces.GPU`` is applied at the app layer (``app.py`` imports ``spaces``
before torch touches CUDA). GPU functions stay synchronous, with picklable inputs and outputs
(numpy arrays, lists, dicts); the generator is moved to the device inside the call.
"""

from __future__ import annotations

import os
from typing import Optional

import torch


def pick_device(prefer: Optional[str] = None) -> torch.device:
    """`prefer` ('cuda', 'mps', 'cpu', or None for the best available); FACEGEN_DEVICE overrides."""
    prefer = prefer or os.environ.get("FACEGEN_DEVICE") or None
    if prefer:
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("CUDA was requested but is not available on this machine.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def configure_cpu_threads(num_threads: Optional[int] = None) -> int:
    """Use the physical cores (not more) for intra-op work; FACEGEN_THREADS overrides."""
    n = num_threads or int(os.environ.get("FACEGEN_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"

"""Stable generator fingerprints.

A fingerprint is the first 16 hex digits of a SHA-256 over the generator's
state dict: every tensor's name, dtype, shape and bytes, in sorted name order,
as float32 little-endian. It does not depend on the device, on the file format
the weights came from, or on the order tensors were stored in, so the same
weights loaded from an official pickle, a TensorFlow pickle or a Hub folder
give the same fingerprint. Latents and directions saved by facegen carry it.
"""

import hashlib

import numpy as np
import torch


def fingerprint(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        t = state[name].detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(np.ascontiguousarray(t.numpy()).astype("<f4").tobytes())
    return h.hexdigest()[:16]

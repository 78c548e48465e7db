"""Generation: latents -> uint8 RGB images, in batches, on any device.

The functions here take and return picklable values (numpy arrays, lists), so the app can
wrap them in ``spaces.GPU`` on ZeroGPU unchanged.
"""

from __future__ import annotations

from typing import Optional

from facegen.engine import latents as L
from facegen.engine.synthesis import NOISE_MODES, synthesize, to_uint8  # noqa: F401  (the feature's own API)

def generate_seeds(G, seeds, psi: float = 0.7, cutoff: Optional[int] = None, noise_mode: str = "const",
                   c=None) -> tuple:
    """seeds (e.g. '0-7') -> (images uint8 [N, H, W, 3], ws float32 [N, num_ws, w_dim], seed list)."""
    seed_list = L.parse_seeds(seeds)
    ws = L.seeds_to_ws(G, seed_list, psi=psi, cutoff=cutoff, c=c)
    return synthesize(G, ws, noise_mode), ws.cpu().numpy(), seed_list

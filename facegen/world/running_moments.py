"""Running moments of a stream of batches, shared by the predictor-guided training levers.

A running population (mean m, (co)variance C) and a batch (mean b, (co)variance B) mixed in with weight
``rate``: the mixture's moments are m' = m + rate (b - m) and

    C' = (1 - rate) C + rate B + rate (1 - rate) (b - m)(b - m)^T,

the last term being the spread of the two populations' means. :func:`fold_covariance` applies the second
line to one block of C (a variance vector, a covariance matrix, or the cross block of two variables), from
the deltas of the two variables' means; the caller then moves each mean with ``mean.lerp_(b, rate)``.
"""

from __future__ import annotations

import torch

__all__ = ["fold_covariance"]


@torch.no_grad()
def fold_covariance(cov: torch.Tensor, batch_cov: torch.Tensor, delta_a: torch.Tensor, delta_b: torch.Tensor,
                    rate: float) -> None:
    """In place: ``cov`` <- the pooled (co)variance block (module docstring). ``delta_a`` / ``delta_b``: the
    batch mean minus the running mean of the block's row / column variable (the same tensor for a variance);
    a 1-D ``cov`` holds variances (elementwise product), a 2-D one a (cross-)covariance (outer product)."""
    assert cov.shape == batch_cov.shape, (cov.shape, batch_cov.shape)
    spread = torch.outer(delta_a, delta_b) if cov.dim() == 2 else delta_a * delta_b
    assert spread.shape == cov.shape, (spread.shape, cov.shape)
    cov.copy_((1 - rate) * cov + rate * batch_cov + rate * (1 - rate) * spread)

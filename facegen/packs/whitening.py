"""Whitened InterFaceGAN directions: fit the boundary in whitened W, edit along its normal mapped back.

Motivation
----------
W is strongly anisotropic (``mini``: condition number 555 even after the shrinkage below,
``bench/results/edit-whitened-mini.json``). The plain recipe (:mod:`facegen.packs.direction_fitting`) fits a logistic regression on centred
w and edits along the unit normal ``a`` of its boundary, the steepest ascent of the classifier score
per unit of *Euclidean* distance in W. That normal mixes two things: where the classes differ, and
how much w varies along each axis (a classifier must weigh an axis by the inverse of its variance to
use it, so ``a`` leans towards rare, low-variance axes). The whitened variant measures distance in
the geometry of the samples themselves instead.

Method
------
*Whitening.* From the fitting samples ``w_1 .. w_N`` (mean ``mu``, sample covariance ``S``) take the
regularised covariance ::

    Sigma = (1 - lam) S + lam (tr S / D) I

with ``lam`` the Ledoit-Wolf shrinkage (the convex combination minimising the expected Frobenius error
of the estimate, :func:`sklearn.covariance.ledoit_wolf`), so ``Sigma`` is positive definite even where
W is nearly degenerate. With ``Sigma = U diag(l) U^T``, the symmetric roots are ``Sigma^(+-1/2) =
U diag(l^(+-1/2)) U^T``, and ``w' = Sigma^(-1/2) (w - mu)`` has (nearly) identity covariance: one unit
of w' is one standard deviation of the samples, along every axis.

*Fit.* The same class-balanced logistic regression as the plain recipe, on w': score
``s = n'^T w' + b`` with unit normal ``n'``. In W this is ``s = a^T (w - mu) + b`` with
``a = Sigma^(-1/2) n'``. (The logistic fit itself is affine-equivariant: without its L2 penalty the
plain fit would find the same boundary. The penalty differs: ``|n'|^2 = a^T Sigma a`` charges each
axis by its variance instead of uniformly.)

*Edit direction.* A step ``dw`` changes the score by ``a^T dw``. Which step reaches a given change
``delta`` with the least movement depends on how movement is measured:

* Euclidean length ``|dw|``: minimise ``|dw|^2`` subject to ``a^T dw = delta`` -> ``dw ~ a =
  Sigma^(-1/2) n'``: the plain method's direction (the boundary normal in W).
* Whitened length ``|dw'| = |Sigma^(-1/2) dw|`` (the Mahalanobis length, in standard deviations of
  the samples): minimise ``dw^T Sigma^(-1) dw`` subject to ``a^T dw = delta``; the Lagrange condition
  ``Sigma^(-1) dw = nu a`` gives ::

      dw ~ Sigma a = Sigma^(1/2) n'.

  That is the boundary normal *in whitened geometry* (a step ``t n'`` in w') mapped back to W by
  ``dw = Sigma^(1/2) dw'``; each unit of whitened distance buys the largest change of the score.

We edit along ``d = Sigma^(1/2) n' / |Sigma^(1/2) n'|``, for three reasons that are the same fact seen
three ways:

1. Least unusual step: among the steps that change the score by ``delta``, ``d`` travels the fewest
   standard deviations of the samples, preferring axes along which faces do vary over rare ones.
2. The data's own path: for Gaussian w, ``E[w - mu | a^T (w - mu) = s] = Sigma a s / (a^T Sigma a)``;
   faces with a higher score differ from the others, on average, along ``Sigma a``. (In the
   neuroimaging literature ``a`` is the *filter* and ``Sigma a`` its *activation pattern*; Haufe et
   al. 2014, "On the interpretation of weight vectors of linear models in multivariate neuroimaging".)
3. The generating axis: if the attribute ``y`` shifts w along ``v`` on top of independent anisotropic
   variation, ``w = mu_0 + y v + e`` with ``Cov(e) = Sigma_e``, the optimal boundary's normal is
   ``a ~ Sigma_e^(-1) v``, tilted towards e's low-variance axes, while ``Sigma = Sigma_e + c v v^T``
   (``c = Var(y)``) gives ``Sigma a = v (1 + c v^T Sigma_e^(-1) v) ~ v``: the whitened direction
   recovers ``v``. ``tests/test_whitening.py`` checks this on synthetic data.

Mapping back with ``Sigma^(-1/2) n'`` instead would return the W-space normal ``a``, i.e. the plain
method up to its penalty.

*Step units* are unchanged: one step is one standard deviation of ``w . d`` over the samples,
``sqrt(d^T S d)``.

*Conditional directions.* "Keep the other attributes" must keep the other classifiers' scores fixed:
``a_j^T dw = 0`` with ``a_j ~ Sigma^(-1) d_j``. Orthogonalising ``n'_i`` against the other ``n'_j`` in
whitened space and mapping back gives ::

    u ~ d_i - D^T (D M D^T)^(-1) D M d_i,     M = Sigma^(-1), D = the other directions (rows),

the plain formula of :mod:`facegen.packs.directions` with the inner product ``<x, y> = x^T M y``
(``M = I`` for plain directions). The gain that keeps the target's score change of a step equal to
the unconditioned one is ``(d_i^T M d_i) / (d_i^T M u)`` for unit ``u``. A whitened
:class:`~facegen.packs.directions.DirectionSet` therefore stores ``Sigma`` (array ``covariance``).

Result on mini v1
-----------------
The two fits find the same boundaries (normals' cosine 0.97-0.998) but edit along different
directions (cosine 0.28-0.48): the plain normals put 0-21 % of their length on W's 10 highest-variance
axes, the whitened directions 47-98 %. Whitened edits move their targets much further (a +-2.5-step
sweep: beard 0.90 vs 0.04 of its range) but are monotone (median rho >= 0.95) for 2/8 directions
against 7/8 and leak more per unit of target change for 5/8; with score-SD steps, half whitening
(``Sigma^0.5 a``) or a +-1-step sweep they stay behind plain (3/8, 4/8, 5/8 monotone). The shipped
sets stay plain: ``bench/results/edit-whitened-mini.md`` and the ``edit-*whitened*-mini.md`` beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegen.engine.errors import InputError

__all__ = ["Whitening", "fit_whitening", "check_method", "METHODS"]

#: Direction-fitting methods: the plain InterFaceGAN normal, or this module's whitened variant.
METHODS = ("plain", "whitened")


@dataclass
class Whitening:
    """A regularised covariance of W samples and its symmetric square roots."""
    covariance: np.ndarray        # [D, D] Sigma (regularised)
    sqrt: np.ndarray              # [D, D] Sigma^(1/2)
    inv_sqrt: np.ndarray          # [D, D] Sigma^(-1/2)
    shrinkage: float              # Ledoit-Wolf lam
    eigenvalues: np.ndarray       # [D] of Sigma, descending

    def whiten(self, X: np.ndarray) -> np.ndarray:
        """Centred samples [N, D] -> w' = Sigma^(-1/2) x per row (the roots are symmetric)."""
        return np.asarray(X, np.float64) @ self.inv_sqrt

    def direction(self, n_white: np.ndarray) -> np.ndarray:
        """A whitened boundary normal n' -> the unit edit direction Sigma^(1/2) n' / |.| in W."""
        d = self.sqrt @ np.asarray(n_white, np.float64)
        return d / np.linalg.norm(d)

    def summary(self) -> dict:
        e = self.eigenvalues
        return {"covariance": "Ledoit-Wolf shrinkage towards (tr S / D) I", "shrinkage": round(self.shrinkage, 6),
                "eigenvalue_max": round(float(e[0]), 6), "eigenvalue_min": round(float(e[-1]), 6),
                "condition_number": round(float(e[0] / e[-1]), 1)}


def fit_whitening(X: np.ndarray) -> Whitening:
    """Samples [N, D] (N > 1, finite) -> their Ledoit-Wolf covariance and its roots."""
    from sklearn.covariance import ledoit_wolf
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or len(X) < 2 or not np.all(np.isfinite(X)):
        raise InputError(f"Whitening needs at least 2 finite samples as an [N, D] array (got shape {X.shape}).")
    cov, lam = ledoit_wolf(X)          # centres X itself
    cov = (cov + cov.T) / 2
    lam_e, U = np.linalg.eigh(cov)
    if lam_e[0] <= 0:
        raise InputError("The samples' covariance is singular even after shrinkage (all samples equal?).")
    order = np.argsort(lam_e)[::-1]
    return Whitening(covariance=cov, sqrt=(U * np.sqrt(lam_e)) @ U.T, inv_sqrt=(U / np.sqrt(lam_e)) @ U.T,
                     shrinkage=float(lam), eigenvalues=lam_e[order])


def check_method(method: str) -> str:
    m = str(method).strip().lower()
    if m not in METHODS:
        raise InputError(f"Unknown direction method '{method}': use {' or '.join(METHODS)}.")
    return m

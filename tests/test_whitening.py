"""Whitened InterFaceGAN directions (facegen.packs.whitening, direction_fitting --method whitened).

Synthetic W where the answer is known: a linear forward model ``w = mu_0 + amp * y * v_k + e`` with a
binary attribute ``y`` shifting w along its generating axis ``v_k`` on top of anisotropic nuisance
variation ``e`` (variances from 10 to 0.1 along a random rotation). ``v`` has equal weight on the
nuisance's highest- and lowest-variance axes, so the label is told apart mostly along the low-variance
axis: the optimal boundary normal is ``Sigma_e^-1 v``, cosine about 0.71 with ``v``, while the whitened
direction ``Sigma^1/2 n'`` is ``v`` itself (derivation in facegen.packs.whitening).
The end-to-end test fits on a seeded random generator (real rendering, a real labeller).
"""

import json

import numpy as np
import pytest
import torch

from facegen.engine import latents as L
from facegen.engine.errors import InputError, LatentError
from facegen.packs.direction_fitting import cli_main, fit_direction, fit_directions
from facegen.packs.directions import DirectionSet, load_directions
from facegen.packs.whitening import fit_whitening

from conftest import _random_generator
from test_directions import Brightness

torch.set_num_threads(1)
pytestmark = pytest.mark.timeout(120)

D, N, AMP = 8, 4000, 0.8


def _nuisance_axes():
    R = np.linalg.qr(np.random.default_rng(0).standard_normal((D, D)))[0]
    return R, np.logspace(1, -1, D)           # rotation, variances 10 .. 0.1


def _samples(axes: list, seed: int = 10):
    """Centred w [N, D] and one binary label per generating axis in `axes`."""
    R, var = _nuisance_axes()
    r = np.random.default_rng(seed)
    ys = [r.random(N) < 0.5 for _ in axes]
    w = 3.0 + (r.standard_normal((N, D)) * np.sqrt(var)) @ R.T
    for y, v in zip(ys, axes):
        w = w + AMP * y[:, None] * v
    return w - w.mean(0), ys


def _v():
    R, _ = _nuisance_axes()
    return (R[:, 0] + R[:, -1]) / np.sqrt(2)


def test_whitened_direction_recovers_the_generating_axis():
    """Property: under the forward model the whitened edit direction is the generating axis v
    (|cos| >= 0.95), while the plain normal leans to the low-variance axis (|cos| <= 0.8); both fit the
    same boundary (their normals in W agree, |cos| >= 0.98) with the same held-out accuracy."""
    v = _v()
    X, (y,) = _samples([v])
    d_plain, a_plain, acc_plain = fit_direction(X, y, "plain")
    d_white, a_white, acc_white = fit_direction(X, y, "whitened")
    assert abs(d_white @ v) >= 0.95, f"whitened direction misses the generating axis: cos {d_white @ v:.3f}"
    assert abs(d_plain @ v) <= 0.8, f"plain normal unexpectedly on the axis: cos {d_plain @ v:.3f}"
    assert abs(a_white @ a_plain) >= 0.98                      # the same boundary ...
    assert abs(acc_white - acc_plain) < 0.02 and acc_white > 0.75
    assert d_white @ v > 0 and d_plain @ v > 0                 # ... and + means "more of the attribute"


def test_whitened_conditional_keeps_the_other_classifiers():
    """Property: a conditional step of a whitened set leaves the other attributes' fitted classifier
    scores (their boundary normals a_j in W) unchanged and moves the target's classifier score as much
    as an unconditioned step."""
    R, _ = _nuisance_axes()
    axes = [(R[:, 0] + R[:, -1]) / np.sqrt(2), (R[:, 1] + R[:, -2]) / np.sqrt(2), (R[:, 0] - R[:, 3]) / np.sqrt(2)]
    X, ys = _samples(axes, seed=11)
    wt = fit_whitening(X)
    fits = [fit_direction(X, y, "whitened", whitening=wt) for y in ys]
    names = ["a", "b", "c"]
    ds = DirectionSet(names, np.stack([f[0] for f in fits]).astype(np.float32), (X @ np.stack([f[0] for f in fits]).T).std(0),
                      np.array([f[2] for f in fits], np.float32), np.zeros((3, 1, D), np.float32),
                      np.zeros((3, 1), np.float32), np.zeros(D, np.float32), {"method": "whitened"}, wt.covariance)
    normals = np.stack([f[1] for f in fits])
    for i, name in enumerate(names):
        _, gain, cos = ds.conditional(name)
        step_c, step_p = ds.step_vector(name, 2.0, True).astype(np.float64), ds.step_vector(name, 2.0).astype(np.float64)
        for j in range(3):
            if j != i:           # the other classifiers' scores do not move (relative to the target's)
                assert abs(normals[j] @ step_c) < 1e-4 * abs(normals[i] @ step_c), (name, names[j])
        assert 0 < cos <= 1
        if gain < 3:
            assert abs(normals[i] @ step_c - normals[i] @ step_p) < 1e-4 * abs(normals[i] @ step_p)


def test_whitening_is_the_sample_geometry():
    X, _ = _samples([_v()])
    wt = fit_whitening(X)
    Xw = wt.whiten(X)
    np.testing.assert_allclose(np.cov(Xw.T), np.eye(D), atol=0.02)            # unit covariance after
    np.testing.assert_allclose(wt.sqrt @ wt.sqrt, wt.covariance, atol=1e-10)
    np.testing.assert_allclose(wt.sqrt @ wt.inv_sqrt, np.eye(D), atol=1e-10)
    assert 0 <= wt.shrinkage < 0.05 and wt.eigenvalues[0] / wt.eigenvalues[-1] > 50
    with pytest.raises(InputError, match="at least 2 finite samples"):
        fit_whitening(np.zeros((1, D)))
    with pytest.raises(InputError, match="Unknown direction method 'zca'"):
        fit_direction(X, np.arange(N) % 2 == 0, "zca")


def test_fit_cli_whitened_end_to_end(tmp_path, capsys):
    """--method whitened on a generator: stored in the metadata, the README and the file (covariance,
    format 2); steps are still one SD of w . d over the fitting samples; bad files are refused."""
    G = _random_generator(0).eval()
    model, out = tmp_path / "gen", tmp_path / "dirs"
    G.save_pretrained(model)
    assert cli_main(["fit", "--model", str(model), "--n", "150", "--attributes", "yaw,smile", "--min-validity", "0",
                     "--no-bands", "--method", "whitened", "--out", str(out)]) == 0
    ds = load_directions(out, G)
    assert ds.meta["method"] == "whitened" and ds.meta["version"] == 2 and ds.covariance.shape == (G.w_dim, G.w_dim)
    assert "Method: **whitened" in (out / "README.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["fit"]["method"] == "whitened"
    w = L.z_to_ws(G, L.seeds_to_z(list(range(150)), G.z_dim), psi=1.0)[:, 0].numpy().astype(np.float64)
    np.testing.assert_allclose(((w - w.mean(0)) @ ds.vectors.T.astype(np.float64)).std(0), ds.scales, rtol=1e-4)
    np.testing.assert_allclose(ds.covariance, fit_whitening(w).covariance, rtol=1e-6, atol=1e-9)
    plain = fit_directions(G, Brightness(), ["brightness"], n=120, mixed=False, log=None)
    assert plain.meta["method"] == "plain" and plain.covariance is None
    assert DirectionSet.load(plain.save(tmp_path / "plain")).meta["version"] == 1
    # A damaged covariance is refused.
    with np.load(out / "directions.npz", allow_pickle=False) as z:
        arrs = {k: z[k] for k in z.files}
    arrs["covariance"] = arrs["covariance"] - 10 * np.eye(G.w_dim) * np.abs(arrs["covariance"]).max()
    np.savez(tmp_path / "bad.npz", **arrs)
    with pytest.raises(LatentError, match="symmetric positive definite"):
        load_directions(tmp_path / "bad.npz")
    with pytest.raises(SystemExit):
        cli_main(["fit", "--model", str(model), "--method", "zca", "--out", str(out)])
    capsys.readouterr()

"""Unsupervised directions (facegen.packs.unsupervised) and the one place that picks a direction set
(facegen.features.editing.directions_for), no app.

Real generators throughout: a seeded random one (always there), the StyleGAN2-ADA golden fixture
(skips when ../shared/fixtures is absent) and mini with its world predictor (skip when not built).
"""


import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from facegen.engine import latents as L
from facegen.engine.errors import InputError
from facegen.engine.synthesis import synthesize
from facegen.features import editing
from facegen.packs import unsupervised as U
from facegen.packs.directions import load_directions

from conftest import ADA_FIXTURE, _random_generator
from test_directions import Brightness

torch.set_num_threads(1)
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def G():
    return _random_generator(0).eval()


@pytest.fixture(scope="module")
def ada():
    if not ADA_FIXTURE.exists():
        pytest.skip(f"the StyleGAN2-ADA golden fixture is absent ({ADA_FIXTURE}): it lives in ../shared/fixtures")
    from facegen.engine.loaders import load_generator
    return load_generator(str(ADA_FIXTURE)).eval()


def fresh_w(G, n=10000, seed=12345):
    return U.sample_w(G, n, seed)


@pytest.mark.parametrize("which", ["G", "ada"])
@pytest.mark.parametrize("method", U.METHODS)
def test_components_are_orthonormal_with_sd_steps(request, which, method):
    """Unit, mutually orthogonal directions; one step = the std of fresh samples' projections on it."""
    gen = request.getfixturevalue(which)
    ds = U.unsupervised_directions(gen, method)
    K = len(ds.names)
    assert ds.names == [f"component {k}" for k in range(1, K + 1)] and K == U.N_COMPONENTS
    np.testing.assert_allclose(ds.vectors.astype(np.float64) @ ds.vectors.T, np.eye(K), atol=1e-5)
    assert ds.meta["method"] == method and ds.meta["fingerprint"] == gen.fingerprint
    assert np.isnan(ds.accuracy).all() and U.is_unsupervised(ds)
    w = fresh_w(gen)
    sd = ((w - w.mean(0)) @ ds.vectors.T.astype(np.float64)).std(0)
    np.testing.assert_allclose(ds.scales, sd, rtol=0.05)
    # A step of +2 moves w by two of those standard deviations along the component, on the edit layers.
    ws = L.seeds_to_ws(gen, [5], psi=0.7)[0].numpy()
    out = editing.edit_ws(ws, ds, {"component 2": 2.0})
    np.testing.assert_allclose((out[0] - ws[0]) @ ds.vectors[1], 2 * ds.scales[1], rtol=1e-4)


@pytest.mark.parametrize("which", ["G", "ada"])
def test_first_component_explains_most_variance(request, which):
    gen = request.getfixturevalue(which)
    ds = U.unsupervised_directions(gen, "ganspace")
    ev = np.asarray(ds.meta["explained_variance_ratio"])
    assert np.all(np.diff(ev) <= 1e-12) and 0 < ev.sum() <= 1
    X = fresh_w(gen)
    X = X - X.mean(0)
    var = lambda v: float(np.var(X @ v))                     # noqa: E731
    comps = [var(v.astype(np.float64)) for v in ds.vectors]
    assert comps[0] == max(comps)
    rng = np.random.default_rng(7)
    rand = rng.standard_normal((200, gen.w_dim))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    assert comps[0] > max(var(r) for r in rand)
    # the share of variance it explains on fresh samples is what the set says (within sampling error)
    assert abs(comps[0] / np.trace(np.cov(X.T)) - ev[0]) < 0.01


def _styles(G, ws):
    """Every style vector the synthesis computes for ws (forward hooks on the affine layers), concatenated."""
    out, hooks = [], []
    for m in G.synthesis.modules():
        if hasattr(m, "affine"):
            hooks.append(m.affine.register_forward_hook(lambda mod, inp, o: out.append(o.detach().flatten())))
    try:
        with torch.no_grad():
            G.synthesis(torch.as_tensor(ws), noise_mode="const")
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(out).double().numpy()


def test_sefa_directions_move_their_layers_styles_most(G):
    """SeFa's directions are the ones that change the styles of their layers most: measured through the
    synthesis network's own style outputs (hooks), not through the factorised weights."""
    ds = U.unsupervised_directions(G, "sefa")
    ws = L.seeds_to_ws(G, [3], psi=0.7).numpy()
    base = _styles(G, ws)

    def change(v, layers):
        x = ws.copy()
        x[0, layers] += 0.1 * np.asarray(v, np.float32)
        return np.linalg.norm(_styles(G, x) - base)

    rng = np.random.default_rng(3)
    rand = rng.standard_normal((20, G.w_dim))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    layers = ds.default_layers
    assert change(ds.vectors[0], layers) > max(change(r, layers) for r in rand)
    for b, (band, blayers) in enumerate(ds.bands):
        assert change(ds.band_vectors[0, b], blayers) > max(change(r, blayers) for r in rand), band


def test_deterministic_and_cached(ada):
    U.clear_cache()
    a = U.unsupervised_directions(ada)             # how long it takes: bench/timing.py
    assert U.unsupervised_directions(ada) is a                           # cached per fingerprint
    U.clear_cache()
    b = U.unsupervised_directions(ada)
    assert b is not a
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)        # seeded: the same components
    np.testing.assert_allclose(a.scales, b.scales, rtol=1e-6)
    other = U.ganspace_directions(ada, seed=1)
    assert np.abs(np.abs(np.sum(other.vectors[0] * a.vectors[0])) - 1) < 0.05     # another seed, same first axis


def test_save_load_keeps_nan_accuracy(G, tmp_path):
    ds = U.unsupervised_directions(G)
    back = load_directions(ds.save(tmp_path / "pca.npz"), G)
    assert back.names == ds.names and back.meta["method"] == "ganspace" and np.isnan(back.accuracy).all()
    np.testing.assert_array_equal(back.vectors, ds.vectors)


def test_bad_sizes(G):
    with pytest.raises(InputError, match="1 to 128 components"):
        U.ganspace_directions(G, n_components=0)
    with pytest.raises(InputError, match="at least 256 samples"):
        U.ganspace_directions(G, n_samples=100)
    with pytest.raises(InputError, match="Unknown method 'ica'"):
        U.unsupervised_directions(G, "ica")


def test_naming_by_a_labeller_sign_aligns(G):
    """A labeller names the components it sees move (brightness on the random generator), and + then
    increases that attribute on faces the naming never saw."""
    lab = Brightness()
    ds = U.unsupervised_directions(G, labeller=lab)
    named = [n for n in ds.names if n.startswith("brightness (component ")]
    assert named, ds.meta["naming"]
    assert all(n == f"component {i + 1}" or n.endswith(f"(component {i + 1})") for i, n in enumerate(ds.names))
    strong = [f"brightness (component {c['component']})" for c in ds.meta["naming"]["components"]
              if c["named"] == "brightness" and abs(c["top"][0]["effect"]) >= 1.5]
    assert strong, ds.meta["naming"]
    ws = L.seeds_to_ws(G, "700-731", psi=0.7).numpy()
    for name in strong:
        gains = np.array([np.diff(lab.predict(synthesize(G, editing.sweep_ws(w, ds, name, [-2, 2])))["brightness"])[0]
                          for w in ws])
        assert gains.mean() > 0 and np.mean(gains > 0) >= 0.75, (name, np.round(gains, 3))


def test_naming_on_mini_finds_yaw(mini):
    """The world predictor knows mini's domain: among the first three components one turns the head, and
    its + end turns it to the viewer's right on fresh faces (measured: a change of 0.5-1.5 in predicted yaw)."""
    from facegen.labels.base import load_labeller
    ds = U.unsupervised_directions(mini, labeller="world")
    yaw = [n for n in ds.names[:3] if n.startswith("yaw (component ")]
    assert yaw, ds.names
    P = load_labeller("world")
    ws = L.seeds_to_ws(mini, "500-507", psi=0.7).numpy()
    rhos, rise = [], []
    for w in ws:
        y = P.predict(synthesize(mini, editing.sweep_ws(w, ds, yaw[0], np.linspace(-2, 2, 5))))["yaw"]
        rhos.append(spearmanr(np.arange(5), y)[0])
        rise.append(y[-1] - y[0])
    assert np.median(rhos) >= 0.9 and np.mean(rise) > 0.3, (np.round(rhos, 2), np.round(rise, 3))


def test_directions_for_pack_or_fallback(G, mini):
    from facegen.packs.pack import find_pack
    ds, note = editing.directions_for(G, None)
    assert U.is_unsupervised(ds) and note == editing.FALLBACK_NOTE
    assert "principal components (GANSpace)" in note
    assert editing.guide_for(G, ds) is None                 # components are not guided
    pack = find_pack(mini)
    ds, note = editing.directions_for(mini, pack)
    assert not U.is_unsupervised(ds) and "yaw" in ds.names and "from the pack 'mini'" in note


def test_steps_text_and_names(G):
    ds = U.unsupervised_directions(G, labeller=Brightness())
    named = next(n for n in ds.names if n.startswith("brightness"))
    k = named.split("component ")[1].rstrip(")")
    assert editing.parse_steps('{"component 1": 1.5, "x": -2}') == {"component 1": 1.5, "x": -2}
    assert editing.parse_steps("component 1=1.5, hair_color:black = -2,component 1=0.5") == \
        {"component 1": 2.0, "hair_color:black": -2.0}
    assert editing.parse_steps("") == {} and editing.parse_steps(None) == {}
    assert editing.check_steps(ds, {f"component {k}": 1, named: 0.5}) == {named: 1.5}
    with pytest.raises(InputError, match="Cannot read 'yaw: 2'"):
        editing.parse_steps("yaw: 2")
    with pytest.raises(InputError, match="Cannot read the steps as JSON"):
        editing.parse_steps('{"yaw": }')
    with pytest.raises(InputError, match=r"Unknown direction 'wings': this generator's directions are component 1"):
        editing.check_steps(ds, {"wings": 1})
    assert sum(n.startswith("brightness") for n in ds.names) > 1      # measured: several components brighten
    with pytest.raises(InputError, match="'brightness' is ambiguous"):
        editing.check_steps(ds, {"brightness": 1})

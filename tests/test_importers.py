"""Published directions (facegen.packs.importers): files written here in the exact upstream layouts
(InterFaceGAN Z boundaries, seeprettyface W directions, e4e InterFaceGAN tensors and GANSpace PCA),
imported for a small generator with w_dim = z_dim = 512, plus the refusals (pickles, shapes, widths)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facegen.engine import latents as L
from facegen.engine.errors import InputError, LatentError
from facegen.packs.importers import import_directions, z_direction_to_w

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def G512():
    """A small generator of FFHQ's latent widths (z = w = 512), 64 px so it has 10 layers (> 8)."""
    from facegen.engine.networks import Generator
    torch.manual_seed(0)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=64, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=64, channel_max=16))
    return G.eval()


def unit(rng, n=512):
    v = rng.standard_normal(n)
    return v / np.linalg.norm(v)


def w_of(G, seeds):
    with torch.no_grad():
        return L.z_to_ws(G, L.seeds_to_z(seeds, G.z_dim))[:, 0].double().numpy()


# ---------------------------------------------------------------------------
# Z -> W
# ---------------------------------------------------------------------------


def test_z_to_w_is_exact_for_a_linear_mapping():
    rng = np.random.default_rng(0)
    M, b = rng.standard_normal((24, 16)), rng.standard_normal(24)
    n = unit(rng, 16)
    mapping = lambda z: z.double() @ torch.as_tensor(M).T + torch.as_tensor(b)   # noqa: E731
    d, agreement = z_direction_to_w(mapping, n, 16, n_samples=300)
    exact = M @ n / np.linalg.norm(M @ n)
    np.testing.assert_allclose(d, exact, atol=1e-6)
    assert agreement == pytest.approx(1.0, abs=1e-6)


def test_interfacegan_boundary_is_mapped_into_w(G512, tmp_path):
    rng = np.random.default_rng(1)
    n = unit(rng).astype(np.float32)[None]                        # (1, 512) float32, as published
    np.save(tmp_path / "boundary_Smiling.npy", n)
    ds = import_directions("interfacegan", [tmp_path / "boundary_Smiling.npy"], G512, n_samples=400)
    assert ds.names == ["smiling"]
    d = ds.vector("smiling").astype(np.float64)
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5)
    det = ds.meta["attributes"]["smiling"]
    assert ds.meta["source"]["space"] == "z" and det["space"] == "z" and det["z_to_w"] == "averaged finite difference"
    assert ds.default_layers == list(range(G512.num_ws))      # a Z edit changes w on every layer
    # The W direction is where moving z along n takes w: per-seed differences point along it.
    z = L.seeds_to_z(range(1000, 1064), 512)
    with torch.no_grad():
        diff = (L.z_to_ws(G512, z + torch.as_tensor(n))[:, 0] - L.z_to_ws(G512, z)[:, 0]).double().numpy()
    cos = diff @ d / np.linalg.norm(diff, axis=1)
    assert cos.mean() > 0.5 and det["z_to_w_agreement"] == pytest.approx(cos.mean(), abs=0.1)
    # One step = one standard deviation of w . d over the generator's own samples (seeds 0..399).
    w = w_of(G512, range(400))
    assert ds.scales[0] == pytest.approx(((w - w.mean(0)) @ d).std(), rel=1e-4)


# ---------------------------------------------------------------------------
# W directions
# ---------------------------------------------------------------------------


def test_seeprettyface_direction_edits_the_first_8_layers(G512, tmp_path):
    from facegen.features.editing import edit_ws
    rng = np.random.default_rng(2)
    row = unit(rng) * 0.36                                          # not unit length, as published
    np.save(tmp_path / "age.npy", np.repeat(row[None], 18, 0))        # (18, 512) float64
    np.save(tmp_path / "smile.npy", (unit(rng) * 0.52)[None])        # (1, 512) is accepted too
    ds = import_directions("seeprettyface", [tmp_path / "age.npy", tmp_path / "smile.npy"], G512, n_samples=300)
    assert ds.names == ["age", "smile"]
    np.testing.assert_allclose(ds.vector("age"), row / np.linalg.norm(row), atol=1e-6)
    assert ds.meta["attributes"]["age"]["native_norm"] == pytest.approx(0.36)
    assert ds.default_layers == list(range(8))
    ws = L.seeds_to_ws(G512, [5]).numpy()[0]
    out = edit_ws(ws, ds, {"age": 2.0})
    np.testing.assert_allclose(out[8:], ws[8:])                       # layers 8-9 untouched
    np.testing.assert_allclose(out[:8] - ws[:8], np.broadcast_to(2.0 * ds.scales[0] * ds.vector("age"), (8, 512)),
                               atol=1e-5)


def test_e4e_interfacegan_tensors(G512, tmp_path):
    rng = np.random.default_rng(3)
    age, pose = unit(rng), unit(rng)
    torch.save(torch.tensor(age, dtype=torch.float32)[None], tmp_path / "age.pt")                    # [1, 512]
    torch.save(torch.tensor(pose, dtype=torch.float32)[None, None].repeat(1, 18, 1), tmp_path / "pose.pt")  # [1, 18, 512]
    ds = import_directions("e4e-interfacegan", [tmp_path / "age.pt", tmp_path / "pose.pt"], G512, n_samples=200)
    assert ds.names == ["age", "pose"]
    np.testing.assert_allclose(ds.vector("pose"), pose, atol=1e-6)
    np.testing.assert_allclose(ds.vector("age"), age, atol=1e-6)
    assert ds.default_layers == list(range(G512.num_ws)) and ds.meta["source"]["format"] == "e4e-interfacegan"


@pytest.mark.parametrize("comp_layout", ["k1w", "kw"])
def test_e4e_ganspace_components(G512, tmp_path, comp_layout):
    q, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((512, 6)))
    comp = torch.tensor(q.T, dtype=torch.float32)                                  # [6, 512] orthonormal
    pca = {"mean": torch.randn(1, 512), "comp": comp[:, None] if comp_layout == "k1w" else comp,
           "std": torch.tensor([3.0, 2.5, 2.0, 1.5, 1.0, 0.5])}
    torch.save(pca, tmp_path / "ffhq_pca.pt")
    ds = import_directions("e4e-ganspace", [tmp_path / "ffhq_pca.pt"], G512, n_samples=200, components=[0, 3],
                           layers=[4, 5])
    assert ds.names == ["pc0", "pc3"]
    np.testing.assert_allclose(ds.vector("pc3"), q[:, 3], atol=1e-6)
    assert ds.meta["attributes"]["pc3"]["pca_std"] == pytest.approx(1.5)
    assert ds.default_layers == [4, 5]
    with pytest.raises(InputError, match="do not exist"):
        import_directions("e4e-ganspace", [tmp_path / "ffhq_pca.pt"], G512, components=[6])


# ---------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------


class Payload:
    """Something that is not a tensor (weights_only loading must refuse it)."""


def test_pickled_object_array_is_refused(G512, tmp_path):
    np.save(tmp_path / "boundary_Evil.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(LatentError, match="pickled Python objects"):
        import_directions("interfacegan", [tmp_path / "boundary_Evil.npy"], G512)


def test_pickled_object_in_pt_is_refused(G512, tmp_path):
    torch.save({"mean": torch.zeros(1, 512), "comp": Payload(), "std": torch.ones(1)}, tmp_path / "ffhq_pca.pt")
    with pytest.raises(LatentError, match="weights_only"):
        import_directions("e4e-ganspace", [tmp_path / "ffhq_pca.pt"], G512)


def test_wrong_shapes_are_refused_with_the_expected_shape(G512, tmp_path):
    np.save(tmp_path / "age.npy", np.ones((1, 256)))
    with pytest.raises(LatentError, match=r"shape \(1, 256\).*width 512"):
        import_directions("seeprettyface", [tmp_path / "age.npy"], G512)
    rows = np.random.default_rng(5).standard_normal((18, 512))
    np.save(tmp_path / "gender.npy", rows)
    with pytest.raises(LatentError, match="different per-layer rows"):
        import_directions("seeprettyface", [tmp_path / "gender.npy"], G512)
    torch.save({"comp": torch.zeros(3, 512)}, tmp_path / "pca.pt")
    with pytest.raises(LatentError, match="'mean', 'comp' and 'std'"):
        import_directions("e4e-ganspace", [tmp_path / "pca.pt"], G512)


def test_w_dim_mismatch_is_refused(tmp_path):
    from facegen.engine.networks import Generator
    torch.manual_seed(0)
    G64 = Generator(z_dim=64, c_dim=0, w_dim=64, img_resolution=16, mapping_kwargs=dict(num_layers=2),
                    synthesis_kwargs=dict(channel_base=64, channel_max=16))
    torch.save(torch.ones(1, 512), tmp_path / "smile.pt")
    with pytest.raises(LatentError, match="width 64"):
        import_directions("e4e-interfacegan", [tmp_path / "smile.pt"], G64)
    np.save(tmp_path / "boundary_Male.npy", np.ones((1, 512), np.float32))
    with pytest.raises(LatentError, match="width 64"):
        import_directions("interfacegan", [tmp_path / "boundary_Male.npy"], G64)


# ---------------------------------------------------------------------------
# The command: a pack the studio finds by fingerprint
# ---------------------------------------------------------------------------


def test_import_directions_command_writes_a_pack(G512, tmp_path, monkeypatch):
    from facegen.engine.loaders import load_generator
    from facegen.packs.directions import find_directions
    from facegen.packs.pack import find_pack, load_pack
    model = tmp_path / "g512"
    G512.save_pretrained(model)
    G = load_generator(model)
    row = unit(np.random.default_rng(6)) * 0.4
    np.save(tmp_path / "smile.npy", np.repeat(row[None], 18, 0))
    out = tmp_path / "pack"
    cmd = [sys.executable, "-m", "facegen", "pack", "import-directions", "--format", "seeprettyface",
           str(tmp_path / "smile.npy"), "--model", str(model), "--out", str(out), "--n", "200"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    pack = load_pack(out, G)
    assert pack.has("directions") and pack.manifest["provenance"]["upstream"].startswith("a312863063/")
    assert "import-directions --format seeprettyface" in (out / "README.md").read_text()
    monkeypatch.setenv("FACEGEN_PACKS", str(out))
    assert find_pack(G).root == out
    ds = find_directions(G, pack)
    assert ds.names == ["smile"] and ds.default_layers == list(range(8))
    np.testing.assert_allclose(ds.vector("smile"), row / np.linalg.norm(row), atol=1e-6)
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--replace" in again.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"]["directions"]["imported"]["format"] == "seeprettyface"

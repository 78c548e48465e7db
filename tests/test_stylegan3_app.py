"""StyleGAN3 in the studio (issue #15, item 2): every tab on a StyleGAN3 pickle, translate / rotate.

* The studio serving the official-format ``stylegan3-t-tiny`` golden fixture (no pack) answers every
  documented endpoint (the same walk as tests/test_any_generator.py), with its own layer bands.
* The random-faces tab's translate / rotate controls: the images the app returns equal
  ``G.synthesis(ws, transform=...)`` computed here with the fixture's stored matrices (which themselves
  reproduce the fixture's expected ``img_transformed`` / ``img_transform_scaled``); all zeros give the
  plain image pixel for pixel; share links, latent files and the API carry the values; the shared
  generator is never changed (concurrent requests with different transforms do not mix).
* SeFa reads StyleGAN3's style affines; the registry names NVIDIA's published StyleGAN3 files.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl, urlparse

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FIXTURES, ROOT, launch_app

SG3 = FIXTURES / "stylegan3-t-tiny"
SG3_PKL = SG3 / "G_ema.pkl"
FIXTURE_MOVE = dict(translate_x=0.125, translate_y=-0.0625, rotate=30.0)   # -> io's transform_img_transformed

needs_fixture = pytest.mark.skipif(not SG3_PKL.exists(), reason=f"golden fixture absent ({SG3_PKL}); the "
                                   "fixtures live in ../shared/fixtures")
pytestmark = needs_fixture


@pytest.fixture(scope="module")
def G():
    from facegen import load_generator
    torch.set_num_threads(1)
    return load_generator(SG3_PKL)


@pytest.fixture(scope="module")
def io():
    from safetensors.numpy import load_file
    return load_file(str(SG3 / "io.safetensors"))


@pytest.fixture(scope="module")
def sg3(tmp_path_factory, G):
    """(client, model path, G) for the studio serving the StyleGAN3 fixture with no pack."""
    from gradio_client import Client
    proc, url = launch_app(str(SG3_PKL), tmp_path_factory.mktemp("sg3-app"))
    yield Client(url, verbose=False), str(SG3_PKL), G
    proc.terminate()
    proc.wait(timeout=30)


def _png(item) -> np.ndarray:
    path = item["image"] if isinstance(item, dict) else item[0]
    return np.asarray(Image.open(path).convert("RGB"))


def _uint8(img: torch.Tensor) -> np.ndarray:
    """The official generate.py mapping, written out here (not facegen's)."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


@torch.no_grad()
def _render(G, seeds, psi, transform=None) -> np.ndarray:
    from facegen.engine import latents as L
    ws = L.seeds_to_ws(G, seeds, psi=psi)
    t = None if transform is None else torch.as_tensor(np.asarray(transform, np.float32))
    return _uint8(G.synthesis(ws, **({} if t is None else {"transform": t})))


# ---------------------------------------------------------------------------
# Every tab
# ---------------------------------------------------------------------------


def test_every_tab_answers_on_a_stylegan3_pickle(sg3):
    import test_any_generator as any_generator
    c, model, G = sg3
    assert G.num_ws == 16 and type(G).__name__ == "StyleGAN3Generator"
    any_generator.test_every_tab_answers_on_an_official_pickle_without_a_pack(sg3)
    # Its layer bands come from its own num_ws (16): coarse 0-3, middle 4-7, fine 8-15.
    assert tuple(c.predict("coarse", model, api_name="/mix_preset")) == (0, 3)
    assert tuple(c.predict("fine", model, api_name="/mix_preset")) == (8, 15)
    grid, cells = c.predict("0", "5", 8, 15, 0.7, "const", api_name="/mix")[:2]
    from facegen.engine import latents as L
    ws = torch.cat([L.seeds_to_ws(G, [s], psi=0.7) for s in (0, 5)])      # one by one, as the tab resolves faces
    mixed = L.style_mix(ws[:1], ws[1:], range(8, 16))
    with torch.no_grad():
        expect = _uint8(G.synthesis(torch.cat([ws, mixed])))[2]     # the app renders sources, templates, cells
    assert np.array_equal(_png(cells[0]), expect)


# ---------------------------------------------------------------------------
# Translate / rotate in the random-faces tab
# ---------------------------------------------------------------------------


def test_moved_faces_equal_the_synthesis_with_the_fixture_matrix(sg3, io):
    from facegen.engine import latents as L
    from facegen.engine.stylegan3 import transform_matrix
    c, model, G = sg3
    T = io["transform_img_transformed"]
    # The tab's numbers give the fixture's matrix, and that matrix per call gives the fixture's images.
    mine = transform_matrix((FIXTURE_MOVE["translate_x"], FIXTURE_MOVE["translate_y"]), FIXTURE_MOVE["rotate"])
    assert np.abs(mine.astype(np.float32) - T).max() < 1e-6
    with torch.no_grad():
        for key in ("img_transformed", "img_transform_scaled"):
            out = G.synthesis(torch.from_numpy(io["ws"]), transform=torch.from_numpy(io[f"transform_{key}"]))
            assert (out - torch.from_numpy(io[key])).abs().max().item() <= 1e-5, key

    gallery, files, link = c.predict("0-1", 2, 1.0, 0, "const", **FIXTURE_MOVE, api_name="/generate")[:3]
    got = np.stack([_png(g) for g in gallery])
    assert np.array_equal(got, _render(G, [0, 1], 1.0, T))
    plain = _render(G, [0, 1], 1.0)
    spread = np.abs(plain - plain.mean((1, 2), keepdims=True)).mean()      # the faces' own contrast (random weights)
    assert np.abs(got.astype(int) - plain).mean() > 0.5 * spread, "the transform did not move the faces"
    # The link and the latent files carry the move.
    q = dict(parse_qsl(urlparse(link).query))
    assert (q["tx"], q["ty"], q["rot"]) == ("0.125", "-0.0625", "30")
    _, meta = L.load_latent(files[0] if isinstance(files[0], str) else files[0]["path"], G)
    assert meta["translate"] == [0.125, -0.0625] and meta["rotate"] == 30.0

    # Afterwards, and with explicit zeros, the plain image comes back pixel for pixel: the shared G kept its
    # stored transform (the fixture's is not the identity, so "0" is not the identity matrix either).
    zeros = c.predict("0-1", 2, 1.0, 0, "const", translate_x=0, translate_y=0, rotate=0, api_name="/generate")
    default = c.predict("0-1", 2, 1.0, 0, "const", api_name="/generate")
    for out in (zeros, default):
        assert np.array_equal(np.stack([_png(g) for g in out[0]]), plain)
        assert not {"tx", "ty", "rot"} & set(dict(parse_qsl(urlparse(out[2]).query)))
    assert not np.array_equal(plain, _render(G, [0, 1], 1.0, np.eye(3)))


def test_share_link_recreates_the_moved_faces(sg3):
    from facegen import studio
    c, model, G = sg3
    gallery, _, link = c.predict("7", 1, 0.7, 0, "const", translate_x=-0.1, translate_y=0.05, rotate=-45,
                                 api_name="/generate")[:3]
    p = studio.decode_link(dict(parse_qsl(urlparse(link).query)))
    assert p["problems"] == [] and (p["tx"], p["ty"], p["rot"]) == (-0.1, 0.05, -45.0)
    again = c.predict(p["seeds"], 1, p["psi"], p["cutoff"], p["noise"], translate_x=p["tx"], translate_y=p["ty"],
                      rotate=p["rot"], api_name="/generate")[0]
    assert np.array_equal(_png(again[0]), _png(gallery[0]))
    assert np.array_equal(_png(gallery[0]), _render(G, [7], 0.7, studio.check_transform(G, -0.1, 0.05, -45))[0])
    bad = studio.decode_link({"tab": "generate", "seeds": "7", "rot": "abc", "tx": "inf"})
    assert bad["rot"] == 0.0 and bad["tx"] == 0.0 and len(bad["problems"]) == 2


def test_bad_moves_are_refused_with_a_message(sg3, G):
    from gradio_client.exceptions import AppError
    from facegen import studio
    from facegen.engine.errors import InputError
    from facegen.engine.networks import Generator
    c = sg3[0]
    with pytest.raises(AppError, match="maximum value 180"):          # the sliders' own range check
        c.predict("0", 1, 0.7, 0, "const", rotate=400, api_name="/generate")
    with pytest.raises(AppError, match="minimum value -1"):
        c.predict("0", 1, 0.7, 0, "const", translate_x=-1.5, api_name="/generate")
    with pytest.raises(InputError, match="Rotate must be between -180 and 180 degrees"):
        studio.check_transform(G, 0, 0, 400)
    with pytest.raises(InputError, match="Translate y must be between -1 and 1 image widths"):
        studio.check_transform(G, 0, float("nan"), 0)
    sg2 = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=8, mapping_kwargs=dict(num_layers=1),
                    synthesis_kwargs=dict(channel_base=64, channel_max=16))
    assert not studio.takes_transform(sg2) and studio.takes_transform(G)
    assert studio.check_transform(sg2, 0, 0, 0) is None
    with pytest.raises(InputError, match="need a StyleGAN3 generator"):
        studio.check_transform(sg2, 0, 0, 10)


def _visible(url: str, elem_id: str) -> bool:
    import urllib.request
    config = json.load(urllib.request.urlopen(url.rstrip("/") + "/config", timeout=30))
    (comp,) = [c for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    return comp["props"].get("visible", True)


def test_the_controls_show_for_stylegan3_only(sg3, ada_app_url):
    c = sg3[0]
    assert _visible(c.src, "gen-move") and not _visible(ada_app_url, "gen-move")
    # Switching the session to another model (mini: StyleGAN2) hides the row (a layout update, not returned
    # to a client) and zeroes the three moves, which follow the Class input's update.
    if not (ROOT / "assets" / "mini" / "config.json").exists():
        pytest.skip("the embedded mini generator is not built")
    out = c.predict("mini", api_name="/load_model")
    i = next(k for k, u in enumerate(out) if isinstance(u, dict) and str(u.get("label", "")).startswith("Class"))
    assert [u.get("value") for u in out[i + 1:i + 4]] == [0, 0, 0]


def test_directions_of_the_controls(G):
    """+x moves the content right, +y down, + rotate turns it counter-clockwise (as displayed)."""
    from facegen import studio
    from facegen.engine import latents as L
    ws = L.seeds_to_ws(G, [0, 1, 2, 3], psi=0.7)
    base = _render(G, [0, 1, 2, 3], 0.7, np.eye(3)).astype(float)

    def best_shift(moved, axis):            # the roll of `base` that matches `moved` best (interior only)
        err = {k: np.abs(np.roll(base, k, axis=axis) - moved)[:, 6:-6, 6:-6].mean() for k in range(-6, 7)}
        return min(err, key=err.get)
    right = _render(G, [0, 1, 2, 3], 0.7, studio.check_transform(G, 0.125, 0, 0)).astype(float)   # 4 px of 32
    down = _render(G, [0, 1, 2, 3], 0.7, studio.check_transform(G, 0, 0.125, 0)).astype(float)
    assert best_shift(right, 2) == 4 and best_shift(down, 1) == 4
    # Rotation: the Fourier input turns exactly (config T's later layers are not rotation equivariant).
    with torch.no_grad():
        f0 = G.synthesis.input(ws[:, 0], torch.eye(3)).numpy()
        f90 = G.synthesis.input(ws[:, 0], torch.from_numpy(studio.check_transform(G, 0, 0, 90))).numpy()
    assert np.abs(np.rot90(f0, 1, axes=(2, 3)) - f90).max() < 1e-4       # rot90 k=1: counter-clockwise


def test_generate_faces_never_changes_the_shared_generator(io):
    """studio.generate_faces passes the transform per call: the cached G's buffer and fingerprint stay, and
    requests with different moves running at the same time each get their own image."""
    from facegen import studio
    from facegen.engine.fingerprint import fingerprint
    model = str(SG3_PKL)
    G = studio.models().get(model)
    fp = G.fingerprint
    moves = [(0.0, 0.0, 0.0), (0.125, -0.0625, 30.0), (-0.2, 0.1, -90.0), (0.05, 0.0, 0.0)]
    alone = [studio.generate_faces(model, [3, 4], 0.7, None, "const", 0, *m)[0] for m in moves]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda i: studio.generate_faces(model, [3, 4], 0.7, None, "const", 0,
                                                                 *moves[i % 4])[0], range(16)))
    for i, imgs in enumerate(together):
        assert np.array_equal(imgs, alone[i % 4]), moves[i % 4]
    assert torch.equal(G.synthesis.input.transform, torch.from_numpy(io["transform_base"]))
    assert fingerprint(G) == fp


# ---------------------------------------------------------------------------
# SeFa on StyleGAN3
# ---------------------------------------------------------------------------


def test_sefa_reads_the_stylegan3_style_affines(G):
    from facegen.engine import latents as L
    from facegen.packs import unsupervised as U
    aff = U.style_affines(G)
    assert sorted(aff) == list(range(G.num_ws))
    assert aff[0][0].shape == (4, G.w_dim)                          # the Fourier input's rotation + translation
    last = G.synthesis.layers()[-1].affine
    np.testing.assert_allclose(aff[G.num_ws - 1][0], last.weight.double().numpy() * last.weight_gain)

    ds = U.sefa_directions(G, n_samples=2 * G.w_dim)
    assert [b["layers"] for b in ds.meta["bands"]] == [[0, 1, 2, 3], [4, 5, 6, 7], list(range(8, 16))]
    styles = []
    hooks = [m.affine.register_forward_hook(lambda mod, inp, o: styles.append(o.detach().flatten()))
             for m in G.synthesis.modules() if hasattr(m, "affine")]

    def style_vector(ws):
        styles.clear()
        with torch.no_grad():
            G.synthesis(torch.as_tensor(ws))
        return torch.cat(styles).double().numpy()
    try:
        ws = L.seeds_to_ws(G, [3], psi=0.7).numpy()
        base = style_vector(ws)

        def change(v, layers):
            x = ws.copy()
            x[0, layers] += 0.1 * np.asarray(v, np.float32)
            return np.linalg.norm(style_vector(x) - base)
        rand = np.random.default_rng(3).standard_normal((20, G.w_dim))
        rand /= np.linalg.norm(rand, axis=1, keepdims=True)
        for vec, layers in [(ds.vectors[0], ds.default_layers)] + [
                (ds.band_vectors[0, b], band["layers"]) for b, band in enumerate(ds.meta["bands"])]:
            assert change(vec, layers) > max(change(r, layers) for r in rand), layers
    finally:
        for h in hooks:
            h.remove()


# ---------------------------------------------------------------------------
# The published StyleGAN3 files in the registry
# ---------------------------------------------------------------------------

PUBLISHED = ["stylegan3-t-ffhq-1024x1024.pkl", "stylegan3-t-ffhqu-1024x1024.pkl", "stylegan3-t-ffhqu-256x256.pkl",
             "stylegan3-r-ffhq-1024x1024.pkl", "stylegan3-r-ffhqu-1024x1024.pkl", "stylegan3-r-ffhqu-256x256.pkl",
             "stylegan3-t-afhqv2-512x512.pkl", "stylegan3-r-afhqv2-512x512.pkl",
             "stylegan3-t-metfaces-1024x1024.pkl", "stylegan3-t-metfacesu-1024x1024.pkl",
             "stylegan3-r-metfaces-1024x1024.pkl", "stylegan3-r-metfacesu-1024x1024.pkl"]


def test_registry_names_the_published_stylegan3_files(tmp_path, monkeypatch):
    from facegen import load_generator, studio
    from facegen.engine import registry
    from facegen.engine.errors import ModelNotFoundError
    monkeypatch.delenv("FACEGEN_REGISTRY", raising=False)
    listed = [n for n in registry.names() if n.startswith("stylegan3")]
    assert sorted(listed) == sorted(f[:-4] for f in PUBLISHED)
    for f in PUBLISHED:
        name = f[:-4]
        e = registry.get(name)
        assert e["file"] == f and "repo" not in e and registry.where(name) == "missing"
        assert e["upstream"] == f"https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/{f}"
        assert e["resolution"] == int(f.rsplit("x", 1)[1][:-4]) and "Source Code License-NC" in e["license"]
        assert ("config T" if "-t-" in f else "config R") in e["description"]
        assert "local copy needed" in studio.ModelManager(env={}).reason(name)
    with pytest.raises(ModelNotFoundError, match="api.ngc.nvidia.com.*FACEGEN_MODEL=/path/to/stylegan3-r-afhqv2"):
        load_generator("stylegan3-r-afhqv2-512x512")
    # A local copy registered under the published name loads as StyleGAN3 (here: the fixture stands in).
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps({"models": [{"name": "stylegan3-t-ffhqu-256x256", "path": str(SG3_PKL)}]}))
    monkeypatch.setenv("FACEGEN_REGISTRY", str(reg))
    G = load_generator("stylegan3-t-ffhqu-256x256")
    assert type(G).__name__ == "StyleGAN3Generator" and G.meta["license"].startswith("Nvidia Source Code")

"""The studio app end to end: the real Gradio server, called through gradio_client."""

from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import torch
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from facegen.engine import latents as L  # noqa: E402
from facegen import studio  # noqa: E402
from facegen.features.generate import generate_seeds  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def close(a, b, tol=2):
    """Equal up to float rounding (a face computed in another batch may differ by an LSB)."""
    a, b = np.asarray(a, int), np.asarray(b, int)
    assert a.shape == b.shape and np.abs(a - b).max() <= tol


def gen(client, model=None, seeds="0-3", count=4, psi=0.7, cutoff=0, noise_mode="const"):
    return client.predict(seeds=seeds, count=count, psi=psi, cutoff=cutoff, noise_mode=noise_mode, model=model,
                          api_name="/generate")


def test_api_lists_every_endpoint(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    for ep in ("/generate", "/generate_to_shelf", "/mix", "/mix_preset", "/fuse", "/shelf_add", "/shelf_import",
               "/shelf_export", "/shelf_remove", "/shelf_clear", "/shelf_list", "/load_model"):
        assert ep in names, ep


def test_generate_images_latents_link(client, G, studio_model):
    gallery, files, link = gen(client, studio_model)
    imgs = [png(item["image"]) for item in gallery]
    assert [item["caption"] for item in gallery] == ["seed 0", "seed 1", "seed 2", "seed 3"]
    R = G.img_resolution
    for im in imgs:
        assert im.shape == (R, R, 3)
        assert im.std() > 2, "image is blank"
    assert not np.array_equal(imgs[0], imgs[1])
    # Same pixels as calling facegen directly (no server).
    direct, _, _ = generate_seeds(G, "0-3", psi=0.7)
    np.testing.assert_array_equal(np.stack(imgs), direct)
    # Deterministic for a seed; in another batch size it differs by float rounding at most.
    again, _, _ = gen(client, studio_model)
    np.testing.assert_array_equal(np.stack([png(i["image"]) for i in again]), np.stack(imgs))
    alone, _, _ = gen(client, studio_model, seeds="2", count=1)
    close(png(alone[0]["image"]), imgs[2])
    # One latent per face (images download from the gallery); the latent carries the fingerprint and reproduces the face.
    npz = sorted((f for f in files if f.endswith(".npz")), key=lambda f: f.rsplit("/", 1)[-1])
    assert len(npz) == 4 == len(files)
    ws, meta = L.load_latent(npz[0], G)
    assert meta["fingerprint"] == G.fingerprint and meta["seed"] == 0
    close(studio.render(studio_model, ws[None])[0], imgs[0])
    q = parse_qs(urlsplit(link).query)
    assert link.startswith("http") and q["tab"] == ["generate"] and q["seeds"] == ["0-3"] and q["psi"] == ["0.7"]


def test_generate_count_and_random(client, studio_model):
    gallery, _, link = gen(client, studio_model, seeds="7", count=3)
    assert [g["caption"] for g in gallery] == ["seed 7", "seed 8", "seed 9"]
    gallery, _, link = gen(client, studio_model, seeds="", count=2)
    assert len(gallery) == 2 and "seeds=" in link


@pytest.mark.parametrize("kwargs, message", [
    (dict(seeds="abc"), "Cannot read seeds"),
    (dict(seeds="5-2"), "runs backwards"),
    (dict(seeds="0-99"), "at most"),
    (dict(psi=7), "greater than maximum"),
    (dict(cutoff=15), "Truncation cutoff must be between 1 and"),
    (dict(noise_mode="loud"), "loud"),
    (dict(model="/etc"), "not in the list of choices"),      # only offered models can be loaded
])
def test_generate_bad_input(client, studio_model, kwargs, message):
    with pytest.raises(AppError, match=message):
        gen(client, **{"model": studio_model, **kwargs})


def test_mix_grid(client, G, studio_model):
    grid, cells, files, link = client.predict(sources="0-1", templates="2-4", layer_start=5, layer_end=8, psi=0.7,
                                              noise_mode="const", model=studio_model, api_name="/mix")
    R = G.img_resolution
    g = png(grid)
    assert g.shape == (3 * R, 4 * R, 3) and len(cells) == 6
    plain, ws, _ = generate_seeds(G, "0-4", psi=0.7)
    # Headers are the plain faces: sources down the left, templates along the top.
    close(g[R:2 * R, :R], plain[0])
    close(g[:R, R:2 * R], plain[2])
    # A cell is the source with the template's layers 5-8.
    mixed = L.style_mix(*(torch.from_numpy(ws[[i]]) for i in (1, 4)), range(5, 9))
    close(g[2 * R:, 3 * R:], studio.render(studio_model, mixed.numpy())[0])
    close(png(cells[5]["image"]), g[2 * R:, 3 * R:], 0)
    assert any(f.endswith(".npz") for f in files)
    q = parse_qs(urlsplit(link).query)
    assert q["tab"] == ["mix"] and q["src"] == ["0-1"] and q["tpl"] == ["2-4"] and q["lo"] == ["5"]


def test_mix_presets_and_errors(client, G, studio_model):
    assert tuple(client.predict("coarse", studio_model, api_name="/mix_preset")) == (0, 3)
    assert tuple(client.predict("fine", studio_model, api_name="/mix_preset")) == (8, G.num_ws - 1)
    with pytest.raises(AppError, match="Layer range 8-5 is not valid"):
        client.predict(sources="0", templates="1", layer_start=8, layer_end=5, psi=0.7, noise_mode="const",
                       model=studio_model, api_name="/mix")
    with pytest.raises(AppError, match="no face #9 on the shelf"):
        client.predict(sources="#9", templates="1", layer_start=5, layer_end=8, psi=0.7, noise_mode="const",
                       model=studio_model, api_name="/mix")


def test_mix_with_bank_faces(client, G, studio_model):
    from facegen.packs.bank import banks_for
    banks = banks_for(G)
    if not banks:
        pytest.skip("no latent bank for the served model (assets/banks is made for mini)")
    name = banks[0].names[0]
    grid, cells, files, link = client.predict(sources=f"@{name}", templates="@" + banks[0].names[1] + ", 3",
                                              layer_start=0, layer_end=3, psi=0.7, noise_mode="const",
                                              model=studio_model, api_name="/mix")
    R = G.img_resolution
    g = png(grid)
    assert g.shape == (2 * R, 3 * R, 3) and len(cells) == 2
    close(g[R:, :R], studio.render(studio_model, banks[0].ws[:1])[0])       # the bank face heads its row
    assert parse_qs(urlsplit(link).query)["src"] == [f"@{name}"]
    with pytest.raises(AppError, match="No bank face called 'Nobody'"):
        client.predict(sources="@Nobody", templates="1", layer_start=5, layer_end=8, psi=0.7, noise_mode="const",
                       model=studio_model, api_name="/mix")


def test_fuse_and_interpolation(client, G, studio_model):
    fused, strip, files, link = client.predict(faces="1, 2", weights="", layer_start=0, layer_end=G.num_ws - 1,
                                               psi=0.7, interp_steps=5, noise_mode="const", model=studio_model,
                                               api_name="/fuse")
    R = G.img_resolution
    f, s = png(fused), png(strip)
    assert f.shape == (R, R, 3) and f.std() > 2
    assert s.shape == (R, 5 * R, 3)
    plain, ws, _ = generate_seeds(G, "1-2", psi=0.7)
    close(s[:, :R], plain[0])          # t = 0 is face 1
    close(s[:, 4 * R:], plain[1])      # t = 1 is face 2
    # Equal weights = the midpoint, which is also the middle of the strip.
    close(f, s[:, 2 * R:3 * R])
    assert parse_qs(urlsplit(link).query)["faces"] == ["1-2"]
    with pytest.raises(AppError, match="at least two faces"):
        client.predict(faces="1", weights="", layer_start=0, layer_end=1, psi=0.7, interp_steps=0,
                       noise_mode="const", model=studio_model, api_name="/fuse")
    with pytest.raises(AppError, match="one weight per face"):
        client.predict(faces="1,2,3", weights="1,2", layer_start=0, layer_end=1, psi=0.7, interp_steps=0,
                       noise_mode="const", model=studio_model, api_name="/fuse")


def test_shelf_is_per_session_and_round_trips(app_url, G, studio_model, tmp_path):
    a, b = Client(app_url, verbose=False), Client(app_url, verbose=False)
    gallery, status = a.predict(faces="5, 6", psi=0.5, model=studio_model, api_name="/shelf_add")
    assert len(gallery) == 2 and "2 face(s)" in status
    gen(a, studio_model, seeds="9", count=1)
    assert len(a.predict(api_name="/generate_to_shelf")) == 3
    assert b.predict(api_name="/shelf_list")[0] == []          # the other session sees nothing
    # A shelf face made from a seed keeps its share token: the link recreates it.
    fused, _, _, link = a.predict(faces="#1, #3", weights="", layer_start=0, layer_end=G.num_ws - 1, psi=0.7,
                                  interp_steps=0, noise_mode="const", model=studio_model, api_name="/fuse")
    assert parse_qs(urlsplit(link).query)["faces"] == ["5@0.5,9"]
    # Export from A, import into B: same latents, same pictures, no warning.
    exported = a.predict(api_name="/shelf_export")
    gallery_b, status_b = b.predict(latent_file=handle_file(exported), model=studio_model, api_name="/shelf_import")
    assert len(gallery_b) == 3 and "⚠" not in status_b
    close(png(gallery_b[0]["image"]), png(gallery[0]["image"]))
    gallery_b, status_b, _ = b.predict(number=1, api_name="/shelf_remove")
    assert len(gallery_b) == 2
    assert a.predict(api_name="/shelf_clear")[0] == []
    assert len(b.predict(api_name="/shelf_list")[0]) == 2


def test_import_warns_and_rejects(client, G, other_generator, studio_model, tmp_path):
    foreign = L.save_latent(tmp_path / "foreign.npz", np.zeros((G.num_ws, G.w_dim), np.float32),
                            fingerprint=other_generator.fingerprint)
    gallery, status = client.predict(latent_file=handle_file(str(foreign)), model=studio_model,
                                     api_name="/shelf_import")
    assert "was made with generator" in status and other_generator.fingerprint in status
    assert "other generator" in gallery[-1]["caption"]
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(AppError, match="corrupt.npz"):
        client.predict(latent_file=handle_file(str(corrupt)), model=studio_model, api_name="/shelf_import")
    wrong = L.save_latent(tmp_path / "wrong.npz", np.zeros((3, 7), np.float32))
    with pytest.raises(AppError, match="does not fit this generator"):
        client.predict(latent_file=handle_file(str(wrong)), model=studio_model, api_name="/shelf_import")


def test_hub_model_offline_is_a_clear_error(client, studio_model):
    with pytest.raises(AppError, match="HF_HUB_OFFLINE|cannot be reached"):
        client.predict("ffhq-ada", api_name="/load_model")
    gallery, _, _ = gen(client, studio_model, seeds="1", count=1)   # the current model still works
    assert len(gallery) == 1


def test_share_link_codec():
    q = studio.encode_link("mix", "mini", src="0-3", tpl="7@0.5,9", lo=5, hi=8, psi=0.7, noise="const")
    p = studio.decode_link({k: v[0] for k, v in parse_qs(q[1:]).items()})
    assert p == {"tab": "mix", "model": "mini", "src": "0-3", "tpl": "7@0.5,9", "lo": 5, "hi": 8, "psi": 0.7,
                 "noise": "const", "problems": []}
    bad = studio.decode_link({"tab": "fuse", "psi": "nan", "steps": "lots"})
    assert bad["psi"] == 0.7 and bad["steps"] == 7 and len(bad["problems"]) == 2
    assert studio.decode_link({}) is None and studio.decode_link({"tab": "nope"})["tab"] is None
    # Re-encoding the decoded link gives the same link (what a shared link recreates is what was shared).
    assert studio.encode_link(p.pop("tab"), p.pop("model"), **{k: v for k, v in p.items() if k != "problems"}) == q

"""The Photo encoding tab end to end: the real app through gradio_client (/encode, shelf, bank, bad input).

The mini app's tests need the encoder of the served model's pack (assets/packs/mini/encoder for assets/mini) and
skip otherwise; the ADA app (the official-format fixture, no pack) encodes by projection from w_avg.
"""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
pytest.importorskip("dlib", reason="face detection needs dlib-bin (pip install dlib-bin face-recognition-models)")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from conftest import ADA_FIXTURE  # noqa: E402
from facegen import studio
from facegen.world import render as world  # noqa: E402
from facegen.packs.encoder import encoder_for  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def G(studio_model):
    G = studio.models().get(studio_model)
    if encoder_for(G, studio.models().pack(G)) is None:
        pytest.skip(f"the served model {studio_model} ({G.fingerprint}) has no pack with an encoder; "
                    "build assets/mini and assets/packs/mini/encoder first")
    return G


@pytest.fixture(scope="module")
def client(G, app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def photo_path():
    import importlib.util
    spec = importlib.util.find_spec("skimage")
    p = Path(spec.origin).parent / "data" / "astronaut.png" if spec else None
    if p is None or not p.is_file():
        pytest.skip("scikit-image's astronaut.png is not installed")
    return p


def encode(client, path, face=1, mode="auto", steps=30, budget=3, model=None, **kw):
    return client.predict(photo=handle_file(str(path)), face=face, mode=mode, refine_steps=steps, time_budget=budget,
                          model=model, api_name="/encode", **kw)


def png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_endpoints_listed(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    for ep in ("/encode", "/encode_to_shelf", "/encode_bank_to_shelf", "/encode_bank_list"):
        assert ep in names, ep


def test_encode_photo_and_send_to_shelf(client, G, studio_model, photo_path):
    out = encode(client, photo_path, model=studio_model)
    preview, aligned, rec_e, rec_r, compare, errors, metrics, files = out[:8]
    R = G.img_resolution
    assert png(aligned).shape == (R, R, 3) and png(rec_r).shape == (R, R, 3) and png(rec_e).shape == (R, R, 3)
    assert png(preview).shape[2] == 3 and png(compare).shape[1] > 3 * R and png(errors).shape[2] == 3
    assert "PSNR" in metrics and "FFHQ-aligned" in metrics and "refinement" in metrics
    assert "the pack's encoder" in metrics and "'world' labeller" in metrics     # mini: its pack's encoder and loss
    npz = [f for f in files if str(f).endswith(".npz")]
    assert npz
    with np.load(npz[0], allow_pickle=False) as d:
        assert d["ws"].shape == (G.num_ws, G.w_dim)
        assert G.fingerprint in str(d["meta"])
    client.predict(api_name="/shelf_clear")
    client.predict(api_name="/encode_to_shelf")
    gallery, status = client.predict(api_name="/shelf_list")
    assert len(gallery) == 1 and gallery[0]["caption"].endswith("photo astronaut")


def test_face_world_render_is_accepted(client, studio_model, tmp_path):
    p = tmp_path / "render.png"
    Image.fromarray(world.render_seed(20_000_200, size=64).image).save(p)
    out = encode(client, p, steps=0, model=studio_model)
    assert "already aligned" in out[6]


def test_encoding_beats_the_average_face(client, G, studio_model, tmp_path):
    """Quality floor through the app, measured on the returned pictures: four face-world renders never used in
    training, taken as aligned and encoded by the tab (encoder, then 20 refinement steps), against the average face G(w_avg) as the
    baseline. PSNR computed here from the aligned target and the reconstructions the API returns."""
    from facegen.engine.synthesis import synthesize
    from facegen.features.encode import reconstruction_metrics
    avg = synthesize(G, G.mapping.w_avg.expand(1, G.num_ws, G.w_dim))[0]
    gains = {"encoder": [], "refined": []}
    for seed in range(20_000_300, 20_000_304):
        p = tmp_path / f"render{seed}.png"
        Image.fromarray(world.render_seed(seed, size=G.img_resolution).image).save(p)
        out = encode(client, p, mode="pre-aligned", steps=20, budget=10, model=studio_model)   # renders are aligned
        target = png(out[1])
        base = reconstruction_metrics(avg, target)["psnr"]
        gains["encoder"].append(reconstruction_metrics(png(out[2]), target)["psnr"] - base)
        gains["refined"].append(reconstruction_metrics(png(out[3]), target)["psnr"] - base)
    assert np.mean(gains["encoder"]) >= 3.0, gains                  # measured: about +6 dB on held-out renders
    assert np.mean(gains["refined"]) >= np.mean(gains["encoder"]), gains     # refinement does not undo it


def test_bank_to_shelf(client, G, studio_model):
    from facegen.packs.bank import banks_for
    if not banks_for(G):
        pytest.skip("no latent bank matches the served model")
    gallery, info = client.predict(model=studio_model, api_name="/encode_bank_list")
    assert len(gallery) >= 1 and "faces" in info
    client.predict(api_name="/shelf_clear")
    client.predict(name="1", model=studio_model, api_name="/encode_bank_to_shelf")
    client.predict(name=gallery[-1]["caption"], model=studio_model, api_name="/encode_bank_to_shelf")
    shelf, _ = client.predict(api_name="/shelf_list")
    assert [g["caption"].split(" ", 1)[1] for g in shelf] == [gallery[0]["caption"], gallery[-1]["caption"]]
    with pytest.raises(AppError, match="not in the bank"):
        client.predict(name="Nobody Atall", model=studio_model, api_name="/encode_bank_to_shelf")


def _bomb_header(w, h):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_bad_uploads_get_clear_errors(client, studio_model, photo_path, tmp_path):
    photo = np.asarray(Image.open(photo_path).convert("RGB"))
    cases = {}
    (tmp_path / "notes.png").write_text("not an image")
    cases["notes.png"] = "not an image"
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases["empty.jpg"] = "empty"
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:4000])
    cases["cut.jpg"] = "truncated|damaged|could not"
    frames = [Image.fromarray(photo), Image.fromarray(photo[::-1].copy())]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    cases["anim.gif"] = "animated"
    (tmp_path / "huge.png").write_bytes(_bomb_header(20000, 20000))
    cases["huge.png"] = "megapixels|too large"
    Image.fromarray(np.full((300, 400, 3), 90, np.uint8)).save(tmp_path / "wall.png")
    cases["wall.png"] = "No face"
    Image.fromarray(photo).resize((128, 128)).save(tmp_path / "tiny.png")
    for name, match in cases.items():
        with pytest.raises(AppError, match=match):
            encode(client, tmp_path / name, model=studio_model)
    with pytest.raises(AppError, match="only .* px|No face"):
        encode(client, tmp_path / "tiny.png", mode="detect", model=studio_model)
    with pytest.raises(AppError, match="no face #"):
        encode(client, photo_path, face=5, model=studio_model)
    with pytest.raises(AppError, match="Refinement steps|greater than maximum"):
        encode(client, photo_path, steps=100000, model=studio_model)


# ---------------------------------------------------------------------------
# Any generator: the official-format ADA fixture (32 px, no pack) encodes by projection
# ---------------------------------------------------------------------------

def test_ada_fixture_encodes_a_photo_by_projection(ada_client, photo_path):
    """No pack: the tab projects from the average face within the time budget, with the pickle's own
    discriminator as the loss, and says so in the metrics (the API's output)."""
    ada_model = str(ADA_FIXTURE)
    out = encode(ada_client, photo_path, steps=20, budget=20, model=ada_model, space="w+")
    preview, aligned, start, final, compare, errors, metrics, files = out[:8]
    assert png(aligned).shape == (32, 32, 3) and png(start).shape == (32, 32, 3) and png(final).shape == (32, 32, 3)
    assert png(compare).shape[1] > 3 * 32 and png(errors).shape[2] == 3
    assert not np.array_equal(png(start), png(final))                      # the projection moved the latent
    assert "average face (w_avg)" in metrics and "no feature pack" in metrics
    assert "projection" in metrics and "discriminator features" in metrics and "(20 steps)" in metrics
    npz = [f for f in files if str(f).endswith(".npz")]
    with np.load(npz[0], allow_pickle=False) as d:
        assert d["ws"].shape == (8, 64)
    with pytest.raises(AppError, match="projection space|not in the list of choices"):
        encode(ada_client, photo_path, steps=2, model=ada_model, space="z")

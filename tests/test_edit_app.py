"""The editing (/edit) and animation (/animate) tabs end to end: the real app, through gradio_client.

The app serves `mini` when assets/mini exists (else a random stand-in, see conftest.py). The tests
upload a small direction set fitted here for that generator, so they run without shipped assets;
the test of the pack's directions skips when the served model has none. /edit takes one `steps`
text (JSON or 'name=step, ...'); generators without directions: tests/test_edit_any_generator.py.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from facegen import studio
from facegen.features import editing
from facegen.features import animate as video  # noqa: E402
from facegen.engine import latents as L  # noqa: E402
from facegen.packs.direction_fitting import fit_directions  # noqa: E402
from facegen.packs.directions import find_directions  # noqa: E402
from facegen.features.generate import generate_seeds  # noqa: E402

torch.set_num_threads(1)
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def dirs(G, tmp_path_factory):
    """(DirectionSet, path): yaw/smile/age/gender fitted for the served generator (small, quick)."""
    ds = fit_directions(G, attributes=["yaw", "smile", "age", "gender"], n=200, min_validity=0.0, mixed=False,
                        log=None, model="test")
    return ds, str(ds.save(tmp_path_factory.mktemp("dirs")))


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def edit(client, model, directions=None, steps=None, **kw):
    """/edit with `steps` a dict (sent as JSON) or text."""
    args = dict(face="3", psi=0.7, steps=json.dumps(steps) if isinstance(steps, dict) else (steps or ""),
                keep_others=False, layer_start=0, layer_end=7, latent_file=None,
                directions_file=handle_file(directions) if directions else None, noise_mode="const", model=model)
    args.update(kw)
    return client.predict(**args, api_name="/edit")


def animate(client, model, directions=None, **kw):
    args = dict(face="3", psi=0.7, mode="yaw", frames=12, fps=12, amount=2.0, pingpong=False, keep_others=False,
                size=128, grid_size=3, grid_rows="", grid_cols="", layer_start=0, layer_end=7, latent_file=None,
                directions_file=handle_file(directions) if directions else None, noise_mode="const", model=model)
    args.update(kw)
    return client.predict(**args, api_name="/animate")


def test_endpoints_listed(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    for ep in ("/edit", "/edit_to_shelf", "/edit_directions", "/animate"):
        assert ep in names, ep


def test_edit_matches_core_and_goes_to_shelf(client, G, dirs, studio_model):
    ds, path = dirs
    before, after, files, note = edit(client, studio_model, path, {"age": 2, "smile": -1})
    plain, ws, _ = generate_seeds(G, "3", psi=0.7)
    np.testing.assert_array_equal(png(before), plain[0])
    expected_ws, expected = editing.edit(G, ws[0], ds, {"age": 2, "smile": -1}, layers=range(8))
    assert np.abs(png(after).astype(int) - expected).max() <= 2
    assert not np.array_equal(png(after), png(before))
    assert "age +2" in note and "smile -1" in note and "Directions: uploaded directions" in note
    npz = next(f for f in files if f.endswith(".npz"))
    got, meta = L.load_latent(npz, G)
    np.testing.assert_allclose(got, expected_ws, atol=1e-5)
    assert meta["fingerprint"] == G.fingerprint and meta["steps"] == {"age": 2.0, "smile": -1.0}
    # Keep other attributes: a different (conditional) edit; no steps: the face itself.
    _, kept, _, note2 = edit(client, studio_model, path, "age=2, smile=-1", keep_others=True)     # text form
    assert not np.array_equal(png(kept), png(after)) and "keeping the other attributes" in note2
    assert "guided by the world predictor" in note2          # mini: guided editing (facegen.features.editing)
    _, same, _, _ = edit(client, studio_model, path)
    np.testing.assert_array_equal(png(same), png(before))
    n = len(client.predict(api_name="/shelf_list")[0])
    assert len(client.predict(api_name="/edit_to_shelf")) == n + 1


@pytest.mark.parametrize("kw, message", [
    (dict(steps="agee=1"), "Unknown direction 'agee': this generator's directions are yaw, smile, age, gender"),
    (dict(steps="age=9"), "out of range: use -5 to 5"),
    (dict(steps="age: lots"), "Cannot read 'age: lots'"),
    (dict(steps='{"age": 1,'), "Cannot read the steps as JSON"),
    (dict(steps="[1, 2]"), "Cannot read"),
    (dict(steps={"glasses": 1.0}), "Unknown direction 'glasses'"),        # not in the uploaded set
    (dict(layer_start=6, layer_end=2), "Layer range 6-2 is not valid"),
    (dict(face="#40"), "no face #40 on the shelf"),
])
def test_edit_bad_input(client, dirs, studio_model, kw, message):
    with pytest.raises(AppError, match=message):
        edit(client, studio_model, dirs[1], **kw)


def test_directions_of_another_generator(client, other_generator, studio_model, tmp_path):
    foreign = fit_directions(other_generator.eval(), attributes=["yaw", "smile"], n=100, min_validity=0.0,
                             mixed=False, log=None)
    p = str(foreign.save(tmp_path / "foreign.npz"))
    with pytest.raises(AppError, match=f"fitted for generator {other_generator.fingerprint}.*do not transfer"):
        edit(client, studio_model, p, {"age": 1})
    with pytest.raises(AppError, match="do not transfer"):
        animate(client, studio_model, p)
    latent = L.save_latent(tmp_path / "face.npz", np.zeros((3, 7), np.float32))
    with pytest.raises(AppError, match="a latent file, not directions"):
        edit(client, studio_model, str(latent))


def test_edit_uploaded_latent(client, G, dirs, studio_model, tmp_path):
    ws = L.seeds_to_ws(G, [11], psi=0.5)[0].numpy()
    lat = L.save_latent(tmp_path / "eleven.npz", ws, fingerprint=G.fingerprint)
    before, after, _, note = edit(client, studio_model, dirs[1], {"yaw": 1.5}, latent_file=handle_file(str(lat)))
    assert np.abs(png(before).astype(int) - studio.render(studio_model, ws[None])[0]).max() <= 2
    assert "eleven.npz" in note


def test_animate_yaw_mp4_gif(client, G, dirs, studio_model):
    mp4, gif, grid, files, note = animate(client, studio_model, dirs[1], frames=12, fps=12)
    path = mp4["video"] if isinstance(mp4, dict) else mp4
    frames = video.read_video(path)
    assert frames.shape == (12, 128, 128, 3)
    g = video.read_video(gif)
    assert g.shape[0] == 12
    assert grid is None and "12 frames at 12 fps" in note
    # The video shows the core's sweep.
    ws = L.seeds_to_ws(G, [3], psi=0.7)[0].numpy()
    core = video.animate(G, ws, dirs[0], "yaw", 12, 12, 2.0, layers=range(8))["frames"]
    assert np.abs(frames.astype(int) - video.upscale(core, 128)).mean() < 8
    assert any(f.endswith(".npz") for f in files)
    # Keep other attributes, there and back: the guided sweep (facegen.features.editing), frames mirrored.
    mp4k, _, _, files_k, note_k = animate(client, studio_model, dirs[1], frames=12, fps=12, keep_others=True,
                                          pingpong=True)
    kept = video.read_video(mp4k["video"] if isinstance(mp4k, dict) else mp4k)
    assert kept.shape == (12, 128, 128, 3) and "keeping other attributes (guided by the world predictor)" in note_k
    lat, _ = L.load_latent(next(f for f in files_k if f.endswith(".npz")), G)
    expected = editing.guided_sweep_ws(G, editing.guide_for(G, dirs[0]), ws, dirs[0], "yaw",
                                       video.sweep_values(12, 2.0, True), list(range(8)))
    np.testing.assert_allclose(lat, expected, atol=1e-4)
    np.testing.assert_allclose(lat[1], lat[-1], atol=1e-6)      # pingpong: the way back mirrors the way out


def test_animate_grid_and_errors(client, G, dirs, studio_model):
    mp4, gif, grid, files, note = animate(client, studio_model, dirs[1], mode="grid", frames=10, grid_size=3)
    R = G.img_resolution
    k = max(1, 512 // (3 * R))
    assert png(grid).shape == (3 * R * k, 3 * R * k, 3)
    assert video.read_video(mp4["video"] if isinstance(mp4, dict) else mp4).shape[0] == 10
    with pytest.raises(AppError, match="less than minimum"):
        animate(client, studio_model, dirs[1], frames=1)
    with pytest.raises(AppError, match="Unknown animation 'spin': use a direction of this model \\(yaw, smile"):
        animate(client, studio_model, dirs[1], mode="spin")
    with pytest.raises(AppError, match="A grid needs two different directions"):
        animate(client, studio_model, dirs[1], mode="grid", grid_rows="age", grid_cols="age")
    # a grid of any two directions: rows age, columns gender; the latents are the core's grid path
    _, _, grid2, files2, note2 = animate(client, studio_model, dirs[1], mode="grid", frames=10, grid_size=3,
                                         grid_rows="age", grid_cols="gender")
    assert "age × gender grid" in note2 and png(grid2).shape == png(grid).shape
    assert not np.array_equal(png(grid2), png(grid))
    lat, meta = L.load_latent(next(f for f in files2 if f.endswith(".npz")), G)
    assert meta["directions"] == ["age", "gender"]
    ws = L.seeds_to_ws(G, [3], psi=0.7)[0].numpy()
    expected, _, _ = video.animation_ws(ws, dirs[0], "grid", 10, 2.0, list(range(8)), grid=3,
                                        grid_attrs=("age", "gender"))
    np.testing.assert_allclose(lat, expected, atol=1e-5)


def test_pack_directions_in_the_app(client, G, studio_model):
    """With no upload, the served model's pack directions are used (mini: yaw, smile ...), exactly the core's
    edit, and the note says where they come from."""
    ds = find_directions(G)
    if ds is None:
        pytest.skip("no pack directions for the served model (build them with `python -m facegen directions fit "
                    "--model mini --n 3000 --out assets/packs/mini/directions`)")
    before, after, _, note = edit(client, studio_model, None, "yaw=2")
    _, expected = editing.edit(G, L.seeds_to_ws(G, [3], psi=0.7)[0].numpy(), ds, {"yaw": 2}, layers=range(8))
    assert np.abs(png(after).astype(int) - expected).max() <= 2 and not np.array_equal(png(before), png(after))
    assert "Directions: attribute directions from the pack 'mini' (labeller world)" in note
    info = client.predict(None, studio_model, api_name="/edit_directions")
    assert "attribute directions from the pack 'mini'" in info and "| yaw |" in info
    # the tab's sliders stand for the pack's first directions (the page config as served)
    labels = {c["props"].get("elem_id"): c["props"].get("label") for c in client.config["components"]}
    assert [labels[f"edit-slot-{i}"] for i in range(3)] == ds.names[:3]

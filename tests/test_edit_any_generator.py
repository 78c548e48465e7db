"""/edit and /animate on a generator with no pack: the real app serving the official-format
StyleGAN2-ADA golden fixture (conftest.ada_client; skips when ../shared/fixtures is absent).

Without attribute directions the tabs edit along the generator's principal components (GANSpace,
facegen.packs.unsupervised) and say so in their note, which the API returns too.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402

from facegen.engine import latents as L  # noqa: E402
from facegen.features import animate as video  # noqa: E402
from facegen.features import editing  # noqa: E402
from facegen.packs.unsupervised import unsupervised_directions  # noqa: E402

from conftest import ADA_FIXTURE  # noqa: E402

torch.set_num_threads(1)
pytestmark = pytest.mark.timeout(400)
FALLBACK = "no attribute directions for this generator: editing along its principal components (GANSpace)"


@pytest.fixture(scope="module")
def ada_G():
    from facegen.engine.loaders import load_generator
    return load_generator(str(ADA_FIXTURE)).eval()


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def edit(client, steps, **kw):
    args = dict(face="3", psi=0.7, steps=json.dumps(steps) if isinstance(steps, dict) else steps, keep_others=False,
                layer_start=0, layer_end=7, latent_file=None, directions_file=None, noise_mode="const",
                model=str(ADA_FIXTURE))
    args.update(kw)
    return client.predict(**args, api_name="/edit")


def test_edit_along_components_grows_with_the_step(ada_client, ada_G):
    """Step 0 returns the original pixel for pixel; the edit's distance from it grows with the step."""
    before0, after0, files0, note0 = edit(ada_client, {"component 1": 0})
    assert FALLBACK in note0
    np.testing.assert_array_equal(png(after0), png(before0))
    dist = []
    for s in (0.5, 1.0, 2.0, 4.0):
        before, after, files, note = edit(ada_client, {"component 1": s})
        np.testing.assert_array_equal(png(before), png(before0))
        dist.append(float(np.abs(png(after) - png(before)).mean()))
        assert f"component 1 {s:+g}" in note and FALLBACK in note
    assert all(b > a for a, b in zip(dist, dist[1:])) and dist[0] > 0, dist
    # the latent is the core's edit along the generator's own first component
    lat, meta = L.load_latent(next(f for f in files if f.endswith(".npz")), ada_G)
    ds = unsupervised_directions(ada_G)
    ws = L.seeds_to_ws(ada_G, [3], psi=0.7)[0].numpy()
    np.testing.assert_allclose(lat, editing.edit_ws(ws, ds, {"component 1": 4.0}, range(8)), atol=1e-4)
    assert meta["method"] == "ganspace" and meta["steps"] == {"component 1": 4.0}


def test_edit_text_steps_and_unknown_names(ada_client):
    _, a, _, _ = edit(ada_client, "component 2=1.5, component 3=-2")
    _, b, _, _ = edit(ada_client, {"component 2": 1.5, "component 3": -2})
    np.testing.assert_array_equal(png(a), png(b))
    with pytest.raises(AppError, match="Unknown direction 'yaw': this generator's directions are component 1, "
                                       "component 2"):
        edit(ada_client, {"yaw": 1})


def test_sliders_and_directions_follow_the_model(ada_client):
    labels = {c["props"].get("elem_id"): c["props"] for c in ada_client.config["components"]}
    assert [labels[f"edit-slot-{i}"]["label"] for i in range(8)] == [f"component {k}" for k in range(1, 9)]
    info = ada_client.predict(None, str(ADA_FIXTURE), api_name="/edit_directions")
    assert FALLBACK in info and "| component 1 |" in info
    modes = [c[1] if isinstance(c, (list, tuple)) else c for c in labels["anim-mode"]["choices"]]
    assert modes[:2] == ["component 1", "component 2"] and modes[-1] == "grid"


def animate(client, **kw):
    args = dict(face="3", psi=0.7, mode="component 1", frames=8, fps=8, amount=2.0, pingpong=False,
                keep_others=False, size=128, grid_size=3, grid_rows="", grid_cols="", layer_start=0, layer_end=7,
                latent_file=None, directions_file=None, noise_mode="const", model=str(ADA_FIXTURE))
    args.update(kw)
    return client.predict(**args, api_name="/animate")


def test_animate_components(ada_client, ada_G):
    mp4, gif, grid, files, note = animate(ada_client)
    frames = video.read_video(mp4["video"] if isinstance(mp4, dict) else mp4)
    assert frames.shape == (8, 128, 128, 3) and grid is None
    assert "component 1 sweep" in note and FALLBACK in note
    lat, _ = L.load_latent(next(f for f in files if f.endswith(".npz")), ada_G)
    ds = unsupervised_directions(ada_G)
    ws = L.seeds_to_ws(ada_G, [3], psi=0.7)[0].numpy()
    np.testing.assert_allclose(lat, editing.sweep_ws(ws, ds, "component 1", np.linspace(-2, 2, 8), range(8)),
                               atol=1e-4)
    # the grid of any two directions (default: component 2 down, component 1 across)
    _, _, grid, _, note = animate(ada_client, mode="grid", frames=6)
    assert "component 2 × component 1 grid" in note
    R = ada_G.img_resolution
    k = max(1, 512 // (3 * R))
    assert png(grid).shape == (3 * R * k, 3 * R * k, 3)
    _, _, grid2, _, note2 = animate(ada_client, mode="grid", frames=6, grid_rows="component 3",
                                    grid_cols="component 4")
    assert "component 3 × component 4 grid" in note2 and not np.array_equal(png(grid2), png(grid))
    with pytest.raises(AppError, match="Unknown animation 'yaw': use a direction of this model \\(component 1"):
        animate(ada_client, mode="yaw")

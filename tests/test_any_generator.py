"""Every tab on every generator: the studio serving generators other than its embedded default.

* the official-format StyleGAN2-ADA fixture (no pack): every documented endpoint answers;
* a class-conditional generator: the random-faces tab takes a class, which changes the faces, is
  checked, and travels in the share link.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import launch_app


def _png(item) -> np.ndarray:
    path = item["image"] if isinstance(item, dict) else item[0]
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def conditional_client(tmp_path_factory):
    from gradio_client import Client
    from facegen.engine.networks import Generator
    torch.manual_seed(3)
    G = Generator(z_dim=32, c_dim=3, w_dim=32, img_resolution=16, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=256, channel_max=32))
    folder = tmp_path_factory.mktemp("cond") / "cond16"
    G.save_pretrained(folder)
    proc, url = launch_app(str(folder), tmp_path_factory.mktemp("cond-app"))
    yield Client(url, verbose=False)
    proc.terminate()
    proc.wait(timeout=30)


def test_conditional_generator_takes_a_class(conditional_client):
    from gradio_client.exceptions import AppError
    c = conditional_client
    g0, _, link0, *_ = c.predict("5", 1, 0.7, 0, "const", class_index=0, api_name="/generate")
    g2, _, link2, *_ = c.predict("5", 1, 0.7, 0, "const", class_index=2, api_name="/generate")
    a, b = _png(g0[0]), _png(g2[0])
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0, "the class does not change the face"
    again = _png(c.predict("5", 1, 0.7, 0, "const", class_index=2, api_name="/generate")[0][0])
    assert np.array_equal(again, b)
    assert "cls=2" in link2 and "cls=" not in link0.replace("cls=0", "")
    with pytest.raises(AppError, match="between 0 and 2"):
        c.predict("5", 1, 0.7, 0, "const", class_index=7, api_name="/generate")


# ---------------------------------------------------------------------------
# All eight tabs on the official-format fixtures, no pack (ADA PyTorch pickle, original TF pickle)
# ---------------------------------------------------------------------------

from conftest import ADA_FIXTURE, TF_FIXTURE  # noqa: E402


@pytest.fixture(scope="module", params=["ada", "tf"])
def official(request, tmp_path_factory):
    """(client, model path, G) for the studio serving one official-format fixture with no pack."""
    from gradio_client import Client
    from facegen import load_generator
    path = {"ada": ADA_FIXTURE, "tf": TF_FIXTURE}[request.param]
    if not path.exists():
        pytest.skip(f"golden fixture absent ({path}); the fixtures live in ../shared/fixtures")
    proc, url = launch_app(str(path), tmp_path_factory.mktemp(f"official-{request.param}"))
    yield Client(url, verbose=False), str(path), load_generator(path)
    proc.terminate()
    proc.wait(timeout=30)


def _image(x) -> np.ndarray:
    if isinstance(x, dict):
        x = x.get("image") or x.get("path") or x.get("video")
    if isinstance(x, (list, tuple)):
        x = x[0]
    return np.asarray(Image.open(x).convert("RGB"))


def test_every_tab_answers_on_an_official_pickle_without_a_pack(official):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    from facegen.features.faceswap import read_video_checked
    c, model, G = official
    R = G.img_resolution
    banner = c.predict(model, api_name="/load_model")
    assert "no feature pack" in str(banner)
    # 1 random faces
    gallery, files, link = c.predict("0-1", 2, 0.7, 0, "const", api_name="/generate")[:3]
    assert len(gallery) == 2 and _image(gallery[0]).shape == (R, R, 3)
    # 2 customise: the fallback judges with the photo labeller, which finds no face in random-weight noise
    with pytest.raises(AppError, match="(?i)no face"):
        c.predict(classes=["smiling"], method="rejection", count=1, psi=0.7, seed=0, check="check", model=model,
                  api_name="/customize")
    # 3 style mixing
    grid = c.predict("0-1", "5", 0, G.num_ws - 1, 0.7, "const", api_name="/mix")[0]
    assert _image(grid).shape[0] > R
    # 4 photo encoding by projection
    from importlib.util import find_spec
    photo = Path(find_spec("skimage").origin).parent / "data" / "astronaut.png"
    out = c.predict(handle_file(str(photo)), 1, "auto", 5, 5, model, "W", api_name="/encode")
    assert _image(out[3]).shape == (R, R, 3) and "average face (w_avg)" in out[6]
    # 5 attribute editing along the generator's own components
    edit = c.predict(face="3", psi=0.7, steps='{"component 1": 2}', keep_others=False, layer_start=0,
                     layer_end=G.num_ws - 1, latent_file=None, directions_file=None, noise_mode="const", model=model,
                     api_name="/edit")
    assert not np.array_equal(_image(edit[0]), _image(edit[1])) and "principal components" in str(edit)
    # 6 fusion
    fused = c.predict("1, 2", "", 0, G.num_ws - 1, 0.7, 3, "const", api_name="/fuse")[0]
    assert _image(fused).shape == (R, R, 3)
    # 7 animation
    anim = c.predict(face="3", psi=0.7, mode="component 1", frames=6, fps=6, amount=2.0, pingpong=False,
                     keep_others=False, size=128, grid_size=3, grid_rows="", grid_cols="", layer_start=0,
                     layer_end=G.num_ws - 1, latent_file=None, directions_file=None, noise_mode="const", model=model,
                     api_name="/animate")
    assert Path(anim[0]["video"] if isinstance(anim[0], dict) else anim[0]).stat().st_size > 0
    # 8 faceswap (a few seconds of training on the shipped sample video)
    video, files, note = c.predict(face="0", psi=0.7, video=None, sample="sample-lena", budget=5, views=50, detector="auto",
                                   color="none", region="head", model=model, api_name="/faceswap")[:3]
    frames, _ = read_video_checked(video["video"] if isinstance(video, dict) else video)
    assert len(frames) > 0 and "template" in note

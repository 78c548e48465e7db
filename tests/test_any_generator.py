"""Every tab on every generator: the studio serving generators other than its embedded default.

* the official-format StyleGAN2-ADA fixture (no pack): every documented endpoint answers;
* a class-conditional generator: the random-faces tab takes a class, which changes the faces, is
  checked, and travels in the share link.
"""

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

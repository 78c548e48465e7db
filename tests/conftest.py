"""App fixtures: one running facegen studio per test session (tests/test_app.py, tests/test_browser.py).

The app serves the embedded default model "mini" when assets/mini/ exists; before it does, a seeded
random generator of the same shape (64 px, 10 style layers) stands in via FACEGEN_MODEL.
"""

import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")             # no network in tests: Hub models fail fast
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _random_generator(seed: int):
    import torch
    from facegen.engine.networks import Generator
    torch.manual_seed(seed)
    return Generator(z_dim=128, c_dim=0, w_dim=128, img_resolution=64, mapping_kwargs=dict(num_layers=4),
                     synthesis_kwargs=dict(channel_base=1024, channel_max=128))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def studio_model(tmp_path_factory):
    """The model the app serves: 'mini' when it is built, else a random stand-in (via FACEGEN_MODEL)."""
    if (ROOT / "assets" / "mini" / "config.json").exists() and "FACEGEN_MODEL" not in os.environ:
        return "mini"
    if "FACEGEN_MODEL" not in os.environ:
        folder = tmp_path_factory.mktemp("model") / "random64"
        _random_generator(0).save_pretrained(folder)
        os.environ["FACEGEN_MODEL"] = str(folder)
    return os.environ["FACEGEN_MODEL"]


@pytest.fixture(scope="session")
def other_generator():
    """A generator with the same shape but other weights (for fingerprint-mismatch tests)."""
    return _random_generator(1)


@pytest.fixture(scope="session")
def app_url(studio_model):
    """Launch the real app once (its own port), yield its URL, close it."""
    import app
    demo = app.demo
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                **app.launch_kwargs())
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def client(app_url):
    """A gradio_client session on the running studio (one per test module)."""
    from gradio_client import Client
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def G(app_url, studio_model):
    """The generator the running studio serves."""
    from facegen import studio
    return studio.models().get(studio_model)

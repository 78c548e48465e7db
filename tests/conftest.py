"""App fixtures: one running facegen studio per test session (tests/test_app.py, tests/test_browser.py).

The tests' app serves the embedded model "mini" (v1; the registry's default is mini-v2, served by
tests/test_space.py's default-model test) when assets/mini/ exists; before it does, a seeded random
generator of the same shape (64 px, 10 style layers) stands in via FACEGEN_MODEL.
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


# ---------------------------------------------------------------------------
# The studio serving a published-format generator with no pack (a second server, its own process)
# ---------------------------------------------------------------------------

FIXTURES = ROOT.parent / "shared" / "fixtures"
ADA_FIXTURE = FIXTURES / "stylegan2-ada-tiny" / "G_ema.pkl"
TF_FIXTURE = FIXTURES / "stylegan2-tf-tiny" / "Gs_tf.pkl"


def launch_app(model, tmp_path, extra_env=None):
    """`python app.py` with FACEGEN_MODEL=model on a free port -> (process, url); waits until it serves.
    model None: without FACEGEN_MODEL, as a Space runs it (the registry default)."""
    import subprocess
    import time
    import urllib.request
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    env.pop("FACEGEN_MODEL", None)
    env.update({} if model is None else {"FACEGEN_MODEL": str(model)}, **(extra_env or {}))
    log = open(tmp_path / f"app-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=str(ROOT), env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}: {(tmp_path / f'app-{port}.log').read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"app.py did not serve within 180 s: {(tmp_path / f'app-{port}.log').read_text()[-3000:]}")


def _foreign_app(model_path: Path, tmp_path_factory, what: str):
    if not model_path.exists():
        pytest.skip(f"{what} is absent ({model_path}): the golden fixtures live in ../shared/fixtures")
    proc, url = launch_app(str(model_path), tmp_path_factory.mktemp("foreign-app"))
    return proc, url


@pytest.fixture(scope="session")
def ada_app_url(tmp_path_factory):
    """The studio serving the official-format StyleGAN2-ADA fixture (32 px, no pack)."""
    proc, url = _foreign_app(ADA_FIXTURE, tmp_path_factory, "the StyleGAN2-ADA golden fixture")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def ada_client(ada_app_url):
    from gradio_client import Client
    return Client(ada_app_url, verbose=False)


@pytest.fixture(scope="module")
def mini():
    """The embedded generator, loaded in the test process (one thread: the suite shares two cores)."""
    if not (ROOT / "assets" / "mini" / "config.json").is_file():
        pytest.skip("assets/mini is absent (built by `python -m facegen train ... --export assets/mini`)")
    import torch
    from facegen.engine.loaders import load_generator
    torch.set_num_threads(1)
    return load_generator("mini").eval()


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache in tmp_path with the Hub offline: tests place Hub-shaped repos in it."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c      # read at import time: point the live values at the tmp cache
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("FACEGEN_REGISTRY", raising=False)
    return cache

"""README.md's gradio_client examples, run as written against the launched app (the `app_url` fixture).

Every ```python block of the README's studio-app chapter (from "Calling the app from Python" up to "The core")
that calls `client.` is executed in order in one namespace, in a folder holding the two files the examples
name (photo.jpg: scikit-image's astronaut; face.npz: a latent of the served model), with the URL
http://127.0.0.1:7860/ replaced by the test server's. The StyleGAN3 example's "registered local copy" is
the stylegan3-t-tiny golden fixture registered under that name (FACEGEN_REGISTRY); without the fixtures
that call must fail with the message that says how to register a copy. Unpacking checks the number of outputs; a trailing
comment "-> (a, b, c)" is checked too: a literal is compared with the result, names are counted.
"""

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio_client")

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SG3_NAME = "stylegan3-t-ffhqu-256x256"                       # the README's "registered local copy" of StyleGAN3
SG3_FIXTURE = ROOT.parent / "shared" / "fixtures" / "stylegan3-t-tiny" / "G_ema.pkl"
README_URL = "http://127.0.0.1:7860/"
pytestmark = pytest.mark.timeout(600)


def client_blocks(text: str) -> list:
    """The ```python blocks between '### Calling the app from Python' and '## The core' that use the client."""
    start = text.index("### Calling the app from Python")
    end = text.index("\n## The core", start)
    blocks = re.findall(r"```python\n(.*?)```", text[start:end], re.S)
    return [b for b in blocks if "client." in b]


def expected_from_comment(line: str):
    """'... # -> (4, 7)' -> ('value', (4, 7)); '# -> (gallery, status)' -> ('count', 2); else None."""
    m = re.search(r"#.*->\s*(\(.*\))\s*$", line)
    if not m:
        return None
    try:
        return "value", ast.literal_eval(m.group(1))
    except (ValueError, SyntaxError):
        return "count", len([p for p in m.group(1)[1:-1].split(",") if p.strip()])


def test_readme_has_client_examples():
    blocks = client_blocks(README.read_text())
    code = "\n".join(blocks)
    assert len(blocks) >= 3 and "Client(" in code
    for endpoint in ("/generate", "/mix", "/fuse", "/edit", "/animate", "/encode", "/faceswap", "/customize"):
        assert f'api_name="{endpoint}"' in code, endpoint


def test_readme_client_examples_run_against_the_app(app_url, studio_model, tmp_path, monkeypatch):
    if studio_model != "mini":
        pytest.skip("the README's examples are written for the embedded model 'mini' (assets/mini is not built)")
    import importlib.util
    from PIL import Image

    import facegen
    from facegen.engine import latents as L
    spec = importlib.util.find_spec("skimage")
    astronaut = Path(spec.origin).parent / "data" / "astronaut.png" if spec else None
    if astronaut is None or not astronaut.is_file():
        pytest.skip("scikit-image's astronaut.png (the example's photo.jpg) is not installed")
    Image.open(astronaut).convert("RGB").save(tmp_path / "photo.jpg")
    G = facegen.load_generator("mini")
    L.save_latent(tmp_path / "face.npz", L.seeds_to_ws(G, [21], psi=0.7)[0].numpy(), fingerprint=G.fingerprint)
    monkeypatch.chdir(tmp_path)
    if SG3_FIXTURE.is_file():
        (tmp_path / "registry.json").write_text(json.dumps({"models": [{"name": SG3_NAME, "path": str(SG3_FIXTURE)}]}))
        monkeypatch.setenv("FACEGEN_REGISTRY", str(tmp_path / "registry.json"))

    text = README.read_text()
    assert README_URL in text
    namespace, checked, first_gallery = {}, [], None
    for block in client_blocks(text):
        source = block.replace(README_URL, app_url)
        lines = source.splitlines()
        for node in ast.parse(source).body:
            snippet = ast.get_source_segment(source, node)
            want = expected_from_comment(lines[node.end_lineno - 1])
            if want is not None and isinstance(node, ast.Expr):
                got = eval(compile(ast.Expression(node.value), "README.md", "eval"), namespace)
                if want[0] == "value":
                    assert tuple(got) == want[1], (snippet, got)
                else:
                    assert isinstance(got, (tuple, list)) and len(got) == want[1], (snippet, got)
                checked.append(snippet)
            elif SG3_NAME in snippet and not SG3_FIXTURE.is_file():
                from gradio_client.exceptions import AppError
                with pytest.raises(AppError, match="FACEGEN_REGISTRY"):
                    exec(compile(ast.Module([node], []), "README.md", "exec"), namespace)
            else:
                exec(compile(ast.Module([node], []), "README.md", "exec"), namespace)
            if first_gallery is None and "gallery" in namespace:
                first_gallery = namespace["gallery"]
    assert len(checked) >= 4, checked                     # the "-> (...)" comments were found and checked
    # What the first example says it returns.
    gallery = first_gallery
    assert len(gallery) == 4 and Path(gallery[0]["image"]).is_file() and gallery[0]["caption"] == "seed 0"
    assert np.asarray(Image.open(gallery[0]["image"])).shape == (G.img_resolution, G.img_resolution, 3)


def test_readme_core_python_example_runs(tmp_path, monkeypatch):
    """The README's `facegen` example (the python block without a client) runs as written; its shape comments
    hold and the latent file it writes loads back for the same generator."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "client." not in b]
    assert len(blocks) == 1 and "import facegen" in blocks[0]
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)
    G = ns["G"]
    assert tuple(ns["ws"].shape) == (8, G.num_ws, G.w_dim)                          # [8, num_ws, w_dim]
    assert ns["images"].shape == (8, G.img_resolution, G.img_resolution, 3) and ns["images"].dtype == np.uint8
    from facegen.engine import latents as L
    back, meta = L.load_latent(tmp_path / "face.npz", G)
    assert meta["fingerprint"] == G.fingerprint and np.allclose(back, np.asarray(ns["mixed"]))

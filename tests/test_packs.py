"""`python -m facegen pack build | info | push` (facegen.packs.build, facegen.packs.cli) on the official-format
StyleGAN2-ADA fixture (../shared/fixtures, 32 px, no pack of its own), labelled by the face world's
labeller (its images are noise, but the labels are still a deterministic function of them).

One pack is built per module (300 samples); the tests read it, rebuild it under torchrun, serve it
in the studio and refuse it for other generators."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ADA_FIXTURE, launch_app

ROOT = Path(__file__).resolve().parent.parent
ADA_REL = os.path.relpath(ADA_FIXTURE, ROOT)
N = 300
BUILD = ["pack", "build", "--model", ADA_REL, "--labeller", "world", "--n", str(N), "--min-validity", "0",
         "--threads", "1"]
#: An absolute path: "/tmp/...", "/work/..." not preceded by a path character (so "../../tmp/x" is fine).
ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:tmp|work|root|home|usr|var|opt|mnt|srv|Users)\b")

pytestmark = pytest.mark.skipif(not ADA_FIXTURE.exists(),
                                reason=f"the StyleGAN2-ADA golden fixture is absent ({ADA_FIXTURE}); "
                                       "the golden fixtures live in ../shared/fixtures")


def facegen(args, env=None, timeout=600, module=("-m", "facegen")):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", **(env or {}))
    return subprocess.run([sys.executable, *module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(pack folder, the build's CompletedProcess): the ADA fixture's pack, built with an absolute --out."""
    out = tmp_path_factory.mktemp("ada-pack") / "pack"
    r = facegen(BUILD + ["--out", str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


@pytest.fixture(scope="module")
def G_ada():
    from facegen.engine.loaders import load_generator
    return load_generator(ADA_FIXTURE)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """Another generator (its own fingerprint), saved as a folder."""
    from facegen.engine.networks import Generator
    torch.manual_seed(3)
    G = Generator(z_dim=64, c_dim=0, w_dim=64, img_resolution=16, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=64, channel_max=16))
    folder = tmp_path_factory.mktemp("tiny") / "tiny"
    G.save_pretrained(folder)
    return folder


def text_of_outputs(folder: Path) -> dict:
    """{relative file: text} for every file of a pack, npz metadata strings included."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = str(p.relative_to(folder))
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                out[rel] = "\n".join(str(z[k]) for k in z.files if z[k].dtype.kind == "U")
        else:
            try:
                out[rel] = p.read_text()
            except UnicodeDecodeError:
                out[rel] = p.read_bytes().decode("latin-1")
    return out


# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------


def test_build_writes_a_pack_for_the_generator(built, G_ada):
    from facegen.labels.base import load_labeller
    from facegen.packs.directions import load_directions
    from facegen.packs.pack import load_pack
    out, r = built
    pack = load_pack(out, G_ada)
    assert pack.fingerprint == G_ada.fingerprint and pack.labeller == "world"
    assert pack.manifest["generator"]["resolution"] == 32 and pack.manifest["generator"]["w_dim"] == 64
    assert pack.has("directions") and pack.has("alignment")
    ds = load_directions(pack.path("directions"), G_ada)
    wanted = [n for n, k, _ in load_labeller("world").spec if k in ("continuous", "bool")]
    assert set(ds.names) | set(ds.meta["skipped"]) == set(wanted)    # every attribute fitted or said why not
    assert ds.meta["n_samples"] == N and ds.meta["processes"] == 1
    assert "[pack build] step 1/3: directions ..." in r.stdout and "[pack build] wrote pack.json" in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"]["directions"]["n_samples"] == N
    assert [a["attribute"] for a in metrics["steps"]["directions"]["attributes"]] == ds.names


def test_readme_manifest_example_is_what_build_writes(built):
    """README.md's pack.json example is this build's manifest (the README's command, --out packs/ada): the same
    keys, generator, labeller, components and metrics file; the provenance command differs only by --out."""
    out, _ = built
    text = (ROOT / "README.md").read_text()
    example = json.loads(re.search(r"```json\n(\{\s*\"format\": \"facegen-pack\".*?)```", text, re.S).group(1))
    manifest = json.loads((out / "pack.json").read_text())
    assert set(example) == set(manifest)
    for key in ("format", "format_version", "name", "generator", "labeller", "perceptual", "components", "metrics"):
        assert example[key] == manifest[key], (key, example[key], manifest[key])
    def options(command):        # {"--model": ..., "--n": ...} without --out (the folder) and --threads
        words = command.split()
        return {w: words[i + 1] for i, w in enumerate(words) if w.startswith("--") and w not in ("--out", "--threads")}
    assert example["provenance"]["command"].split()[:5] == manifest["provenance"]["command"].split()[:5]
    assert options(example["provenance"]["command"]) == options(manifest["provenance"]["command"])


def test_outputs_hold_the_exact_command_and_no_absolute_path(built):
    out, _ = built
    command = "python -m facegen pack " + " ".join(BUILD[1:] + ["--out", os.path.relpath(out, ROOT)])
    texts = text_of_outputs(out)
    leaks = {f: ABSOLUTE.findall(t) for f, t in texts.items() if ABSOLUTE.search(t)}
    assert not leaks, f"absolute paths in the pack: {leaks}"
    assert command in texts["README.md"] and command in texts["directions/README.md"]
    assert json.loads(texts["metrics.json"])["command"] == command
    assert json.loads(texts["pack.json"])["provenance"]["command"] == command


def test_info_prints_the_manifest_summary(built, G_ada):
    out, _ = built
    r = facegen(["pack", "info", str(out)])
    assert r.returncode == 0, r.stderr
    assert G_ada.fingerprint in r.stdout and "labeller   world" in r.stdout
    assert re.search(r"directions\s+directions/directions\.npz\s+[\d.]+ KB", r.stdout)
    assert "held-out accuracy" in r.stdout
    j = facegen(["pack", "info", str(out), "--json"])
    info = json.loads(j.stdout)
    assert info["components"]["directions"]["bytes"] == (out / "directions" / "directions.npz").stat().st_size
    assert info["metrics"]["steps"]["directions"]["n_samples"] == N
    offline = facegen(["pack", "info", "hf://facegen-test/no-such-pack"])
    assert offline.returncode == 2 and offline.stderr.startswith("error:") and "Traceback" not in offline.stderr


def test_build_refuses_an_out_holding_another_generators_pack(built, tiny_model):
    out, _ = built
    before = (out / "pack.json").read_text()
    r = facegen(["pack", "build", "--model", str(tiny_model), "--out", str(out), "--n", "100", "--threads", "1"],
                timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "holds the pack of generator" in r.stderr and "another --out, or delete" in r.stderr, r.stderr
    assert (out / "pack.json").read_text() == before


def test_load_pack_refuses_another_generator(built, tiny_model, G_ada):
    from facegen.engine.loaders import load_generator
    from facegen.packs.pack import PackMismatchError, load_pack
    out, _ = built
    assert load_pack(out, G_ada).root == out
    with pytest.raises(PackMismatchError, match="was built for generator"):
        load_pack(out, load_generator(tiny_model))


def test_rebuilding_one_step_keeps_the_rest_and_adds_an_encoder(built, tmp_path, G_ada):
    import shutil
    from facegen.packs.encoder import load_encoder
    from facegen.packs.pack import load_pack
    out = tmp_path / "pack"
    shutil.copytree(built[0], out)
    r = facegen(["pack", "build", "--model", ADA_REL, "--out", str(out), "--steps", "encoder", "--encoder-minutes",
                 "0.05", "--threads", "1"])
    assert r.returncode == 0, r.stderr[-3000:]
    pack = load_pack(out, G_ada)
    assert {"directions", "alignment", "encoder"} <= set(pack.components)
    E = load_encoder(pack.path("encoder"), G_ada)
    assert E.num_ws == G_ada.num_ws
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"directions", "encoder"} <= set(metrics["steps"]) and metrics["steps"]["encoder"]["steps"] > 0
    readme = (out / "README.md").read_text()
    assert readme.index("--n 300") < readme.index("--steps encoder")         # both commands, in build order
    assert not {f: t for f, t in text_of_outputs(out).items() if ABSOLUTE.search(t)}


# ---------------------------------------------------------------------------
# data-parallel build
# ---------------------------------------------------------------------------


def test_torchrun_build_gives_the_single_process_directions(built, tmp_path, G_ada):
    """2 CPU processes (gloo) label their shares of the samples; rank 0 fits and writes the same directions."""
    from facegen.packs.directions import load_directions
    one, _ = built
    two = tmp_path / "pack2"
    args = ["--standalone", "--nproc_per_node=2", "-m", "facegen", "pack", "build", "--model", ADA_REL,
            "--labeller", "world", "--samples", str(N), "--min-validity", "0", "--threads", "1",
            "--steps", "directions", "--out", str(two)]
    r = facegen(args, module=("-m", "torch.distributed.run"))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    a, b = load_directions(one / "directions", G_ada), load_directions(two / "directions", G_ada)
    assert b.meta["processes"] == 2 and a.names == b.names
    for k in ("vectors", "scales", "accuracy", "band_vectors", "band_accuracy", "mean_w"):
        np.testing.assert_allclose(getattr(b, k), getattr(a, k), atol=1e-5, err_msg=k)
    assert "torchrun --nproc_per_node=2 -m facegen pack build" in (two / "README.md").read_text()


# ---------------------------------------------------------------------------
# push (no server is contacted: the command refuses first)
# ---------------------------------------------------------------------------


def _hub_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT="http://127.0.0.1:9", OMP_NUM_THREADS="1", **extra)
    return env


def test_push_refuses_without_a_token(built, tmp_path):
    out, _ = built
    r = subprocess.run([sys.executable, "-m", "facegen", "pack", "push", str(out), "facegen-test/ada-pack"],
                       cwd=ROOT, env=_hub_env(tmp_path, HF_HUB_OFFLINE="0"), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "needs a Hugging Face token" in r.stderr and "HF_TOKEN" in r.stderr


def test_push_refuses_offline(built, tmp_path):
    out, _ = built
    r = subprocess.run([sys.executable, "-m", "facegen", "pack", "push", str(out), "facegen-test/ada-pack",
                        "--private"], cwd=ROOT, env=_hub_env(tmp_path, HF_HUB_OFFLINE="1", HF_TOKEN="hf_not_a_token"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "offline" in r.stderr.lower() and "HF_HUB_OFFLINE" in r.stderr


# ---------------------------------------------------------------------------
# the studio finds the pack by fingerprint
# ---------------------------------------------------------------------------


def test_the_app_serves_the_ada_fixture_with_the_built_pack(built, tmp_path, G_ada):
    from gradio_client import Client
    from facegen.engine import latents as L
    from facegen.packs.directions import load_directions
    out, _ = built
    proc, url = launch_app(str(ADA_FIXTURE), tmp_path, extra_env={"FACEGEN_PACKS": str(out)})
    try:
        client = Client(url, verbose=False)
        banner = client.predict(model=str(ADA_FIXTURE), api_name="/load_model")
        banner = banner[0] if isinstance(banner, (list, tuple)) else banner
        assert "pack 'stylegan2-ada-tiny' (directions" in banner
        _, _, files, note = client.predict(
            face="7", psi=0.7, steps='{"yaw": 1.5}', keep_others=False, layer_start=0, layer_end=7, latent_file=None,
            directions_file=None, noise_mode="const", model=str(ADA_FIXTURE), api_name="/edit")[:4]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "from the pack 'stylegan2-ada-tiny'" in note
    ds = load_directions(out / "directions", G_ada)
    ws, _ = L.load_latent([f for f in files if str(f).endswith(".npz")][0], G_ada)
    ws0 = L.seeds_to_ws(G_ada, [7], psi=0.7).numpy()[0]
    step = 1.5 * ds.scales[ds.index("yaw")] * ds.vector("yaw")
    np.testing.assert_allclose(np.asarray(ws).reshape(ws0.shape) - ws0, np.broadcast_to(step, ws0.shape), atol=1e-5)

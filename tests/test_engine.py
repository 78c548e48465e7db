"""The engine against the golden fixtures, plus loaders, Hub paths, safety and the CLI."""

import json
import os
import pickle
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import facegen
from facegen.engine import latents as L
from facegen.engine.errors import (FingerprintMismatchWarning, LatentError, ModelNotFoundError, OfflineError,
                            UnsafePickleError, UnsupportedModelError)
from facegen.engine.networks import Generator

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures"
ADA = FIXTURES / "stylegan2-ada-tiny"
TF = FIXTURES / "stylegan2-tf-tiny"
TOL = 1e-4

needs_fixtures = pytest.mark.skipif(not (ADA / "G_ema.pkl").exists() or not (TF / "Gs_tf.pkl").exists(),
                                    reason=f"golden fixtures not found at {FIXTURES} (see shared/fixtures/README.md)")


def _io(folder):
    from safetensors.torch import load_file
    return load_file(str(folder / "io.safetensors"))


def _maxdiff(a, b):
    return (a.float() - b.float()).abs().max().item()


@needs_fixtures
@pytest.mark.parametrize("pkl", [ADA / "G_ema.pkl", TF / "Gs_tf.pkl"], ids=["ada-pytorch", "tf-original"])
def test_fixture_outputs_match(pkl):
    G = facegen.load_generator(pkl)
    io = _io(pkl.parent)
    z = io["z"]
    assert G.num_ws == io["ws"].shape[1]
    with torch.no_grad():
        got = {
            "ws": G.mapping(z, None, truncation_psi=1),
            "ws_trunc": G.mapping(z, None, truncation_psi=0.7),
            "ws_trunc_cutoff": G.mapping(z, None, truncation_psi=0.7, truncation_cutoff=4),
            "img_psi1": G(z, None, truncation_psi=1, noise_mode="const"),
            "img_psi07": G(z, None, truncation_psi=0.7, noise_mode="const"),
            "img_psi07_cutoff": G(z, None, truncation_psi=0.7, truncation_cutoff=4, noise_mode="const"),
            "img_nonoise": G(z, None, truncation_psi=1, noise_mode="none"),
            "img_mix": G.synthesis(io["ws_mix"], noise_mode="const"),
            "img_psi1_unfused": G.synthesis(io["ws"], noise_mode="const", fused_modconv=False),
        }
        # The mixing latent is built the documented way from ws.
        ws_mix = L.style_mix(io["ws"][0], io["ws"][1], range(4, 8))
        assert _maxdiff(ws_mix, io["ws_mix"][0]) == 0
        if "ws_psi05" in io:
            got["ws_psi05"] = G.mapping(z, None, truncation_psi=0.5)
            got["img_psi05"] = G(z, None, truncation_psi=0.5, noise_mode="const")
        # Both modconv formulations reproduce every image.
        for fused in (True, False):
            got[f"img_psi1_fused{fused}"] = G.synthesis(io["ws"], noise_mode="const", fused_modconv=fused)
        _, blocks = G.synthesis(io["ws"][:1], noise_mode="const", return_blocks=True)
    for key, value in got.items():
        ref = io[key.split("_fused")[0]]
        assert value.shape == ref.shape, key
        assert _maxdiff(value, ref) <= TOL, f"{key}: {_maxdiff(value, ref)}"
    for res, (x, img) in blocks.items():
        assert _maxdiff(x, io[f"dbg_b{res}_x"]) <= TOL
        assert _maxdiff(img, io[f"dbg_b{res}_img"]) <= TOL


@needs_fixtures
def test_tf_conversion_matches_reference_state_dict():
    from safetensors.torch import load_file
    G = facegen.load_generator(TF / "Gs_tf.pkl")
    ref = load_file(str(TF / "G_ema_converted.safetensors"))
    sd = G.state_dict()
    assert set(sd) == set(ref)
    for k in ref:
        assert torch.equal(sd[k], ref[k]), k
    assert G.meta["tf_default_truncation_psi"] == 0.5


@needs_fixtures
def test_ada_pickle_matches_reference_state_dict_and_fingerprint_is_format_independent(tmp_path):
    from safetensors.torch import load_file
    G = facegen.load_generator(ADA / "G_ema.pkl")
    ref = load_file(str(ADA / "G_ema.safetensors"))
    for k, v in ref.items():
        assert torch.equal(G.state_dict()[k], v), k
    G2 = Generator(**json.loads((ADA / "config.json").read_text())["init_kwargs"])
    G2.load_state_dict(ref)
    assert G.fingerprint == G2.fingerprint
    G3 = facegen.load_generator(TF / "Gs_tf.pkl")
    assert G3.fingerprint != G.fingerprint


@needs_fixtures
@pytest.mark.parametrize("pkl", [ADA / "G_ema.pkl", TF / "Gs_tf.pkl"], ids=["ada-pytorch", "tf-original"])
def test_convert_cli_round_trip(pkl, tmp_path):
    out = tmp_path / "converted"
    r = subprocess.run([sys.executable, "-m", "facegen", "convert", str(pkl), str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    G1 = facegen.load_generator(pkl)
    G2 = facegen.load_generator(out)
    assert info["fingerprint"] == G1.fingerprint == G2.fingerprint
    z = torch.from_numpy(np.random.RandomState(5).randn(3, G1.z_dim)).float()
    with torch.no_grad():
        for kw in (dict(noise_mode="const"), dict(truncation_psi=0.6, truncation_cutoff=3, noise_mode="none")):
            assert torch.equal(G1(z, None, **kw), G2(z, None, **kw))


# ---------------------------------------------------------------------------
# Safety: pickles are never executed
# ---------------------------------------------------------------------------

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Evil(marker)}))
    with pytest.raises(UnsafePickleError) as exc:
        facegen.load_generator(path)
    assert "system" in str(exc.value) and exc.value.global_name.endswith("system")
    assert not marker.exists()


def test_malicious_pickle_hidden_inside_a_storage_is_refused(tmp_path):
    # torch.storage._load_from_bytes is allowed, but its bytes go through torch's weights-only loader.
    marker = tmp_path / "pwned2"
    inner = pickle.dumps(_Evil(marker))

    class Sneaky:
        def __reduce__(self):
            import torch.storage
            return (torch.storage._load_from_bytes, (inner,))

    path = tmp_path / "sneaky.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Sneaky()}))
    with pytest.raises(UnsafePickleError, match="not a plain storage"):
        facegen.load_generator(path)
    assert not marker.exists()


def _fake_module(name, **attrs):
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
        if hasattr(v, "__module__"):
            try:
                v.__module__ = name
            except (AttributeError, TypeError):
                pass
    sys.modules[name] = mod
    return mod


def _persistent_pickle(class_name, modules, init_kwargs):
    """Write a pickle shaped like torch_utils.persistence output, without the original code."""
    def _reconstruct_persistent_obj(meta):  # placeholder; never called by facegen
        raise AssertionError

    _fake_module("torch_utils")
    _fake_module("torch_utils.persistence", _reconstruct_persistent_obj=_reconstruct_persistent_obj)
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"

    class Obj:
        def __init__(self, cls, mods, kwargs=None):
            self.meta = dict(type="class", version=6, module_src="# source omitted", class_name=cls,
                             state={"_modules": mods, "_parameters": {}, "_buffers": {},
                                    "_init_kwargs": kwargs or {}, "_init_args": ()})

        def __reduce__(self):
            return (_reconstruct_persistent_obj, (self.meta,))

    synth = Obj("SynthesisNetwork", {m: Obj("X", {}) for m in modules})
    try:
        return pickle.dumps({"G_ema": Obj(class_name, {"synthesis": synth, "mapping": Obj("MappingNetwork", {})},
                                          init_kwargs)})
    finally:
        for n in ("torch_utils.persistence", "torch_utils"):
            sys.modules.pop(n, None)


def test_stylegan3_pickle_gets_a_clear_message(tmp_path):
    p = tmp_path / "sg3.pkl"
    p.write_bytes(_persistent_pickle("Generator", ["input", "L0_36_512", "L1_36_512"], {"z_dim": 512}))
    with pytest.raises(UnsupportedModelError, match="StyleGAN3"):
        facegen.load_generator(p)


def test_discriminator_only_pickle_gets_a_clear_message(tmp_path):
    p = tmp_path / "d.pkl"
    data = _persistent_pickle("Discriminator", ["b4"], {})
    p.write_bytes(data)
    with pytest.raises(UnsupportedModelError, match="expected a Generator, found a Discriminator"):
        facegen.load_generator(p)


def test_stylegan1_tf_pickle_gets_a_clear_message(tmp_path):
    class Network:
        def __init__(self, name, func, comps=None):
            self.state = dict(version=4, name=name, static_kwargs={}, components=comps or {},
                              build_module_src="# source omitted", build_func_name=func, variables=[])

        def __getstate__(self):
            return self.state

    _fake_module("dnnlib")
    _fake_module("dnnlib.tflib")
    _fake_module("dnnlib.tflib.network", Network=Network)
    Network.__qualname__ = "Network"
    try:
        gs = Network("Gs", "G_style", {"synthesis": Network("G_synthesis", "G_synthesis"),
                                       "mapping": Network("G_mapping", "G_mapping")})
        data = pickle.dumps((Network("G", "G_style"), Network("D", "D_basic"), gs))
    finally:
        for n in ("dnnlib.tflib.network", "dnnlib.tflib", "dnnlib"):
            sys.modules.pop(n, None)
    p = tmp_path / "sg1.pkl"
    p.write_bytes(data)
    with pytest.raises(UnsupportedModelError, match=r"StyleGAN \(v1\)"):
        facegen.load_generator(p)


def test_not_a_pickle_and_missing_files(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"hello, not a pickle")
    with pytest.raises(UnsupportedModelError, match="not a Python pickle"):
        facegen.load_generator(bad)
    trunc = tmp_path / "trunc.pkl"
    trunc.write_bytes(pickle.dumps({"a": list(range(100))})[:20])
    with pytest.raises(UnsupportedModelError):
        facegen.load_generator(trunc)
    with pytest.raises(ModelNotFoundError, match="not a file or folder"):
        facegen.load_generator(tmp_path / "nope.pkl")
    empty = tmp_path / "emptydir"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json is missing"):
        facegen.load_generator(empty)


# ---------------------------------------------------------------------------
# Hub-native folders and the Hub cache
# ---------------------------------------------------------------------------

def small_generator(c_dim=0, seed=0, res=16, **synth):
    torch.manual_seed(seed)
    G = Generator(z_dim=32, c_dim=c_dim, w_dim=32, img_resolution=res, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=256, channel_max=32, **synth)).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
            elif name.endswith("bias") and "affine" not in name:
                p.normal_(0, 0.2)
        G.mapping.w_avg.normal_(0, 0.5)
    return G


def _hub_cache(root: Path, repo_id: str, files: dict, revision="main") -> str:
    """Lay files out exactly as huggingface_hub's cache does (refs + snapshots)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / revision).write_text(commit)
    snap = repo_dir / "snapshots" / commit
    for name, src in files.items():
        dst = snap / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, Path):
            os.symlink(src, dst)
        else:
            dst.write_bytes(src)
    return commit


def test_hub_native_repo_loads_from_cache_offline(tmp_path, offline_cache):
    G = small_generator(c_dim=3)
    folder = G.save_pretrained(tmp_path / "model")
    files = {n: (folder / n).read_bytes() for n in ("config.json", "model.safetensors")}
    _hub_cache(offline_cache, "someone/tiny-face", files)
    _hub_cache(offline_cache, "someone/tiny-tagged", files, revision="v1")
    G2 = facegen.load_generator("hf://someone/tiny-face")
    G3 = facegen.load_generator("someone/tiny-face")
    G4 = facegen.load_generator("hf://someone/tiny-tagged@v1")
    assert G.fingerprint == G2.fingerprint == G3.fingerprint == G4.fingerprint
    z, c = torch.randn(2, 32), torch.eye(3)[:2]
    with torch.no_grad():
        assert torch.equal(G(z, c, noise_mode="const"), G2(z, c, noise_mode="const"))


@needs_fixtures
def test_hub_pickle_inside_repo_loads_from_cache(offline_cache):
    _hub_cache(offline_cache, "someone/tf-nets", {"nets/Gs_tf.pkl": TF / "Gs_tf.pkl"})
    G = facegen.load_generator("hf://someone/tf-nets/nets/Gs_tf.pkl")
    assert G.fingerprint == facegen.load_generator(TF / "Gs_tf.pkl").fingerprint


def test_offline_missing_repo_and_registry_entries_fail_clearly(offline_cache):
    with pytest.raises(OfflineError) as exc:
        facegen.load_generator("hf://nobody/not-cached")
    msg = str(exc.value)
    assert "nobody/not-cached" in msg and "HF_HUB_OFFLINE" in msg and "hf download" in msg
    with pytest.raises(OfflineError, match="stylegan2-ffhq-config-f"):
        facegen.load_generator("ffhq-config-f")
    with pytest.raises(ModelNotFoundError, match="registry name"):
        facegen.load_generator("no-such-model-name")


def test_registry_lists_known_generators():
    from facegen.engine import registry
    names = registry.names()
    for n in ("mini", "mini-v2", "ffhq-config-f", "seeprettyface-yellow", "seeprettyface-wanghong", "seeprettyface-star",
              "seeprettyface-model", "seeprettyface-kids"):
        assert n in names
        e = registry.get(n)
        assert e["format"] and e["resolution"] and e["license"]
    assert registry.default_name() == "mini-v2"


# ---------------------------------------------------------------------------
# Architecture options
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(), dict(architecture="resnet"), dict(architecture="orig"),
                                dict(num_fp16_res=2, conv_clamp=256)], ids=["skip", "resnet", "orig", "fp16res"])
def test_fused_and_unfused_agree_and_conditional(kw, tmp_path):
    G = small_generator(c_dim=4, **kw)
    z, c = torch.randn(3, 32), torch.eye(4)[[0, 1, 3]]
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=0.8)
        a = G.synthesis(ws, noise_mode="const", fused_modconv=True)
        b = G.synthesis(ws, noise_mode="const", fused_modconv=False)
        assert _maxdiff(a, b) < 1e-5
        # The class code matters.
        assert _maxdiff(G.mapping(z, torch.eye(4)[[1, 1, 1]]), G.mapping(z, torch.eye(4)[[2, 2, 2]])) > 1e-3
        # Noise modes: const is deterministic, random is not, none differs from const.
        r1, r2 = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
        assert _maxdiff(r1, r2) > 0
        assert _maxdiff(G.synthesis(ws, noise_mode="none"), a) > 0
    G2 = facegen.load_generator(G.save_pretrained(tmp_path / "m"))
    with torch.no_grad():
        assert torch.equal(G2.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const"))


def test_flat_kwargs_and_bad_precision():
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, channel_base=64, channel_max=16, num_layers=1)
    assert G.mapping.num_layers == 1 and G.synthesis.channels[8] == 8
    with pytest.raises(ValueError, match="precision"):
        G.synthesis(torch.zeros(1, G.num_ws, 8), precision="fp8")
    with pytest.raises(ValueError, match="power of two"):
        Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=48)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="half precision runs on CUDA only (no GPU here)")
def test_half_precision_on_cuda():
    G = small_generator().cuda()
    ws = G.mapping(torch.randn(2, 32, device="cuda"), None)
    ref = G.synthesis(ws, noise_mode="const")
    for p in ("fp16-all", "bf16-all"):
        assert _maxdiff(G.synthesis(ws, noise_mode="const", precision=p), ref) < 0.1


# ---------------------------------------------------------------------------
# Latent toolkit and the generate CLI
# ---------------------------------------------------------------------------

def test_seed_to_z_is_the_official_draw():
    z = L.seed_to_z(42, 512)
    assert z.dtype == np.float64 and z.shape == (1, 512)
    assert np.array_equal(z, np.random.RandomState(42).randn(1, 512))
    assert L.parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    for bad in ("3-1", "a", "", "-5", str(2 ** 33)):
        with pytest.raises(facegen.InputError):
            L.parse_seeds(bad)


def test_latent_ops():
    G = small_generator()
    ws = L.seeds_to_ws(G, "0-2", psi=1.0)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    # Truncation through the toolkit equals the mapping's own.
    t = L.truncate(G, ws, 0.5, cutoff=2)
    assert _maxdiff(t, L.seeds_to_ws(G, "0-2", psi=0.5, cutoff=2)) < 1e-6
    mixed = L.style_mix(ws[0], ws[1], L.layer_range(1, 2, G.num_ws))
    assert torch.equal(mixed[1:3], ws[1, 1:3]) and torch.equal(mixed[0], ws[0, 0])
    fused = L.fuse([ws[0], ws[1]], [3, 1])
    assert _maxdiff(fused, 0.75 * ws[0] + 0.25 * ws[1]) < 1e-6
    assert _maxdiff(L.slerp(ws[0, 0], ws[1, 0], 0.0), ws[0, 0]) < 1e-4
    assert _maxdiff(L.slerp(ws[0, 0], ws[1, 0], 1.0), ws[1, 0]) < 1e-4
    assert _maxdiff(L.lerp(ws[0], ws[1], 0.5), (ws[0] + ws[1]) / 2) < 1e-6
    assert L.preset_layers("coarse", 18) == [0, 1, 2, 3] and L.preset_layers("fine", 18)[0] == 8
    with pytest.raises(facegen.InputError):
        L.layer_range(3, 99, G.num_ws)
    with pytest.raises(facegen.InputError):
        L.fuse([ws[0]])
    with pytest.raises(facegen.InputError):
        L.check_psi(7)
    # Seed -> w as the official generate.py does it (float64 RandomState draw, then the mapping network
    # itself), not through facegen's own helpers: z_to_w / seeds_to_ws must agree with it.
    z_official = torch.from_numpy(np.random.RandomState(3).randn(1, G.z_dim)).float()
    with torch.no_grad():
        w_official = G.mapping(z_official, None)[:, 0]
    w = L.z_to_w(G, torch.from_numpy(L.seed_to_z(3, G.z_dim)).float())
    assert _maxdiff(w, w_official) < 1e-6
    wplus = L.seeds_to_ws(G, 3)
    assert wplus.shape == (1, G.num_ws, G.w_dim)
    assert all(_maxdiff(wplus[:, i], w_official) < 1e-6 for i in range(G.num_ws))    # untruncated: every layer is w
    assert _maxdiff(L.w_to_wplus(w, G.num_ws), wplus) < 1e-6
    assert _maxdiff(L.wplus_to_w(wplus), w_official) < 1e-6


def test_latent_files_validate_and_warn(tmp_path):
    G, other = small_generator(seed=0), small_generator(seed=1)
    ws = L.seeds_to_ws(G, 5)[0]
    p = L.save_latent(tmp_path / "face.npz", ws, fingerprint=G.fingerprint, seed=5)
    arr, meta = L.load_latent(p, G)
    assert np.array_equal(arr, ws.numpy()) and meta["seed"] == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.load_latent(p, G)  # same generator: no warning
    with pytest.warns(FingerprintMismatchWarning, match="different|not be the same"):
        L.load_latent(p, other)
    # A bare w broadcasts; wrong shapes, NaNs, pickles and junk are refused clearly.
    np.save(tmp_path / "w.npy", ws[0].numpy())
    assert L.load_latent(tmp_path / "w.npy", G)[0].shape == (G.num_ws, G.w_dim)
    np.save(tmp_path / "bad.npy", np.zeros((3, 7), np.float32))
    with pytest.raises(LatentError, match="does not fit"):
        L.load_latent(tmp_path / "bad.npy", G)
    np.save(tmp_path / "nan.npy", np.full((G.num_ws, G.w_dim), np.nan, np.float32))
    with pytest.raises(LatentError, match="NaN"):
        L.load_latent(tmp_path / "nan.npy", G)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(LatentError, match="unpickling"):
        L.load_latent(tmp_path / "obj.npy", G)
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 corrupt")
    with pytest.raises(LatentError):
        L.load_latent(tmp_path / "junk.npz", G)


def test_generate_cli(tmp_path):
    G = small_generator()
    model = G.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "facegen", "generate", "--model", str(model), "--seeds", "0-2",
                        "--psi", "0.7", "--outdir", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["seed0000.png", "seed0001.png", "seed0002.png"]
    arr, meta = L.load_latent(out / "seed0001.npz", G)
    assert meta["fingerprint"] == G.fingerprint and meta["seed"] == 1 and meta["psi"] == 0.7
    from facegen.engine.synthesis import synthesize
    from PIL import Image
    batch = np.stack([L.load_latent(out / f"seed{i:04d}.npz", G)[0] for i in range(3)])
    assert np.array_equal(np.asarray(Image.open(pngs[1])), synthesize(G, batch)[1])
    r = subprocess.run([sys.executable, "-m", "facegen", "generate", "--model", "nope", "--outdir", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "error: No model 'nope'" in r.stderr and "Traceback" not in r.stderr


def test_cpu_micro_batching_matches_the_whole_batch():
    G = small_generator(res=128)
    from facegen.engine.stylegan2_ops import choose_micro_batch
    assert choose_micro_batch(torch.device("cpu"), 128, needs_grad=False) == 1
    assert choose_micro_batch(torch.device("cpu"), 64, needs_grad=False) == 0
    assert choose_micro_batch(torch.device("cpu"), 128, needs_grad=True) == 0
    with torch.no_grad():
        ws = G.mapping(torch.randn(3, 32), None)
        whole = G.synthesis(ws, noise_mode="const", micro_batch=0, fused_modconv=True)
        chunked = G.synthesis(ws, noise_mode="const")           # auto: one sample at a time on CPU
        assert _maxdiff(whole, chunked) < 1e-5
        assert torch.equal(chunked[1:2], G.synthesis(ws[1:2], noise_mode="const"))  # batch-invariant pixels

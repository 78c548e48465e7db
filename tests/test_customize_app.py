"""The customisation tab (/customize) end to end: the real app through gradio_client, on mini (its pack's
classifier, z-codes and fine-tuned generator), on the official-format ADA fixture with no pack (the photo
labeller judges: it finds no face in the fixture's noise and says so), and on the ADA fixture with a pack
built in the test (a class sampler labelled by the world labeller, passed with FACEGEN_PACKS)."""

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402

import facegen  # noqa: E402
from facegen.features import customize as cz  # noqa: E402
from facegen.labels.classes import PHOTO_CLASSES  # noqa: E402
from facegen.packs.pack import find_pack  # noqa: E402
from facegen.world.classes import WORLD_CLASSES  # noqa: E402

from conftest import ADA_FIXTURE, launch_app  # noqa: E402

pytestmark = pytest.mark.timeout(400)
ADA = str(ADA_FIXTURE)


@pytest.fixture(scope="module")
def mini(studio_model):
    if studio_model != "mini":
        pytest.skip("the customisation assets are made for mini")
    return studio_model


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def class_choices(client) -> list:
    comp = next(c for c in client.config["components"] if c["props"].get("elem_id") == "cz-classes")
    return [c[1] if isinstance(c, (list, tuple)) else c for c in comp["props"]["choices"]]


def test_endpoints_listed(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/customize", "/customize_to_shelf", "/customize_info"} <= set(api)


def test_mini_offers_the_world_classes_and_says_what_its_pack_has(client, mini):
    assert class_choices(client) == WORLD_CLASSES.names()
    info = client.predict(mini, api_name="/customize_info")
    assert info.startswith("**This model:** pack 'mini' (z-code generators, class classifier; fine-tuned: glasses; "
                           "measured recipes (auto)); "
                           "classes of the world labeller; faces checked by its classifier.")


def test_customize_gallery_matches_core_and_goes_to_shelf(client, G, mini):
    gallery, note, = client.predict(classes=["beard"], method="zcode", count=3, psi=0.7, seed=7, model=mini,
                                    api_name="/customize")          # the classifier check is on by default
    assert len(gallery) == 3 and note.startswith("z-code generator 'beard' proposes, the classifier checks beard")
    core = cz.customize(G, find_pack(G), ["beard"], "zcode", 3, 0.7, 7)
    for item, img in zip(gallery, core["images"]):
        assert item["caption"].startswith("beard")
        np.testing.assert_array_equal(png(item["image"]), img)
    shelf = client.predict(api_name="/customize_to_shelf")
    assert len(shelf) >= 3 and shelf[-1]["caption"].endswith("beard")


@pytest.mark.parametrize("name", ["beard", "neutral"])
def test_the_default_method_is_the_packs_recipe_for_the_class(client, G, mini, name):
    """No method given: 'auto', the recipe mini's pack measured for the class (assets/packs/mini/recipes.json),
    named in the note, and exactly what the core draws with that method and check."""
    from facegen.packs.recipes import recipe_for
    pack = find_pack(G)
    recipe = recipe_for(pack, [name])
    gallery, note = client.predict(classes=[name], count=2, psi=0.7, seed=9, model=mini, api_name="/customize")
    assert note.startswith(f"the pack's recipe for '{name}' ({recipe['method']} + {recipe['check']}: ")
    core = cz.customize(G, pack, [name], recipe["method"], 2, 0.7, 9, check=recipe["check"])
    for item, img in zip(gallery, core["images"], strict=True):
        np.testing.assert_array_equal(png(item["image"]), img)


def test_customize_rejection_combination(client, mini):
    gallery, note = client.predict(classes=["glasses", "old"], method="rejection", count=2, psi=0.7, seed=1,
                                   model=mini, api_name="/customize")
    assert len(gallery) == 2 and note.startswith("rejection sampling: kept 2 of") and "varied" not in note


@pytest.mark.parametrize("check, expect", [("none", "no rejection"), ("varied", "the 2 most varied of 8 hits")])
def test_customize_check_choices(client, G, mini, check, expect):
    gallery, note = client.predict(classes=["old"], method="zcode", count=2, psi=0.7, seed=4, check=check,
                                   model=mini, api_name="/customize")
    assert expect in note
    core = cz.customize(G, find_pack(G), ["old"], "zcode", 2, 0.7, 4, check=check)
    for item, img in zip(gallery, core["images"]):
        np.testing.assert_array_equal(png(item["image"]), img)


@pytest.mark.parametrize("classes, method, message", [
    (["young", "old"], "zcode", "Contradictory classes: 'young' and 'old'"),
    ([], "rejection", "Pick at least one class"),
    (["hair:red"], "finetuned", "No fine-tuned generator for hair:red"),
])
def test_customize_bad_input(client, mini, classes, method, message):
    with pytest.raises(AppError, match=message):
        client.predict(classes=classes, method=method, count=2, psi=0.7, seed=0, model=mini, api_name="/customize")


def test_unknown_class_via_api(client, mini):
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict(classes=["purple"], method="zcode", count=2, psi=0.7, seed=0, model=mini,
                       api_name="/customize")


def test_shelf_needs_a_result_first(app_url):
    from gradio_client import Client
    with pytest.raises(AppError, match="Make some faces first"):
        Client(app_url, verbose=False).predict(api_name="/customize_to_shelf")


def test_finetuned_generator_faces_go_to_the_shelf_as_its_own(client, mini):
    gallery, note = client.predict(classes=["glasses"], method="finetuned", count=2, psi=0.7, seed=3, model=mini,
                                   api_name="/customize")
    assert len(gallery) == 2 and "fine-tuned on 'glasses'" in note
    shelf = client.predict(api_name="/customize_to_shelf")
    assert shelf[-1]["caption"].endswith("glasses")


def test_switching_the_model_updates_the_tabs_path_line(client, mini):
    """The model dropdown's change (/load_model) carries the tab's update: the line for mini-glasses, whose
    pack (labeller world) has no class components, says that z-code falls back to rejection sampling."""
    out = client.predict(model="mini-glasses", api_name="/load_model")
    lines = [o for o in out if isinstance(o, str) and o.startswith("**This model:**")]
    assert lines == ["**This model:** pack 'mini-glasses' (no class components); classes of the world labeller; "
                     "faces checked by the world labeller. *Z-code generator* falls back to rejection sampling."]
    client.predict(model=mini, api_name="/load_model")


def test_mini_v2_comes_with_its_own_pack(client, mini):
    """mini v2 (registry 'mini-v2') is found with its own pack by fingerprint (assets/packs/mini-v2: z-codes
    trained against its own discriminator, the world classifier): its tab line says so, and /customize on it
    uses its z-code generator (no fallback) and returns exactly what the core draws with that pack."""
    out = client.predict(model="mini-v2", api_name="/load_model")
    lines = [o for o in out if isinstance(o, str) and o.startswith("**This model:**")]
    assert lines == ["**This model:** pack 'mini-v2' (z-code generators, class classifier; measured recipes (auto)); "
                     "classes of the world labeller; faces checked by its classifier."]
    gallery, note = client.predict(classes=["beard"], method="zcode", count=2, psi=0.7, seed=7, model="mini-v2",
                                   api_name="/customize")
    assert note.startswith("z-code generator 'beard' proposes, the classifier checks beard")
    G = facegen.load_generator("mini-v2")
    pack = find_pack(G, hub=False)
    assert pack.name == "mini-v2" and pack.matches(G)
    core = cz.customize(G, pack, ["beard"], "zcode", 2, 0.7, 7)
    for item, img in zip(gallery, core["images"], strict=True):
        np.testing.assert_array_equal(png(item["image"]), img)
    client.predict(model=mini, api_name="/load_model")


# -- a generator with no pack: the ADA fixture, judged by the photo labeller ----------------------------

def test_no_pack_offers_the_photo_labellers_classes(ada_client):
    assert class_choices(ada_client) == PHOTO_CLASSES.names()
    info = ada_client.predict(ADA, api_name="/customize_info")
    assert info == ("**This model:** no pack; classes of the photo labeller; faces checked by the photo labeller. "
                    "*Z-code generator* falls back to rejection sampling.")
    with pytest.raises(AppError, match=r"not in the list of choices: \['smiling', 'neutral', 'male'"):
        ada_client.predict(classes=["glasses"], method="rejection", count=2, psi=0.7, seed=0, check="check",
                           model=ADA, api_name="/customize")


def test_no_pack_rejection_says_its_path_and_that_no_face_was_found(ada_client):
    """The fixture's random weights draw noise: the photo labeller reads no face in the first 64 samples,
    and the app answers with that (not a crash, not a minute of sampling)."""
    with pytest.raises(AppError, match=r"No face found: no z-code generators for this generator \(it has no pack\); "
                                       r"rejection sampling judged by the photo labeller: kept 0 of 64 samples "
                                       r"\(the photo labeller found no face in any of the 64 samples"):
        ada_client.predict(classes=["smiling"], method="zcode", count=2, psi=0.7, seed=0, check="check",
                           model=ADA, api_name="/customize")


# -- the ADA fixture with a pack built here: a class sampler labelled by the world labeller ---------------

@pytest.fixture(scope="module")
def ada_pack(tmp_path_factory):
    """A pack for the ADA fixture with only a class sampler (world labeller, 400 samples), and the app
    serving the fixture with FACEGEN_PACKS pointing at it."""
    if not ADA_FIXTURE.exists():
        pytest.skip(f"the StyleGAN2-ADA golden fixture is absent ({ADA_FIXTURE})")
    from facegen.engine.loaders import load_generator
    from facegen.packs.classes import ClassSampler, build_class_sampler
    from facegen.packs.pack import Pack, new_manifest
    G = load_generator(ADA).eval()
    root = tmp_path_factory.mktemp("packs") / "ada-world"
    entry = build_class_sampler(G, "world", root, n=400, seed=0, n_eval=16, log=lambda s: None)
    manifest = new_manifest(G, "ada-world", "world")
    manifest["components"].update(entry)
    Pack(root, manifest).save()
    pack = Pack.load(root)
    sampler = ClassSampler.load(pack.path("classes"))
    proc, url = launch_app(ADA, tmp_path_factory.mktemp("ada-pack-app"), {"FACEGEN_PACKS": str(root.parent)})
    from gradio_client import Client
    yield Client(url, verbose=False), G, pack, sampler
    proc.terminate()
    proc.wait(timeout=30)


def test_pack_sampler_on_a_foreign_generator(ada_pack):
    client, G, pack, sampler = ada_pack
    assert class_choices(client) == WORLD_CLASSES.names()                # the pack's labeller's classes
    info = client.predict(ADA, api_name="/customize_info")
    assert info.startswith("**This model:** pack 'ada-world' (class sampler); classes of the world labeller")
    name = sampler.classes[int(np.argmax(sampler.base_rate))]            # the class the fixture makes most
    gallery, note = client.predict(classes=[name], method="zcode", count=3, psi=0.7, seed=5, check="check",
                                   model=ADA, api_name="/customize")
    assert note.startswith("no z-code generators for this generator (its pack 'ada-world' has none); "
                           "class sampler of pack 'ada-world' (")
    assert f"proposes, the world labeller checks {name}: kept 3 of" in note
    core = cz.customize(G, pack, [name], "sampler", 3, 0.7, 5)
    assert len(gallery) == 3
    for item, img in zip(gallery, core["images"]):
        np.testing.assert_array_equal(png(item["image"]), img)

"""The customisation tab (/customize) end to end: the real app through gradio_client."""

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402

from facegen.features import customize as cz  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def mini(studio_model):
    if studio_model != "mini":
        pytest.skip("the customisation assets are made for mini")
    return studio_model


def test_endpoints_listed(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/customize" in api and "/customize_to_shelf" in api


def test_customize_gallery_matches_core_and_goes_to_shelf(client, G, mini):
    gallery, note, = client.predict(classes=["beard"], method="zcode", count=3, psi=0.7, seed=7, model=mini,
                                    api_name="/customize")          # the classifier check is on by default
    assert len(gallery) == 3 and "z-code generator 'beard' proposes, the classifier checks beard" in note
    core = cz.customize(G, ["beard"], "zcode", 3, 0.7, 7)
    for item, img in zip(gallery, core["images"]):
        assert item["caption"].startswith("beard")
        np.testing.assert_array_equal(np.asarray(Image.open(item["image"]).convert("RGB")), img)
    shelf = client.predict(api_name="/customize_to_shelf")
    assert len(shelf) >= 3 and shelf[-1]["caption"].endswith("beard")


def test_customize_rejection_combination(client, mini):
    gallery, note = client.predict(classes=["glasses", "old"], method="rejection", count=2, psi=0.7, seed=1,
                                   model=mini, api_name="/customize")
    assert len(gallery) == 2 and "rejection sampling: kept 2 of" in note and "varied" not in note


@pytest.mark.parametrize("check, expect", [("none", "no rejection"), ("varied", "the 2 most varied of 8 hits")])
def test_customize_check_choices(client, G, mini, check, expect):
    gallery, note = client.predict(classes=["old"], method="zcode", count=2, psi=0.7, seed=4, check=check,
                                   model=mini, api_name="/customize")
    assert expect in note
    core = cz.customize(G, ["old"], "zcode", 2, 0.7, 4, check=check)
    for item, img in zip(gallery, core["images"]):
        np.testing.assert_array_equal(np.asarray(Image.open(item["image"]).convert("RGB")), img)


@pytest.mark.parametrize("classes, method, message", [
    (["young", "old"], "zcode", "Contradictory classes: 'young' and 'old'"),
    ([], "rejection", "Pick at least one class"),
    (["hair:red"], "finetuned", "No fine-tuned generator for hair:red"),
])
def test_customize_bad_input(client, mini, classes, method, message):
    with pytest.raises(AppError, match=message):
        client.predict(classes=classes, method=method, count=2, psi=0.7, seed=0, model=mini, api_name="/customize")


def test_unknown_class_via_api(client, mini):
    with pytest.raises(AppError, match="not in the list of choices|Unknown class"):
        client.predict(classes=["purple"], method="zcode", count=2, psi=0.7, seed=0, model=mini,
                       api_name="/customize")


def test_shelf_needs_a_result_first(app_url):
    from gradio_client import Client
    with pytest.raises(AppError, match="Make some faces first"):
        Client(app_url, verbose=False).predict(api_name="/customize_to_shelf")


def test_finetuned_generator_faces_go_to_the_shelf_as_its_own(client, mini):
    from facegen.engine import registry
    if not registry.has("mini-glasses"):
        pytest.skip("mini-glasses is not registered")
    gallery, note = client.predict(classes=["glasses"], method="finetuned", count=2, psi=0.7, seed=3, model=mini,
                                   api_name="/customize")
    assert len(gallery) == 2 and "fine-tuned on 'glasses'" in note
    shelf = client.predict(api_name="/customize_to_shelf")
    assert shelf[-1]["caption"].endswith("glasses")

"""What a person sees: the app in headless Chromium (playwright, system browser, nothing downloaded).

Set FACEGEN_SCREENSHOTS=DIR to also save a PNG of each tab there (assets/screenshots/ for the README).
"""

import io
import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

CHROMIUM = os.environ.get("FACEGEN_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    if os.environ.get("FACEGEN_REQUIRE_BROWSER") == "1":   # CI (.ci/run) must run the browser tests
        raise RuntimeError(f"FACEGEN_REQUIRE_BROWSER=1 but Chromium is not installed at {CHROMIUM}.")
    pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium); browser tests skipped.",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from gradio_client import Client  # noqa: E402

pytestmark = pytest.mark.timeout(180)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SHOTS = os.environ.get("FACEGEN_SCREENSHOTS")
TIMEOUT = 30_000


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="facegen-chromium-")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                   viewport={"width": 1400, "height": 1000})
        yield ctx
        ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser, app_url):
    page = browser.new_page()
    page.external = []
    host = urlsplit(app_url).hostname

    def check(req):
        h = urlsplit(req.url).hostname
        if req.url.startswith(("http://", "https://", "ws://", "wss://")) and h not in (host, "localhost", "127.0.0.1"):
            page.external.append(req.url)
    page.on("request", check)
    yield page
    errors = page.locator('[data-testid="toast-body"].error')
    assert errors.count() == 0, f"error shown in the page: {errors.first.inner_text()}"
    assert page.external == [], f"the page reached outside the server: {page.external[:5]}"
    page.close()


def img_pixels(page, locator) -> np.ndarray:
    """Fetch the image a locator shows, as the page got it from the server."""
    src = locator.get_attribute("src")
    src = src if src.startswith("http") else page.evaluate("(s) => new URL(s, location.href).href", src)
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def shot(page, name):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def test_tabs_work_in_the_browser(page, app_url, studio_model):
    page.goto(app_url)
    banner = page.locator("#banner")
    sync_api.expect(banner).to_contain_text(Path(studio_model).name, timeout=TIMEOUT)
    sync_api.expect(banner).to_contain_text("fingerprint")

    page.locator("#gen-run").click()
    sync_api.expect(page.locator("#gen-gallery img")).to_have_count(4, timeout=TIMEOUT)
    sync_api.expect(page.locator("#generate-share textarea, #generate-share input").first).to_have_value(
        re.compile(r"\?tab=generate&.*seeds=0-3"), timeout=TIMEOUT)
    page.locator("#gen-shelf-all").click()
    sync_api.expect(page.locator("#shelf-gallery img")).to_have_count(4, timeout=TIMEOUT)
    shot(page, "generate")

    page.get_by_role("tab", name="Customise by class").click()
    page.locator("#cz-run").click()
    sync_api.expect(page.locator("#cz-gallery img")).to_have_count(8, timeout=TIMEOUT)
    sync_api.expect(page.locator("#cz-note")).to_contain_text("smiling", timeout=TIMEOUT)
    page.locator("#cz-shelf").click()
    sync_api.expect(page.locator("#shelf-gallery img")).to_have_count(12, timeout=TIMEOUT)
    shot(page, "customise-by-class")

    page.get_by_role("tab", name="Style mixing").click()
    page.locator("#mix-run").click()
    sync_api.expect(page.locator("#mix-grid img")).to_be_visible(timeout=TIMEOUT)
    sync_api.expect(page.locator("#mix-cells img")).to_have_count(12, timeout=TIMEOUT)
    shot(page, "style-mixing")

    page.get_by_role("tab", name="Face fusion").click()
    page.locator("#fuse-faces textarea, #fuse-faces input").first.fill("#1, #2, 3")
    page.locator("#fuse-run").click()
    sync_api.expect(page.locator("#fuse-image img")).to_be_visible(timeout=TIMEOUT)
    sync_api.expect(page.locator("#fuse-strip img")).to_be_visible(timeout=TIMEOUT)
    shot(page, "face-fusion")

    # Every generator can be edited (pack directions or principal components) and encoded (pack encoder or
    # projection): both tabs are always there and must work.
    page.get_by_role("tab", name="Attribute editing").click()
    page.locator("#edit-run").click()
    sync_api.expect(page.locator("#edit-before img")).to_be_visible(timeout=TIMEOUT)
    sync_api.expect(page.locator("#edit-after img")).to_be_visible(timeout=TIMEOUT)
    shot(page, "attribute-editing")

    from facegen.world.render import render_seed
    photo = Path(tempfile.mkdtemp()) / "world-face.png"
    Image.fromarray(render_seed(20_000_007, size=128).image).save(photo)
    page.get_by_role("tab", name="Photo encoding").click()
    page.locator("#enc-photo input[type=file]").set_input_files(str(photo))
    page.locator("#enc-run").click()
    sync_api.expect(page.locator("#enc-aligned img")).to_be_visible(timeout=TIMEOUT)
    sync_api.expect(page.locator("#enc-refined img")).to_be_visible(timeout=TIMEOUT)
    metrics = page.locator("#enc-metrics")
    sync_api.expect(metrics).to_contain_text("PSNR (dB)", timeout=TIMEOUT)
    # the table's two rows (start, then refinement / projection) show PSNR values in dB, the second no worse
    psnr = [float(v) for v in re.findall(r"(?:encoder only|average face \(w_avg\)|steps\))\s*\|?\s*(-?\d+\.\d\d)",
                                         metrics.inner_text())]
    assert len(psnr) == 2 and 5 < psnr[0] <= psnr[1] + 0.01, metrics.inner_text()
    shot(page, "photo-encoding")

    page.get_by_role("tab", name="Faceswap video").click()
    page.locator("#faceswap-sample input").first.fill("short-silent")
    page.locator("#faceswap-sample input").first.press("Enter")
    budget = page.get_by_label("Training budget (seconds)").first    # the slider's number box
    budget.fill("5")
    budget.press("Enter")
    page.locator("#faceswap-run").click()
    sync_api.expect(page.locator("#faceswap-preview img")).to_be_visible(timeout=90_000)
    video = page.locator("#faceswap-result video")
    sync_api.expect(video).to_be_visible(timeout=TIMEOUT)
    sync_api.expect(page.locator("#faceswap-note")).to_contain_text("no audio track", timeout=TIMEOUT)
    # the browser decodes the H.264 result: it knows its length and can show a frame
    page.wait_for_function("() => { const v = document.querySelector('#faceswap-result video');"
                           " return v && v.readyState >= 2 && v.duration > 1.5; }", timeout=TIMEOUT)
    shot(page, "faceswap-video")


def test_share_link_shows_the_same_image(page, app_url, studio_model):
    client = Client(app_url, verbose=False)
    grid, _, _, link = client.predict(sources="3,5", templates="8-9", layer_start=2, layer_end=6, psi=0.6,
                                      noise_mode="const", model=studio_model, api_name="/mix")
    expected = np.asarray(Image.open(grid).convert("RGB"))
    page.goto(link)
    sync_api.expect(page.get_by_role("tab", name="Style mixing")).to_have_attribute("aria-selected", "true",
                                                                                  timeout=TIMEOUT)
    img = page.locator("#mix-grid img")
    sync_api.expect(img).to_be_visible(timeout=TIMEOUT)
    sync_api.expect(page.locator("#mix-src textarea, #mix-src input").first).to_have_value("3,5")
    np.testing.assert_array_equal(img_pixels(page, img), expected)

    gallery, _, link = client.predict(seeds="11-12", count=1, psi=0.5, cutoff=0, noise_mode="const",
                                      model=studio_model, api_name="/generate")
    page.goto(link)
    thumbs = page.locator("#gen-gallery img")
    sync_api.expect(thumbs).to_have_count(2, timeout=TIMEOUT)
    np.testing.assert_array_equal(img_pixels(page, thumbs.first),
                                  np.asarray(Image.open(gallery[0]["image"]).convert("RGB")))


def test_bad_share_link_warns_and_uses_defaults(page, app_url):
    page.goto(app_url.rstrip("/") + "/?tab=fuse&faces=4,6&steps=lots")
    sync_api.expect(page.get_by_role("tab", name="Face fusion")).to_have_attribute("aria-selected", "true",
                                                                                 timeout=TIMEOUT)
    sync_api.expect(page.locator("#fuse-image img")).to_be_visible(timeout=TIMEOUT)
    sync_api.expect(page.locator('[data-testid="toast-body"].warning')).to_contain_text("steps", timeout=TIMEOUT)


def test_animation_video_plays_in_the_browser(page, app_url):
    """The Animation tab's H.264 mp4 decodes and plays in Chromium (pack directions, else principal components:
    every generator animates)."""
    page.goto(app_url)
    page.get_by_role("tab", name="Animation").click()
    page.locator("#anim-run").click()
    video = page.locator("#anim-video video")
    sync_api.expect(video).to_have_count(1, timeout=TIMEOUT)
    state = page.evaluate("""async () => {
      const v = document.querySelector('#anim-video video');
      if (v.readyState < 2) await new Promise((ok, bad) => { v.onloadeddata = ok; v.onerror = () => bad(v.error); });
      v.muted = true; await v.play(); const t0 = v.currentTime;
      await new Promise(r => setTimeout(r, 600));
      return {w: v.videoWidth, h: v.videoHeight, duration: v.duration, advanced: v.currentTime > t0,
              error: v.error && v.error.code, h264: v.canPlayType('video/mp4; codecs="avc1.42E01E"')};
    }""")
    assert state["error"] is None and state["w"] == state["h"] == 256, state
    assert 2.0 < state["duration"] < 3.0 and state["advanced"], state     # 60 frames at 24 fps, playing
    sync_api.expect(page.locator("#anim-gif img")).to_be_visible(timeout=TIMEOUT)
    shot(page, "animation")


@pytest.mark.parametrize("width, height, name", [(1280, 900, "tab-bar"), (390, 844, "tab-bar-phone")])
def test_tab_bar_shows_every_title_once(page, app_url, width, height, name):
    """All tabs are in the bar -- each title once, inside the window, none folded into a "…" menu -- on a
    1280 px screen and on a phone."""
    import app
    titles = [m.TITLE for m in app.TABS if m.available()]
    page.set_viewport_size({"width": width, "height": height})
    page.goto(app_url)
    sync_api.expect(page.get_by_role("tab", name=titles[-1])).to_be_visible(timeout=TIMEOUT)
    tabs = page.get_by_role("tab")
    shown = []
    for i in range(tabs.count()):
        t = tabs.nth(i)
        if t.is_visible():
            box = t.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (t.inner_text(), box)
            shown.append(t.inner_text().strip())
    assert sorted(shown) == sorted(titles), shown                # every title, once
    for title in titles:                                          # and nowhere else on the page
        assert page.get_by_text(title, exact=True).filter(visible=True).count() == 1, title
    assert page.locator(".overflow-menu").filter(visible=True).count() == 0
    if SHOTS:
        sync_api.expect(page.locator("#banner")).to_contain_text("fingerprint", timeout=TIMEOUT)
        sync_api.expect(page.locator(".eta-bar, .progress-text").filter(visible=True)).to_have_count(0, timeout=TIMEOUT)
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        bar = page.locator("#tabs").bounding_box()
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"),
                        clip={"x": 0, "y": 0, "width": width, "height": bar["y"] + 140})

"""facegen.labels.align: safe image loading, dlib detection, the FFHQ crop -- on a real public-domain photo."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("dlib", reason="face detection needs dlib-bin (pip install dlib-bin face-recognition-models)")
from facegen.labels import align
from facegen.world import render as world  # noqa: E402
from facegen.engine.errors import InputError  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def _astronaut_path():
    import importlib.util
    spec = importlib.util.find_spec("skimage")
    if spec is not None:
        p = Path(spec.origin).parent / "data" / "astronaut.png"
        if p.is_file():
            return p
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None:
        p = Path(spec.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if p.is_file():
            return p
    pytest.skip("no public-domain photo available (pip install scikit-image)")


@pytest.fixture(scope="module")
def photo_path():
    return _astronaut_path()


@pytest.fixture(scope="module")
def photo(photo_path):
    return align.load_image(photo_path)


def eye_geometry(img):
    """Re-detect the aligned crop: (eye midpoint / size, eye-line angle in degrees, nose x / size)."""
    faces = align.detect_faces(img)
    assert faces, "no face in the aligned crop"
    lm = faces[0].landmarks
    el, er = lm[36:42].mean(0), lm[42:48].mean(0)
    angle = np.degrees(np.arctan2(er[1] - el[1], er[0] - el[0]))
    return (el + er) / 2 / img.shape[0], angle, lm[30, 0] / img.shape[1]


def test_photo_crop_follows_ffhq_convention(photo_path):
    r = align.align_face(photo_path, 256)
    assert r.method == "ffhq" and r.index == 0 and len(r.faces) >= 1
    assert r.image.shape == (256, 256, 3) and r.image.dtype == np.uint8
    mid, angle, nose_x = eye_geometry(r.image)
    assert abs(angle) < 2.0                          # eyes level
    assert 0.44 <= mid[1] <= 0.50                    # FFHQ eye height (~0.47)
    assert abs(mid[0] - 0.5) < 0.03                  # centred
    assert abs(nose_x - 0.5) < 0.05
    # At the generator's size too.
    small = align.align_face(photo_path, 64).image
    assert small.shape == (64, 64, 3)


def test_rotated_photo_is_levelled(photo):
    tilted = np.asarray(Image.fromarray(photo).rotate(12, resample=Image.BICUBIC, expand=True, fillcolor=(128,) * 3))
    r = align.align_image(tilted, 256)
    mid, angle, _ = eye_geometry(r.image)
    assert abs(angle) < 2.5 and 0.43 <= mid[1] <= 0.51


def test_exif_orientation_is_applied(photo, tmp_path):
    rotated = Image.fromarray(photo).rotate(90, expand=True)     # stored sideways ...
    exif = Image.Exif()
    exif[0x0112] = 6                                             # ... with "rotate 90 CW to view"
    p = tmp_path / "sideways.jpg"
    rotated.save(p, quality=95, exif=exif)
    img = align.load_image(p)
    assert img.shape == photo.shape
    assert np.abs(img.astype(int) - photo.astype(int)).mean() < 6
    assert align.align_face(p, 64).method == "ffhq"


@pytest.mark.parametrize("mode", ["RGBA", "L", "CMYK", "I;16", "P"])
def test_colour_modes(photo, tmp_path, mode):
    im = Image.fromarray(photo)
    if mode == "RGBA":
        im = im.convert("RGBA")
        a = np.asarray(im).copy()
        a[:40, :40, 3] = 0                                        # a transparent corner -> white
        im = Image.fromarray(a, "RGBA")
        p = tmp_path / "x.png"
    elif mode == "CMYK":
        im = im.convert("CMYK")
        p = tmp_path / "x.jpg"
    elif mode == "I;16":
        im = Image.fromarray((np.asarray(im.convert("L")).astype(np.uint16) * 257))
        p = tmp_path / "x.png"
    else:
        im = im.convert(mode)
        p = tmp_path / "x.png"
    im.save(p)
    img = align.load_image(p)
    assert img.dtype == np.uint8 and img.shape == photo.shape
    if mode == "RGBA":
        assert (img[:40, :40] == 255).all()
    assert align.align_face(p, 64).method == "ffhq"


def test_large_image_is_downscaled_for_detection(photo):
    """Detection runs on a copy at most DETECT_MAX_SIDE px wide; the landmarks it finds there are mapped back
    to the full image (the same face as in the original photo, scaled), and the alignment is the usual one.
    (How much the downscaling saves is measured by bench/timing.py, not asserted here.)"""
    big = np.asarray(Image.fromarray(photo).resize((3000, 3000), Image.BICUBIC))
    k = 3000 / photo.shape[0]
    small_pts, big_pts = align.detect_faces(photo)[0].landmarks, align.detect_faces(big)[0].landmarks
    iod = np.linalg.norm(small_pts[42:48].mean(0) - small_pts[36:42].mean(0)) * k
    assert np.abs(big_pts - k * small_pts).mean() < 0.05 * iod          # the same 68 points, in big-image pixels
    r = align.align_image(big, 256)
    mid, angle, _ = eye_geometry(r.image)
    assert abs(angle) < 2.0 and 0.44 <= mid[1] <= 0.50 and abs(mid[0] - 0.5) < 0.03


def test_all_faces_found_largest_first_and_index(photo):
    canvas = np.full((700, 1100, 3), 200, np.uint8)
    canvas[100:612, 0:512] = photo
    small = np.asarray(Image.fromarray(photo).resize((360, 360), Image.LANCZOS))
    canvas[150:510, 650:1010] = small
    faces = align.detect_faces(canvas)
    assert len(faces) >= 2
    assert faces[0].size > faces[1].size
    r0 = align.align_image(canvas, 64)
    r1 = align.align_image(canvas, 64, index=1)
    assert r0.index == 0 and r1.index == 1
    assert faces[1].box[0] > 600                     # the second face is the smaller one on the right
    with pytest.raises(InputError, match="no face #"):
        align.align_image(canvas, 64, index=len(faces))
    preview = align.draw_faces(canvas, faces, 0, r0.quad)
    assert preview.ndim == 3 and max(preview.shape[:2]) <= 512


def test_world_renders_are_accepted_as_aligned():
    for seed in (20_000_000, 20_000_003, 20_000_005):
        img = world.render_seed(seed, size=64).image
        r = align.align_image(img, 64, validity="world")     # the labeller of a face-world generator's pack
        assert r.method == "pre-aligned"
        assert np.array_equal(r.image, img)          # used as is: the world is FFHQ-aligned by construction
    big = world.render_seed(20_000_010, size=256).image
    r = align.align_image(big, 64, validity="world")
    assert r.method == "pre-aligned" and r.image.shape == (64, 64, 3)


# ---------------------------------------------------------------------------
# Bad input: typed errors with a message, fast, never a crash
# ---------------------------------------------------------------------------

def _png_header_only(w, h) -> bytes:
    """A PNG that claims w x h pixels with almost no data (a decompression bomb's header)."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def _check(src, match):
    with pytest.raises(align.ImageReadError, match=match) as ei:      # how fast: bench/timing.py
        align.align_face(src, 64)
    assert isinstance(ei.value, InputError)
    return str(ei.value)


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not an image\n" * 10)
    _check(p, "not an image")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    _check(p, "empty")
    _check(b"", "empty")


def test_truncated_files(photo, tmp_path):
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, fmt)
        data = buf.getvalue()
        p = tmp_path / f"cut.{fmt.lower()}"
        p.write_bytes(data[:len(data) // 3])
        _check(p, "truncated|damaged|could not")


def test_animated_gif(photo, tmp_path):
    p = tmp_path / "anim.gif"
    frames = [Image.fromarray(photo), Image.fromarray(photo[:, ::-1].copy())]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    _check(p, "animated")


def test_decompression_bomb_20000px(tmp_path):
    p = tmp_path / "huge.png"
    p.write_bytes(_png_header_only(20000, 20000))
    msg = _check(p, "megapixels|too large")
    assert "20000" in msg or "large" in msg


def test_no_face(tmp_path):
    rng = np.random.default_rng(0)
    for img in (np.full((300, 400, 3), 120, np.uint8), rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)):
        with pytest.raises(align.NoFaceError, match="No face"):
            align.align_image(img, 64)
    with pytest.raises(align.NoFaceError):
        align.align_image(np.zeros((8, 8, 3), np.uint8), 64)


def test_face_too_small(photo):
    tiny = np.asarray(Image.fromarray(photo).resize((128, 128), Image.LANCZOS))   # face ~23 px
    with pytest.raises(align.FaceTooSmallError, match="only .* px"):
        align.align_image(tiny, 64, mode="detect")


def test_arrays_and_bad_arguments(photo):
    assert align.load_image(photo[..., 0]).shape == photo.shape        # greyscale array
    assert align.load_image(photo.astype(np.float32) / 255).dtype == np.uint8
    with pytest.raises(align.ImageReadError):
        align.load_image(np.zeros((4, 4, 5)))
    with pytest.raises(InputError):
        align.align_image(photo, 64, mode="sideways")
    with pytest.raises(InputError, match="square"):
        align.align_image(photo[:, :300], 64, mode="pre-aligned")

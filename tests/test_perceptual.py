"""facegen.labels.perceptual: MS-SSIM, the discriminator-feature loss, the pixel loss, the labeller loss and the
choice between them (pack, discriminator in the generator's file, else pixels).

The discriminator tests use the official-format StyleGAN2-ADA golden fixture (its pickle carries D); they skip
when ../shared/fixtures is absent.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from facegen.engine.errors import InputError
from facegen.labels import perceptual as P
from facegen.packs.pack import Pack, new_manifest

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parent.parent
ADA = ROOT.parent / "shared" / "fixtures" / "stylegan2-ada-tiny" / "G_ema.pkl"


def smooth_images(n=3, size=32, seed=0):
    """Natural-ish images in [-1, 1]: upsampled coarse noise (structure at several scales)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n, 3, size // 4, size // 4, generator=g), size=(size, size),
                                        mode="bicubic", align_corners=False)
    return (x * 2 - 1).clamp(-1, 1)


@pytest.fixture(scope="module")
def ada():
    if not ADA.is_file():
        pytest.skip(f"the StyleGAN2-ADA golden fixture is absent ({ADA})")
    import facegen
    torch.set_num_threads(1)
    return facegen.load_generator(str(ADA))


@pytest.mark.parametrize("size", [32, 64, 256])
def test_ms_ssim_is_one_for_itself_and_falls_with_noise(size):
    x = smooth_images(size=size)
    assert torch.allclose(P.ms_ssim(x, x), torch.ones(3), atol=1e-5)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    scores = [P.ms_ssim((x + s * noise).clamp(-1, 1), x) for s in (0.02, 0.1, 0.3, 0.8)]
    for a, b in zip(scores, scores[1:]):
        assert (b < a).all(), scores
    assert (scores[-1] < 0.8).all() and (scores[0] > 0.95).all()
    # Symmetric, and the number of scales follows the image size (3 at 32 px, 5 from 176 px).
    y = (x + 0.1 * noise).clamp(-1, 1)
    assert torch.allclose(P.ms_ssim(x, y), P.ms_ssim(y, x), atol=1e-6)
    assert P.ms_ssim_plan(32) == (7, 3) and P.ms_ssim_plan(64)[1] == 4 and P.ms_ssim_plan(256) == (11, 5)


def test_ms_ssim_sees_structure_that_mse_misses():
    """A brightness shift and a blur of equal MSE: MS-SSIM must judge the blur (lost structure) worse."""
    x = smooth_images(n=1, size=64, seed=3)
    x = (x + 0.3 * torch.nn.functional.interpolate(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)),
                                                   size=(64, 64), mode="nearest")).clamp(-1, 1)
    blur = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    mse_blur = (blur - x).square().mean()
    shift = (x + mse_blur.sqrt())
    assert torch.isclose((shift - x).square().mean(), mse_blur, rtol=1e-3)
    assert P.ms_ssim(blur, x) < P.ms_ssim(shift, x)


def test_ms_ssim_bad_input():
    with pytest.raises(InputError):
        P.ms_ssim(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 16, 16))
    with pytest.raises(InputError):
        P.ms_ssim(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))


def test_pixel_loss_zero_for_itself_and_grows():
    x = smooth_images()
    L = P.PixelLoss()
    assert torch.allclose(L(x, x), torch.zeros(3), atol=1e-6)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    a, b = L((x + 0.05 * noise).clamp(-1, 1), x), L((x + 0.3 * noise).clamp(-1, 1), x)
    assert (a > 0).all() and (b > a).all()
    img = x.clone().requires_grad_(True)              # differentiable in the first argument
    L(img, x + 0.1).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_discriminator_of_the_ada_pickle_loads_and_its_feature_loss_behaves(ada):
    D = P.load_discriminator(ada)
    assert D is not None and D.img_resolution == 32 and D.block_resolutions == [32, 16, 8]
    # The weights are the pickle's (facegen's layout: b4.conv/fc/out -> conv/fc/out).
    from facegen.engine.safe_pickle import safe_load
    with open(ADA, "rb") as f:
        raw = safe_load(f)["D"].tensors()
    assert torch.equal(D.b32.fromrgb.weight, raw["b32.fromrgb.weight"]) and torch.equal(D.fc.weight, raw["b4.fc.weight"])
    assert torch.isfinite(D(torch.zeros(4, 3, 32, 32))).all()
    L = P.DiscriminatorLoss(D)
    with torch.no_grad():
        x = ada(torch.randn(3, ada.z_dim, generator=torch.Generator().manual_seed(0)), None, noise_mode="const").clamp(-1, 1)
    assert torch.equal(L(x, x), torch.zeros(3))          # identical images: exactly zero
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    d = [L((x + s * noise).clamp(-1, 1), x) for s in (0.02, 0.1, 0.4)]
    assert (d[0] > 0).all() and (d[1] > d[0]).all() and (d[2] > d[1]).all(), d
    other = L(x.roll(1, 0), x)                             # different faces are further apart than a small noise
    assert (other > d[0]).all()
    assert (L(x.flip(3), x) > d[0]).all()                  # structure counts: a mirror image has the same colours
    img = x.clone().requires_grad_(True)
    L(img, x.roll(1, 0)).sum().backward()
    assert img.grad.abs().sum() > 0


def test_choice_by_pack_and_by_what_the_file_carries(ada, tmp_path):
    L = P.perceptual_for(ada)                                    # no pack, the pickle carries D
    assert isinstance(L, P.DiscriminatorLoss) and "no pack" in L.note and "G_ema.pkl" in L.note
    pack = Pack(tmp_path, new_manifest(ada, "ada", labeller=None, perceptual="pixels"))
    assert isinstance(P.perceptual_for(ada, pack), P.PixelLoss)
    assert isinstance(P.perceptual_for(ada, None, "pixels"), P.PixelLoss)
    # A pack that asks for the labeller but names none that is differentiable falls back to D, and says why.
    pack = Pack(tmp_path, new_manifest(ada, "ada", labeller="no.such.module:factory", perceptual="labeller"))
    L = P.perceptual_for(ada, pack)
    assert isinstance(L, P.DiscriminatorLoss) and "unavailable" in L.note
    # A generator saved without its D (Hub-native folder): pixels + MS-SSIM.
    folder = ada.save_pretrained(tmp_path / "g")
    import facegen
    G2 = facegen.load_generator(str(folder))
    L = P.perceptual_for(G2)
    assert isinstance(L, P.PixelLoss) and "carries no discriminator" in L.note
    with pytest.raises(InputError, match="Unknown perceptual"):
        P.perceptual_for(ada, None, "vgg")


def test_mini_pack_uses_the_world_labellers_features():
    import facegen
    from facegen.packs.pack import find_pack
    if not (ROOT / "assets" / "mini" / "config.json").is_file():
        pytest.skip("assets/mini is not built")
    G = facegen.load_generator("mini")
    pack = find_pack(G)
    L = P.perceptual_for(G, pack)
    assert isinstance(L, P.LabellerLoss) and "'world' labeller" in L.note
    from facegen.world.render import render_batch
    imgs = torch.from_numpy(render_batch([20_000_000, 20_000_001], size=64)[0]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.allclose(L(imgs, imgs), torch.zeros(2), atol=1e-7)
    assert (L(imgs, imgs.flip(0)) > 0.01).all()
    # mini's D sits beside its weights: a pack asking for "discriminator" gets it.
    L = P.perceptual_for(G, Pack(pack.root, {**pack.manifest, "perceptual": "discriminator"}))
    assert isinstance(L, P.DiscriminatorLoss) and L.D.img_resolution == 64
    assert np.isclose(float(L(imgs, imgs).abs().max()), 0.0)

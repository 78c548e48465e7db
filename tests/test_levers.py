"""The v2 recipe's levers (issue #17): DiffAugment / ADA, path-length regularisation, the projected D,
each checked against its maths, and wired into the training loop (off by default, resumable bit for bit)."""

import math

import numpy as np
import pytest
import torch

from facegen.world.augment import DiffAugment, color, cutout, parse_policy, translation
from facegen.world.pathlength import PathLengthRegulariser, path_lengths
from facegen.world.projected import ProjectedDiscriminator, d_loss, g_loss
from facegen.world.trainer import Trainer

from test_training import tiny_cfg, tiny_images  # noqa: F401  (the same tiny 16 px setup; a fixture)


# ---------------------------------------------------------------------------
# DiffAugment / ADA
# ---------------------------------------------------------------------------

def _shift(x, dy, dx):
    """Reference: out[i, j] = x[i - dy, j - dx] inside the image, else 0."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_translation_is_an_integer_shift_with_zero_fill_in_range():
    torch.manual_seed(0)
    x = torch.rand(24, 3, 16, 16) + 0.1            # no zeros inside, so fill is visible
    y = translation(x)
    seen = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(y[i], _shift(x[i], dy, dx))]
        assert len(hits) == 1, i                   # exactly one shift within +-16/8 = 2 px explains it
        seen.add(hits[0])
    assert len(seen) > 5                           # shifts vary between images


def test_cutout_zeroes_one_half_side_square_and_keeps_the_rest():
    torch.manual_seed(1)
    x = torch.rand(32, 3, 16, 16) + 0.1
    y = cutout(x)
    for i in range(len(x)):
        zero = (y[i] == 0).all(0)
        assert torch.equal(zero, (y[i] == 0).any(0))              # all channels together
        assert torch.equal(y[i][:, ~zero], x[i][:, ~zero])         # the rest untouched
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8         # a square of side 16 / 2, clipped at edges
        assert zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()   # a filled rectangle
        assert zero.sum() == len(rows) * len(cols)


def test_color_follows_brightness_saturation_contrast_formula():
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    torch.manual_seed(3)
    y = color(x)
    torch.manual_seed(3)
    b, s, c = (torch.rand(6, 1, 1, 1) for _ in range(3))
    ref = x + (b - 0.5)
    ref = (ref - ref.mean(1, keepdim=True)) * (2 * s) + ref.mean(1, keepdim=True)
    ref = (ref - ref.mean([1, 2, 3], keepdim=True)) * (c + 0.5) + ref.mean([1, 2, 3], keepdim=True)
    torch.testing.assert_close(y, ref)
    # A grey image stays grey and only its brightness moves, by at most 0.5.
    g = torch.full((50, 3, 4, 4), 0.2)
    yg = color(g)
    torch.testing.assert_close(yg[:, 0], yg[:, 2])
    assert ((yg - 0.2).abs() <= 0.5 + 1e-6).all() and (yg - 0.2).abs().max() > 0.3


def test_augment_is_differentiable_and_p_controls_how_often():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    DiffAugment("translation,cutout,color")(x).sum().backward()
    assert x.grad.abs().sum() > 0
    x = torch.rand(2000, 3, 8, 8) + 0.1
    assert torch.equal(DiffAugment("cutout", p=0.0)(x), x)
    torch.manual_seed(0)
    changed = (DiffAugment("cutout", p=0.3)(x) != x).flatten(1).any(1).float().mean()
    assert abs(float(changed) - 0.3) < 0.04
    with pytest.raises(ValueError, match="unknown augmentation"):
        parse_policy("translation,rotate")


def test_ada_moves_p_by_batch_times_interval_over_ada_kimg():
    aug = DiffAugment("translation", p=0.5, ada_target=0.6, ada_kimg=1.0, interval=4)
    for _ in range(3):
        aug.update(torch.ones(16), batch=16)       # D sure of every real: overfitting
    assert float(aug.p) == 0.5                     # only every 4th call adjusts
    aug.update(torch.ones(16), batch=16)
    assert float(aug.p) == pytest.approx(0.5 + 16 * 4 / 1000)
    for _ in range(4):
        aug.update(-torch.ones(16), batch=16)      # r_t = -1 < 0.6: p goes down again
    assert float(aug.p) == pytest.approx(0.5)
    for _ in range(4 * 200):
        aug.update(-torch.ones(16), batch=16)
    assert float(aug.p) == 0.0                     # clipped


# ---------------------------------------------------------------------------
# Path length
# ---------------------------------------------------------------------------

def test_path_length_of_a_linear_generator_is_the_norm_of_its_transposed_jacobian():
    torch.manual_seed(0)
    n, layers, dim, h = 5, 3, 6, 4
    M = torch.randn(layers, dim, 3 * h * h)
    ws = torch.randn(n, layers, dim, requires_grad=True)
    img = torch.einsum("nld,ldp->np", ws, M).view(n, 3, h, h)
    y = torch.randn(n, 3, h, h) / h
    got = path_lengths(img, ws, y)
    want = torch.stack([torch.einsum("ldp,p->ld", M, y[i].flatten()).square().sum(1).mean().sqrt() for i in range(n)])
    torch.testing.assert_close(got, want)


def test_path_length_penalty_tracks_its_running_mean():
    reg = PathLengthRegulariser(weight=2.0, interval=4, batch_shrink=2, decay=0.01)
    assert reg.batch_size(16) == 8 and reg.batch_size(1) == 1
    ws = torch.randn(8, 2, 4, requires_grad=True)
    img = (ws.sum(1) * 3.0).view(8, 1, 2, 2)
    torch.manual_seed(0)
    loss, lengths = reg.loss(img, ws)
    assert float(reg.pl_mean) == pytest.approx(0.01 * float(lengths.mean()), rel=1e-6)
    want = (lengths - reg.pl_mean).square().mean() * 2.0 * 4
    assert float(loss) == pytest.approx(float(want), rel=1e-6)
    assert lengths.std() > 0 and float(loss) > 0
    with pytest.raises(ValueError):
        PathLengthRegulariser(weight=0.0)


# ---------------------------------------------------------------------------
# Projected discriminator
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def predictor():
    from facegen.world.predictor import load_world_predictor
    return load_world_predictor()


def test_projected_features_are_frozen_fixed_and_multi_scale(predictor):
    P = ProjectedDiscriminator(64, seed=0, predictor=predictor).train()
    assert P.features.sides == [32, 16, 8, 4]
    assert [p.requires_grad for p in P.features.parameters()] == [False] * len(list(P.features.parameters()))
    frozen = {k: v.clone() for k, v in P.features.state_dict().items()}
    heads = {k: v.clone() for k, v in P.heads.state_dict().items()}
    opt = torch.optim.Adam(P.heads.parameters(), lr=0.01)
    torch.manual_seed(0)
    fake, real = torch.rand(4, 3, 64, 64) * 2 - 1, torch.rand(4, 3, 64, 64) * 2 - 1
    P.d_step(fake, real, opt)
    for k, v in P.features.state_dict().items():      # trunk weights, BN statistics, CCM / CSM unchanged
        assert torch.equal(v, frozen[k]), k
    assert any(not torch.equal(v, heads[k]) for k, v in P.heads.state_dict().items())
    for k, v in P.features.trunk.state_dict().items():
        assert torch.equal(v, predictor.trunk.state_dict()[k]), k
    # The projections come from the seed, not the global RNG.
    torch.manual_seed(123)
    same, other = ProjectedDiscriminator(64, seed=0, predictor=predictor), ProjectedDiscriminator(64, seed=1, predictor=predictor)
    assert torch.equal(same.features.ccm0, P.features.ccm0) and not torch.equal(other.features.ccm0, P.features.ccm0)
    # The coarsest map is the whole trunk's output through its 1x1 projection.
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(P.features(x)[-1], torch.nn.functional.conv2d(predictor.trunk(x), P.features.ccm3))
    assert P(x).shape == (2, 25 + 25 + 25 + 1)        # 5x5 logit maps at 32 / 16 / 8 px, one at 4 px


def test_projected_gradient_reaches_the_image_and_losses_are_hinge(predictor):
    P = ProjectedDiscriminator(64, predictor=predictor)
    img = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    P.loss_G(img).backward()
    assert img.grad.abs().sum() > 0
    lf, lr = torch.tensor([[-2.0, 0.5]]), torch.tensor([[3.0, 0.0]])
    assert float(d_loss(lf, lr, "hinge")) == pytest.approx((0 + 1) / 2 + (0 + 1.5) / 2)
    assert float(g_loss(lf, "hinge")) == pytest.approx(0.75)
    assert float(d_loss(lf, lr, "logistic")) == pytest.approx(
        (math.log1p(math.exp(-2)) + math.log1p(math.exp(0.5))) / 2 + (math.log1p(math.exp(-3)) + math.log(2)) / 2)


# ---------------------------------------------------------------------------
# In the training loop
# ---------------------------------------------------------------------------


ALL_ON = dict(augment="translation,cutout,color", augment_p=0.2, ada_target=0.6, ada_kimg=0.002,
              pl_weight=2.0, pl_interval=2, projected="with")


def test_levers_are_off_by_default(tmp_path, tiny_images):
    tr = Trainer(tiny_cfg(tmp_path), tiny_images)
    assert (tr.aug, tr.pl, tr.P, tr.opt_P) == (None, None, None, None)
    assert tr.opt_G.param_groups[0]["lr"] == 0.0025 and tr.opt_G.param_groups[0]["betas"] == (0.0, 0.99)
    assert not {"aug", "pl", "P", "opt_P"} & tr.state().keys()


def test_all_levers_train_and_resume_bit_for_bit(tmp_path, tiny_images):
    def weights(tr):
        return {f"{n}.{k}": v.clone() for n, m in (("G", tr.G), ("D", tr.D), ("E", tr.G_ema), ("P", tr.P))
                for k, v in m.state_dict().items()}

    straight = Trainer(tiny_cfg(tmp_path / "a", **ALL_ON), tiny_images)
    assert straight.opt_G.param_groups[0]["lr"] == pytest.approx(0.0025 * 2 / 3)   # lazy PL correction
    start = weights(straight)
    logs = [straight.train_step() for _ in range(6)]
    assert all(np.isfinite(v) for s in logs for v in s.values())
    assert sum("pl" in s for s in logs) == 3 and all("loss_P" in s for s in logs)
    assert logs[-1]["aug_p"] != 0.2                           # ADA moved p
    moved = weights(straight)
    assert not torch.equal(moved["P.heads.0.net.0.parametrizations.weight.original"],
                           start["P.heads.0.net.0.parametrizations.weight.original"])

    first = Trainer(tiny_cfg(tmp_path / "b", **ALL_ON), tiny_images)
    for _ in range(3):
        first.train_step()
    first.save_checkpoint(tmp_path / "ckpt.pt")
    torch.manual_seed(999)
    resumed = Trainer(tiny_cfg(tmp_path / "c", **ALL_ON), tiny_images)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    for _ in range(3):
        resumed.train_step()
    a, b = weights(straight), weights(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert float(resumed.aug.p) == float(straight.aug.p) and float(resumed.pl.pl_mean) == float(straight.pl.pl_mean)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="training on CUDA needs a GPU (none here); bench/gpu_branch.py runs it on a lent one")
def test_all_levers_train_on_cuda(tmp_path, tiny_images):
    """Every lever's state lives on the run's device (ADA's accumulator once stayed on the CPU and crashed
    the first CUDA step with D(real) on the GPU)."""
    tr = Trainer(tiny_cfg(tmp_path, device="cuda", match_weight=1.0, match_warmup=1, **ALL_ON), tiny_images)
    logs = [tr.train_step() for _ in range(6)]
    assert all(np.isfinite(v) for s in logs for v in s.values())
    assert logs[-1]["aug_p"] != 0.2 and sum("pl" in s for s in logs) == 3 and any("match" in s for s in logs)
    on = {t.device.type for m in (tr.G, tr.D, tr.G_ema, tr.aug, tr.pl, tr.match) for t in m.state_dict().values()}
    assert on == {"cuda"}


def test_projected_only_leaves_the_pixel_d_alone(tmp_path, tiny_images):
    tr = Trainer(tiny_cfg(tmp_path, projected="only", augment="translation,color"), tiny_images)
    d0 = {k: v.clone() for k, v in tr.D.state_dict().items()}
    stats = [tr.train_step() for _ in range(2)]
    assert all("loss_P" in s and "loss_D" not in s and "r1" not in s for s in stats)
    assert all(torch.equal(v, d0[k]) for k, v in tr.D.state_dict().items())
    with pytest.raises(ValueError, match="projected"):
        Trainer(tiny_cfg(tmp_path, projected="yes"), tiny_images)

"""The linear-decodability lever (facegen.world.linearity, issue #17): its read-out is the ridge regression of
the predictor's scores on w over the running statistics, its loss the unexplained fraction of each attribute's
variance, its gradient reaches G through the image and through w; in the training loop it is off by default,
runs lazily after a warm-up, and resumes bit for bit."""

import numpy as np
import pytest
import torch

from facegen.world.linearity import DEFAULT_ATTRIBUTES, LinearDecodability
from facegen.world.resume import export_resume, load_resume
from facegen.world.trainer import Trainer

from test_training import assert_resumes_bit_for_bit, tiny_cfg, tiny_images  # noqa: F401  (tiny_images: a fixture)


@pytest.fixture(scope="module")
def predictor():
    from facegen.world.predictor import load_world_predictor
    return load_world_predictor()


def _faces(n=8, size=64, start=100):
    from facegen.world.render import render_batch
    imgs, _ = render_batch(range(start, start + n), size=size)
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_scores_are_the_predictors_raw_outputs_with_logits_clipped(predictor):
    lever = LinearDecodability(16, predictor=predictor, logit_clip=1.0)
    assert set(lever.order) == set(DEFAULT_ATTRIBUTES)
    x = _faces()
    s = lever.scores(x)
    with torch.no_grad():
        raw = predictor(predictor.prepare_tensor(x, (-1.0, 1.0)))[1]
    index = {name: (kind, i) for name, kind, _, i, _ in predictor.layout}
    for k, name in enumerate(lever.order):
        kind, i = index[name]
        want = raw[:, i].clamp(-1, 1) if kind == "bool" else raw[:, i]
        torch.testing.assert_close(s[:, k], want)
    assert lever.is_logit.tolist() == [index[n][0] == "bool" for n in lever.order]
    with pytest.raises(ValueError, match="not continuous or boolean"):
        LinearDecodability(16, predictor=predictor, attributes=("hair_colour",))


def test_running_statistics_pool_the_batches_and_the_readout_is_ridge_regression(predictor):
    torch.manual_seed(0)
    lever = LinearDecodability(6, predictor=predictor, decay=0.25, ridge=0.0)
    batches = [(torch.randn(5, 6), torch.randn(5, 5)) for _ in range(6)]
    for w, s in batches[:4]:                   # 1 / decay = 4 batches: the plain average of all of them
        lever.update(w, s)
    W = torch.cat([w for w, _ in batches[:4]]).double()
    S = torch.cat([s for _, s in batches[:4]]).double()
    torch.testing.assert_close(lever.mean_w, W.mean(0))
    torch.testing.assert_close(lever.cov_ww, torch.cov(W.T, correction=0))
    torch.testing.assert_close(lever.var_s, S.var(0, unbiased=False))
    A, b = lever.readout()                     # ordinary least squares of S on W (ridge 0)
    coef = torch.linalg.lstsq(torch.cat([W, torch.ones(len(W), 1, dtype=W.dtype)], 1), S).solution
    torch.testing.assert_close(A.double(), coef[:6], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b.double(), coef[6], atol=1e-4, rtol=1e-4)
    before = lever.cov_ww.clone()              # after that, exponential with rate `decay`
    w, s = batches[4]
    lever.update(w, s)
    dw = w.double() - w.double().mean(0)
    delta = w.double().mean(0) - W.mean(0)
    torch.testing.assert_close(lever.cov_ww, 0.75 * before + 0.25 * dw.T @ dw / 5 + 0.25 * 0.75 * torch.outer(delta, delta))


def test_loss_is_the_unexplained_fraction_after_warm_up_and_reaches_image_and_w(predictor):
    torch.manual_seed(0)
    lever = LinearDecodability(16, weight=3.0, interval=2, warmup=2, predictor=predictor)
    for call in range(2):                      # warm-up: statistics only, no loss
        loss, stats = lever.loss(_faces(start=10 * call), torch.randn(8, 16))
        assert loss is None and stats == {"lin_warm": 1.0}
    assert int(lever.calls) == 2
    x = _faces(start=50).requires_grad_(True)
    w = torch.randn(8, 16, requires_grad=True)
    A, b = lever.readout()
    var = lever.var_s.float().clamp_min(0.01)
    loss, stats = lever.loss(x, w)
    s = lever.scores(x).detach()
    unexplained = (s - (w.detach() @ A + b)).square().mean(0) / var
    torch.testing.assert_close(loss.detach(), unexplained.mean() * 3.0 * 2)
    assert stats["lin"] == pytest.approx(float(unexplained.mean()), rel=1e-5)
    assert stats["lin_smile"] == pytest.approx(float(unexplained[lever.order.index("smile")]), rel=1e-5)
    loss.backward()
    assert x.grad.abs().sum() > 0 and w.grad.abs().sum() > 0
    assert int(lever.calls) == 3               # the batch entered the statistics after its loss


def test_scores_linear_in_w_are_explained(predictor):
    """When w holds the scores linearly, the unexplained fraction falls to ~0; for a w unrelated to them
    it stays ~1 (the read-out cannot do better than the mean)."""
    torch.manual_seed(0)
    x = [_faces(8, start=8 * k) for k in range(12)]
    lever = LinearDecodability(12, predictor=predictor, warmup=10, decay=0.05)
    noise = LinearDecodability(12, predictor=predictor, warmup=10, decay=0.05)
    mix = torch.randn(5, 5)
    with torch.no_grad():
        all_s = torch.cat([lever.scores(xk) for xk in x])
    mu, sd = all_s.mean(0), all_s.std(0)       # w's dimensions on one scale, as a mapping network's are
    for k in range(12):
        s = lever.scores(x[k]).detach()
        w_lin = torch.cat([(s - mu) / sd @ mix, torch.randn(8, 7)], 1)
        linear, _ = lever.loss(x[k], w_lin)
        unrelated, _ = noise.loss(x[k], torch.randn(8, 12))
    assert float(linear) / (1.0 * 4) < 0.05 and float(unrelated) / 4 > 0.6


def test_lever_is_off_by_default_and_trains_lazily_and_resumes_bit_for_bit(tmp_path, tiny_images):
    off = Trainer(tiny_cfg(tmp_path / "off"), tiny_images)
    assert off.lin is None and "lin" not in off.state()

    on = dict(lin_weight=1.0, lin_interval=2, lin_warmup=1)
    straight = Trainer(tiny_cfg(tmp_path / "a", **on), tiny_images)
    logs = [straight.train_step() for _ in range(6)]
    assert [s.get("lin_warm") for s in logs] == [1.0, None, 0.0, None, 0.0, None]
    assert all(np.isfinite(v) for s in logs for v in s.values())
    assert int(straight.lin.calls) == 3
    assert_resumes_bit_for_bit(tmp_path, tiny_images, straight, "lin", **on)


def test_warm_up_leaves_g_alone_and_then_the_lever_moves_g(tmp_path, tiny_images):
    """Two runs, same seed, the lever at weights 1 and 50 (so the same draws): equal G through the warm-up
    call (step 0), different once the lever's loss reaches G (step 4, interval 4)."""
    def run(weight, steps):
        tr = Trainer(tiny_cfg(tmp_path / str(weight), lin_weight=weight, lin_interval=4, lin_warmup=1), tiny_images)
        stats = [tr.train_step() for _ in range(steps)]
        return dict(tr.G.named_parameters()), stats

    g1, _ = run(1.0, 4)
    g50, _ = run(50.0, 4)
    assert all(torch.equal(v, g50[k]) for k, v in g1.items())
    g1, s1 = run(1.0, 5)
    g50, s50 = run(50.0, 5)
    assert s1[4]["lin_warm"] == 0.0 and s1[4]["lin"] == pytest.approx(s50[4]["lin"])
    assert any(not torch.equal(v, g50[k]) for k, v in g1.items())


def test_switching_the_lever_on_at_a_resume_keeps_the_run(tmp_path, tiny_images):
    """A run branched at a resume point with the lever on starts from the run's networks and fresh statistics."""
    plain = Trainer(tiny_cfg(tmp_path / "p"), tiny_images)
    for _ in range(2):
        plain.train_step()
    plain.save_checkpoint(tmp_path / "plain.pt")
    export_resume(tmp_path / "plain.pt", tmp_path / "resume", with_optimizer=True)
    branch = Trainer(tiny_cfg(tmp_path / "b", lin_weight=1.0, lin_interval=2), tiny_images)
    assert load_resume(branch, tmp_path / "resume") is True      # G's and D's Adam moments restored
    for k, v in plain.G.state_dict().items():
        assert torch.equal(branch.G.state_dict()[k], v), k
    assert int(branch.lin.calls) == 0 and branch.step == 2
    assert branch.train_step()["lin_warm"] == 1.0


def test_mode_w_moves_only_w(predictor, tmp_path, tiny_images):
    """Mode "w": no gradient reaches the image; in training the lever's step changes the mapping network
    only (two runs at weights 1 and 50: same synthesis weights, different mapping weights after step 4)."""
    lever = LinearDecodability(16, warmup=1, mode="w", predictor=predictor)
    lever.loss(_faces(start=0), torch.randn(8, 16))
    x = _faces(start=8).requires_grad_(True)
    w = torch.randn(8, 16, requires_grad=True)
    loss, _ = lever.loss(x, w)
    loss.backward()
    assert x.grad is None and w.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="mode"):
        LinearDecodability(16, mode="image", predictor=predictor)

    def run(weight):
        tr = Trainer(tiny_cfg(tmp_path / str(weight), lin_weight=weight, lin_interval=4, lin_warmup=1,
                              lin_mode="w"), tiny_images)
        for _ in range(5):
            tr.train_step()
        return dict(tr.G.named_parameters())

    g1, g50 = run(1.0), run(50.0)
    assert all(torch.equal(v, g50[k]) for k, v in g1.items() if k.startswith("synthesis."))
    assert any(not torch.equal(v, g50[k]) for k, v in g1.items() if k.startswith("mapping."))


def test_the_attributes_read_come_from_the_training_config(predictor, tmp_path):
    from dataclasses import replace
    from facegen.world.linearity import build_linearity
    cfg = tiny_cfg(tmp_path, lin_weight=1.0, lin_attributes="smile, age")
    lever = build_linearity(cfg, "cpu")
    assert set(lever.order) == {"smile", "age"} and len(lever.columns) == 2
    assert lever.scores(_faces(2)).shape == (2, 2)
    assert set(build_linearity(replace(cfg, lin_attributes=tiny_cfg(tmp_path).lin_attributes), "cpu").order) \
        == set(DEFAULT_ATTRIBUTES)
    with pytest.raises(ValueError, match="no attributes"):
        build_linearity(replace(cfg, lin_attributes=" , "), "cpu")


def test_bool_target_prob_reads_booleans_as_probabilities(predictor):
    """``bool_target="prob"``: a boolean's score is sigmoid(logit) (unclipped), continuous scores unchanged,
    and the gradient through the image still reaches it; an unknown target is refused."""
    logit = LinearDecodability(16, predictor=predictor)
    prob = LinearDecodability(16, predictor=predictor, bool_target="prob")
    x = _faces().requires_grad_(True)
    s_logit, s_prob = logit.scores(x.detach()), prob.scores(x)
    with torch.no_grad():
        raw = predictor(predictor.prepare_tensor(x, (-1.0, 1.0)))[1][:, prob.columns]
    boolean = prob.is_logit
    assert boolean.any() and (~boolean).any()
    torch.testing.assert_close(s_prob[:, boolean].detach(), raw[:, boolean].sigmoid())
    torch.testing.assert_close(s_prob[:, ~boolean].detach(), s_logit[:, ~boolean])
    assert (s_prob[:, boolean] >= 0).all() and (s_prob[:, boolean] <= 1).all()
    s_prob[:, boolean].sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="bool_target"):
        LinearDecodability(16, predictor=predictor, bool_target="margin")


def test_statistics_of_the_other_bool_target_are_not_loaded(predictor):
    """A state gathered with logits (or one saved before the option, which has no target) loads into a
    logit lever, and into a "prob" lever only as fresh statistics; a "prob" state loads into "prob"."""
    torch.manual_seed(0)
    logit = LinearDecodability(16, predictor=predictor, warmup=1)
    for k in range(3):
        logit.loss(_faces(start=8 * k), torch.randn(8, 16))
    state = logit.state_dict()
    assert int(state["calls"]) == 3
    old = {k: v for k, v in state.items() if k != "target"}       # a checkpoint from before the option

    again = LinearDecodability(16, predictor=predictor)
    again.load_state_dict(old)
    assert int(again.calls) == 3 and torch.equal(again.cov_ws, logit.cov_ws) and again.bool_target == "logit"

    prob = LinearDecodability(16, predictor=predictor, bool_target="prob", warmup=1)
    for st in (state, old):
        prob.load_state_dict(st)
        assert int(prob.calls) == 0 and not prob.cov_ws.any() and int(prob.target) == 1
    prob.loss(_faces(start=40), torch.randn(8, 16))
    twin = LinearDecodability(16, predictor=predictor, bool_target="prob")
    twin.load_state_dict(prob.state_dict())
    assert int(twin.calls) == 1 and torch.equal(twin.cov_ws, prob.cov_ws)


def test_a_branch_switching_bool_target_at_a_resume_warms_up_again(tmp_path, tiny_images):
    """The trainer reads ``lin_bool_target`` from its config; a branch from a logit run's resume point with
    "prob" keeps the run's networks, restarts the lever's warm-up, and itself resumes bit for bit."""
    on = dict(lin_weight=1.0, lin_interval=2, lin_warmup=1)
    run = Trainer(tiny_cfg(tmp_path / "p", **on), tiny_images)
    for _ in range(4):
        run.train_step()
    assert int(run.lin.calls) == 2 and run.lin.bool_target == "logit"
    run.save_checkpoint(tmp_path / "run.pt")
    export_resume(tmp_path / "run.pt", tmp_path / "resume", with_optimizer=True)
    prob = dict(on, lin_bool_target="prob")
    branch = Trainer(tiny_cfg(tmp_path / "b", **prob), tiny_images)
    assert load_resume(branch, tmp_path / "resume") is True
    assert branch.lin.bool_target == "prob" and int(branch.lin.calls) == 0 and branch.step == 4
    for k, v in run.G.state_dict().items():
        assert torch.equal(branch.G.state_dict()[k], v), k
    assert branch.train_step()["lin_warm"] == 1.0
    straight = Trainer(tiny_cfg(tmp_path / "s", **prob), tiny_images)
    for _ in range(6):
        straight.train_step()
    assert int(straight.lin.calls) == 3 and int(straight.lin.target) == 1
    assert_resumes_bit_for_bit(tmp_path, tiny_images, straight, "lin", **prob)


def test_spread_batch_takes_the_gain_from_narrowing_an_attribute_out_of_the_gradient(predictor):
    """Scores scaled about their batch mean by a: with the running variance (the default) the loss falls as a
    falls below 1 (narrowing pays, by twice the unexplained share); with ``spread="batch"`` its slope at a = 1
    is ~0 while its value is the same -- and the gradient still pulls the scores toward the read-out."""
    torch.manual_seed(0)
    k, d, n = 5, 12, 64
    mix = torch.randn(d, k)
    levers = {sp: LinearDecodability(d, predictor=predictor, warmup=1, decay=0.02, spread=sp)
              for sp in ("running", "batch")}
    for _ in range(60):                         # statistics of scores half explained by w
        w = torch.randn(n, d)
        s = w @ mix / d ** 0.5 + torch.randn(n, k)
        for lever in levers.values():
            lever.update(w, s)
    w = torch.randn(n, d)
    s = w @ mix / d ** 0.5 + torch.randn(n, k)
    slope, value = {}, {}
    for sp, lever in levers.items():
        a = torch.ones([], requires_grad=True)
        m = s.mean(0)
        loss, _ = lever.loss_of_scores(m + a * (s - m), w)
        loss.backward()
        slope[sp], value[sp] = float(a.grad), float(loss.detach())
    assert value["batch"] == pytest.approx(value["running"], rel=1e-5)
    assert slope["running"] > 0.5 * value["running"], slope          # narrowing (a < 1) lowers the loss
    assert abs(slope["batch"]) < 0.1 * slope["running"], slope
    x = s.clone().requires_grad_(True)                                # and it still pulls toward the read-out
    A, b = levers["batch"].readout()
    levers["batch"].loss_of_scores(x, w)[0].backward()
    assert float((x.grad * (x.detach() - (w @ A + b))).sum()) > 0
    with pytest.raises(ValueError, match="spread"):
        LinearDecodability(d, predictor=predictor, spread="median")


def test_the_spread_comes_from_the_training_config(predictor, tmp_path):
    from facegen.world.linearity import build_linearity
    assert build_linearity(tiny_cfg(tmp_path, lin_weight=1.0), "cpu").spread == "running"
    assert build_linearity(tiny_cfg(tmp_path, lin_weight=1.0, lin_spread="batch"), "cpu").spread == "batch"


def test_read_augment_scores_faces_through_the_predictors_training_augmentation(predictor):
    """read "augment": the scores are the predictor's on augmented faces (a fresh draw each call, so two
    calls differ while the plain read repeats), the gradient still reaches the image; unknown reads refused."""
    x = _faces(6).requires_grad_(True)
    plain = LinearDecodability(16, predictor=predictor)
    aug = LinearDecodability(16, predictor=predictor, read="augment")
    s = aug.scores(x)
    assert not torch.equal(s.detach(), aug.scores(x).detach())
    torch.testing.assert_close(plain.scores(x), plain.scores(x))
    assert (s.detach() - plain.scores(x).detach()).abs().max() > 1e-3
    grad, = torch.autograd.grad(s.sum(), x)
    assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match="read"):
        LinearDecodability(16, predictor=predictor, read="blurred")


def test_continuous_clamped_scores_stay_in_range(predictor, tmp_path):
    """continuous "clamped": continuous scores are the raw ones clipped to [0, 1] (upside-down faces read some
    smiles past the range), booleans are untouched, the option comes from the config; others refused."""
    from facegen.world.linearity import build_linearity
    x = _faces(40).flip(2)
    raw, clamped = LinearDecodability(16, predictor=predictor), LinearDecodability(16, predictor=predictor,
                                                                                   continuous="clamped")
    with torch.no_grad():
        sr, sc = raw.scores(x), clamped.scores(x)
    cont = [i for i, b in enumerate(raw.is_logit.tolist()) if not b]
    boolean = [i for i, b in enumerate(raw.is_logit.tolist()) if b]
    assert ((sr[:, cont] < 0) | (sr[:, cont] > 1)).any()
    torch.testing.assert_close(sc[:, cont], sr[:, cont].clamp(0, 1))
    torch.testing.assert_close(sc[:, boolean], sr[:, boolean])
    assert build_linearity(tiny_cfg(tmp_path, lin_weight=1.0, lin_continuous="clamped"), "cpu").continuous == "clamped"
    with pytest.raises(ValueError, match="continuous"):
        LinearDecodability(16, predictor=predictor, continuous="clip")


def test_attribute_weights_scale_one_attributes_term_and_its_gradient(predictor, tmp_path):
    """attribute_weights {"smile": 3}: the loss is the mean of the unexplained fractions with smile's counted
    three times (the others once), smile's scores get three times the gradient of the plain lever and the
    others the same; the factors come from the config ("smile=3"); unread attributes, negative factors and
    unparsable items refused."""
    from facegen.world.linearity import build_linearity, parse_attribute_weights
    torch.manual_seed(0)
    d, n = 12, 64
    plain = LinearDecodability(d, predictor=predictor, warmup=1)
    weighted = LinearDecodability(d, predictor=predictor, warmup=1, attribute_weights={"smile": 3})
    k = len(plain.order)
    mix = torch.randn(d, k)
    for _ in range(20):
        w = torch.randn(n, d)
        s = w @ mix / d ** 0.5 + torch.randn(n, k)
        plain.update(w, s)
        weighted.update(w, s)
    w = torch.randn(n, d)
    s = w @ mix / d ** 0.5 + torch.randn(n, k)
    grads, losses, stats = {}, {}, {}
    for name, lever in (("plain", plain), ("weighted", weighted)):
        x = s.clone().requires_grad_(True)
        loss, stats[name] = lever.loss_of_scores(x, w)
        loss.backward()
        grads[name], losses[name] = x.grad, loss.item()
    u = torch.tensor([stats["plain"][f"lin_{a}"] for a in plain.order])
    i = plain.order.index("smile")
    factors = torch.ones(k)
    factors[i] = 3
    assert losses["weighted"] == pytest.approx(float((u * factors).mean()) * plain.weight * plain.interval, rel=1e-5)
    torch.testing.assert_close(grads["weighted"][:, i], 3 * grads["plain"][:, i])
    others = [j for j in range(k) if j != i]
    torch.testing.assert_close(grads["weighted"][:, others], grads["plain"][:, others])
    assert parse_attribute_weights(" smile=3, age=0.5 ") == {"smile": 3.0, "age": 0.5}
    lever = build_linearity(tiny_cfg(tmp_path, lin_weight=1.0, lin_attribute_weights="smile=3"), "cpu")
    assert lever.factors[lever.order.index("smile")] == 3 and float(lever.factors.sum()) == k + 2
    for bad in ({"hair_colour": 2.0}, {"smile": -1.0}):
        with pytest.raises(ValueError, match="attribute weights"):
            LinearDecodability(d, predictor=predictor, attribute_weights=bad)
    for bad in ("smile", "smile=much"):
        with pytest.raises(ValueError, match="attribute weight"):
            parse_attribute_weights(bad)


def test_logit_clip_comes_from_the_config_and_bounds_the_boolean_scores(predictor, tmp_path):
    """``lin_logit_clip``: the booleans' scores are the predictor's logits clipped at +-clip (continuous scores
    untouched), so a narrow clip bounds them where the default does not."""
    from facegen.world.linearity import build_linearity
    torch.manual_seed(0)
    img = torch.rand(16, 3, 64, 64) * 2 - 1
    narrow = build_linearity(tiny_cfg(tmp_path, lin_weight=1.0, lin_logit_clip=0.5), "cpu")
    wide = build_linearity(tiny_cfg(tmp_path, lin_weight=1.0), "cpu")
    assert (narrow.logit_clip, wide.logit_clip) == (0.5, 6.0)
    with torch.no_grad():
        a, b = narrow.scores(img), wide.scores(img)
    logit = narrow.is_logit
    assert logit.any() and (~logit).any()
    assert float(a[:, logit].abs().max()) == pytest.approx(0.5)
    assert float(b[:, logit].abs().max()) > 0.5                       # the same faces' logits reach past 0.5
    torch.testing.assert_close(a[:, ~logit], b[:, ~logit])

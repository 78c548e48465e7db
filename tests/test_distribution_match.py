"""The attribute-matching lever (facegen.world.distribution_match, issue #17): its statistics are the world
predictor's per-face attribute values / probabilities, its running means and spreads pool the batches, its
loss moves generated faces' attribute distribution toward the reals', and in the training loop it is off by
default, lazy after a warm-up, and resumes bit for bit."""

import numpy as np
import pytest
import torch

from facegen.world.distribution_match import DistributionMatch, statistics_layout
from facegen.world.trainer import Trainer

from test_training import assert_resumes_bit_for_bit, tiny_cfg, tiny_images  # noqa: F401  (tiny_images: a fixture)


@pytest.fixture(scope="module")
def predictor():
    from facegen.world.predictor import load_world_predictor
    return load_world_predictor()


def _renders(seeds):
    from facegen.world.render import render_batch
    imgs, labels = render_batch(list(seeds), size=64)
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1, labels


def test_statistics_are_the_predictors_values_and_probabilities(predictor):
    labels = [label for label, _, _, _ in statistics_layout(predictor)]
    assert "glasses" in labels and "eye_color:grey" in labels and "gender" in labels
    assert "bg_hue" not in labels and "clothing_hue" not in labels and "validity" not in labels
    m = DistributionMatch(predictor=predictor)
    x, _ = _renders(range(6))
    f = m.statistics(x)
    with torch.no_grad():
        decoded = predictor.decode(predictor(predictor.prepare_tensor(x, (-1.0, 1.0)))[1])
    j = m.labels.index("glasses")
    torch.testing.assert_close(f[:, j], decoded["glasses"])
    j = m.labels.index("eye_color:grey")
    torch.testing.assert_close(f[:, j], decoded["eye_color"][:, 3])
    groups = [i for i, lab in enumerate(m.labels) if lab.startswith("hair_style:")]
    torch.testing.assert_close(f[:, groups].sum(1), torch.ones(6))


def test_running_statistics_pool_the_batches(predictor):
    m = DistributionMatch(predictor=predictor, decay=0.25)
    batches = [torch.rand(5, len(m.labels)) for _ in range(5)]
    for b in batches[:4]:
        m._fold("real", b, max(1.0 / (int(m.calls) + 1), m.decay))
        m.calls += 1
    pooled = torch.cat(batches[:4]).double()
    torch.testing.assert_close(m.mean_real, pooled.mean(0))
    torch.testing.assert_close(m.var_real, pooled.var(0, unbiased=False))


def test_faint_features_on_every_face_are_an_error(predictor):
    """Reals: glasses on 30 % of faces (probabilities 0 or 1). Fakes: every face at probability 0.3 -- the
    same mean, so only the spread tells them apart, and it must."""
    m = DistributionMatch(predictor=predictor, decay=1.0)
    j = m.labels.index("glasses")
    real = torch.full((10, len(m.labels)), 0.5)
    real[:, j] = torch.tensor([1.0] * 3 + [0.0] * 7)
    fake = torch.full((10, len(m.labels)), 0.5)
    fake[:, j] = 0.3
    m._fold("real", real, 1.0)
    m._fold("fake", fake, 1.0)
    e_mean, e_sd, _ = m.errors()
    assert abs(float(e_mean[j])) < 1e-6 and float(e_sd[j]) < -0.9


def test_loss_pushes_the_fake_rate_toward_the_real_one(predictor):
    """Fakes: renders without glasses; reals: half with glasses. Gradient steps on the fake pixels through
    the loss raise the fakes' glasses probability (and the error shrinks); with fakes = reals it is quiet."""
    x, lab = _renders(range(200))
    with_g = [i for i, a in enumerate(lab) if a["glasses"]][:6]
    without = [i for i, a in enumerate(lab) if not a["glasses"]][:12]
    real = x[with_g + without[6:]]
    fake = x[without[:6] + without[6:]].clone().requires_grad_(True)
    m = DistributionMatch(predictor=predictor, warmup=1, decay=1.0, weight=1.0, interval=1)
    loss, stats = m.loss(fake, real)
    assert loss is None and stats["match_warm"] == 1.0
    j = m.labels.index("glasses")
    opt = torch.optim.Adam([fake], lr=0.01)
    first = None
    for _ in range(40):
        loss, stats = m.loss(fake, real)
        e = m.errors()[0][j].item()
        first = (e, stats["match"]) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first[0] < -0.5 and abs(m.errors()[0][j].item()) < abs(first[0]) / 2     # glasses: -1.0 -> -0.34
    assert stats["match"] < first[1] / 4             # every entry (sign-flipped loss: it grows instead)
    same = DistributionMatch(predictor=predictor, warmup=0, decay=1.0)
    img = real.clone().requires_grad_(True)
    loss, _ = same.loss(img, real)
    loss.backward()
    assert float(loss) == 0.0 and float(img.grad.abs().sum()) == 0.0


def test_lever_is_off_by_default_lazy_and_resumes_bit_for_bit(tmp_path, tiny_images):
    off = Trainer(tiny_cfg(tmp_path / "off"), tiny_images)
    assert off.match is None and "match" not in off.state()
    on = dict(match_weight=1.0, match_interval=2, match_warmup=1)
    straight = Trainer(tiny_cfg(tmp_path / "a", **on), tiny_images)
    logs = [straight.train_step() for _ in range(6)]
    assert [s.get("match_warm") for s in logs] == [1.0, None, 0.0, None, 0.0, None]
    assert all(np.isfinite(v) for s in logs for v in s.values())
    assert_resumes_bit_for_bit(tmp_path, tiny_images, straight, "match", **on)


def test_warm_up_leaves_g_alone_and_then_the_lever_moves_g(tmp_path, tiny_images):
    def run(weight, steps):
        tr = Trainer(tiny_cfg(tmp_path / str(weight), match_weight=weight, match_interval=4, match_warmup=1),
                     tiny_images)
        for _ in range(steps):
            tr.train_step()
        return dict(tr.G.named_parameters())

    g1, g50 = run(1.0, 4), run(50.0, 4)
    assert all(torch.equal(v, g50[k]) for k, v in g1.items())
    g1, g50 = run(1.0, 5), run(50.0, 5)
    assert any(not torch.equal(v, g50[k]) for k, v in g1.items())


def test_measured_faces_set_the_error_and_the_gradient_flows_through_the_batch(predictor):
    """measure 'ema' (docstring 6): the running fake statistics read the ``measured`` faces (G_ema's), not
    the batch that takes the gradient. Batch = reals (no error of its own), measured = faces without
    glasses: the error is G_ema's shortfall, and the loss still moves the batch's pixels."""
    x, lab = _renders(range(200))
    with_g = [i for i, a in enumerate(lab) if a["glasses"]][:6]
    without = [i for i, a in enumerate(lab) if not a["glasses"]][:6]
    real = x[with_g + without]
    m = DistributionMatch(predictor=predictor, warmup=0, decay=1.0, measure="ema")
    batch = real.clone().requires_grad_(True)
    loss, _ = m.loss(batch, real, measured=x[without + without])
    j = m.labels.index("glasses")
    torch.testing.assert_close(m.mean_fake, m.statistics(x[without + without]).double().mean(0))
    assert m.errors()[0][j] < -0.5                   # the measured faces lack the reals' glasses
    loss.backward()
    assert float(batch.grad.abs().sum()) > 0         # ... and the batch (G's faces) is pushed
    with pytest.raises(ValueError, match="measure"):
        DistributionMatch(predictor=predictor, measure="D")


def test_measure_ema_reads_g_ema_in_training_and_resumes_bit_for_bit(tmp_path, tiny_images):
    """In the loop: with measure 'ema' the lever's fake statistics are those of G_ema's faces. G_ema's
    synthesis is zeroed (every face an all-zero image, whatever z), so after the first lever step the running
    fake mean is exactly the predictor's reading of that image; with measure 'G' it is not."""
    def first_lever_step(measure):
        on = dict(match_weight=1.0, match_interval=2, match_warmup=1, match_measure=measure)
        tr = Trainer(tiny_cfg(tmp_path / measure, **on), tiny_images)
        with torch.no_grad():
            for p in tr.G_ema.synthesis.parameters():
                p.zero_()
        tr.train_step()
        assert int(tr.match.calls) == 1
        res = tr.cfg.resolution
        return tr.match.mean_fake, tr.match.statistics(torch.zeros(2, 3, res, res)).double()[0]

    fake, blank = first_lever_step("ema")
    torch.testing.assert_close(fake, blank)
    fake, blank = first_lever_step("G")
    assert not torch.allclose(fake, blank)
    on = dict(match_weight=1.0, match_interval=2, match_warmup=1, match_measure="ema")
    straight = Trainer(tiny_cfg(tmp_path / "straight", **on), tiny_images)
    for _ in range(6):
        straight.train_step()
    assert_resumes_bit_for_bit(tmp_path, tiny_images, straight, "match", **on)


def test_quantiles_mode_gives_the_class_to_the_faces_ranked_highest(predictor):
    """mode 'quantiles' (docstring, 7): reals are 4 faces with glasses and 4 without; fakes are 4
    faint blends toward other faces with glasses (ranked higher by the predictor, all under p 0.5), then 4
    faces without. Gradient steps on the fake pixels through the loss put glasses on the four blends -- the
    fakes ranked highest -- and not on the last four, which an unsorted pairing with the reals' ascending
    quantiles would pick; the gap shrinks. With fakes = reals (and the pool full of them) the quantiles are
    the sorted reals and the loss and its gradient are zero."""
    x, lab = _renders(range(200))
    with_g = [i for i, a in enumerate(lab) if a["glasses"]][:20]
    without = [i for i, a in enumerate(lab) if not a["glasses"]][:24]
    real = x[with_g[:4] + without[:4]]
    m = DistributionMatch(predictor=predictor, warmup=0, decay=1.0, weight=1.0, interval=1, mode="quantiles")
    j = m.labels.index("glasses")
    blends = []                                      # per pair, the faintest blend the predictor reads at p >= 0.1
    with torch.no_grad():
        for a, b in zip(without[8:], with_g[4:]):
            for alpha in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6):
                img = (1 - alpha) * x[a] + alpha * x[b]
                q = float(m.statistics(img[None])[0, j])
                if q >= 0.1:
                    blends += [img] if q < 0.4 else []
                    break
        fake = torch.cat([torch.stack(blends[:4]), x[without[4:8]]]).requires_grad_(True)
        p0 = m.statistics(fake)[:, j]
    assert p0[:4].min() > p0[4:].max() and p0.max() < 0.5, p0
    opt = torch.optim.Adam([fake], lr=0.01)
    losses = []
    for _ in range(40):
        loss, _ = m.loss(fake, real)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        p = m.statistics(fake)[:, j]
    assert losses[-1] < losses[0] / 4
    assert bool((p[:4] > 0.5).all()) and bool((p[4:] < 0.5).all()), p      # the top-ranked four now carry them
    same = DistributionMatch(predictor=predictor, warmup=0, decay=1.0, mode="quantiles", pool=64)
    img = real.clone().requires_grad_(True)
    for _ in range(8):                               # the pool: eight copies of each real
        loss, _ = same.loss(img, real)
    torch.testing.assert_close(same.real_quantiles(8), same.statistics(real).sort(0).values)
    loss.backward()
    assert float(loss) == 0.0 and float(img.grad.abs().sum()) == 0.0
    with pytest.raises(ValueError, match="mode"):
        DistributionMatch(predictor=predictor, mode="median")


def test_quantiles_mode_reaches_the_loop_and_resumes_bit_for_bit(tmp_path, tiny_images):
    on = dict(match_weight=1.0, match_interval=2, match_warmup=1, match_mode="quantiles")
    straight = Trainer(tiny_cfg(tmp_path / "straight", **on), tiny_images)
    assert straight.match.mode == "quantiles" and Trainer(tiny_cfg(tmp_path / "default", match_weight=1.0),
                                                          tiny_images).match.mode == "moments"
    logs = [straight.train_step() for _ in range(6)]
    assert all(np.isfinite(v) for s in logs for v in s.values())
    assert int(straight.match.pool_count) == 3 * straight.match.batch_size(straight.cfg.batch)   # 3 lever steps
    assert_resumes_bit_for_bit(tmp_path, tiny_images, straight, "match", **on)
    # a run saved in "moments" mode continues in "quantiles" mode, its pool empty
    moments = Trainer(tiny_cfg(tmp_path / "moments", match_weight=1.0, match_interval=2, match_warmup=1), tiny_images)
    for _ in range(3):
        moments.train_step()
    moments.save_checkpoint(tmp_path / "moments.pt")
    switched = Trainer(tiny_cfg(tmp_path / "switched", **on), tiny_images)
    switched.load_checkpoint(tmp_path / "moments.pt")
    assert int(switched.match.pool_count) == 0 and int(switched.match.calls) == int(moments.match.calls) == 2
    torch.testing.assert_close(switched.match.mean_real, moments.match.mean_real)


def test_noise_effect_bench_reads_the_lever_statistics_with_and_without_noise(tmp_path):
    """bench/noise_effect.py: a generator without noise (every strength 0) reads the same with noise drawn
    and without; one with a loud 64 px noise input reads differently, and its strength is reported."""
    import copy
    import json
    import subprocess
    import sys
    from pathlib import Path

    import facegen
    repo = Path(__file__).resolve().parent.parent
    G = facegen.load_generator("mini")
    for name, level in (("quiet", 0.0), ("loud", 1.0)):
        H = copy.deepcopy(G)
        with torch.no_grad():
            for k, p in H.synthesis.named_parameters():
                if k.endswith("noise_strength"):
                    p.fill_(level if k == "b64.conv1.noise_strength" else 0.0)
        H.save_pretrained(tmp_path / name)
    out = tmp_path / "noise.json"
    r = subprocess.run([sys.executable, str(repo / "bench" / "noise_effect.py"), "--models",
                        f"{tmp_path / 'quiet'},{tmp_path / 'loud'}", "--n", "32", "--out", str(out)],
                       capture_output=True, text=True, cwd=repo, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())["models"]
    quiet, loud = res[str(tmp_path / "quiet")], res[str(tmp_path / "loud")]
    assert set(quiet["noise_strength"].values()) == {0.0} and loud["noise_strength"]["b64"] == 1.0
    assert quiet["random"]["e_mean"] == quiet["none"]["e_mean"] and quiet["random"]["e_sd"] == quiet["none"]["e_sd"]
    assert loud["random"]["e_mean"] != loud["none"]["e_mean"]
    assert loud["none"]["e_mean"] == quiet["none"]["e_mean"]          # without noise the two are one generator


def test_checkpoint_rates_bench_reads_the_training_g_and_its_average_apart(tmp_path, predictor):
    """bench/checkpoint_rates.py: for a checkpoint whose G is mini-v2 and whose G_ema is mini, the G row is
    the predictor's class rates of mini-v2's faces (z from seed 0, ψ 1) and the G_ema row mini's -- two
    different readings; the world row is the predictor on renders 0..n-1; step and kimg come from the file."""
    import json
    import subprocess
    import sys
    from dataclasses import asdict
    from pathlib import Path

    import facegen
    from facegen.world.render import render_batch
    from facegen.world.train_config import TrainConfig
    repo, n = Path(__file__).resolve().parent.parent, 64
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"cfg": asdict(TrainConfig(outdir=str(tmp_path), resolution=64)), "step": 7, "images_seen": 448,
                "G": facegen.load_generator("mini-v2").state_dict(),
                "G_ema": facegen.load_generator("mini").state_dict()}, ckpt)
    out = tmp_path / "rates.json"
    r = subprocess.run([sys.executable, str(repo / "bench" / "checkpoint_rates.py"), "--checkpoints", str(ckpt),
                        "--n", str(n), "--out", str(out), "--grid", str(tmp_path / "faces.png")],
                       capture_output=True, text=True, cwd=repo, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())

    def eye_rates(images):
        p = predictor.predict(images)["eye_color"]
        return [round(float(s), 4) for s in np.bincount(p.argmax(1), minlength=4) / len(images)]

    def faces(name):
        G = facegen.load_generator(name).eval()
        with torch.no_grad():
            x = G.synthesis(G.mapping(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(0)), None),
                            noise_mode="const")
        return ((x.permute(0, 2, 3, 1).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()

    row = res["checkpoints"][str(ckpt)]
    assert (row["step"], row["kimg"]) == (7, 0.4)
    assert list(row["G"]["eye_color"].values()) == eye_rates(faces("mini-v2"))
    assert list(row["G_ema"]["eye_color"].values()) == eye_rates(faces("mini"))
    assert row["G"] != row["G_ema"]
    renders = render_batch(list(range(n)), size=64)[0]
    assert list(res["world"]["eye_color"].values()) == eye_rates(renders)
    assert res["world"]["glasses"] == round(float((predictor.predict(renders)["glasses"] > 0.5).mean()), 4)
    assert 0 <= row["G"]["glasses"] <= 1 and set(row["G"]) == set(res["world"])
    from PIL import Image
    grid = np.asarray(Image.open(tmp_path / "faces.png"))
    assert grid.shape == (64, 16 * 64, 3)              # one checkpoint: G's 8 faces, then G_ema's 8
    assert (grid[:, :64] == faces("mini-v2")[0]).all() and (grid[:, 8 * 64:9 * 64] == faces("mini")[0]).all()


def test_joint_cov_pulls_two_coupled_attributes_apart(predictor):
    """joint 'cov' (docstring 8): reals draw glasses and beard independently (each on half the faces);
    fakes draw them together, with the same marginals. Gradient steps on the fakes' statistics through the
    pull shrink the glasses-beard covariance gap; the marginal pull alone does not see it (no gradient)."""
    m = DistributionMatch(predictor=predictor, decay=1.0, joint="cov")
    k, g, b = len(m.labels), m.labels.index("glasses"), m.labels.index("beard")
    assert m.pairs[min(g, b), max(g, b)] and not m.pairs[m.labels.index("eye_color:brown"),
                                                          m.labels.index("eye_color:blue")]
    real = torch.full((8, k), 0.5)
    real[:, g] = torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0])
    real[:, b] = torch.tensor([1.0, 1, 0, 0, 1, 1, 0, 0])            # independent of glasses
    fake = real.clone()
    fake[:, b] = fake[:, g]                                           # coupled: every glasses wearer bearded

    def gap(f):
        c = lambda x: float(((x[:, g] - x[:, g].mean()) * (x[:, b] - x[:, b].mean())).mean())  # noqa: E731
        return c(f) - c(real)

    for side, f in (("fake", fake), ("real", real)):
        m._fold_joint(side, f, 1.0)
        m._fold(side, f, 1.0)
    e_mean, e_sd, scale = m.errors()
    e_joint = m.joint_errors(scale)
    assert float(e_joint.abs().max()) == pytest.approx(abs(float(e_joint[min(g, b), max(g, b)])))
    assert float(e_joint[min(g, b), max(g, b)]) > 0.9 and float(e_mean.abs().max()) == 0.0

    x = fake.clone().requires_grad_(True)
    DistributionMatch.moments_loss(x, e_mean, e_sd, scale).backward()
    assert float(x.grad[:, [g, b]].abs().sum()) == 0.0               # marginals met: the marginal pull is quiet
    opt = torch.optim.SGD([x], lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        DistributionMatch.moments_loss(x, e_mean, e_sd, scale, e_joint).backward()
        opt.step()
    assert gap(fake) > 0.2 and gap(x.detach()) < gap(fake) / 2      # 0.25 -> about 0.06


def test_joint_cov_lever_resumes_bit_for_bit_and_reads_states_without_it(tmp_path, tiny_images):
    on = dict(match_weight=1.0, match_interval=2, match_warmup=1, match_joint="cov")
    straight = Trainer(tiny_cfg(tmp_path / "straight", **on), tiny_images)
    logs = [straight.train_step() for _ in range(6)]
    assert int(straight.match.joint_calls) == 3 and "match_joint" in logs[4]
    assert float(straight.match.cov_real.abs().sum()) > 0
    assert_resumes_bit_for_bit(tmp_path, tiny_images, straight, "match", **on)
    # a marginal lever's state resumes a joint one (covariances start empty) and the other way round
    marginal = Trainer(tiny_cfg(tmp_path / "marginal", **{**on, "match_joint": ""}), tiny_images)
    marginal.train_step()
    joint = Trainer(tiny_cfg(tmp_path / "joint", **on), tiny_images)
    joint.match.load_state_dict(marginal.match.state_dict())
    assert int(joint.match.joint_calls) == 0 and int(joint.match.calls) == 1
    marginal.match.load_state_dict(straight.match.state_dict())
    assert int(marginal.match.calls) == 3


def test_joint_weight_scales_the_pair_terms_alone(tmp_path, tiny_images):
    """match_joint_weight 0 trains exactly as the marginal lever does; weight 1 does not."""
    def g_after(**joint):
        on = dict(match_weight=1.0, match_interval=1, match_warmup=1, **joint)
        tr = Trainer(tiny_cfg(tmp_path / str(sorted(joint.items())), **on), tiny_images)
        for _ in range(5):
            tr.train_step()
        return dict(tr.G.named_parameters())

    marginal = g_after()
    zero = g_after(match_joint="cov", match_joint_weight=0.0)
    one = g_after(match_joint="cov", match_joint_weight=1.0)
    assert all(torch.equal(v, zero[k]) for k, v in marginal.items())
    assert any(not torch.equal(v, one[k]) for k, v in marginal.items())


def test_joint_covariances_read_the_batch_even_when_the_marginals_read_g_ema(predictor):
    """The fake covariances are the training batch's (no lag, docstring 8), while the marginal fake means
    follow ``measured`` (G_ema's faces, docstring 6)."""
    x, _ = _renders(range(24))
    batch, measured, real = x[:8], x[8:16], x[16:]
    m = DistributionMatch(predictor=predictor, decay=1.0, warmup=5, measure="ema", joint="cov")
    m.loss(batch, real, measured)
    with torch.no_grad():
        f_batch, f_measured = m.statistics(batch).double(), m.statistics(measured).double()

    def cov(f):
        c = f - f.mean(0)
        return c.T @ c / len(f)

    torch.testing.assert_close(m.cov_fake, cov(f_batch))
    torch.testing.assert_close(m.mean_fake, f_measured.mean(0))


def test_joint_skip_leaves_the_named_attributes_pairs_out(predictor):
    """joint_skip: no pair with a class of the named attribute is pulled (its running error reads 0); the
    other pairs still are; a name that is no statistic is refused."""
    m = DistributionMatch(predictor=predictor, decay=1.0, joint="cov", joint_skip=("eye_color",))
    full = DistributionMatch(predictor=predictor, decay=1.0, joint="cov")
    eyes = [i for i, lab in enumerate(m.labels) if lab.startswith("eye_color:")]
    g, b = m.labels.index("glasses"), m.labels.index("beard")
    assert not m.pairs[eyes].any() and not m.pairs[:, eyes].any() and full.pairs[:, eyes].any()
    assert m.pairs[min(g, b), max(g, b)]
    assert int(full.pairs.sum()) - int(m.pairs.sum()) == len(eyes) * (len(m.labels) - len(eyes))
    with pytest.raises(ValueError, match="no statistic"):
        DistributionMatch(predictor=predictor, joint="cov", joint_skip=("eyes",))


def test_read_augment_reads_through_the_predictors_training_augmentation(predictor):
    """read "augment": a perturbation tuned against the plain read (ten signed-gradient steps within 8/255
    on renders) moves the augmented read less than 0.6 of what it moves the plain one, for a continuous, a
    boolean and a categorical statistic; a fresh augmentation every call; an unknown read is refused."""
    x, _ = _renders(range(8))
    plain = DistributionMatch(predictor=predictor)
    aug = DistributionMatch(predictor=predictor, read="augment")
    for label in ("smile", "glasses", "eye_color:green"):
        j = plain.labels.index(label)
        d = torch.zeros_like(x, requires_grad=True)
        for _ in range(10):
            grad, = torch.autograd.grad(plain.statistics(x + d)[:, j].sum(), d)
            with torch.no_grad():
                d += 2 / 255 * grad.sign()
                d.clamp_(-8 / 255, 8 / 255)
        with torch.no_grad():
            moved_plain = float((plain.statistics(x + d) - plain.statistics(x))[:, j].mean())
            torch.manual_seed(0)
            before = torch.stack([aug.statistics(x)[:, j] for _ in range(8)]).mean(0)
            torch.manual_seed(0)
            after = torch.stack([aug.statistics(x + d)[:, j] for _ in range(8)]).mean(0)
        assert moved_plain > 0.1, (label, moved_plain)
        assert float((after - before).mean()) < 0.6 * moved_plain, label
    with torch.no_grad():
        assert not torch.equal(aug.statistics(x), aug.statistics(x))
        torch.testing.assert_close(plain.statistics(x), plain.statistics(x))
    with pytest.raises(ValueError, match="read"):
        DistributionMatch(predictor=predictor, read="blurred")


def test_read_augment_reaches_the_loop_and_resumes_bit_for_bit(tmp_path, tiny_images):
    """match_read / lin_read come from the training config, and a run reading through the augmentation
    (torch's global generator) still resumes bit for bit."""
    on = dict(match_weight=1.0, match_interval=2, match_warmup=1, match_read="augment",
              lin_weight=1.0, lin_interval=2, lin_warmup=1, lin_read="augment")
    straight = Trainer(tiny_cfg(tmp_path / "straight", **on), tiny_images)
    assert straight.match.read == "augment" and straight.lin.read == "augment"
    for _ in range(6):
        straight.train_step()
    assert_resumes_bit_for_bit(tmp_path, tiny_images, straight, "match", **on)
    assert Trainer(tiny_cfg(tmp_path / "plain", match_weight=1.0, lin_weight=1.0), tiny_images).match.read == "plain"


def test_sharpen_brings_class_statistics_toward_class_counts(predictor):
    """sharpen T < 1 (docstring, 10): on faces with uncertain classes (blurred renders) each face's
    categorical and boolean statistics lie much closer to its top class (one-hot) than at T 1 (which is the
    plain read), so their means approach class counts; rows still sum to one; T comes from the training
    config; T <= 0 is refused."""
    from facegen.world.distribution_match import build_distribution_match
    from facegen.world.predictor_images import blur
    x, _ = _renders(range(40))
    x = blur(x, 1.2)
    plain = DistributionMatch(predictor=predictor)
    one, sharp = DistributionMatch(predictor=predictor, sharpen=1.0), DistributionMatch(predictor=predictor, sharpen=0.3)
    with torch.no_grad():
        f1, fs = one.statistics(x), sharp.statistics(x)
        torch.testing.assert_close(f1, plain.statistics(x))
    eyes = [i for i, lab in enumerate(plain.labels) if lab.startswith("eye_color:")]
    top = torch.nn.functional.one_hot(f1[:, eyes].argmax(1), len(eyes)).float()
    off = lambda f: float((f[:, eyes] - top).abs().sum(1).mean())  # noqa: E731
    assert off(f1) > 0.05 and off(fs) < 0.5 * off(f1), (off(fs), off(f1))
    torch.testing.assert_close(fs[:, eyes].sum(1), torch.ones(len(x)))
    g = plain.labels.index("glasses")
    drawn = (f1[:, g] > 0.5).float()
    assert float((fs[:, g] - drawn).abs().mean()) < 0.5 * float((f1[:, g] - drawn).abs().mean())
    from test_training import tiny_cfg as cfg_of
    assert build_distribution_match(cfg_of("/tmp", match_weight=1.0, match_sharpen=0.3), "cpu").sharpen == 0.3
    with pytest.raises(ValueError, match="sharpen"):
        DistributionMatch(predictor=predictor, sharpen=0.0)


def test_continuous_clamped_keeps_statistics_in_range(predictor):
    """continuous "clamped" (docstring, 11): continuous statistics are the raw head outputs clipped to [0, 1],
    so a face read past the range's end adds no spread; probabilities are untouched; the option comes from
    the training config; unknown values are refused."""
    from facegen.world.distribution_match import build_distribution_match
    x, _ = _renders(range(12))
    x = x.clone()
    x[:4] = x[:4] * 1.6                      # over-contrasted faces push some raw readings out of range
    raw, clamped = DistributionMatch(predictor=predictor), DistributionMatch(predictor=predictor, continuous="clamped")
    with torch.no_grad():
        fr, fc = raw.statistics(x), clamped.statistics(x)
    cont = [i for i, (_, kind, _, _) in enumerate(raw.layout) if kind == "continuous"]
    other = [i for i in range(len(raw.labels)) if i not in cont]
    assert ((fr[:, cont] < 0) | (fr[:, cont] > 1)).any()
    torch.testing.assert_close(fc[:, cont], fr[:, cont].clamp(0, 1))
    torch.testing.assert_close(fc[:, other], fr[:, other])
    from test_training import tiny_cfg as cfg_of
    assert build_distribution_match(cfg_of("/tmp", match_weight=1.0, match_continuous="clamped"), "cpu").continuous == "clamped"
    with pytest.raises(ValueError, match="continuous"):
        DistributionMatch(predictor=predictor, continuous="clip")


def test_quantile_weight_adds_the_continuous_marginals_shape(predictor, tmp_path, tiny_images):
    """quantile_weight (docstring, 12): once the pool of reals is full, the loss adds the sorted-quantile gap
    of the continuous entries only (read back from its stats); weight 0 trains exactly as the moments
    lever, weight 1 does not; the pooled lever resumes bit for bit; it needs mode "moments"."""
    x, _ = _renders(range(40))
    m = DistributionMatch(predictor=predictor, warmup=0, decay=1.0, pool=16, quantile_weight=1.0)
    fake, real = x[:8], x[8:]
    _, stats = m.loss(fake, real[:8])
    assert "match_shape" not in stats                          # 8 reals in a pool of 16
    _, stats = m.loss(fake, real[8:16])
    with torch.no_grad():
        f, pooled = m.statistics(fake), m.pool.clone()
    c = [i for i, (_, kind, _, _) in enumerate(m.layout) if kind == "continuous"]
    q = torch.quantile(pooled, (torch.arange(8) + 0.5) / 8, dim=0)
    scale = m.errors()[2]
    want = (((f.sort(0).values - q) / scale)[:, c]).pow(2).mean(0).sum()
    assert abs(stats["match_shape"] - float(want)) < 1e-4 * max(1.0, float(want))

    def g_after(**q):
        on = dict(match_weight=1.0, match_interval=1, match_warmup=1, **q)
        tr = Trainer(tiny_cfg(tmp_path / str(sorted(q.items())), **on), tiny_images)
        if tr.match.pooled:
            tr.match.pool = tr.match.pool[:4].clone()         # full after one lever step of the tiny batch
        for _ in range(5):
            tr.train_step()
        return dict(tr.G.named_parameters())

    moments = g_after()
    zero, one = g_after(match_quantile_weight=0.0), g_after(match_quantile_weight=1.0)
    assert all(torch.equal(v, zero[k]) for k, v in moments.items())
    assert any(not torch.equal(v, one[k]) for k, v in moments.items())
    on = dict(match_weight=1.0, match_interval=2, match_warmup=1, match_quantile_weight=0.5)
    straight = Trainer(tiny_cfg(tmp_path / "straight", **on), tiny_images)
    for _ in range(6):
        straight.train_step()
    assert int(straight.match.pool_count) > 0
    assert_resumes_bit_for_bit(tmp_path, tiny_images, straight, "match", **on)
    with pytest.raises(ValueError, match="quantile_weight"):
        DistributionMatch(predictor=predictor, mode="quantiles", quantile_weight=1.0)


def test_measure_mixed_reads_continuous_entries_on_g_ema_and_classes_on_g(tmp_path, tiny_images):
    """measure 'mixed' (docstring 6): with G_ema's synthesis zeroed (every face blank), after the first lever
    step the running fake means of the continuous entries are the predictor's reading of the blank image,
    while the classes' are not (they read the training G's batch)."""
    on = dict(match_weight=1.0, match_interval=2, match_warmup=1, match_measure="mixed")
    tr = Trainer(tiny_cfg(tmp_path / "mixed", **on), tiny_images)
    with torch.no_grad():
        for p in tr.G_ema.synthesis.parameters():
            p.zero_()
    tr.train_step()
    res = tr.cfg.resolution
    blank = tr.match.statistics(torch.zeros(2, 3, res, res)).double()[0]
    c = tr.match.continuous_entries
    torch.testing.assert_close(tr.match.mean_fake[c], blank[c])
    assert not torch.allclose(tr.match.mean_fake[~c], blank[~c])


def test_continuous_folded_reflects_values_past_the_range_back_inside(predictor):
    """continuous "folded" (docstring, 11): a continuous statistic past 1 reads 2 - v, below 0 reads -v, in
    range unchanged, so a face read further out counts as less extreme; probabilities are untouched."""
    x, _ = _renders(range(12))
    x = x.flip(2)                              # upside-down faces push some readings out of range
    raw, folded = DistributionMatch(predictor=predictor), DistributionMatch(predictor=predictor, continuous="folded")
    with torch.no_grad():
        fr, ff = raw.statistics(x), folded.statistics(x)
    cont = [i for i, (_, kind, _, _) in enumerate(raw.layout) if kind == "continuous"]
    other = [i for i in range(len(raw.labels)) if i not in cont]
    v = fr[:, cont]
    assert (v > 1).any() or (v < 0).any()
    torch.testing.assert_close(ff[:, cont], torch.where(v > 1, 2 - v, torch.where(v < 0, -v, v)))
    assert float(ff[:, cont].min()) >= 0 and float(ff[:, cont].max()) <= 1 + 1e-6 or (v > 2).any()
    torch.testing.assert_close(ff[:, other], fr[:, other])

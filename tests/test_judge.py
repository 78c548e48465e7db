"""The independent quality judge (facegen.world.judge) and the goal metrics it feeds (facegen.world.quality_goals).

* no training code reaches the judge (import graph, function-level imports included);
* the shipped judge reads fresh renders far above chance, and was trained on seeds no other network uses;
* each goal metric responds to the property it names (spectrum, linearity, rates, Fréchet distance, detector);
* bench/quality.py writes the goal keys, with the baseline measured in the same run.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from test_layout import ROOT, graph, imports_of, modules

JUDGE = "facegen.world.judge"
FRESH = 42_000_000             # never rendered for any training or for the judge's own held-out set


def training_modules() -> set:
    """facegen modules that train something: they call ``.backward(`` or build a ``torch.optim`` optimiser."""
    out = set()
    for mod, path in modules().items():
        src = path.read_text()
        if ".backward(" in src or "torch.optim." in src or "optim.Adam" in src:
            out.add(mod)
    return out


def reaches(g: dict, start: str, target: str) -> list:
    """An import path start -> ... -> target in graph g, or [] when there is none."""
    stack, seen = [[start]], {start}
    while stack:
        path = stack.pop()
        for d in g.get(path[-1], ()):
            if d == target:
                return path + [d]
            if d not in seen:
                seen.add(d)
                stack.append(path + [d])
    return []


def test_no_training_module_imports_the_judge():
    """Training code (a facegen module that calls backward or builds an optimiser) must not reach the
    judge through any chain of imports; no facegen module imports it at all; the bench scripts that read
    it (bench/quality.py, others measuring runs) train nothing themselves."""
    g, train = graph(), training_modules() - {JUDGE}
    assert {"facegen.world.trainer", "facegen.world.predictor_training", "facegen.packs.encoder"} <= train, train
    bad = {m: reaches(g, m, JUDGE) for m in sorted(train)}
    assert not {m: p for m, p in bad.items() if p}, f"training code reaches the judge: {bad}"
    from facegen.labels.base import LABELLERS             # not selectable by name (packs, directions, guidance)
    assert not [v for v in LABELLERS.values() if v.startswith(JUDGE)], LABELLERS
    users = sorted(m for m, d in g.items() if JUDGE in d)
    assert not users, users           # facegen.world.quality_goals takes the judge as an argument, imports none
    readers = [p for p in (ROOT / "bench").glob("*.py")
               if any(t == JUDGE or t.startswith(JUDGE + ".") for t in imports_of(p, "bench"))]
    assert ROOT / "bench" / "quality.py" in readers, readers
    trains = [p.name for p in readers if ".backward(" in p.read_text() or "torch.optim" in p.read_text()]
    assert not trains, f"bench scripts that read the judge and train: {trains}"   # measurement only


def test_judge_reads_fresh_renders_far_above_chance():
    """300 renders never used by any training: every boolean / categorical attribute halves the error of
    always answering the majority class (the chance floor), every continuous one has r >= 0.85.
    Measured here: r >= 0.90 (smile the lowest), booleans 1.00, hair colour 0.95, eye colour 0.93."""
    from facegen.world.judge import evaluate, load_judge
    from facegen.world.render import render_batch
    torch.set_num_threads(1)
    x, labels = render_batch(range(FRESH, FRESH + 300), size=64)
    m = evaluate(load_judge(), x, labels)
    for name, v in m.items():
        if "accuracy" in v:
            assert v["accuracy"] >= v["chance"] + 0.5 * (1 - v["chance"]), (name, v)
        else:
            assert v["r"] >= 0.85, (name, v)


def test_judge_is_trained_apart_from_the_predictor_and_the_gan():
    """Its seeds are disjoint from the GAN's (< 10M), the predictor's training seeds (read from the
    predictor's own folder) and the quality bench's renders (20M..); another network: residual blocks
    (the predictor is a plain conv stack), a different feature size."""
    from facegen.world.judge import JudgeNet, _Block, load_judge
    from facegen.world.predictor import load_world_predictor
    from facegen.world.quality import TEST_SEED_BASE
    J, P = load_judge(), load_world_predictor()

    def disjoint(a, b):
        return a[1] < b[0] or a[0] > b[1]
    others = ([0, 9_999_999], P.meta["train_seeds"], [TEST_SEED_BASE, TEST_SEED_BASE + 999_999])
    assert all(disjoint(J.meta["train_seeds"], o) for o in others), (J.meta, P.meta)
    assert disjoint(J.meta["train_seeds"], J.meta["test_seeds"]) and all(
        disjoint([FRESH, FRESH + 10_000], r) for r in (J.meta["train_seeds"], J.meta["test_seeds"]))
    def residual_blocks(net):
        return sum(isinstance(m, _Block) for m in net.modules())
    assert isinstance(J, JudgeNet) and residual_blocks(J) >= 4 and residual_blocks(P) == 0
    assert J.fc.out_features != P.fc.out_features


def test_spectrum_ratio_flags_periodic_artefacts_and_softness():
    from facegen.world.predictor_images import blur as _blur
    from facegen.world.quality_goals import spectrum_ratio
    from facegen.world.render import render_batch
    a = render_batch(range(FRESH + 1000, FRESH + 1048), size=64)[0]
    b = render_batch(range(FRESH + 2000, FRESH + 2048), size=64)[0]
    same = spectrum_ratio(a, b)["hf_energy_ratio"]
    yy, xx = np.mgrid[:64, :64]
    streaks = np.clip(a + 12.0 * np.sin(2 * np.pi * (xx + yy) / 2.7)[None, :, :, None], 0, 255).astype(np.uint8)
    s = spectrum_ratio(streaks, b)
    t = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255
    soft = (_blur(t, 1.0).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    assert 0.8 < same < 1.25, same
    assert s["hf_energy_ratio"] > 1.2 and s["hf_peak_ratio"] > 10, s
    assert spectrum_ratio(soft, b)["hf_energy_ratio"] < 0.5


def test_w_linear_accuracy_measures_linearity_and_cannot_pass_on_a_rare_label():
    from facegen.world.quality_goals import w_linear_accuracy
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2000, 32))
    d = rng.normal(size=32)
    s = w @ d
    acc = w_linear_accuracy(w, {"linear": s > 0, "rare_linear": s > np.quantile(s, 0.9),
                                "random": rng.random(2000) < 0.5, "rare_random": rng.random(2000) < 0.1,
                                "xor": (w[:, 0] > 0) ^ (w[:, 1] > 0), "almost_never": s > np.quantile(s, 0.99)})
    assert acc["linear"] > 0.93 and acc["rare_linear"] > 0.9, acc
    assert acc["almost_never"] == 0.5, acc          # 1 % of faces: chance, not a separable handful
    for k in ("random", "rare_random", "xor"):       # balanced accuracy: chance is 0.5 whatever the rate
        assert abs(acc[k] - 0.5) < 0.08, acc


def test_w_linear_split_spread_reads_the_goals_estimator_over_other_splits():
    """The split-noise reading (quality goals' ``w_linear_splits``, bench/w_linearity.py): split seed 0 is the
    goal's own reading; a label near its boundary moves with the held-out faces (sd > 0), a cleanly
    separable one hardly does."""
    from facegen.world.quality_goals import w_linear_accuracy, w_linear_split_spread as split_spread
    rng = np.random.default_rng(1)
    w = rng.normal(size=(1000, 16))
    s = w @ rng.normal(size=16)
    labels = {"clean": s > 0, "noisy": s + 2 * rng.normal(size=1000) * s.std() > 0}
    one = split_spread(w, labels, 1)
    assert {k: v[0] for k, v in one.items()} == w_linear_accuracy(w, labels) and all(v[1] == 0 for v in one.values())
    ten = split_spread(w, labels, 10)
    assert ten["clean"][0] > 0.95 and ten["clean"][1] < 0.02, ten
    assert 0.55 < ten["noisy"][0] < 0.8 and ten["noisy"][1] > 0.01, ten


def test_w_linearity_bench_transfer_reading_compares_the_judges_labels_with_the_predictors():
    """bench/w_linearity.py's transfer reading on renders: the judge and the world predictor label the same
    faces, attribute by attribute -- glasses and beards agree (nearly) everywhere, smile split at its median
    does not (faces near the median); reading one labeller's smile against the other's glasses would not."""
    sys.path.insert(0, str(ROOT / "bench"))
    from w_linearity import agreement, ceiling
    from facegen.world.judge import load_judge
    from facegen.world.predictor import load_world_predictor
    a = np.array([True, False, True, True])
    assert agreement({"x": a}, {"x": a}) == {"x": 1.0} and agreement({"x": a}, {"x": ~a}) == {"x": 0.0}
    got = ceiling(load_judge(), load_world_predictor(), 300, 64)["predictor_agreement"]
    assert got["glasses"] >= 0.98 and got["beard"] >= 0.98, got
    assert 0.8 < got["smile"] < 0.99, got


def test_attribute_rates_compare_the_judge_on_samples_with_world_truth():
    """Renders against other renders pass everything but sampling noise allows; a generator that never
    draws glasses fails glasses by the world's rate, and one whose smiles barely vary fails smile's std."""
    from facegen.world.judge import load_judge
    from facegen.world.quality_goals import attribute_rates
    from facegen.world.render import render_batch
    J = load_judge()
    x, lab = render_batch(range(FRESH + 3000, FRESH + 3400), size=64)
    x2, lab2 = render_batch(range(FRESH + 4000, FRESH + 4400), size=64)
    p, p2 = J.predict(x), J.predict(x2)
    r = attribute_rates(p2, lab, p)
    assert r["glasses"]["pass"] and r["beard"]["pass"] and r["yaw"]["pass"] and r["age"]["pass"], r
    no_glasses = dict(p2, glasses=np.zeros_like(p2["glasses"]), smile=0.5 + 0.3 * (p2["smile"] - 0.5))
    bad = attribute_rates(no_glasses, lab, p)
    assert not bad["glasses"]["pass"] and bad["glasses"]["gap_points"] == pytest.approx(
        100 * np.mean([d["glasses"] for d in lab]), abs=0.01)
    assert not bad["smile"]["pass"] and bad["smile"]["std_rel_diff"] < -0.5, bad["smile"]
    assert bad["smile"]["std_rel_diff_same_judge"] == pytest.approx(0.3 * np.std(p2["smile"]) / np.std(p["smile"]) - 1,
                                                                     abs=1e-3)


def test_attribute_rates_same_instrument_reading_cancels_the_judges_own_bias():
    """The judge's reading of the renders, taken as the generated faces, is the world as that judge sees it:
    the same-instrument readings are exactly 0 where the goal's (against the truth) is the judge's bias."""
    from facegen.world.judge import load_judge
    from facegen.world.quality_goals import attribute_rates
    from facegen.world.render import render_batch
    x, lab = render_batch(range(FRESH + 3000, FRESH + 3400), size=64)
    p = load_judge().predict(x)
    r = attribute_rates(p, lab, p)
    truth = np.std([d["smile"] for d in lab])
    assert r["smile"]["std_rel_diff"] == pytest.approx(np.std(p["smile"]) / truth - 1, abs=1e-3)
    assert abs(r["smile"]["std_rel_diff"]) > 0.01, r["smile"]          # the judge alone moves smile's spread
    for name, a in r.items():
        same = a["gap_points_same_judge"] if "gap_points" in a else a["std_rel_diff_same_judge"]
        assert same == 0, (name, a)
    assert any(a.get("gap_points", 0) > 0 for a in r.values())


def test_judge_frechet_distance_separates_mini_from_the_world():
    """Baseline in the same run: two disjoint sets of 200 renders (the floor). mini's samples must be far
    further from the world than that, and an untrained generator further still."""
    import facegen
    from conftest import _random_generator
    from facegen.engine import latents as L
    from facegen.engine.synthesis import synthesize
    from facegen.world.judge import load_judge
    from facegen.world.quality import frechet_distance
    from facegen.world.render import render_batch
    torch.set_num_threads(1)
    J = load_judge()
    ref = J.features(render_batch(range(FRESH + 5000, FRESH + 5200), size=64)[0])
    floor = frechet_distance(J.features(render_batch(range(FRESH + 6000, FRESH + 6200), size=64)[0]), ref)
    fd = {}
    for name, G in (("mini", facegen.load_generator("mini")), ("untrained", _random_generator(0).eval())):
        fd[name] = frechet_distance(J.features(synthesize(G, L.seeds_to_ws(G, list(range(200)), psi=1.0))), ref)
    assert 3 * floor < fd["mini"] < fd["untrained"], (floor, fd)


def test_measure_goals_reads_the_goals_on_the_latents_first_seed_names(mini):
    """measure_goals(first_seed=K) reads every goal on seeds K..K+n-1 (bench/branch_compare.py --seeds-from):
    its readings equal those of the faces generated from exactly those seeds, and differ from seeds 0..n-1."""
    from facegen.world.judge import load_judge
    from facegen.world.quality import frechet_distance, held_out_renders
    from facegen.world.quality_goals import attribute_rates, generated_samples, measure_goals
    torch.set_num_threads(1)
    J, n = load_judge(), 96
    renders = held_out_renders(n, 64)
    (ref, ref_labels), _ = renders
    p_ref, f_ref = J.predict_all(ref)
    q0 = measure_goals(mini, J, n=n, renders=renders, detector=False, log=lambda *_: None)
    q = measure_goals(mini, J, n=n, renders=renders, detector=False, log=lambda *_: None, first_seed=5000)
    gen, _ = generated_samples(mini, n, 1.0, 5000)
    p_gen, f_gen = J.predict_all(gen)
    assert q["first_seed"] == 5000 and q0["first_seed"] == 0
    assert q["fd_judge"] == pytest.approx(frechet_distance(f_gen, f_ref), rel=1e-6) != q0["fd_judge"]
    assert q["attribute_rates"]["glasses"] == attribute_rates(p_gen, ref_labels, p_ref)["glasses"]


def test_detector_agreement_finds_rendered_faces_and_not_scrambled_ones():
    pytest.importorskip("mediapipe", reason="the detector goal needs mediapipe (requirements.txt)")
    from facegen.labels.landmarker import PhotoModelsMissingError
    from facegen.world.quality_goals import detector_agreement
    from facegen.world.render import render_batch
    x, lab = render_batch(range(FRESH + 7000, FRESH + 7024), size=64)
    yaw = np.array([d["yaw"] for d in lab])
    try:
        ok = detector_agreement(x, yaw)
    except PhotoModelsMissingError as e:
        pytest.skip(str(e))
    tiles = x.reshape(24, 8, 8, 8, 8, 3).transpose(0, 1, 3, 2, 4, 5).reshape(24, 64, 8, 8, 3)
    tiles = tiles[:, np.random.default_rng(0).permutation(64)]                 # 8 x 8 px tiles shuffled
    scrambled = np.ascontiguousarray(tiles.reshape(24, 8, 8, 8, 8, 3).transpose(0, 1, 3, 2, 4, 5).reshape(24, 64, 64, 3))
    bad = detector_agreement(scrambled, yaw)
    assert ok["found_rate"] >= 0.8 and ok["yaw_r"] >= 0.9, ok
    assert bad["found_rate"] <= ok["found_rate"] - 0.5, (ok, bad)


def test_bench_quality_writes_the_goal_keys_with_the_baseline_from_the_same_run(tmp_path):
    """bench/quality.py on a copy of mini (n 48) with an untrained generator as --baseline: every goal key
    is written, with the fingerprint of the model read; the untrained baseline is further from the world than
    mini; each goal is printed."""
    import shutil
    from conftest import _random_generator
    from facegen.engine.folder import save_pretrained
    model, base = tmp_path / "mini", tmp_path / "untrained"
    shutil.copytree(ROOT / "assets" / "mini", model)
    save_pretrained(_random_generator(0), base)
    out = subprocess.run([sys.executable, "bench/quality.py", "--model", str(model), "--n", "48",
                          "--baseline", str(base)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    q = json.loads((model / "metrics.json").read_text())["quality"]
    for k in ("fd_judge", "fd_judge_v1", "fd_judge_floor", "attribute_rates", "w_linear_accuracy",
              "hf_energy_ratio", "detector", "goals"):
        assert k in q, k
    assert q["fd_judge_floor"] < q["fd_judge"] < q["fd_judge_v1"], q
    assert set(q["w_linear_accuracy"]) == {"smile", "gender", "beard", "glasses", "age"}
    for name, (mean, sd) in q["w_linear_splits"].items():        # seed 0 (the goal's split) among the ten
        assert abs(q["w_linear_accuracy"][name] - mean) <= 3 * sd + 1e-9, (name, mean, sd)   # max dev of 1 in 10
    assert {n for n, *_ in __import__("facegen.world.attributes", fromlist=["x"]).ATTRIBUTE_SPEC} == \
        set(q["attribute_rates"])
    assert 0 <= q["detector"]["found_rate"] <= 1 and q["detector"]["n"] == 48
    from facegen import load_generator
    assert q["fingerprint"] == load_generator(str(model)).fingerprint      # the reading names its model
    assert "FAIL  Fréchet distance" not in out.stdout and "PASS  Fréchet distance" in out.stdout, out.stdout[-2000:]
    assert out.stdout.count("PASS ") + out.stdout.count("FAIL ") == len(q["goals"]) - 1


def test_w_linearity_bench_ambiguity_reading_counts_half_drawn_booleans_and_refits_without_them():
    """bench/w_linearity.py's ambiguity reading: the share of faces whose boolean probability is neither near
    0 nor 1, and the goal's fit on the other faces only -- labels decided by a hair (probabilities near 0.5
    on either side at random) pull the goal down, and leaving them out brings the plane back."""
    sys.path.insert(0, str(ROOT / "bench"))
    from w_linearity import AMBIGUOUS, BOOLEANS, ambiguity
    from facegen.world.quality_goals import w_linear_accuracy
    assert set(BOOLEANS) == {"glasses", "beard"}
    rng = np.random.default_rng(2)
    w = rng.normal(size=(2000, 16))
    clear = w @ rng.normal(size=16) > 0
    unsure = rng.random(2000) < 0.3                 # 30 %: a probability just either side of 0.5, at random
    p = np.where(clear, 0.98, 0.02)
    p[unsure] = 0.5 + rng.choice([-0.05, 0.05], unsure.sum())
    pred = {"glasses": p, "beard": np.where(clear, 0.95, 0.05)}
    got = ambiguity(pred, w)
    assert got["glasses"]["ambiguous"] == pytest.approx(unsure.mean(), abs=1e-4) and got["beard"]["ambiguous"] == 0
    assert got["glasses"]["linear_confident"] > 0.95 > w_linear_accuracy(w, {"glasses": p > 0.5})["glasses"] + 0.1
    assert got["beard"]["linear_confident"] == w_linear_accuracy(w, {"beard": pred["beard"] > 0.5})["beard"]
    assert AMBIGUOUS[0] < 0.45 and AMBIGUOUS[1] > 0.55
    assert "linear_confident" not in ambiguity(pred)["glasses"]


def test_attribute_spread_bench_reads_each_labellers_spread_against_its_own_on_renders(tmp_path):
    """bench/attribute_spread.py: renders read as generated faces are 0 % on both labellers (each labeller's
    own compression cancels) while the goal's reading against the truth is the judge's bias; scores drawn
    half as wide read -50 %; and the command runs on a generator and writes its readings."""
    sys.path.insert(0, str(ROOT / "bench"))
    from attribute_spread import main, relative, spreads
    from facegen.world.judge import load_judge
    from facegen.world.predictor import load_world_predictor
    from facegen.world.render import render_batch
    x, lab = render_batch(range(FRESH + 5000, FRESH + 5300), size=64)
    j, p = load_judge().predict(x), load_world_predictor().predict(x)
    truth = {"smile": float(np.std([d["smile"] for d in lab]))}
    renders = spreads(j, p, ["smile"])
    same = relative(renders, renders, truth)["smile"]
    assert same["judge_vs_judge_on_renders"] == 0 and same["predictor_vs_predictor_on_renders"] == 0
    assert same["judge_vs_world"] == pytest.approx(renders["smile"]["judge_std"] / truth["smile"] - 1, abs=1e-4)
    assert 0.8 < renders["smile"]["correlation"] <= 1
    half = {k: {"smile": 0.5 * np.asarray(v["smile"]) + 0.25} for k, v in (("j", j), ("p", p))}
    narrow = relative(spreads(half["j"], half["p"], ["smile"]), renders, truth)["smile"]
    assert narrow["judge_vs_judge_on_renders"] == pytest.approx(-0.5, abs=1e-3)
    assert narrow["predictor_vs_predictor_on_renders"] == pytest.approx(-0.5, abs=1e-3)
    out = tmp_path / "spread.json"
    assert main(["--models", "mini", "--n", "200", "--attributes", "smile,age", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert set(got["models"]["mini"]) == {"fingerprint", "smile", "age"}
    assert -0.6 < got["models"]["mini"]["smile"]["judge_vs_judge_on_renders"] < 0.3
    with pytest.raises(SystemExit):
        main(["--models", "mini", "--attributes", "glasses"])


def test_attribute_coupling_bench_names_the_pair_a_generator_draws_together(tmp_path):
    """bench/attribute_coupling.py: renders' labels read against themselves couple nothing; the same labels
    with every bearded face given brown eyes (the coupling mini v2's lin1b run drew) put that pair first
    and read P(brown eyes | beard) = 1; and the command runs on a generator and writes its readings."""
    sys.path.insert(0, str(ROOT / "bench"))
    from attribute_coupling import coupling, main, table
    from facegen.world.predictor import load_world_predictor
    from facegen.world.render import render_batch
    P = load_world_predictor()
    x, _ = render_batch(range(FRESH + 6000, FRESH + 6400), size=64)
    names, ren = table(P.predict(x), P.spec)
    assert "eye_color:brown" in names and "bg_hue" not in names and set(np.unique(ren[:, names.index("beard")])) <= {0, 1}
    same = coupling(names, ren, ren)
    assert same["mean_abs_gap"] == 0
    coupled = ren.copy()
    eyes = [i for i, n in enumerate(names) if n.startswith("eye_color:")]
    bearded = coupled[:, names.index("beard")] > 0.5
    coupled[np.ix_(bearded, eyes)] = 0
    coupled[bearded, names.index("eye_color:brown")] = 1
    c = coupling(names, coupled, ren)
    assert c["mean_abs_gap"] > 0 and "beard" in c["top"][0]["pair"] and "eye_color" in c["top"][0]["pair"]
    assert c["conditional"]["eye_color:brown | beard"]["generated"] == 1.0
    assert c["conditional"]["eye_color:brown | beard"]["renders"] < 0.8
    out = tmp_path / "coupling.json"
    assert main(["--models", "mini", "--n", "200", "--out", str(out)]) == 0
    got = json.loads(out.read_text())["models"]["mini"]
    assert {"judge", "predictor"} <= set(got) and 0 < got["judge"]["mean_abs_gap"] < 1


def test_lever_reading_bench_tells_the_statistic_from_the_labeller(tmp_path):
    """bench/lever_reading.py: renders read against themselves differ by nothing; over-contrasted renders
    push predictor readings out of [0, 1], so the raw spread grows past the clamped one; a blur makes the
    predictor less sure of eye colour; the command runs on a generator and writes its readings."""
    sys.path.insert(0, str(ROOT / "bench"))
    from lever_reading import difference, main, readings
    from facegen.world.judge import load_judge
    from facegen.world.predictor import load_world_predictor
    from facegen.world.render import render_batch
    P, J = load_world_predictor(), load_judge()
    x, _ = render_batch(range(FRESH + 7000, FRESH + 7200), size=64)
    ren = readings(P, J, x, ("smile",))
    same = difference(ren, ren)
    assert same["continuous"]["smile"]["predictor_raw_std"] == 0
    assert all(v == 0 for v in same["classes"]["eye_color"]["judge_count"].values())
    d = difference(readings(P, J, np.ascontiguousarray(x[:, ::-1]), ("smile",)), ren)["continuous"]["smile"]
    assert d["predictor_out_of_range_points"] > 0 and d["predictor_raw_std"] > d["predictor_clamped_std"]
    from facegen.world.predictor_images import blur
    soft = (blur(torch.from_numpy(x).permute(0, 3, 1, 2).float(), 1.5).permute(0, 2, 3, 1)).round().clamp(0, 255)
    d = difference(readings(P, J, soft.to(torch.uint8).numpy(), ("smile",)), ren)["classes"]["eye_color"]
    assert d["predictor_sureness"] < 0
    out = tmp_path / "reading.json"
    assert main(["--models", "mini", "--n", "100", "--continuous", "smile", "--out", str(out)]) == 0
    got = json.loads(out.read_text())["models"]["mini"]["minus_renders"]
    assert set(got["classes"]["eye_color"]["judge_count"]) == {"brown", "blue", "green", "grey"}

"""facegen.world.quality: the layer-by-layer style-mixing probe on the shipped mini; bench/frontier.py over readings."""

import numpy as np

import facegen
from facegen.engine import latents as L
from facegen.engine.synthesis import synthesize
from facegen.world.predictor import load_world_predictor
from facegen.world.quality import mixing_by_layers


def test_mixing_by_layers_follows_the_template_only_as_far_as_layers_are_copied():
    """Baseline measured in the same run, independently of mixing_by_layers: the world predictor's r between
    the unmixed sources and the templates (unrelated faces: measured yaw 0.14, skin tone 0.08). Copying
    layers 0-1 must carry pose and skin tone far beyond it (measured 0.90, 0.95); copying 8-9 must not
    carry pose (0.14)."""
    G, P = facegen.load_generator("mini"), load_world_predictor()
    n, seed = 24, 1000                                    # mixing_by_layers' sources and templates
    r = mixing_by_layers(G, P, groups=[(0, 1), (8, 9)], n=n, seed=seed)
    assert set(r) == {"0-1", "8-9"}
    src = P.predict(synthesize(G, L.seeds_to_ws(G, list(range(seed, seed + n)), psi=0.7)))
    tpl = P.predict(synthesize(G, L.seeds_to_ws(G, list(range(seed + n, seed + 2 * n)), psi=0.7)))
    chance = {k: float(np.corrcoef(src[k], tpl[k])[0, 1]) for k in ("yaw", "skin_tone")}
    for k in ("yaw", "skin_tone"):
        assert r["0-1"][k] > chance[k] + 0.5, (k, r, chance)     # coarse layers: pose and skin follow the template
    assert r["8-9"]["yaw"] < chance["yaw"] + 0.2, (r, chance)   # fine layers: pose stays the source's
    assert mixing_by_layers(G, P, n=8).keys() == {"0-1", "2-3", "4-5", "6-7", "8-9"}


def test_frontier_bench_counts_each_model_once_and_finds_who_meets_both_goals(tmp_path):
    """bench/frontier.py over readings written as bench/quality.py and bench/branch_compare.py write them: v1's
    FD 40 sets the goal at 20. Sharp (FD 10, w-linear 0.6) and Both (FD 20, every attribute 0.86) are the
    frontier; Dominated (FD 25, 0.7) is behind Both; Sharp read again in a second file counts once, Sharp on
    other latents counts again, and a reading at n 500 is not a goal reading. Only Both meets both goals."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    def reading(fp, fd, w, n=1000, **extra):
        goals = [{"goal": "attribute smile", "pass": True}, {"goal": "attribute glasses", "pass": fd < 15},
                 {"goal": "w linear smile >= 0.85", "pass": w >= 0.85}]
        return {"fingerprint": fp, "n": n, "fd_judge": fd, "goals": goals,
                "w_linear_accuracy": dict.fromkeys(("smile", "gender", "beard", "glasses", "age"), w), **extra}

    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "metrics.json").write_text(json.dumps({"quality": reading(None, 40.0, 0.5)}))
    res = tmp_path / "results"
    res.mkdir()
    (res / "a.json").write_text(json.dumps({"n": 1000, "arms": {
        "sharp": reading("aa", 10.0, 0.6, step=5), "both": reading("bb", 20.0, 0.86),
        "dominated": reading("cc", 25.0, 0.7), "early": reading("dd", 5.0, 0.95, n=500)}}))
    (res / "b.json").write_text(json.dumps({"n": 1000, "seeds_from": 0, "arms": {"sharp": reading("aa", 10.0, 0.6)}}))
    (res / "c.json").write_text(json.dumps({"n": 1000, "seeds_from": 1000, "arms": {"sharp": reading("aa", 11.0, 0.6)}}))
    (res / "notes.json").write_text("not json")
    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "frontier.json"
    r = subprocess.run([sys.executable, str(repo / "bench" / "frontier.py"), "--root", str(tmp_path),
                        "--inputs", "results/*.json", "--v1", "v1/metrics.json", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(out.read_text())
    by = {x["reading"]: x for x in got["readings"]}
    assert sorted(by) == ["results/a.json#arms/both", "results/a.json#arms/dominated", "results/a.json#arms/sharp",
                          "results/c.json#arms/sharp"]
    assert got["fd_goal"] == 20.0
    assert set(got["summary"]["frontier"]) == {"results/a.json#arms/sharp", "results/a.json#arms/both"}
    assert [x["reading"] for x in got["readings"] if x["both_met"]] == ["results/a.json#arms/both"]
    assert got["summary"] == {**got["summary"], "readings": 4, "fd_goal_met": 3, "all_w_linear_goals_met": 1,
                              "both_met": 1}
    assert by["results/a.json#arms/sharp"]["rate_goals_met"] == [2, 2] and by["results/a.json#arms/sharp"]["step"] == 5
    assert by["results/a.json#arms/both"]["rate_goals_met"] == [1, 2]
    assert by["results/c.json#arms/sharp"]["seeds_from"] == 1000
    assert [x["fd_judge"] for x in got["readings"]] == [10.0, 11.0, 20.0, 25.0]
    assert "| results/a.json#arms/both | 0 | - | 20.00 | met |" in out.with_suffix(".md").read_text()


def test_d_overfit_bench_reads_the_checkpoints_discriminator_on_seen_and_unseen_renders(tmp_path):
    """bench/d_overfit.py on a committed resume point: its "seen" renders are training images (seeds inside the
    run's world:N) and its "unseen" ones are not; the trained D it loads tells reals from G's faces (a D left at
    its initialisation scores both about 0); the gap is the difference of the two sets' means."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    ckpt = repo / "assets" / "mini-v3-map8-run"
    out = tmp_path / "d.json"
    r = subprocess.run([sys.executable, str(repo / "bench" / "d_overfit.py"), "--checkpoints", str(ckpt),
                        "--n", "64", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(out.read_text())
    run, = got["runs"]
    lo, hi = run["train_seeds"]
    assert lo <= got["seen_seeds"][0] and got["seen_seeds"][1] <= hi
    assert got["unseen_seeds"][0] >= hi
    assert run["seen"]["mean_logit"] > run["G"]["mean_logit"] + 2
    assert run["unseen"]["mean_logit"] > run["G_ema"]["mean_logit"] + 2
    assert abs(run["memorisation_gap"] - (run["seen"]["mean_logit"] - run["unseen"]["mean_logit"])) < 2e-4

"""The face-world pack builder (facegen/world/pack_build.py, ``python -m facegen world-pack build``).

One tiny build of mini's full pack through the command line (budget quick with smaller settings), into a
temporary folder, then: the pack is found for mini by fingerprint and refused for another generator; every
component loads and works for mini (and the generator-bound ones refuse the other generator); the README
records the command, and that command runs again -- skipping every step, since a build resumes.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facegen.world.classes import WORLD_CLASSES

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("glasses", "old")
SETTINGS = ["directions_n=400", f"classes={','.join(CLASSES)}", "zcode_steps=2", "encoder_minutes=0.03",
            "encoder_real_pool=16", "encoder_eval_n=4", "alignment_n=8", "bank_refine_steps=2", "bank_time_budget=0.5",
            "recipes_n=4"]
FACES = ("imani_brooks.png", "hiro_tanabe.png")


def _run(cmd, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def built(mini, tmp_path_factory):
    """(pack folder, the build's stdout, the working directory) of one tiny build of mini's pack."""
    work = tmp_path_factory.mktemp("world-pack")
    chars = work / "characters"
    chars.mkdir()
    for f in FACES:
        shutil.copy(ROOT / "assets" / "banks" / "world-characters" / f, chars / f)
    cmd = [sys.executable, "-m", "facegen", "world-pack", "build", "--model", str(ROOT / "assets" / "mini"),
           "--out", "mini-test", "--budget", "quick", "--characters", "characters", "--threads", "1"]
    for s in SETTINGS:
        cmd += ["--set", s]
    r = _run(cmd, work)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work / "mini-test", r.stdout, work


def test_found_for_its_generator_refused_for_another(built, mini, other_generator, monkeypatch, tmp_path):
    from facegen.engine.errors import InputError
    from facegen.packs.pack import PackMismatchError, find_pack, load_pack
    from facegen.world.pack_build import QUICK, build_world_pack
    folder, _, _ = built
    manifest = json.loads((folder / "pack.json").read_text())
    assert manifest["generator"]["fingerprint"] == mini.fingerprint
    monkeypatch.setenv("FACEGEN_PACKS", str(folder))
    assert find_pack(mini, hub=False).root == folder          # before the shipped assets/packs/mini
    found = find_pack(other_generator, hub=False)
    assert found is None or found.root != folder
    with pytest.raises(PackMismatchError):
        load_pack(folder, other_generator)
    # building another generator's pack into this folder is refused before any work
    other = tmp_path / "other"
    other_generator.save_pretrained(other)
    with pytest.raises(InputError, match="discriminator"):
        build_world_pack(str(other), folder, QUICK)             # no discriminator beside it yet
    shutil.copy(ROOT / "assets" / "mini" / "discriminator.safetensors", other / "discriminator.safetensors")
    before = (folder / "pack.json").read_text()
    with pytest.raises(PackMismatchError, match="holds the pack of generator .*delete"):
        build_world_pack(str(other), folder, QUICK, log=None)
    assert (folder / "pack.json").read_text() == before


def test_every_component_loads_and_works(built, mini, other_generator):
    import torch
    from facegen.features.encode import encode
    from facegen.features.faceswap.tracking import pack_localiser
    from facegen.packs.alignment import load_alignment
    from facegen.packs.bank import banks_for
    from facegen.packs.classifier import load_classifier, load_zcodes
    from facegen.packs.directions import load_directions
    from facegen.packs.encoder import load_encoder
    from facegen.packs.pack import Pack
    from facegen.world.render import render_batch
    folder, _, _ = built
    pack = Pack.load(folder)
    assert set(pack.components) == {"directions", "classifier", "zcodes", "encoder", "localiser", "alignment", "banks",
                                    "recipes"}
    renders, _ = render_batch(range(20_000_000, 20_000_002), size=64)

    ds = load_directions(pack.path("directions"), mini)           # mini's eight editing attributes
    assert list(ds.names) == list(load_directions(ROOT / "assets/packs/mini/directions").names)
    assert np.allclose(np.linalg.norm(ds.vector("age")), 1, atol=1e-4)

    E = load_encoder(pack.path("encoder"), mini)
    ws = encode(E, renders)
    assert ws.shape == (2, mini.num_ws, mini.w_dim) and np.isfinite(ws).all()
    with pytest.raises(Exception):
        load_encoder(pack.path("encoder"), other_generator)

    C = load_classifier(pack.path("classifier"))
    p = C.probs(renders)
    assert p.shape == (2, len(C.classes)) and ((p >= 0) & (p <= 1)).all()

    Z = load_zcodes(pack.path("zcodes"), G=mini)
    assert list(Z.classes) == list(CLASSES)
    z = Z.net("glasses")(torch.randn(3, mini.z_dim))
    assert z.shape == (3, mini.z_dim) and torch.isfinite(z).all()
    with pytest.raises(Exception):
        load_zcodes(pack.path("zcodes"), G=other_generator)

    banks = banks_for(mini, pack=pack)
    assert len(banks) == 1 and sorted(banks[0].names) == ["Hiro Tanabe", "Imani Brooks"]
    assert banks[0].ws.shape == (2, mini.num_ws, mini.w_dim)
    assert banks[0].meta["encoder_fingerprint"] == E.fingerprint
    assert banks_for(other_generator, pack=pack) == []

    _, found = pack_localiser(pack).detect(renders)
    assert found.all()

    t = load_alignment(pack.path("alignment"), mini)
    assert t.source == "generator" and t.meta["n_detected"] > 0
    with pytest.raises(Exception):
        load_alignment(pack.path("alignment"), other_generator)

    # recipes: every class of the world labeller, measured with the recipes the pack serves, one chosen each
    from facegen.features.customize_recipes import candidates
    from facegen.packs.recipes import load_recipes
    rec = load_recipes(pack)
    assert rec["fingerprint"] == mini.fingerprint and rec["n"] == 4
    assert set(rec["classes"]) == set(WORLD_CLASSES.names())
    keys = {f"{m}+{c}" for m, c in candidates(pack)}
    assert {"zcode+check", "rejection+check"} <= keys
    for name, entry in rec["classes"].items():           # z-code recipes only where a z-code net was trained
        assert set(entry["recipes"]) == {k for k in keys if name in CLASSES or not k.startswith("zcode")}
        assert entry["chosen"] in entry["recipes"]


def test_downstream_bench_reruns_a_bench_whose_model_or_pack_was_rebuilt_in_place(built, mini, other_generator,
                                                                                   tmp_path):
    """bench/downstream.py --reuse keeps an earlier bench result only for the same command on the same inputs:
    a generator or pack rebuilt under the same paths (as mini-v2 is when a new state ships) is benched again."""
    sys.path.insert(0, str(ROOT / "bench"))
    from downstream import inputs_identity, reusable
    from results_io import write_json
    pack = tmp_path / "pack"
    shutil.copytree(built[0], pack)
    m = {"fingerprint": mini.fingerprint, "pack": str(pack)}
    out, shown = tmp_path / "edit-b.json", "python bench/edit.py --model assets/mini-v2 --pack assets/packs/mini-v2"
    out.write_text("{}")
    write_json(out.with_suffix(".run.json"), {"command": shown, "seconds": 12.5, "inputs": inputs_identity(m)})
    assert reusable(shown, out, inputs_identity(m)) == 12.5
    assert reusable(shown + " --faces 6", out, inputs_identity(m)) is None                   # another command
    assert reusable(shown, out, inputs_identity({**m, "fingerprint": other_generator.fingerprint})) is None
    with open(pack / "alignment.json", "a") as f:                                             # a pack rebuilt
        f.write(" ")
    assert reusable(shown, out, inputs_identity(m)) is None
    write_json(out.with_suffix(".run.json"), {"command": shown, "seconds": 12.5})            # no inputs recorded
    assert reusable(shown, out, inputs_identity(m)) is None


def test_readme_records_a_command_that_reruns_and_resumes(built):
    """Runs last: it changes the pack's banks."""
    folder, stdout, work = built
    readme = (folder / "README.md").read_text()
    commands = re.findall(r"^python -m facegen world-pack build .*$", readme, re.M)
    assert len(commands) == 1, readme
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["command"] == commands[0]
    steps = ("directions", "classifier", "zcodes", "encoder", "localiser", "alignment", "banks", "recipes")
    assert all(metrics["steps"][s]["seconds"] >= 0 and f"| {s} | quick |" in readme for s in steps)
    assert not any(os.path.isabs(t) for t in commands[0].split())       # no absolute path
    weights = folder / "zcode" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    r = _run(commands[0].replace("python", sys.executable, 1).split(), work)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.count("skipped (--force rebuilds)") == len(steps)
    assert weights.stat().st_mtime_ns == mtime
    # a changed setting reruns only the step that uses it
    bank = folder / "banks" / "mini-test-world-characters.npz"
    bank_mtime = bank.stat().st_mtime_ns
    r = _run(commands[0].replace("python", sys.executable, 1).split() + ["--set", "bank_refine_steps=3"], work)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.count("skipped (--force rebuilds)") == len(steps) - 1
    assert bank.stat().st_mtime_ns != bank_mtime and weights.stat().st_mtime_ns == mtime
    assert json.loads((folder / "metrics.json").read_text())["steps"]["banks"]["budget"]["bank_refine_steps"] == 3


def test_downstream_counts_customisation_classes_by_the_second_judge_where_the_bench_read_it():
    """bench/downstream.py's customisation summary: the goal counts read the world predictor's hit; where the
    bench also read the independent judge, the same counts by its hit (a class can pass one and not the other),
    and none where it did not."""
    sys.path.insert(0, str(ROOT / "bench"))
    from downstream import summarise_customize

    def row(cls, method, hit, second, div=0.9):
        return {"class": cls, "method": method, "hit": hit, "hit_second_judge": second, "diversity": div, "kept": 64}
    rows = [{"class": c, "method": "unconditional", "hit": 0.3, "diversity": 1.0, "kept": 512, "ceiling_diversity": 0.9}
            for c in ("a", "b", "c")]
    rows += [row("a", "zcode+check", 1.0, 0.5), row("a", "rejection", 0.5, 0.97),   # a: each judge passes one method
             row("b", "zcode+check", 0.96, 0.96), row("b", "rejection", 0.96, 0.96, div=0.5),
             row("c", "zcode+check", 0.9, 0.99), row("c", "rejection", 0.99, 0.9)]
    s = summarise_customize({"rows": rows})
    assert s["per_method"]["zcode+check"]["met"] == 2 and s["per_method"]["zcode+check"]["met_second_judge"] == 2
    assert s["per_method"]["rejection"]["met"] == 1 and s["per_method"]["rejection"]["met_second_judge"] == 1
    assert s["met_any_method"] == 3 and s["met_any_method_second_judge"] == 3
    rows[4]["hit_second_judge"] = 0.9                      # a's rejection no longer passes by the second judge
    assert summarise_customize({"rows": rows})["met_any_method_second_judge"] == 2
    plain = [{k: v for k, v in r.items() if k != "hit_second_judge"} for r in rows]
    assert "met_any_method_second_judge" not in summarise_customize({"rows": plain})
    # the app's default: auto where the bench ran it (the pack has recipes), else z-code + check
    assert summarise_customize({"rows": rows})["app_default"] == "zcode+check"
    auto = rows + [row("a", "auto", 0.5, 0.97), row("b", "auto", 0.96, 0.96), row("c", "auto", 0.99, 0.9)]
    s = summarise_customize({"rows": auto})
    assert s["app_default"] == "auto" and s["per_method"]["auto"]["met"] == 2 and s["met_any_method"] == 3
    from downstream import table_rows
    got = {name: get({"customize": s}) for name, get, _ in table_rows({})}
    assert got["customisation: the app's default method"] == "auto"
    assert got[next(k for k in got if k.startswith("customisation: classes with hit >= 95 %"))] == "2"

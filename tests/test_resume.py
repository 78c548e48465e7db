"""Resuming runs (facegen.world.resume): the run's own checkpoint and a compact resume file with the Adam
state continue bit for bit; a compact file without it starts fresh optimisers; every resume is an event in
log.jsonl with where, when, how and whether the optimiser state came back."""

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from facegen.engine.errors import InputError
from facegen.world.resume import RESUME_NAME, export_resume, load_resume, read_log
from facegen.world.training import Trainer, TrainConfig, cli_main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--resolution", "16", "--batch", "4", "--z-dim", "16", "--w-dim", "16", "--mapping-layers", "2",
        "--g-channel-base", "128", "--g-channel-max", "16", "--d-channel-base", "128", "--d-channel-max", "16",
        "--r1-interval", "2", "--ema-kimg", "0.01", "--log-steps", "1", "--threads", "1"]
KIMG = {3: "0.012", 6: "0.024"}                  # batch 4


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A folder of 16 px images, a straight 6-step run, and a 3-step run (its checkpoint is the resume point)."""
    from PIL import Image
    from facegen.world.render import render_batch
    root = tmp_path_factory.mktemp("resume")
    folder = root / "imgs"
    folder.mkdir()
    imgs, _ = render_batch(range(16), size=64)
    for i, im in enumerate(imgs.reshape(16, 16, 4, 16, 4, 3).mean(axis=(2, 4)).astype(np.uint8)):
        Image.fromarray(im).save(folder / f"{i}.png")
    train(root / "straight", folder, 6)
    train(root / "half", folder, 3)
    return root, folder


def train(outdir, folder, steps, *extra):
    assert cli_main(["--outdir", str(outdir), "--data", str(folder), "--kimg", KIMG[steps], *TINY, *extra]) == 0


def weights(outdir) -> dict:
    st = torch.load(outdir / "checkpoint.pt", weights_only=True)
    return {f"{part}.{k}": v for part in ("G", "G_ema", "D") for k, v in st[part].items()}


def assert_bit_for_bit(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_the_logged_command_reruns_as_typed_even_with_an_empty_option(runs, tmp_path):
    """The start event's command is shell-quoted: an option set to the empty string (``--augment ''``, how a
    branch turns augmentation off) comes back as one argument when the line is pasted into a shell."""
    import shlex
    root, folder = runs
    argv = ["--outdir", str(tmp_path / "run"), "--data", str(folder), "--kimg", KIMG[3], *TINY, "--augment", ""]
    assert cli_main(argv) == 0
    _, events = read_log(tmp_path / "run" / "log.jsonl")
    assert shlex.split(events[0]["command"]) == ["python", "-m", "facegen", "train", *argv]


def test_rerunning_the_command_continues_bit_for_bit_and_is_logged(runs, tmp_path):
    root, folder = runs
    import shutil
    shutil.copytree(root / "half", tmp_path / "run")
    train(tmp_path / "run", folder, 6, "--export", str(tmp_path / "model"))
    assert_bit_for_bit(root / "straight", tmp_path / "run")
    losses, events = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["step"] for r in losses] == [1, 2, 3, 4, 5, 6]
    assert [(e["event"], e["step"], e["from"]) for e in events] == [("start", 0, None),
                                                                   ("resume", 3, str(tmp_path / "run" / "checkpoint.pt"))]
    e = events[1]
    assert (e["event"], e["step"], e["kimg"], e["world_size"], e["optimizer_restored"]) == ("resume", 3, 0.012, 1, True)
    assert e["host"] == socket.gethostname() and e["torch"] == torch.__version__ and e["device"] == "cpu"
    assert e["command"].startswith("python -m facegen train") and "--kimg 0.024" in e["command"]
    assert e["from"].endswith("checkpoint.pt") and e["config_changes"] == {
        "kimg": [0.012, 0.024], "outdir": [str(root / "half"), str(tmp_path / "run")]}     # the copy moved
    assert e["elapsed_s"] > 0 and e["time_utc"].endswith("Z")
    # The exported model's metrics.json carries the command history.
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["history"] == events


def test_compact_file_with_optimizer_continues_bit_for_bit(runs, tmp_path):
    root, folder = runs
    assert cli_main(["--export-resume", str(root / "half" / "checkpoint.pt"), "--export", str(tmp_path / "c"),
                     "--with-optimizer"]) == 0
    train(tmp_path / "run", folder, 6, "--resume-from", str(tmp_path / "c"))
    assert_bit_for_bit(root / "straight", tmp_path / "run")
    _, events = read_log(tmp_path / "run" / "log.jsonl")
    assert [(e["event"], e["step"], e["optimizer_restored"], e["from"]) for e in events] == [
        ("resume", 3, True, str(tmp_path / "c"))]


def test_compact_file_without_optimizer_resumes_with_fresh_adam_and_says_so(runs, tmp_path):
    root, folder = runs
    path = export_resume(root / "half" / "checkpoint.pt", tmp_path / "c")
    full = (root / "half" / "checkpoint.pt").stat().st_size
    assert path.name == RESUME_NAME and path.stat().st_size < 0.6 * full       # no Adam moments
    meta = json.loads((tmp_path / "c" / "resume.json").read_text())
    assert meta["step"] == 3 and meta["optimizer"] is False
    # Loaded into a fresh trainer: the networks, counters and RNG of step 3, empty optimisers.
    cfg = TrainConfig(**torch.load(root / "half" / "checkpoint.pt", weights_only=True)["cfg"])
    tr = Trainer(cfg, np.zeros((4, 16, 16, 3), np.uint8))
    assert load_resume(tr, tmp_path / "c") is False
    assert tr.step == 3 and tr.images_seen == 12 and not tr.opt_G.state and not tr.opt_D.state
    ref = weights(root / "half")
    for part, net in (("G", tr.G), ("G_ema", tr.G_ema), ("D", tr.D)):
        for k, v in net.state_dict().items():
            assert torch.equal(v, ref[f"{part}.{k}"]), (part, k)
    assert torch.equal(torch.get_rng_state(), torch.load(root / "half" / "checkpoint.pt", weights_only=True)["rng_torch"])
    # Through the command line: it trains on from step 3 and the log says the optimiser was not restored.
    train(tmp_path / "run", folder, 6, "--resume-from", str(path))
    losses, events = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["step"] for r in losses] == [4, 5, 6] and all(np.isfinite(r["loss_G"]) for r in losses)
    assert [(e["step"], e["optimizer_restored"]) for e in events] == [(3, False)]
    # Once the directory has its own checkpoint, rerunning the same command resumes from that (with Adam).
    train(tmp_path / "run", folder, 6, "--resume-from", str(path), "--kimg", "0.032")
    _, events = read_log(tmp_path / "run" / "log.jsonl")
    assert [(e["step"], e["optimizer_restored"], e["from"].endswith("checkpoint.pt")) for e in events] == \
        [(3, False, False), (6, True, True)]


def test_a_compact_file_exports_like_its_checkpoint(runs, tmp_path):
    """--export-checkpoint / --export-discriminator read a compact resume file as they read checkpoint.pt (a
    branch trained on a lent GPU comes home as one), and a zero-step resume exports it with its history."""
    import facegen
    root, folder = runs
    export_resume(root / "half" / "checkpoint.pt", tmp_path / "c")
    for src, out in ((root / "half" / "checkpoint.pt", tmp_path / "from_ckpt"), (tmp_path / "c" / RESUME_NAME,
                                                                                 tmp_path / "from_file")):
        assert cli_main(["--export-checkpoint", str(src), "--export", str(out)]) == 0
        assert cli_main(["--export-discriminator", str(src), "--export", str(out)]) == 0
    a, b = facegen.load_generator(str(tmp_path / "from_ckpt")), facegen.load_generator(str(tmp_path / "from_file"))
    assert a.fingerprint == b.fingerprint
    ref = torch.load(root / "half" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(v, ref["G_ema"][k]) for k, v in b.state_dict().items())
    from safetensors.torch import load_file
    d = load_file(str(tmp_path / "from_file" / "discriminator.safetensors"))
    assert d.keys() == ref["D"].keys() and all(torch.equal(d[k], ref["D"][k]) for k in d)
    # Zero steps: --kimg below the images seen loads, saves and exports, and the export's history has the line.
    train(tmp_path / "zero", folder, 3, "--resume-from", str(tmp_path / "c"), "--kimg", "0.004",
          "--export", str(tmp_path / "zero_export"))
    losses, events = read_log(tmp_path / "zero" / "log.jsonl")
    assert losses == [] and [e["step"] for e in events] == [3]
    assert facegen.load_generator(str(tmp_path / "zero_export")).fingerprint == a.fingerprint
    metrics = json.loads((tmp_path / "zero_export" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and [e["event"] for e in metrics["history"]] == ["resume"]


def test_a_gpu_branch_packs_and_unpacks_its_snapshots(runs, tmp_path):
    """bench/gpu_branch.py's round trip: an arm's checkpoints -> one tar (compact resume file, log, float16
    G_ema snapshots) -> at home, ckpt-<step>.pt files fd_trajectory reads, and a resume file that continues."""
    import sys
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_branch
    root, folder = runs
    assert gpu_branch.spread([5, 1, 3, 9, 7], 3) == [1, 5, 9] and gpu_branch.spread([1, 2], 5) == [1, 2]
    snaps = {}
    for run in ("half", "straight"):
        s = gpu_branch.snapshot(root / run / "checkpoint.pt")
        snaps[s["step"]] = s
    arm = tmp_path / "arm"
    arm.mkdir()
    (arm / "checkpoint.pt").write_bytes((root / "straight" / "checkpoint.pt").read_bytes())
    (arm / "log.jsonl").write_bytes((root / "straight" / "log.jsonl").read_bytes())
    tar, left = gpu_branch.pack("b64", arm, snaps, tmp_path)
    assert tar.name == "b64.tar" and left == [] and tar.stat().st_size < gpu_branch.PACK_LIMIT
    gpu_branch.unpack(tar, tmp_path / "home")
    home = tmp_path / "home" / "b64"
    assert sorted(p.name for p in home.iterdir()) == ["ckpt-3.pt", "ckpt-6.pt", "log.jsonl", "resume.json",
                                                       "resume.safetensors"]
    ref = torch.load(root / "straight" / "checkpoint.pt", weights_only=True)
    got = torch.load(home / "ckpt-6.pt", weights_only=True)
    for k, v in ref["G_ema"].items():
        assert got["G_ema"][k].dtype == v.dtype and torch.equal(got["G_ema"][k], v.half().to(v.dtype)), k
    assert got["step"] == 6 and got["cfg"] == ref["cfg"]
    train(tmp_path / "on", folder, 6, "--resume-from", str(home), "--kimg", "0.032")
    _, events = read_log(tmp_path / "on" / "log.jsonl")
    assert [(e["step"], e["optimizer_restored"]) for e in events] == [(6, False)]


def test_a_file_of_other_networks_is_refused_with_the_options(runs, tmp_path):
    root, folder = runs
    export_resume(root / "half" / "checkpoint.pt", tmp_path / "c")
    cfg = TrainConfig(resolution=16, z_dim=32, w_dim=16, mapping_layers=2, g_channel_base=128, g_channel_max=16,
                      d_channel_base=128, d_channel_max=16)
    with pytest.raises(InputError, match=r"--z-dim 16 \(this run: 32\)"):
        load_resume(Trainer(cfg, np.zeros((4, 16, 16, 3), np.uint8)), tmp_path / "c")
    with pytest.raises(Exception, match="no resume file"):
        load_resume(Trainer(cfg, np.zeros((4, 16, 16, 3), np.uint8)), tmp_path / "missing")


def test_an_option_newer_than_the_resume_file_is_a_logged_change(runs, tmp_path):
    """A file written before an option existed (its config lacks the key) had that option at its default: a
    resume that sets it lists it in config_changes (the branch of the v2 run that switched a lever on)."""
    root, folder = runs
    st = torch.load(root / "half" / "checkpoint.pt", weights_only=True)
    del st["cfg"]["match_weight"]
    torch.save(st, tmp_path / "older.pt")
    train(tmp_path / "branch", folder, 6, "--resume-from", str(tmp_path / "older.pt"), "--match-weight", "1",
          "--match-warmup", "1")
    _, events = read_log(tmp_path / "branch" / "log.jsonl")
    changes = events[0]["config_changes"]
    assert changes["match_weight"] == [0.0, 1.0] and changes["match_warmup"] == [50, 1], changes
    assert "lin_weight" not in changes                      # absent from the file too, but at its default here


def test_lazy_stats_are_logged_as_window_means(runs, tmp_path):
    """R1 runs on even steps (pre-increment) and the log on multiples of 2 (post-increment), so a logged step
    never computed R1 itself: its record carries the window's mean."""
    root, folder = runs
    train(tmp_path / "w", folder, 6, "--log-steps", "2")
    losses, _ = read_log(tmp_path / "w" / "log.jsonl")
    assert [r["step"] for r in losses] == [2, 4, 6] and all("r1" in r for r in losses), losses


def test_a_changed_learning_rate_applies_after_resume_with_the_moments_kept(runs, tmp_path):
    """Adam's saved param_groups carry the old lr: a resume with ``--lr`` changed (a branch that lowers it)
    must train with the new one, lazy-corrected as at a fresh start, while the moments come back."""
    root, folder = runs
    st = torch.load(root / "half" / "checkpoint.pt", weights_only=True)
    cfg = TrainConfig(**{**st["cfg"], "lr": st["cfg"]["lr"] / 4})
    tr = Trainer(cfg, np.zeros((4, 16, 16, 3), np.uint8))
    fresh = {k: [dict(g) for g in o.param_groups] for k, o in tr.optimisers().items()}
    tr.load_state(st)
    c = cfg.r1_interval / (cfg.r1_interval + 1)
    assert tr.opt_D.param_groups[0]["lr"] == pytest.approx(cfg.lr * c)
    assert tr.opt_G.param_groups[0]["lr"] == pytest.approx(cfg.lr)            # no path-length lever here
    for k, o in tr.optimisers().items():
        assert [(g["lr"], g["betas"]) for g in o.param_groups] == [(g["lr"], g["betas"]) for g in fresh[k]]
        saved = st[k]["state"][0]["exp_avg_sq"]
        assert torch.equal(o.state[o.param_groups[0]["params"][0]]["exp_avg_sq"], saved)
    # Through the command line the branch trains on and logs the change.
    train(tmp_path / "branch", folder, 6, "--resume-from", str(root / "half" / "checkpoint.pt"),
          "--lr", str(cfg.lr))
    _, events = read_log(tmp_path / "branch" / "log.jsonl")
    assert events[0]["config_changes"]["lr"] == [st["cfg"]["lr"], cfg.lr]


def test_a_gpu_branch_continues_the_resume_points_recipe(runs, tmp_path):
    """bench/gpu_branch.py starts its arms with the resume point's own recipe (recipe_options: every option the
    run set away from the default), so an arm names only what it changes: resumed with those options and the
    branch's run-control options, the resume line lists no change but those; an arm's option wins."""
    import shlex
    import sys
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_branch
    from facegen.world.resume import read_resume
    _, folder = runs
    levers = ["--augment", "translation,color", "--augment-p", "0.3", "--pl-weight", "2", "--lin-weight", "0.5",
              "--lin-attributes", "smile,age", "--xflip", "false"]
    train(tmp_path / "point", folder, 3, *levers)
    recipe = gpu_branch.recipe_options(read_resume(tmp_path / "point" / "checkpoint.pt")["cfg"])
    for opt in ("--augment translation,color", "--augment-p 0.3", "--pl-weight 2.0", "--lin-weight 0.5",
                "--lin-attributes smile,age", "--xflip False", "--resolution 16", "--batch 4"):
        assert opt in recipe, (opt, recipe)
    assert "--outdir" not in recipe and "--kimg" not in recipe and "--data" not in recipe
    point = str(tmp_path / "point" / "checkpoint.pt")
    assert cli_main(["--outdir", str(tmp_path / "arm"), "--data", str(folder), *shlex.split(recipe), "--kimg", "0.024",
                     "--log-steps", "1", "--threads", "1", "--resume-from", point, "--pl-weight", "4"]) == 0
    _, events = read_log(tmp_path / "arm" / "log.jsonl")
    changes = events[-1]["config_changes"]
    assert set(changes) == {"outdir", "kimg", "pl_weight"}, changes
    assert changes["pl_weight"] == [2.0, 4.0]


def test_history_prints_every_start_and_resume_with_the_options_it_changed(runs, tmp_path, capsys):
    """``--history`` on an exported model (its metrics.json) and on the run folder: one row per event, in order,
    naming the run folder, whether Adam's state came back, and the training options the leg changed."""
    import shutil
    root, folder = runs
    shutil.copytree(root / "half", tmp_path / "run")
    train(tmp_path / "run", folder, 6, "--export", str(tmp_path / "model"), "--r1-gamma", "2")
    for where in (tmp_path / "model", tmp_path / "run", tmp_path / "run" / "log.jsonl"):
        assert cli_main(["--history", str(where)]) == 0
        rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| ") and r[2].isdigit()]
        assert [r.split(" | ")[1:4] for r in rows] == [["start", "0", "0.0"], ["resume", "3", "0.0"]]
        assert f"`{root / 'half'}`" in rows[0] and f"`{tmp_path / 'run'}`" in rows[1]
        assert rows[1].endswith("| yes | `r1_gamma` 0.1 → 2.0 |")      # kimg and outdir are bookkeeping
    shutil.rmtree(tmp_path / "model")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "metrics.json").write_text("{}")
    with pytest.raises(InputError, match="no command history"):
        cli_main(["--history", str(tmp_path / "model")])

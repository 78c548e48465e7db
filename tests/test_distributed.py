"""Data-parallel training (facegen.world.distributed): 2 CPU processes under torchrun (gloo) follow one process
with the same global batch, within float noise; a run can change its process count when it resumes.

Tolerance: weights within atol 1e-4 + rtol 1e-5 (measured max |difference| after 12 steps: 4.6e-6 on weights
up to 399 in size); logged losses within 2e-4 (log.jsonl rounds to 4 decimals); the RNG states exactly equal
(the processes drew what one process draws)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facegen.engine.discriminator import MinibatchStdLayer
from facegen.world.distributed import DataParallel, shard_rows
from facegen.world.resume import read_log
from facegen.world.training import TrainConfig, build_networks, cli_main

REPO = Path(__file__).resolve().parent.parent
TINY = ["--resolution", "16", "--batch", "16", "--z-dim", "16", "--w-dim", "16", "--mapping-layers", "2",
        "--g-channel-base", "128", "--g-channel-max", "16", "--d-channel-base", "128", "--d-channel-max", "16",
        "--r1-interval", "2", "--ema-kimg", "0.01", "--log-steps", "1", "--threads", "1"]
STEPS_KIMG = {3: "0.048", 6: "0.096", 12: "0.192"}           # batch 16


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    from PIL import Image
    from facegen.world.render import render_batch
    folder = tmp_path_factory.mktemp("imgs")
    imgs, _ = render_batch(range(32), size=64)
    for i, im in enumerate(imgs.reshape(32, 16, 4, 16, 4, 3).mean(axis=(2, 4)).astype(np.uint8)):
        Image.fromarray(im).save(folder / f"{i}.png")
    return folder


def one_process(outdir, folder, steps, args=TINY):
    assert cli_main(["--outdir", str(outdir), "--data", str(folder), "--kimg", STEPS_KIMG[steps], *args]) == 0


def two_processes(outdir, folder, steps, args=TINY):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "facegen", "train", "--outdir", str(outdir), "--data", str(folder),
                        "--kimg", STEPS_KIMG[steps], *args], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]


def assert_same_run(a: Path, b: Path, steps: int = 12):
    """Two run directories: the same loss curve (within the log's rounding) and the same weights (float noise)."""
    (la, _), (lb, _) = read_log(a / "log.jsonl"), read_log(b / "log.jsonl")
    assert [r["step"] for r in la] == [r["step"] for r in lb] and len(la) == steps
    for ra, rb in zip(la, lb):
        keys = [k for k in ra if k.startswith(("loss", "D_", "r1", "q_"))]
        assert keys == [k for k in rb if k.startswith(("loss", "D_", "r1", "q_"))], (ra, rb)
        for k in keys:
            assert abs(ra[k] - rb[k]) <= 2e-4, (ra["step"], k, ra[k], rb[k])
    ca, cb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (a, b))
    assert ca["step"] == cb["step"] == steps
    for part in [p for p in ("G", "G_ema", "D", "Q") if p in ca]:
        for k in ca[part]:
            torch.testing.assert_close(cb[part][k], ca[part][k], atol=1e-4, rtol=1e-5, msg=f"{part}.{k}")
    assert torch.equal(ca["rng_torch"], cb["rng_torch"]) and torch.equal(ca["rng_data"], cb["rng_data"])


def test_two_processes_follow_one_process(tmp_path, image_folder):
    one_process(tmp_path / "one", image_folder, 12)
    two_processes(tmp_path / "two", image_folder, 12)
    assert_same_run(tmp_path / "one", tmp_path / "two")
    _, events = read_log(tmp_path / "two" / "log.jsonl")
    assert [(e["event"], e["world_size"]) for e in events] == [("start", 2), ("data_parallel", 2)]
    assert events[0]["command"].startswith("torchrun --nproc_per_node 2 -m facegen train")
    assert events[1] == {"event": "data_parallel", "step": 12, "world_size": 2, "max_divergence": 0.0}
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_a_run_resumed_on_two_processes_continues_the_one_process_curve(tmp_path, image_folder):
    """6 steps in one process, 6 more under torchrun in the same directory = 12 steps in one process."""
    one_process(tmp_path / "one", image_folder, 12)
    one_process(tmp_path / "mixed", image_folder, 6)
    two_processes(tmp_path / "mixed", image_folder, 12)
    assert_same_run(tmp_path / "one", tmp_path / "mixed")
    _, events = read_log(tmp_path / "mixed" / "log.jsonl")
    assert [(e["event"], e["step"], e["world_size"]) for e in events] == [
        ("start", 0, 1), ("resume", 6, 2), ("data_parallel", 12, 2)]
    resume = [e for e in events if e["event"] == "resume"]
    assert resume[0]["command"].startswith("torchrun --nproc_per_node 2 -m facegen train")
    assert resume[0]["optimizer_restored"] is True and resume[0]["config_changes"] == {"kimg": [0.096, 0.192]}


def test_class_conditional_q_head_run_follows_one_process(tmp_path):
    """World data with a class code (glasses, beard) and the InfoGAN Q head: the class permutation and the Q
    losses are drawn / averaged like one process's (3 steps at 64 px, tiny channels; over longer runs Adam
    amplifies the float noise of near-zero gradients: 12 steps measured 8e-4)."""
    args = [*TINY, "--resolution", "64", "--g-channel-base", "256", "--d-channel-base", "256",
            "--c-dim", "2", "--classes", "glasses,beard", "--q-weight", "1"]
    one_process(tmp_path / "one", "world:64", 3, args)
    (tmp_path / "two").mkdir()
    shutil.copytree(tmp_path / "one" / "data", tmp_path / "two" / "data")    # the rendered world, not again
    two_processes(tmp_path / "two", "world:64", 3, args)
    assert_same_run(tmp_path / "one", tmp_path / "two", steps=3)
    assert "q_D" in read_log(tmp_path / "two" / "log.jsonl")[0][0]


def test_processes_stay_identical_with_the_v2_levers(tmp_path, image_folder):
    """DiffAugment with ADA (its p follows D's sign statistic, which each process measures on its own rows),
    path-length regularisation, distribution matching (its real statistics come from each process's rows)
    and linear decodability: after 6 steps (ADA's sign sums half-way to its next update) every process
    still holds rank 0's weights and buffers."""
    two_processes(tmp_path / "two", image_folder, 6, [*TINY, "--augment", "translation,cutout", "--augment-p",
                                                       "0.5", "--ada-target", "0.6", "--ada-kimg", "0.5",
                                                       "--pl-weight", "2", "--match-weight", "1",
                                                       "--match-interval", "2", "--match-warmup", "1",
                                                       "--lin-weight", "1", "--lin-interval", "2",
                                                       "--lin-warmup", "1"])
    losses, events = read_log(tmp_path / "two" / "log.jsonl")
    assert len({r["aug_p"] for r in losses}) > 1                    # ADA moved p
    assert events[-1] == {"event": "data_parallel", "step": 6, "world_size": 2, "max_divergence": 0.0}


def _after_step_worker(rank, port, out):
    """One of 2 processes (the same init path as torchrun's): different gradients, stats and ADA buffers per
    rank go through the hooks; what each process ends with is saved for the test to compare."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from facegen.world import distributed
    from facegen.world.trainer import Trainer
    cfg = TrainConfig(resolution=16, batch=8, z_dim=16, w_dim=16, mapping_layers=2, g_channel_base=128,
                      g_channel_max=16, d_channel_base=128, d_channel_max=16, augment="translation",
                      augment_p=0.5, ada_target=0.6)
    dp = distributed.DataParallel.from_env("cpu")
    tr = Trainer(cfg, np.zeros((8, 16, 16, 3), np.uint8))
    dp.attach(tr)
    with torch.no_grad():
        tr.aug.p.fill_(0.25 + 0.5 * rank)                                 # rank 0: 0.25, rank 1: 0.75
        tr.aug.acc.copy_(torch.tensor([3.0 - 4 * rank, 8.0], dtype=torch.float64))
    for p in tr.G.parameters():
        p.grad = torch.full_like(p, float(rank + 1))                     # rank 0: 1, rank 1: 2
    tr.opt_G.step()                                                       # the pre-hook averages: 1.5
    stats = distributed.after_step(dp, tr, {"loss_G": 1.0 + rank, "r1": 10.0 * rank})
    torch.save({"grad": next(tr.G.parameters()).grad.clone(), "p": tr.aug.p.clone(), "acc": tr.aug.acc.clone(),
                "stats": stats, "divergence": dp.max_divergence(tr)}, out / f"rank{rank}.pt")
    dp.close()


def test_hooks_average_gradients_stats_and_ada_buffers(tmp_path):
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_after_step_worker, args=(port, tmp_path), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    for r in (r0, r1):
        assert torch.all(r["grad"] == 1.5)
        assert r["stats"] == {"loss_G": 1.5, "r1": 5.0}
        assert float(r["p"]) == 0.5 and r["acc"].tolist() == [1.0, 8.0]
        assert r["divergence"] == 0.0


def test_rows_keep_the_minibatch_std_groups():
    """D's minibatch std over a process's rows gives exactly the global batch's values for those rows."""
    x = torch.randn(16, 5, 4, 4)
    mbstd = MinibatchStdLayer(4)
    whole = mbstd(x)
    rows = [shard_rows(16, 2, r, 4) for r in range(2)]
    assert sorted(torch.cat(rows).tolist()) == list(range(16))
    for r in rows:
        torch.testing.assert_close(mbstd(x[r]), whole[r], rtol=0, atol=1e-6)


def test_rows_refuse_batches_that_cannot_split():
    from facegen.engine.errors import InputError
    with pytest.raises(InputError, match="multiple of 8"):
        shard_rows(12, 2, 0, 4)
    with pytest.raises(InputError, match="multiple of 3"):
        shard_rows(16, 3, 0, 4)


def test_synthesis_on_rows_draws_the_global_noise():
    """A process's synthesis of its rows = those rows of one process's synthesis, and the RNG ends where one
    process's ends (so every later draw agrees)."""
    torch.manual_seed(0)
    cfg = TrainConfig(resolution=16, z_dim=16, w_dim=16, mapping_layers=2, g_channel_base=128, g_channel_max=16)
    G, _ = build_networks(cfg)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)                       # the noise must matter
        ws = G.mapping(torch.randn(16, 16), None)
    dp = DataParallel(rank=1, world=2, device=torch.device("cpu"))
    dp.rows = shard_rows(16, 2, 1, 4)
    torch.manual_seed(1)
    with torch.no_grad():
        whole = G.synthesis(ws, noise_mode="random")
    after_whole = torch.get_rng_state()
    torch.manual_seed(1)
    with torch.no_grad():
        mine = dp.synthesize(G, ws)
    torch.testing.assert_close(mine, whole[dp.rows], atol=1e-5, rtol=1e-5)
    assert torch.equal(torch.get_rng_state(), after_whole)

"""Data-parallel StyleGAN2 training under ``torchrun``: every process draws the global batch, trains on its rows.

``torchrun --nproc_per_node 2 -m facegen train ... --batch 16`` trains with a global batch of 16, 8 images per
process, and follows the loss curve of ``python -m facegen train ... --batch 16`` within float noise.

Method:

* **Process group** from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``):
  gloo for ``--device cpu``, NCCL for ``--device cuda`` (one GPU per ``LOCAL_RANK``). Without torchrun, or
  with one process, nothing changes: :func:`from_env` returns None and the loop is the single-process one.
* **The same draws as one process.** Every process keeps the same RNG states (same seed, same checkpoint) and
  draws exactly what a single process would: the real indices and flips, z, the class permutation, the
  style-mixing coin and crossover, the mapping of the whole batch (cheap; it also keeps G's ``w_avg`` the
  same everywhere), and the synthesis noise. The expensive part -- synthesis and D -- runs on this process's
  rows only (:meth:`DataParallel.local`). Synthesis noise is drawn inside the engine per layer; while a
  process synthesises its rows, :class:`GlobalBatchDraws` turns each batch-leading ``torch.randn`` into the
  global batch's draw and keeps the process's rows, so the RNG streams never diverge.
* **Rows that keep D's minibatch-std groups.** D's minibatch std groups sample ``n`` with samples ``n + k*N/g``
  (group size ``g``). A process takes whole groups, in the order that makes its local reshape form the same
  groups (:func:`shard_rows`), so D sees exactly what it sees in one process.
* **Gradients averaged** before every optimiser step (a step pre-hook on each of the trainer's optimisers, so
  G, D, the Q head and any optimiser a lever adds). Each process's loss is a mean over equally many rows, so
  the average is the global mean. DistributedDataParallel is not used: the loop switches ``requires_grad``
  between G and D passes, takes lazy R1 with a double backward (``create_graph``), and runs several
  optimiser steps per iteration, which DDP's reducer does not follow. Terms a process computes on the whole
  batch (e.g. path-length regularisation) give every process the same gradient, which averaging keeps.
* **Logged losses** are the all-reduced means (:meth:`DataParallel.mean_stats`); a lever's floating buffers
  (ADA's ``p`` and its sign accumulator, distribution matching's running statistics -- its reals are each
  process's rows -- and linear decodability's) are averaged after each step so the processes stay identical.
* **Only rank 0 writes** log.jsonl, samples, checkpoints and exports; every process resumes from the same
  checkpoint. Rank 0 renders / caches the data first, the others then read the cache.

Exactness: with the default recipe and with class-conditional / Q-head runs the processes reproduce the
single process's draws exactly (its RNG states at the end are equal) and the results differ by float
rounding only (batched kernels, sums of halves); tests/test_distributed.py checks both against one process.
DiffAugment (``--augment``) draws per row on each process's rows, so its numbers differ from one process's;
path-length regularisation runs on the whole batch in every process (the same gradient everywhere, no
speed-up). With both levers on, the processes stay identical (tested), but only the default recipe and the
conditional / Q-head runs are checked against one process.
The process count may change when a run resumes: the draws do not depend on it.
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from typing import Optional

import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode

from facegen.engine.errors import InputError


def shard_rows(batch: int, world: int, rank: int, group: int) -> torch.Tensor:
    """The global-batch rows of process ``rank`` (int64 [batch // world]), whole minibatch-std groups.

    MinibatchStdLayer reshapes [N, ...] to [g, N/g, ...]: sample i*K + k (K = N/g) is member i of group k.
    Process r takes groups k in [r*K/W, (r+1)*K/W) and orders them i-major, so its own reshape [g, K/W]
    forms the same groups. group <= 1 (no minibatch std): plain contiguous slices."""
    if batch % world:
        raise InputError(f"--batch {batch} does not split over {world} processes: use a multiple of {world}.")
    g = min(group, batch) if group and group > 1 else 1
    if batch % (g * world):
        raise InputError(f"--batch {batch} over {world} processes: each process needs whole minibatch-std groups "
                         f"of {g} to train like one process; use a multiple of {g * world}.")
    k_all, k_mine = batch // g, batch // g // world
    return torch.tensor([i * k_all + k for i in range(g) for k in range(rank * k_mine, (rank + 1) * k_mine)],
                        dtype=torch.long)


class GlobalBatchDraws(TorchFunctionMode):
    """Inside: ``torch.randn(size)`` with ``size[0]`` = this process's row count draws ``[N, *size[1:]]`` (what
    one process draws for the whole batch) and returns this process's rows. Other calls pass through."""

    def __init__(self, rows: torch.Tensor, batch: int):
        super().__init__()
        self.rows, self.batch = rows, batch

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.randn:
            size = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple, torch.Size)) else list(args)
            if size and size[0] == len(self.rows) and "generator" not in kwargs:
                full = func([self.batch] + size[1:], **kwargs)
                return full[self.rows.to(full.device)]
        return func(*args, **kwargs)


class DataParallel:
    """One process of a torchrun job: its rank, the world size, its rows of the global batch."""

    def __init__(self, rank: int, world: int, device: torch.device):
        self.rank, self.world, self.device = rank, world, device
        self.rows: Optional[torch.Tensor] = None
        self.batch = 0

    # -- setup ------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, device: str) -> Optional["DataParallel"]:
        """Join torchrun's process group (``WORLD_SIZE`` > 1): gloo on CPU, NCCL on CUDA. Else None."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return None
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        dev = torch.device(device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise InputError("--device cuda under torchrun, but CUDA is not available: use --device cpu.")
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        elif dev.type != "cpu":
            raise InputError(f"data-parallel training runs on cpu (gloo) or cuda (NCCL), not {device!r}.")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=1))
        return cls(dist.get_rank(), dist.get_world_size(), dev)

    def attach(self, trainer) -> None:
        """Wire a Trainer (after its checkpoint is loaded): rows for its batch and D's minibatch-std group, rank
        0's weights and buffers everywhere, and gradient averaging before every optimiser step."""
        cfg = trainer.cfg
        mbstd = getattr(trainer.D, "mbstd", None)
        self.batch = cfg.batch
        self.rows = shard_rows(cfg.batch, self.world, self.rank, getattr(mbstd, "group_size", 1) or 1)
        for module in self.modules(trainer):
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)
        for opt in self.optimisers(trainer):
            opt.register_step_pre_hook(lambda o, args, kwargs: self.average_grads(o))
        trainer.dp = self

    @staticmethod
    def modules(trainer) -> list:
        return [m for m in vars(trainer).values() if isinstance(m, torch.nn.Module)]

    @staticmethod
    def optimisers(trainer) -> list:
        return [o for o in vars(trainer).values() if isinstance(o, torch.optim.Optimizer)]

    # -- per step ---------------------------------------------------------------------------
    def local(self, t: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global-batch tensor."""
        return t[self.rows.to(t.device)]

    def synthesize(self, G, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        """G.synthesis on this process's rows of the global ws; random noise is the global draw's."""
        with GlobalBatchDraws(self.rows, len(ws)):
            return G.synthesis(self.local(ws), noise_mode=noise_mode)

    @torch.no_grad()
    def average_grads(self, optimiser) -> None:
        """All-reduce (mean) the gradients of an optimiser's parameters, as one flat buffer."""
        grads = [p.grad for group in optimiser.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean_stats(self, stats: dict) -> dict:
        """The step's logged scalars averaged over the processes (each a mean over equally many rows)."""
        keys = list(stats)                 # the same order on every process (the same code ran)
        t = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(t)
        return {k: v / self.world for k, v in zip(keys, t.tolist())}

    @torch.no_grad()
    def average_buffers(self, module: torch.nn.Module) -> None:
        """Average a module's floating buffers (e.g. ADA's p) so every process holds the same."""
        for b in module.buffers():
            if b.is_floating_point():
                dist.all_reduce(b)
                b /= self.world

    def any(self, flag: bool) -> bool:
        """True on every process when it is True on one (stop decisions taken together)."""
        t = torch.tensor([1.0 if flag else 0.0], device=self.comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    @property
    def comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    @torch.no_grad()
    def max_divergence(self, trainer) -> float:
        """Largest |rank 0 - this process| over every parameter and buffer (0.0 when in sync)."""
        worst = torch.zeros([], dtype=torch.float64, device=self.comm_device)
        for module in self.modules(trainer):
            for t in list(module.parameters()) + list(module.buffers()):
                ref = t.detach().clone()
                dist.broadcast(ref, src=0)
                if t.is_floating_point():
                    worst = torch.maximum(worst, (ref.double() - t.double()).abs().max().to(worst.device))
                elif not torch.equal(ref, t):
                    worst.fill_(float("inf"))
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        return float(worst)

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        """Leave together (a barrier), then destroy the process group (see facegen.__main__ for the exit)."""
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


# ---------------------------------------------------------------------------
# Hooks for the training loop (each a no-op when dp is None)
# ---------------------------------------------------------------------------

def after_step(dp: Optional[DataParallel], trainer, stats: dict) -> dict:
    """Global means of the step's stats; levers' floating buffers averaged so the processes stay identical."""
    if dp is None:
        return stats
    for name in ("aug", "match", "lin"):
        module = getattr(trainer, name, None)
        if isinstance(module, torch.nn.Module):
            dp.average_buffers(module)
    return dp.mean_stats(stats)


def any_process(dp: Optional[DataParallel], flag: bool) -> bool:
    return flag if dp is None else dp.any(flag)


@contextmanager
def main_first(dp: Optional[DataParallel]):
    """Rank 0 runs the block first (e.g. renders and caches the data); the others run it after."""
    if dp is not None and dp.rank != 0:
        dp.barrier()
    yield
    if dp is not None and dp.rank == 0:
        dp.barrier()


def launcher() -> str:
    """How this process was started, for the command history: 'python' or torchrun's process counts."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return "python"
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world) or world)
    nodes = max(1, world // max(per_node, 1))
    return "torchrun" + (f" --nnodes {nodes}" if nodes > 1 else "") + f" --nproc_per_node {per_node}"

"""Resuming a training run on another machine or day: the compact resume file and the resume log.

* ``python -m facegen train --export-resume runs/X/checkpoint.pt --export DIR [--with-optimizer]`` writes
  ``DIR/resume.safetensors`` (+ ``DIR/resume.json``, the same facts readable): G, G_ema, D (and a Q head or a
  lever's state when the run has them), the step, images seen, wall time, the config and every RNG state, in
  float32 as trained. The Adam moments are left out unless ``--with-optimizer`` (they triple the size); with
  them the file resumes bit for bit like the run's own checkpoint. No pickle: safetensors + JSON metadata.
* ``python -m facegen train --outdir runs/Y --resume-from DIR_OR_FILE ...`` starts a run directory from such
  a file (or from another run's checkpoint.pt). Once the directory has its own checkpoint.pt, that one wins,
  so rerunning the same command after an interruption continues where it stopped.
* Every resume appends an event line to ``log.jsonl``: ``{"event": "resume", step, kimg, elapsed_s,
  time_utc, host, world_size, device, torch, command, optimizer_restored, from, config_changes}``, where
  config_changes lists the options whose values differ from the run that wrote the file; a fresh run writes
  the same line as ``"event": "start"``. An export copies these lines to metrics.json's ``history``;
  ``python -m facegen train --history MODEL_OR_RUN`` prints them as a table (:func:`history_table`).
"""

from __future__ import annotations

import json
import shlex
import socket
import time
from pathlib import Path
from typing import Optional

import torch

from facegen.engine.errors import InputError, ModelNotFoundError

RESUME_NAME = "resume.safetensors"
OPTIMISERS = ("opt_G", "opt_D", "opt_P")
# Options that shape the networks: a resume file fits only a run with the same values.
NETWORK_FIELDS = ("resolution", "z_dim", "w_dim", "mapping_layers", "g_channel_base", "g_channel_max",
                  "g_architecture", "g_chroma_res", "d_channel_base", "d_channel_max", "c_dim")


def _is_state_dict(v) -> bool:
    return isinstance(v, dict) and bool(v) and all(isinstance(t, torch.Tensor) for t in v.values())


def export_resume(checkpoint, folder, with_optimizer: bool = False) -> Path:
    """A run's checkpoint.pt -> ``folder/resume.safetensors`` (compact: no optimiser state unless asked)."""
    from safetensors.torch import save_file
    st = torch.load(checkpoint, map_location="cpu", weights_only=True)
    tensors, meta = {}, {"format": "facegen-resume-1", "source": str(checkpoint)}
    for name, value in st.items():
        if name in OPTIMISERS:
            if with_optimizer:
                for idx, slots in value["state"].items():
                    for slot, t in slots.items():
                        tensors[f"{name}/state/{idx}/{slot}"] = t.contiguous()
                meta[name + "_param_groups"] = json.dumps(value["param_groups"])
        elif _is_state_dict(value):
            tensors.update({f"{name}/{k}": t.contiguous() for k, t in value.items()})
    tensors["rng/torch"] = st["rng_torch"]
    tensors["rng/data"] = st["rng_data"]
    tensors["rng/numpy"] = torch.tensor(st["rng_numpy"], dtype=torch.int64)
    facts = {"step": st["step"], "images_seen": st["images_seen"], "elapsed": st["elapsed"],
             "rng_numpy_pos": st["rng_numpy_pos"], "optimizer": bool(with_optimizer), "cfg": st["cfg"]}
    meta.update({k: json.dumps(v) for k, v in facts.items()}, rng_python=st["rng_python"])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RESUME_NAME
    save_file(tensors, str(path), metadata=meta)
    readable = {**facts, "kimg": round(st["images_seen"] / 1000, 3), "source": str(checkpoint),
                "size_mb": round(path.stat().st_size / 2 ** 20, 2),
                "resume": f"python -m facegen train --resume-from {folder} ..."}
    (folder / "resume.json").write_text(json.dumps(readable, indent=1) + "\n")
    return path


def read_resume(path) -> dict:
    """A resume file (or a folder holding one, or a full checkpoint.pt) -> a checkpoint-like dict."""
    path = Path(path)
    if path.is_dir():
        path = path / RESUME_NAME
    if not path.is_file():
        raise ModelNotFoundError(f"no resume file at {path}: write one with `python -m facegen train "
                                 f"--export-resume runs/X/checkpoint.pt --export FOLDER`.")
    if path.suffix != ".safetensors":
        return torch.load(path, map_location="cpu", weights_only=True)
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != "facegen-resume-1":
        raise InputError(f"{path} is not a facegen resume file (format {meta.get('format')!r}).")
    st = {k: json.loads(meta[k]) for k in ("step", "images_seen", "elapsed", "rng_numpy_pos", "cfg")}
    st.update(rng_torch=tensors.pop("rng/torch"), rng_data=tensors.pop("rng/data"),
              rng_numpy=tensors.pop("rng/numpy").tolist(), rng_python=meta["rng_python"])
    for key, t in tensors.items():
        name, rest = key.split("/", 1)
        if name in OPTIMISERS:
            _, idx, slot = rest.split("/")
            opt = st.setdefault(name, {"state": {}, "param_groups": json.loads(meta[name + "_param_groups"])})
            opt["state"].setdefault(int(idx), {})[slot] = t
        else:
            st.setdefault(name, {})[rest] = t
    return st


def load_resume(trainer, path) -> bool:
    """Load a resume file into a fresh Trainer; True when it carried the optimiser state.

    What the file lacks (the optimisers of a compact file, the state of a lever switched on only now)
    stays as the Trainer built it."""
    st = read_resume(path)
    own = trainer.cfg
    bad = {k: (st["cfg"][k], getattr(own, k)) for k in NETWORK_FIELDS
           if k in st["cfg"] and st["cfg"][k] != getattr(own, k)}
    if bad:
        raise InputError(f"{path} was trained with other network options than this run: "
                         + ", ".join(f"--{k.replace('_', '-')} {a} (this run: {b})" for k, (a, b) in bad.items())
                         + ". Pass the options the file was trained with.")
    restored = all(k in st for k in OPTIMISERS if getattr(trainer, k, None) is not None)
    try:
        trainer.load_state({**trainer.state(), **st})
    except (RuntimeError, KeyError) as e:
        raise InputError(f"{path} does not fit this run's networks ({e}). Pass the options it was trained with.")
    return restored


def source_config(path) -> Optional[dict]:
    """The config of the run that wrote a checkpoint or resume file (None when unreadable)."""
    try:
        return read_resume(path).get("cfg")
    except (OSError, InputError, ModelNotFoundError, RuntimeError):
        return None


def run_event(trainer, command: Optional[str], world_size: int = 1, source=None,
              optimizer_restored: Optional[bool] = None) -> dict:
    """The log.jsonl line of one invocation: "start" for a fresh run, "resume" when it continued from
    ``source`` (see the module docstring); together they are the run's command history."""
    from dataclasses import asdict
    cfg = asdict(trainer.cfg)
    source_cfg = source_config(source) if source else None
    # An option the source's config lacks (added to TrainConfig since) had its default there.
    defaults = asdict(type(trainer.cfg)())
    changes = {k: [(source_cfg or {}).get(k, defaults[k]), v] for k, v in cfg.items()
               if source_cfg is not None and v != source_cfg.get(k, defaults[k])}
    return {"event": "resume" if source else "start", "step": trainer.step, "kimg": trainer.images_seen / 1000,
            "elapsed_s": round(trainer.elapsed, 1), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(), "world_size": world_size, "device": str(trainer.cfg.device),
            "torch": torch.__version__, "command": command,
            "optimizer_restored": None if source is None else bool(optimizer_restored),
            "from": None if source is None else str(source), "config_changes": changes}


def history(log_path) -> list:
    """The start and resume events of a run's log.jsonl, in order (its command history)."""
    return [e for e in read_log(log_path)[1] if e["event"] in ("start", "resume")]


#: Options that say where and for how long a leg ran, not how it trained: left out of :func:`history_table`.
BOOKKEEPING = ("outdir", "minutes", "kimg", "snapshot_steps", "log_steps")


def history_table(events) -> str:
    """A run's command history as a Markdown table: one row per start / resume event -- its step, time, device,
    run folder, whether Adam's state came back, and the training options it changed (where, how long and how
    often it logged are left out; the full command is in the event itself)."""
    rows = ["| # | event | step | kimg | UTC | device | run folder | Adam | options changed |",
            "|---|---|---|---|---|---|---|---|---|"]
    for i, e in enumerate(events, 1):
        changes = {k: v for k, v in (e.get("config_changes") or {}).items() if k not in BOOKKEEPING}
        what = ", ".join(f"`{k}` {v[0]!r} → {v[1]!r}" for k, v in changes.items()) or "--"
        folder = _option(e.get("command") or "", "--outdir")
        adam = {None: "--", True: "yes", False: "no"}[e.get("optimizer_restored")]
        rows.append(f"| {i} | {e['event']} | {e['step']} | {e['kimg']:.1f} | {e['time_utc'][:16].replace('T', ' ')} "
                    f"| {e['device']} | `{folder}` | {adam} | {what} |")
    return "\n".join(rows)


def _option(command: str, name: str) -> str:
    """The value of ``name`` in a logged command line ('?' without it)."""
    words = shlex.split(command)
    return next((b for a, b in zip(words, words[1:]) if a == name), "?")


def read_events(path) -> list:
    """The start / resume events of a run folder (its log.jsonl), a log.jsonl, or an exported model folder (its
    metrics.json ``history``)."""
    path = Path(path)
    if path.is_dir() and (path / "metrics.json").exists() and not (path / "log.jsonl").exists():
        path = path / "metrics.json"
    elif path.is_dir():
        path = path / "log.jsonl"
    if not path.exists():
        raise InputError(f"{path} does not exist: give a run folder, its log.jsonl, or an exported model folder.")
    if path.name == "metrics.json":
        events = json.loads(path.read_text()).get("history")
        if events is None:
            raise InputError(f"{path} has no command history (exported without a training run: --export-checkpoint).")
        return events
    return history(path)


def read_log(path) -> tuple:
    """log.jsonl -> (loss records, event records)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in rows if "event" not in r], [r for r in rows if "event" in r]


"""Build a feature pack from nothing for any generator: ``python -m facegen pack build``.

Pipeline (:func:`build_pack`), each step logged as it starts and ends, timed into ``metrics.json``:

1. **The folder.** ``out`` may be empty, new, or a pack of *the same* generator (rebuilt in place:
   components not rebuilt are kept); a pack of another generator is refused with
   :class:`~facegen.packs.pack.PackMismatchError` before any work starts.
2. **Directions** (``directions/directions.npz`` + its README): :func:`facegen.packs.direction_fitting.fit_directions`
   with the labeller on every continuous and bool attribute it predicts (attributes that do not split
   on this generator's samples are skipped and listed). Under ``torchrun`` the rendering and labelling is
   split over the processes (see :func:`init_distributed`); every rank fits from the gathered labels,
   rank 0 writes.
3. **Class sampler** (classifier, z-code nets): ``facegen.packs.classes.build_class_sampler(G, labeller,
   out_dir, n, seed, log)``, which returns the manifest's components entry. Skipped, with the reason in
   the log and in ``metrics.json``, while that function is not part of this facegen.
4. **Alignment template** (``alignment.json``): ``facegen.packs.alignment.build_alignment_template`` --
   where the generator puts five landmarks, measured on its own samples (a generic template when no
   detector finds faces; the file says which).
5. **Encoder** (``--encoder``, ``encoder/``): ``facegen.packs.encoder.train_encoder`` for a time budget,
   with the perceptual loss the pack's ``perceptual`` field names.
6. ``pack.json`` (:func:`facegen.packs.pack.new_manifest` + the components), ``metrics.json`` and
   ``README.md``, both with the exact command line. Nothing written holds an absolute path: paths in
   the recorded command are made relative to the working directory (:func:`portable_command`).

Steps 3-5 are looked up when they run (:func:`optional`), so a pack builds with whatever this facegen has.
The customise tab's recipes (its ``auto`` method) are measured afterwards, with the features this layer
does not import: ``python -m facegen customize recipes --model MODEL --pack OUT``
(:mod:`facegen.features.customize_recipes`).
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import shlex
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from facegen.engine.errors import InputError
from facegen.packs.pack import COMPONENTS, MANIFEST, Pack, PackError, PackMismatchError, new_manifest

#: Build steps, in order; "encoder" only runs when asked for.
STEPS = ("directions", "classes", "alignment", "encoder")
DEFAULT_STEPS = ("directions", "classes", "alignment")
DIRECTIONS_FILE = "directions/directions.npz"
ALIGNMENT_FILE = "alignment.json"
ENCODER_DIR = "encoder"


# ---------------------------------------------------------------------------
# Helpers: relative command lines, optional steps, data-parallel set-up
# ---------------------------------------------------------------------------


def _relative(token: str, cwd: Path) -> str:
    if os.path.isabs(token):
        return os.path.relpath(token, cwd)
    if token.startswith("--") and "=" in token:
        k, v = token.split("=", 1)
        return f"{k}={_relative(v, cwd)}" if os.path.isabs(v) else token
    return token


def portable_command(prefix: str, argv: Sequence[str], cwd: Optional[Path] = None) -> str:
    """`prefix` + argv with every absolute path made relative to `cwd` (default: the working directory),
    so a pack's README / metrics hold the exact command and no absolute path."""
    cwd = Path(cwd or os.getcwd())
    return prefix + " " + shlex.join(_relative(str(a), cwd) for a in argv)


def portable(value: str, cwd: Optional[Path] = None) -> str:
    return _relative(str(value), Path(cwd or os.getcwd()))


def optional(module: str, name: str) -> Optional[Callable]:
    """`module.name` when this facegen has it, else None (the step is then skipped and says so)."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def init_distributed() -> tuple:
    """Under torchrun (``WORLD_SIZE`` > 1): join the process group -- NCCL when CUDA is available (one GPU
    per ``LOCAL_RANK``), else gloo -- and return (rank, world size, device). Else (0, 1, None)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1, None
    import torch.distributed as dist
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=2))
    return dist.get_rank(), dist.get_world_size(), device


def finish_distributed() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def labeller_attributes(labeller) -> list:
    """The continuous and bool attributes a labeller predicts (what a pack's directions are fitted on)."""
    return [n for n, kind, _ in labeller.spec if kind in ("continuous", "bool")]


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def component_sizes(pack: Pack) -> dict:
    """{component: bytes on disk} for the pack's path components (None for data components)."""
    out = {}
    for c, v in pack.components.items():
        kind = COMPONENTS.get(c)
        if kind == "path":
            out[c] = size_of(pack.path(c))
        elif kind == "paths":
            out[c] = sum(size_of(p) for p in pack.paths(c))
        else:
            out[c] = None
    return out


def human(n: Optional[int]) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


# ---------------------------------------------------------------------------
# The output folder
# ---------------------------------------------------------------------------


def open_pack(out, G, name: str, labeller: Optional[str], perceptual: str) -> Pack:
    """The pack at `out` to (re)build for G: a new manifest, or the existing pack of G (the components and
    the metrics of the steps not rebuilt stay). A pack of another generator raises PackMismatchError; a
    folder that is a file raises PackError."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PackError(f"--out {out} is a file; give a folder for the pack.")
    if (out / MANIFEST).is_file():
        pack = Pack.load(out)
        if not pack.matches(G):      # e.g. a generator retrained in place: its old pack is not overwritten
            raise PackMismatchError(
                f"--out {out} holds the pack of generator {pack.fingerprint}, not of this one ({G.fingerprint}); "
                f"a pack is kept for the generator it was built for. Give another --out, or delete {out} "
                f"to build this generator's pack there.")
        pack.manifest.update(name=name, labeller=labeller or pack.labeller, perceptual=perceptual)
        return pack
    return Pack(out, new_manifest(G, name, labeller, perceptual))


def default_perceptual(labeller, G) -> str:
    """labeller when it is differentiable, else the discriminator when G's file carries one, else pixels."""
    from facegen.labels import perceptual as P
    if labeller is not None and P.differentiable_labeller(labeller):
        return "labeller"
    try:
        return "discriminator" if P.discriminator_file(G) is not None else "pixels"
    except Exception:        # noqa: BLE001 -- a broken D file only changes the default
        return "pixels"


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------


def step_directions(G, labeller, pack: Pack, n: int, rank: int, log, command: str, **fit_kwargs) -> dict:
    from facegen.packs.direction_fitting import _readme, fit_directions
    attrs = fit_kwargs.pop("attributes", None) or labeller_attributes(labeller)
    ds = fit_directions(G, labeller, attributes=attrs, n=n, log=log, **fit_kwargs)
    ds.meta["command"] = command
    out = {"attributes": ds.summary(), "skipped_attributes": ds.meta.get("skipped", {}), "n_samples": ds.meta["n_samples"],
           "n_used": ds.meta["n_used"], "processes": ds.meta.get("processes", 1),
           "render_time_s": ds.meta["render_time_s"], "fit_time_s": ds.meta["fit_time_s"]}
    if rank == 0:
        path = ds.save(pack.root / DIRECTIONS_FILE)
        (path.parent / "README.md").write_text(_readme(ds, command, path.name))
        pack.manifest["components"]["directions"] = DIRECTIONS_FILE
    return out


def step_classes(G, labeller, pack: Pack, n: int, seed: int, log) -> dict:
    fn = optional("facegen.packs.classes", "build_class_sampler")
    if fn is None:
        return {"skipped": "facegen.packs.classes.build_class_sampler is not part of this facegen yet"}
    entry = fn(G, labeller, pack.root, n, seed, log)
    if isinstance(entry, dict):
        pack.manifest["components"].update(entry)
    return {"components": sorted(entry) if isinstance(entry, dict) else []}


def step_alignment(G, pack: Pack, n: int, seed: int, log) -> dict:
    build = optional("facegen.packs.alignment", "build_alignment_template")
    save = optional("facegen.packs.alignment", "save_alignment")
    if build is None or save is None:
        return {"skipped": "facegen.packs.alignment.build_alignment_template is not part of this facegen yet"}
    d = build(G, n=n, seed=seed)
    save(d, pack.root / ALIGNMENT_FILE)
    pack.manifest["components"]["alignment"] = ALIGNMENT_FILE
    return {k: d.get(k) for k in ("source", "note", "detector", "n_samples", "n_detected") if k in d}


def step_encoder(G, pack: Pack, minutes: float, seed: int, log) -> dict:
    train = optional("facegen.packs.encoder", "train_encoder")
    Config = optional("facegen.packs.encoder", "TrainConfig")
    perceptual_for = optional("facegen.labels.perceptual", "perceptual_for")
    if train is None or Config is None:
        return {"skipped": "facegen.packs.encoder.train_encoder is not part of this facegen yet"}
    perc = perceptual_for(G, pack) if perceptual_for is not None else None
    E, stats = train(G, Config(minutes=minutes, seed=seed), perceptual=perc, log=log)
    E.save_pretrained(pack.root / ENCODER_DIR, generator=pack.name, perceptual=getattr(perc, "note", "none"))
    pack.manifest["components"]["encoder"] = ENCODER_DIR
    return {k: v for k, v in stats.items() if k != "history"}


# ---------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------


def build_pack(G, labeller, out, name: str, n: int = 3000, steps: Sequence[str] = DEFAULT_STEPS,
               command: str = "python -m facegen pack build", model: str = "", perceptual: Optional[str] = None,
               seed: int = 0, align_n: int = 64, encoder_minutes: float = 10.0,
               log: Optional[Callable] = print, **fit_kwargs) -> Optional[Pack]:
    """Build (or rebuild) G's pack in `out` (module docstring). `labeller`: a Labeller instance (its
    ``name`` goes into the manifest). Returns the Pack on rank 0, None on the other ranks of a torchrun."""
    from facegen.packs.direction_fitting import _dist_world
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise InputError(f"Unknown build steps {bad}: use {', '.join(STEPS)}.")
    log = log or (lambda *_: None)
    rank, world = _dist_world()
    lab_name = getattr(labeller, "name", "") or type(labeller).__name__
    perceptual = perceptual or default_perceptual(labeller, G)
    G.meta.setdefault("name", name)
    pack = open_pack(out, G, name, lab_name, perceptual)
    t_all = time.perf_counter()
    metrics = {"command": command, "generator": pack.manifest["generator"], "labeller": lab_name,
               "perceptual": perceptual, "processes": world, "steps": dict(pack.metrics().get("steps") or {})}
    order = [s for s in STEPS if s in steps]
    for i, step in enumerate(order, 1):
        if rank != 0 and step != "directions":
            continue                   # only the labelling is data-parallel; the other steps run on rank 0
        log(f"[pack build] step {i}/{len(order)}: {step} ...")
        t0 = time.perf_counter()
        if step == "directions":
            res = step_directions(G, labeller, pack, n, rank, log, command, model=model, **fit_kwargs)
        elif step == "classes":
            res = step_classes(G, labeller, pack, n, seed, log)
        elif step == "alignment":
            res = step_alignment(G, pack, align_n, seed, log)
        else:
            res = step_encoder(G, pack, encoder_minutes, seed, log)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        res["command"] = command
        metrics["steps"][step] = res
        log(f"[pack build] step {i}/{len(order)}: {step} " + (f"skipped: {res['skipped']}" if "skipped" in res
                                                                else f"done in {res['seconds']:.1f}s"))
    if rank != 0:
        return None
    metrics["total_seconds"] = round(time.perf_counter() - t_all, 1)
    metrics["created"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return write_pack(pack, command, metrics, log)


def write_pack(pack: Pack, command: str, metrics: dict, log=print) -> Pack:
    """Write pack.json, metrics.json and README.md (the manifest is validated before it is written)."""
    pack.manifest["provenance"] = {**(pack.manifest.get("provenance") or {}), "command": command}
    pack.manifest["metrics"] = "metrics.json"
    pack.root.mkdir(parents=True, exist_ok=True)
    metrics["components"] = {c: s for c, s in component_sizes(pack).items()}
    (pack.root / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_json) + "\n")
    pack.save()
    (pack.root / "README.md").write_text(readme(pack, metrics))
    log(f"[pack build] wrote {MANIFEST}, metrics.json and README.md ({pack.describe()})")
    return pack


def _json(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def readme(pack: Pack, metrics: dict) -> str:
    """The pack's README: generator, command, components and sizes, direction accuracies, skipped steps."""
    g = pack.manifest["generator"]
    sizes = component_sizes(pack)
    comp = "\n".join(f"| {c} | `{v}` | {human(sizes.get(c))} |" if not isinstance(v, dict) else
                     f"| {c} | {json.dumps(v)} | - |" for c, v in pack.components.items())
    dirs = metrics.get("steps", {}).get("directions", {})
    commands = list(dict.fromkeys([r["command"] for r in metrics.get("steps", {}).values() if r.get("command")]
                                  + [metrics["command"]]))
    rows = "\n".join(f"| {r['attribute']} | {r['heldout_accuracy']:.3f} | {r['step_size']:.3f} |"
                     for r in dirs.get("attributes", []))
    skipped = "".join(f"\n* {s}: skipped -- {r['skipped']}" for s, r in metrics.get("steps", {}).items()
                      if "skipped" in r)
    skipped += "".join(f"\n* direction '{a}': {why}" for a, why in dirs.get("skipped_attributes", {}).items())
    return f"""# Feature pack `{pack.name}` for generator {g['fingerprint']}

Generator: {g.get('name') or '?'}, {g.get('resolution')} px, {g.get('num_ws')} style layers, w_dim {g.get('w_dim')}
(the pack is found by this fingerprint; it is refused for any other generator). Labeller:
`{pack.labeller}`; encoder refinement loss: `{pack.perceptual}`.

## Rebuild

From the directory the build was run in (the last run: {metrics.get('total_seconds', 0):.0f} s wall,
{metrics.get('processes', 1)} process(es)){'; the steps were built by these commands, in order' if len(commands) > 1 else ''}:

```
{chr(10).join(commands)}
```

## Components

| component | path | size |
|---|---|---|
{comp}

## Directions

{dirs.get('n_used', 0)} of {dirs.get('n_samples', 0)} samples labelled as faces were used; balanced held-out
accuracy of the W fit (0.5 = chance) and one step in w units:

| attribute | held-out accuracy | step size |
|---|---|---|
{rows}
{skipped}

## Use

```
FACEGEN_PACKS=<this folder> python app.py          # the studio finds the pack by fingerprint
python -m facegen pack info <this folder>
python -m facegen pack push <this folder> OWNER/REPO
```
"""

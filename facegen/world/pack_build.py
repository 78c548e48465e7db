"""A face-world generator's full pack in one command: ``python -m facegen world-pack build``.

The generic builder (:mod:`facegen.packs.build`, ``python -m facegen pack build``) makes what any labelled
generator can have. A generator trained on the face world (``mini``, mini v2, any ``python -m facegen train``
export) can have everything ``mini`` ships; until now each part had its own command (see the READMEs of
``assets/packs/mini``). :func:`build_world_pack` runs them all, in order, by calling the same functions:

1. **directions** -- :func:`facegen.packs.direction_fitting.fit_directions` with the world predictor, saved by
   :func:`~facegen.packs.direction_fitting.save_fitted` (``python -m facegen directions fit``);
2. **classifier** -- copied from the source pack (default ``assets/packs/mini``): it is trained on world
   renders, not on any generator (``python -m facegen customize classifier``);
3. **zcodes** -- one z-code net per class against the new G, that classifier and G's own discriminator
   (``discriminator.safetensors`` beside the model: ``python -m facegen train --export-discriminator``),
   :func:`facegen.world.class_training.train_zcode_bank` (``python -m facegen customize zcode``);
4. **encoder** -- :func:`facegen.world.encoder_training.train_and_save` with the pack's perceptual loss (the
   world predictor's features) and a pool of world renders (``python -m facegen encoder train``);
5. **localiser** -- copied from the source pack: trained on renders, generator-independent;
6. **alignment** -- G's template measured on its own samples with that localiser
   (``python -m facegen faceswap alignment --detector localiser``);
7. **banks** -- the world characters (``assets/banks/world-characters``) encoded with the *new* encoder and
   refined (:func:`facegen.features.banks.build_bank`; ``python -m facegen bank build``);
8. **recipes** -- every customisation recipe the pack now serves, measured per class with the world labeller,
   and the best one chosen (:func:`facegen.features.customize_recipes.write_recipes`; ``python -m facegen
   customize recipes``): the customise tab's ``auto`` method.

Then ``pack.json`` keyed by G's fingerprint (a pack of another generator in ``--out`` is refused before any
work), ``metrics.json`` and ``README.md`` with the exact command and every step's time. The manifest is
written after every step, so an interrupted build resumes: a step is skipped when its component exists and
was built with the same settings for it (:data:`STEP_SETTINGS`), unless a step it uses was rebuilt in this run
(z-codes after the classifier, the alignment after the localiser, the banks after the encoder: :data:`DEPENDS`);
``--force`` rebuilds all. The fine-tuned sibling (``mini-glasses``) is not
built: it is a separate training run (``assets/mini-glasses/README.md``).

``--budget full`` uses the settings of mini's shipped components (their READMEs); ``--budget quick`` tiny
ones, for tests and smoke runs (the numbers it gives are not the generator's).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from facegen.engine.errors import InputError
from facegen.engine.paths import ASSETS
from facegen.packs import build as B
from facegen.packs.pack import Pack

#: Steps in build order; each fills the pack component of its name.
STEPS = ("directions", "classifier", "zcodes", "encoder", "localiser", "alignment", "banks", "recipes")
#: The budget settings each step uses (a resumed build reruns a step when one of them changed) ...
STEP_SETTINGS = {"directions": ("directions_n", "directions_bands"), "classifier": (),
                 "zcodes": ("classes", "zcode_steps", "zcode_lambda_feat"),
                 "encoder": ("encoder_minutes", "encoder_real_pool", "encoder_eval_n"), "localiser": (),
                 "alignment": ("alignment_n",), "banks": ("bank_refine_steps", "bank_time_budget"),
                 "recipes": ("recipes_n",)}
#: ... and the steps whose output it uses (rerun when one of them was rebuilt).
DEPENDS = {"zcodes": ("classifier",), "alignment": ("localiser",), "banks": ("encoder",),
           "recipes": ("classifier", "zcodes")}
SOURCE_PACK = ASSETS / "packs" / "mini"
CHARACTERS = ASSETS / "banks" / "world-characters"
BANK_NAME = "Face-world characters"
BANK_DESCRIPTION = ("Twelve fictional characters of the procedural face world, rendered with chosen attributes "
                    "(world-characters/attributes.json), encoded with the pack's encoder and refined ({} steps).")
COMMAND = "python -m facegen world-pack build"


@dataclass(frozen=True)
class Budget:
    """How much work each step does. :data:`FULL` = mini's shipped components (their READMEs)."""
    name: str
    directions_n: int = 3000          # directions fit --n 3000 (and as many style-mixed samples for the bands)
    directions_bands: bool = True
    classes: tuple = ()               # z-code classes; () = every class of the classifier (17)
    zcode_steps: int = 150            # customize zcode --steps 150 --lambda-feat 1
    zcode_lambda_feat: float = 1.0
    encoder_minutes: float = 9.0      # encoder train --minutes 9 --real-pool 2000 (eval on 64 held-out renders)
    encoder_real_pool: int = 2000
    encoder_eval_n: int = 64
    alignment_n: int = 256            # faceswap alignment --n 256 --detector localiser
    bank_refine_steps: int = 200      # bank build (--refine-steps 200 --time-budget 8)
    bank_time_budget: float = 8.0
    recipes_n: int = 64               # customize recipes --n 64


FULL = Budget("full")
QUICK = Budget("quick", directions_n=400, directions_bands=False, zcode_steps=4, encoder_minutes=0.25,
               encoder_real_pool=64, encoder_eval_n=8, alignment_n=16, bank_refine_steps=10, bank_time_budget=1.0,
               recipes_n=8)
BUDGETS = {"full": FULL, "quick": QUICK}


def with_overrides(budget: Budget, settings: Sequence[str]) -> Budget:
    """`budget` with ``FIELD=VALUE`` settings (``--set zcode_steps=2 --set classes=glasses,old``)."""
    from dataclasses import fields, replace
    kinds = {f.name: f.type for f in fields(Budget) if f.name != "name"}
    changes = {}
    for item in settings:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in kinds:
            raise InputError(f"--set {item!r}: use FIELD=VALUE with FIELD one of {', '.join(kinds)}.")
        kind = kinds[key]
        try:
            changes[key] = (tuple(v.strip() for v in value.split(",") if v.strip()) if kind == "tuple" else
                            value.lower() in ("1", "true", "yes") if kind == "bool" else
                            {"int": int, "float": float}[kind](value))
        except ValueError:
            raise InputError(f"--set {item!r}: {key} takes a {kind}.") from None
    return replace(budget, **changes)


# ---------------------------------------------------------------------------
# The generator and the output folder
# ---------------------------------------------------------------------------

def load_world_generator(model: str):
    """G (eval, frozen) and the path of its discriminator; InputError when the model has none beside it."""
    from facegen.engine.loaders import load_generator
    from facegen.labels.perceptual import discriminator_file
    G = load_generator(model).eval().requires_grad_(False)
    d = discriminator_file(G)
    if d is None or d.suffix != ".safetensors":
        raise InputError(f"{model} has no discriminator.safetensors beside its weights; the z-code nets need it. "
                         f"Write it with `python -m facegen train --export-discriminator CHECKPOINT --export {model}`.")
    if G.c_dim:
        raise InputError(f"{model} is class-conditional; a face-world pack is built for unconditional generators.")
    return G, d


def step_done(pack: Pack, metrics: dict, step: str, budget: Budget) -> bool:
    """The step's component exists and was built with this budget's settings for it (a resumed build skips it)."""
    built = (metrics["steps"].get(step) or {}).get("budget")
    if not built or not pack.has(step):
        return False
    now = _plain(budget)
    return all(built.get(k) == now[k] for k in STEP_SETTINGS[step])


def _plain(budget: Budget) -> dict:
    """The budget as metrics.json holds it (tuples become lists)."""
    return json.loads(json.dumps(asdict(budget)))


def _copy_component(pack: Pack, source: Pack, component: str) -> dict:
    src = source.path(component)
    dst = pack.root / component
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    pack.manifest["components"][component] = component
    return {"copied_from": B.portable(src), "bytes": B.size_of(dst)}


# ---------------------------------------------------------------------------
# Steps (each returns what metrics.json records of it)
# ---------------------------------------------------------------------------

def step_directions(G, pack: Pack, source: Pack, budget: Budget, model: str, command: str, log) -> dict:
    """The attributes of the source pack's directions (mini's eight editing attributes), so editing benches
    compare like with like."""
    from facegen.labels.base import load_labeller
    from facegen.packs.direction_fitting import fit_directions, save_fitted
    from facegen.packs.directions import load_directions
    attributes = list(load_directions(source.path("directions")).names) if source.has("directions") else None
    ds = fit_directions(G, load_labeller("world"), attributes, n=budget.directions_n, mixed=budget.directions_bands,
                        model=model, log=log)
    save_fitted(ds, pack.root / B.DIRECTIONS_FILE, command)
    pack.manifest["components"]["directions"] = B.DIRECTIONS_FILE
    return {"attributes": ds.summary(), "skipped_attributes": ds.meta.get("skipped", {}),
            "n_samples": ds.meta["n_samples"], "n_used": ds.meta["n_used"],
            "render_time_s": ds.meta["render_time_s"], "fit_time_s": ds.meta["fit_time_s"]}


def step_zcodes(G, pack: Pack, budget: Budget, d_path: Path, model: str, command: str, log) -> dict:
    from facegen.packs.classifier import load_classifier
    from facegen.world.class_training import load_discriminator, train_zcode_bank
    C = load_classifier(pack.path("classifier"))
    names = list(budget.classes) or list(C.classes)
    m = train_zcode_bank(G, C, names, pack.root / "zcode", D=load_discriminator(G, d_path), command=command,
                         model=model, discriminator=B.portable(d_path), steps=budget.zcode_steps,
                         lambda_feat=budget.zcode_lambda_feat, log=log)
    pack.manifest["components"]["zcodes"] = "zcode"
    hits = {n: r.get("hit") for n, r in m["final"].items()}
    return {"classes": names, "train_seconds": m["train_seconds"], "final_hit": hits,
            "final_hit_mean": round(sum(hits.values()) / len(hits), 3)}


def step_encoder(G, pack: Pack, budget: Budget, model: str, command: str, log) -> dict:
    from facegen.labels.perceptual import perceptual_for
    from facegen.packs.encoder import TrainConfig
    from facegen.world.encoder_training import train_and_save
    cfg = TrainConfig(minutes=budget.encoder_minutes, real_pool=budget.encoder_real_pool)
    perc = perceptual_for(G, pack, "auto", G.mapping.w_avg.device) if cfg.feature_weight > 0 else None
    rec = train_and_save(G, cfg, pack.root / B.ENCODER_DIR, perc, command, model=model,
                         eval_n=budget.encoder_eval_n, log=log)
    pack.manifest["components"]["encoder"] = B.ENCODER_DIR
    enc = rec["metrics"]["encoder"]
    return {"steps": rec["train"]["steps"], "train_seconds": rec["train"]["train_seconds"],
            "perceptual": getattr(perc, "note", "none"), "psnr": round(enc["psnr"], 2),
            "attr_mae": round(enc["attr_vs_truth"]["continuous_mae_mean"], 4)}


def step_alignment(G, pack: Pack, budget: Budget, command: str) -> dict:
    from facegen.features.faceswap.tracking import pack_localiser
    from facegen.packs.alignment import FILE_NAME, build_alignment_template, save_alignment
    localiser = pack_localiser(pack)
    if localiser is None:
        raise InputError(f"The alignment step needs the pack's localiser: build the 'localiser' step first ({pack.root}).")
    d = build_alignment_template(G, budget.alignment_n, 0, detector=localiser.detect, detector_name="localiser")
    d["command"] = command
    save_alignment(d, pack.root / FILE_NAME)
    pack.manifest["components"]["alignment"] = FILE_NAME
    return {k: d.get(k) for k in ("source", "note", "n_samples", "n_detected", "spread_px_at_64")}


def step_banks(G, pack: Pack, budget: Budget, characters: Optional[Path], log) -> dict:
    from facegen.features.banks import build_bank
    from facegen.world.characters import render_world_characters
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(characters) if characters else Path(tmp)
        if not characters:
            render_world_characters(folder, size=128)
        bank, skipped = build_bank(G, pack, folder, name=BANK_NAME,
                                   description=BANK_DESCRIPTION.format(budget.bank_refine_steps),
                                   refine_steps=budget.bank_refine_steps, time_budget=budget.bank_time_budget,
                                   model=pack.name, log=log)
    rel = f"banks/{pack.name}-world-characters.npz"
    bank.save(pack.root / rel)
    pack.manifest["components"]["banks"] = [rel]
    psnr = [(e["psnr_encoder"], e["psnr_refined"]) for e in bank.meta["entries"]]
    return {"faces": len(bank), "not_encoded": skipped, "source": B.portable(folder) if characters else "rendered",
            "psnr_encoder_mean": round(sum(p[0] for p in psnr) / len(psnr), 2),
            "psnr_refined_mean": round(sum(p[1] for p in psnr) / len(psnr), 2)}


def step_recipes(G, pack: Pack, budget: Budget, command: str, log) -> dict:
    from facegen.features.customize_recipes import write_recipes
    from facegen.packs.recipes import load_recipes, meets
    write_recipes(G, pack, n=budget.recipes_n, command=command, log=log)
    classes = load_recipes(pack)["classes"]
    return {"chosen": {c: e["chosen"] for c, e in classes.items()},
            "classes_met": sum(meets(e["recipes"][e["chosen"]], budget.recipes_n) for e in classes.values())}


# ---------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------

def build_world_pack(model: str, out, budget: Budget = FULL, source_pack=SOURCE_PACK, characters=CHARACTERS,
                     steps: Sequence[str] = tuple(STEPS), force: bool = False, name: Optional[str] = None,
                     command: str = COMMAND, log: Optional[Callable] = print) -> Pack:
    """Build (or resume) the face-world pack of generator `model` in `out` (module docstring) -> the Pack."""
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise InputError(f"Unknown steps {bad}: use {', '.join(STEPS)}.")
    log = log or (lambda *_: None)
    G, d_path = load_world_generator(model)
    name = name or Path(out).name
    if not G.meta.get("name"):
        G.meta["name"] = Path(model).name        # the manifest's title for the generator; not its key
    pack = B.open_pack(out, G, name, "world", "labeller")          # refuses a pack of another generator
    source = Pack.load(source_pack)
    metrics = {"command": command, "generator": pack.manifest["generator"], "labeller": "world",
               "perceptual": "labeller", "model": B.portable(model), "budget": _plain(budget),
               "steps": dict(pack.metrics().get("steps") or {})}
    characters = Path(characters) if characters and Path(characters).is_dir() else None
    t_all = time.perf_counter()
    rebuilt = set()
    for i, step in enumerate([s for s in STEPS if s in steps], 1):
        stale = [d for d in DEPENDS.get(step, ()) if d in rebuilt]
        if not force and not stale and step_done(pack, metrics, step, budget):
            log(f"[world-pack] {i}/{len(steps)} {step}: built earlier with these settings, skipped (--force rebuilds)")
            continue
        log(f"[world-pack] {i}/{len(steps)} {step} ..." + (f" (rebuilt input: {', '.join(stale)})" if stale else ""))
        rebuilt.add(step)
        t0 = time.perf_counter()
        if step == "directions":
            res = step_directions(G, pack, source, budget, model, command, log)
        elif step in ("classifier", "localiser"):
            res = _copy_component(pack, source, step)
        elif step == "zcodes":
            res = step_zcodes(G, pack, budget, d_path, model, command, log)
        elif step == "encoder":
            res = step_encoder(G, pack, budget, model, command, log)
        elif step == "alignment":
            res = step_alignment(G, pack, budget, command)
        elif step == "recipes":
            res = step_recipes(G, pack, budget, command, log)
        else:
            res = step_banks(G, pack, budget, characters, log)
        res.update(seconds=round(time.perf_counter() - t0, 1), budget=_plain(budget), command=command,
                   threads=torch.get_num_threads())
        metrics["steps"][step] = res
        log(f"[world-pack] {i}/{len(steps)} {step}: done in {res['seconds']:.1f}s")
        write(pack, metrics, log=lambda *_: None)               # resumable: the manifest after every step
    metrics["last_run_seconds"] = round(time.perf_counter() - t_all, 1)
    metrics["total_seconds"] = round(sum(r.get("seconds", 0) for r in metrics["steps"].values()), 1)
    metrics["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return write(pack, metrics, log)


def write(pack: Pack, metrics: dict, log=print) -> Pack:
    """pack.json, metrics.json and the generic README (:func:`facegen.packs.build.write_pack`), then this
    builder's section: every step's budget, time and where its parts came from."""
    B.write_pack(pack, metrics["command"], metrics, log)
    (pack.root / "README.md").write_text(B.readme(pack, metrics) + steps_section(metrics))
    return pack


def steps_section(metrics: dict) -> str:
    rows = []
    for step in STEPS:
        r = metrics["steps"].get(step)
        if r is None:
            rows.append(f"| {step} | not built | | |")
            continue
        what = (f"copied from `{r['copied_from']}`" if "copied_from" in r else
                ", ".join(f"{k} {v}" for k, v in r.items() if k in ("n_used", "final_hit_mean", "psnr", "attr_mae",
                                                                    "n_detected", "faces", "psnr_refined_mean",
                                                                    "classes_met")
                          and not isinstance(v, list)) or "")
        if "classes" in r:
            what = f"{len(r['classes'])} classes, " + what
        rows.append(f"| {step} | {r['budget']['name']} | {r['seconds']:.1f} | {what} |")
    return f"""
## Face-world steps (`python -m facegen world-pack build`)

Built for a face-world generator by one command (`facegen/world/pack_build.py`); a rerun of it skips the
steps already built with the same settings whose inputs were not rebuilt (`--force` rebuilds). Budget `quick`
is a smoke test: its parts work, their quality is not the generator's. The fine-tuned sibling (`mini-glasses`)
is not part of it.

| step | budget | seconds | result |
|---|---|---|---|
{chr(10).join(rows)}
"""


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def cli_main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m facegen world-pack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build a face-world generator's full pack (mini's components)")
    b.add_argument("--model", required=True, help="a face-world generator folder with discriminator.safetensors")
    b.add_argument("--out", required=True, help="the pack folder, e.g. assets/packs/mini-v2")
    b.add_argument("--budget", default="full", choices=sorted(BUDGETS))
    b.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one budget setting, e.g. --set zcode_steps=2 --set classes=glasses,old")
    b.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset, in build order")
    b.add_argument("--force", action="store_true", help="rebuild steps already built with this budget")
    b.add_argument("--name", default=None, help="the pack's title (default: the --out folder's name)")
    b.add_argument("--source-pack", default=str(SOURCE_PACK), help="where the classifier and localiser are copied from")
    b.add_argument("--characters", default=str(CHARACTERS), help="world-character renders for the bank "
                   "(rendered afresh when the folder is absent)")
    b.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, a.threads))
    steps = [s.strip() for s in a.steps.split(",") if s.strip()]
    command = B.portable_command(COMMAND, argv[1:])
    pack = build_world_pack(a.model, a.out, with_overrides(BUDGETS[a.budget], a.set), a.source_pack, a.characters, steps, a.force,
                            a.name, command, log=lambda m: print(m, flush=True))
    print(json.dumps({"out": str(pack.root), "fingerprint": pack.fingerprint,
                      "components": sorted(pack.components), "metrics": str(pack.root / "metrics.json")}))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))

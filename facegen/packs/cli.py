"""``python -m facegen pack ...``: build, inspect, push and import feature packs.

    pack build --model M --labeller L --out DIR [--n 3000] [--encoder] [--name NAME]
    pack info DIR|hf://OWNER/REPO[@REV] [--json]
    pack push DIR OWNER/REPO [--private]
    pack import-directions --format interfacegan|seeprettyface|e4e-interfacegan|e4e-ganspace FILES... --model M --out DIR
    pack import-encoder --format e4e FILE --model M --out DIR [--input-size 256] [--replace]

``build`` also runs data-parallel: ``torchrun --nproc_per_node=K -m facegen pack build ... --samples N``
(see :mod:`facegen.packs.build`; torchrun's parser rejects ``--n`` as ambiguous, so use ``--samples``). ``push`` needs a Hugging Face token (``HF_TOKEN`` or ``hf auth login``)
and a connection; it checks both before anything is sent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from facegen.engine.errors import InputError, ModelNotFoundError, OfflineError


def _model_name(model: str) -> str:
    """A pack title for a model: its registry name, else the folder (or the file's folder) name."""
    p = Path(model)
    if not p.exists():
        return p.name or str(model)
    return p.parent.name if p.is_file() else p.name


def _load_G(model: str, device=None):
    from facegen.engine.loaders import load_generator
    G = load_generator(model, device=device)
    G.eval()
    return G


# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------


def cmd_build(args, argv) -> int:
    import torch
    from facegen.labels.base import load_labeller
    from facegen.packs import build as B
    rank, world, device = B.init_distributed()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        prefix = (f"torchrun --nproc_per_node={world} -m facegen pack" if world > 1 else "python -m facegen pack")
        command = B.portable_command(prefix, argv)
        G = _load_G(args.model, device)
        labeller = load_labeller(args.labeller)
        steps = [s.strip() for s in args.steps.split(",") if s.strip()]
        if args.encoder and "encoder" not in steps:
            steps.append("encoder")
        attrs = [a.strip() for a in args.attributes.split(",") if a.strip()] if args.attributes else None
        log = (lambda s: print(s, flush=True)) if rank == 0 else None
        pack = B.build_pack(G, labeller, args.out, args.name or _model_name(args.model), n=args.n, steps=steps,
                            command=command, model=B.portable(args.model), perceptual=args.perceptual,
                            seed=args.seed, align_n=args.align_n, encoder_minutes=args.encoder_minutes, log=log,
                            attributes=attrs, psi=args.psi, min_validity=args.min_validity,
                            mixed=not args.no_bands, batch=args.batch)
        if pack is not None:
            print(json.dumps({"out": B.portable(args.out), "fingerprint": pack.fingerprint,
                              "components": sorted(pack.components)}))
    finally:
        B.finish_distributed()
    return 0


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------


def pack_info(source: str) -> dict:
    """The manifest summary of a pack folder or Hub reference: fingerprint, labeller, components with
    sizes, metrics."""
    from facegen.packs.build import component_sizes
    from facegen.packs.pack import load_pack
    pack = load_pack(source)
    sizes = component_sizes(pack)
    return {"name": pack.name, "generator": pack.manifest["generator"], "fingerprint": pack.fingerprint,
            "labeller": pack.labeller, "perceptual": pack.perceptual,
            "components": {c: {"value": v, "bytes": sizes.get(c), "present": pack.has(c)}
                           for c, v in pack.components.items()},
            "provenance": pack.manifest.get("provenance", {}), "metrics": pack.metrics()}


def format_info(info: dict) -> str:
    from facegen.packs.build import human
    g = info["generator"]
    lines = [f"pack       {info['name']}",
             f"generator  {info['fingerprint']} ({g.get('name') or '?'}, {g.get('resolution')} px, "
             f"{g.get('num_ws')} layers, w_dim {g.get('w_dim')})",
             f"labeller   {info['labeller'] or 'none'}; perceptual {info['perceptual']}",
             "components:"]
    for c, d in info["components"].items():
        v = d["value"] if isinstance(d["value"], str) else json.dumps(d["value"])
        lines.append(f"  {c:<14} {v:<40} {human(d['bytes']):>9}" + ("" if d["present"] else "  (missing)"))
    if not info["components"]:
        lines.append("  (none)")
    m = info["metrics"]
    if info["provenance"].get("command"):
        lines.append(f"command    {info['provenance']['command']}")
    dirs = m.get("steps", {}).get("directions", {})
    if dirs.get("attributes"):
        lines.append("directions (held-out accuracy): " + ", ".join(
            f"{r['attribute']} {r['heldout_accuracy']:.2f}" for r in dirs["attributes"]))
    for s, r in m.get("steps", {}).items():
        if "skipped" in r:
            lines.append(f"skipped    {s}: {r['skipped']}")
    if "total_seconds" in m:
        lines.append(f"built in   {m['total_seconds']:.0f} s on {m.get('processes', 1)} process(es)")
    return "\n".join(lines)


def cmd_info(args, argv) -> int:
    info = pack_info(args.source)
    print(json.dumps(info, indent=1) if args.json else format_info(info))
    return 0


# ---------------------------------------------------------------------------
# push
# ---------------------------------------------------------------------------


def _offline() -> bool:
    from huggingface_hub import constants
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(constants.HF_HUB_OFFLINE)


def push_pack(folder: str, repo_id: str, private: bool = False, token=None) -> str:
    """Upload a pack folder to a Hub model repo with ``HfApi.upload_folder``. Refuses, before any request,
    a folder that is not a valid pack, a missing token, and offline mode."""
    from huggingface_hub import HfApi, get_token
    from facegen.engine.hub import parse_reference
    from facegen.packs.pack import Pack
    pack = Pack.load(folder)
    missing = [c for c in pack.components if not pack.has(c)]
    if missing:
        raise InputError(f"The pack in {folder} names components that are not there ({', '.join(missing)}); "
                         "rebuild it before pushing.")
    try:
        ref = parse_reference(repo_id)
    except Exception:          # noqa: BLE001 -- any parse failure is a bad id
        ref = None
    if ref is None or ref.filename:
        raise InputError(f"'{repo_id}' is not a Hub repo id: use OWNER/NAME.")
    token = token or get_token()
    if not token:
        raise InputError("Pushing a pack needs a Hugging Face token with write access: set HF_TOKEN or run "
                         "`hf auth login`, then run the command again.")
    if _offline():
        raise OfflineError("Cannot push while offline (HF_HUB_OFFLINE is set): unset HF_HUB_OFFLINE on a "
                           "connected machine and run the command again.")
    api = HfApi(token=token)
    try:
        api.create_repo(ref.repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=ref.repo_id, folder_path=str(pack.root), repo_type="model",
                                 commit_message=f"facegen pack '{pack.name}' for generator {pack.fingerprint}")
    except Exception as e:     # noqa: BLE001 -- network / auth errors become one typed, readable error
        raise ModelNotFoundError(f"Could not push to {ref.repo_id}: {type(e).__name__}: {e}") from None
    return str(info)


def cmd_push(args, argv) -> int:
    url = push_pack(args.folder, args.repo_id, private=args.private)
    print(json.dumps({"pushed": args.repo_id, "commit": url, "load_with": f"hf://{args.repo_id}"}))
    return 0


# ---------------------------------------------------------------------------
# import-directions
# ---------------------------------------------------------------------------


def cmd_import(args, argv) -> int:
    from facegen.packs import build as B
    from facegen.packs.importers import import_directions, parse_layers, readme
    command = B.portable_command("python -m facegen pack", argv)
    G = _load_G(args.model)
    comps = None
    if args.components:
        from facegen.engine.latents import parse_seeds
        comps = parse_seeds(args.components, max_count=4096)
    pack = B.open_pack(args.out, G, args.name or _model_name(args.model), None, "pixels")
    if pack.has("directions") and not args.replace:
        raise InputError(f"The pack in {B.portable(args.out)} already has directions "
                         f"({pack.get('directions')}); pass --replace to overwrite them.")
    ds = import_directions(args.format, args.files, G, n_samples=args.n, components=comps,
                           layers=parse_layers(args.layers, G.num_ws), model=B.portable(args.model),
                           log=lambda s: print(s, flush=True))
    ds.meta["command"] = command
    path = ds.save(pack.root / B.DIRECTIONS_FILE)
    (path.parent / "README.md").write_text(readme(ds, command))
    pack.manifest["components"]["directions"] = B.DIRECTIONS_FILE
    pack.manifest.setdefault("provenance", {})["upstream"] = ds.meta["source"]["upstream"]
    metrics = {"command": command, "generator": pack.manifest["generator"], "labeller": pack.labeller,
               "processes": 1, "steps": {"directions": {
                   "imported": ds.meta["source"], "attributes": ds.summary(), "n_samples": ds.meta["n_samples"],
                   "n_used": ds.meta["n_used"], "seconds": ds.meta["fit_time_s"]}}}
    B.write_pack(pack, command, metrics, log=lambda s: print(s, flush=True))
    print(json.dumps({"out": B.portable(args.out), "fingerprint": G.fingerprint, "directions": ds.names}))
    return 0


# ---------------------------------------------------------------------------
# import-encoder
# ---------------------------------------------------------------------------

ENCODER_TOLERANCE = 1e-4      # largest parameter difference between G and the checkpoint's decoder


def cmd_import_encoder(args, argv) -> int:
    """A published encoder (e4e) -> the pack's ``encoder`` component for generator --model. The checkpoint's
    decoder must be --model (its parameters within ENCODER_TOLERANCE): e4e's latents mean nothing elsewhere."""
    from facegen.engine.hub import sha256_file
    from facegen.engine.rosinality import read_checkpoint
    from facegen.packs import build as B
    from facegen.packs import e4e
    from facegen.packs.encoder import EncoderMismatchError, check_pair
    from facegen.packs.pack import MANIFEST, Pack
    command = B.portable_command("python -m facegen pack", argv)
    src = Path(args.file)
    if not src.is_file():
        raise InputError(f"No encoder checkpoint at {args.file}.")
    if not 16 <= args.input_size <= 1024:
        raise InputError(f"--input-size must be between 16 and 1024 (got {args.input_size}).")
    G = _load_G(args.model)
    existing = (Path(args.out) / MANIFEST).is_file()
    perceptual = Pack.load(args.out).perceptual if existing else B.default_perceptual(None, G)
    pack = B.open_pack(args.out, G, args.name or _model_name(args.model), None, perceptual)
    if pack.has("encoder") and not args.replace:
        raise InputError(f"The pack in {B.portable(args.out)} already has an encoder ({pack.get('encoder')}); "
                         "pass --replace to overwrite it.")
    ckpt = read_checkpoint(src)
    E = e4e.from_checkpoint(ckpt, input_size=args.input_size)
    check_pair(E, G)
    diff = e4e.decoder_difference(ckpt, G, str(src))
    if diff is not None and not diff <= ENCODER_TOLERANCE:
        raise EncoderMismatchError(
            f"{src.name} was trained for its own decoder, and --model {args.model} is another generator (largest "
            f"parameter difference {diff:.3g}). Use the decoder itself: --model {B.portable(str(src))} loads it.")
    sha = sha256_file(src)
    E.meta.update(generator_fingerprint=G.fingerprint, generator=pack.name, sha256=sha, command=command,
                  decoder_check="no decoder in the checkpoint" if diff is None else f"max parameter difference {diff:.3g}")
    E.save_pretrained(pack.root / B.ENCODER_DIR)
    pack.manifest["components"]["encoder"] = B.ENCODER_DIR
    metrics = pack.metrics() if existing else {"generator": pack.manifest["generator"], "processes": 1}
    metrics["command"] = command
    metrics.setdefault("steps", {})["encoder"] = {
        "imported": {"format": "e4e", "file": src.name, "sha256": sha, "input_size": args.input_size,
                     "num_ws": E.num_ws, "w_dim": E.w_dim, "units": len(E.body)},
        "decoder_max_parameter_difference": diff, "command": command}
    B.write_pack(pack, command, metrics, log=lambda s: print(s, flush=True))
    print(json.dumps({"out": B.portable(args.out), "fingerprint": G.fingerprint, "encoder": B.ENCODER_DIR,
                      "format": "e4e", "decoder_max_parameter_difference": diff}))
    return 0


# ---------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    from facegen.packs.build import DEFAULT_STEPS, STEPS
    from facegen.packs.importers import FORMATS
    p = argparse.ArgumentParser(prog="python -m facegen pack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build a pack for a generator (directions, class sampler, alignment, encoder)")
    b.add_argument("--model", required=True, help="registry name, folder, pickle or hf:// reference")
    b.add_argument("--labeller", default="world", help="world, photo or module:factory")
    b.add_argument("--out", required=True, help="the pack folder (new, empty, or this generator's pack)")
    b.add_argument("--name", default=None, help="the pack's title (default: the model's name)")
    b.add_argument("--n", "--samples", dest="n", type=int, default=3000,
                   help="samples labelled for the directions (and class sampler); under torchrun write --samples "
                   "(torchrun's own parser reads --n as an ambiguous abbreviation)")
    b.add_argument("--encoder", action="store_true", help="also train an encoder (--encoder-minutes)")
    b.add_argument("--encoder-minutes", type=float, default=10.0)
    b.add_argument("--steps", default=",".join(DEFAULT_STEPS), help=f"comma-separated subset of {', '.join(STEPS)}")
    b.add_argument("--attributes", default="", help="directions to fit (default: every continuous and bool "
                   "attribute of the labeller)")
    b.add_argument("--perceptual", default=None, choices=["labeller", "discriminator", "pixels"],
                   help="the encoder's refinement loss (default: labeller if differentiable, else D, else pixels)")
    b.add_argument("--psi", type=float, default=1.0)
    b.add_argument("--min-validity", type=float, default=0.5, help="drop samples the labeller scores as no face "
                   "(0 keeps all: e.g. for untrained generators)")
    b.add_argument("--no-bands", action="store_true", help="skip the per-band (w+) direction fits")
    b.add_argument("--batch", type=int, default=100, help="render + label batch (the unit of data parallelism)")
    b.add_argument("--align-n", type=int, default=64, help="samples for the alignment template")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    i = sub.add_parser("info", help="print a pack's manifest summary")
    i.add_argument("source", help="pack folder or hf://OWNER/REPO[@REVISION]")
    i.add_argument("--json", action="store_true")
    u = sub.add_parser("push", help="upload a pack folder to a Hugging Face model repo")
    u.add_argument("folder")
    u.add_argument("repo_id")
    u.add_argument("--private", action="store_true")
    m = sub.add_parser("import-directions", help="published directions -> a pack's directions for a generator")
    m.add_argument("--format", required=True, choices=sorted(FORMATS))
    m.add_argument("files", nargs="+")
    m.add_argument("--model", required=True)
    m.add_argument("--out", required=True, help="the pack folder (new, or this generator's pack)")
    m.add_argument("--name", default=None)
    m.add_argument("--components", default="", help="e4e-ganspace: principal components, e.g. '0-9,46'")
    m.add_argument("--layers", default="", help="layers the edits apply to (default: the format's own)")
    m.add_argument("--n", type=int, default=2000, help="samples of w for the step sizes")
    m.add_argument("--replace", action="store_true", help="overwrite the pack's existing directions")
    e = sub.add_parser("import-encoder", help="a published encoder (e4e) -> a pack's encoder for a generator")
    e.add_argument("--format", required=True, choices=["e4e"])
    e.add_argument("file", help="the checkpoint, e.g. e4e_ffhq_encode.pt (read with torch.load(weights_only=True))")
    e.add_argument("--model", required=True, help="the generator: the checkpoint's decoder (or the file itself)")
    e.add_argument("--out", required=True, help="the pack folder (new, or this generator's pack)")
    e.add_argument("--name", default=None)
    e.add_argument("--input-size", type=int, default=256, help="the encoder's input side (e4e: 256)")
    e.add_argument("--replace", action="store_true", help="overwrite the pack's existing encoder")
    return p


COMMANDS = {"build": cmd_build, "info": cmd_info, "push": cmd_push, "import-directions": cmd_import,
            "import-encoder": cmd_import_encoder}


def cli_main(argv: list) -> int:
    argv = list(argv)
    args = parser().parse_args(argv)
    return COMMANDS[args.cmd](args, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli_main(sys.argv[1:]))

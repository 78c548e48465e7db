"""``python -m facegen faceswap``: swap a face into a video; measure a generator's alignment template.

    python -m facegen faceswap swap --model mini --face "@Imani Brooks" --video clip.mp4 --seconds 300 --out swap.mp4
    python -m facegen faceswap alignment --model mini --detector localiser --pack assets/packs/mini

``--face`` takes a seed ('7') or a bank face of the generator's pack ('@Name'); without it identity A is
the generator's default (:func:`~facegen.features.faceswap.pipeline.default_identity`). ``alignment``
measures the template on the generator's own samples (:func:`facegen.packs.alignment.
build_alignment_template`) with dlib or the pack's localiser and writes it into the pack (``--pack``)
or to a file (``--out``). The face world's sample videos and localiser are made by
``python -m facegen faceswap-world`` (:mod:`facegen.world.videos`).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from facegen.engine.errors import InputError
from facegen.features.faceswap.blend import COLOR_MODES, REGIONS
from facegen.features.faceswap.pipeline import default_identity, swap_video
from facegen.features.faceswap.tracking import DETECTORS, pack_localiser


def resolve_identity(G, pack, face, psi: float) -> np.ndarray:
    """'7' (a seed at `psi`) or '@Name' (a bank face of the pack) -> w+ [num_ws, w_dim]."""
    from facegen.engine.latents import seeds_to_ws
    from facegen.packs.bank import banks_for
    face = str(face or default_identity(G, pack)[0]).strip()
    if face.startswith("@"):
        name = face[1:].strip().lower()
        for bank in banks_for(G, pack=pack):
            for i, n in enumerate(bank.names):
                if n.lower() == name:
                    return bank.ws[i].astype(np.float32)
        raise InputError(f"No bank face called '{face[1:]}' for this generator.")
    if not face.isdigit():
        raise InputError(f"--face must be a seed ('7') or a bank face ('@Name'), not '{face}'.")
    return seeds_to_ws(G, [int(face)], psi=psi).cpu().numpy()[0]


def cli_main(argv: list) -> int:
    p = argparse.ArgumentParser(prog="python -m facegen faceswap", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sw = sub.add_parser("swap", help="put a face into a video")
    sw.add_argument("--model", default="mini")
    sw.add_argument("--face", default=None, help="a seed ('7') or a bank face ('@Name'); default: the model's")
    sw.add_argument("--psi", type=float, default=0.7)
    sw.add_argument("--video", required=True)
    sw.add_argument("--seconds", type=float, default=300, help="training time budget")
    sw.add_argument("--color", default="none", choices=COLOR_MODES)
    sw.add_argument("--region", default="head", choices=REGIONS)
    sw.add_argument("--detector", default="auto", choices=DETECTORS)
    sw.add_argument("--threads", type=int, default=1)
    sw.add_argument("--out", required=True)
    al = sub.add_parser("alignment", help="measure a generator's alignment template on its own samples")
    al.add_argument("--model", default="mini")
    al.add_argument("--n", type=int, default=64)
    al.add_argument("--seed", type=int, default=0)
    al.add_argument("--detector", default="dlib", choices=("dlib", "localiser"),
                    help="dlib, or the landmark localiser of the model's pack")
    al.add_argument("--pack", default=None, help="write alignment.json into this pack folder (and its manifest)")
    al.add_argument("--out", default=None, help="...or write the JSON here")
    al.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    from facegen.engine.loaders import load_generator
    from facegen.packs.pack import find_pack, load_pack
    torch.set_num_threads(a.threads)
    G = load_generator(a.model)
    if a.cmd == "swap":
        pack = find_pack(G)
        ws = resolve_identity(G, pack, a.face, a.psi)
        res = swap_video(G, pack, ws, a.video, a.out, a.seconds, color=a.color, region=a.region, detector=a.detector)
        print(json.dumps({"path": res["path"], "audio": res["audio"], "notes": res["notes"],
                          "timings": {k: round(v, 1) for k, v in res["timings"].items()}}))
        return 0
    from facegen.packs.alignment import add_to_pack, build_alignment_template, save_alignment
    pack = load_pack(a.pack, G) if a.pack else find_pack(G)
    detector = None
    if a.detector == "localiser":
        localiser = pack_localiser(pack)
        if localiser is None:
            raise InputError("--detector localiser needs a pack with a landmark localiser for this model.")
        detector = localiser.detect
    d = build_alignment_template(G, a.n, a.seed, detector=detector, detector_name=a.detector)
    d["command"] = (f"python -m facegen faceswap alignment --model {a.model} --n {a.n} --seed {a.seed} "
                    f"--detector {a.detector}" + (f" --pack {a.pack}" if a.pack else ""))
    if a.pack:
        path = add_to_pack(pack, d)
    elif a.out:
        path = save_alignment(d, a.out)
    else:
        raise InputError("Say where to write the template: --pack PACK_FOLDER or --out FILE.json.")
    print(json.dumps({"path": str(path), **{k: d[k] for k in ("source", "note", "template")}}))
    return 0

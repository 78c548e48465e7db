"""The face world's named characters: fictional people rendered with chosen attributes, for latent banks.

``mini``'s shipped bank (``assets/packs/mini/banks/mini-world-characters.npz``, see ``assets/banks/README.md``)
is built from these renders::

    python -m facegen bank world-characters assets/banks/world-characters --size 128
    python -m facegen bank build assets/banks/world-characters assets/packs/mini/banks/mini-world-characters.npz ...

This module is the ``python -m facegen bank`` command: :func:`facegen.features.banks.cli_main` (build, push,
show) plus ``world-characters``, which only the face world can render.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from facegen.features.banks import cli_main as bank_cli_main, name_from_file
from facegen.world.attributes import FaceAttributes, labels_dict
from facegen.world.render import render

#: A dozen named characters of the face world (fictional people), rendered with chosen attributes.
WORLD_CHARACTERS = {
    "ada_quill": dict(gender=0.15, age=0.25, skin_tone=0.15, hair_color="red", hair_length=0.8,
                      hair_style="curly", eye_color="green", smile=0.7, bg_hue=0.55, bg_value=0.8),
    "bruno_castell": dict(gender=0.9, age=0.55, skin_tone=0.45, hair_color="black", hair_length=0.1,
                          hair_style="straight", beard=True, smile=0.2, bg_hue=0.08, bg_value=0.6),
    "chioma_reyes": dict(gender=0.1, age=0.2, skin_tone=0.9, hair_color="black", hair_length=0.55,
                         hair_style="curly", eye_color="brown", smile=0.95, bg_hue=0.15, bg_value=0.85),
    "dmitri_holm": dict(gender=0.95, age=0.85, skin_tone=0.1, hair_color="blonde", hair_length=0.0,
                        hair_style="bald", glasses=True, smile=0.4, bg_hue=0.62, bg_value=0.35),
    "elena_marsh": dict(gender=0.2, age=0.6, skin_tone=0.3, hair_color="auburn", hair_length=0.45,
                        hair_style="fringe", glasses=True, eye_color="blue", smile=0.5, bg_hue=0.8, bg_value=0.7),
    "farid_okoye": dict(gender=0.8, age=0.3, skin_tone=0.75, hair_color="black", hair_length=0.2,
                        hair_style="curly", beard=True, smile=0.85, bg_hue=0.33, bg_value=0.75),
    "greta_lind": dict(gender=0.05, age=0.1, skin_tone=0.05, hair_color="blonde", hair_length=1.0,
                       hair_style="straight", eye_color="blue", smile=0.3, bg_hue=0.5, bg_value=0.9),
    "hiro_tanabe": dict(gender=0.75, age=0.4, skin_tone=0.35, hair_color="black", hair_length=0.35,
                        hair_style="fringe", smile=0.1, yaw=0.3, bg_hue=0.0, bg_value=0.55),
    "imani_brooks": dict(gender=0.25, age=0.45, skin_tone=0.65, hair_color="brown", hair_length=0.7,
                         hair_style="straight", eye_color="brown", smile=0.6, yaw=-0.3, bg_hue=0.9, bg_value=0.6),
    "jonas_weber": dict(gender=0.85, age=0.7, skin_tone=0.2, hair_color="brown", hair_length=0.25,
                        hair_style="straight", glasses=True, beard=True, eye_color="grey", smile=0.55,
                        bg_hue=0.45, bg_value=0.45),
    "kiri_moana": dict(gender=0.35, age=0.05, skin_tone=0.55, hair_color="black", hair_length=0.9,
                       hair_style="curly", smile=1.0, bg_hue=0.25, bg_value=0.9, light_direction=0.5),
    "lucia_ferro": dict(gender=0.1, age=0.95, skin_tone=0.4, hair_color="brown", hair_length=0.5,
                        hair_style="straight", eye_color="green", smile=0.45, bg_hue=0.7, bg_value=0.3,
                        light_direction=-0.5),
}


def render_world_characters(outdir, size: int = 128) -> list:
    """Render :data:`WORLD_CHARACTERS` to PNGs (+ names.json, attributes.json) in `outdir`."""
    from PIL import Image
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    names, attrs, files = {}, {}, []
    for key, kw in WORLD_CHARACTERS.items():
        a = FaceAttributes(**kw)
        r = render(a, size=size)
        f = out / f"{key}.png"
        Image.fromarray(r.image).save(f)
        names[f.name] = name_from_file(f)
        attrs[f.name] = labels_dict(a)
        files.append(f)
    (out / "names.json").write_text(json.dumps(names, indent=1) + "\n")
    (out / "attributes.json").write_text(json.dumps(attrs, indent=1) + "\n")
    return files


def _add_arguments(p) -> None:
    p.add_argument("outdir")
    p.add_argument("--size", type=int, default=128)


def _run(args) -> int:
    files = render_world_characters(args.outdir, size=args.size)
    print(json.dumps({"outdir": args.outdir, "files": [f.name for f in files]}))
    return 0


def cli_main(argv) -> int:
    """``python -m facegen bank ...`` with the face world's ``world-characters DIR [--size 128]``."""
    return bank_cli_main(argv, extra={"world-characters": (
        "render the shipped face-world characters to a folder", _add_arguments, _run)})


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))

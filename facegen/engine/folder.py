"""The Hub-native folder format: ``config.json`` + ``model.safetensors`` (as in ``diffusers``).

    config.json          {"_class_name": "Generator", "_facegen_version": ..., "format_version": 1,
                          "architecture": "stylegan2", init kwargs..., "meta": {...}}
    model.safetensors    the state dict (official parameter names), float32

Written and read here for every facegen network (generator, encoder, predictor, classifiers); building a
generator from a folder is :func:`facegen.engine.loaders.load_folder`'s job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

from facegen.engine.errors import ModelNotFoundError, UnsupportedModelError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


def save_pretrained(G, folder, **meta) -> Path:
    """Write config.json + model.safetensors; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from facegen.engine import __version__
    config = {"_class_name": "Generator", "_facegen_version": __version__, "format_version": FORMAT_VERSION,
              "architecture": getattr(G, "architecture", "stylegan2"), **G.init_kwargs,
              "num_ws": G.num_ws, "fingerprint": G.fingerprint,
              "meta": {**{k: v for k, v in G.meta.items() if _jsonable(v)}, **meta}}
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in G.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "fingerprint": G.fingerprint})
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def write_folder(folder, class_name: str, state_dict: dict, config: dict, format_version: int = FORMAT_VERSION,
                 metadata: Optional[dict] = None) -> Path:
    """Write a facegen model folder that :func:`read_folder` reads: ``config.json`` (class name, facegen
    version, format version, then `config`) + ``model.safetensors`` (floating tensors as float32).

    Shared by the encoder, the world predictor and the customisation networks."""
    from facegen.engine import __version__
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().contiguous()
          for k, v in state_dict.items()}
    save_file(sd, str(folder / WEIGHTS_NAME), metadata={"format": "pt", **(metadata or {})})
    full = {"_class_name": class_name, "_facegen_version": __version__, "format_version": format_version, **config}
    (folder / CONFIG_NAME).write_text(json.dumps(full, indent=1) + "\n")
    return folder


def read_folder(folder, class_name: str, what: str, rebuild: str, max_version: int = FORMAT_VERSION) -> tuple:
    """Read a facegen model folder (config.json + model.safetensors) -> (config dict, state dict).

    Shared by the generator, the encoder and the world predictor; every failure is a typed error that
    names the file and, for a missing folder, the command (`rebuild`) that makes one.
    """
    folder = Path(folder)
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise ModelNotFoundError(f"No {what} in {folder}: {p.name} is missing (need {CONFIG_NAME} and "
                                     f"{WEIGHTS_NAME}; make one with `{rebuild}`).")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise UnsupportedModelError(f"{cfg_path} is not valid JSON ({e}).") from None
    if config.get("_class_name") != class_name:
        raise UnsupportedModelError(f"{cfg_path} describes a {config.get('_class_name')!r}, not a {class_name}.")
    if int(config.get("format_version", 0)) > max_version:
        raise UnsupportedModelError(f"{folder} uses {what} format {config['format_version']}; this facegen reads "
                                    f"up to {max_version}. Upgrade facegen.")
    try:
        state = load_file(str(w_path))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise UnsupportedModelError(f"{w_path} is not a readable safetensors file ({e}).") from None
    return config, state

"""One entry point for every generator source: ``load_generator(source)``.

``source`` may be

* a :class:`~facegen.engine.networks.Generator` (returned as is);
* a registry name such as ``"mini"`` (see :mod:`facegen.engine.registry`);
* a Hub-native folder (``config.json`` + ``model.safetensors``);
* a StyleGAN2-ADA / StyleGAN3-codebase PyTorch network pickle (``G_ema`` is used; StyleGAN3 T and R
  generators build :class:`~facegen.engine.stylegan3.StyleGAN3Generator`);
* an original TensorFlow StyleGAN2 pickle (tuple ``(G, D, Gs)``; ``Gs`` is converted,
  without TensorFlow);
* a rosinality/stylegan2-pytorch checkpoint (``.pt``/``.pth``, e.g. ``stylegan2-ffhq-config-f.pt``; also the
  decoder inside a pSp / e4e checkpoint), read with ``torch.load(weights_only=True)``
  (:mod:`facegen.engine.rosinality`);
* a Hub reference ``hf://OWNER/REPO[/PATH/IN/REPO][@REVISION]`` or a bare ``OWNER/REPO``.

Pickles are read with :mod:`facegen.engine.safe_pickle`: nothing in them is executed.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from facegen.engine import hub, registry
from facegen.engine.errors import ModelNotFoundError, UnsupportedModelError
from facegen.engine.folder import CONFIG_NAME, WEIGHTS_NAME, read_folder
from facegen.engine.networks import Generator
from facegen.engine.stylegan3 import ARCHITECTURES as SG3_ARCHITECTURES, StyleGAN3Generator
from facegen.engine.stylegan3 import from_config as stylegan3_from_config
from facegen.engine.safe_pickle import PersistentObject, TFNetwork, safe_load

# ---------------------------------------------------------------------------
# StyleGAN2-ADA / StyleGAN3-codebase PyTorch pickles
# ---------------------------------------------------------------------------

_SG3_SYNTHESIS_KEYS = ("input", "L0_")


def generator_from_ada_pickle(obj, source: str = "pickle") -> Generator:
    """Rebuild G_ema from the object graph of a StyleGAN2-ADA training snapshot."""
    if isinstance(obj, dict):
        for key in ("G_ema", "G"):
            if isinstance(obj.get(key), PersistentObject):
                net = obj[key]
                break
        else:
            raise UnsupportedModelError(
                f"{source} is a dict with keys {sorted(map(str, obj))} but no generator ('G_ema' or 'G').")
    elif isinstance(obj, PersistentObject):
        net = obj
    else:
        raise UnsupportedModelError(f"{source} holds a {type(obj).__name__}, not a StyleGAN network snapshot.")
    if net.class_name != "Generator":
        raise UnsupportedModelError(f"{source}: expected a Generator, found a {net.class_name}.")
    modules = net.state.get("_modules") or {}
    synth = modules.get("synthesis")
    synth_children = list(((synth.state.get("_modules") or {}) if isinstance(synth, PersistentObject) else {}))
    sg3 = any(name.startswith(_SG3_SYNTHESIS_KEYS) for name in synth_children)
    kwargs = dict(net.state.get("_init_kwargs") or {})
    args = tuple(net.state.get("_init_args") or ())
    if args:
        names = ["z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"]
        kwargs.update(zip(names, args))
    kwargs = _plain(kwargs)
    what = "StyleGAN3" if sg3 else "StyleGAN2"
    try:
        G = StyleGAN3Generator(**kwargs) if sg3 else Generator(**kwargs)
    except (TypeError, ValueError) as e:
        raise UnsupportedModelError(f"{source}: {what} generator kwargs not understood ({e}): {kwargs}") from None
    if sg3:
        stored = list((synth.state.get("layer_names") or synth_children[1:]))
        if stored != G.synthesis.layer_names:
            raise UnsupportedModelError(f"{source}: a StyleGAN3 generator whose layers {stored[:3]}... differ from "
                                        f"the ones its kwargs build ({G.synthesis.layer_names[:3]}...).")
    state = {k: v.detach() for k, v in net.tensors().items()}
    _load_state(G, state, source)
    G.meta.update(format="stylegan3-pkl" if sg3 else "stylegan2-ada-pkl", source=source)
    return G


def _plain(x):
    """EasyDicts and OrderedDicts -> plain dicts (so kwargs serialise to config.json)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, np.generic):
        return x.item()
    return x


def _load_state(G: Generator, state: dict, source: str):
    own = G.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise UnsupportedModelError(
            f"{source}: weights do not match a {'StyleGAN3' if isinstance(G, StyleGAN3Generator) else 'StyleGAN2'} "
            "generator of this configuration "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}).")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise UnsupportedModelError(f"{source}: tensor {k} has shape {list(v.shape)}, expected {list(own[k].shape)}.")
    G.load_state_dict({k: torch.as_tensor(v, dtype=own[k].dtype) for k, v in state.items()})


# ---------------------------------------------------------------------------
# Original TensorFlow StyleGAN2 pickles (Gs of dnnlib.tflib.network.Network)
# ---------------------------------------------------------------------------

def _tf_kwargs(net: TFNetwork) -> dict:
    """Generator kwargs from TF static kwargs, with the TF build functions' defaults."""
    s = net.static_kwargs
    for comp in net.components.values():
        for k, v in comp.static_kwargs.items():
            s.setdefault(k, v)
    if s.get("fmap_decay", 1.0) != 1.0 or s.get("fmap_min", 1) != 1:
        raise UnsupportedModelError("TF generator uses fmap_decay/fmap_min other than 1; not supported.")
    if s.get("structure", "auto") not in ("auto", "fixed"):
        raise UnsupportedModelError("progressive-growing TF structure is not supported.")
    w_dim = s.get("dlatent_size", 512)
    return dict(
        z_dim=s.get("latent_size", 512), c_dim=s.get("label_size", 0), w_dim=w_dim,
        img_resolution=s.get("resolution", 1024), img_channels=s.get("num_channels", 3),
        mapping_kwargs=dict(num_layers=s.get("mapping_layers", 8), embed_features=s.get("label_fmaps", None),
                            layer_features=s.get("mapping_fmaps", None),
                            activation=s.get("mapping_nonlinearity", "lrelu"),
                            lr_multiplier=s.get("mapping_lrmul", 0.01),
                            w_avg_beta=s.get("w_avg_beta", 0.995) or 1.0),
        synthesis_kwargs=dict(channel_base=s.get("fmap_base", 16384) * 2, channel_max=s.get("fmap_max", 512),
                              num_fp16_res=0, conv_clamp=None, architecture=s.get("architecture", "skip"),
                              resample_filter=list(s.get("resample_kernel", [1, 3, 3, 1]))),
    )


def _tf_state_dict(G: Generator, tf: dict) -> dict:
    """Apply the TF -> PyTorch name table (see fixtures/stylegan2-tf-tiny/config.json)."""

    def get(name):
        if name not in tf:
            raise UnsupportedModelError(f"TF pickle lacks variable {name!r}.")
        return np.asarray(tf[name], dtype=np.float32)

    def conv(name, flip=False):
        w = get(name)
        if flip:
            w = w[::-1, ::-1]
        return w.transpose(3, 2, 0, 1)

    def modlayer(prefix, scope, weight_flip=False):
        out = {f"{prefix}.weight": conv(f"{scope}/weight", weight_flip),
               f"{prefix}.bias": get(f"{scope}/bias"),
               f"{prefix}.affine.weight": get(f"{scope}/mod_weight").T,
               f"{prefix}.affine.bias": get(f"{scope}/mod_bias") + 1}
        if f"{scope}/noise_strength" in tf:
            out[f"{prefix}.noise_strength"] = get(f"{scope}/noise_strength")
        return out

    sd = {"mapping.w_avg": get("dlatent_avg")}
    for i in range(G.mapping.num_layers):
        sd[f"mapping.fc{i}.weight"] = get(f"mapping/Dense{i}/weight").T
        sd[f"mapping.fc{i}.bias"] = get(f"mapping/Dense{i}/bias")
    if G.c_dim > 0:
        sd["mapping.embed.weight"] = get("mapping/LabelEmbed/weight").T
        sd["mapping.embed.bias"] = get("mapping/LabelEmbed/bias")
    for res in G.synthesis.block_resolutions:
        r, s = f"synthesis.b{res}", f"synthesis/{res}x{res}"
        block = getattr(G.synthesis, f"b{res}")
        if res == 4:
            sd[f"{r}.const"] = get(f"{s}/Const/const")[0]
            sd.update(modlayer(f"{r}.conv1", f"{s}/Conv"))
            sd[f"{r}.conv1.noise_const"] = get("synthesis/noise0")[0, 0]
        else:
            k = int(np.log2(res))
            sd.update(modlayer(f"{r}.conv0", f"{s}/Conv0_up", weight_flip=True))
            sd.update(modlayer(f"{r}.conv1", f"{s}/Conv1"))
            sd[f"{r}.conv0.noise_const"] = get(f"synthesis/noise{2 * k - 5}")[0, 0]
            sd[f"{r}.conv1.noise_const"] = get(f"synthesis/noise{2 * k - 4}")[0, 0]
            if hasattr(block, "skip"):
                sd[f"{r}.skip.weight"] = conv(f"{s}/Skip/weight", flip=True)
        if hasattr(block, "torgb"):
            sd.update(modlayer(f"{r}.torgb", f"{s}/ToRGB"))
    # Resampling filters are not stored by TF: keep the constructor's buffers.
    for k, v in G.state_dict().items():
        if k.endswith("resample_filter"):
            sd[k] = v.numpy()
    return {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C")) for k, v in sd.items()}


def generator_from_tf_pickle(obj, source: str = "pickle") -> Generator:
    nets = obj if isinstance(obj, tuple) else (obj,)
    gs = [n for n in nets if isinstance(n, TFNetwork)]
    if not gs:
        raise UnsupportedModelError(f"{source} holds no TensorFlow network.")
    gen = next((n for n in gs if n.name == "Gs"), None) or next((n for n in gs if n.build_func_name == "G_main"), None)
    found = ", ".join(f"{n.name} ({n.build_func_name})" for n in gs)
    if gen is None:
        if any(n.build_func_name == "G_style" for n in gs):
            raise UnsupportedModelError(f"{source} is an original StyleGAN (v1) pickle [{found}]; "
                                        "facegen loads StyleGAN2 generators only.")
        raise UnsupportedModelError(f"{source} holds no TF generator (found: {found}).")
    version = gen.state.get("version", 0)
    if version < 4:
        raise UnsupportedModelError(f"{source}: TF network pickle version {version} is too old (need 4).")
    synth = gen.components.get("synthesis")
    synth_kind = synth.build_func_name if synth is not None else "?"
    if synth_kind != "G_synthesis_stylegan2":
        what = "an original StyleGAN (v1)" if synth_kind == "G_synthesis" else f"a '{synth_kind}'"
        raise UnsupportedModelError(f"{source} is {what} TensorFlow generator; facegen loads StyleGAN2 "
                                    "(G_synthesis_stylegan2) generators only.")
    G = Generator(**_tf_kwargs(gen))
    _load_state(G, _tf_state_dict(G, gen.variables()), source)
    G.meta.update(format="stylegan2-tf-pkl", source=source, tf_default_truncation_psi=0.5)
    return G


# ---------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------

TORCH_SUFFIXES = (".pt", ".pth")


def load_file(path: Union[str, Path]) -> Generator:
    """A generator file: a PyTorch checkpoint (``.pt``/``.pth`` or a zip archive, rosinality's layout) or a
    network pickle."""
    path = Path(path)
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    if zipped or path.suffix.lower() in TORCH_SUFFIXES:
        from facegen.engine.rosinality import load_checkpoint
        return load_checkpoint(path)
    return load_pickle(path)


def load_pickle(path: Union[str, Path]) -> Generator:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head[:1] != b"\x80":
                raise UnsupportedModelError(f"{path} is not a Python pickle (it does not start with a pickle header).")
            obj = safe_load(f)
    except (EOFError, ValueError, IndexError, KeyError, TypeError, AttributeError, pickle.UnpicklingError) as e:
        # UnsafePickleError / UnsupportedModelError are FacegenErrors and pass through untouched.
        if isinstance(e, UnsupportedModelError):
            raise
        raise UnsupportedModelError(f"{path} could not be read as a network pickle ({type(e).__name__}: {e}).") from None
    if isinstance(obj, TFNetwork) or (isinstance(obj, tuple) and any(isinstance(o, TFNetwork) for o in obj)):
        return generator_from_tf_pickle(obj, str(path))
    return generator_from_ada_pickle(obj, str(path))


# ---------------------------------------------------------------------------
# Folders, the Hub, the registry
# ---------------------------------------------------------------------------

def load_folder(folder: Path) -> Generator:
    """A Hub-native folder (config.json + model.safetensors) -> Generator."""
    folder = Path(folder)
    config, state = read_folder(folder, "Generator", "facegen model", "python -m facegen convert SRC OUTDIR")
    arch = config.get("architecture", "stylegan2")
    if arch in SG3_ARCHITECTURES:
        try:
            G = stylegan3_from_config(config)
        except (TypeError, ValueError) as e:
            raise UnsupportedModelError(f"{folder / CONFIG_NAME}: a {arch} config that does not build ({e}).") from None
    elif arch != "stylegan2":
        raise UnsupportedModelError(f"{folder / CONFIG_NAME} describes a {arch!r} generator; facegen builds "
                                    f"stylegan2, {', '.join(SG3_ARCHITECTURES)}.")
    else:
        keys = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
        G = Generator(**{k: config[k] for k in keys if k in config})
    _load_state(G, state, str(folder / WEIGHTS_NAME))
    G.meta.update(config.get("meta") or {})
    G.meta.update(format="hub-native", source=str(folder))
    return G


def from_pretrained(source, revision: Optional[str] = None, **hub_kwargs):
    """Load from a local folder or a Hub repo id / reference."""
    folder = Path(os.fspath(source)).expanduser()
    if not folder.is_dir():
        ref = hub.parse_reference(str(source))
        if revision:
            ref.revision = revision
        return load_from_hub(ref, **hub_kwargs)
    return load_folder(folder)


def load_from_hub(ref, **hub_kwargs):
    """hf://OWNER/REPO[/FILE][@REV] -> Generator (Hub-native repo, or a pickle file inside it)."""
    if isinstance(ref, str):
        ref = hub.parse_reference(ref)
    if ref.filename and not ref.filename.endswith((CONFIG_NAME, WEIGHTS_NAME)):
        return load_file(hub.download(ref, ref.filename, **hub_kwargs))
    sub = ref.filename.rsplit("/", 1)[0] + "/" if ref.filename and "/" in ref.filename else ""
    hub.download(ref, sub + CONFIG_NAME, **hub_kwargs)
    folder = hub.download(ref, sub + WEIGHTS_NAME, **hub_kwargs).parent
    G = load_folder(folder)
    G.meta["source"] = str(ref)
    return G


def load_registered(name: str, **hub_kwargs) -> Generator:
    """The generator a registry entry names. Pickles are only opened after the size / sha256 check."""
    e = registry.get(name)
    target = registry.fetch(name, **hub_kwargs)
    G = from_pretrained(target) if e["format"] in registry.FOLDER_FORMATS else load_file(target)
    G.meta.update(name=name, license=e.get("license"), registry_format=e["format"])
    return G


def load_generator(source, device: Optional[Union[str, torch.device]] = None, **hub_kwargs) -> Generator:
    """Load a generator from any supported source (see module doc); returns it in eval mode."""
    if isinstance(source, (Generator, StyleGAN3Generator)):
        G = source
    else:
        source = os.fspath(source)
        path = Path(source).expanduser()
        if path.exists():
            if path.is_dir():
                G = from_pretrained(path)
            elif path.suffix == ".safetensors":
                G = from_pretrained(path.parent)
            elif path.suffix == ".json" and path.name == "config.json":
                G = from_pretrained(path.parent)
            else:
                G = load_file(path)
        elif registry.has(source):
            G = load_registered(source, **hub_kwargs)
        elif hub.is_hub_reference(source):
            G = load_from_hub(source, **hub_kwargs)
        else:
            known = ", ".join(registry.names())
            raise ModelNotFoundError(
                f"No model '{source}': it is not a file or folder, not a registry name ({known}), and not a "
                "Hub reference (hf://OWNER/REPO[/FILE][@REVISION]).")
    if device is not None:
        G = G.to(device)
    return G.eval().requires_grad_(False)

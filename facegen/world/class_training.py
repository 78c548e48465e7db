"""Training mini's class classifier and z-code generators on the face world (``python -m facegen customize``).

Customisation by class (:mod:`facegen.features.customize`) is generic; mini's pack adds two networks
trained here on the face world (layer 5: it renders faces and trains on them), for the classes of
:data:`facegen.world.classes.WORLD_CLASSES`:

1. **The class classifier** (:func:`train_classifier`, the ``classifier`` component of mini's pack,
   :class:`facegen.packs.classifier.ClassClassifier`): BCE per class on renders of the GAN's own training
   seeds, with flips and the world predictor's blur / noise / shift augmentation so it transfers to
   GAN samples. It is deliberately *not* the world predictor (other architecture and seeds), so the
   world predictor can judge methods optimised against this one (``bench/customize.py``).
2. **Z-code generators** (:func:`train_zcode`, the ``zcodes`` component; the site's method 1): per class
   a residual MLP z = u + f(u), trained with G, the classifier and G's discriminator frozen to minimise

       L = E_u[ softplus(m - logit_k(C(aug(G(z, psi))))) ]               (-log p(class | face), margin m)
           + lambda_real  * E_u[ softplus(-D(G(z, psi))) ]                 (G's own discriminator: realism)
           + lambda_prior * ( mean_d mu_d^2 + mean_d (sigma_d^2 - 1)^2 )   (batch moments of z ~ N(0, I))
           + lambda_move  * E_u[ ||z - u||^2 / z_dim ]                    (each code moves little)
           + lambda_div   * relu(1 - dist(w(z)) / dist(w(u)))             (optional: no contraction in W)
           + lambda_feat  * relu(1 - dist(C_f(G(z))) / dist(C_f(G(u))))   (optional: faces as varied as unconditional ones)

   where dist is the batch's mean pairwise distance. f starts at zero (unconditional sampling); the
   prior and movement terms keep the codes spread like N(0, I); without the realism term and the
   augmentation the nets found adversarial codes (degraded images both classifiers took for the
   class). psi is drawn in [0.5, 1] per step so the codes work at every usual truncation.
3. **Fine-tuning data** (:func:`select_for_finetune`, method 1b): faces at psi = 1 that the classifier
   accepts with p >= 0.9, as an image folder for ``python -m facegen train --init`` (``mini-glasses``).

Rebuild the shipped artefacts (see ``assets/customize/README.md``)::

    python -m facegen customize classifier --out assets/packs/mini/classifier
    python -m facegen customize zcode --out assets/packs/mini/zcode
    python -m facegen customize select --cls glasses --n 3000 --out runs/customize/glasses-data
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from facegen.engine.errors import InputError, ModelNotFoundError
from facegen.packs.classifier import ClassClassifier, ZCodeBank, ZCodeNet, load_classifier, save_classifier, \
    save_zcodes
from facegen.world.classes import WORLD_CLASSES, world_labels, world_table

__all__ = ["train_classifier", "evaluate_classifier", "train_zcode", "train_zcode_bank", "prior_loss",
           "load_discriminator",
           "select_for_finetune", "cli_main", "TEST_SEED_START"]

#: Seeds of the classifier's held-out test renders (GAN training uses 0..23,999, the predictor 10M+/20M+).
TEST_SEED_START = 30_000_000


# ---------------------------------------------------------------------------
# The class classifier
# ---------------------------------------------------------------------------

def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    from facegen.world.predictor_images import augment
    flip = torch.rand(len(x), generator=g) < 0.5        # the world's classes are all mirror-symmetric
    return augment(torch.where(flip[:, None, None, None], x.flip(3), x), g)


def train_classifier(images: np.ndarray, labels: Sequence[dict], classes: Sequence[str], steps: int = 900,
                     batch: int = 128, lr: float = 2e-3, seed: int = 7, log=print) -> ClassClassifier:
    """BCE per class on renders with augmentation; AdamW with cosine decay; class-balanced positive weights."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = ClassClassifier(classes)
    y = torch.from_numpy(WORLD_CLASSES.mask(world_table(labels), classes).astype(np.float32))
    pos = y.mean(0).clamp(0.02, 0.98)
    pos_weight = ((1 - pos) / pos).sqrt()           # halfway to balanced: rare classes still get recall
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    t0 = time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps)) * min(1.0, (step + 1) / 50)
        idx = torch.randint(len(images), (batch,), generator=g)
        x = torch.from_numpy(images[idx.numpy()]).permute(0, 3, 1, 2).float() / 255
        loss = F.binary_cross_entropy_with_logits(model(_augment(x, g)), y[idx], pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 100 == 0:
            log(json.dumps({"step": step + 1, "loss": round(loss.item(), 4), "elapsed_s": round(time.time() - t0, 1)}))
    return model.eval().requires_grad_(False)


def evaluate_classifier(model: ClassClassifier, images: np.ndarray, labels: Sequence[dict]) -> dict:
    """Per class on labelled images: accuracy, precision, recall, base rate (threshold 0.5)."""
    y = WORLD_CLASSES.mask(world_table(labels), model.classes)
    p = model.probs(images) > 0.5
    out = {}
    for k, n in enumerate(model.classes):
        tp = int((p[:, k] & y[:, k]).sum())
        out[n] = {"accuracy": round(float((p[:, k] == y[:, k]).mean()), 4),
                  "precision": round(tp / max(1, int(p[:, k].sum())), 4),
                  "recall": round(tp / max(1, int(y[:, k].sum())), 4), "base_rate": round(float(y[:, k].mean()), 4)}
    return out


# ---------------------------------------------------------------------------
# Z-code generators
# ---------------------------------------------------------------------------

def prior_loss(z: torch.Tensor) -> torch.Tensor:
    """Batch moments of z against N(0, I): mean_d mu_d^2 + mean_d (var_d - 1)^2."""
    mu, var = z.mean(0), z.var(0)
    return mu.square().mean() + (var - 1).square().mean()


def train_zcode(G, C: ClassClassifier, name: str, steps: int = 200, batch: int = 24, lr: float = 2e-3,
                lambda_prior: float = 1.0, lambda_move: float = 1.0, lambda_div: float = 0.0, margin: float = 2.0,
                lambda_real: float = 1.0, D=None, augment: bool = True, psi_range=(0.5, 1.0), seed: int = 0,
                hidden: int = 128, lambda_feat: float = 0.0, log=print) -> tuple:
    """Train one class's z-code net against frozen G and C (and D for realism) -> (net, history)."""
    if G.c_dim:
        raise InputError("Customisation needs an unconditional generator (this one takes a class vector).")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = ZCodeNet(G.z_dim, hidden)
    G.requires_grad_(False)
    k = C.index([name])[0]
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.99))
    hist, t0 = [], time.time()
    for step in range(steps):
        u = torch.randn(batch, G.z_dim, generator=g)
        psi = float(psi_range[0] + (psi_range[1] - psi_range[0]) * torch.rand([], generator=g))
        z = net(u)
        ws = G.mapping(z, None, truncation_psi=psi)
        img = G.synthesis(ws, noise_mode="const")
        x = ((img + 1) / 2).clamp(0, 1)
        feats = C.features(_augment(x, g) if augment else x)
        logit = C.head(feats)[:, k]
        l_cls = F.softplus(margin - logit).mean()
        l_prior, l_move = prior_loss(z), (z - u).square().mean()
        loss = l_cls + lambda_prior * l_prior + lambda_move * l_move
        if D is not None and lambda_real:
            l_real = F.softplus(-D(img)).mean()      # the GAN's own discriminator: stay on the image manifold
            loss = loss + lambda_real * l_real
        if lambda_div:
            with torch.no_grad():
                d_u = torch.pdist(G.mapping(u, None, truncation_psi=psi)[:, 0]).mean()
            l_div = F.relu(1 - torch.pdist(ws[:, 0]).mean() / d_u)
            loss = loss + lambda_div * l_div
        if lambda_feat:
            with torch.no_grad():     # the unconditional faces of the same u: the spread to keep
                x_u = ((G.synthesis(G.mapping(u, None, truncation_psi=psi), noise_mode="const") + 1) / 2).clamp(0, 1)
                f_u = torch.pdist(C.features(x_u)).mean()
            l_feat = F.relu(1 - torch.pdist(feats).mean() / f_u)
            loss = loss + lambda_feat * l_feat
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 25 == 0 or step == 0:
            rec = {"class": name, "step": step + 1, "cls": round(l_cls.item(), 4),
                   "hit": round((logit > 0).float().mean().item(), 3), "prior": round(l_prior.item(), 4),
                   "move": round(l_move.item(), 4), "elapsed_s": round(time.time() - t0, 1)}
            if D is not None and lambda_real:
                rec["real"] = round(l_real.item(), 4)
            if lambda_feat:
                rec["feat_spread"] = round(1 - l_feat.item(), 4)
            hist.append(rec)
            log(json.dumps(rec))
    return net.eval().requires_grad_(False), hist


def train_zcode_bank(G, C: ClassClassifier, names: Sequence[str], out, D=None, command: str = "", model: str = "",
                     discriminator: str = "", log=print, **kw) -> dict:
    """One z-code net per class in `names` (:func:`train_zcode` with `kw`), saved to `out` as a
    :class:`ZCodeBank` after every class (usable part-way), with metrics.json (the training history per
    class, `command`) -> those metrics. ``python -m facegen customize zcode`` and the face-world pack
    builder both end here."""
    settings = {**_zcode_defaults(), **kw}
    steps, hidden = settings["steps"], settings["hidden"]
    bank = ZCodeBank(list(names), G.z_dim, hidden, G.fingerprint)      # exclusive classes are fine: one net each
    hist = {}
    t0 = time.time()
    for name in names:
        net, h = train_zcode(G, C, name, D=D, log=log, **kw)
        bank.nets[bank.key(name)].load_state_dict(net.state_dict())
        hist[name] = h
        save_zcodes(bank, out, model=model, steps=steps, done=list(hist))   # usable after every class
    metrics = {"command": command, "generator": G.fingerprint, "model": model, "steps": steps,
               **{k: settings[k] for k in _ZCODE_RECORDED},
               "discriminator": discriminator, "train_seconds": round(time.time() - t0, 1),
               "threads": torch.get_num_threads(),
               "params_per_class": sum(p.numel() for p in bank.net(names[0]).parameters()),
               "final": {n: h[-1] for n, h in hist.items()}, "history": hist}
    save_zcodes(bank, out, model=model, steps=steps)
    mpath = Path(out) / "metrics.json"
    old = json.loads(mpath.read_text()) if mpath.exists() else {}
    mpath.write_text(json.dumps({**old, **metrics}, indent=1) + "\n")
    return metrics


#: The loss settings :func:`train_zcode_bank` records in metrics.json.
_ZCODE_RECORDED = ("batch", "lambda_prior", "lambda_move", "lambda_div", "lambda_feat", "lambda_real", "margin")


def _zcode_defaults() -> dict:
    """:func:`train_zcode`'s keyword defaults, read from its signature (one source for the recorded values)."""
    return {k: p.default for k, p in inspect.signature(train_zcode).parameters.items()
            if p.default is not inspect.Parameter.empty}


def load_discriminator(G, path) -> torch.nn.Module:
    """G's training discriminator (``discriminator.safetensors``, training defaults at G's resolution), frozen."""
    from safetensors.torch import load_file
    from facegen.world.train_config import TrainConfig, build_networks
    if not Path(path).is_file():
        raise ModelNotFoundError(f"No discriminator at {path} (export it with `python -m facegen train "
                                 "--export-discriminator CKPT --export FOLDER`).")
    _, D = build_networks(TrainConfig(resolution=G.img_resolution))
    D.load_state_dict(load_file(str(path)), strict=True)
    return D.eval().requires_grad_(False)


# ---------------------------------------------------------------------------
# Fine-tuning data (method 1b)
# ---------------------------------------------------------------------------

def select_for_finetune(G, pack, name: str, n: int, out, threshold: float = 0.9, seed: int = 100,
                        propose: str = "zcode", log=print) -> dict:
    """n faces of `name` at psi = 1 that the pack's classifier accepts with p >= threshold, as an image folder.

    ``propose``: ``random`` (z ~ N(0, I): plain rejection) or ``zcode`` (the class's z-code generator
    proposes, which wastes fewer samples and gives clearer class members)."""
    from PIL import Image
    from facegen.features.customize import ClassifierJudge, rejection_sample
    from facegen.packs.classifier import load_zcodes
    from facegen.packs.pack import require
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fn = None
    if propose == "zcode":
        net = load_zcodes(require(pack, "zcodes", "Selecting with z-codes"), G=G).net(name)
        fn = lambda rng, b: net(torch.randn(b, G.z_dim, generator=rng))  # noqa: E731
    elif propose != "random":
        raise InputError(f"propose must be 'zcode' or 'random' (got '{propose}').")
    judge = ClassifierJudge(load_classifier(require(pack, "classifier", "Selecting fine-tuning faces")), threshold)
    res = rejection_sample(G, [name], n, psi=1.0, seed=seed, judge=judge, batch=64, max_tries=400 * n, propose=fn)
    for i, img in enumerate(res["images"]):
        Image.fromarray(img).save(out / f"{i:05d}.png")
    info = {"class": name, "kept": res["kept"], "tries": res["tries"], "accept_rate": round(res["kept"] / res["tries"], 4),
            "threshold": threshold, "propose": propose, "psi": 1.0, "seconds": round(res["seconds"], 1),
            "generator": G.fingerprint}
    (out / "selection.json").write_text(json.dumps(info, indent=1))
    log(json.dumps(info))
    return info


# ---------------------------------------------------------------------------
# Command line (python -m facegen customize ...)
# ---------------------------------------------------------------------------

def _command(a) -> str:
    return "python -m facegen customize " + " ".join(shlex.quote(x) for x in a.argv)


def _model_and_pack(name: str):
    from facegen.engine.loaders import load_generator
    from facegen.packs.pack import find_pack
    G = load_generator(name).eval()
    return G, find_pack(G, hub=False)


def cmd_classifier(a) -> int:
    from facegen.world.train_data import load_dataset
    from facegen.world.render import render_batch
    t0 = time.time()
    images = load_dataset(f"world:{a.n_train}", 64, cache_dir=Path(a.cache_dir))
    labels = world_labels(range(a.n_train))
    test_images, test_labels = render_batch(range(TEST_SEED_START, TEST_SEED_START + a.n_test), size=64)
    print(f"data: {len(images)} train, {len(test_images)} test renders ({time.time() - t0:.0f}s)", flush=True)
    t1 = time.time()
    model = train_classifier(images, labels, WORLD_CLASSES.names(), steps=a.steps, seed=a.seed,
                             log=lambda s: print(s, flush=True))
    train_s = time.time() - t1
    test = evaluate_classifier(model, test_images, test_labels)
    metrics = {"command": _command(a), "train_seeds": [0, a.n_train - 1],
               "test_seeds": [TEST_SEED_START, TEST_SEED_START + a.n_test - 1],
               "steps": a.steps, "train_seconds": round(train_s, 1), "threads": torch.get_num_threads(),
               "params": sum(p.numel() for p in model.parameters()), "test": test}
    save_classifier(model, a.out, test=test)
    (Path(a.out) / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps(test, indent=1))
    return 0


def cmd_zcode(a) -> int:
    from facegen.packs.pack import require
    G, pack = _model_and_pack(a.model)
    C = load_classifier(a.classifier or require(pack, "classifier", "Training z-codes"))
    D = load_discriminator(G, a.discriminator) if a.lambda_real else None
    names = WORLD_CLASSES.parse_list(a.classes) if a.classes else C.classes
    train_zcode_bank(G, C, names, a.out, D=D, command=_command(a), model=a.model, discriminator=a.discriminator,
                     steps=a.steps, batch=a.batch, lambda_prior=a.lambda_prior, lambda_move=a.lambda_move,
                     lambda_div=a.lambda_div, margin=a.margin, seed=a.seed, lambda_real=a.lambda_real,
                     lambda_feat=a.lambda_feat, hidden=a.hidden, log=lambda s: print(s, flush=True))
    return 0


def cmd_select(a) -> int:
    G, pack = _model_and_pack(a.model)
    select_for_finetune(G, pack, WORLD_CLASSES.parse(a.cls)[0], a.n, a.out, threshold=a.threshold, seed=a.seed,
                        propose=a.propose)
    return 0


def cli_main(argv) -> int:
    if argv[:1] == ["recipes"]:             # any generator's pack, not only the face world's
        from facegen.features.customize_recipes import cli_main as recipes_main
        return recipes_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m facegen customize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("classifier", help="train the class classifier on face-world renders")
    c.add_argument("--n-train", type=int, default=24000)
    c.add_argument("--n-test", type=int, default=1000)
    c.add_argument("--steps", type=int, default=900)
    c.add_argument("--seed", type=int, default=7)
    c.add_argument("--cache-dir", default="runs/mini/data", help="where world renders are cached (.npy)")
    c.add_argument("--out", required=True, help="e.g. assets/packs/mini/classifier")
    c.set_defaults(fn=cmd_classifier)
    z = sub.add_parser("zcode", help="train one z-code generator per class")
    z.add_argument("--model", default="mini")
    z.add_argument("--classifier", default="", help="classifier folder (default: the model's pack's)")
    z.add_argument("--classes", default="", help="comma-separated (default: every class)")
    z.add_argument("--steps", type=int, default=200)
    z.add_argument("--batch", type=int, default=24)
    z.add_argument("--hidden", type=int, default=128)
    z.add_argument("--lambda-prior", type=float, default=1.0)
    z.add_argument("--lambda-move", type=float, default=1.0)
    z.add_argument("--lambda-div", type=float, default=0.0)
    z.add_argument("--lambda-feat", type=float, default=0.0,
                   help="> 0: keep the classifier-feature spread of the class's faces at least that of unconditional ones")
    z.add_argument("--lambda-real", type=float, default=1.0)
    z.add_argument("--discriminator", default="assets/mini/discriminator.safetensors")
    z.add_argument("--margin", type=float, default=2.0)
    z.add_argument("--seed", type=int, default=0)
    z.add_argument("--out", required=True, help="e.g. assets/packs/mini/zcode")
    z.set_defaults(fn=cmd_zcode)
    s = sub.add_parser("select", help="rejection-sample one class into an image folder (fine-tuning data)")
    s.add_argument("--model", default="mini")
    s.add_argument("--cls", required=True)
    s.add_argument("--n", type=int, default=3000)
    s.add_argument("--threshold", type=float, default=0.9)
    s.add_argument("--seed", type=int, default=100)
    s.add_argument("--propose", default="zcode", choices=["zcode", "random"])
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_select)
    a = p.parse_args(argv)
    a.argv = list(argv)
    torch.set_num_threads(a.threads)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))

"""The independent quality judge: a second face-world network that only measures, never teaches.

Why a second network
--------------------
The world predictor (:mod:`facegen.world.predictor`) labels samples for directions, guided editing,
class sampling and encoder training, and a generator may be trained or steered with it. A generator
tuned against the predictor can learn to please the predictor, so a quality number measured with the
same network would flatter it. The judge is trained separately, with **other seeds**, **another
architecture** and **other augmentations**, and no training code may import it
(``tests/test_judge.py`` checks the import graph). It is used by :mod:`facegen.world.quality_goals`
and benches only (``bench/quality.py`` and its kin): Fréchet distance in its feature space, attribute
rates of generated faces, the labels of the w-linearity probe, a second reading of customisation's hits
(``bench/customize.py``, ``bench/class_agreement.py``).

Seeds (the world's seed contract, :mod:`facegen.world.attributes`)
-----------------------------------------------------------------
The judge trains on world seeds :data:`TRAIN_SEED_START` + i (40 000 000 +) and reports held-out
metrics on :data:`TEST_SEED_START` + i (41 000 000 +). The GAN trains below 10 000 000 (mini: 0 ..
23 999), the predictor on 10 000 000 +, the shared held-out renders of the quality bench are 20 000 000 +,
customisation tests 30 000 000 +: all disjoint.

Method
------
* Network (:class:`JudgeNet`, ~0.69 M parameters): a pre-activation residual net (BatchNorm, SiLU,
  average-pool downsampling, identity / 1 x 1 skips) -- where the predictor is a plain stack of six
  conv-BN-ReLU layers that downsample by strided convolutions, with no skips. Stem 3 x 3 conv stride 2
  (64 -> 32 px, 32 channels); four residual blocks with 32, 64, 96, 128 channels at 32, 16, 8, 4 px,
  each after the first entered by 2 x 2 average pooling (skip: pool + 1 x 1 conv); BN-SiLU; the 4 x 4 x
  128 map flattened; Linear -> 96 + SiLU: the 96-d **features** (:meth:`JudgeNet.features`; the
  predictor's are 128-d); one linear layer holds every head. (Global average pooling instead of the
  flattened map, and GroupNorm instead of BatchNorm, learnt far slower here: smile, glasses and eye
  colour stayed at chance after 900 steps.)
* Heads: continuous attributes normalised to [0, 1] (MSE), hues as (sin, cos) (MSE), categorical
  (cross-entropy), booleans (BCE). No validity head: the judge measures faces, the predictor gates them.
* Augmentation (:func:`augment`): horizontal flip with yaw and light_direction negated, integer
  shift up to 3 px (one per batch, edge padding), a soft-focus mix (downsample by 2 and back, bilinear) on 40 %,
  Gaussian pixel noise on 40 % (std <= 0.04). Colours are never changed: they are labels.
* AdamW (lr 3e-3, weight decay 1e-4), batch 64, 3 % warm-up then cosine; the run stops after a fixed
  number of epochs (work done, not wall-clock, so a busy machine gives the same network).
* Training renders are 64 px (supersample 4). The network reads any size >= 16 px resized to 64.

Rebuild the shipped judge (``assets/judge/``; one thread, a few minutes)::

    python -m facegen.world.judge train --n-train 12000 --n-test 2000 --epochs 8 --out assets/judge
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegen.engine.errors import InputError, UnsupportedModelError
from facegen.engine.folder import read_folder, write_folder
from facegen.engine.paths import ASSETS
from facegen.labels.base import check_images
from facegen.world.attributes import ATTRIBUTE_SPEC
from facegen.world.render import render_batch

__all__ = ["JudgeNet", "load_judge", "DEFAULT_JUDGE_DIR", "TRAIN_SEED_START", "TEST_SEED_START",
           "train_judge", "evaluate", "cli_main"]

DEFAULT_JUDGE_DIR = ASSETS / "judge"
FORMAT_VERSION = 1
TRAIN_SEED_START = 40_000_000
TEST_SEED_START = 41_000_000
INPUT_SIZE = 64
CIRCULAR = ("bg_hue", "clothing_hue")
MIRRORED = ("yaw", "light_direction")          # attributes whose sign flips with the image


def head_layout(spec: Sequence[tuple]) -> list[tuple[str, str, tuple, int, int]]:
    """(name, kind, range, first output, width): kind continuous / circular / categorical / bool."""
    out, i = [], 0
    for name, kind, rng in spec:
        k = "circular" if (kind == "continuous" and name in CIRCULAR) else kind
        w = 2 if k == "circular" else (len(rng) if k == "categorical" else 1)
        out.append((name, k, tuple(rng), i, w))
        i += w
    return out


class _Block(nn.Module):
    """Pre-activation residual block: BN-SiLU-conv3x3-BN-SiLU-conv3x3 (+ skip). ``down``: 2 x 2 average
    pooling first; a channel change adds a 1 x 1 conv on the skip."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.n1, self.c1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.n2, self.c2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = F.avg_pool2d(x, 2)
        h = self.c1(F.silu(self.n1(x)))
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


class JudgeNet(nn.Module):
    """The judge (see the module docstring). ``predict`` / ``features`` / ``predict_all`` take numpy uint8
    [N, H, W, 3] like every facegen labeller; it is deliberately *not* registered as a labeller."""

    def __init__(self, widths: Sequence[int] = (32, 64, 96, 128), blocks: int = 1, feature_dim: int = 96,
                 spec: Optional[Sequence] = None):
        super().__init__()
        spec = [(str(n), str(k), tuple(r)) for n, k, r in (spec if spec is not None else ATTRIBUTE_SPEC)]
        self.spec = spec
        self.layout = head_layout(spec)
        self.out_dim = sum(w for *_, w in self.layout)
        self.init_kwargs = {"widths": [int(c) for c in widths], "blocks": int(blocks), "feature_dim": int(feature_dim),
                            "spec": [[n, k, list(r)] for n, k, r in spec]}
        self.stem = nn.Conv2d(3, widths[0], 3, 2, 1, bias=False)
        stages, c = [], widths[0]
        for s, w in enumerate(widths):
            for b in range(blocks):
                stages.append(_Block(c, w, down=(s > 0 and b == 0)))
                c = w
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(c)
        side = INPUT_SIZE // 2 // 2 ** (len(widths) - 1)
        self.fc = nn.Linear(c * side * side, feature_dim)
        self.head = nn.Linear(feature_dim, self.out_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float [N, 3, 64, 64] in [0, 1] -> (features [N, D], raw head outputs [N, out_dim])."""
        h = self.stages(self.stem(x * 2.0 - 1.0))
        f = F.silu(self.fc(F.silu(self.norm(h)).flatten(1)))
        return f, self.head(f)

    def decode(self, out: torch.Tensor) -> dict[str, np.ndarray]:
        """Raw outputs -> {continuous: value in its range, circular: [0, 1), categorical: probabilities
        [N, K] and ``name_label``, bool: probability}, numpy."""
        res = {}
        for name, kind, rng, i, w in self.layout:
            o = out[:, i:i + w]
            if kind == "continuous":
                v = rng[0] + (rng[1] - rng[0]) * o[:, 0].clamp(0, 1)
            elif kind == "circular":
                v = torch.remainder(torch.atan2(o[:, 0], o[:, 1]) / (2 * math.pi), 1.0)
            elif kind == "categorical":
                v = o.softmax(1)
                res[f"{name}_label"] = np.asarray(rng, dtype=str)[v.argmax(1).numpy()] if len(v) else np.zeros(0, str)
            else:
                v = torch.sigmoid(o[:, 0])
            res[name] = v.numpy().astype(np.float32)
        return res

    @torch.no_grad()
    def predict_all(self, images: np.ndarray, batch_size: int = 256) -> tuple[dict, np.ndarray]:
        """uint8 [N, H, W, 3] -> (attribute dict as :meth:`decode`, features float32 [N, D])."""
        images = check_images(images)
        was = self.training
        self.eval()
        feats, outs = [torch.zeros(0, self.fc.out_features)], [torch.zeros(0, self.out_dim)]
        try:
            for i in range(0, len(images), batch_size):
                f, o = self(to_input(images[i:i + batch_size]))
                feats.append(f)
                outs.append(o)
        finally:
            self.train(was)
        return self.decode(torch.cat(outs)), torch.cat(feats).numpy().astype(np.float32)

    def predict(self, images: np.ndarray) -> dict:
        return self.predict_all(images)[0]

    def features(self, images: np.ndarray) -> np.ndarray:
        return self.predict_all(images)[1]

    def save_pretrained(self, folder, **meta) -> Path:
        return write_folder(folder, "JudgeNet", self.state_dict(), {**self.init_kwargs, "meta": meta}, FORMAT_VERSION)

    @classmethod
    def from_pretrained(cls, folder) -> "JudgeNet":
        cfg, sd = read_folder(folder, "JudgeNet", "quality judge",
                              f"python -m facegen.world.judge train --out {folder}", FORMAT_VERSION)
        net = cls(widths=cfg["widths"], blocks=cfg["blocks"], feature_dim=cfg["feature_dim"], spec=cfg.get("spec"))
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise UnsupportedModelError(f"{folder}: the weights do not match config.json ({e})") from None
        net.meta = cfg.get("meta", {})
        return net.eval()


@lru_cache(maxsize=None)
def _cached(folder: str) -> JudgeNet:
    return JudgeNet.from_pretrained(folder)


def load_judge(folder: Union[str, Path, None] = None) -> JudgeNet:
    """The shipped judge (``assets/judge/``), loaded once per process (CPU, eval mode; treat as read-only)."""
    return _cached(str(Path(folder).resolve() if folder is not None else DEFAULT_JUDGE_DIR))


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, 64, 64] in [0, 1] (area average when shrinking, bilinear when enlarging)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] == (INPUT_SIZE, INPUT_SIZE):
        return x
    if min(x.shape[-2:]) >= INPUT_SIZE:
        return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="area")
    return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------

def targets(labels: list[dict], layout) -> dict[str, torch.Tensor]:
    """World labels -> training targets: normalised floats, (sin, cos), class indices, 0 / 1."""
    t = {}
    for name, kind, rng, _, _ in layout:
        v = [lab[name] for lab in labels]
        if kind == "continuous":
            t[name] = torch.tensor((np.asarray(v, np.float32) - rng[0]) / (rng[1] - rng[0]))
        elif kind == "circular":
            a = 2 * np.pi * np.asarray(v, np.float64)
            t[name] = torch.tensor(np.stack([np.sin(a), np.cos(a)], 1), dtype=torch.float32)
        elif kind == "categorical":
            t[name] = torch.tensor([rng.index(c) for c in v], dtype=torch.long)
        else:
            t[name] = torch.tensor(np.asarray(v, np.float32))
    return t


def augment(x: torch.Tensor, tg: dict, g: torch.Generator) -> tuple[torch.Tensor, dict]:
    """Flip (yaw, light_direction negated), shift <= 3 px, soft focus (40 %), pixel noise (40 %)."""
    n = len(x)
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    tg = dict(tg)
    for name in MIRRORED:
        if name in tg:
            tg[name] = torch.where(flip, 1.0 - tg[name], tg[name])   # normalised [-1, 1] -> [0, 1]: -v is 1 - t
    dx, dy = (int(v) for v in torch.randint(-3, 4, (2,), generator=g))
    if dx or dy:
        x = F.pad(x, (3, 3, 3, 3), mode="replicate")[:, :, 3 + dy:3 + dy + x.shape[2], 3 + dx:3 + dx + x.shape[3]]
    soft = (torch.rand(n, generator=g) < 0.4).view(n, 1, 1, 1) * torch.rand(n, 1, 1, 1, generator=g)
    low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
    x = x + soft * (low - x)
    sd = (torch.rand(n, generator=g) < 0.4) * torch.rand(n, generator=g) * 0.04
    x = x + sd.view(n, 1, 1, 1) * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1), tg


def loss_fn(net: JudgeNet, out: torch.Tensor, tg: dict) -> tuple[torch.Tensor, dict]:
    total, parts = out.new_zeros(()), {}
    for name, kind, _, i, w in net.layout:
        o = out[:, i:i + w]
        if kind == "continuous":
            l = 10.0 * F.mse_loss(o[:, 0], tg[name])
        elif kind == "circular":
            l = 10.0 * F.mse_loss(o, tg[name])
        elif kind == "categorical":
            l = F.cross_entropy(o, tg[name])
        else:
            l = F.binary_cross_entropy_with_logits(o[:, 0], tg[name])
        total = total + l
        parts[name] = float(l.detach())
    return total, parts


def train_judge(net: JudgeNet, images: np.ndarray, labels: list[dict], epochs: int = 8, batch_size: int = 64,
                lr: float = 3e-3, seed: int = 0, log=print) -> dict:
    """Train in place for ``epochs`` full passes (work done, not time); returns a summary with a loss history."""
    check_images(images)
    if len(images) != len(labels) or len(images) < batch_size:
        raise InputError(f"need as many labels as images and at least one batch ({batch_size}), got "
                         f"{len(images)} / {len(labels)}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    tg_all = targets(labels, net.layout)
    x_all = torch.from_numpy(images)
    per_epoch = len(images) // batch_size
    total = per_epoch * epochs
    decay = [p for p in net.parameters() if p.ndim > 1]
    rest = [p for p in net.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-4}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.99))
    net.train()
    t0, step, hist, run = time.perf_counter(), 0, [], {}
    for ep in range(epochs):
        order = rng.permutation(len(images))
        for b in range(per_epoch):
            idx = torch.from_numpy(order[b * batch_size:(b + 1) * batch_size])
            x = x_all[idx].permute(0, 3, 1, 2).float() / 255.0
            x, tg = augment(x, {k: v[idx] for k, v in tg_all.items()}, g)
            p = step / total
            lr_now = lr * (p / 0.03 if p < 0.03 else 0.5 * (1 + math.cos(math.pi * (p - 0.03) / 0.97)))
            for grp in opt.param_groups:
                grp["lr"] = max(lr_now, lr * 1e-3)
            loss, parts = loss_fn(net, net(x)[1], tg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                run[k] = run.get(k, 0.0) + v
            if step % 100 == 0 or step == total:
                k = step % 100 or 100
                avg = {name: round(v / k, 4) for name, v in run.items()}
                hist.append({"step": step, "elapsed_s": round(time.perf_counter() - t0, 1), **avg})
                log(f"step {step}/{total} epoch {ep + 1} {time.perf_counter() - t0:.0f}s loss {avg['loss']:.3f}")
                run = {}
    net.eval()
    return {"steps": step, "epochs": epochs, "train_time_s": round(time.perf_counter() - t0, 1), "history": hist}


def evaluate(net: JudgeNet, images: np.ndarray, labels: list[dict]) -> dict:
    """Held-out metrics per attribute: Pearson r and MAE (continuous; hues: circular distance, r of the
    (cos, sin) embedding), accuracy next to the majority-class rate (categorical, bool)."""
    pred = net.predict(images)
    out = {}
    for name, kind, rng, _, _ in net.layout:
        truth = [lab[name] for lab in labels]
        if kind == "continuous":
            t, p = np.asarray(truth, np.float64), pred[name].astype(np.float64)
            out[name] = {"r": float(np.corrcoef(t, p)[0, 1]), "mae": float(np.abs(t - p).mean())}
        elif kind == "circular":
            t, p = np.asarray(truth, np.float64), pred[name].astype(np.float64)
            d = np.abs(t - p) % 1.0
            r = np.mean([np.corrcoef(f(2 * np.pi * t), f(2 * np.pi * p))[0, 1] for f in (np.cos, np.sin)])
            out[name] = {"r": float(r), "mae": float(np.minimum(d, 1 - d).mean())}
        else:
            t = np.asarray(truth) if kind == "categorical" else np.asarray(truth, bool)
            p = pred[f"{name}_label"] if kind == "categorical" else pred[name] > 0.5
            counts = np.unique(t, return_counts=True)[1]
            out[name] = {"accuracy": float((p == t).mean()), "chance": float(counts.max() / len(t))}
    return out


def render_set(start: int, n: int, size: int = 64, log=print) -> tuple[np.ndarray, list[dict]]:
    imgs, labs, t0 = [], [], time.perf_counter()
    for i in range(0, n, 2000):
        x, lab = render_batch(range(start + i, start + min(n, i + 2000)), size=size)
        imgs.append(x)
        labs += lab
        log(f"  rendered {min(n, i + 2000)}/{n} from seed {start} ({time.perf_counter() - t0:.0f}s)")
    return np.concatenate(imgs), labs


def _readme(r: dict) -> str:
    rows = []
    for name, m in r["held_out"].items():
        rows.append(f"| {name} | r {m['r']:.3f}, MAE {m['mae']:.3f} |" if "r" in m
                    else f"| {name} | accuracy {m['accuracy']:.3f} (majority class {m['chance']:.3f}) |")
    table = "\n".join(rows)
    return f"""# The independent quality judge (shipped weights)

`config.json` + `model.safetensors`: `facegen.world.judge.JudgeNet`, a residual network
({r['n_params']:,} parameters, 96-d features) that reads every face-world attribute. It only
*measures* generators (`bench/quality.py`, `facegen.world.quality_goals`): no training code may import it
(`tests/test_judge.py`), and it differs from the world predictor in seeds and architecture (module docstring).

## Rebuild

From the repository root (one CPU thread; {r['wall_time_s']:.0f} s wall on the shared build machine,
{r['render_time_s']:.0f} s of it rendering; training stops after a fixed number of epochs, so a busy machine
gives the same network, only later):

```
{r['command']}
```

Training faces: world seeds {r['train_seeds'][0]}..{r['train_seeds'][1]}; held-out faces
{r['test_seeds'][0]}..{r['test_seeds'][1]}. The GAN trains below 10000000, the predictor on 10000000+, the
quality bench's renders are 20000000+: all disjoint. Re-evaluate with `python -m facegen.world.judge eval`.

## Held-out metrics ({r['n_test']} renders, written to `metrics.json` by the command above)

| attribute | held-out |
|---|---|
{table}
"""


def cli_main(argv: list[str]) -> int:
    """``train --n-train N --n-test N --epochs E --out DIR`` and ``eval [--model DIR] [--n-test N]``."""
    p = argparse.ArgumentParser(prog="python -m facegen.world.judge", description="The independent quality judge.")
    sub = p.add_subparsers(dest="cmd", required=True)
    pt = sub.add_parser("train", help="render, train, evaluate on held-out renders, save")
    pt.add_argument("--n-train", type=int, default=12000)
    pt.add_argument("--n-test", type=int, default=2000)
    pt.add_argument("--epochs", type=int, default=8)
    pt.add_argument("--batch-size", type=int, default=64)
    pt.add_argument("--lr", type=float, default=3e-3)
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--threads", type=int, default=1)
    pt.add_argument("--out", default=str(DEFAULT_JUDGE_DIR))
    pe = sub.add_parser("eval", help="held-out metrics of a saved judge")
    pe.add_argument("--model", default=str(DEFAULT_JUDGE_DIR))
    pe.add_argument("--n-test", type=int, default=2000)
    pe.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, a.threads))
    if a.n_test < 10 or a.n_test > TEST_SEED_START - TRAIN_SEED_START or \
            (a.cmd == "train" and not 0 < a.n_train <= TEST_SEED_START - TRAIN_SEED_START):
        print("error: --n-train / --n-test must be positive and fit the judge's seed ranges", file=sys.stderr)
        return 2
    if a.cmd == "eval":
        x, lab = render_set(TEST_SEED_START, a.n_test)
        print(json.dumps(evaluate(JudgeNet.from_pretrained(a.model), x, lab), indent=1))
        return 0
    command = "python -m facegen.world.judge " + shlex.join(argv)
    t0 = time.perf_counter()
    x_tr, l_tr = render_set(TRAIN_SEED_START, a.n_train)
    x_te, l_te = render_set(TEST_SEED_START, a.n_test)
    t_render = time.perf_counter() - t0
    net = JudgeNet()
    summary = train_judge(net, x_tr, l_tr, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed)
    metrics = evaluate(net, x_te, l_te)
    record = {"command": command, "n_train": a.n_train, "n_test": a.n_test, "epochs": a.epochs,
              "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed, "threads": a.threads,
              "train_seeds": [TRAIN_SEED_START, TRAIN_SEED_START + a.n_train - 1],
              "test_seeds": [TEST_SEED_START, TEST_SEED_START + a.n_test - 1],
              "n_params": sum(q.numel() for q in net.parameters()), "torch": torch.__version__,
              "render_time_s": round(t_render, 1), "train_time_s": summary["train_time_s"],
              "wall_time_s": round(time.perf_counter() - t0, 1), "steps": summary["steps"],
              "held_out": metrics, "history": summary["history"]}
    out = net.save_pretrained(a.out, command=command, train_seeds=record["train_seeds"],
                              test_seeds=record["test_seeds"])
    (out / "metrics.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "README.md").write_text(_readme(record))
    print(json.dumps(metrics, indent=1))
    print(f"saved to {out} ({record['n_params']:,} parameters) in {record['wall_time_s']:.0f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli_main(sys.argv[1:]))

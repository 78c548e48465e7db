"""Does a class classifier agree with the judge on a generator's own faces?

    python bench/class_agreement.py --model assets/mini-v2 --classifier NAME=FOLDER [--classifier ...]
                                    [--n 8192] [--psi 0.7] [--json OUT]

Customisation checks faces with the pack's class classifier (``facegen.features.customize``, accept at
p >= ``ACCEPT``) and ``bench/customize.py`` judges them with the world predictor. Where the two disagree
on the generator's faces, no proposal method can reach the hit-rate goal: rejection sampling with the
classifier hits exactly its precision against the judge. This bench reads that precision directly, per
class and per classifier, on `--n` unconditional faces (seeds of their own) at truncation `--psi`:

* **precision** — of the faces the classifier accepts, the share the judge calls members (what rejection
  sampling by the classifier hits);
* **recall** — of the judge's members, the share the classifier accepts (low recall costs samples, and
  narrows the accepted faces when it is selective within the class);
* **accepted** — how many faces the classifier accepts (precision over a handful is noise).

Classifiers are given as NAME=FOLDER (a ``ClassClassifier`` model folder). The judge is the world
predictor, which none of them was trained on; the independent quality judge (``facegen.world.judge``,
other seeds, other architecture) reads the same faces as a second opinion, and the two judges are also
read against each other (the world predictor's members as an accepted set, precision against the
independent judge's members): where even they disagree, a hit rate measured by one of them carries
that much of the instrument.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from facegen import load_generator  # noqa: E402
from facegen.features import customize as cz  # noqa: E402
from facegen.labels.classes import label_table  # noqa: E402
from facegen.packs.classifier import load_classifier  # noqa: E402
from facegen.world.classes import WORLD_CLASSES  # noqa: E402
from facegen.world.judge import load_judge  # noqa: E402
from facegen.world.predictor import load_world_predictor  # noqa: E402
from results_io import write_json  # noqa: E402

SEED = 950_000


def agreement(accepted: np.ndarray, member: np.ndarray) -> dict:
    """Per-class precision / recall of `accepted` against the judge's `member` (bool [N] each)."""
    tp = int((accepted & member).sum())
    return {"accepted": int(accepted.sum()), "members": int(member.sum()),
            "precision": round(tp / max(1, int(accepted.sum())), 4), "recall": round(tp / max(1, int(member.sum())), 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini")
    ap.add_argument("--classifier", action="append", required=True, help="NAME=FOLDER (repeatable)")
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--psi", type=float, default=0.7)
    ap.add_argument("--threshold", type=float, default=cz.ACCEPT, help="acceptance threshold (the app's default)")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    arms = []
    for spec in a.classifier:
        name, sep, folder = spec.partition("=")
        if not sep:
            ap.error(f"--classifier takes NAME=FOLDER, got {spec!r}")
        arms.append((name, folder, load_classifier(folder)))
    t0 = time.time()
    G = load_generator(a.model).eval()
    z = torch.randn(a.n, G.z_dim, generator=torch.Generator().manual_seed(SEED))
    images = np.concatenate([cz.generate_from_z(G, z[i:i + 256], a.psi)[0] for i in range(0, a.n, 256)])
    P = load_world_predictor()
    pred, _, valid = P.predict_all(images)
    names = list(arms[0][2].classes)
    member = WORLD_CLASSES.mask(label_table(pred, P.spec), names) & (valid > 0.5)[:, None]
    J = load_judge()
    second = WORLD_CLASSES.mask(label_table(J.predict(images), J.spec), names)
    out = {"model": a.model, "fingerprint": G.fingerprint, "n": a.n, "psi": a.psi, "threshold": a.threshold,
           "judge": "world predictor (assets/predictor)", "second_judge": "independent judge (assets/judge)",
           "judges": {n: agreement(member[:, k], second[:, k]) for k, n in enumerate(names)}, "classifiers": {}}
    for arm, folder, C in arms:
        p = C.probs(images)[:, C.index(names)]
        out["classifiers"][arm] = {"folder": folder, "classes": {
            n: agreement(p[:, k] >= a.threshold, member[:, k]) for k, n in enumerate(names)},
            "classes_second_judge": {n: agreement(p[:, k] >= a.threshold, second[:, k]) for k, n in enumerate(names)}}
    out["seconds"] = round(time.time() - t0, 1)
    print(f"{a.model} ({G.fingerprint}), {a.n} faces at psi {a.psi}, accept at p >= {a.threshold}; "
          f"judge: the world predictor\n")
    print("| class | members: world predictor / independent judge | world predictor vs independent judge: "
          "precision / recall | " + " | ".join(f"{arm}: precision / recall (accepted) | {arm} vs independent judge"
                                                for arm, _, _ in arms) + " |")
    print("|---|---|---|" + "---|---|" * len(arms))
    for k, n in enumerate(names):
        jj = out["judges"][n]
        cells = []
        for arm, _, _ in arms:
            c, c2 = out["classifiers"][arm]["classes"][n], out["classifiers"][arm]["classes_second_judge"][n]
            cells += [f"{c['precision']:.3f} / {c['recall']:.3f} ({c['accepted']})",
                      f"{c2['precision']:.3f} / {c2['recall']:.3f}"]
        print(f"| {n} | {jj['accepted']} / {jj['members']} | {jj['precision']:.3f} / {jj['recall']:.3f} | "
              + " | ".join(cells) + " |")
    jp = [c["precision"] for c in out["judges"].values()]
    print(f"\nworld predictor vs independent judge: mean precision {np.mean(jp):.3f}, classes with precision "
          f">= 0.95: {sum(p >= 0.95 for p in jp)} of {len(jp)}")
    for arm, _, _ in arms:
        for key, who in (("classes", "world predictor"), ("classes_second_judge", "independent judge")):
            cl = out["classifiers"][arm][key]
            print(f"{arm} vs {who}: mean precision {np.mean([c['precision'] for c in cl.values()]):.3f}, "
                  f"classes with precision >= 0.95: {sum(c['precision'] >= 0.95 for c in cl.values())} of {len(cl)}")
    if a.json:
        write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

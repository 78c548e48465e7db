"""The wall-clock checks the tests do not make: each time as a ratio against a baseline timed in the same run.

Tests never assert on elapsed time (a shared 2-core machine makes any limit flaky); they check the stopping
rules on a stepped clock instead. This bench measures what those limits were meant to protect, each as the
median of `--repeat` runs, on one CPU thread:

* ``align_large``: aligning a face in a 3000 x 3000 photo vs in the same photo at 512 x 512 (34x the pixels;
  detection runs on a copy at most 1024 px wide, so the ratio stays far below 34);
* ``refuse_bomb``: refusing a PNG that claims 20000 x 20000 pixels vs aligning the 512 px photo;
* ``encoder_pass``: mini's pack encoder on one 64 px render vs rendering one face with mini;
* ``refine_budget`` / ``faceswap_budget``: the time a 0.5 s budget really took / 0.5 s (the overshoot is
  one optimisation step);
* ``ganspace``: the principal components of a generator (GANSpace, 10 000 sampled w, uncached) vs
  sampling those 10 000 w alone (mini and the ADA fixture when present).

    python bench/timing.py [--repeat 3] [--out bench/results/timing.json]
"""

import argparse
import statistics
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import facegen  # noqa: E402
from facegen.engine.errors import InputError  # noqa: E402
from facegen.engine.synthesis import synthesize  # noqa: E402
from results_io import write_json  # noqa: E402

ADA = ROOT.parent / "shared" / "fixtures" / "stylegan2-ada-tiny" / "G_ema.pkl"


def timed(fn, repeat: int) -> float:
    """Median seconds of `repeat` calls of fn() (after one warm-up call)."""
    fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def ratio(name: str, what: float, baseline: float, **extra) -> dict:
    row = {"seconds": round(what, 4), "baseline_seconds": round(baseline, 4), "ratio": round(what / baseline, 2),
           **extra}
    print(f"{name:<20} {what:8.4f} s  vs baseline {baseline:8.4f} s  ratio {row['ratio']:7.2f}  "
          + " ".join(f"{k}={v}" for k, v in extra.items()), flush=True)
    return row


def photo() -> np.ndarray:
    import importlib.util
    spec = importlib.util.find_spec("skimage")
    return np.asarray(Image.open(Path(spec.origin).parent / "data" / "astronaut.png").convert("RGB"))


def bomb(path: Path) -> Path:
    """A PNG header claiming 20000 x 20000 pixels with almost no data."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def bench_align(repeat: int, tmp: Path) -> dict:
    from facegen.labels import align
    small = photo()
    big = np.asarray(Image.fromarray(small).resize((3000, 3000), Image.BICUBIC))
    t_small = timed(lambda: align.align_image(small, 256), repeat)
    out = {"align_large": ratio("align_large", timed(lambda: align.align_image(big, 256), repeat), t_small,
                                pixels_ratio=round(big.size / small.size, 1))}

    def refuse():
        try:
            align.align_face(bomb(tmp / "huge.png"), 64)
        except InputError:
            return
        raise AssertionError("the 20000 x 20000 header was not refused")
    out["refuse_bomb"] = ratio("refuse_bomb", timed(refuse, repeat), t_small)
    return out


def bench_encoder(G, pack, repeat: int) -> dict:
    from facegen.features import encode as enc
    from facegen.packs.encoder import encoder_for
    from facegen.world.render import render_batch
    E = encoder_for(G, pack)
    img = render_batch([20_000_100], size=G.img_resolution)[0]
    w = enc.encode(E, img)
    out = {"encoder_pass": ratio("encoder_pass", timed(lambda: enc.encode(E, img), repeat),
                                 timed(lambda: synthesize(G, w), repeat))}
    runs = [enc.refine(G, img[0], w[0], steps=5000, time_budget=0.5, perceptual="none", patience=0).seconds
            for _ in range(repeat)]
    out["refine_budget"] = ratio("refine_budget", statistics.median(runs), 0.5)
    return out


def bench_faceswap(repeat: int) -> dict:
    from facegen.features import faceswap as fs
    t = np.linspace(-1, 1, 64)
    X, Y = np.meshgrid(t, t)
    fa = (np.stack([np.stack([0.5 + 0.4 * (np.cos(a) * X + np.sin(a) * Y)] * 2 + [np.full((64, 64), 0.5)], -1)
                    for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]) * 255).astype(np.uint8)
    st = fs.TrainState.new(seed=0)
    fs.train(st, fa, 255 - fa, max_steps=1, batch=4)
    runs = []
    for _ in range(repeat):
        before = st.seconds
        fs.train(st, fa, 255 - fa, seconds=0.5, batch=4)
        runs.append(st.seconds - before)
    return {"faceswap_budget": ratio("faceswap_budget", statistics.median(runs), 0.5)}


def bench_ganspace(models: dict, repeat: int) -> dict:
    from facegen.packs import unsupervised as U

    def fresh(G):
        U.clear_cache()
        return U.unsupervised_directions(G)
    out = {}
    for name, G in models.items():
        out[f"ganspace_{name}"] = ratio(f"ganspace_{name}", timed(lambda: fresh(G), repeat),
                                        timed(lambda: U.sample_w(G), repeat), n_samples=U.N_SAMPLES)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default=None, help="write the results as JSON here (e.g. bench/results/timing.json)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    import tempfile
    from facegen.packs.pack import find_pack
    G = facegen.load_generator("mini").eval()
    pack = find_pack(G, hub=False)
    models = {"mini": G}
    if ADA.is_file():
        models["ada_fixture"] = facegen.load_generator(str(ADA)).eval()
    res = {"command": "python bench/timing.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "threads": torch.get_num_threads(), "repeat": a.repeat, "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        res.update(bench_align(a.repeat, Path(tmp)))
    res.update(bench_encoder(G, pack, a.repeat))
    res.update(bench_faceswap(a.repeat))
    res.update(bench_ganspace(models, a.repeat))
    if a.out:
        write_json(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Faceswap bench: identity A into a face-world sample video, end to end on the CPU, judged by the face
world's attribute predictor.

    python bench/faceswap.py [--video assets/videos/sample-lena.mp4] [--face "@Imani Brooks"] [--seconds 300]
                             [--model mini] [--pack PACK]

1. End to end (identity set + tracking + training for the budget + conversion + mp4 with audio), timed,
   with the app's thread setting (studio.cpu_threads: FACEGEN_THREADS, else 1 for 64 px models).
2. The swapped video is decoded again (compression included) and its faces cut out with the same
   alignment as the target's. The predictor reads identity attributes (skin tone, hair colour, eye colour,
   gender, age, hair length) on target faces, swapped faces and A: the swapped faces should move from the
   target's values to A's.
3. Pose and expression must still follow the video: Pearson correlation of the predicted yaw and smile of
   swapped vs target faces, frame by frame (and against the renderer's true yaw / smile).
4. Likeness: the mean distance, in the predictor's penultimate features, of the swapped faces to A's
   mean face (over 32 views of A), divided by the same for the target's faces: 0 would be A itself,
   1 no change. Blur and artefacts keep it high even where the attributes above have moved.
Writes a strip PNG (target frames over swapped frames), the mp4 and results.json to --out; --json also
writes the results (with the command) to that file, e.g. bench/results/faceswap.json for the README.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONTINUOUS = ("skin_tone", "gender", "age", "hair_length")
CATEGORICAL = ("hair_color", "eye_color")


def identity_report(pred_t: dict, pred_s: dict, pred_a: dict) -> list:
    """Rows (attribute, target, swapped, A, |target - A|, |swapped - A|) -- categorical attributes as the
    probability of A's class."""
    rows = []
    for k in CONTINUOUS:
        t, s, a = float(np.mean(pred_t[k])), float(np.mean(pred_s[k])), float(np.mean(pred_a[k]))
        rows.append((k, t, s, a, abs(t - a), abs(s - a)))
    for k in CATEGORICAL:
        cls = int(np.argmax(np.mean(pred_a[k], 0)))
        lab = str(pred_a[k + "_label"][0])
        t, s, a = (float(np.mean(p[k][:, cls])) for p in (pred_t, pred_s, pred_a))
        rows.append((f"P({k}={lab})", t, s, a, abs(t - a), abs(s - a)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=str(ROOT / "assets" / "videos" / "sample-lena.mp4"))
    ap.add_argument("--person", default="sample-lena", help="the sample's person (for the true yaw / smile)")
    ap.add_argument("--face", default="@Imani Brooks")
    ap.add_argument("--seconds", type=float, default=300, help="training budget")
    ap.add_argument("--views", type=int, default=120)
    ap.add_argument("--color", default="none")
    ap.add_argument("--region", default="head")
    ap.add_argument("--model", default="mini")
    ap.add_argument("--pack", default=None, help="the model's pack folder (default: found by fingerprint); it is "
                    "put first in FACEGEN_PACKS, so the studio's own lookup (banks, localiser, alignment) finds it")
    ap.add_argument("--width", type=int, default=16, help="autoencoder channels (FaceswapAE ch)")
    ap.add_argument("--input-region", default=None, choices=("face", "head"),
                    help="the encoder sees only this region of each face (default: the whole crop)")
    ap.add_argument("--ssim", type=float, default=0.0, help="weight of the 1 - SSIM loss term (default: none)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-faceswap"))
    ap.add_argument("--json", default=None, help="also write the results (and the command) to this JSON file")
    a = ap.parse_args(argv)

    from PIL import Image
    from facegen.features import faceswap as fs
    from facegen import studio
    from facegen.world.predictor import load_world_predictor
    from facegen.packs.alignment import alignment_for
    from facegen.world.videos import sample_frames

    t_start = time.time()
    if a.pack:
        import os
        os.environ["FACEGEN_PACKS"] = os.pathsep.join(filter(None, [a.pack, os.environ.get("FACEGEN_PACKS")]))
    G = studio.models().get(a.model)
    pack = studio.models().pack(G)
    if a.pack:
        from facegen.packs.pack import load_pack
        load_pack(a.pack, G)                       # refuses a pack of another generator
        if pack is None or pack.root.resolve() != Path(a.pack).resolve():
            raise SystemExit(f"--pack {a.pack}: the studio found {pack.root if pack else 'no pack'} for {a.model}")
    threads = studio.cpu_threads(G)
    ws, _ = studio.resolve_faces(G, studio.parse_faces(a.face, 1, "face"), 0.7)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    template = alignment_for(G, pack)
    res = fs.swap_video(G, pack, ws[0], a.video, out / "faceswap.mp4", a.seconds, a.views, a.color, a.region,
                        state=fs.TrainState.new(ch=a.width, code=8 * a.width, input_region=a.input_region,
                                                points=template.at(fs.CROP)),
                        log=lambda m: print("  " + m, flush=True), ssim_weight=a.ssim)
    total = time.time() - t_start
    p, st = res["prepared"], res["state"]

    # 2. faces of the decoded result, aligned like the target's; 3. pose and expression follow the video
    f = p.track.found
    P = load_world_predictor()
    crops_t = fs.align_crops(p.frames[f], p.track.transforms[f], fs.CROP)
    pt = P.predict(crops_t)
    views, _ = fs.identity_set(G, ws[0], None, 8, sigma=0.0)
    pa = P.predict(views[:1])
    _, feats_a, _ = P.predict_all(fs.identity_set(G, ws[0], None, 32)[0])
    mean_a = feats_a.mean(0)
    _, feats_t, _ = P.predict_all(crops_t)
    dist_t = float(np.linalg.norm(feats_t - mean_a, axis=1).mean())
    _, _, yaw_true, smile_true = sample_frames(a.person) if a.person else (None, None, None, None)

    def judge(path):
        back, _ = fs.read_video_checked(path)
        crops_s = fs.align_crops(back[f], p.track.transforms[f], fs.CROP)
        ps = P.predict(crops_s)
        rows = identity_report(pt, ps, pa)
        r = {k: float(np.corrcoef(pt[k], ps[k])[0, 1]) for k in ("yaw", "smile")}
        r_true = {}
        if yaw_true is not None and len(yaw_true) == len(f):
            r_true = {"yaw": float(np.corrcoef(yaw_true[f], ps["yaw"])[0, 1]),
                      "smile": float(np.corrcoef(smile_true[f], ps["smile"])[0, 1])}
        _, feats_s, _ = P.predict_all(crops_s)
        like = float(np.linalg.norm(feats_s - mean_a, axis=1).mean()) / dist_t       # 4. likeness
        return back, rows, r, r_true, like

    back, rows, r, r_true, like = judge(res["path"])
    moved = sum(row[5] < row[4] for row in rows)
    variants = {}
    for color, region in (("reinhard", a.region), ("seamless", a.region), (a.color, "face")):
        if (color, region) == (a.color, a.region):
            continue
        t0 = time.time()
        o, _, _ = fs.convert(p.frames, p.track, st.model, p.points, color, region)
        vp, _ = fs.write_result(o, p.info, out / f"faceswap-{color}-{region}.mp4")
        dt = time.time() - t0
        _, vrows, vr, _, vlike = judge(vp)
        variants[f"{color}/{region}"] = (vrows, vr, dt, vlike)

    idx = np.linspace(0, len(back) - 1, 8).round().astype(int)
    strip = np.concatenate([np.concatenate(list(p.frames[idx]), 1), np.concatenate(list(back[idx]), 1)], 0)
    Image.fromarray(strip).save(out / "strip.png")
    Image.fromarray(fs.preview(st.model, p.faces_a, p.faces_b)).save(out / "preview.png")

    tm = res["timings"]
    print(f"\nfaceswap bench: {Path(a.video).name} ({len(p.frames)} frames, {p.info.seconds:.1f} s, "
          f"{p.info.width}x{p.info.height}), A = {a.face}, {threads} CPU thread(s), detector {p.track.detector}, "
          f"faces in {int(f.sum())}/{len(f)} frames")
    print("; ".join(res["notes"]))
    print(f"training: {st.step} steps in {tm['train_s']:.0f} s, last-50 loss A "
          f"{np.mean([l[1] for l in st.losses[-50:]]):.4f} B {np.mean([l[2] for l in st.losses[-50:]]):.4f}")
    print("\n| identity attribute | target | swapped | A | abs(target - A) | abs(swapped - A) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]:.3f} | {row[2]:.3f} | {row[3]:.3f} | {row[4]:.3f} | {row[5]:.3f} |")
    print(f"\nattributes moved towards A: {moved}/{len(rows)}")
    print(f"pose/expression follow the video: Pearson r(target, swapped) yaw {r['yaw']:.3f}, smile {r['smile']:.3f}"
          + (f"; r(true, swapped) yaw {r_true['yaw']:.3f}, smile {r_true['smile']:.3f}" if r_true else ""))
    print(f"likeness: feature distance to A's mean face, swapped / target {like:.3f} (0 = A, 1 = unchanged; "
          f"A's own views {float(np.linalg.norm(feats_a - mean_a, axis=1).mean()) / dist_t:.3f})")
    print(f"time: read {tm['read_s']:.1f} s, tracking {tm['track_s']:.1f} s, identity set {tm['identity_s']:.1f} s, "
          f"training {tm['train_s']:.1f} s, conversion + mp4 {tm['convert_s']:.1f} s; end to end {total:.1f} s "
          f"({total / 60:.2f} min; goal <= 10 min: ratio {total / 600:.2f})")
    print(f"audio kept: {res['audio']}; wrote {res['path']}, {out / 'strip.png'}, {out / 'preview.png'}")
    print(f"\nother conversions of the same model (default: colour {a.color}, region {a.region}):")
    print("| colour/region | attributes moved towards A | mean abs(swapped - A) (default run: "
          f"{np.mean([row[5] for row in rows]):.3f}) | r yaw | r smile | likeness (default run: {like:.3f}) "
          "| conversion + mp4 s |")
    print("|---|---|---|---|---|---|---|")
    for k, (vrows, vr, dt, vlike) in variants.items():
        print(f"| {k} | {sum(x[5] < x[4] for x in vrows)}/{len(vrows)} | {np.mean([x[5] for x in vrows]):.3f} | "
              f"{vr['yaw']:.3f} | {vr['smile']:.3f} | {vlike:.3f} | {dt:.1f} |")
    results = json.dumps({
        "command": "python bench/faceswap.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "video": Path(a.video).name, "face": a.face, "threads": threads, "steps": st.step,
        "timings": {k: round(v, 2) for k, v in tm.items()}, "end_to_end_s": round(total, 1),
        "identity": [dict(zip(("attribute", "target", "swapped", "A", "target_to_A", "swapped_to_A"),
                              [x if isinstance(x, str) else round(x, 4) for x in row])) for row in rows],
        "pearson_target_vs_swapped": r, "pearson_true_vs_swapped": r_true, "audio": res["audio"],
        "likeness_swapped_over_target": round(like, 4), "ssim_weight": a.ssim, "input_region": a.input_region,
        "variants": {k: {"moved": int(sum(x[5] < x[4] for x in v[0])),
                         "mean_swapped_to_A": float(np.mean([x[5] for x in v[0]])), "pearson": v[1],
                         "seconds": round(v[2], 1), "likeness": round(v[3], 4)} for k, v in variants.items()},
        "likeness_A_views": round(float(np.linalg.norm(feats_a - mean_a, axis=1).mean()) / dist_t, 4),
        "faces_found": [int(f.sum()), int(len(f))], "frames": len(p.frames),
        "model": a.model, "fingerprint": G.fingerprint, "pack": str(pack.root) if pack is not None else None},
        indent=1) + "\n"
    (out / "results.json").write_text(results)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

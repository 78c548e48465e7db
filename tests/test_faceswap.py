"""facegen.features.faceswap on mini (with its pack): identity set, video checks, tracking with the pack's
localiser, smoothing, alignment, colour transfer, Poisson blending, training (loss falls, resume continues),
conversion with audio kept, and the bad-input errors. The generic-generator side (no pack, templates) is in
tests/test_faceswap_alignment.py and tests/test_faceswap_app.py."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from facegen.features import faceswap as fs

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "videos" / "sample-lena.mp4"
SILENT = ROOT / "assets" / "videos" / "short-silent.mp4"


@pytest.fixture(scope="module")
def pack(mini):
    from facegen.packs.pack import find_pack
    return find_pack(mini)


@pytest.fixture(scope="module")
def localiser(pack):
    return fs.pack_localiser(pack)


@pytest.fixture(scope="module")
def clip():
    """The first second of the lena sample: decoded frames + the renderer's true landmarks."""
    from facegen.world.videos import sample_frames
    frames, _ = fs.read_video_checked(SAMPLE)
    _, lm, yaw, smile = sample_frames("sample-lena", seconds=1.0)
    return frames[:24], lm, yaw


def test_identity_set_views_are_the_same_person_posed_differently(mini, pack):
    from facegen.engine.synthesis import synthesize
    from facegen.engine.latents import seeds_to_ws
    ws = seeds_to_ws(mini, [7], psi=0.7).numpy()[0]
    ds, note = fs.pack_directions(mini, pack)
    assert "yaw and smile" in note and "mini" in note
    imgs, vws = fs.identity_set(mini, ws, ds, n=12)
    assert imgs.shape == (12, 64, 64, 3) and vws.shape == (12, mini.num_ws, mini.w_dim)
    assert np.array_equal(imgs[0], synthesize(mini, ws[None])[0])           # view 0 is the face itself
    assert np.allclose(vws[:, 8:], ws[None, 8:])                             # fine layers untouched
    diffs = np.abs(imgs[1:].astype(float) - imgs[0]).mean((1, 2, 3))
    assert diffs.min() > 1.0                                                 # every view differs ...
    from facegen.world.predictor import load_world_predictor
    p = load_world_predictor().predict(imgs)
    assert np.std(p["yaw"]) > 0.1                                            # ... in pose
    assert np.std(p["skin_tone"]) < 0.1                                      # not in skin tone
    with pytest.raises(fs.InputError):
        fs.identity_set(mini, ws[:3], None, n=12)


def test_probe_reads_sample_videos_and_audio():
    info = fs.probe_video(SAMPLE)
    assert (info.width, info.height, info.fps, info.has_audio) == (160, 160, 24.0, True)
    assert abs(info.seconds - 5.0) < 0.1
    assert fs.probe_video(SILENT).has_audio is False


def test_bad_videos_give_clear_errors(tmp_path):
    with pytest.raises(fs.VideoError, match="not a supported video"):
        (tmp_path / "a.txt").write_text("hello")
        fs.probe_video(tmp_path / "a.txt")
    with pytest.raises(fs.VideoError, match="could not be read"):
        (tmp_path / "b.mp4").write_bytes(b"\x00garbage" * 100)
        fs.probe_video(tmp_path / "b.mp4")
    with pytest.raises(fs.VideoError, match="empty"):
        (tmp_path / "c.mp4").write_bytes(b"")
        fs.probe_video(tmp_path / "c.mp4")
    with pytest.raises(fs.VideoError, match="limit is 2 s"):
        fs.probe_video(SAMPLE, max_seconds=2)
    with pytest.raises(fs.VideoError, match="No video"):
        fs.probe_video(None)


def test_localiser_tracks_world_faces(clip, localiser, pack):
    from facegen.labels.base import load_labeller
    frames, lm_true, _ = clip
    assert fs.choose_detector(frames, localiser, load_labeller(pack.labeller)) == "localiser"
    assert fs.choose_detector(frames, None) == "dlib"                        # no localiser: dlib
    tr = fs.track_faces(frames, "localiser", localiser)
    assert tr.found.all()
    err = np.linalg.norm(tr.landmarks - lm_true, axis=-1)
    eyes_mouth = err[:, [0, 1, 3, 4]].mean()
    iod = np.linalg.norm(lm_true[:, 1] - lm_true[:, 0], axis=-1).mean()
    assert eyes_mouth < 0.1 * iod, (eyes_mouth, iod)


def test_world_framing_beats_feature_alignment(localiser):
    from facegen.world.localiser import fit_framing
    fit = fit_framing(localiser.points, n=300, seed=11, log=lambda *a: None)
    assert fit["framing_corner_error_px_at_64"] < 0.4 * fit["framing_corner_error_px_features_only"]
    lm = localiser.points * 64
    M = fs.align_transforms(lm[None], lm, 64, localiser.framing)   # the mean face is framed as it is
    assert np.abs(M[0, :, :2] - np.eye(2)).max() < 0.05 and np.abs(M[0, :, 2]).max() < 2


def test_no_face_video_is_refused(localiser):
    t = np.linspace(0, 1, 160)
    frames = np.stack([np.stack(list(np.meshgrid(t, t)) + [np.full((160, 160), k / 24)], -1) for k in range(24)])
    frames = (frames * 255).astype(np.uint8)
    with pytest.raises(fs.NoFaceInVideoError, match="No face"):
        fs.track_faces(frames, "localiser", localiser)
    with pytest.raises(fs.NoFaceInVideoError, match="No face"):
        fs.track_faces(frames[:4], "dlib")
    with pytest.raises(fs.InputError, match="no landmark localiser"):
        fs.track_faces(frames[:4], "localiser", None)


def test_smoothing_reduces_jitter_within_runs_only():
    rng = np.random.default_rng(0)
    lm = np.tile(np.array([[10.0, 10], [20, 10], [15, 15], [12, 20], [18, 20]]), (40, 1, 1))
    noisy = lm + rng.normal(0, 1, lm.shape)
    found = np.ones(40, bool)
    found[20] = False
    noisy[20] = 1000.0                                          # a frame without a face must not leak in
    sm = fs.smooth_landmarks(noisy, found, sigma=1.5)
    assert np.abs(sm[found] - lm[found]).std() < 0.6 * np.abs(noisy[found] - lm[found]).std()
    assert np.abs(sm[[19, 21]] - lm[[19, 21]]).max() < 5
    assert np.array_equal(sm[20], noisy[20])


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 64, (5, 2))
    a, s, t = 0.3, 1.7, np.array([5.0, -3.0])
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = s * src @ R.T + t
    M = fs.umeyama(src, dst)
    assert np.allclose(M[:, :2], s * R, atol=1e-9) and np.allclose(M[:, 2], t, atol=1e-9)
    assert np.allclose(fs.invert_affine(M) @ np.r_[dst[0], 1], src[0])


def test_reinhard_matches_masked_lab_statistics():
    from skimage.color import rgb2lab
    rng = np.random.default_rng(2)
    src = rng.integers(40, 200, (64, 64, 3)).astype(np.uint8)
    ref = np.clip(rng.normal([150, 90, 60], 12, (64, 64, 3)), 0, 255).astype(np.uint8)
    mask = fs.face_mask(64)
    out = fs.reinhard_lab(src, ref, mask)
    m = mask > 0.5
    lo, lr = rgb2lab(out)[m], rgb2lab(ref)[m]
    assert np.allclose(lo.mean(0), lr.mean(0), atol=1.5)
    assert np.allclose(lo.std(0), lr.std(0), rtol=0.15, atol=1.0)
    assert np.abs(fs.reinhard_lab(src, ref, mask, strength=0).astype(int) - src).max() <= 1


def test_poisson_blend_keeps_gradients_and_boundary():
    rng = np.random.default_rng(3)
    dst = rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)
    src = np.clip(dst.astype(int) + 30, 0, 255).astype(np.uint8)    # same gradients, brighter
    mask = fs.face_mask(64)
    out = fs.poisson_blend(src, dst, mask)
    keep = (src.astype(int) - dst == 30).all(-1) & (mask > 0.5)
    assert np.abs(out[keep].astype(int) - dst[keep]).mean() < 3        # brightness offset removed
    assert np.array_equal(out[mask <= 0.5], dst[mask <= 0.5])


def test_training_lowers_loss_and_resumes(tmp_path):
    t = np.linspace(-1, 1, 64)
    X, Y = np.meshgrid(t, t)
    ramps = [np.stack([0.5 + 0.4 * (np.cos(a) * X + np.sin(a) * Y)] * 2 + [np.full((64, 64), 0.5)], -1)
             for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
    fa = (np.stack(ramps) * 255).astype(np.uint8)                 # 12 ramps: their mean (the prior) is flat
    fb = 255 - fa
    st = fs.TrainState.new(seed=0)
    fs.train(st, fa, fb, max_steps=1, batch=4, seed=0)
    err = lambda: np.abs(fs.swap_faces(st.model, fa, 0).astype(float) - fa).mean()   # noqa: E731
    first = err()
    fs.train(st, fa, fb, max_steps=39, batch=4, seed=1)
    last = err()
    assert last < 0.75 * first, (first, last)
    path = st.save(tmp_path / "ckpt.pt")
    st2 = fs.TrainState.load(path)
    assert st2.step == 40 and len(st2.losses) == 40
    for a, b in zip(st.model.state_dict().values(), st2.model.state_dict().values()):
        assert torch.equal(a, b)
    fs.train(st2, fa, fb, max_steps=3, batch=4)
    assert st2.step == 43
    # A time budget stops training, on a clock that advances 0.1 s per reading (no wall-clock timing in tests;
    # bench/timing.py measures the real overshoot): 0.5 s allows at most 5 steps, 1 s more.
    from facegen.features.faceswap import autoencoder as ae
    from test_encoder import FakeClock
    done = {}
    for budget in (0.5, 1.0):
        before, steps = st2.seconds, st2.step
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ae, "time", FakeClock(0.1))
            fs.train(st2, fa, fb, seconds=budget, batch=4)
        done[budget] = st2.step - steps
        assert budget <= st2.seconds - before <= budget + 0.35, (budget, st2.seconds - before)   # <= 3 readings over
    assert 1 <= done[0.5] <= 5 and done[0.5] < done[1.0] <= 10, done


def test_ssim_measures_structure_and_trains():
    """ssim_map: 1 for identical images, lower for a blurred copy; the SSIM loss term trains."""
    from scipy.ndimage import gaussian_filter
    from facegen.world.render import render_batch
    faces, _ = render_batch(range(6), size=64)
    blurred = np.stack([gaussian_filter(f.astype(np.float32), (1.5, 1.5, 0)) for f in faces]).round().astype(np.uint8)
    x, y = (torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255 for a in (faces, blurred))
    torch.testing.assert_close(fs.ssim_map(x, x), torch.ones(6, 1, 64, 64))
    assert fs.ssim_map(x, y).mean() < 0.9
    st = fs.TrainState.new(seed=0)
    fs.train(st, faces, blurred, max_steps=2, batch=2, seed=0, ssim_weight=1.0)
    assert st.step == 2 and all(np.isfinite(v) for row in st.losses for v in row)


def test_input_region_hides_the_rest_from_the_encoder(tmp_path):
    """input_region='face': what lies outside the face region cannot change the output; the choice
    survives a checkpoint."""
    st, whole = fs.TrainState.new(seed=0, input_region="face"), fs.TrainState.new(seed=0)
    for model in (st.model, whole.model):           # the decoders' last layers start at zero: wake them
        for d in model.decoders:
            torch.nn.init.normal_(d[-1].weight, std=0.1)
    m = st.model.input_mask[0, 0].numpy()
    assert 0.05 < m.mean() < 0.5 and m.max() == 1.0
    x = torch.rand(2, 3, 64, 64)
    y = x.clone()
    y[:, :, torch.from_numpy(m == 0)] = torch.rand(2, 3, int((m == 0).sum()))
    for ident in (0, 1):
        torch.testing.assert_close(st.model(x, ident), st.model(y, ident))
    st2 = fs.TrainState.load(st.save(tmp_path / "ckpt.pt"))
    torch.testing.assert_close(st2.model.input_mask, st.model.input_mask)
    assert (whole.model(x, 0) - whole.model(y, 0)).abs().max() > 0      # without it, the rest matters


def test_convert_writes_mp4_with_same_frames_and_audio(tmp_path, clip, mini, pack, localiser):
    from facegen.packs.alignment import alignment_for
    frames, _, _ = clip
    short = tmp_path / "short.mp4"
    subprocess.run([fs.ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(SAMPLE), "-t", "1", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(short)], check=True)
    frames, info = fs.read_video_checked(short)
    assert info.has_audio
    tr = fs.track_faces(frames, "localiser", localiser)
    template = alignment_for(mini, pack)
    assert template.source == "generator" and "pack 'mini'" in template.note
    tr.transforms = fs.track_transforms(tr, template)
    points = template.at(64)
    st = fs.TrainState.new()
    crops = fs.align_crops(frames, tr.transforms, 64)
    fs.train(st, crops, crops, max_steps=2, batch=4, points=points)
    out, swapped, crops2 = fs.convert(frames, tr, st.model, points, "reinhard")
    assert out.shape == frames.shape and swapped.shape == crops.shape
    changed = np.abs(out.astype(int) - frames).mean((1, 2, 3))
    assert (changed[tr.found] > 0.5).all()
    corner = np.abs(out[:, :8, :8].astype(int) - frames[:, :8, :8]).max()
    assert corner == 0                                         # outside the face nothing changes
    path, audio = fs.write_result(out, info, tmp_path / "out.mp4")
    assert audio is True
    back, info2 = fs.read_video_checked(path)
    assert len(back) == len(frames) and info2.has_audio
    out2, _, _ = fs.convert(frames, tr, st.model, points, "seamless")
    assert out2.shape == frames.shape
    path2, audio2 = fs.write_result(out2, fs.probe_video(SILENT), tmp_path / "silent.mp4")
    assert audio2 is False and not fs.probe_video(path2).has_audio

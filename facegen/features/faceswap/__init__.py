"""Faceswap video: put a generated (or encoded) face, identity A, into a video of someone else.

The classic *faceswap* recipe (one shared encoder, one decoder per identity), with the training set for
the new identity made the way the original seeprettyface site made it: from a single latent. It works
on any generator: what a generator's feature pack adds (alignment template, landmark localiser,
attribute directions, a latent bank) is used when present, and a named fallback otherwise.

Modules, in the order a swap runs:

* :mod:`.video_io` -- checking, reading and writing videos, copying the audio;
* :mod:`.geometry` -- similarities (Umeyama), warps, aligned crops on the generator's template;
* :mod:`.tracking` -- landmarks per frame (dlib or a pack's localiser), smoothed over time;
* :mod:`.autoencoder` -- the shared-encoder / two-decoder model and its resumable training;
* :mod:`.blend` -- the swapped region, colour transfer, seamless cloning, pasting back;
* :mod:`.pipeline` -- identity A's views, preparing a video, converting it, the whole swap;
* :mod:`.cli` -- ``python -m facegen faceswap``.

Numpy + torch (+ scipy / scikit-image); no Gradio, nothing of the app, nothing of the face world. Typed
errors (:class:`VideoError`, :class:`NoFaceInVideoError`, both :class:`~facegen.engine.errors.InputError`)
carry the messages the app shows.
"""

from facegen.engine.errors import InputError
from facegen.features.faceswap.autoencoder import AUGMENT, CROP, FaceswapAE, TrainState, loss_weights, preview, \
    random_warp, ssim_map, swap_faces, train
from facegen.features.faceswap.blend import COLOR_MODES, REGIONS, face_mask, paste_back, poisson_blend, \
    reinhard_lab
from facegen.features.faceswap.geometry import Framing, align_crops, align_points, align_transforms, \
    invert_affine, resize_faces, umeyama, warp_affine
from facegen.features.faceswap.pipeline import Prepared, convert, default_identity, describe_fallbacks, \
    identity_set, load_track, pack_directions, prepare, save_prepared, swap_video, track_transforms
from facegen.features.faceswap.tracking import DETECTORS, Localiser, Track, choose_detector, load_localiser, \
    pack_localiser, smooth_landmarks, track_faces
from facegen.features.faceswap.video_io import MAX_FRAMES, MAX_SECONDS, MAX_SIDE, VIDEO_EXTS, NoFaceInVideoError, \
    VideoError, VideoInfo, ffmpeg_exe, mux_audio, probe_video, read_video_checked, sample_videos, video_key, \
    write_result, write_video

__all__ = ["InputError", "AUGMENT", "CROP", "FaceswapAE", "TrainState", "loss_weights", "preview", "random_warp",
           "ssim_map", "swap_faces", "train", "COLOR_MODES", "REGIONS", "face_mask", "paste_back", "poisson_blend",
           "reinhard_lab", "Framing", "align_crops", "align_points", "align_transforms", "invert_affine",
           "resize_faces", "umeyama", "warp_affine", "Prepared", "convert", "default_identity", "describe_fallbacks", "identity_set",
           "load_track", "pack_directions", "prepare", "save_prepared", "swap_video", "track_transforms",
           "DETECTORS", "Localiser", "Track", "choose_detector", "load_localiser", "pack_localiser",
           "smooth_landmarks", "track_faces", "MAX_FRAMES", "MAX_SECONDS", "MAX_SIDE", "VIDEO_EXTS",
           "NoFaceInVideoError", "VideoError", "VideoInfo", "ffmpeg_exe", "mux_audio", "probe_video",
           "read_video_checked", "sample_videos", "video_key", "write_result", "write_video"]

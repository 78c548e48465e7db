"""Typed errors raised by facegen.

Every failure a user can cause (a missing file, an offline Hub, a pickle that
is not a StyleGAN2 generator, a latent that does not fit) is one of these, with
a message written for a person: what went wrong and what to do about it. The
app turns them into ``gr.Error``; the CLI prints them without a traceback.
"""


class FacegenError(Exception):
    """Base class of every error facegen raises on purpose."""


class ModelNotFoundError(FacegenError):
    """A model source (path, Hub repo, registry name) does not exist or cannot be reached."""


class OfflineError(ModelNotFoundError):
    """The file is not cached locally and the Hub cannot be reached."""


class ChecksumError(ModelNotFoundError):
    """A downloaded or local file does not have the size / sha256 its registry entry names; it was
    not unpickled. The message names the file, the expected and actual values and how to fix it."""


class UnsupportedModelError(FacegenError):
    """The file exists but is not a generator facegen can load (e.g. StyleGAN3, StyleGAN1)."""


class UnsafePickleError(FacegenError):
    """A pickle asked for a global outside the allow-list; nothing from it was executed."""

    def __init__(self, global_name: str, source: str = "pickle"):
        self.global_name = global_name
        super().__init__(
            f"Refused to load {source}: it references '{global_name}', which is not on facegen's "
            "allow-list of StyleGAN network classes, tensors and numpy arrays. Nothing in the file "
            "was executed. If this is a real StyleGAN2 network, convert it with the original code "
            "to config.json + model.safetensors (or report the global so it can be reviewed)."
        )


class LatentError(FacegenError):
    """A latent file or array has the wrong shape, dtype or content."""


class InputError(FacegenError, ValueError):
    """A user-supplied value is out of range or malformed."""


class FingerprintMismatchWarning(UserWarning):
    """A latent or direction was made with a different generator than the one in use."""

"""facegen: the core of facegen studio -- StyleGAN2 networks, loaders, latents and tools.

No Gradio in here: the app (``app.py``, ``demos/``) is a thin UI over this package.

    >>> import facegen
    >>> G = facegen.load_generator("mini")           # or a .pkl, a folder, hf://owner/repo
    >>> ws = facegen.engine.latents.seeds_to_ws(G, "0-3", psi=0.7)
    >>> img = G.synthesis(ws, noise_mode="const")     # [4, 3, R, R] in about [-1, 1]
"""

from facegen.engine import __version__  # noqa: F401

from facegen.engine import errors
from facegen.engine import latents  # noqa: E402
from facegen.engine.errors import (FacegenError, FingerprintMismatchWarning, InputError, LatentError,  # noqa: E402
                     ModelNotFoundError, OfflineError, UnsafePickleError, UnsupportedModelError)
from facegen.engine.loaders import load_generator  # noqa: E402
from facegen.engine.discriminator import Discriminator  # noqa: E402
from facegen.engine.networks import Generator  # noqa: E402

__all__ = ["load_generator", "Generator", "Discriminator", "latents", "errors", "FacegenError",
           "ModelNotFoundError", "OfflineError", "UnsupportedModelError", "UnsafePickleError", "LatentError",
           "InputError", "FingerprintMismatchWarning", "__version__"]

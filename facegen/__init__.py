"""facegen: the core of facegen studio -- StyleGAN2 networks, loaders, latents and tools.

No Gradio in here: the app (``app.py``, ``demos/``) is a thin UI over this package.

    >>> import facegen
    >>> G = facegen.load_generator("mini")           # or a .pkl, a folder, hf://owner/repo
    >>> ws = facegen.latents.seeds_to_ws(G, "0-3", psi=0.7)
    >>> img = G.synthesis(ws, noise_mode="const")     # [4, 3, R, R] in about [-1, 1]
"""

__version__ = "0.1.0"

from . import errors, latents  # noqa: E402
from .errors import (FacegenError, FingerprintMismatchWarning, InputError, LatentError,  # noqa: E402
                     ModelNotFoundError, OfflineError, UnsafePickleError, UnsupportedModelError)
from .loaders import load_generator  # noqa: E402
from .networks import Discriminator, Generator  # noqa: E402

__all__ = ["load_generator", "Generator", "Discriminator", "latents", "errors", "FacegenError",
           "ModelNotFoundError", "OfflineError", "UnsupportedModelError", "UnsafePickleError", "LatentError",
           "InputError", "FingerprintMismatchWarning", "__version__"]

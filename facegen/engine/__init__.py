"""facegen.engine: the bottom layer -- networks, loaders, the Hub-native folder format, hub download /
push, registry, latents, fingerprint, device, errors. Knows nothing above it."""

__version__ = "0.2.0"

"""Pure torch models and their checkpoint loaders (Wav2Lip, FreeVC, WavLM, speaker encoder, S3FD).

Nothing here reads settings or the network: a loader takes a path and a device and returns
an eval-mode model, or raises :class:`ModelLoadError`.
"""
from .errors import ModelLoadError

__all__ = ["ModelLoadError"]

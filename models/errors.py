"""The one exception the model loaders raise."""
from __future__ import annotations


class ModelLoadError(Exception):
    """A checkpoint could not be turned into a model.

    The message names the file, says what is wrong (missing, unreadable, wrong keys or
    shapes) and, where it helps, what the file looks like instead.
    """

"""Shared fixtures: generated checkpoints on disk (official layouts, NOT trained weights)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


def load_case(name: str) -> "np.lib.npyio.NpzFile":
    return np.load(DATA / name)


@pytest.fixture(scope="session")
def generated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for session-wide generated checkpoints (written on first use)."""
    return tmp_path_factory.mktemp("weights")

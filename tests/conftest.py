"""Shared fixtures: generated checkpoints on disk (official layouts, NOT trained weights)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"

pytest_plugins = ["tests.gcs_emulator"]


def load_case(name: str) -> np.lib.npyio.NpzFile:
    return np.load(DATA / name)


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WEIGHTS_DIR written by the product's own `lipsync weights make-test` (2 WavLM layers
    to keep the suite fast), shared by the whole session. Treat it as read-only."""
    from service.commands.cli import main

    out = tmp_path_factory.mktemp("weights")
    assert main(["weights", "make-test", "--out", str(out), "--wavlm-layers", "2"]) == 0
    return out

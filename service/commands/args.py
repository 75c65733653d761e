"""Options several ``lipsync`` commands share, defined once."""
from __future__ import annotations

import argparse


def add_weights_dir(p: argparse.ArgumentParser) -> None:
    """``--weights-dir``: wins over ``$WEIGHTS_DIR`` (``cli.main`` applies it to the settings)."""
    p.add_argument("--weights-dir", default=None,
                   help="folder with the checkpoints (default $WEIGHTS_DIR, else ./weights)")

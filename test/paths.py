"""Data the tests read from outside the repository (never copied into it)."""

from __future__ import annotations

import os
from pathlib import Path

# Real LM-O frames sit beside the checkout (../shared/data/lmo); OCKD_LMO_DIR points elsewhere.
LMO = Path(
    os.environ.get(
        "OCKD_LMO_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lmo"
    )
)

# Real YCB-Video frames (the paper's benchmark) sit beside them too; OCKD_YCBV_DIR points elsewhere.
YCBV = Path(
    os.environ.get(
        "OCKD_YCBV_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ycbv"
    )
)

"""Test-wide settings: a hermetic cache under build/, the sample dataset, a headless backend.

The cache persists between runs (``build/test-cache``) so the sample is generated and a model
trained once, not once per test; tests of generation itself write into their own ``tmp_path``.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("CAPSTONE_CACHE", str(ROOT / "build" / "test-cache"))
os.environ.setdefault("CAPSTONE_DATASET", "sample")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("CAPSTONE_DATA_DIR", None)
os.environ.pop("CAPSTONE_MODEL", None)

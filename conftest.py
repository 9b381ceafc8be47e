"""Test-wide settings: a hermetic cache under build/, the sample dataset, a headless backend.

The cache persists between runs (``build/test-cache``) so the sample is generated and a model
trained once, not once per test; tests of generation itself write into their own ``tmp_path``.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# forced, not defaulted: an instructor's exported settings (their cache, their models, COCO) must
# not leak into the tests, nor the tests write into their cache
os.environ["CAPSTONE_CACHE"] = str(ROOT / "build" / "test-cache")
os.environ["CAPSTONE_DATASET"] = "sample"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("CAPSTONE_DATA_DIR", None)
os.environ.pop("CAPSTONE_MODEL", None)

"""Test-wide settings: a hermetic cache under build/, the sample dataset, a headless backend.

The cache persists between runs (``build/test-cache``) so the sample is generated and a model
trained once, not once per test; tests of generation itself write into their own ``tmp_path``.
"""

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
# forced, not defaulted: an instructor's exported settings (their cache, their models, COCO) must
# not leak into the tests, nor the tests write into their cache
os.environ["CAPSTONE_CACHE"] = str(ROOT / "build" / "test-cache")
os.environ["CAPSTONE_DATASET"] = "sample"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("CAPSTONE_DATA_DIR", None)
os.environ.pop("CAPSTONE_MODEL", None)


@pytest.fixture(scope="module")
def coco_format_folder(tmp_path_factory):
    """A small COCO-format folder with no ``scene`` records, as the real captions file has none
    (one a test module: a run may write derived caches beside it)."""
    from capstone.sample import write_sample

    folder = write_sample(tmp_path_factory.mktemp("coco") / "data", seed=3, n_images=400)
    captions = folder / "captions_train2014.json"
    coco = json.loads(captions.read_text(encoding="utf-8"))
    for image in coco["images"]:
        del image["scene"]
    captions.write_text(json.dumps(coco), encoding="utf-8")
    return folder

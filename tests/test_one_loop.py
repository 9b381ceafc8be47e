"""One training loop: notebook 4's loop cell and the core's epoch give the same weights.

The notebook's own cells (the model, the optimiser built from the settings, the loop) run with
``epochs=1`` against :func:`capstone.course.train.train_epoch` from the same triples, seed and
initial weights; only the curves and the checkpoint's file are stood in for.
"""

import json
from pathlib import Path

import noggin
import numpy as np
import pytest
from test_triples import DATASET, EMBEDDINGS, TEXT

from capstone.course.image import ImageEmbedder
from capstone.course.train import PRESETS, make_optimizer, train_epoch
from capstone.course.triples import epoch_triples

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_training.ipynb"


def cell_containing(cells, marker: str) -> str:
    """The source of the one code cell that contains ``marker``, IPython magics left out."""
    found = [cell for cell in cells if marker in cell]
    assert len(found) == 1, f"notebook 4 needs one code cell with {marker!r}, has {len(found)}"
    return "\n".join(line for line in found[0].splitlines() if not line.startswith("%"))


class Curves(noggin.LiveLogger):
    """The notebook's LivePlot without drawing."""

    def __init__(self, metrics=()):
        super().__init__()

    def close(self):
        pass


def notebook_epoch(settings) -> list:
    """The weights after the notebook's loop ran one epoch with ``settings``."""
    cells = ["".join(cell["source"]) for cell in json.loads(NOTEBOOK.read_text())["cells"]
             if cell["cell_type"] == "code"]
    names = {}
    exec(cell_containing(cells, "%matplotlib inline"), names)  # the notebook's imports
    names.update(dataset=DATASET, text=TEXT, caption_embeddings=EMBEDDINGS, settings=settings,
                 LivePlot=Curves, default_model_path=lambda name: None)  # no file written
    # the exercises' answers (the loop calls train_step, whose statements are the core's body)
    for marker in ("import mygrad", "def batch_loss(", "def train_step(",
                   "model = ImageEmbedder(", "optim = ", "for epoch in range("):
        exec(cell_containing(cells, marker), names)
    assert names["epoch"] == 1
    return [parameter.data.copy() for parameter in names["model"].parameters]


def core_epoch(settings) -> list:
    """The weights after :func:`train_epoch` ran once on :func:`epoch_triples`, from scratch."""
    model = ImageEmbedder(DATASET.features.shape[1], TEXT.dim, seed=settings.seed)
    optim = make_optimizer(settings, model.parameters)
    rng = np.random.default_rng(settings.seed)
    triples = epoch_triples(DATASET, EMBEDDINGS, settings, rng)
    train_epoch(model, optim, DATASET.features, EMBEDDINGS, triples, settings, Curves())
    return [parameter.data.copy() for parameter in model.parameters]


@pytest.mark.parametrize("preset", ["margin", "course"])  # Adam, and SGD with momentum
def test_the_notebook_loop_and_the_core_epoch_give_the_same_weights(preset):
    settings = PRESETS[preset].replace(epochs=1, n_candidates=10, seed=3)
    untrained = [p.data.copy() for p in ImageEmbedder(512, TEXT.dim, seed=3).parameters]
    notebook, core = notebook_epoch(settings), core_epoch(settings)
    for before, ours, theirs in zip(untrained, core, notebook):
        assert not np.array_equal(before, ours)  # the epoch trained
        np.testing.assert_array_equal(ours, theirs, err_msg="notebook 4's loop and train_epoch "
                                      "no longer train alike: make them the same statements")

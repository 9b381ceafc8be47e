"""Every "Try this" does what it says, and the prose's claims hold: each checked on a run.

The "Try this" cell that ends each numbered notebook carries, in its metadata ``try_this``, one
entry per numbered exercise; a prose cell that draws a comparison may carry ``claims``. An entry:

``item``
    The exercise's number in the list (``claims``: a short name).
``edits``
    What the student changes: ``{"find": text, "replace": text}`` replaces ``text`` in the one
    code cell that contains it; ``{"after": text, "insert": code}`` adds a code cell after it.
``test_edits``
    Edits the test adds after the student's, only to keep the run short (fewer epochs); the
    observation must hold on the short run too.
``until``
    Text of the last code cell to run; the cells after it are left out (run only what is needed).
``skip``
    Texts of code cells the observation does not need (slow ones), left out.
``observe``
    Code run after those cells: ``assert``s of what the exercise says the student will see.
``datasets``
    ``["sample"]`` (default) and/or ``"coco"``: the COCO code path on a small COCO-format folder.

Each entry runs on a copy of the notebook in a fresh kernel, on the sample dataset (and the COCO
code path where it says so); nothing is saved over the shared model (see notebook 4).
"""

import re
import shutil
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(path.name for path in NOTEBOOK_DIR.glob("0[1-6]_*.ipynb"))
CELL_TIMEOUT_S = 600


def read(name):
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def entries(name, key):
    """``(cell, entry)`` for every entry under ``key`` in the notebook's markdown cells."""
    return [(cell, entry) for cell in read(name).cells if cell.cell_type == "markdown"
            for entry in cell.metadata.get(key, [])]


def numbered_items(source: str) -> list[int]:
    """The numbers of a markdown list's items (``1.``, ``2.``, ...) after ``## Try this``."""
    section = source.split("## Try this", 1)[-1]
    return [int(number) for number in re.findall(r"^(\d+)\. ", section, flags=re.MULTILINE)]


def the_cell(cells, text, name):
    found = [index for index, cell in enumerate(cells)
             if cell.cell_type == "code" and text in cell.source]
    assert len(found) == 1, f"{name}: {len(found)} code cells contain {text!r}, need exactly 1"
    return found[0]


def applied(name, entry):
    """A copy of the notebook with the entry's edits, cut after ``until``, with ``observe``."""
    notebook = read(name)
    cells = notebook.cells
    for edit in entry.get("edits", []) + entry.get("test_edits", []):
        if "find" in edit:
            index = the_cell(cells, edit["find"], name)
            cells[index].source = cells[index].source.replace(edit["find"], edit["replace"])
        else:
            index = the_cell(cells, edit["after"], name)
            cells.insert(index + 1, nbformat.v4.new_code_cell(edit["insert"]))
    last = the_cell(cells, entry["until"], name)
    skipped = {the_cell(cells, text, name) for text in entry.get("skip", [])}
    kept = [cell for index, cell in enumerate(cells[:last + 1])
            if cell.cell_type == "code" and index not in skipped]
    notebook.cells = kept + [nbformat.v4.new_code_cell(entry["observe"])]
    for cell in notebook.cells:
        cell.pop("id", None)
    notebook.nbformat_minor = 4  # the cut copy's cells carry no ids
    return notebook


def execute(notebook):
    """Run a notebook in a fresh kernel in the notebooks' folder; the error's name, or None."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute()
    except CellExecutionError as error:
        return error.ename, str(error)
    return None, ""


def cases(key):
    found = []
    for name in NOTEBOOKS:
        for _, entry in entries(name, key):
            for dataset in entry.get("datasets", ["sample"]):
                found.append(pytest.param(name, entry, dataset,
                                          id=f"{name[:2]}-{entry['item']}-{dataset}"))
    return found


@pytest.fixture(scope="session")
def shared_sample():
    """The tests' cache (conftest.py), with the sample dataset and GloVe made in it once."""
    import os

    from capstone.data.dataset import load_dataset
    from capstone.data.glove import load_glove

    load_glove(load_dataset("sample").glove_name)
    return Path(os.environ["CAPSTONE_CACHE"])


@pytest.fixture(scope="session")
def shared_model(shared_sample, tmp_path_factory):
    """The default-settings model of the whole sample, as ``sample.npz``."""
    from test_database import full_sample_model_path

    path = tmp_path_factory.mktemp("model") / "sample.npz"
    shutil.copy(full_sample_model_path(), path)
    return path


def run_entry(name, entry, dataset, request, tmp_path, monkeypatch):
    if dataset == "sample":  # made before the cache is pointed elsewhere
        shared = request.getfixturevalue("shared_sample")
        model = request.getfixturevalue("shared_model")
    # a cache of the run's own: an exercise never writes into the cache other tests share
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "cache"))
    if dataset == "coco":
        monkeypatch.setenv("CAPSTONE_DATASET", "coco")
        monkeypatch.setenv("CAPSTONE_DATA_DIR", str(request.getfixturevalue("coco_format_folder")))
    else:  # the sample and GloVe's word list, made once in the tests' cache, are only read
        (tmp_path / "cache").mkdir()
        for folder in ("sample", "glove"):
            if (shared / folder).is_dir():
                (tmp_path / "cache" / folder).symlink_to(shared / folder)
        # the shared model a class has (trained once by the tests), as a copy the run may replace
        (tmp_path / "cache" / "models").mkdir()
        shutil.copy(model, tmp_path / "cache" / "models")
    ename, message = execute(applied(name, entry))
    assert ename is None, f"{name} {entry['item']} ({dataset}): {message[-3000:]}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_try_this_item_has_a_change_and_an_observation(name):
    last = read(name).cells[-1]
    items = numbered_items(last.source)
    specified = [entry["item"] for entry in last.metadata.get("try_this", [])]
    assert items and sorted(specified) == items, \
        f"{name}: Try this lists {items}, its metadata try_this specifies {sorted(specified)}"
    for entry in last.metadata["try_this"]:
        assert entry.get("edits") and entry.get("observe"), f"{name} {entry['item']}: incomplete"


@pytest.mark.parametrize("name, entry, dataset", cases("try_this"))
def test_try_this_does_what_it_says(name, entry, dataset, request, tmp_path, monkeypatch):
    run_entry(name, entry, dataset, request, tmp_path, monkeypatch)


@pytest.mark.parametrize("name, entry, dataset", cases("claims"))
def test_prose_claim_holds(name, entry, dataset, request, tmp_path, monkeypatch):
    run_entry(name, entry, dataset, request, tmp_path, monkeypatch)


def test_an_edit_that_no_longer_applies_is_named():
    entry = {"item": 9, "edits": [{"find": "no such line", "replace": "x"}], "until": "import",
             "observe": "pass"}
    with pytest.raises(AssertionError, match="0 code cells contain 'no such line'"):
        applied(NOTEBOOKS[0], entry)

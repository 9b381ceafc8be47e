"""The committed notebooks are clean and thin; the runner executes, exports and names failures.

Executing the course notebooks themselves is ``pytest --nbmake notebooks`` (see the Makefile).
"""

import ast
import sys
from pathlib import Path

import nbformat
import pytest

from capstone.apps.notebooks import NotebookError, run_notebook, strip_notebook

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = (
    "01_data_exploration.ipynb",
    "02_text_embedding.ipynb",
    "03_triples.ipynb",
    "04_training.ipynb",
    "05_search.ipynb",
    "06_going_further.ipynb",
    "app.ipynb",
)
ALLOWED_IMPORTS = {"capstone", "numpy", "matplotlib", "IPython", "ipywidgets", "mygrad", "mynn"}
MAX_CELL_LINES = 12
MAX_ALGORITHM_LINES = 30  # a cell tagged "algorithm" writes out what the course teaches
# What each notebook must show in its own code cells (the algorithm, not only a package call).
TAUGHT = {
    "02_text_embedding.ipynb": ["log10", "np.linalg.norm(", "def idf(", "def se_text("],
    "03_triples.ipynb": ["rng.choice(", "np.argmax("],
    "04_training.ipynb": ["margin_ranking_loss(", ".backward(", ".step(", "set_train_batch(",
                          "set_test_batch("],
    "05_search.ipynb": ["embeddings @ query", "np.argpartition(", "np.argsort("],
}


def has_outputs(notebook) -> bool:
    """Whether any code cell of a (read) notebook has outputs or an execution count."""
    return any(cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
               for cell in notebook.cells)


def read(name):
    path = NOTEBOOK_DIR / name
    assert path.is_file(), f"{path} is missing"
    return nbformat.read(path, as_version=4)


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def imported_modules(source: str) -> set:
    """Top-level names imported by a cell (IPython magics and shell lines left out)."""
    lines = source.splitlines()
    python = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
    modules = set()
    for node in ast.walk(ast.parse(python)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add("capstone" if node.level else node.module.split(".")[0])
    return modules


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name):
    notebook = read(name)
    assert code_cells(notebook), f"{name} has no code"
    assert not has_outputs(notebook), f"run `python -m capstone.notebooks strip notebooks/{name}`"
    assert "widgets" not in notebook.metadata


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_cells_are_short_and_import_only_the_package_and_basics(name):
    for index, cell in enumerate(code_cells(read(name))):
        lines = [line for line in cell.source.splitlines() if line.strip()]
        limit = MAX_ALGORITHM_LINES if "algorithm" in cell.metadata.get("tags", []) else MAX_CELL_LINES
        assert len(lines) <= limit, f"{name} code cell {index}: move logic into capstone"
        outside = imported_modules(cell.source) - ALLOWED_IMPORTS - sys.stdlib_module_names
        assert not outside, f"{name} code cell {index} imports {sorted(outside)}"


@pytest.mark.parametrize("name", sorted(TAUGHT))
def test_the_algorithm_is_written_out_where_it_is_taught(name):
    taught = [cell.source for cell in code_cells(read(name))
              if "algorithm" in cell.metadata.get("tags", [])]
    assert taught, f"{name} has no cell tagged 'algorithm'"
    for needle in TAUGHT[name]:
        assert any(needle in source for source in taught), f"{name}: no {needle!r} in its cells"


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n[0].isdigit()])
def test_notebook_opens_with_what_it_teaches_and_ends_with_exercises(name):
    cells = read(name).cells
    assert "What you will learn" in cells[0].source or name.startswith("01"), name
    assert cells[-1].cell_type == "markdown" and "## Try this" in cells[-1].source, name
    assert cells[-1].source.count("\n1. ") + cells[-1].source.count("\n2. ") >= 2, name


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_tells_a_story(name):
    notebook = read(name)
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    prose = [cell for cell in notebook.cells if cell.cell_type == "markdown"]
    assert len(prose) >= len(code_cells(notebook)) // 3, f"{name}: explain the code in prose"


def test_imported_modules_sees_plain_relative_and_dotted_imports():
    source = "%matplotlib inline\nimport numpy as np, os.path\nfrom scipy import stats\n"
    source += "!ls\nfrom . import x"
    assert imported_modules(source) == {"numpy", "os", "scipy", "capstone"}


def test_strip_removes_outputs_and_counts_and_is_idempotent(tmp_path):
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=3)
    result = nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)
    cell.outputs = [result]
    cell.metadata["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00Z"}
    notebook.cells = [cell]
    notebook.metadata["widgets"] = {"state": {}}
    path = tmp_path / "nb.ipynb"
    nbformat.write(notebook, path)
    assert strip_notebook(path) is True
    stripped = nbformat.read(path, as_version=4)
    assert not has_outputs(stripped) and "widgets" not in stripped.metadata
    assert stripped.cells[0].source == "1 + 1" and "execution" not in stripped.cells[0].metadata
    assert strip_notebook(path) is False


def test_run_names_the_failing_cell_and_keeps_the_partial_copy(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("import os\nprint(os.getcwd())"),
        nbformat.v4.new_code_cell("\nboom = 1\n1 / 0"),
        nbformat.v4.new_code_cell("print('not reached')"),
    ]
    folder = tmp_path / "nbs"
    folder.mkdir()
    nbformat.write(notebook, folder / "bad.ipynb")
    with pytest.raises(NotebookError, match=r"bad.ipynb: cell 1 \(boom = 1\).*ZeroDivisionError"):
        run_notebook(folder / "bad.ipynb", tmp_path / "out")
    executed = nbformat.read(tmp_path / "out" / "bad.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == str(folder.resolve())
    assert not executed.cells[2].outputs
    assert "ZeroDivisionError" in (tmp_path / "out" / "bad.html").read_text()


def test_run_refuses_a_missing_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebook"):
        run_notebook(tmp_path / "nope.ipynb", tmp_path / "out")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_the_coco_dataset_path(name, coco_format_folder, tmp_path, monkeypatch):
    # the `coco` code path end to end: CAPSTONE_DATA_DIR, no scene records, a fresh cache
    monkeypatch.setenv("CAPSTONE_DATASET", "coco")
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(coco_format_folder))
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "cache"))
    executed = nbformat.read(run_notebook(NOTEBOOK_DIR / name, tmp_path / "out"), as_version=4)
    outputs = [output for cell in code_cells(executed) for output in cell.outputs]
    assert outputs and not [output for output in outputs if output.output_type == "error"]


BARE_CHECKS = {"allclose", "array_equal", "isclose", "array_equiv"}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_check_is_a_bare_expression(name):
    # `np.allclose(a, b)` alone prints False and the notebook runs on: a check must be able to fail
    for index, cell in enumerate(code_cells(read(name))):
        lines = cell.source.splitlines()
        python = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
        for node in ast.parse(python).body:
            call = node.value if isinstance(node, ast.Expr) else None
            called = getattr(getattr(call, "func", None), "attr", None)
            assert called not in BARE_CHECKS, (
                f"{name} code cell {index}: a bare {called}(...) cannot fail; assert it "
                "(capstone.teaching.checks.assert_close says what differs)")

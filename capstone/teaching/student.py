"""The student edition of the notebooks, and grading a folder of completed ones.

The instructor notebooks in ``notebooks/`` are the one source. Each exercise is an nbgrader
*solution cell* whose answer sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``, followed
by an nbgrader *autograded test cell* that calls a check of :mod:`capstone.teaching.checks`.

``python -m capstone student [--out build/student]``
    Writes the student edition with nbgrader's own preprocessors: ``ClearSolutions`` (each answer
    becomes ``# YOUR CODE HERE`` / ``raise NotImplementedError()``), ``ClearOutput`` and
    ``LockCells`` (check cells read-only). Every other cell is kept as it is.
``python -m capstone grade DIR [--csv PATH]``
    Grades ``DIR/<student>/**/NN_name.ipynb`` (or the notebooks directly in ``DIR``, one student):
    for each notebook, a fresh kernel runs the instructor's import cells, the student's answer
    cells (found by their nbgrader ``grade_id``) and the *instructor's* check cells (as nbgrader's
    autograder restores them), so an edited check grades nothing. Only the fixed inputs of the
    checks run, never the whole notebook. Prints a student x exercise table and writes it as CSV,
    with each failure's message in a second CSV beside it.

Grading runs the students' code, as any autograder does: grade untrusted work in a container.
"""

from __future__ import annotations

import ast
import subprocess
import csv
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

SOURCE_DIR = Path(__file__).resolve().parents[2] / "notebooks"
STUDENT_DIR = Path("build") / "student"
CELL_TIMEOUT_S = 120
NOT_ANSWERED = "not answered (NotImplementedError)"


@dataclass(frozen=True)
class Exercise:
    """One exercise: its notebook, the answer cell's and the check cell's nbgrader ``grade_id``."""

    notebook: str
    answer_id: str
    check_id: str

    @property
    def label(self) -> str:
        """``"02 idf"``: the notebook's number and the answer's name."""
        return f"{self.notebook[:2]} {self.answer_id}"


def nbgrader_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def is_answer(cell) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def is_check(cell) -> bool:
    return bool(nbgrader_meta(cell).get("grade")) and cell.cell_type == "code"


def exercises_of(path) -> list[Exercise]:
    """The exercises of an instructor notebook, in order (each answer cell, the check after it)."""
    notebook = nbformat.read(path, as_version=4)
    found, answer = [], None
    for cell in notebook.cells:
        if is_answer(cell):
            answer = nbgrader_meta(cell)["grade_id"]
        elif is_check(cell):
            if answer is None:
                raise ValueError(f"{Path(path).name}: check {nbgrader_meta(cell)['grade_id']!r} "
                                 "follows no answer cell")
            found.append(Exercise(Path(path).name, answer, nbgrader_meta(cell)["grade_id"]))
            answer = None
    return found


def all_exercises(source_dir=SOURCE_DIR) -> list[Exercise]:
    """Every exercise of every numbered notebook in ``source_dir``."""
    return [exercise for path in sorted(Path(source_dir).glob("[0-9]*.ipynb"))
            for exercise in exercises_of(path)]


# -- the student edition ---------------------------------------------------------------------------
def student_notebook(notebook):
    """A copy of an instructor notebook (``NotebookNode``), the answers cleared by nbgrader."""
    from nbgrader.preprocessors import ClearOutput, ClearSolutions, LockCells

    notebook = nbformat.from_dict(notebook)
    for preprocessor in (ClearSolutions(), ClearOutput(), LockCells()):
        notebook, _ = preprocessor.preprocess(notebook, {})
    return notebook


def write_student_edition(out_dir=STUDENT_DIR, source_dir=SOURCE_DIR) -> list[Path]:
    """Write every notebook of ``source_dir`` to ``out_dir``, the exercises' answers cleared.

    Returns the written paths. Notebooks without exercises are copied unchanged.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    paths = sorted(source_dir.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks in {source_dir}: run this from the project's "
                                "checkout (the instructor notebooks are its notebooks/ folder)")
    if out_dir.resolve() == source_dir.resolve():
        raise ValueError(f"the student edition must not overwrite the instructor notebooks in "
                         f"{source_dir}: give another --out folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        if any(is_answer(cell) for cell in notebook.cells):
            nbformat.write(student_notebook(notebook), out_dir / path.name)
        else:
            shutil.copyfile(path, out_dir / path.name)
        written.append(out_dir / path.name)
    return written


# -- grading ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grade:
    """One student's result on one exercise: ``"pass"``, ``"fail"`` or ``"missing"``."""

    student: str
    exercise: Exercise
    result: str
    message: str = ""


def is_import_cell(cell) -> bool:
    """Whether a code cell only imports (and runs IPython magics): what the answers may rely on."""
    if cell.cell_type != "code":
        return False
    lines = [line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        body = ast.parse("\n".join(lines)).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body)


def grading_notebook(instructor, submitted):
    """The cells that grade one notebook: the instructor's imports, the student's answer cells and
    the instructor's checks. Returns ``(notebook, {check cell index: exercise's answer id})``."""
    answers = {nbgrader_meta(cell).get("grade_id"): cell for cell in submitted.cells
               if is_answer(cell)}
    cells, checks = [], {}
    for cell in instructor.cells:
        if is_import_cell(cell):
            cells.append(nbformat.v4.new_code_cell(cell.source))
        elif is_answer(cell):
            grade_id = nbgrader_meta(cell)["grade_id"]
            missing = f"the answer cell {grade_id!r} is missing from the notebook"
            source = answers[grade_id].source if grade_id in answers else (
                f"raise LookupError({missing!r})")
            cells.append(nbformat.v4.new_code_cell(source, metadata={"answer": grade_id}))
        elif is_check(cell):
            checks[len(cells)] = nbgrader_meta(cell)["grade_id"]
            cells.append(nbformat.v4.new_code_cell(cell.source))
    notebook = nbformat.v4.new_notebook(cells=cells, metadata=instructor.metadata)
    return notebook, checks


def error_of(cell) -> str | None:
    """The one error a cell raised, as ``Name: message``; ``None`` if it raised none."""
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            if output.ename == "NotImplementedError" and not output.evalue:
                return NOT_ANSWERED
            return f"{output.ename}: {output.evalue}" if output.evalue else output.ename
    return None


def grade_notebook(path, student: str, source_dir=SOURCE_DIR, *, timeout=CELL_TIMEOUT_S):
    """Grade one completed notebook against the instructor notebook of the same name.

    Returns one :class:`Grade` per exercise of that notebook (none for a notebook without).
    """
    from nbclient import NotebookClient

    path = Path(path)
    instructor_path = Path(source_dir) / path.name
    exercises = exercises_of(instructor_path) if instructor_path.is_file() else []
    if not exercises:
        return []
    try:
        submitted = nbformat.read(path, as_version=4)
    except Exception as error:  # a corrupt file grades as missing, not as a crash of the grader
        return [Grade(student, exercise, "missing", f"unreadable notebook: {error}")
                for exercise in exercises]
    notebook, checks = grading_notebook(nbformat.read(instructor_path, as_version=4), submitted)
    with tempfile.TemporaryDirectory(prefix="capstone-grade-") as folder:
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                allow_errors=True, resources={"metadata": {"path": folder}})
        try:
            client.execute(stderr=subprocess.DEVNULL)  # the kernel's own log lines, not a cell's
        except Exception as error:  # a timeout or a dead kernel: what ran so far still counts
            failure = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        else:
            failure = None
    answer_errors = {cell.metadata["answer"]: error_of(cell) for cell in notebook.cells
                     if "answer" in cell.metadata}
    grades, by_check = [], {exercise.check_id: exercise for exercise in exercises}
    for index, check_id in checks.items():
        exercise = by_check[check_id]
        cell = notebook.cells[index]
        executed = cell.get("execution_count") is not None
        error = error_of(cell) if executed else (failure or "not run")
        answer_error = answer_errors.get(exercise.answer_id)
        if answer_error and answer_error.startswith("LookupError"):
            grades.append(Grade(student, exercise, "missing", answer_error))
        elif error:
            if answer_error and answer_error != error:
                error = f"the answer cell raised {answer_error}; then the check: {error}"
            grades.append(Grade(student, exercise, "fail", error))
        else:
            grades.append(Grade(student, exercise, "pass"))
    return grades


def submissions(folder) -> dict[str, list[Path]]:
    """``{student: notebooks}``: ``folder/<student>/**/*.ipynb``, or ``folder``'s own notebooks as
    one student named after the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}: give the folder of the students' notebooks")
    found = {}
    own = sorted(folder.glob("*.ipynb"))
    if own:
        found[folder.resolve().name] = own
    for student in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        notebooks = sorted(path for path in student.rglob("*.ipynb")
                           if ".ipynb_checkpoints" not in path.parts)
        if notebooks:
            found[student.name] = notebooks
    if not found:
        raise FileNotFoundError(
            f"no notebooks in {folder}: expected {folder}/<student>/NN_name.ipynb")
    return found


def grade_folder(folder, source_dir=SOURCE_DIR, *, timeout=CELL_TIMEOUT_S) -> list[Grade]:
    """Grade every student's notebooks; an exercise whose notebook a student lacks is missing."""
    exercises = all_exercises(source_dir)
    grades = []
    for student, paths in submissions(folder).items():
        found = {}
        for path in paths:
            for grade in grade_notebook(path, student, source_dir, timeout=timeout):
                found.setdefault(grade.exercise, grade)
        grades += [found.get(exercise) or Grade(student, exercise, "missing",
                                                f"no {exercise.notebook} handed in")
                   for exercise in exercises]
    return grades


def grade_table(grades: list[Grade]) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)``: one row per student, one column per exercise, then the score."""
    exercises = list(dict.fromkeys(grade.exercise for grade in grades))
    students = list(dict.fromkeys(grade.student for grade in grades))
    result = {(grade.student, grade.exercise): grade.result for grade in grades}
    header = ["student", *(exercise.label for exercise in exercises), "score"]
    rows = []
    for student in students:
        cells = [result.get((student, exercise), "missing") for exercise in exercises]
        rows.append([student, *cells, f"{cells.count('pass')}/{len(cells)}"])
    return header, rows


def format_grades(grades: list[Grade]) -> str:
    """The table, aligned, and under it every failure's message."""
    header, rows = grade_table(grades)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(value).ljust(width) for value, width in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    failures = [grade for grade in grades if grade.result != "pass"]
    if failures:
        lines += ["", "why:"]
        lines += [f"{grade.student}, {grade.exercise.label}: "
                  + grade.message.replace("\n", "\n    ")
                  for grade in failures]
    return "\n".join(lines)


def write_grades(grades: list[Grade], path) -> tuple[Path, Path]:
    """Write the table to ``path`` (CSV); each result, message to ``<stem>_messages.csv``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header, rows = grade_table(grades)
    with path.open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([header, *rows])
    messages = path.with_name(f"{path.stem}_messages.csv")
    with messages.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "notebook", "exercise", "check", "result", "message"])
        for grade in grades:
            writer.writerow([grade.student, grade.exercise.notebook, grade.exercise.answer_id,
                             grade.exercise.check_id, grade.result, grade.message])
    return path, messages

"""The student edition, its checks and the grader: answers cleared, checks that fail and say why.

Grading runs only each notebook's imports, answer cells and checks (fixed small inputs), one
kernel per notebook: the catalogue of past mistakes costs a kernel start each, not a notebook run.
"""

import csv
import re
import shutil

import nbformat
import numpy as np
import pytest

from capstone.apps.cli import main
from capstone.apps.notebooks import NotebookError, run_notebook
from capstone.teaching import checks
from capstone.teaching.student import (NOT_ANSWERED, SOURCE_DIR, all_exercises, exercises_of,
                                       grade_folder, grade_notebook, is_answer, is_check,
                                       nbgrader_meta)

EXERCISES = ["01 captions_per_image", "02 idf", "02 se_text", "03 hard_negative", "04 batch_loss",
             "04 train_step", "05 top_k"]
STUB = "# YOUR CODE HERE\n    raise NotImplementedError()"

# The mistakes past student capstones made: (name, notebook, answer cell, replaced, by, the check
# that must fail, what its message must say). Each is applied to a copy of the solution.
MISTAKES = [
    ("natural log instead of log10", "02_text_embedding.ipynb", "idf",
     "np.log10(N / containing) if containing else np.log10(N)",
     "np.log(N / containing) if containing else np.log(N)", "check_idf", r"natural log.*log10"),
    ("IDF over one caption", "02_text_embedding.ipynb", "se_text", "idf(word, caption_words)",
     "idf(word, [set(tokenize(caption))])", "check_se_text",
     r"not finite.*over the caption itself"),
    ("IDF over one batch of captions", "02_text_embedding.ipynb", "se_text",
     "idf(word, caption_words)", "idf(word, caption_words[:32])", "check_se_text",
     r"first differing value.*expected.*got.*not one caption, not a batch"),
    ("se_text not normalised", "02_text_embedding.ipynb", "se_text",
     "return vector / np.linalg.norm(vector)", "return vector", "check_se_text",
     r"length \d.*expected 1.*unit length"),
    ("normalised per batch instead of per row", "04_training.ipynb", "batch_loss",
     "mg.sum(x**2, axis=1, keepdims=True)", "mg.sum(x**2)", "check_batch_loss",
     r"sim_good.*first differing value.*each row.*not the whole batch"),
    ("the easiest negative instead of the hardest", "03_triples.ipynb", "hard_negative",
     "np.argmax(similarity)", "np.argmin(similarity)", "check_hard_negative",
     r"expected image \d+.*the least similar one \(the easiest\).*MOST similar"),
    ("a negative from the caption's own image", "03_triples.ipynb", "hard_negative",
     "train_ids[train_ids != own_image]", "train_ids", "check_hard_negative",
     r"returned the caption's own image 10.*without the caption's own image"),
    ("top-k with an ascending sort", "05_search.ipynb", "top_k",
     "return best[np.argsort(-scores[best])]", "return best[np.argsort(scores[best])]",
     "check_top_k", r"first difference at position 0.*ascending sort"),
    ("no optim.step()", "04_training.ipynb", "train_step", "    optim.step()\n", "",
     "check_train_step", r"M and b did not change.*optim.step\(\) applies them"),
    ("the loss with its sign reversed", "04_training.ipynb", "batch_loss",
     "margin_ranking_loss(sim_good, sim_bad, 1, margin)",
     "margin_ranking_loss(sim_bad, sim_good, 1, margin)", "check_batch_loss",
     r"loss of the batch.*expected.*got.*the sign: .*bad above good"),
]


def read(path):
    return nbformat.read(path, as_version=4)


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    assert main(["student", "--out", str(out)]) == 0
    return out


def test_every_exercise_is_followed_by_its_check():
    assert [exercise.label for exercise in all_exercises()] == EXERCISES
    for path in sorted(SOURCE_DIR.glob("0[1-5]*.ipynb")):
        cells = read(path).cells
        for index, cell in enumerate(cells):
            if is_answer(cell):
                assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
                assert is_check(cells[index + 1]), f"{path.name} cell {index}: no check after it"
                assert "check_" in cells[index + 1].source


def test_the_student_edition_clears_the_answers_and_keeps_everything_else(student_dir):
    for path in sorted(SOURCE_DIR.glob("*.ipynb")):
        instructor, student = read(path), read(student_dir / path.name)
        assert len(student.cells) == len(instructor.cells), path.name
        for ours, theirs in zip(instructor.cells, student.cells):
            if is_answer(ours):
                solution = ours.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
                assert STUB in theirs.source and "SOLUTION" not in theirs.source
                assert ours.source.split("### BEGIN SOLUTION")[0] in theirs.source  # def, docstring
                assert all(line.strip() not in theirs.source
                           for line in solution.splitlines() if line.strip().strip("#").strip())
            else:
                assert theirs.source == ours.source, f"{path.name}: a non-answer cell changed"
            if is_check(ours):
                assert theirs.metadata["editable"] is False  # nbgrader's LockCells
            assert not theirs.get("outputs")


def test_grading_passes_the_instructor_notebooks_and_fails_the_unanswered(student_dir, tmp_path,
                                                                         capsys):
    submitted = tmp_path / "submitted"
    shutil.copytree(SOURCE_DIR, submitted / "instructor")
    shutil.copytree(student_dir, submitted / "unanswered" / "week1")  # any depth under the student
    assert main(["grade", str(submitted), "--csv", str(tmp_path / "grades.csv")]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"instructor\s+(pass\s+){7}7/7", printed), printed
    assert re.search(r"unanswered\s+(fail\s+){7}0/7", printed), printed
    assert f"unanswered, 02 idf: {NOT_ANSWERED}" in printed
    with open(tmp_path / "grades.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["student", *EXERCISES, "score"]
    assert rows[1] == ["instructor", *["pass"] * 7, "7/7"]
    assert rows[2] == ["unanswered", *["fail"] * 7, "0/7"]
    with open(tmp_path / "grades_messages.csv", newline="") as file:
        messages = list(csv.DictReader(file))
    assert {row["message"] for row in messages if row["student"] == "unanswered"} == {NOT_ANSWERED}


@pytest.mark.parametrize("name", ["01_data_exploration.ipynb", "02_text_embedding.ipynb",
                                  "03_triples.ipynb", "04_training.ipynb", "05_search.ipynb"])
def test_a_student_notebook_stops_at_its_first_unanswered_exercise(name, student_dir, tmp_path):
    cells = read(student_dir / name).cells
    first_check = next(index for index, cell in enumerate(cells) if is_check(cell))
    with pytest.raises(NotebookError, match=rf"cell {first_check} \(check_.*NotImplementedError"):
        run_notebook(student_dir / name, tmp_path)
    executed = read(tmp_path / name).cells
    assert all(not cell.get("outputs") for cell in executed[first_check + 1:])  # nothing after


def with_mistake(notebook, answer_id, old, new):
    """A copy of an instructor notebook with one answer cell's ``old`` replaced by ``new``."""
    notebook = nbformat.from_dict(notebook)
    cell = next(cell for cell in notebook.cells if nbgrader_meta(cell).get("grade_id") == answer_id)
    assert cell.source.count(old) == 1, f"{answer_id}: the solution no longer contains {old!r}"
    cell.source = cell.source.replace(old, new)
    return notebook


@pytest.mark.parametrize("mistake", MISTAKES, ids=[mistake[0] for mistake in MISTAKES])
def test_a_past_mistake_is_caught_by_its_check_with_a_readable_message(mistake, tmp_path):
    _, name, answer_id, old, new, check_id, message = mistake
    nbformat.write(with_mistake(read(SOURCE_DIR / name), answer_id, old, new), tmp_path / name)
    grades = {grade.exercise.check_id: grade for grade in grade_notebook(tmp_path / name, "s")}
    assert set(grades) == {exercise.check_id for exercise in exercises_of(SOURCE_DIR / name)}
    failed = {check for check, grade in grades.items() if grade.result != "pass"}
    assert failed == {check_id}, {check: grades[check].message for check in failed}
    assert grades[check_id].message.startswith("CheckFailed: ")
    assert re.search(message, grades[check_id].message, re.S), grades[check_id].message
    for error in re.findall(r"rel_error ([0-9.e+-]+)", grades[check_id].message):
        assert float(error) > 1e-2  # far from the tolerance, 1e-5 (README)


def test_an_edited_check_cell_grades_nothing(tmp_path):
    # the grader runs the instructor's check cells, as nbgrader's autograder restores them
    name = "01_data_exploration.ipynb"
    notebook = with_mistake(read(SOURCE_DIR / name), "captions_per_image",
                            "return dict(zip(counts.tolist(), n_images.tolist()))", "return {}")
    for cell in notebook.cells:
        if is_check(cell):
            cell.source = "pass"
    nbformat.write(notebook, tmp_path / name)
    [grade] = grade_notebook(tmp_path / name, "s")
    assert grade.result == "fail" and "expected {5: 2, 6: 1, 7: 1}, got {}" in grade.message


def test_a_missing_answer_cell_or_notebook_is_graded_missing(tmp_path):
    notebook = read(SOURCE_DIR / "03_triples.ipynb")
    notebook.cells = [cell for cell in notebook.cells if not is_answer(cell)]
    (tmp_path / "ann").mkdir()
    nbformat.write(notebook, tmp_path / "ann" / "03_triples.ipynb")
    grades = {grade.exercise.label: grade for grade in grade_folder(tmp_path)}
    assert list(grades) == EXERCISES and {grade.student for grade in grades.values()} == {"ann"}
    assert grades["03 hard_negative"].result == "missing"
    assert "'hard_negative' is missing" in grades["03 hard_negative"].message
    assert grades["02 idf"].result == "missing"
    assert grades["02 idf"].message == "no 02_text_embedding.ipynb handed in"


def test_grade_refuses_a_folder_without_notebooks(tmp_path, capsys):
    assert main(["grade", str(tmp_path)]) == 2
    assert "no notebooks in" in capsys.readouterr().err


# -- the checks' messages, in-process -----------------------------------------------------------
def test_rel_error_is_cs231ns():
    assert checks.rel_error([1.0, 2.0], [1.0, 2.0]) == 0
    assert checks.rel_error(1.0, 3.0) == pytest.approx(0.5)
    assert checks.rel_error(0.0, np.nan) == np.inf


def test_assert_close_names_the_shape_or_the_first_differing_value():
    with pytest.raises(checks.CheckFailed, match=r"v: shape \(2,\), expected \(3,\)\n  look at: x"):
        checks.assert_close(np.zeros(3), np.zeros(2), "v", "x")
    with pytest.raises(checks.CheckFailed, match=r"first differing value at index 1: expected 2, "
                                                 r"got 2.5 \(rel_error 0.11 > tolerance 1e-05\)"):
        checks.assert_close([1.0, 2.0, 3.0], [1.0, 2.5, 3.5], "v", "x")
    checks.assert_close([1.0, 0.0], [1.0 + 1e-7, 5e-7], "v", "x")  # float32 noise passes


def test_assert_equal_names_the_first_difference():
    with pytest.raises(checks.CheckFailed, match=r"position 1: expected 5, got 6"):
        checks.assert_equal([4, 5], [4, 6], "ids", "x")


def answers_namespace():
    """The instructor's answer cells of notebooks 02 and 04, run in-process after their imports."""
    names = {}
    for name in ("02_text_embedding.ipynb", "04_training.ipynb"):
        for cell in read(SOURCE_DIR / name).cells:
            if is_answer(cell) or (cell.cell_type == "code" and "import mygrad" in cell.source):
                exec(cell.source, names)
    from capstone.course.text import tokenize

    names.setdefault("tokenize", tokenize)
    return names


def test_correct_answers_differ_from_the_package_by_float32_rounding_only():
    # README: "correct code gives about 1e-7 in float32", against a tolerance of 1e-5
    import math

    from capstone.course.text import idf_weights, se_text
    from capstone.course.triples import Triples, triple_metrics

    names = answers_namespace()
    names["np"] = np
    glove, table = checks.small_glove(), idf_weights(checks.IDF_CAPTIONS)
    n, words = len(checks.IDF_CAPTIONS), checks.caption_words()
    errors = [checks.rel_error(se_text(caption, glove, table, n),
                               names["se_text"](caption, glove, words))
              for caption in checks.SE_TEXT_CAPTIONS]
    errors += [checks.rel_error(table.get(word, math.log10(n)), names["idf"](word, words))
               for word in checks.IDF_WORDS]
    model, captions, good, bad, margin = checks.triple_batch()
    rows = np.arange(len(captions))
    expected = triple_metrics(model.embed(np.concatenate([good, bad])), captions,
                              Triples(rows, rows, rows + len(rows)), margin)["loss"]
    loss = names["batch_loss"](model, captions, good, bad, margin)[0]
    errors.append(checks.rel_error(expected, loss.item()))
    assert max(errors) < 1e-6

"""Teaching with the notebooks: the exercises' checks, the student edition and grading.

:mod:`capstone.teaching.checks` holds the checks that follow each exercise;
:mod:`capstone.teaching.student` writes the student edition (nbgrader's ``ClearSolutions``) and
grades a folder of completed notebooks.
"""
